//! The Raft type configuration of the replicated task book.

use std::fmt;
use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::task_book::Command;

/// A replica's id in the Raft group. Drawn at random when the replica's
/// storage is created (kept in its data directory, if it has one), so a
/// replica that lost its storage comes back as a new member.
pub type ReplicaId = u64;

/// What the group knows of a replica besides its id: which node hosts it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaNode {
    /// The hosting node's name.
    pub name: String,
    /// Where peers dial the hosting node's cluster port.
    pub cluster_addr: String,
}

impl fmt::Display for ReplicaNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.cluster_addr)
    }
}

/// One log entry's worth of task book commands, applied in order: the unit
/// of group commit.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CommandBatch {
    /// The term of the leader whose orchestrator applied the commands. A
    /// batch that lands in the log under another term (an orchestrator of
    /// an earlier leadership of the same node proposed it late) is skipped
    /// by every replica alike: its commands were made against a book that
    /// no longer exists.
    pub term: u64,
    /// The commands, in the order the leader's orchestrator applied them.
    pub commands: Vec<Command>,
}

/// What applying one batch to a replica did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchApplied {
    /// How many commands the batch held.
    pub commands: usize,
    /// True when the batch was skipped: proposed in another term than the
    /// one it was logged in.
    pub fenced: bool,
}

openraft::declare_raft_types!(
    /// The Raft types of the replicated task book.
    pub ReplicaTypes:
        D = CommandBatch,
        R = BatchApplied,
        NodeId = ReplicaId,
        Node = ReplicaNode,
        Entry = openraft::Entry<ReplicaTypes>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A log entry of the replicated task book.
pub type ReplicaEntry = openraft::Entry<ReplicaTypes>;
/// A storage error of the replicated task book.
pub type ReplicaStorageError = openraft::StorageError<ReplicaId>;
