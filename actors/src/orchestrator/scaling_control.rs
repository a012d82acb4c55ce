//! The orchestrator's scaling loop: measurements in, a [`ScalingPlan`] out,
//! and the record of every decision (seed 004's ScalingDecision) for the
//! log, `GET /v1/scaling/decisions` and the metrics.
//!
//! The arithmetic lives in [`crate::scaling`]; this module holds what the
//! loop remembers between intervals (smoothed demand, the autoscaler's
//! window, pinned types, the decision history) and turns the orchestrator's
//! view into the pure functions' inputs.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Instant;

use herd_config::{DeploymentMode, ScalingSettings};
use herd_protocol::messages::orchestrator::ScalingStatus;
use herd_protocol::messages::scaling::{
    AgentUpdate, DecisionType, ScalingDecision, ScalingUpdate, SlotAllocation, WeightAdjustment,
};
use herd_protocol::{AgentType, MemberId, UnixMillis};
use tracing::{debug, info};

use crate::pool::ResourceSample;
use crate::scaling::{
    AutoscaleInput, AutoscaleParams, Autoscaler, DemandTracker, RebalanceInput, TypeDemand,
    initial_weights, rebalance, spread_slots, weight_floor,
};
use crate::scheduling::Allocation;

/// Decisions kept for `GET /v1/scaling/decisions`.
pub const DECISION_HISTORY: usize = 100;

/// One pool as the scaling loop sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolSnapshot {
    /// Its node.
    pub member: MemberId,
    /// Slots it runs.
    pub slots: u32,
    /// Most slots it may host.
    pub capacity: u32,
    /// Slots running an attempt.
    pub busy: u32,
    /// Up and not draining: it takes work and counts toward the total.
    pub serving: bool,
}

/// What one interval decided, before it is applied.
#[derive(Clone, Debug, PartialEq)]
pub struct ScalingPlan {
    /// New weights, when any moved.
    pub weights: Option<BTreeMap<AgentType, f64>>,
    /// How each moved weight changed, and why.
    pub adjustments: BTreeMap<AgentType, WeightAdjustment>,
    /// New slot counts of the pools whose count changes.
    pub resize: BTreeMap<MemberId, u32>,
    /// Slots on serving pools before.
    pub current_workers: u32,
    /// Slots on serving pools after.
    pub target_workers: u32,
    /// Why the total is what it is.
    pub reason: String,
}

impl ScalingPlan {
    /// The decision type in seed 004's vocabulary.
    pub fn decision_type(&self) -> DecisionType {
        if self.target_workers > self.current_workers {
            DecisionType::ScaleUp
        } else if self.target_workers < self.current_workers {
            DecisionType::ScaleDown
        } else if self.weights.is_some() {
            DecisionType::Rebalance
        } else {
            DecisionType::Maintain
        }
    }
}

/// The scaling loop's memory.
pub struct ScalingControl {
    settings: ScalingSettings,
    base: BTreeMap<AgentType, f64>,
    pinned: BTreeSet<AgentType>,
    tracker: DemandTracker,
    autoscaler: Autoscaler,
    started: Instant,
    last_step: Instant,
    demand: BTreeMap<AgentType, TypeDemand>,
    decisions: VecDeque<ScalingDecision>,
    resources: BTreeMap<MemberId, ResourceSample>,
}

impl ScalingControl {
    /// A loop for `configured` weights (normalized, floored).
    pub fn new(settings: ScalingSettings, configured: &BTreeMap<AgentType, f64>) -> Self {
        let now = Instant::now();
        ScalingControl {
            settings,
            base: initial_weights(configured),
            pinned: BTreeSet::new(),
            tracker: DemandTracker::default(),
            autoscaler: Autoscaler::default(),
            started: now,
            last_step: now,
            demand: BTreeMap::new(),
            decisions: VecDeque::new(),
            resources: BTreeMap::new(),
        }
    }

    /// The weights to start from.
    pub fn initial_weights(&self) -> BTreeMap<AgentType, f64> {
        self.base.clone()
    }

    /// The settings in force.
    pub fn settings(&self) -> &ScalingSettings {
        &self.settings
    }

