//! The replicated task book: every orchestrator-role node holds a replica,
//! kept in step by Raft ([`openraft`] 0.9, storage v2).
//!
//! The shape (issue 12; this module grows toward it):
//! - The log's entries are batches of task book [`Command`](crate::task_book::Command)s
//!   ([`types::CommandBatch`]): group commit, many commands per entry.
//! - The state machine is a [`TaskBook`](crate::task_book::TaskBook) that
//!   applies every committed batch; its snapshot is the book's encoding.
//!   Applying is deterministic (commands carry their own times), so every
//!   replica that applied the same prefix holds the same book.
//! - The leader's orchestrator works ahead on its own copy of the book and
//!   releases what others could act on (a 202, an assignment, a report
//!   acknowledgement) only once the batch that holds it is committed — the
//!   same hold-back the journal does today with "durable" meaning "on a
//!   quorum". A deposed leader's uncommitted work is never seen by anyone,
//!   and its orchestrator is dropped with its copy.
//! - Replica ids ([`types::ReplicaId`]) are drawn at random when a replica's
//!   storage is created, so an in-memory replica that restarts, or one whose
//!   data directory was wiped, is a new member that catches up by snapshot
//!   instead of a voter that forgot its vote.
//!
//! - [`group`]: the group's id, named by its first leader in the log.
//! - [`membership_plan`]: which change of the replica set the leader makes
//!   next (voter cap, learners, replacing a replica gone for good).
//! - [`network`]: Raft RPCs over the cluster's ractor_cluster sessions.
//! - [`proposer`]: the leader's orchestrator's commands into the log, and
//!   the news of their commit.
//! - [`raft_config`]: timing and sizing of the group.
//! - [`rpc_server`]: the replica's RPC endpoint actor.
//! - [`status`]: the group as `/v1/cluster` shows it; a leader that lost its
//!   quorum.
//! - [`types`]: the Raft type configuration and the entry, response and node types.
//! - [`file`]: the replica's redb file in the data directory (log, vote,
//!   committed log id, replica id, latest snapshot), refused with a clear
//!   error when it is not a replica store.
//! - [`local_replica`]: this node's replica assembled (storage, Raft,
//!   endpoint).
//! - [`log_store`]: the Raft log, vote and committed log id (openraft's
//!   `RaftLogStorage`), in memory or in the replica file.
//! - [`state_machine`]: the task book that applies committed batches
//!   (openraft's `RaftStateMachine`), its snapshots, and the read handle the
//!   local orchestrator copies the book from.

pub mod file;
pub mod group;
pub mod local_replica;
pub mod log_store;
pub mod membership_plan;
pub mod network;
pub mod proposer;
pub mod raft_config;
pub mod rpc_server;
pub mod state_machine;
pub mod status;
pub mod types;

#[cfg(test)]
mod group_tests;
#[cfg(test)]
mod tests;
