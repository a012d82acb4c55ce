//! The orchestrator: the task book, the pools it schedules onto, and the
//! requests of every node's API.
//!
//! The actor is a thin shell: it turns messages into [`crate::task_book`]
//! commands, asks [`crate::scheduling`] how to spread pending work over the
//! pools' free slots, and carries out the resulting effects (batched
//! assignments, cancellations, replies to waiters). Every scaling interval
//! it asks [`crate::scaling`] (through `scaling_control`) how to share and
//! size the pool, and resizes pools and moves weights accordingly.

mod actor;
mod circuits;
mod durability;
mod health_report;
mod pools;
mod scaling_control;
mod status;

use herd_protocol::Mailbox;
use herd_protocol::messages::groups;
use ractor::ActorRef;

pub use actor::{
    AgentTypeEntry, Orchestrator, OrchestratorArgs, OrchestratorLocal, OrchestratorProtocol,
};
pub use scaling_control::{PoolSnapshot, ScalingControl, ScalingPlan};

use crate::membership::ClusterView;

/// The orchestrator's mailbox type.
pub type OrchestratorMsg = Mailbox<OrchestratorProtocol>;

/// The actor of the orchestrator the view names, local or remote, if its
/// process group entry has arrived.
pub fn find_orchestrator(view: &ClusterView) -> Option<ActorRef<OrchestratorMsg>> {
    let target = view.orchestrator.as_ref()?;
    ractor::pg::get_members(&groups::ORCHESTRATOR.to_string())
        .into_iter()
        .find(|cell| {
            view.member_of_actor(cell.get_id())
                .is_some_and(|info| &info.member == target)
        })
        .map(ActorRef::from)
}