    /// Whether an operator fixed this type's weight.
    pub fn is_pinned(&self, agent_type: &AgentType) -> bool {
        self.pinned.contains(agent_type)
    }

    /// The settings for the cluster summary.
    pub fn status(&self) -> ScalingStatus {
        let s = &self.settings;
        ScalingStatus {
            mode: s.mode.as_str().to_string(),
            min_workers: s.min_workers,
            max_workers: s.max_workers,
            scale_up_threshold: s.scale_up_threshold,
            scale_down_threshold: s.scale_down_threshold,
            rebalance: s.rebalance,
            autoscale: s.autoscale,
        }
    }

    /// `count` tasks of `agent_type` were accepted.
    pub fn arrived(&mut self, agent_type: &AgentType, count: u64) {
        self.tracker.arrived(agent_type, count);
    }

    /// An attempt ended.
    pub fn ended(
        &mut self,
        agent_type: &AgentType,
        succeeded: bool,
        run_time: std::time::Duration,
        score: Option<f64>,
    ) {
        self.tracker.ended(agent_type, succeeded, run_time, score);
    }

    /// A pool's latest resource use.
    pub fn observe_resources(&mut self, member: MemberId, sample: ResourceSample) {
        self.resources.insert(member, sample);
    }

    /// A pool left.
    pub fn forget_pool(&mut self, member: &MemberId) {
        self.resources.remove(member);
    }

    /// Mean CPU and memory use (percent) over pools that reported.
    pub fn mean_resources(&self) -> (f64, f64) {
        let n = self.resources.len().max(1) as f64;
        let cpu: f64 = self.resources.values().map(|s| s.cpu_percent).sum();
        let memory: f64 = self.resources.values().map(|s| s.memory_percent).sum();
        (cpu / n, memory / n)
    }

    /// Demand as measured at the last step.
    pub fn demand(&self) -> &BTreeMap<AgentType, TypeDemand> {
        &self.demand
    }

    /// The most recent decisions, newest first.
    pub fn decisions(&self, limit: usize) -> Vec<ScalingDecision> {
        self.decisions.iter().take(limit).cloned().collect()
    }

    /// Decides one interval. `per_type` is `(type, queued, running)`.
    pub fn plan(
        &mut self,
        weights: &BTreeMap<AgentType, f64>,
        per_type: &[(AgentType, u64, u32)],
        pools: &[PoolSnapshot],
    ) -> ScalingPlan {
        let now = Instant::now();
        let elapsed = now.duration_since(self.last_step);
        self.last_step = now;
        self.demand = self
            .tracker
            .close_interval(elapsed, per_type.iter().map(|(t, q, r)| (t, *q, *r)));

        let (new_weights, adjustments) = if self.settings.rebalance {
            let out = rebalance(&RebalanceInput {
                weights,
                base: &self.base,
                demand: &self.demand,
                pinned: &self.pinned,
                max_step: self.settings.max_weight_step,
            });
            let adjustments = out
                .reasons
                .iter()
                .map(|(t, reason)| {
                    (
                        t.clone(),
                        WeightAdjustment {
                            previous_weight: weights[t],
                            new_weight: out.weights[t],
                            reason: reason.clone(),
                        },
                    )
                })
                .collect();
            (out.changed.then_some(out.weights), adjustments)
        } else {
            (None, BTreeMap::new())
        };

        let serving: Vec<&PoolSnapshot> = pools.iter().filter(|p| p.serving).collect();
        let current: u32 = serving.iter().map(|p| p.slots).sum();
        let (target, reason) = if self.settings.autoscale && !serving.is_empty() {
            let verdict = self.autoscaler.decide(
                &AutoscaleParams {
                    min_workers: self.settings.min_workers,
                    max_workers: self.settings.max_workers,
                    scale_up_threshold: self.settings.scale_up_threshold,
                    scale_down_threshold: self.settings.scale_down_threshold,
                    stabilization: self.settings.stabilization,
                },
                AutoscaleInput {
                    slots: current,
                    busy: serving.iter().map(|p| p.busy).sum(),
                    queued: per_type.iter().map(|(_, q, _)| q).sum(),
                    capacity: serving.iter().map(|p| p.capacity).sum(),
                    now: now.duration_since(self.started),
                },
            );
            (verdict.target, verdict.reason)
        } else if serving.is_empty() {
            (current, "no pool takes work".to_string())
        } else {
            (current, "autoscaling off".to_string())
        };
        let resize = if target == current {
            BTreeMap::new()
        } else {
            let capacities: Vec<(MemberId, u32)> = serving
                .iter()
                .map(|p| (p.member.clone(), p.capacity))
                .collect();
            spread_slots(target, &capacities)
                .into_iter()
                .filter(|(member, slots)| {
                    serving
                        .iter()
                        .any(|p| &p.member == member && p.slots != *slots)
                })
                .collect()
        };
        ScalingPlan {
            weights: new_weights,
            adjustments,
            resize,
            current_workers: current,
            target_workers: target,
            reason,
        }
    }

