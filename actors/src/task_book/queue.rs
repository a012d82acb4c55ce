//! The pending queue of one agent type: tenants take turns; within a
//! tenant, priorities first, then FIFO.

use std::collections::{BTreeMap, VecDeque};

use herd_protocol::tenant::is_without_tenants;
use herd_protocol::{Priority, TaskId, Tenant};
use serde::{Deserialize, Deserializer, Serialize};

/// One tenant's pending tasks of one agent type, one FIFO per priority.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct TenantQueue {
    levels: [VecDeque<(TaskId, u64)>; Priority::LEVELS],
    live: usize,
}

impl TenantQueue {
    fn pop(&mut self, is_live: &mut impl FnMut(TaskId, u64) -> bool) -> Option<TaskId> {
        for level in self.levels.iter_mut().rev() {
            while let Some((id, ticket)) = level.pop_front() {
                if is_live(id, ticket) {
                    self.live -= 1;
                    return Some(id);
                }
            }
        }
        None
    }
}

/// Pending tasks of one agent type, by tenant.
///
/// Fairness: each pop serves the next tenant with waiting work after the
/// one served last (round robin), so a tenant with a long backlog gets no
/// more dispatches than a tenant with a few tasks while both wait; with equal
/// task durations that is an equal share of the type's slots. Priorities
/// order a tenant's own tasks only.
///
/// Removal is lazy: a cancelled task stays in its FIFO until popped, and a
/// pop skips entries whose ticket no longer matches the task (the caller
/// checks). `len` counts live entries only. A tenant with no live entry is
/// dropped, so the map holds only tenants with waiting work.
#[derive(Debug, Default, Clone)]
pub struct PendingQueue {
    tenants: BTreeMap<Tenant, TenantQueue>,
    live: usize,
    last_served: Option<Tenant>,
}

impl PendingQueue {
    /// Appends a task; `ticket` identifies this enqueueing.
    pub fn push(&mut self, id: TaskId, priority: Priority, ticket: u64, tenant: &Tenant) {
        let queue = self.tenants.entry(tenant.clone()).or_default();
        queue.levels[priority.level() as usize].push_back((id, ticket));
        queue.live += 1;
        self.live += 1;
    }

    /// Puts a task back at the front of its level (it was already waiting).
    pub fn push_front(&mut self, id: TaskId, priority: Priority, ticket: u64, tenant: &Tenant) {
        let queue = self.tenants.entry(tenant.clone()).or_default();
        queue.levels[priority.level() as usize].push_front((id, ticket));
        queue.live += 1;
        self.live += 1;
    }

    /// Removes and returns the next entry that `is_live` accepts: from the
    /// next tenant in turn, its highest priority first. Entries it rejects
    /// are discarded (already counted out by [`PendingQueue::forget_one`]).
    pub fn pop(&mut self, mut is_live: impl FnMut(TaskId, u64) -> bool) -> Option<TaskId> {
        while self.live > 0 {
            let tenant = self.next_tenant()?;
            let queue = self
                .tenants
                .get_mut(&tenant)
                .expect("next_tenant names a key");
            let popped = queue.pop(&mut is_live);
            debug_assert!(
                popped.is_some(),
                "tenant {tenant} counted live entries it lacks"
            );
            if popped.is_none() {
                // Counts drifted (a bug): drop the tenant rather than spin.
                self.live -= queue.live;
                queue.live = 0;
            }
            if queue.live == 0 {
                self.tenants.remove(&tenant);
            }
            if let Some(id) = popped {
                self.live -= 1;
                self.last_served = Some(tenant);
                return Some(id);
            }
        }
        None
    }

    /// The tenant after the one served last, in name order, wrapping.
    fn next_tenant(&self) -> Option<Tenant> {
        let after = self.last_served.as_ref().and_then(|last| {
            self.tenants
                .range::<Tenant, _>((std::ops::Bound::Excluded(last), std::ops::Bound::Unbounded))
                .next()
        });
        after
            .or_else(|| self.tenants.iter().next())
            .map(|(tenant, _)| tenant.clone())
    }

    /// Accounts for an entry of `tenant` that became dead without being
    /// popped.
    pub fn forget_one(&mut self, tenant: &Tenant) {
        debug_assert!(self.live > 0, "forgetting from an empty queue");
        self.live = self.live.saturating_sub(1);
        if let Some(queue) = self.tenants.get_mut(tenant) {
            queue.live = queue.live.saturating_sub(1);
            if queue.live == 0 {
                // Every entry left is dead.
                self.tenants.remove(tenant);
            }
        }
    }

    /// Live entries.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Live entries of each tenant with waiting work.
    pub fn len_by_tenant(&self) -> impl Iterator<Item = (&Tenant, usize)> {
        self.tenants
            .iter()
            .map(|(tenant, queue)| (tenant, queue.live))
    }

    /// True when no live entry remains.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }
}

/// The queue as journal format 1 wrote it, before tenants: one tenant's
/// shape.
#[derive(Serialize, Deserialize)]
struct PendingQueueV1 {
    levels: [VecDeque<(TaskId, u64)>; Priority::LEVELS],
    live: usize,
}

/// The current shape.
#[derive(Deserialize)]
struct PendingQueueV2 {
    tenants: BTreeMap<Tenant, TenantQueue>,
    live: usize,
    last_served: Option<Tenant>,
}

