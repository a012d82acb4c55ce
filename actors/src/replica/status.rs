//! The replica group as `/v1/cluster` shows it: a pure function of
//! openraft's metrics (whether a leader still reaches a quorum is checked
//! actively, in `runtime::leadership`).

use herd_protocol::messages::replica::{ReplicaRole, ReplicaView, ReplicationStatus};
use openraft::{RaftMetrics, ServerState};

use super::types::{ReplicaId, ReplicaNode};

/// The group as the replica whose `metrics` these are sees it. `reachable`
/// says whether a member (by id, on its node) can be reached: its node is up
/// and still runs that replica (one whose node came back without its
/// storage runs a new one).
pub fn replication_status(
    metrics: &RaftMetrics<ReplicaId, ReplicaNode>,
    reachable: impl Fn(ReplicaId, &ReplicaNode) -> bool,
) -> ReplicationStatus {
    let membership = metrics.membership_config.membership();
    let voters: Vec<ReplicaId> = membership.voter_ids().collect();
    let matched = |id: ReplicaId| {
        if id == metrics.id {
            return metrics.last_applied.map(|log_id| log_id.index);
        }
        metrics
            .replication
            .as_ref()
            .and_then(|replication| replication.get(&id).copied().flatten())
            .map(|log_id| log_id.index)
    };
    let mut replicas: Vec<(bool, ReplicaView)> = membership
        .nodes()
        .map(|(id, node)| {
            let voter = voters.contains(id);
            let state = if *id == metrics.id {
                match metrics.state {
                    ServerState::Leader => ReplicaRole::Leader,
                    ServerState::Candidate => ReplicaRole::Candidate,
                    ServerState::Learner => ReplicaRole::Learner,
                    ServerState::Follower | ServerState::Shutdown => ReplicaRole::Follower,
                }
            } else if !reachable(*id, node) {
                ReplicaRole::Unreachable
            } else if metrics.current_leader == Some(*id) {
                ReplicaRole::Leader
            } else if voter {
                ReplicaRole::Follower
            } else {
                ReplicaRole::Learner
            };
            let view = ReplicaView {
                name: node.name.clone(),
                state,
                applied_index: matched(*id),
            };
            (voter, view)
        })
        .collect();
    replicas.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.name.cmp(&b.1.name)));
    ReplicationStatus {
        term: metrics.current_term,
        leader: metrics
            .current_leader
            .and_then(|id| membership.get_node(&id))
            .map(|node| node.name.clone()),
        replicas: replicas.into_iter().map(|(_, view)| view).collect(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::Arc;

    use openraft::{CommittedLeaderId, LogId, Membership, StoredMembership};

    use super::*;

    fn node(name: &str) -> ReplicaNode {
        ReplicaNode {
            name: name.to_string(),
            cluster_addr: format!("{name}:7100"),
        }
    }

    fn leader_metrics() -> RaftMetrics<ReplicaId, ReplicaNode> {
        let mut metrics = RaftMetrics::new_initial(1);
        let membership = Membership::new(
            vec![BTreeSet::from([1, 2, 3])],
            BTreeMap::from([
                (1, node("n1")),
                (2, node("n2")),
                (3, node("n3")),
                (4, node("n4")),
            ]),
        );
        metrics.membership_config = Arc::new(StoredMembership::new(None, membership));
        metrics.state = ServerState::Leader;
        metrics.current_leader = Some(1);
        metrics.current_term = 7;
        let at = |index| Some(LogId::new(CommittedLeaderId::new(7, 1), index));
        metrics.last_applied = at(120);
        metrics.replication = Some(BTreeMap::from([(2, at(118)), (3, at(90)), (4, at(60))]));
        metrics.millis_since_quorum_ack = Some(40);
        metrics
    }

    #[test]
    fn the_leader_shows_every_replica_with_its_role_and_index_voters_first() {
        let status = replication_status(&leader_metrics(), |_, node| node.name != "n3");
        assert_eq!(status.term, 7);
        assert_eq!(status.leader.as_deref(), Some("n1"));
        let shown: Vec<(&str, ReplicaRole, Option<u64>)> = status
            .replicas
            .iter()
            .map(|r| (r.name.as_str(), r.state, r.applied_index))
            .collect();
        assert_eq!(
            shown,
            [
                ("n1", ReplicaRole::Leader, Some(120)),
                ("n2", ReplicaRole::Follower, Some(118)),
                ("n3", ReplicaRole::Unreachable, Some(90)),
                ("n4", ReplicaRole::Learner, Some(60)),
            ]
        );
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["replicas"][3]["state"], "learner");
    }
}