    /// Records an applied plan: the decision with its per-slot allocation
    /// goes to the history, the log and the metrics.
    pub fn record(
        &mut self,
        plan: ScalingPlan,
        allocation: &Allocation,
        pools: &[PoolSnapshot],
    ) -> DecisionType {
        let decision_type = plan.decision_type();
        metrics::counter!("herd_scaling_decisions_total", "decision_type" => decision_type.as_str())
            .increment(1);
        // A run of "maintain" is kept once: the history shows changes.
        if decision_type == DecisionType::Maintain
            && self
                .decisions
                .front()
                .is_some_and(|d| d.decision_type == DecisionType::Maintain)
        {
            return decision_type;
        }
        let decision = ScalingDecision {
            timestamp: UnixMillis::now(),
            decision_type,
            current_workers: plan.current_workers,
            target_workers: plan.target_workers,
            agent_weight_adjustments: plan.adjustments,
            resource_allocation: self.slot_allocation(allocation, pools, &plan.resize),
        };
        if decision_type == DecisionType::Maintain {
            debug!(current_workers = decision.current_workers, reason = %plan.reason, "scaling decision: maintain");
        } else {
            let adjustments =
                serde_json::to_string(&decision.agent_weight_adjustments).unwrap_or_default();
            info!(
                decision_type = decision_type.as_str(),
                current_workers = decision.current_workers,
                target_workers = decision.target_workers,
                reason = %plan.reason,
                agent_weight_adjustments = %adjustments,
                "scaling decision"
            );
            if self.settings.mode == DeploymentMode::Development {
                debug!(decision = %serde_json::to_string(&decision).unwrap_or_default(), "scaling decision in full");
            }
        }
        self.decisions.push_front(decision);
        self.decisions.truncate(DECISION_HISTORY);
        decision_type
    }

    /// Every slot of every serving pool (`node/wN`) and the type whose quota
    /// it counts toward, with its CPU and memory budget.
    fn slot_allocation(
        &self,
        allocation: &Allocation,
        pools: &[PoolSnapshot],
        resize: &BTreeMap<MemberId, u32>,
    ) -> BTreeMap<String, SlotAllocation> {
        let mut slots = BTreeMap::new();
        for pool in pools.iter().filter(|p| p.serving) {
            let count = resize.get(&pool.member).copied().unwrap_or(pool.slots);
            let resources = self.resources.get(&pool.member);
            let cpu_cores = self
                .settings
                .max_cpu_per_worker
                .unwrap_or_else(|| resources.map_or(0.0, |r| r.cores / f64::from(count.max(1))));
            let memory_gb = self.settings.max_memory_per_worker_gb.unwrap_or_else(|| {
                resources.map_or(0.0, |r| r.memory_gb / f64::from(count.max(1)))
            });
            let quotas = allocation.per_pool.get(&pool.member);
            let mut assigned = quotas
                .into_iter()
                .flatten()
                .flat_map(|(t, n)| std::iter::repeat_n(t, *n as usize));
            for index in 0..count {
                let Some(agent_type) = assigned.next() else {
                    break;
                };
                slots.insert(
                    format!("{}/w{index}", pool.member.name),
                    SlotAllocation {
                        assigned_agent: agent_type.clone(),
                        memory_gb: round2(memory_gb),
                        cpu_cores: round2(cpu_cores),
                    },
                );
            }
        }
        slots
    }

