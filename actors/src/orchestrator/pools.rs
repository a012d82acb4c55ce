//! The pools registered with the orchestrator and their slot allocation.

use std::collections::{BTreeMap, BTreeSet};

use herd_protocol::{AgentType, MemberId};
use ractor::ActorRef;

use crate::pool::PoolMsg;
use crate::scheduling::{Allocation, PoolCapacity, allocate};

/// One registered pool.
#[derive(Debug, Clone)]
pub struct PoolEntry {
    /// Its actor.
    pub actor: ActorRef<PoolMsg>,
    /// Its slots.
    pub workers: u32,
    /// Types it can run.
    pub supports: BTreeSet<AgentType>,
}

/// Registered pools, keyed by node, and the allocation over them.
#[derive(Debug, Default)]
pub struct PoolRegistry {
    pools: BTreeMap<MemberId, PoolEntry>,
    allocation: Allocation,
}

impl PoolRegistry {
    /// Adds or replaces a pool and recomputes the allocation.
    pub fn insert(
        &mut self,
        member: MemberId,
        entry: PoolEntry,
        weights: &BTreeMap<AgentType, f64>,
    ) {
        self.pools.insert(member, entry);
        self.reallocate(weights);
    }

    /// Removes a pool; returns whether it was registered.
    pub fn remove(&mut self, member: &MemberId, weights: &BTreeMap<AgentType, f64>) -> bool {
        let removed = self.pools.remove(member).is_some();
        if removed {
            self.reallocate(weights);
        }
        removed
    }

    /// Recomputes quotas (after pools or weights change).
    pub fn reallocate(&mut self, weights: &BTreeMap<AgentType, f64>) {
        let capacities: Vec<PoolCapacity> = self
            .pools
            .iter()
            .map(|(member, entry)| PoolCapacity {
                member: member.clone(),
                slots: entry.workers,
                supports: entry.supports.clone(),
            })
            .collect();
        self.allocation = allocate(&capacities, weights);
    }

    /// The pool on `member`.
    pub fn get(&self, member: &MemberId) -> Option<&PoolEntry> {
        self.pools.get(member)
    }

    /// The pool registered for the node called like `member`, any incarnation.
    pub fn same_name(&self, member: &MemberId) -> Option<MemberId> {
        self.pools
            .keys()
            .find(|known| known.name == member.name && *known != member)
            .cloned()
    }

    /// All pools.
    pub fn iter(&self) -> impl Iterator<Item = (&MemberId, &PoolEntry)> {
        self.pools.iter()
    }

    /// The current allocation.
    pub fn allocation(&self) -> &Allocation {
        &self.allocation
    }

    /// Registered nodes.
    pub fn members(&self) -> Vec<MemberId> {
        self.pools.keys().cloned().collect()
    }
}
