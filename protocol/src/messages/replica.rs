//! Raft RPCs between the replicas of the task book.
//!
//! The RPC bodies are openraft's own request and response types, encoded by
//! `herd-actors` with [`crate::codec`]: this crate stays free of openraft,
//! and a replica that cannot decode a body answers [`ReplicaReply::Refused`]
//! rather than dropping it.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ids::NodeName;
use crate::mailbox::WireError;
use crate::time::UnixMillis;

/// Which replica group of the task book a replica belongs to: drawn by the
/// group's first leader and recorded as the first entry it commits, so
/// every replica of one group (and one that joins later, from the log or a
/// snapshot) holds the same id. Two groups founded apart (by nodes that
/// could not reach each other) have different ids, and the order says
/// which is older: by founding time, then by founder.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ReplicaGroupId {
    /// When the group was founded (its first leader's clock).
    pub founded_at: UnixMillis,
    /// The founding replica's id.
    pub founder: u64,
    /// The node that hosted the founding replica, for messages.
    pub founder_node: NodeName,
}

impl ReplicaGroupId {
    /// True if this group was founded before `other` (the older group is the
    /// one a cluster keeps).
    pub fn is_older_than(&self, other: &ReplicaGroupId) -> bool {
        self < other
    }
}

impl fmt::Display for ReplicaGroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the group founded by {} at {} (replica {:016x})",
            self.founder_node, self.founded_at, self.founder
        )
    }
}

/// A replica takes no one-way messages from peers.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ReplicaCast {}

/// Which Raft RPC a request carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RaftRpcKind {
    /// `AppendEntriesRequest` (also the leader's heartbeat).
    AppendEntries,
    /// `VoteRequest`.
    Vote,
    /// One chunk of `InstallSnapshotRequest`.
    InstallSnapshot,
}

/// A Raft RPC addressed to one replica.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReplicaRequest {
    /// The replica id the sender means; a node whose replica has another id
    /// (it restarted without its storage) refuses the request.
    pub to: u64,
    /// The RPC.
    pub kind: RaftRpcKind,
    /// The encoded openraft request.
    pub body: Vec<u8>,
    /// The sender's replica group, once it knows it: a replica of another
    /// group refuses the request, so two groups that meet never mix logs.
    pub group: Option<ReplicaGroupId>,
}

/// A replica's answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ReplicaReply {
    /// The encoded openraft response.
    Answered(Vec<u8>),
    /// The encoded openraft `RaftError` the replica returned.
    RaftError(Vec<u8>),
    /// The replica did not take the request: another id, not started yet,
    /// shutting down, or a body it could not decode. Says which.
    Refused(String),
    /// The replica is serving as many requests as it takes at once; try
    /// again.
    Busy(String),
    /// The request failed on the wire.
    Wire(WireError),
}

impl From<WireError> for ReplicaReply {
    fn from(error: WireError) -> Self {
        ReplicaReply::Wire(error)
    }
}

/// What a replica is in the group, as the leader sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplicaRole {
    /// Runs the orchestrator.
    Leader,
    /// Votes and holds a hot copy of the book.
    Follower,
    /// Standing for election.
    Candidate,
    /// Receives the log, does not vote (beyond the voter cap, or catching up).
    Learner,
    /// A member whose node cannot be reached now.
    Unreachable,
}

/// One replica in [`ReplicationStatus`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaView {
    /// The hosting node.
    pub name: String,
    /// Its role.
    pub state: ReplicaRole,
    /// The last log index it is known to hold (the leader's count of what
    /// it replicated there; its own applied index for the leader).
    pub applied_index: Option<u64>,
}

/// The replica group: `"replication"` in `/v1/cluster`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicationStatus {
    /// The current Raft term.
    pub term: u64,
    /// The leader's node, if there is one.
    pub leader: Option<String>,
    /// Every replica in the group, voters first, then learners, by name.
    pub replicas: Vec<ReplicaView>,
}