    /// Applies `PUT /v1/agents/{type}` to `weights`. A new weight pins the
    /// type unless `pinned: false` says otherwise; the other unpinned types
    /// are scaled to make room.
    pub fn update_agent(
        &mut self,
        weights: &mut BTreeMap<AgentType, f64>,
        agent_type: &AgentType,
        update: &AgentUpdate,
    ) -> Result<(), String> {
        if !weights.contains_key(agent_type) {
            return Err(format!(
                "unknown agent type {agent_type:?}; known: {}",
                weights
                    .keys()
                    .map(|t| t.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let floor = weight_floor(weights.len());
        if let Some(weight) = update.weight {
            if !weight.is_finite() || !(0.0..=1.0).contains(&weight) {
                return Err(format!("weight is {weight}; give a number from 0.0 to 1.0"));
            }
            let pinned_others: f64 = weights
                .iter()
                .filter(|(t, _)| *t != agent_type && self.pinned.contains(*t))
                .map(|(_, w)| w)
                .sum();
            let free: Vec<AgentType> = weights
                .keys()
                .filter(|t| *t != agent_type && !self.pinned.contains(*t))
                .cloned()
                .collect();
            let weight = weight.max(floor);
            let room = 1.0 - weight - pinned_others;
            if room < floor * free.len() as f64 - 1e-12 || (free.is_empty() && room.abs() > 1e-9) {
                return Err(format!(
                    "weight {weight} leaves {room:.3} for the other types, below their floor of {floor:.3} each (pinned types hold {pinned_others:.3}); lower it or unpin a type with {{\"pinned\": false}}"
                ));
            }
            let free_total: f64 = free.iter().map(|t| weights[t]).sum();
            for t in &free {
                let share = if free_total > 0.0 {
                    weights[t] / free_total
                } else {
                    1.0 / free.len() as f64
                };
                weights.insert(t.clone(), (room * share).max(floor));
            }
            weights.insert(agent_type.clone(), weight);
            // Rounding of the floor clamp: renormalize gently.
            let total: f64 = weights.values().sum();
            for w in weights.values_mut() {
                *w /= total;
            }
            self.base.insert(agent_type.clone(), weight);
            let total: f64 = self.base.values().sum();
            for w in self.base.values_mut() {
                *w /= total;
            }
            if update.pinned != Some(false) {
                self.pinned.insert(agent_type.clone());
            }
        }
        match update.pinned {
            Some(true) => {
                self.pinned.insert(agent_type.clone());
            }
            Some(false) => {
                self.pinned.remove(agent_type);
            }
            None => {}
        }
        info!(agent_type = %agent_type, weight = weights[agent_type], pinned = self.pinned.contains(agent_type), "agent type updated by an operator");
        Ok(())
    }

    /// Applies `PUT /v1/scaling` (validated with the config's ranges).
    pub fn update_bounds(&mut self, update: &ScalingUpdate) -> Result<(), String> {
        let mut next = self.settings.clone();
        if let Some(v) = update.min_workers {
            if !(1..=100).contains(&v) {
                return Err(format!("min_workers is {v}; give 1 to 100"));
            }
            next.min_workers = v;
        }
        if let Some(v) = update.max_workers {
            if !(1..=1000).contains(&v) {
                return Err(format!("max_workers is {v}; give 1 to 1000"));
            }
            next.max_workers = v;
        }
        for (name, value, slot) in [
            (
                "scale_up_threshold",
                update.scale_up_threshold,
                &mut next.scale_up_threshold,
            ),
            (
                "scale_down_threshold",
                update.scale_down_threshold,
                &mut next.scale_down_threshold,
            ),
        ] {
            if let Some(v) = value {
                if !v.is_finite() || !(0.0..=1.0).contains(&v) {
                    return Err(format!("{name} is {v}; give 0.0 to 1.0"));
                }
                *slot = v;
            }
        }
        if next.min_workers > next.max_workers {
            return Err(format!(
                "min_workers ({}) is above max_workers ({}); keep min ≤ max",
                next.min_workers, next.max_workers
            ));
        }
        if next.scale_up_threshold <= next.scale_down_threshold {
            return Err(format!(
                "scale_up_threshold ({}) must be above scale_down_threshold ({})",
                next.scale_up_threshold, next.scale_down_threshold
            ));
        }
        info!(
            min_workers = next.min_workers,
            max_workers = next.max_workers,
            scale_up_threshold = next.scale_up_threshold,
            scale_down_threshold = next.scale_down_threshold,
            "pool bounds updated by an operator"
        );
        self.settings = next;
        Ok(())
    }
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weights() -> BTreeMap<AgentType, f64> {
        ["a", "b", "c", "d"]
            .iter()
            .map(|n| (AgentType::new(n), 0.25))
            .collect()
    }

    #[test]
    fn a_put_weight_pins_the_type_and_the_others_make_room() {
        let mut w = weights();
        let mut control = ScalingControl::new(ScalingSettings::default(), &w);
        let a = AgentType::new("a");
        control
            .update_agent(
                &mut w,
                &a,
                &AgentUpdate {
                    weight: Some(0.7),
                    pinned: None,
                },
            )
            .unwrap();
        assert!((w[&a] - 0.7).abs() < 1e-9);
        assert!((w.values().sum::<f64>() - 1.0).abs() < 1e-9);
        assert!((w[&AgentType::new("b")] - 0.1).abs() < 1e-9);
        assert!(control.is_pinned(&a));
    }

    #[test]
    fn invalid_updates_say_what_to_fix_and_change_nothing() {
        let mut w = weights();
        let before = w.clone();
        let mut control = ScalingControl::new(ScalingSettings::default(), &w);
        let error = control
            .update_agent(
                &mut w,
                &AgentType::new("zzz"),
                &AgentUpdate {
                    weight: Some(0.5),
                    pinned: None,
                },
            )
            .unwrap_err();
        assert!(error.contains("unknown agent type"), "{error}");
        let error = control
            .update_agent(
                &mut w,
                &AgentType::new("a"),
                &AgentUpdate {
                    weight: Some(1.5),
                    pinned: None,
                },
            )
            .unwrap_err();
        assert!(error.contains("0.0 to 1.0"), "{error}");
        let error = control
            .update_agent(
                &mut w,
                &AgentType::new("a"),
                &AgentUpdate {
                    weight: Some(1.0),
                    pinned: None,
                },
            )
            .unwrap_err();
        assert!(error.contains("floor"), "{error}");
        assert_eq!(w, before);
        let error = control
            .update_bounds(&ScalingUpdate {
                min_workers: Some(50),
                max_workers: Some(10),
                ..Default::default()
            })
            .unwrap_err();
        assert!(error.contains("min_workers"), "{error}");
    }

    #[test]
    fn plans_grow_a_busy_pool_and_spread_the_total_by_capacity() {
        let w = weights();
        let mut settings = ScalingSettings::preset(DeploymentMode::Production);
        settings.min_workers = 2;
        let mut control = ScalingControl::new(settings, &w);
        let member = |name: &str| MemberId {
            name: herd_protocol::NodeName::parse(name).unwrap(),
            incarnation: herd_protocol::Incarnation(1),
        };
        let pools = vec![
            PoolSnapshot {
                member: member("n1"),
                slots: 4,
                capacity: 100,
                busy: 4,
                serving: true,
            },
            PoolSnapshot {
                member: member("n2"),
                slots: 4,
                capacity: 100,
                busy: 4,
                serving: true,
            },
            PoolSnapshot {
                member: member("n3"),
                slots: 4,
                capacity: 100,
                busy: 0,
                serving: false,
            },
        ];
        let per_type = vec![(AgentType::new("a"), 50, 8)];
        let plan = control.plan(&w, &per_type, &pools);
        assert_eq!((plan.current_workers, plan.target_workers), (8, 9));
        assert_eq!(plan.decision_type(), DecisionType::ScaleUp);
        assert_eq!(plan.resize.values().sum::<u32>(), 5, "{:?}", plan.resize);
        assert!(!plan.resize.contains_key(&member("n3")));
        assert!(plan.weights.is_some(), "load on one type moves weights");
    }
}
