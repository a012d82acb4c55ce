//! Which pending tasks go to which pool, given each pool's free slots.
//!
//! Pools advertise slots, not demand: the orchestrator pushes at most as many
//! attempts to a pool as it has idle slots, plus, once those are taken, its
//! prefetch credit (phase 3); a worker never holds two tasks, the rest wait
//! in the pool's backlog. Idle slots are shared in two phases:
//!
//! 1. **Guaranteed**: each type may fill its quota on each pool.
//!    A type with waiting work and nothing running gets one idle slot even
//!    with a zero quota (fewer slots than types), so no type starves.
//! 2. **Borrowing**: idle slots beyond that are lent to types that still have
//!    pending work, except one slot in the cluster for each quiet type (one
//!    with a quota, nothing running and nothing pending), so a task of a quiet
//!    type never waits behind borrowed slots. Borrowed slots return when their
//!    task ends; nothing is pre-empted.
//!
//! Weights therefore bind under contention and never leave a slot idle while
//! work waits.
//!
//! 3. **Prefetch** (a slot credit above 1): only once phases 1–2 leave a
//!    pool no idle slot, it gets further attempts, up to `slots × credit`
//!    held there in all (each type's [slot credit](super::slot_credit)
//!    follows commit latency and its run time): first each type up to
//!    `credit ×` its quota there, so the backlog follows the
//!    weights; the rest lent in borrowing order; never LLM-calling types,
//!    which wait in the pool's backlog and start the moment a slot frees,
//!    without a round trip to the orchestrator. A pool's credit for a type
//!    is the smallest among the types it holds and that type (a backlog
//!    drains at the pace of what runs). A pool with an idle slot (held for
//!    a quiet type, say) gets none, so phases 1–2 decide exactly as with a
//!    credit of 1; prefetched attempts only delay what is assigned after
//!    them, by at most `credit − 1` attempts per slot ahead of it.

use std::collections::{BTreeMap, BTreeSet};

use herd_protocol::{AgentType, MemberId};

use super::allocation::Allocation;

/// One pool as the dispatcher sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolLoad {
    /// The pool's node.
    pub member: MemberId,
    /// Its worker slots.
    pub slots: u32,
    /// Attempts running there, by type.
    pub running: BTreeMap<AgentType, u32>,
    /// How many more LLM-calling attempts it may start
    /// (`max_concurrent_llm_calls` minus those running).
    pub llm_room: u32,
}

impl PoolLoad {
    /// Slots running nothing.
    pub fn idle(&self) -> u32 {
        self.slots.saturating_sub(self.running.values().sum())
    }

    fn running_of(&self, agent_type: &AgentType) -> u32 {
        self.running.get(agent_type).copied().unwrap_or(0)
    }
}

/// Everything one dispatch decision needs.
#[derive(Clone, Debug)]
pub struct DispatchInput<'a> {
    /// Pools in the order to serve them (the caller rotates it for fairness).
    pub pools: &'a [PoolLoad],
    /// Quotas per pool and type.
    pub allocation: &'a Allocation,
    /// Pending tasks per type that may be dispatched now.
    pub demand: &'a BTreeMap<AgentType, u64>,
    /// Types in borrowing order (heaviest weight first).
    pub borrow_order: &'a [AgentType],
    /// Types whose tasks call an LLM API (limited by each pool's `llm_room`).
    pub llm_types: &'a BTreeSet<AgentType>,
    /// Attempts a pool may hold per slot, by type (at least 1): beyond its
    /// idle slots, a pool whose slots are all taken gets up to `slots ×
    /// credit` attempts of a type in all, the ones not running waiting in
    /// its backlog.
    pub slot_credit: SlotCredits,
}

/// Attempts a pool may hold per slot, by agent type.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SlotCredits {
    /// The credit of a type not listed (`scaling.slot_credit`).
    pub default: u32,
    /// Types whose credit differs from it.
    pub by_type: BTreeMap<AgentType, u32>,
}

impl SlotCredits {
    /// The same credit for every type.
    #[cfg(test)]
    pub fn uniform(credit: u32) -> Self {
        SlotCredits {
            default: credit,
            by_type: BTreeMap::new(),
        }
    }

