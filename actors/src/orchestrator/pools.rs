//! The pools registered with the orchestrator and their slot allocation.

use std::collections::{BTreeMap, BTreeSet};

use herd_protocol::{AgentType, MemberId, NodeName};
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
    /// It takes no new work.
    pub draining: bool,
    /// Most slots it may host.
    pub capacity: u32,
}

/// Registered pools, keyed by node, and the allocation over them. Draining
/// pools keep their entry (their running attempts still report) but get no
/// slots in the allocation.
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

    /// Marks a pool as draining; returns whether it was registered.
    pub fn set_draining(&mut self, member: &MemberId, weights: &BTreeMap<AgentType, f64>) -> bool {
        let Some(entry) = self.pools.get_mut(member) else {
            return false;
        };
        entry.draining = true;
        self.reallocate(weights);
        true
    }

    /// Sets a pool's slot count (after a resize) without reallocating:
    /// call [`PoolRegistry::reallocate`] once all changes are made.
    pub fn set_workers(&mut self, member: &MemberId, workers: u32) {
        if let Some(entry) = self.pools.get_mut(member) {
            entry.workers = workers;
        }
    }

    /// Recomputes quotas (after pools or weights change).
    pub fn reallocate(&mut self, weights: &BTreeMap<AgentType, f64>) {
        let capacities: Vec<PoolCapacity> = self
            .pools
            .iter()
            .filter(|(_, entry)| !entry.draining)
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

    /// The pool of the node called `name`, any incarnation.
    pub fn by_name(&self, name: &NodeName) -> Option<(&MemberId, &PoolEntry)> {
        self.pools.iter().find(|(member, _)| &member.name == name)
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
