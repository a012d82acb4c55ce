//! Splitting worker slots among agent types by weight.
//!
//! Two steps. First the cluster's slots are apportioned among agent types by
//! weight, with a floor of one slot per type (seed 004: no agent type may be
//! disabled) whenever there are at least as many slots as types. Then each
//! type's quota is spread over the pools that can run it, slot by slot: every
//! slot goes to the type that still needs the largest share of the remaining
//! capacity able to serve it. That rule meets every quota whenever the pools'
//! capabilities allow it, and spreads each type evenly across pools.

use std::collections::{BTreeMap, BTreeSet};

use herd_protocol::{AgentType, MemberId};

/// One pool's size and abilities.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolCapacity {
    /// The pool's node.
    pub member: MemberId,
    /// Worker slots.
    pub slots: u32,
    /// Agent types it has handlers for.
    pub supports: BTreeSet<AgentType>,
}

/// Slots per agent type, per pool and in total.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Allocation {
    /// Quota of each type on each pool. Every pool's quotas sum to its slots
    /// (if it supports any type at all).
    pub per_pool: BTreeMap<MemberId, BTreeMap<AgentType, u32>>,
    /// Total quota of each type.
    pub per_type: BTreeMap<AgentType, u32>,
}

impl Allocation {
    /// The quota of `agent_type` on `member`.
    pub fn quota(&self, member: &MemberId, agent_type: &AgentType) -> u32 {
        self.per_pool
            .get(member)
            .and_then(|quotas| quotas.get(agent_type))
            .copied()
            .unwrap_or(0)
    }
}

/// Splits the pools' slots among agent types in proportion to `weights`.
/// Types no pool supports get nothing; weights need not sum to one.
pub fn allocate(pools: &[PoolCapacity], weights: &BTreeMap<AgentType, f64>) -> Allocation {
    let servable: BTreeMap<AgentType, f64> = weights
        .iter()
        .filter(|(agent_type, _)| {
            pools
                .iter()
                .any(|pool| pool.slots > 0 && pool.supports.contains(*agent_type))
        })
        .map(|(agent_type, weight)| (agent_type.clone(), weight.max(0.0)))
        .collect();
    let total_slots: u32 = pools
        .iter()
        .filter(|pool| pool.supports.iter().any(|t| servable.contains_key(t)))
        .map(|pool| pool.slots)
        .sum();
    let per_type = apportion(total_slots, &servable);
    let per_pool = spread_over_pools(pools, &per_type, &servable);
    Allocation { per_pool, per_type }
}

/// Largest-remainder apportionment of `seats` by `weights`, with at least one
/// seat per type when there are enough seats. All-zero weights count as equal.
pub fn apportion(seats: u32, weights: &BTreeMap<AgentType, f64>) -> BTreeMap<AgentType, u32> {
    let mut result: BTreeMap<AgentType, u32> = weights.keys().map(|t| (t.clone(), 0)).collect();
    if weights.is_empty() || seats == 0 {
        return result;
    }
    let equal = weights.values().all(|w| *w <= 0.0);
    let weight_of = |t: &AgentType| if equal { 1.0 } else { weights[t].max(0.0) };

    // Heaviest first: the order used to break ties and to hand out scarce floors.
    let mut by_weight: Vec<&AgentType> = weights.keys().collect();
    by_weight.sort_by(|a, b| weight_of(b).total_cmp(&weight_of(a)).then(a.cmp(b)));

    if (seats as usize) < weights.len() {
        for agent_type in by_weight.iter().take(seats as usize) {
            result.insert((*agent_type).clone(), 1);
        }
        return result;
    }

    // Types whose proportional share is below one seat get exactly one; the
    // rest share what remains. Repeat until no share drops below one.
    let mut floored: BTreeSet<&AgentType> = BTreeSet::new();
    loop {
        let free_seats = seats as f64 - floored.len() as f64;
        let free_weight: f64 = by_weight
            .iter()
            .filter(|t| !floored.contains(*t))
            .map(|t| weight_of(t))
            .sum();
        let newly_floored: Vec<&AgentType> = by_weight
            .iter()
            .filter(|t| !floored.contains(*t))
            .filter(|t| free_weight <= 0.0 || weight_of(t) / free_weight * free_seats < 1.0)
            .copied()
            .collect();
        if newly_floored.is_empty() {
            break;
        }
        floored.extend(newly_floored);
    }
    for agent_type in &floored {
        result.insert((*agent_type).clone(), 1);
    }
    let free_seats = seats - floored.len() as u32;
    let sharing: Vec<&AgentType> = by_weight
        .iter()
        .filter(|t| !floored.contains(*t))
        .copied()
        .collect();
    let free_weight: f64 = sharing.iter().map(|t| weight_of(t)).sum();
    if sharing.is_empty() || free_weight <= 0.0 {
        return result;
    }
    let mut remainders = Vec::with_capacity(sharing.len());
    let mut given = 0;
    for agent_type in &sharing {
        let exact = weight_of(agent_type) / free_weight * free_seats as f64;
        let whole = exact.floor() as u32;
        given += whole;
        result.insert((*agent_type).clone(), whole);
        remainders.push((exact - whole as f64, *agent_type));
    }
    remainders.sort_by(|a, b| {
        b.0.total_cmp(&a.0)
            .then(weight_of(b.1).total_cmp(&weight_of(a.1)))
            .then(a.1.cmp(b.1))
    });
    for (_, agent_type) in remainders.into_iter().take((free_seats - given) as usize) {
        *result
            .get_mut(agent_type)
            .expect("sharing types are in the result") += 1;
    }
    result
}