    /// The credit of `agent_type` (at least 1).
    pub fn of(&self, agent_type: &AgentType) -> u32 {
        self.by_type
            .get(agent_type)
            .copied()
            .unwrap_or(self.default)
            .max(1)
    }
}

/// What is planned so far and what each pool has left.
struct Ledger<'a> {
    pools: &'a [PoolLoad],
    llm_types: &'a BTreeSet<AgentType>,
    idle: Vec<u32>,
    llm_room: Vec<u32>,
    plan: BTreeMap<(usize, &'a AgentType), u32>,
}

impl<'a> Ledger<'a> {
    fn new(input: &DispatchInput<'a>) -> Self {
        Ledger {
            pools: input.pools,
            llm_types: input.llm_types,
            idle: input.pools.iter().map(PoolLoad::idle).collect(),
            llm_room: input.pools.iter().map(|pool| pool.llm_room).collect(),
            plan: BTreeMap::new(),
        }
    }

    /// How many of `agent_type` pool `index` may still start.
    fn room(&self, agent_type: &AgentType, index: usize) -> u32 {
        if self.llm_types.contains(agent_type) {
            self.idle[index].min(self.llm_room[index])
        } else {
            self.idle[index]
        }
    }

    /// Plans `count` attempts of `agent_type` on pool `index`.
    fn assign(&mut self, index: usize, agent_type: &'a AgentType, count: u32) {
        *self.plan.entry((index, agent_type)).or_default() += count;
        self.idle[index] -= count;
        if self.llm_types.contains(agent_type) {
            self.llm_room[index] -= count;
        }
    }

    /// `agent_type` runs somewhere or has attempts planned.
    fn started(&self, agent_type: &AgentType) -> bool {
        self.pools
            .iter()
            .any(|pool| pool.running_of(agent_type) > 0)
            || self.plan.keys().any(|(_, planned)| *planned == agent_type)
    }
}

/// What one pool without an idle slot holds while phase 3 plans its
/// backlog: its attempts (running and planned) and the smallest credit
/// among their types, kept up to date as attempts are added.
struct PoolHolding {
    slots: u32,
    held: u32,
    smallest_credit: Option<u32>,
}

impl PoolHolding {
    /// Pool `index` as the ledger has it so far.
    fn of(pool: &PoolLoad, index: usize, ledger: &Ledger<'_>, credits: &SlotCredits) -> Self {
        let running = pool
            .running
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(agent_type, n)| (agent_type, *n));
        let planned = ledger
            .plan
            .iter()
            .filter(|((planned, _), n)| *planned == index && **n > 0)
            .map(|((_, agent_type), n)| (*agent_type, *n));
        let mut holding = PoolHolding {
            slots: pool.slots,
            held: 0,
            smallest_credit: None,
        };
        for (agent_type, count) in running.chain(planned) {
            holding.add(credits.of(agent_type), count);
        }
        holding
    }

    /// The pool's credit for an attempt of a type whose own is `credit`:
    /// the smallest among that and the types it holds.
    fn credit_with(&self, credit: u32) -> u32 {
        self.smallest_credit
            .map_or(credit, |smallest| smallest.min(credit))
    }

    /// Attempts of a type whose own credit is `credit` it may still take.
    fn room(&self, credit: u32) -> u32 {
        self.slots
            .saturating_mul(self.credit_with(credit))
            .saturating_sub(self.held.max(self.slots))
    }

    /// `count` attempts of a type whose own credit is `credit` are planned.
    fn add(&mut self, credit: u32, count: u32) {
        self.held += count;
        self.smallest_credit = Some(self.credit_with(credit));
    }
}

