//! Wire types shared by every herd node.
//!
//! Everything that crosses a node boundary is defined here: identifiers, task
//! specifications and outcomes, the per-actor message protocols, and the one
//! codec that turns them into bytes. Nothing in this crate performs I/O or
//! holds state; `herd-actors` and `herd-node` build on it.

pub mod codec;
pub mod defaults;
pub mod ids;
pub mod json;
pub mod limits;
pub mod mailbox;
pub mod messages;
pub mod task;
pub mod tenant;
pub mod time;

pub use ids::{AgentType, AssignmentEpoch, Incarnation, MemberId, NodeName, TaskId, WorkerId};
pub use json::JsonText;
pub use mailbox::{Mailbox, Protocol, UndecodableFrame};
pub use task::{
    FailureKind, Outcome, Priority, RetrySpec, TaskAssignment, TaskReport, TaskSpec, TaskState,
    TaskView, TokenUsage,
};
pub use tenant::Tenant;
pub use time::UnixMillis;

/// Version of the herd wire protocol. Nodes refuse peers with a different
/// version: message layouts are positional (bincode), so a mismatch would
/// decode into garbage rather than fail loudly.
///
/// 6: raft log entries may carry the task book's `ScalingOverrides`
/// command, and replica snapshots its scaling overrides, which a node of
/// version 5 cannot decode.
///
/// 7: greetings, leadership claims and Raft requests carry the sender's
/// replica group, and raft log entries may carry the `ReplicaGroup`
/// command, which a node of version 6 cannot decode.
///
/// 8: the cluster summary's agent types carry their slot credit.
///
/// 9: a request the orchestrator held when it stopped is answered with
/// `RequestFailure::Interrupted`, which a node of version 8 cannot decode.
pub const PROTOCOL_VERSION: u32 = 9;

/// The herd release this crate belongs to, reported in node greetings.
pub const HERD_VERSION: &str = env!("CARGO_PKG_VERSION");
