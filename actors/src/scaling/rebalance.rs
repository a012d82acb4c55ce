//! Moves agent-type weights toward demand (seed 004, "Resource Allocation"
//! and "Resource Optimization").
//!
//! Each step:
//! 1. Every type's *desire* is the slot-seconds it needs per second —
//!    `arrival_rate × service_time + running + queued × service_time / 10 s`
//!    (work arriving, work in hand, and the backlog drained over ten
//!    seconds) — scaled by its effectiveness `0.5 + 0.5 × success × quality`,
//!    so a type that fails or scores low gets less, never nothing.
//! 2. The bottleneck (the type whose backlog takes longest to drain) gets a
//!    25 % bonus.
//! 3. The target is 80 % desire share and 20 % configured weight, so quiet
//!    types keep a presence; when nothing is happening at all the target is
//!    the configured weights.
//! 4. Weights move half way toward the target, each within ±`max_step`
//!    (≤ 50 %) of its value and never below the floor, and are normalized.
//!    Targets closer than the dead band to the current weights change
//!    nothing: steady load converges and then stays put.
//!
//! Pinned types (set by an operator) keep their weight; the others share
//! what is left.

use std::collections::{BTreeMap, BTreeSet};

use herd_protocol::AgentType;

use super::demand::TypeDemand;

/// Seconds over which a backlog should drain.
const BACKLOG_HORIZON_S: f64 = 10.0;
/// Extra desire of the bottleneck type.
const BOTTLENECK_BONUS: f64 = 1.25;
/// Share of the target that follows the configured weights.
const BASE_SHARE: f64 = 0.2;
/// Fraction of the distance to the target covered per step.
const STEP_GAIN: f64 = 0.5;
/// No weight moves unless some target is at least this far away.
pub const DEAD_BAND: f64 = 0.02;
/// Smaller weight moves are not worth making.
const MIN_MOVE: f64 = 1e-4;
/// Arrival rates below this count as none.
const QUIET_RATE: f64 = 0.01;

/// The smallest weight a type may have among `types` types: a tenth of an
/// equal share, so no type is ever disabled.
pub fn weight_floor(types: usize) -> f64 {
    0.1 / types.max(1) as f64
}

/// Configured weights made valid for rebalancing: every type at least its
/// floor, summing to one (all-zero weights count as equal).
pub fn initial_weights(configured: &BTreeMap<AgentType, f64>) -> BTreeMap<AgentType, f64> {
    let floor = weight_floor(configured.len());
    let total: f64 = configured.values().map(|w| w.max(0.0)).sum();
    let shares: BTreeMap<AgentType, f64> = configured
        .iter()
        .map(|(t, w)| {
            let share = if total > 0.0 {
                w.max(0.0) / total
            } else {
                1.0 / configured.len() as f64
            };
            (t.clone(), share)
        })
        .collect();
    let lo: Vec<f64> = vec![floor; shares.len()];
    let hi: Vec<f64> = vec![1.0; shares.len()];
    let values: Vec<f64> = shares.values().copied().collect();
    let fitted = fit_to_mass(&values, &lo, &hi, 1.0);
    shares.keys().cloned().zip(fitted).collect()
}

/// One rebalancing step's inputs.
#[derive(Clone, Debug)]
pub struct RebalanceInput<'a> {
    /// Current weights (at least the floor each, summing to one).
    pub weights: &'a BTreeMap<AgentType, f64>,
    /// Configured weights, normalized like `weights`.
    pub base: &'a BTreeMap<AgentType, f64>,
    /// Measured demand per type (types missing count as idle).
    pub demand: &'a BTreeMap<AgentType, TypeDemand>,
    /// Types whose weight an operator fixed.
    pub pinned: &'a BTreeSet<AgentType>,
    /// Largest relative change per step (0 < step ≤ 0.5).
    pub max_step: f64,
}