/// Plans assignments: `(pool, type, count)` triples. Guarantees: no pool gets
/// more than its idle slots plus, once those are all planned, its prefetch
/// credit (at most `slots ×` the smallest credit among the types it holds
/// held there in all), no
/// type more than its demand, no pool more LLM-calling attempts than its
/// `llm_room` or its idle slots.
pub fn plan_dispatch(input: &DispatchInput<'_>) -> Vec<(MemberId, AgentType, u32)> {
    let mut demand: BTreeMap<&AgentType, u64> = input
        .demand
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(t, n)| (t, *n))
        .collect();
    let mut ledger = Ledger::new(input);
    let supports = |pool: &PoolLoad, agent_type: &AgentType| {
        input
            .allocation
            .per_pool
            .get(&pool.member)
            .is_some_and(|quotas| quotas.contains_key(agent_type))
    };

    // Phase 1: each type up to its quota on each pool.
    for (index, pool) in input.pools.iter().enumerate() {
        for (agent_type, wanted) in demand.iter_mut() {
            let quota = input.allocation.quota(&pool.member, agent_type);
            let headroom = quota.saturating_sub(pool.running_of(agent_type));
            let count = (headroom as u64)
                .min(*wanted)
                .min(ledger.room(agent_type, index) as u64) as u32;
            if count > 0 {
                ledger.assign(index, agent_type, count);
                *wanted -= count as u64;
            }
        }
    }

    // Phase 1b: a type with waiting work and nothing running or planned gets
    // one idle slot before any is held back for quiet types, so no type
    // starves when there are fewer slots than types (its quota is zero).
    for (agent_type, wanted) in demand.iter_mut() {
        if *wanted == 0 || ledger.started(agent_type) {
            continue;
        }
        let home = input.pools.iter().enumerate().find(|(index, pool)| {
            ledger.room(agent_type, *index) > 0 && supports(pool, agent_type)
        });
        if let Some((index, _)) = home {
            ledger.assign(index, agent_type, 1);
            *wanted -= 1;
        }
    }

    // Phase 2: keep one idle slot in the cluster for each quiet type, on a
    // pool where it has a quota; lend every other idle slot.
    let mut reserved = vec![0u32; input.pools.len()];
    let quiet_types: Vec<&AgentType> = input
        .allocation
        .per_type
        .iter()
        .filter(|(agent_type, quota)| {
            **quota > 0
                && demand.get(agent_type).is_none_or(|n| *n == 0)
                && !ledger.started(agent_type)
        })
        .map(|(t, _)| t)
        .collect();
    for agent_type in quiet_types {
        let home = input.pools.iter().enumerate().find(|(index, pool)| {
            input.allocation.quota(&pool.member, agent_type) > 0
                && ledger.idle[*index] > reserved[*index]
        });
        if let Some((index, _)) = home {
            reserved[index] += 1;
        }
    }
    for (index, pool) in input.pools.iter().enumerate() {
        let mut lendable = ledger.idle[index].saturating_sub(reserved[index]);
        while lendable > 0 {
            let mut lent = false;
            for agent_type in input.borrow_order {
                if lendable == 0 {
                    break;
                }
                if !supports(pool, agent_type) || ledger.room(agent_type, index) == 0 {
                    continue;
                }
                if let Some(wanted) = demand.get_mut(agent_type).filter(|n| **n > 0) {
                    *wanted -= 1;
                    lendable -= 1;
                    ledger.assign(index, agent_type, 1);
                    lent = true;
                }
            }
            if !lent {
                break;
            }
        }
    }

    // Phase 3: prefetch into the backlogs of pools with no idle slot left:
    // first each type up to the pool's credit × its quota there (so what
    // waits, and therefore what runs next, follows the weights under
    // contention), then the rest lent in borrowing order, one per type per
    // round. A backlog drains at the pace of what runs in the slots, so a
    // pool's credit for a type is the smallest credit among the types it
    // holds and that type: short tasks never queue deep behind long ones,
    // and a type of credit 1 never waits, whatever the mix. With one
    // credit for every type this is exactly `slots × credit` held in all.
    let prefetching = demand
        .iter()
        .any(|(agent_type, wanted)| *wanted > 0 && input.slot_credit.of(agent_type) > 1);
    if prefetching {
        for (index, pool) in input.pools.iter().enumerate() {
            if ledger.idle[index] > 0 {
                continue;
            }
            let planned_of = |ledger: &Ledger<'_>, agent_type: &AgentType| {
                ledger.plan.get(&(index, agent_type)).copied().unwrap_or(0)
            };
            let prefetchable = |agent_type: &AgentType| {
                supports(pool, agent_type) && !input.llm_types.contains(agent_type)
            };
            let mut holding = PoolHolding::of(pool, index, &ledger, &input.slot_credit);
            for (agent_type, wanted) in demand.iter_mut() {
                if *wanted == 0 || !prefetchable(agent_type) {
                    continue;
                }
                let credit = input.slot_credit.of(agent_type);
                let share = input
                    .allocation
                    .quota(&pool.member, agent_type)
                    .saturating_mul(holding.credit_with(credit))
                    .saturating_sub(pool.running_of(agent_type) + planned_of(&ledger, agent_type));
                let count = (share as u64).min(*wanted).min(holding.room(credit) as u64) as u32;
                if count > 0 {
                    *ledger.plan.entry((index, *agent_type)).or_default() += count;
                    *wanted -= count as u64;
                    holding.add(credit, count);
                }
            }
            loop {
                let mut lent = false;
                for agent_type in input.borrow_order {
                    let credit = input.slot_credit.of(agent_type);
                    if !prefetchable(agent_type) || holding.room(credit) == 0 {
                        continue;
                    }
                    if let Some(wanted) = demand.get_mut(agent_type).filter(|n| **n > 0) {
                        *wanted -= 1;
                        *ledger.plan.entry((index, agent_type)).or_default() += 1;
                        holding.add(credit, 1);
                        lent = true;
                    }
                }
                if !lent {
                    break;
                }
            }
        }
    }

    ledger
        .plan
        .into_iter()
        .map(|((index, agent_type), count)| {
            (input.pools[index].member.clone(), agent_type.clone(), count)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduling::allocation::{PoolCapacity, allocate};
    use herd_protocol::{Incarnation, NodeName};
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn member(index: usize) -> MemberId {
        MemberId {
            name: NodeName::parse(&format!("n{index}")).unwrap(),
            incarnation: Incarnation(1),
        }
    }

    fn types(names: &[&str]) -> Vec<AgentType> {
        names.iter().map(|n| AgentType::new(n)).collect()
    }

    fn setup(slots: &[u32], names: &[&str]) -> (Vec<PoolLoad>, Allocation) {
        let supports: BTreeSet<AgentType> = types(names).into_iter().collect();
        let capacities: Vec<PoolCapacity> = slots
            .iter()
            .enumerate()
            .map(|(i, s)| PoolCapacity {
                member: member(i + 1),
                slots: *s,
                supports: supports.clone(),
            })
            .collect();
        let weights = names.iter().map(|n| (AgentType::new(n), 1.0)).collect();
        let allocation = allocate(&capacities, &weights);
        let loads = slots
            .iter()
            .enumerate()
            .map(|(i, s)| PoolLoad {
                member: member(i + 1),
                slots: *s,
                running: BTreeMap::new(),
                llm_room: u32::MAX,
            })
            .collect();
        (loads, allocation)
    }

    #[test]
    fn one_busy_type_borrows_idle_slots_but_leaves_one_for_each_quiet_type() {
        let (pools, allocation) = setup(&[4, 4], &["echo", "sleep"]);
        let demand = BTreeMap::from([(AgentType::new("echo"), 100)]);
        let order = types(&["echo", "sleep"]);
        let plan = plan_dispatch(&DispatchInput {
            pools: &pools,
            allocation: &allocation,
            demand: &demand,
            borrow_order: &order,
            llm_types: &BTreeSet::new(),
            slot_credit: SlotCredits::uniform(1),
        });
        let echo_total: u32 = plan
            .iter()
            .filter(|(_, t, _)| t.as_str() == "echo")
            .map(|(_, _, n)| n)
            .sum();
        // 8 slots, one kept free for `sleep` in the whole cluster.
        assert_eq!(echo_total, 7);
    }

    #[test]
    fn a_quiet_type_gets_its_reserved_slot_at_once() {
        let (mut pools, allocation) = setup(&[4], &["echo", "sleep"]);
        pools[0].running = BTreeMap::from([(AgentType::new("echo"), 3)]);
        let demand = BTreeMap::from([(AgentType::new("echo"), 10), (AgentType::new("sleep"), 1)]);
        let order = types(&["echo", "sleep"]);
        let plan = plan_dispatch(&DispatchInput {
            pools: &pools,
            allocation: &allocation,
            demand: &demand,
            borrow_order: &order,
            llm_types: &BTreeSet::new(),
            slot_credit: SlotCredits::uniform(1),
        });
        assert_eq!(plan, vec![(member(1), AgentType::new("sleep"), 1)]);
    }

    #[test]
    fn a_type_without_quota_still_gets_a_slot_when_fewer_slots_than_types() {
        let names = ["a", "b", "c", "d", "e", "f"];
        let (pools, allocation) = setup(&[3], &names);
        assert_eq!(allocation.per_type.values().filter(|n| **n == 0).count(), 3);
        let starved = names
            .iter()
            .find(|n| allocation.per_type[&AgentType::new(n)] == 0)
            .unwrap();
        let demand = BTreeMap::from([(AgentType::new(starved), 5)]);
        let order = types(&names);
        let plan = plan_dispatch(&DispatchInput {
            pools: &pools,
            allocation: &allocation,
            demand: &demand,
            borrow_order: &order,
            llm_types: &BTreeSet::new(),
            slot_credit: SlotCredits::uniform(1),
        });
        assert_eq!(plan, vec![(member(1), AgentType::new(starved), 1)]);
    }

    #[test]
    fn llm_calling_types_stay_within_each_pools_llm_room() {
        let (mut pools, allocation) = setup(&[8, 8], &["generation", "echo"]);
        pools[0].llm_room = 2;
        pools[1].llm_room = 0;
        let demand = BTreeMap::from([
            (AgentType::new("generation"), 100),
            (AgentType::new("echo"), 100),
        ]);
        let order = types(&["generation", "echo"]);
        let llm = BTreeSet::from([AgentType::new("generation")]);
        let plan = plan_dispatch(&DispatchInput {
            pools: &pools,
            allocation: &allocation,
            demand: &demand,
            borrow_order: &order,
            llm_types: &llm,
            slot_credit: SlotCredits::uniform(1),
        });
        let count = |pool: usize, name: &str| -> u32 {
            plan.iter()
                .filter(|(m, t, _)| *m == member(pool) && t.as_str() == name)
                .map(|(_, _, n)| n)
                .sum()
        };
        assert_eq!((count(1, "generation"), count(2, "generation")), (2, 0));
        // The slots the LLM limit leaves free go to the other type.
        assert_eq!((count(1, "echo"), count(2, "echo")), (6, 8));
    }

    proptest! {
        #[test]
        fn never_over_assigns_and_never_idles_while_work_waits(
            slots in proptest::collection::vec(1..12u32, 1..4),
            running in proptest::collection::vec((0..3usize, 0..4u32), 0..6),
            demand in proptest::collection::vec(0..30u64, 3),
        ) {
            let names = ["a", "b", "c"];
            let (mut pools, allocation) = setup(&slots, &names);
            for (type_index, count) in running {
                let pool = &mut pools[type_index % slots.len()];
                let idle = pool.idle();
                *pool.running.entry(AgentType::new(names[type_index])).or_default() += count.min(idle);
            }
            let demand: BTreeMap<AgentType, u64> = names.iter().zip(&demand).map(|(n, d)| (AgentType::new(n), *d)).collect();
            let order = types(&names);
            let plan = plan_dispatch(&DispatchInput { pools: &pools, allocation: &allocation, demand: &demand, borrow_order: &order, llm_types: &BTreeSet::new(), slot_credit: SlotCredits::uniform(1) });
            for pool in &pools {
                let given: u32 = plan.iter().filter(|(m, _, _)| *m == pool.member).map(|(_, _, n)| n).sum();
                prop_assert!(given <= pool.idle(), "pool over-assigned");
            }
            let mut left = demand.clone();
            for (_, agent_type, count) in &plan {
                let wanted = left.get_mut(agent_type).unwrap();
                prop_assert!(*wanted >= *count as u64, "type over-assigned");
                *wanted -= *count as u64;
            }
            // Work-conserving: if work is left, at most one slot per type
            // stays idle in the whole cluster.
            if left.values().any(|n| *n > 0) {
                let idle_left: u32 = pools.iter().map(|pool| {
                    let given: u32 = plan.iter().filter(|(m, _, _)| *m == pool.member).map(|(_, _, n)| n).sum();
                    pool.idle() - given
                }).sum();
                prop_assert!(idle_left <= names.len() as u32, "{} slots idle while work waits", idle_left);
            }
        }
    }
    fn plan_with_credit(
        pools: &[PoolLoad],
        allocation: &Allocation,
        demand: &BTreeMap<AgentType, u64>,
        llm: &BTreeSet<AgentType>,
        slot_credit: u32,
    ) -> Vec<(MemberId, AgentType, u32)> {
        let order = types(&["echo", "sleep"]);
        plan_dispatch(&DispatchInput {
            pools,
            allocation,
            demand,
            borrow_order: &order,
            llm_types: llm,
            slot_credit: SlotCredits::uniform(slot_credit),
        })
    }

    fn planned_on(plan: &[(MemberId, AgentType, u32)], pool: usize) -> u32 {
        plan.iter()
            .filter(|(m, _, _)| *m == member(pool))
            .map(|(_, _, n)| n)
            .sum()
    }

    #[test]
    fn prefetch_fills_full_pools_up_to_their_credit_and_spares_the_quiet_types_slot() {
        let (pools, allocation) = setup(&[1, 1, 1], &["echo", "sleep"]);
        let demand = BTreeMap::from([(AgentType::new("echo"), 100)]);
        let without = plan_with_credit(&pools, &allocation, &demand, &BTreeSet::new(), 1);
        let with = plan_with_credit(&pools, &allocation, &demand, &BTreeSet::new(), 4);
        // One slot in the cluster stays free for `sleep`: its pool gets
        // nothing, with or without prefetch; the two others get 1, or 4.
        let counts = |plan: &[(MemberId, AgentType, u32)]| {
            let mut counts: Vec<u32> = (1..=3).map(|i| planned_on(plan, i)).collect();
            counts.sort();
            counts
        };
        assert_eq!(counts(&without), vec![0, 1, 1]);
        assert_eq!(counts(&with), vec![0, 4, 4]);
        assert!(with.iter().all(|(_, t, _)| t.as_str() == "echo"));
    }

    #[test]
    fn prefetch_counts_attempts_already_held_and_never_goes_past_the_credit() {
        let (mut pools, allocation) = setup(&[2], &["echo"]);
        // Two running and three waiting in the backlog: credit 4 allows 8.
        pools[0].running = BTreeMap::from([(AgentType::new("echo"), 5)]);
        let demand = BTreeMap::from([(AgentType::new("echo"), 100)]);
        let plan = plan_with_credit(&pools, &allocation, &demand, &BTreeSet::new(), 4);
        assert_eq!(plan, vec![(member(1), AgentType::new("echo"), 3)]);
        pools[0].running = BTreeMap::from([(AgentType::new("echo"), 8)]);
        assert!(plan_with_credit(&pools, &allocation, &demand, &BTreeSet::new(), 4).is_empty());
        // Never more than the demand.
        pools[0].running = BTreeMap::new();
        let demand = BTreeMap::from([(AgentType::new("echo"), 3)]);
        let plan = plan_with_credit(&pools, &allocation, &demand, &BTreeSet::new(), 4);
        assert_eq!(plan, vec![(member(1), AgentType::new("echo"), 3)]);
    }

    #[test]
    fn prefetched_attempts_follow_the_quotas_under_contention() {
        let (mut pools, mut allocation) = setup(&[4], &["echo", "sleep"]);
        // echo holds 3 slots, sleep 1; both are running at their quota.
        allocation.per_pool.insert(
            member(1),
            BTreeMap::from([(AgentType::new("echo"), 3), (AgentType::new("sleep"), 1)]),
        );
        pools[0].running =
            BTreeMap::from([(AgentType::new("echo"), 3), (AgentType::new("sleep"), 1)]);
        let demand = BTreeMap::from([
            (AgentType::new("echo"), 100),
            (AgentType::new("sleep"), 100),
        ]);
        let plan = plan_with_credit(&pools, &allocation, &demand, &BTreeSet::new(), 2);
        assert_eq!(
            plan,
            vec![
                (member(1), AgentType::new("echo"), 3),
                (member(1), AgentType::new("sleep"), 1)
            ]
        );
    }

    /// A plan for one pool of `slots` slots running `running` attempts of
    /// one type, with `demand` waiting and per-type `credits`.
    fn plan_for_one_pool(
        slots: u32,
        running: (&str, u32),
        demand: &[(&str, u64)],
        credits: &[(&str, u32)],
    ) -> Vec<(MemberId, AgentType, u32)> {
        let (mut pools, allocation) = setup(&[slots], &["echo", "sleep"]);
        pools[0].running = BTreeMap::from([(AgentType::new(running.0), running.1)]);
        let demand: BTreeMap<AgentType, u64> = demand
            .iter()
            .map(|(t, n)| (AgentType::new(t), *n))
            .collect();
        plan_dispatch(&DispatchInput {
            pools: &pools,
            allocation: &allocation,
            demand: &demand,
            borrow_order: &types(&["echo", "sleep"]),
            llm_types: &BTreeSet::new(),
            slot_credit: SlotCredits {
                default: 1,
                by_type: credits
                    .iter()
                    .map(|(t, c)| (AgentType::new(t), *c))
                    .collect(),
            },
        })
    }

    #[test]
    fn a_pool_running_short_tasks_takes_their_whole_credit() {
        let plan = plan_for_one_pool(2, ("echo", 2), &[("echo", 100)], &[("echo", 16)]);
        assert_eq!(plan, vec![(member(1), AgentType::new("echo"), 30)]);
    }

    #[test]
    fn short_tasks_do_not_queue_deep_behind_long_ones() {
        // The slots run long `sleep` attempts (credit 4): what waits behind
        // them drains at their pace, so short `echo` ones (credit 64) get
        // the pool's 2 × 4 in all, not 2 × 64.
        let plan = plan_for_one_pool(
            2,
            ("sleep", 2),
            &[("echo", 100)],
            &[("echo", 64), ("sleep", 4)],
        );
        assert_eq!(plan, vec![(member(1), AgentType::new("echo"), 6)]);
    }

    #[test]
    fn a_type_of_credit_one_never_waits_even_in_a_pool_of_short_tasks() {
        let plan = plan_for_one_pool(2, ("echo", 2), &[("sleep", 100)], &[("echo", 16)]);
        assert!(plan.is_empty(), "{plan:?}");
        let plan = plan_for_one_pool(2, ("sleep", 2), &[("sleep", 100)], &[("echo", 64)]);
        assert!(plan.is_empty(), "{plan:?}");
    }

    proptest! {
        #[test]
        fn with_mixed_credits_no_pool_holds_more_than_the_smallest_credit_of_what_it_holds(
            slots in proptest::collection::vec(1u32..6, 1..4),
            running in proptest::collection::vec((0usize..2, 0u32..12), 4),
            echo in 0u64..200, sleep in 0u64..200,
            echo_credit in 1u32..70, sleep_credit in 1u32..70,
        ) {
            let names = ["echo", "sleep"];
            let credit = |name: &str| if name == "echo" { echo_credit } else { sleep_credit };
            let (mut pools, allocation) = setup(&slots, &names);
            for (index, pool) in pools.iter_mut().enumerate() {
                let (type_index, count) = running[index];
                let name = names[type_index];
                let held = count.min(pool.slots * credit(name));
                pool.running = BTreeMap::from([(AgentType::new(name), held)]);
            }
            let demand = BTreeMap::from([(AgentType::new("echo"), echo), (AgentType::new("sleep"), sleep)]);
            let plan = plan_dispatch(&DispatchInput {
                pools: &pools, allocation: &allocation, demand: &demand,
                borrow_order: &types(&names), llm_types: &BTreeSet::new(),
                slot_credit: SlotCredits {
                    default: 1,
                    by_type: names.iter().map(|n| (AgentType::new(n), credit(n))).collect(),
                },
            });
            for (index, pool) in pools.iter().enumerate() {
                let held: u32 = pool.running.values().sum();
                let planned = planned_on(&plan, index + 1);
                if planned == 0 {
                    continue;
                }
                let smallest = names
                    .iter()
                    .filter(|name| {
                        pool.running.get(&AgentType::new(name)).is_some_and(|n| *n > 0)
                            || plan.iter().any(|(m, t, n)| *m == pool.member && t.as_str() == **name && *n > 0)
                    })
                    .map(|name| credit(name))
                    .min()
                    .unwrap_or(1);
                prop_assert!(
                    held + planned <= (pool.slots * smallest).max(pool.slots),
                    "pool {} of {} slots holds {} + {} with smallest credit {}: {:?}",
                    index + 1, pool.slots, held, planned, smallest, plan
                );
            }
            for (agent_type, wanted) in &demand {
                let given: u32 = plan.iter().filter(|(_, t, _)| t == agent_type).map(|(_, _, n)| n).sum();
                prop_assert!(u64::from(given) <= *wanted);
            }
        }
    }

    #[test]
    fn llm_calling_types_are_never_prefetched() {
        let (pools, allocation) = setup(&[2], &["echo"]);
        let llm = BTreeSet::from([AgentType::new("echo")]);
        let demand = BTreeMap::from([(AgentType::new("echo"), 100)]);
        let plan = plan_with_credit(&pools, &allocation, &demand, &llm, 4);
        assert_eq!(plan, vec![(member(1), AgentType::new("echo"), 2)]);
    }

    proptest! {
        #[test]
        fn no_pool_holds_more_than_its_credit_and_credit_one_changes_nothing(
            slots in proptest::collection::vec(1u32..6, 1..4),
            running in proptest::collection::vec(0u32..20, 4),
            echo in 0u64..60, sleep in 0u64..60, credit in 1u32..6,
        ) {
            let (mut pools, allocation) = setup(&slots, &["echo", "sleep"]);
            for (index, pool) in pools.iter_mut().enumerate() {
                let held = running[index].min(pool.slots * credit);
                pool.running = BTreeMap::from([(AgentType::new("echo"), held)]);
            }
            let demand = BTreeMap::from([(AgentType::new("echo"), echo), (AgentType::new("sleep"), sleep)]);
            let plan = plan_with_credit(&pools, &allocation, &demand, &BTreeSet::new(), credit);
            for (index, pool) in pools.iter().enumerate() {
                let held: u32 = pool.running.values().sum();
                prop_assert!(held + planned_on(&plan, index + 1) <= (pool.slots * credit).max(held));
            }
            let credit_one = plan_with_credit(&pools, &allocation, &demand, &BTreeSet::new(), 1);
            let base = plan_dispatch(&DispatchInput {
                pools: &pools, allocation: &allocation, demand: &demand,
                borrow_order: &types(&["echo", "sleep"]), llm_types: &BTreeSet::new(), slot_credit: SlotCredits::uniform(1),
            });
            prop_assert_eq!(credit_one, base);
        }
    }
}

#[cfg(test)]
mod small_pools {
    use super::*;
    use crate::scheduling::allocation::{PoolCapacity, allocate};
    use herd_protocol::{Incarnation, NodeName};
    use std::collections::BTreeSet;

    #[test]
    fn three_small_pools_lend_all_but_one_slot() {
        let member = |i: usize| MemberId {
            name: NodeName::parse(&format!("n{i}")).unwrap(),
            incarnation: Incarnation(1),
        };
        let supports: BTreeSet<AgentType> =
            [AgentType::new("echo"), AgentType::new("sleep")].into();
        let capacities: Vec<PoolCapacity> = (1..=3)
            .map(|i| PoolCapacity {
                member: member(i),
                slots: 2,
                supports: supports.clone(),
            })
            .collect();
        let weights = [
            (AgentType::new("echo"), 0.5),
            (AgentType::new("sleep"), 0.5),
        ]
        .into();
        let allocation = allocate(&capacities, &weights);
        let pools: Vec<PoolLoad> = (1..=3)
            .map(|i| PoolLoad {
                member: member(i),
                slots: 2,
                running: BTreeMap::new(),
                llm_room: u32::MAX,
            })
            .collect();
        let demand = BTreeMap::from([(AgentType::new("sleep"), 10)]);
        let order = vec![AgentType::new("echo"), AgentType::new("sleep")];
        let plan = plan_dispatch(&DispatchInput {
            pools: &pools,
            allocation: &allocation,
            demand: &demand,
            borrow_order: &order,
            llm_types: &BTreeSet::new(),
            slot_credit: SlotCredits::uniform(1),
        });
        let total: u32 = plan.iter().map(|(_, _, n)| n).sum();
        assert_eq!(total, 5, "{plan:?} {allocation:?}");
    }
}
