//! How nodes introduce themselves to each other.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ids::MemberId;
use crate::messages::replica::ReplicaGroupId;
use crate::time::UnixMillis;

/// What a node does in the cluster.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Holds the task book and schedules tasks.
    Orchestrator,
    /// Runs tasks in a worker pool.
    Worker,
    /// Watches peers and local actors; serves the health report.
    Monitor,
}

impl Role {
    /// Every role, in display order.
    pub const ALL: [Role; 3] = [Role::Orchestrator, Role::Worker, Role::Monitor];

    /// The lowercase name used in flags, config and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Orchestrator => "orchestrator",
            Role::Worker => "worker",
            Role::Monitor => "monitor",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Not one of `orchestrator`, `worker`, `monitor`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown role {0:?}; expected orchestrator, worker or monitor")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == text.trim())
            .ok_or_else(|| UnknownRole(text.to_string()))
    }
}

/// A node's self-description, exchanged when a cluster session comes up.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Greeting {
    /// Name and incarnation.
    pub member: MemberId,
    /// Must equal the receiver's [`crate::PROTOCOL_VERSION`].
    pub protocol_version: u32,
    /// The sender's herd release.
    pub herd_version: String,
    /// Its roles.
    pub roles: Vec<Role>,
    /// Where peers reach its cluster port (`host:port`).
    pub cluster_addr: String,
    /// Where its HTTP API listens, if anywhere.
    pub http_addr: Option<String>,
    /// Worker slots it hosts.
    pub workers: u32,
    /// Set when the node runs an orchestrator: when that orchestrator started.
    /// Used to decide which of two orchestrators is the second one.
    pub orchestrator_since: Option<UnixMillis>,
    /// With raft replication, the id of the task book replica this node
    /// holds (drawn when its storage was created), so the Raft leader can
    /// take it into the group.
    pub replica_id: Option<u64>,
    /// With raft replication, the replica group this node's replica belongs
    /// to, once it knows it (a node greets again when it learns it). A
    /// leader takes in only replicas of its own group or of none yet, and
    /// a replica that meets an older group leaves (see
    /// [`crate::messages::replica::ReplicaGroupId`]).
    pub replica_group: Option<ReplicaGroupId>,
}

/// Why a node refuses a peer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Refusal {
    /// The peer speaks another wire protocol version.
    ProtocolVersion {
        /// The refusing node's version.
        ours: u32,
        /// The peer's version.
        theirs: u32,
    },
    /// The peer runs a second orchestrator; only one is allowed.
    SecondOrchestrator {
        /// The orchestrator the cluster keeps.
        existing: MemberId,
    },
    /// Another live node already uses the peer's name.
    DuplicateName {
        /// The node holding the name.
        existing: MemberId,
        /// Its cluster address, for the refused node's error message.
        address: String,
    },
    /// The orchestrator declared this incarnation down (its tasks were
    /// re-queued): the peer must rejoin under a new incarnation.
    DeclaredDown {
        /// The incarnation that was declared down.
        member: MemberId,
    },
    /// Both nodes have the orchestrator role, with different replication
    /// modes (`--replication single` and `raft`): they would keep two task
    /// books. The node that started later is refused.
    ReplicationMismatch {
        /// The refusing node.
        existing: MemberId,
        /// Its mode: `single` or `raft`.
        existing_mode: String,
    },
}

/// Membership messages between nodes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum MembershipCast {
    /// "Here is who I am". Each side sends it once it sees the other's
    /// membership actor; a peer is up once its greeting is accepted.
    Hello(Greeting),
    /// The sender will not talk to the receiver, and says why.
    Refused {
        /// Who refuses.
        by: MemberId,
        /// Why.
        reason: Refusal,
    },
    /// Failure-detector probe.
    Heartbeat {
        /// Sender.
        from: MemberId,
        /// Probe sequence number, echoed in the ack.
        sequence: u64,
    },
    /// Answer to a heartbeat.
    HeartbeatAck {
        /// Sender of the ack.
        from: MemberId,
        /// The probe's sequence number.
        sequence: u64,
    },
    /// The sender is leaving the cluster on purpose (drain).
    Leaving {
        /// Who leaves.
        member: MemberId,
    },
    /// The answer to `Leaving`: the leaver may close its connections.
    LeavingAck {
        /// Who acknowledges.
        from: MemberId,
    },
    /// Where the sender's other peers listen (`host:port`), so that the
    /// receiver connects to them too. Sent only with cluster TLS, where
    /// ractor_cluster's own transitive connections (plain text) are off;
    /// bounded by [`MAX_SHARED_PEERS`] addresses of at most
    /// [`MAX_PEER_ADDRESS_LEN`] bytes.
    Peers {
        /// The addresses.
        addresses: Vec<String>,
    },
    /// The sender's failure detector finds `subject`, one of the peers it
    /// watches, silent past its threshold. Sent to every peer, and again
    /// every second while it stands; a node declares `subject` down once
    /// two distinct watchers stand against it (see the membership module).
    /// A node that has already declared `subject` down answers the sender
    /// with its own report, so a late joiner reaches the same verdict.
    Unreachable {
        /// The peer found silent (this incarnation only).
        subject: MemberId,
        /// The watcher reporting it.
        by: MemberId,
        /// How long the watcher had heard nothing from it, milliseconds.
        silence_ms: u64,
    },
    /// With raft replication: the sender's replica leads the task book's
    /// group in `term` and runs the orchestrator (`leading`), or has
    /// stopped leading in `term`. A node keeps the claim of the highest
    /// term whose sender is alive as its cluster's orchestrator. Sent to
    /// every peer when leadership changes, and to each newly greeted peer.
    Leader {
        /// The claimant.
        member: MemberId,
        /// The Raft term the claim is about.
        term: u64,
        /// True while it leads and its orchestrator runs.
        leading: bool,
        /// The replica group it leads: a node follows only claims of its
        /// own replica's group (or, without one, of the oldest group it
        /// sees).
        group: Option<ReplicaGroupId>,
    },
    /// The sender withdraws its `Unreachable` report about `subject`: its
    /// heartbeats are answered again, or it is no longer the sender's to
    /// watch.
    Reachable {
        /// The peer the report was about.
        subject: MemberId,
        /// The watcher withdrawing it.
        by: MemberId,
    },
}

/// Most addresses one [`MembershipCast::Peers`] carries (or a receiver
/// reads).
pub const MAX_SHARED_PEERS: usize = 1024;

/// Longest address a [`MembershipCast::Peers`] may carry: a DNS name (253)
/// and a port.
pub const MAX_PEER_ADDRESS_LEN: usize = 260;
