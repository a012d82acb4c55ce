//! The cluster summary served at `GET /v1/cluster`.

use std::collections::BTreeMap;

use herd_protocol::messages::orchestrator::{AgentStatus, ClusterStatus, NodeStatus};
use herd_protocol::{AgentType, MemberId};

use super::actor::AgentTypeEntry;
use super::circuits::Circuits;
use super::pools::PoolRegistry;
use crate::membership::{ClusterView, MemberInfo};
use crate::task_book::TaskBook;

/// Builds the summary from the book, the pools and the membership view.
pub fn cluster_status(
    local: &MemberId,
    book: &TaskBook,
    pools: &PoolRegistry,
    view: &ClusterView,
    agent_types: &BTreeMap<AgentType, AgentTypeEntry>,
    circuits: &mut Circuits,
) -> ClusterStatus {
    let now = std::time::Instant::now();
    let node = |info: &MemberInfo| {
        let registered = pools.get(&info.member);
        NodeStatus {
            name: info.member.name.clone(),
            state: info.state,
            roles: info.roles.clone(),
            workers: registered.map_or(0, |pool| pool.workers),
            busy: book.running_total_on(&info.member),
            http_addr: info.http_addr.clone(),
            draining: registered.is_some_and(|pool| pool.draining),
        }
    };
    let mut nodes: Vec<NodeStatus> = std::iter::once(&view.local)
        .chain(view.peers.values())
        .map(node)
        .collect();
    nodes.sort_by(|a, b| a.name.cmp(&b.name));

    let allocation = pools.allocation();
    let agents = agent_types
        .iter()
        .map(|(agent_type, entry)| {
            let busy = pools
                .iter()
                .map(|(member, _)| book.running_on(member, agent_type))
                .sum();
            let status = AgentStatus {
                weight: entry.weight,
                workers: allocation.per_type.get(agent_type).copied().unwrap_or(0),
                busy,
                queue_depth: book.queue_depth(agent_type),
                circuit: circuits.status(agent_type, now),
            };
            (agent_type.clone(), status)
        })
        .collect();

    ClusterStatus {
        orchestrator: local.name.clone(),
        nodes,
        agents,
        tasks: book.totals(),
    }
}