/// One step's result.
#[derive(Clone, Debug, PartialEq)]
pub struct Rebalanced {
    /// The new weights (equal to the old ones when nothing moved).
    pub weights: BTreeMap<AgentType, f64>,
    /// Why each moved type moved.
    pub reasons: BTreeMap<AgentType, String>,
    /// The type whose backlog takes longest to drain, if any is queued.
    pub bottleneck: Option<AgentType>,
    /// Whether any weight changed.
    pub changed: bool,
}

/// Seconds `demand`'s backlog takes to drain with one slot.
fn backlog_seconds(demand: &TypeDemand) -> f64 {
    demand.queued as f64 * demand.service_time_s
}

/// The type whose backlog would take longest to drain, if any is queued.
pub fn bottleneck(demand: &BTreeMap<AgentType, TypeDemand>) -> Option<AgentType> {
    demand
        .iter()
        .filter(|(_, d)| d.queued > 0)
        .max_by(|a, b| {
            backlog_seconds(a.1)
                .total_cmp(&backlog_seconds(b.1))
                .then(b.0.cmp(a.0))
        })
        .map(|(t, _)| t.clone())
}

fn desire(demand: &TypeDemand) -> f64 {
    let arrivals = if demand.arrival_rate < QUIET_RATE {
        0.0
    } else {
        demand.arrival_rate
    };
    let load = arrivals * demand.service_time_s
        + f64::from(demand.running)
        + backlog_seconds(demand) / BACKLOG_HORIZON_S;
    let effectiveness =
        0.5 + 0.5 * demand.success_rate.clamp(0.0, 1.0) * demand.quality.clamp(0.0, 1.0);
    load * effectiveness
}

/// One rebalancing step. Guarantees: weights sum to one, none is below
/// [`weight_floor`], none changes by more than `max_step` of its value,
/// pinned weights do not change.
pub fn rebalance(input: &RebalanceInput<'_>) -> Rebalanced {
    let weights = input.weights;
    let floor = weight_floor(weights.len());
    let idle = TypeDemand::idle();
    let demand_of = |t: &AgentType| input.demand.get(t).unwrap_or(&idle);
    let bottleneck = bottleneck(input.demand);
    let unchanged = |bottleneck| Rebalanced {
        weights: weights.clone(),
        reasons: BTreeMap::new(),
        bottleneck,
        changed: false,
    };

    let free: Vec<&AgentType> = weights
        .keys()
        .filter(|t| !input.pinned.contains(*t))
        .collect();
    if free.len() < 2 {
        return unchanged(bottleneck);
    }
    let mass: f64 = free.iter().map(|t| weights[*t]).sum();

    let desires: Vec<f64> = free
        .iter()
        .map(|t| {
            let d = desire(demand_of(t));
            if bottleneck.as_ref() == Some(*t) {
                d * BOTTLENECK_BONUS
            } else {
                d
            }
        })
        .collect();
    let desire_total: f64 = desires.iter().sum();
    let base_total: f64 = free
        .iter()
        .map(|t| input.base.get(*t).copied().unwrap_or(0.0))
        .sum();
    let base_share = |t: &AgentType| {
        if base_total > 0.0 {
            input.base.get(t).copied().unwrap_or(0.0) / base_total
        } else {
            1.0 / free.len() as f64
        }
    };
    let raw_targets: Vec<f64> = free
        .iter()
        .zip(&desires)
        .map(|(t, d)| {
            let share = if desire_total > 0.0 {
                (1.0 - BASE_SHARE) * d / desire_total + BASE_SHARE * base_share(t)
            } else {
                base_share(t)
            };
            share * mass
        })
        .collect();
    // Targets honour the floor too, so the weights can actually reach them.
    let targets = fit_to_mass(
        &raw_targets,
        &vec![floor; free.len()],
        &vec![mass; free.len()],
        mass,
    );

    let current: Vec<f64> = free.iter().map(|t| weights[*t]).collect();
    let farthest = current
        .iter()
        .zip(&targets)
        .map(|(w, target)| (target - w).abs())
        .fold(0.0, f64::max);
    if farthest < DEAD_BAND * mass {
        return unchanged(bottleneck);
    }

    // Each weight moves half way to its target, within its step bounds. What
    // the risers can take and what the fallers give up are then balanced by
    // shortening the longer side, so the sum holds and no weight ever moves
    // away from its target (no overshoot, hence no oscillation).
    let step = input.max_step.clamp(0.0, 0.5);
    let lo: Vec<f64> = current
        .iter()
        .map(|w| (w * (1.0 - step)).max(floor).min(*w))
        .collect();
    let hi: Vec<f64> = current
        .iter()
        .map(|w| (w * (1.0 + step)).min(1.0).max(*w))
        .collect();
    let mut deltas: Vec<f64> = (0..free.len())
        .map(|i| {
            let delta = (STEP_GAIN * (targets[i] - current[i]))
                .clamp(lo[i] - current[i], hi[i] - current[i]);
            if delta.abs() < MIN_MOVE { 0.0 } else { delta }
        })
        .collect();
    let rising: f64 = deltas.iter().filter(|d| **d > 0.0).sum();
    let falling: f64 = -deltas.iter().filter(|d| **d < 0.0).sum::<f64>();
    for delta in deltas.iter_mut() {
        if *delta > 0.0 && rising > falling {
            *delta *= falling / rising;
        } else if *delta < 0.0 && falling > rising {
            *delta *= rising / falling;
        }
    }
    let fitted: Vec<f64> = current.iter().zip(&deltas).map(|(w, d)| w + d).collect();

    let mut new_weights = weights.clone();
    let mut reasons = BTreeMap::new();
    for (index, agent_type) in free.iter().enumerate() {
        let (old, new) = (current[index], fitted[index]);
        new_weights.insert((*agent_type).clone(), new);
        if (new - old).abs() > 1e-9 {
            reasons.insert(
                (*agent_type).clone(),
                reason(
                    demand_of(agent_type),
                    bottleneck.as_ref() == Some(*agent_type),
                    desire_total == 0.0,
                    new > old,
                    targets[index],
                    new <= lo[index] + 1e-12 || new >= hi[index] - 1e-12,
                ),
            );
        }
    }
    let changed = !reasons.is_empty();
    Rebalanced {
        weights: new_weights,
        reasons,
        bottleneck,
        changed,
    }
}

