//! The protocol each remotely addressable actor speaks.
//!
//! Each submodule defines one actor's casts, requests and replies as serde
//! types; [`crate::Mailbox`] carries them. Local-only messages live with the
//! actors in `herd-actors`.

pub mod membership;
pub mod orchestrator;
pub mod pool;
pub mod provider;
pub mod replica;
pub mod scaling;
pub mod supervision;

use serde::{Deserialize, Serialize};

use crate::mailbox::WireError;

/// Request type for actors that accept no requests from peers.
#[derive(Debug, Serialize, Deserialize)]
pub enum NoRequest {}

/// Reply type for actors that accept no requests from peers.
#[derive(Debug, Serialize, Deserialize)]
pub struct NoReply(pub WireError);

impl From<WireError> for NoReply {
    fn from(error: WireError) -> Self {
        NoReply(error)
    }
}

/// The process-group names under which herd actors advertise themselves.
/// pg groups are replicated to every connected peer by ractor_cluster.
pub mod groups {
    /// Every node's membership actor.
    pub const MEMBERSHIP: &str = "herd.membership";
    /// The orchestrator (at most one per cluster in this release).
    pub const ORCHESTRATOR: &str = "herd.orchestrator";
    /// Every node's worker pool.
    pub const POOLS: &str = "herd.pools";
    /// Every node's supervisor: monitors ask it to restart a component.
    pub const SUPERVISORS: &str = "herd.supervisors";
    /// Every orchestrator-role node's replica of the task book (its Raft
    /// RPC endpoint).
    pub const REPLICAS: &str = "herd.replicas";
}