impl Serialize for PendingQueue {
    /// The current shape; in herd-protocol's `without_tenants` mode (tests
    /// writing format 1 values), the default tenant's queue in format 1's.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if is_without_tenants() {
            let queue = self
                .tenants
                .get(&Tenant::default())
                .cloned()
                .unwrap_or_default();
            return PendingQueueV1 {
                levels: queue.levels,
                live: queue.live,
            }
            .serialize(serializer);
        }
        /// [`PendingQueueV2`], borrowed: a snapshot copies no queue.
        #[derive(Serialize)]
        struct Borrowed<'a> {
            tenants: &'a BTreeMap<Tenant, TenantQueue>,
            live: usize,
            last_served: &'a Option<Tenant>,
        }
        Borrowed {
            tenants: &self.tenants,
            live: self.live,
            last_served: &self.last_served,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for PendingQueue {
    /// Reads the current shape, or (while the journal decodes a format 1
    /// value) the shape from before tenants, whose tasks all belong to the
    /// default tenant.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if is_without_tenants() {
            let PendingQueueV1 { levels, live } = PendingQueueV1::deserialize(deserializer)?;
            let mut tenants = BTreeMap::new();
            if live > 0 {
                tenants.insert(Tenant::default(), TenantQueue { levels, live });
            }
            return Ok(PendingQueue {
                tenants,
                live,
                last_served: None,
            });
        }
        let PendingQueueV2 {
            tenants,
            live,
            last_served,
        } = PendingQueueV2::deserialize(deserializer)?;
        Ok(PendingQueue {
            tenants,
            live,
            last_served,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> TaskId {
        TaskId(n)
    }

    fn tenant(name: &str) -> Tenant {
        Tenant::parse(name).unwrap()
    }

    #[test]
    fn higher_priority_first_then_fifo() {
        let mut queue = PendingQueue::default();
        let t = Tenant::default();
        queue.push(id(1), Priority::new(5).unwrap(), 0, &t);
        queue.push(id(2), Priority::new(9).unwrap(), 0, &t);
        queue.push(id(3), Priority::new(5).unwrap(), 0, &t);
        queue.push(id(4), Priority::new(0).unwrap(), 0, &t);
        let order: Vec<_> = std::iter::from_fn(|| queue.pop(|_, _| true)).collect();
        assert_eq!(order, vec![id(2), id(1), id(3), id(4)]);
        assert!(queue.is_empty());
    }

    #[test]
    fn dead_entries_are_skipped() {
        let mut queue = PendingQueue::default();
        let t = Tenant::default();
        queue.push(id(1), Priority::DEFAULT, 1, &t);
        queue.push(id(2), Priority::DEFAULT, 2, &t);
        queue.forget_one(&t); // id 1 was cancelled
        assert_eq!(queue.len(), 1);
        assert_eq!(queue.pop(|task, _| task != id(1)), Some(id(2)));
        assert!(queue.is_empty());
        assert_eq!(queue.pop(|_, _| true), None);
    }

    #[test]
    fn tenants_take_turns_whatever_their_backlog() {
        let mut queue = PendingQueue::default();
        let (big, small) = (tenant("big"), tenant("small"));
        for n in 0..20_000 {
            queue.push(id(n), Priority::MAX, 0, &big);
        }
        for n in 0..10 {
            queue.push(id(100_000 + n), Priority::new(0).unwrap(), 0, &small);
        }
        let first: Vec<_> = (0..20).map(|_| queue.pop(|_, _| true).unwrap()).collect();
        let small_served = first.iter().filter(|task| task.0 >= 100_000).count();
        assert_eq!(small_served, 10, "{first:?}");
        assert_eq!(queue.len(), 20_000 - 10);
        assert_eq!(
            queue.len_by_tenant().count(),
            1,
            "the emptied tenant is dropped"
        );
    }

    #[test]
    fn a_tenant_whose_entries_all_died_is_dropped() {
        let mut queue = PendingQueue::default();
        let (a, b) = (tenant("a"), tenant("b"));
        queue.push(id(1), Priority::DEFAULT, 1, &a);
        queue.push(id(2), Priority::DEFAULT, 2, &b);
        queue.forget_one(&a);
        assert_eq!(queue.pop(|task, _| task != id(1)), Some(id(2)));
        assert_eq!(queue.pop(|_, _| true), None);
        assert!(queue.is_empty());
    }

    #[test]
    fn a_format_1_queue_decodes_into_the_default_tenant() {
        #[derive(Serialize)]
        struct V1 {
            levels: [VecDeque<(TaskId, u64)>; Priority::LEVELS],
            live: usize,
        }
        let mut levels: [VecDeque<(TaskId, u64)>; Priority::LEVELS] = Default::default();
        levels[5].push_back((id(7), 3));
        let bytes = herd_protocol::codec::encode(&V1 { levels, live: 1 }).unwrap();
        let mut queue: PendingQueue = herd_protocol::tenant::without_tenants(|| {
            herd_protocol::codec::decode(&bytes).unwrap()
        });
        assert_eq!(
            queue.len_by_tenant().collect::<Vec<_>>(),
            vec![(&Tenant::default(), 1)]
        );
        assert_eq!(queue.pop(|_, _| true), Some(id(7)));
    }
}
