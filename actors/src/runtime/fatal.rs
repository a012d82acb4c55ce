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
    /// This node's replica belongs to a replica group founded after another
    /// group the cluster holds: two groups were founded apart, and the
    /// older one is kept.
    #[error(
        "node {local}'s replica belongs to the task book group founded by {own_founder} at {own_at}, but the cluster's group was founded earlier by {older_founder} at {older_at}: two groups were founded by orchestrator-role nodes that could not reach each other at start (give every node the same --seed list), or the older group lost a majority of its replicas and this one was founded beside what is left of it (then stop the older group's remaining nodes instead); {tasks}",
        own_founder = own.founder_node,
        own_at = own.founded_at,
        older_founder = older.founder_node,
        older_at = older.founded_at,
        tasks = younger_group_tasks(data_dir.as_deref()),
    )]
    YoungerReplicaGroup {
        /// This node.
        local: String,
        /// Its replica's group.
        own: herd_protocol::messages::replica::ReplicaGroupId,
        /// The older group in the cluster.
        older: herd_protocol::messages::replica::ReplicaGroupId,
        /// This node's data directory, if it has one.
        data_dir: Option<std::path::PathBuf>,
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

/// Where the tasks a younger replica group accepted are, and what to do
/// with them.
fn younger_group_tasks(data_dir: Option<&std::path::Path>) -> String {
    match data_dir {
        Some(dir) => format!(
            "tasks accepted by this group are in {}: let them finish with the other nodes stopped, or move {} away to join the older group as a new replica",
            dir.display(),
            dir.join(crate::replica::file::FILE_NAME).display()
        ),
        None => "this node keeps its replica in memory (no --data-dir), so tasks accepted by this group and not finished are lost with it: submit them again to the cluster".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use herd_protocol::messages::replica::ReplicaGroupId;
    use herd_protocol::{NodeName, UnixMillis};

    use super::*;

    fn group(founder_node: &str, founded_at: u64) -> ReplicaGroupId {
        ReplicaGroupId {
            founded_at: UnixMillis(founded_at),
            founder: 1,
            founder_node: NodeName::parse(founder_node).unwrap(),
        }
    }

    #[test]
    fn a_younger_group_s_node_is_told_both_groups_and_what_to_do_with_its_tasks() {
        let error = FatalError::YoungerReplicaGroup {
            local: "n2#7".to_string(),
            own: group("n2", 1_700_000_002_000),
            older: group("n1", 1_700_000_001_000),
            data_dir: Some("/var/lib/herd".into()),
        };
        assert!(error.is_configuration());
        let message = error.to_string();
        for expected in [
            "founded by n2 at 2023-11-14T22:13:22.000Z",
            "founded earlier by n1 at 2023-11-14T22:13:21.000Z",
            "give every node the same --seed list",
            "tasks accepted by this group are in /var/lib/herd",
            "move /var/lib/herd/replica.redb away to join the older group",
        ] {
            assert!(message.contains(expected), "{expected:?} in {message}");
        }
        let in_memory = FatalError::YoungerReplicaGroup {
            local: "n2#7".to_string(),
            own: group("n2", 2_000),
            older: group("n1", 1_000),
            data_dir: None,
        };
        assert!(in_memory.to_string().contains("in memory"));
    }
}
