//! Naming the replica group: which group of the task book a replica
//! belongs to ([`ReplicaGroupId`]), so that two groups founded apart are
//! told apart when they meet and the older one is kept (see
//! `membership::replica_groups`).
//!
//! The group's first leader names it: before its orchestrator starts, a
//! leader whose log has not named the group yet commits
//! [`Command::ReplicaGroup`] with its own replica as founder and its clock
//! as the founding time. For a new group that is the founder, a moment
//! after it initialized the group. The state machine keeps the first one
//! in the log, so every replica of a group holds the same id; one that
//! joins later learns it from the log or a snapshot, and one restarted on
//! its data directory finds it again in its snapshot or log. (A group
//! founded by a release that did not name groups is named by its first
//! leader under this one, with that time.)

use herd_protocol::messages::replica::ReplicaGroupId;
use herd_protocol::{NodeName, UnixMillis};
use openraft::Raft;

use super::state_machine::ReplicaBook;
use super::types::{CommandBatch, ReplicaId, ReplicaTypes};
use crate::task_book::Command;

/// Why the group could not be named now (the leader tries again while it
/// leads).
#[derive(Debug, thiserror::Error)]
#[error("could not name the replica group: {0}")]
pub struct NamingFailed(String);

/// The group `book`'s log names, naming it first if it has not: proposes
/// the name under `term` (the term `founder`, on `founder_node`, leads)
/// and waits until it is committed and applied. Whoever named it first,
/// the answer is the group the log names.
pub async fn name_if_unnamed(
    raft: &Raft<ReplicaTypes>,
    book: &ReplicaBook,
    founder: ReplicaId,
    founder_node: &NodeName,
    term: u64,
) -> Result<ReplicaGroupId, NamingFailed> {
    if let Some(group) = book.group() {
        return Ok(group);
    }
    let group = ReplicaGroupId {
        founded_at: UnixMillis::now(),
        founder,
        founder_node: founder_node.clone(),
    };
    let batch = CommandBatch {
        term,
        commands: vec![Command::ReplicaGroup(Box::new(group))],
    };
    raft.client_write(batch)
        .await
        .map_err(|error| NamingFailed(error.to_string()))?;
    // Committed and applied here; a batch fenced for landing under
    // another term named nothing.
    book.group()
        .ok_or_else(|| NamingFailed("the naming entry was fenced".to_string()))
}
