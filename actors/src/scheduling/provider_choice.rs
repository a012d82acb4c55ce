//! Which provider an agent type's calls go to: the first of its chain
//! (`provider`, then `fallback`) that has budget, falling through a provider
//! only when waiting for it is not worth it — its circuit is open, or its
//! budget will not have room within its `max_wait`. Pure.

use std::collections::BTreeMap;
use std::time::Instant;

use super::provider_budget::{ProviderBudget, Reserved, Shortage};

/// The calls one agent type may make this round.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Allotment {
    /// `(provider, calls)` in chain order.
    pub grants: Vec<(String, u32)>,
    /// When fewer calls than wanted were allotted: the provider the rest
    /// waits for, and why.
    pub waiting: Option<(String, Shortage)>,
}

impl Allotment {
    /// Calls allotted in all.
    pub fn total(&self) -> u64 {
        self.grants.iter().map(|(_, n)| u64::from(*n)).sum()
    }
}

/// Allots up to `wanted` calls over `chain`, counting what earlier types of
/// the same round reserved (and adding this type's share to `reserved`).
/// A provider missing from `budgets` has no limits.
pub fn allot(
    chain: &[String],
    wanted: u64,
    budgets: &mut BTreeMap<String, ProviderBudget>,
    reserved: &mut BTreeMap<String, Reserved>,
    now: Instant,
) -> Allotment {
    let mut allotment = Allotment::default();
    let mut left = wanted;
    let mut first_shortage: Option<(String, Shortage)> = None;
    for provider in chain {
        if left == 0 {
            break;
        }
        let Some(budget) = budgets.get_mut(provider) else {
            allotment
                .grants
                .push((provider.clone(), left.min(u32::MAX as u64) as u32));
            left = 0;
            break;
        };
        let held = reserved.entry(provider.clone()).or_default();
        if let Ok(room) = budget.room(now, *held) {
            let take = u64::from(room).min(left) as u32;
            held.calls += take;
            held.tokens += u64::from(take) * budget.estimate();
            allotment.grants.push((provider.clone(), take));
            left -= u64::from(take);
            if left == 0 {
                break;
            }
        }
        // Out of room, now or after this round's share.
        let Err(shortage) = budget.room(now, *held) else {
            continue;
        };
        first_shortage.get_or_insert((provider.clone(), shortage));
        if budget.worth_waiting(shortage, now) {
            allotment.waiting = Some((provider.clone(), shortage));
            return allotment;
        }
    }
    if left > 0 {
        allotment.waiting = first_shortage;
    }
    allotment
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use herd_config::CircuitSettings;
    use herd_protocol::messages::provider::{ProviderCallStatus, RateLimitHint};
    use herd_protocol::{AssignmentEpoch, TaskId};

    use super::*;
    use crate::scheduling::provider_budget::BudgetLimits;

    fn budget(rpm: u32, max_wait_s: u64) -> ProviderBudget {
        ProviderBudget::new(
            BudgetLimits {
                requests_per_minute: Some(rpm),
                tokens_per_minute: None,
                max_concurrent: None,
                max_wait: Duration::from_secs(max_wait_s),
            },
            CircuitSettings {
                failures: 2,
                recovery: Duration::from_secs(30),
                half_open_trials: 1,
            },
            10,
        )
    }

    fn chain() -> Vec<String> {
        vec!["primary".to_string(), "backup".to_string()]
    }

    #[test]
    fn the_primary_is_used_while_it_has_room() {
        let now = Instant::now();
        let mut budgets = BTreeMap::from([
            ("primary".to_string(), budget(10, 5)),
            ("backup".to_string(), budget(10, 5)),
        ]);
        let allotment = allot(&chain(), 4, &mut budgets, &mut BTreeMap::new(), now);
        assert_eq!(allotment.grants, vec![("primary".to_string(), 4)]);
        assert_eq!(allotment.waiting, None);
    }

    #[test]
    fn a_primary_whose_room_returns_within_max_wait_is_waited_for() {
        let now = Instant::now();
        let mut budgets = BTreeMap::from([
            ("primary".to_string(), budget(2, 120)),
            ("backup".to_string(), budget(10, 5)),
        ]);
        let allotment = allot(&chain(), 5, &mut budgets, &mut BTreeMap::new(), now);
        assert_eq!(allotment.grants, vec![("primary".to_string(), 2)]);
        assert!(matches!(
            allotment.waiting,
            Some((ref p, Shortage::RequestsPerMinute { .. })) if p == "primary"
        ));
    }

    #[test]
    fn a_primary_exhausted_beyond_max_wait_falls_back() {
        let now = Instant::now();
        let mut budgets = BTreeMap::from([
            ("primary".to_string(), budget(2, 5)),
            ("backup".to_string(), budget(10, 5)),
        ]);
        let allotment = allot(&chain(), 5, &mut budgets, &mut BTreeMap::new(), now);
        assert_eq!(
            allotment.grants,
            vec![("primary".to_string(), 2), ("backup".to_string(), 3)]
        );
        assert_eq!(allotment.total(), 5);
    }

    #[test]
    fn an_open_circuit_falls_back_at_once() {
        let now = Instant::now();
        let mut primary = budget(100, 60);
        for n in 0..2u64 {
            let key = (TaskId(u128::from(n)), AssignmentEpoch(n));
            primary.grant(key, now);
            primary.call_ended(
                key,
                ProviderCallStatus::Unavailable,
                0,
                &RateLimitHint::default(),
                now,
            );
        }
        let mut budgets = BTreeMap::from([
            ("primary".to_string(), primary),
            ("backup".to_string(), budget(10, 5)),
        ]);
        let allotment = allot(&chain(), 3, &mut budgets, &mut BTreeMap::new(), now);
        assert_eq!(allotment.grants, vec![("backup".to_string(), 3)]);
    }

    #[test]
    fn types_sharing_a_provider_share_its_room() {
        let now = Instant::now();
        let mut budgets = BTreeMap::from([("primary".to_string(), budget(5, 120))]);
        let mut reserved = BTreeMap::new();
        let only = vec!["primary".to_string()];
        let first = allot(&only, 3, &mut budgets, &mut reserved, now);
        let second = allot(&only, 3, &mut budgets, &mut reserved, now);
        assert_eq!(first.total() + second.total(), 5);
        assert!(second.waiting.is_some());
    }
}