fn spread_over_pools(
    pools: &[PoolCapacity],
    per_type: &BTreeMap<AgentType, u32>,
    weights: &BTreeMap<AgentType, f64>,
) -> BTreeMap<MemberId, BTreeMap<AgentType, u32>> {
    let mut still_needed: BTreeMap<&AgentType, i64> =
        per_type.iter().map(|(t, n)| (t, *n as i64)).collect();
    // Capacity not yet handed out, among pools able to run each type.
    let mut capacity_left: BTreeMap<&AgentType, i64> = per_type
        .keys()
        .map(|t| {
            (
                t,
                pools
                    .iter()
                    .filter(|p| p.supports.contains(t))
                    .map(|p| p.slots as i64)
                    .sum(),
            )
        })
        .collect();
    let mut per_pool = BTreeMap::new();
    let mut ordered: Vec<&PoolCapacity> = pools.iter().collect();
    ordered.sort_by(|a, b| a.member.cmp(&b.member));
    for pool in ordered {
        let eligible: Vec<&AgentType> = per_type
            .keys()
            .filter(|t| pool.supports.contains(*t))
            .collect();
        let mut quotas: BTreeMap<AgentType, u32> =
            eligible.iter().map(|t| ((*t).clone(), 0)).collect();
        if eligible.is_empty() {
            per_pool.insert(pool.member.clone(), quotas);
            continue;
        }
        for _ in 0..pool.slots {
            let urgency = |t: &&AgentType| {
                let capacity = capacity_left[*t].max(1) as f64;
                still_needed[*t] as f64 / capacity
            };
            let chosen = *eligible
                .iter()
                .max_by(|a, b| {
                    urgency(a)
                        .total_cmp(&urgency(b))
                        .then(
                            weights
                                .get(**a)
                                .unwrap_or(&0.0)
                                .total_cmp(weights.get(**b).unwrap_or(&0.0)),
                        )
                        .then(b.cmp(a))
                })
                .expect("eligible is not empty");
            *quotas.get_mut(chosen).expect("eligible types have quotas") += 1;
            *still_needed.get_mut(chosen).expect("known type") -= 1;
            for agent_type in &eligible {
                *capacity_left.get_mut(agent_type).expect("known type") -= 1;
            }
        }
        per_pool.insert(pool.member.clone(), quotas);
    }
    per_pool
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_protocol::{Incarnation, NodeName};
    use proptest::prelude::*;

    fn member(index: usize) -> MemberId {
        MemberId {
            name: NodeName::parse(&format!("n{index}")).unwrap(),
            incarnation: Incarnation(1),
        }
    }

    fn weights(pairs: &[(&str, f64)]) -> BTreeMap<AgentType, f64> {
        pairs.iter().map(|(t, w)| (AgentType::new(t), *w)).collect()
    }

    fn all_types(pairs: &[(&str, f64)]) -> BTreeSet<AgentType> {
        pairs.iter().map(|(t, _)| AgentType::new(t)).collect()
    }

    #[test]
    fn apportions_by_weight_with_a_floor_of_one() {
        let seed_weights = weights(&[
            ("generation", 0.30),
            ("reflection", 0.20),
            ("ranking", 0.20),
            ("evolution", 0.15),
            ("proximity", 0.10),
            ("meta_review", 0.05),
        ]);
        let split = apportion(20, &seed_weights);
        let get = |t: &str| split[&AgentType::new(t)];
        assert_eq!(split.values().sum::<u32>(), 20);
        assert_eq!(
            (get("generation"), get("reflection"), get("ranking")),
            (6, 4, 4)
        );
        assert_eq!(
            (get("evolution"), get("proximity"), get("meta_review")),
            (3, 2, 1)
        );

        // A negligible weight still gets one slot.
        let skewed = apportion(10, &weights(&[("hot", 0.99), ("cold", 0.01)]));
        assert_eq!(skewed[&AgentType::new("cold")], 1);
        assert_eq!(skewed[&AgentType::new("hot")], 9);
    }

    #[test]
    fn spreads_each_type_across_pools() {
        let pairs = [("echo", 0.5), ("sleep", 0.5)];
        let pools: Vec<_> = (1..=3)
            .map(|i| PoolCapacity {
                member: member(i),
                slots: 4,
                supports: all_types(&pairs),
            })
            .collect();
        let allocation = allocate(&pools, &weights(&pairs));
        for pool in &pools {
            assert_eq!(allocation.quota(&pool.member, &AgentType::new("echo")), 2);
            assert_eq!(allocation.quota(&pool.member, &AgentType::new("sleep")), 2);
        }
    }

    #[test]
    fn types_only_some_pools_support_are_placed_there() {
        let pairs = [("gpu", 0.5), ("cpu", 0.5)];
        let pools = vec![
            PoolCapacity {
                member: member(1),
                slots: 4,
                supports: all_types(&[("cpu", 1.0)]),
            },
            PoolCapacity {
                member: member(2),
                slots: 4,
                supports: all_types(&pairs),
            },
        ];
        let allocation = allocate(&pools, &weights(&pairs));
        assert_eq!(allocation.quota(&member(1), &AgentType::new("cpu")), 4);
        assert_eq!(allocation.quota(&member(2), &AgentType::new("gpu")), 4);
        assert_eq!(allocation.per_type[&AgentType::new("gpu")], 4);
    }

    proptest! {
        #[test]
        fn allocation_respects_capacity_floors_and_quotas(
            slots in proptest::collection::vec(0..40u32, 1..6),
            raw_weights in proptest::collection::vec(0.0..1.0f64, 1..7),
        ) {
            let names: Vec<String> = (0..raw_weights.len()).map(|i| format!("type{i}")).collect();
            let weights: BTreeMap<AgentType, f64> = names.iter().zip(&raw_weights).map(|(n, w)| (AgentType::new(n), *w)).collect();
            let supports: BTreeSet<AgentType> = weights.keys().cloned().collect();
            let pools: Vec<PoolCapacity> = slots.iter().enumerate().map(|(i, s)| PoolCapacity { member: member(i + 1), slots: *s, supports: supports.clone() }).collect();
            let allocation = allocate(&pools, &weights);
            let total: u32 = slots.iter().sum();
            // Every pool's slots are handed out, no more.
            for pool in &pools {
                let given: u32 = allocation.per_pool[&pool.member].values().sum();
                prop_assert_eq!(given, pool.slots);
            }
            // Per-type totals match the apportionment, which sums to the slots.
            prop_assert_eq!(allocation.per_type.values().sum::<u32>(), total);
            for (agent_type, quota) in &allocation.per_type {
                let spread: u32 = allocation.per_pool.values().map(|q| q.get(agent_type).copied().unwrap_or(0)).sum();
                prop_assert_eq!(spread, *quota, "quota of {} not met", agent_type);
                if total as usize >= weights.len() {
                    prop_assert!(*quota >= 1, "type {} disabled", agent_type);
                }
            }
        }
    }
}
