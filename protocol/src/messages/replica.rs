//! Raft RPCs between the replicas of the task book.
//!
//! The RPC bodies are openraft's own request and response types, encoded by
//! `herd-actors` with [`crate::codec`]: this crate stays free of openraft,
//! and a replica that cannot decode a body answers [`ReplicaReply::Refused`]
//! rather than dropping it.

use serde::{Deserialize, Serialize};

use crate::mailbox::WireError;

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
    /// The request failed on the wire.
    Wire(WireError),
}

impl From<WireError> for ReplicaReply {
    fn from(error: WireError) -> Self {
        ReplicaReply::Wire(error)
    }
}
