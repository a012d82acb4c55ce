/// Why a node stops on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeEvent {
    /// It must not stay in the cluster.
    Fatal(FatalError),
    /// It was drained on request (`herd drain`) and should now leave.
    Drained,
}

/// A condition that forces a node to stop: it must not stay in the cluster.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FatalError {
    /// This node runs a second orchestrator.
    #[error(
        "node {local} was started with the orchestrator role, but the cluster already runs orchestrator {existing}; with --replication single a cluster runs exactly one orchestrator: remove `orchestrator` from --roles / HERD_ROLES on this node, or stop the other one first (or run every node with --replication raft, where orchestrator-role nodes replicate one task book)"
    )]
    SecondOrchestrator {
        /// This node.
        local: String,
        /// The orchestrator the cluster keeps.
        existing: String,
    },
    /// Another live node uses this node's name.
    #[error(
        "another node named {name} ({existing} at {address}) is already in the cluster; node names must be unique: give this node another --name / HERD_NAME"
    )]
    DuplicateName {
        /// The contested name.
        name: String,
        /// The other node.
        existing: String,
        /// The other node's cluster address.
        address: String,
    },
    /// A peer speaks another protocol version.
    #[error(
        "peer {peer} speaks herd protocol version {theirs}, this node speaks {ours}; run the same herd release on every node"
    )]
    ProtocolVersion {
        /// The peer.
        peer: String,
        /// Its version.
        theirs: u32,
        /// Ours.
        ours: u32,
    },
    /// An orchestrator-role peer uses the other replication mode.
    #[error(
        "node {local} runs --replication {local_mode}, but orchestrator-role node {existing} of the cluster runs --replication {existing_mode}; set the same --replication / HERD_REPLICATION / cluster.replication on every node"
    )]
    ReplicationMismatch {
        /// This node.
        local: String,
        /// Its mode.
        local_mode: String,
        /// The peer that refused it.
        existing: String,
        /// The peer's mode.
        existing_mode: String,
    },
    /// A core component failed and could not be restarted.
    #[error("the {component} failed and could not be restarted: {reason}")]
    ComponentFailed {
        /// Which component.
        component: String,
        /// Why.
        reason: String,
    },
}

impl FatalError {
    /// True for errors an operator fixes in configuration (exit code 2).
    pub fn is_configuration(&self) -> bool {
        !matches!(self, FatalError::ComponentFailed { .. })
    }
}