fn reason(
    demand: &TypeDemand,
    is_bottleneck: bool,
    all_idle: bool,
    up: bool,
    target: f64,
    limited: bool,
) -> String {
    let direction = if up { "up" } else { "down" };
    let mut text = if all_idle {
        format!("{direction}: cluster idle, returning toward the configured weight {target:.3}")
    } else if is_bottleneck {
        format!(
            "{direction}: bottleneck, {} queued (~{:.1} s of work), target {target:.3}",
            demand.queued,
            backlog_seconds(demand)
        )
    } else {
        format!(
            "{direction}: demand {:.2} slots ({:.2}/s × {:.3} s, {} running, {} queued), success {:.0} %, quality {:.2}, target {target:.3}",
            desire(demand),
            demand.arrival_rate,
            demand.service_time_s,
            demand.running,
            demand.queued,
            demand.success_rate * 100.0,
            demand.quality
        )
    };
    if limited {
        text.push_str(" (step limited)");
    }
    text
}

/// `values` shifted by one common amount and clamped to `lo..=hi` each, so
/// that they sum to `mass`. Needs `Σlo ≤ mass ≤ Σhi` (else the nearest
/// bound wins).
fn fit_to_mass(values: &[f64], lo: &[f64], hi: &[f64], mass: f64) -> Vec<f64> {
    let sum_at = |shift: f64| -> f64 {
        values
            .iter()
            .zip(lo.iter().zip(hi))
            .map(|(v, (l, h))| (v + shift).clamp(*l, *h))
            .sum()
    };
    let (mut low, mut high) = (-2.0_f64, 2.0_f64);
    for _ in 0..100 {
        let mid = (low + high) / 2.0;
        if sum_at(mid) < mass {
            low = mid;
        } else {
            high = mid;
        }
    }
    let mut fitted: Vec<f64> = values
        .iter()
        .zip(lo.iter().zip(hi))
        .map(|(v, (l, h))| (v + high).clamp(*l, *h))
        .collect();
    // Bisection leaves a rounding residue; give it to a value with room.
    let residue = mass - fitted.iter().sum::<f64>();
    if residue.abs() > 0.0
        && let Some(index) = (0..fitted.len()).find(|i| {
            let v = fitted[*i] + residue;
            v >= lo[*i] - 1e-12 && v <= hi[*i] + 1e-12
        })
    {
        fitted[index] += residue;
    }
    fitted
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(name: &str) -> AgentType {
        AgentType::new(name)
    }

    fn six() -> Vec<AgentType> {
        [
            "generation",
            "reflection",
            "ranking",
            "evolution",
            "proximity",
            "meta_review",
        ]
        .iter()
        .map(|n| t(n))
        .collect()
    }

    fn busy(queued: u64, rate: f64, service: f64) -> TypeDemand {
        TypeDemand {
            queued,
            running: 0,
            arrival_rate: rate,
            service_time_s: service,
            success_rate: 1.0,
            quality: 1.0,
        }
    }

    fn equal(types: &[AgentType]) -> BTreeMap<AgentType, f64> {
        initial_weights(&types.iter().map(|t| (t.clone(), 1.0)).collect())
    }

    fn step(
        weights: &BTreeMap<AgentType, f64>,
        demand: &BTreeMap<AgentType, TypeDemand>,
    ) -> Rebalanced {
        rebalance(&RebalanceInput {
            weights,
            base: &equal(&weights.keys().cloned().collect::<Vec<_>>()),
            demand,
            pinned: &BTreeSet::new(),
            max_step: 0.5,
        })
    }

    #[test]
    fn load_on_one_type_moves_weight_to_it_in_bounded_steps() {
        let types = six();
        let mut weights = equal(&types);
        let demand = BTreeMap::from([(t("ranking"), busy(500, 50.0, 0.1))]);
        let first = step(&weights, &demand);
        assert!(first.changed);
        assert_eq!(first.bottleneck, Some(t("ranking")));
        assert!((first.weights[&t("ranking")] - weights[&t("ranking")] * 1.5).abs() < 1e-9);
        for _ in 0..30 {
            weights = step(&weights, &demand).weights;
        }
        assert!(weights[&t("ranking")] > 0.75, "{weights:?}");
        for other in types.iter().filter(|x| **x != t("ranking")) {
            assert!(weights[other] >= weight_floor(6) - 1e-12);
        }
    }

    #[test]
    fn idle_cluster_returns_to_configured_weights() {
        let types = six();
        let mut weights = equal(&types);
        weights.insert(t("ranking"), 0.9);
        for other in types.iter().filter(|x| **x != t("ranking")) {
            weights.insert(other.clone(), 0.02);
        }
        for _ in 0..40 {
            weights = step(&weights, &BTreeMap::new()).weights;
        }
        for w in weights.values() {
            assert!((w - 1.0 / 6.0).abs() < 0.03, "{weights:?}");
        }
    }

    #[test]
    fn failing_types_get_less_than_succeeding_ones_at_equal_load() {
        let types = vec![t("a"), t("b")];
        let mut weights = equal(&types);
        let mut failing = busy(10, 10.0, 0.1);
        failing.success_rate = 0.1;
        let demand = BTreeMap::from([(t("a"), busy(10, 10.0, 0.1)), (t("b"), failing)]);
        for _ in 0..20 {
            weights = step(&weights, &demand).weights;
        }
        assert!(weights[&t("a")] > weights[&t("b")] + 0.1, "{weights:?}");
        assert!(weights[&t("b")] > 0.2, "{weights:?}");
    }

    #[test]
    fn pinned_weights_hold_and_the_rest_share_what_is_left() {
        let types = six();
        let weights = equal(&types);
        let pinned = BTreeSet::from([t("generation")]);
        let demand = BTreeMap::from([(t("ranking"), busy(500, 50.0, 0.1))]);
        let out = rebalance(&RebalanceInput {
            weights: &weights,
            base: &weights,
            demand: &demand,
            pinned: &pinned,
            max_step: 0.5,
        });
        assert_eq!(out.weights[&t("generation")], weights[&t("generation")]);
        assert!((out.weights.values().sum::<f64>() - 1.0).abs() < 1e-9);
    }

    fn arbitrary_weights(n: usize) -> impl Strategy<Value = BTreeMap<AgentType, f64>> {
        proptest::collection::vec(0.0f64..1.0, n).prop_map(|raw| {
            initial_weights(
                &raw.into_iter()
                    .enumerate()
                    .map(|(i, w)| (t(&format!("t{i}")), w))
                    .collect(),
            )
        })
    }

    fn arbitrary_demand(n: usize) -> impl Strategy<Value = BTreeMap<AgentType, TypeDemand>> {
        proptest::collection::vec(
            (
                0u64..2000,
                0u32..50,
                0.0f64..500.0,
                0.001f64..30.0,
                0.0f64..=1.0,
                0.0f64..=1.0,
            ),
            n,
        )
        .prop_map(|rows| {
            rows.into_iter()
                .enumerate()
                .map(|(i, (queued, running, rate, service, success, quality))| {
                    (
                        t(&format!("t{i}")),
                        TypeDemand {
                            queued,
                            running,
                            arrival_rate: rate,
                            service_time_s: service,
                            success_rate: success,
                            quality,
                        },
                    )
                })
                .collect()
        })
    }

    fn case() -> impl Strategy<
        Value = (
            BTreeMap<AgentType, f64>,
            BTreeMap<AgentType, TypeDemand>,
            f64,
            Vec<bool>,
        ),
    > {
        (1usize..10).prop_flat_map(|n| {
            (
                arbitrary_weights(n),
                arbitrary_demand(n),
                0.01f64..=0.5,
                proptest::collection::vec(proptest::bool::weighted(0.2), n),
            )
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn every_step_keeps_weights_normalized_floored_bounded_and_pins_fixed(
            (weights, demand, max_step, pins) in case()
        ) {
            let pinned: BTreeSet<AgentType> = weights
                .keys()
                .zip(&pins)
                .filter(|(_, p)| **p)
                .map(|(t, _)| t.clone())
                .collect();
            let base = weights.clone();
            let out = rebalance(&RebalanceInput { weights: &weights, base: &base, demand: &demand, pinned: &pinned, max_step });
            let floor = weight_floor(weights.len());
            prop_assert!((out.weights.values().sum::<f64>() - 1.0).abs() < 1e-9);
            for (agent_type, new) in &out.weights {
                let old = weights[agent_type];
                prop_assert!(*new >= floor - 1e-12, "{agent_type} below floor: {new}");
                prop_assert!((new - old).abs() <= old * max_step + 1e-9, "{agent_type}: {old} -> {new}");
                if pinned.contains(agent_type) {
                    prop_assert_eq!(*new, old);
                }
            }
            prop_assert_eq!(out.changed, out.weights != weights);
        }

        #[test]
        fn steady_demand_converges_and_then_stays_put(
            (weights, demand, max_step, _pins) in case()
        ) {
            let base = weights.clone();
            let pinned = BTreeSet::new();
            let mut current = weights;
            let mut settled_at = None;
            let mut direction: BTreeMap<AgentType, f64> = BTreeMap::new();
            for round in 0..3000 {
                let out = rebalance(&RebalanceInput { weights: &current, base: &base, demand: &demand, pinned: &pinned, max_step });
                if !out.changed {
                    settled_at = Some(round);
                    break;
                }
                // No oscillation: a weight that moved one way never turns back
                // by more than rounding.
                for (agent_type, new) in &out.weights {
                    let delta = new - current[agent_type];
                    if delta.abs() > 1e-6 {
                        let previous = direction.entry(agent_type.clone()).or_insert(delta);
                        prop_assert!(previous.signum() == delta.signum(),
                            "{agent_type} turned back at round {round}: {previous} then {delta}");
                        *previous = delta;
                    }
                }
                current = out.weights;
            }
            prop_assert!(settled_at.is_some(), "did not settle within 3000 steps");
        }
    }
}
