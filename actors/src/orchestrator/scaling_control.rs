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
    DecisionType, ScalingDecision, SlotAllocation, WeightAdjustment,
};
use herd_protocol::{AgentType, MemberId, UnixMillis};
use tracing::{debug, info};

use herd_protocol::Mailbox;
use herd_protocol::messages::pool::PoolCast;
use ractor::ActorRef;

use super::OrchestratorMsg;
use super::dispatch::borrow_order;
use super::state::OrchestratorState;
use crate::pool::ResourceSample;
use crate::scaling::{
    AutoscaleInput, AutoscaleParams, Autoscaler, DemandTracker, RebalanceInput, TypeDemand,
    initial_weights, rebalance, spread_slots,
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
    /// Slots running an attempt (at most `slots`).
    pub busy: u32,
    /// Attempts assigned to it beyond its slots (a slot credit above 1):
    /// they wait in its backlog, so they count as queued work, not as busy
    /// slots — the same work as when they waited in the orchestrator's queue.
    pub waiting: u32,
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

/// The scaling loop's memory. Of it, only what operators changed (weights,
/// pins, pool bounds) outlives this orchestrator: it is recorded in the task
/// book and resumed by the next one (see `scaling_updates`). Measured
/// demand, the autoscaler's window, weights the rebalancer moved and the
/// decision history start afresh with each orchestrator: they follow the
/// load, which the next one measures again.
pub struct ScalingControl {
    pub(super) settings: ScalingSettings,
    pub(super) base: BTreeMap<AgentType, f64>,
    pub(super) pinned: BTreeSet<AgentType>,
    /// The weights as the latest agent update by an operator left them
    /// (in this orchestrator or, resumed, an earlier one: see
    /// `scaling_updates`); `None` while none was made.
    pub(super) operator_weights: Option<BTreeMap<AgentType, f64>>,
    /// An operator changed the pool bounds.
    pub(super) bounds_overridden: bool,
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
            operator_weights: None,
            bounds_overridden: false,
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
                    queued: per_type.iter().map(|(_, q, _)| q).sum::<u64>()
                        + serving.iter().map(|p| u64::from(p.waiting)).sum::<u64>(),
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
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

// ---- the orchestrator's side of the loop ----------------------------------

impl OrchestratorState {
    /// Every pool with its slots, capacity and busy slots.
    pub(super) fn pool_snapshots(&self) -> Vec<PoolSnapshot> {
        let view = self.view.borrow();
        self.pools
            .iter()
            .map(|(member, entry)| {
                // The book counts every attempt assigned to the pool; those
                // beyond its slots wait in its backlog.
                let assigned = self.book.running_total_on(member);
                PoolSnapshot {
                    member: member.clone(),
                    slots: entry.workers,
                    capacity: entry.capacity,
                    busy: assigned.min(entry.workers),
                    waiting: assigned.saturating_sub(entry.workers),
                    serving: !entry.draining && view.is_up(member),
                }
            })
            .collect()
    }

    /// One scaling interval: measure, decide, resize pools, move weights,
    /// record the decision.
    pub(super) fn scaling_step(&mut self, myself: &ActorRef<OrchestratorMsg>) {
        self.providers.publish(Instant::now());
        super::tenants::publish_tenant_gauges(&self.book, &mut self.tenant_gauges);
        let credits = self.slot_credits();
        for agent_type in self.agent_types.keys() {
            metrics::gauge!("herd_slot_credit", "agent_type" => agent_type.to_string())
                .set(f64::from(credits.of(agent_type)));
        }
        if !self.view.borrow().discovery_complete {
            return;
        }
        let pools = self.pool_snapshots();
        let per_type: Vec<(AgentType, u64, u32)> = self
            .agent_types
            .keys()
            .map(|t| {
                let running = pools
                    .iter()
                    .map(|p| self.book.running_on(&p.member, t))
                    .sum();
                (t.clone(), self.book.queue_depth(t), running)
            })
            .collect();
        for (agent_type, queued, running) in &per_type {
            metrics::gauge!("herd_queue_depth", "agent_type" => agent_type.to_string())
                .set(*queued as f64);
            metrics::gauge!("herd_agent_busy", "agent_type" => agent_type.to_string())
                .set(f64::from(*running));
        }
        if pools.is_empty() {
            // Nothing to size or share until a pool registers.
            return;
        }
        let plan = self.scaling.plan(&self.weights, &per_type, &pools);
        if let Some(weights) = &plan.weights {
            self.weights = weights.clone();
        }
        for (member, workers) in &plan.resize {
            self.pools.set_workers(member, *workers);
            if let Some(entry) = self.pools.get(member) {
                let _ = entry
                    .actor
                    .cast(Mailbox::Cast(PoolCast::Resize { workers: *workers }));
            }
        }
        let changed = plan.weights.is_some() || !plan.resize.is_empty();
        if changed {
            self.weights_changed();
        } else {
            self.publish_allocation();
        }
        self.scaling.record(plan, self.pools.allocation(), &pools);
        if changed {
            self.schedule_dispatch(myself);
        }
    }

    /// Weights or slots changed: new quotas, borrowing order and gauges.
    pub(super) fn weights_changed(&mut self) {
        self.pools.reallocate(&self.weights);
        self.borrow_order = borrow_order(&self.weights);
        self.publish_allocation();
    }

    /// Weight and slot gauges.
    fn publish_allocation(&self) {
        let allocation = self.pools.allocation();
        for (agent_type, weight) in &self.weights {
            metrics::gauge!("herd_agent_weight", "agent_type" => agent_type.to_string())
                .set(*weight);
            metrics::gauge!("herd_agent_slots", "agent_type" => agent_type.to_string()).set(
                f64::from(allocation.per_type.get(agent_type).copied().unwrap_or(0)),
            );
        }
        let total: u32 = self
            .pools
            .iter()
            .filter(|(_, e)| !e.draining)
            .map(|(_, e)| e.workers)
            .sum();
        metrics::gauge!("herd_worker_slots").set(f64::from(total));
    }

    /// A pool's resource use, for the health report and the autoscaler.
    pub(super) fn on_pool_stats(&mut self, member: MemberId, sample: ResourceSample) {
        if self.pools.get(&member).is_some() {
            self.scaling.observe_resources(member, sample);
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Four types of equal weight, for the loop's and the updates' tests.
    pub(in crate::orchestrator) fn weights() -> BTreeMap<AgentType, f64> {
        ["a", "b", "c", "d"]
            .iter()
            .map(|n| (AgentType::new(n), 0.25))
            .collect()
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
                waiting: 0,
                serving: true,
            },
            PoolSnapshot {
                member: member("n2"),
                slots: 4,
                capacity: 100,
                busy: 4,
                waiting: 0,
                serving: true,
            },
            PoolSnapshot {
                member: member("n3"),
                slots: 4,
                capacity: 100,
                busy: 0,
                waiting: 0,
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
