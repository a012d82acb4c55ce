//! The cluster summary served at `GET /v1/cluster`.

use std::collections::BTreeMap;

use herd_protocol::messages::orchestrator::{
    AgentStatus, ClusterStatus, NodeStatus, ProviderStatus,
};
use herd_protocol::{AgentType, MemberId};

use super::actor::AgentTypeEntry;
use super::circuits::Circuits;
use super::pools::PoolRegistry;
use super::scaling_control::ScalingControl;
use crate::membership::{ClusterView, MemberInfo};
use crate::task_book::TaskBook;

/// Decisions shown in the summary.
const RECENT_DECISIONS: usize = 5;

/// What the summary is made from.
pub struct StatusSources<'a> {
    /// The orchestrator's node.
    pub local: &'a MemberId,
    /// The task book.
    pub book: &'a TaskBook,
    /// Registered pools and their allocation.
    pub pools: &'a PoolRegistry,
    /// The membership view.
    pub view: &'a ClusterView,
    /// Current weights.
    pub weights: &'a BTreeMap<AgentType, f64>,
    /// The agent types as configured.
    pub agent_types: &'a BTreeMap<AgentType, AgentTypeEntry>,
    /// Circuit breakers.
    pub circuits: &'a mut Circuits,
    /// The scaling loop.
    pub scaling: &'a ScalingControl,
    /// The LLM providers' budgets.
    pub providers: Vec<ProviderStatus>,
    /// The replica group, with raft replication.
    pub replication: Option<herd_protocol::messages::replica::ReplicationStatus>,
    /// Each type's slot credit now.
    pub slot_credits: &'a crate::scheduling::SlotCredits,
}

/// Builds the summary from the book, the pools and the membership view.
pub fn cluster_status(sources: StatusSources<'_>) -> ClusterStatus {
    let StatusSources {
        local,
        book,
        pools,
        view,
        weights,
        agent_types,
        circuits,
        scaling,
        providers,
        replication,
        slot_credits,
    } = sources;
    let now = std::time::Instant::now();
    let allocation = pools.allocation();
    let node = |info: &MemberInfo| {
        let registered = pools.get(&info.member);
        NodeStatus {
            name: info.member.name.clone(),
            state: info.state,
            roles: info.roles.clone(),
            workers: registered.map_or(0, |pool| pool.workers),
            // Slots running an attempt: attempts beyond the slots wait in
            // the pool's backlog (the slot credit).
            busy: book
                .running_total_on(&info.member)
                .min(registered.map_or(0, |pool| pool.workers)),
            http_addr: info.http_addr.clone(),
            draining: registered.is_some_and(|pool| pool.draining),
            capacity: registered.map_or(0, |pool| pool.capacity),
            slots_by_type: allocation
                .per_pool
                .get(&info.member)
                .cloned()
                .unwrap_or_default(),
        }
    };
    let mut nodes: Vec<NodeStatus> = std::iter::once(&view.local)
        .chain(view.peers.values())
        .map(node)
        .collect();
    nodes.sort_by(|a, b| a.name.cmp(&b.name));

    let agents = weights
        .iter()
        .map(|(agent_type, weight)| {
            let busy = pools
                .iter()
                .map(|(member, _)| book.running_on(member, agent_type))
                .sum();
            let status = AgentStatus {
                weight: *weight,
                configured_weight: agent_types.get(agent_type).map_or(0.0, |e| e.weight),
                workers: allocation.per_type.get(agent_type).copied().unwrap_or(0),
                busy,
                queue_depth: book.queue_depth(agent_type),
                circuit: circuits.status(agent_type, now),
                pinned: scaling.is_pinned(agent_type),
                slot_credit: slot_credits.of(agent_type),
            };
            (agent_type.clone(), status)
        })
        .collect();

    ClusterStatus {
        orchestrator: local.name.clone(),
        nodes,
        agents,
        tasks: book.totals(),
        scaling: scaling.status(),
        recent_decisions: scaling.decisions(RECENT_DECISIONS),
        providers,
        tenants: super::tenants::tenant_statuses(book),
        replication,
    }
}
