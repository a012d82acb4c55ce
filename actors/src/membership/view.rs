//! The cluster as one node sees it, published to every local component.

use std::collections::BTreeMap;

use herd_protocol::messages::membership::{Greeting, Role};
use herd_protocol::messages::orchestrator::MemberState;
use herd_protocol::messages::replica::ReplicaGroupId;
use herd_protocol::{MemberId, NodeName, UnixMillis};
use ractor::ActorId;
use ractor_cluster::NodeId;

/// One node in the view.
#[derive(Clone, Debug, PartialEq)]
pub struct MemberInfo {
    /// Name and incarnation.
    pub member: MemberId,
    /// Up, suspect, down or left.
    pub state: MemberState,
    /// Its roles.
    pub roles: Vec<Role>,
    /// Where peers dial it.
    pub cluster_addr: String,
    /// Its HTTP API.
    pub http_addr: Option<String>,
    /// Worker slots it hosts.
    pub workers: u32,
    /// When its orchestrator started, if it runs one (single replication).
    pub orchestrator_since: Option<UnixMillis>,
    /// The id of its task book replica (raft replication).
    pub replica_id: Option<u64>,
    /// The group its replica belongs to, once named (raft replication).
    pub replica_group: Option<ReplicaGroupId>,
    /// The ractor_cluster session to it (`None` for this node, or when down).
    pub session: Option<NodeId>,
    /// When `state` last changed.
    pub state_since: UnixMillis,
}

impl MemberInfo {
    /// A member described by its greeting, up now.
    pub fn from_greeting(greeting: &Greeting, session: Option<NodeId>, now: UnixMillis) -> Self {
        MemberInfo {
            member: greeting.member.clone(),
            state: MemberState::Up,
            roles: greeting.roles.clone(),
            cluster_addr: greeting.cluster_addr.clone(),
            http_addr: greeting.http_addr.clone(),
            workers: greeting.workers,
            orchestrator_since: greeting.orchestrator_since,
            replica_id: greeting.replica_id,
            replica_group: greeting.replica_group.clone(),
            session,
            state_since: now,
        }
    }

    /// True if the member has `role`.
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// What this node knows about the cluster. Cheap to clone.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterView {
    /// This node.
    pub local: MemberInfo,
    /// Every other node ever greeted (latest incarnation per name).
    pub peers: BTreeMap<NodeName, MemberInfo>,
    /// The orchestrator the cluster keeps, if any is up.
    pub orchestrator: Option<MemberId>,
    /// With raft replication: the highest-term leadership claim this node
    /// has heard (see [`LeaderClaim`]).
    pub leader: Option<LeaderClaim>,
    /// True once every seed was reached or tried at least once, so the node
    /// knows whether it joined an existing cluster.
    pub discovery_complete: bool,
}

impl ClusterView {
    /// A view holding only this node.
    pub fn alone(local: MemberInfo) -> Self {
        let mut view = ClusterView {
            local,
            peers: BTreeMap::new(),
            orchestrator: None,
            leader: None,
            discovery_complete: false,
        };
        view.orchestrator = view.elect_orchestrator();
        view
    }

    /// The member hosting `actor` (local actors are on this node).
    pub fn member_of_actor(&self, actor: ActorId) -> Option<&MemberInfo> {
        match actor {
            ActorId::Local(_) => Some(&self.local),
            ActorId::Remote { node_id, .. } => self.peers.values().find(|peer| {
                matches!(peer.state, MemberState::Up | MemberState::Suspect)
                    && peer.session == Some(node_id)
            }),
        }
    }

    /// The member named `name`, this node included.
    pub fn member_named(&self, name: &NodeName) -> Option<&MemberInfo> {
        if &self.local.member.name == name {
            Some(&self.local)
        } else {
            self.peers.get(name)
        }
    }

    /// Up members, this node first.
    pub fn up_members(&self) -> impl Iterator<Item = &MemberInfo> {
        std::iter::once(&self.local).chain(
            self.peers
                .values()
                .filter(|peer| peer.state == MemberState::Up),
        )
    }

    /// True if `member` (this exact incarnation) is up: it gets new work.
    pub fn is_up(&self, member: &MemberId) -> bool {
        self.up_members().any(|info| &info.member == member)
    }

    /// True if `member` is up or merely suspect: its attempts are not yet
    /// given up, but it gets no new work while suspect.
    pub fn is_alive(&self, member: &MemberId) -> bool {
        &self.local.member == member
            || self.peers.get(&member.name).is_some_and(|peer| {
                &peer.member == member
                    && matches!(peer.state, MemberState::Up | MemberState::Suspect)
            })
    }

    /// The replica groups of the live peers, as their greetings named them.
    pub fn peer_groups(&self) -> impl Iterator<Item = &ReplicaGroupId> {
        self.peers
            .values()
            .filter(|peer| matches!(peer.state, MemberState::Up | MemberState::Suspect))
            .filter_map(|peer| peer.replica_group.as_ref())
    }

    /// The replica group whose leader this node follows (see
    /// [`replica_groups`](super::replica_groups)): its own replica's, else
    /// the oldest of its live peers'.
    pub fn followed_group(&self) -> Option<&ReplicaGroupId> {
        super::replica_groups::followed_group(self.local.replica_group.as_ref(), self.peer_groups())
    }

    /// Whether a claim for `group` is one this node follows.
    pub fn follows_claim(&self, group: Option<&ReplicaGroupId>) -> bool {
        super::replica_groups::follows_claim(self.followed_group(), group)
    }

    /// The orchestrator to use. With single replication, the senior
    /// orchestrator among up members: the one running longest, ties broken
    /// by name (any other is a second orchestrator and is refused). With
    /// raft replication (no member has `orchestrator_since`), the leader of
    /// the highest-term claim, while it leads and is alive, and only if it
    /// leads the replica group this node follows. An orchestrator-role node
    /// in the other mode than the earliest-started one is refused by it
    /// (see `greetings.rs`); until it has left, the earliest one's mode
    /// rules here too, so a node that greeted the newcomer first (a worker
    /// does not refuse it) never takes it for the orchestrator.
    pub fn elect_orchestrator(&self) -> Option<MemberId> {
        let raft_leader = || {
            self.leader
                .as_ref()
                .filter(|claim| {
                    claim.leading
                        && self.is_alive(&claim.member)
                        && self.follows_claim(claim.group.as_ref())
                })
                .map(|claim| claim.member.clone())
        };
        let earliest_runs_raft = self
            .up_members()
            .filter(|info| info.has_role(Role::Orchestrator))
            .min_by(|a, b| {
                (a.member.incarnation, &a.member.name).cmp(&(b.member.incarnation, &b.member.name))
            })
            .is_some_and(|info| info.replica_id.is_some());
        if earliest_runs_raft {
            return raft_leader();
        }
        self.up_members()
            .filter_map(|info| info.orchestrator_since.map(|since| (since, &info.member)))
            .min_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.name.cmp(&b.1.name)))
            .map(|(_, member)| member.clone())
            .or_else(raft_leader)
    }
}

/// A node's claim to lead the task book's Raft group in a term (or to have
/// stopped leading in it). Raft elects at most one leader per term, so the
/// claim of the highest term is the current one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderClaim {
    /// The claimant.
    pub member: MemberId,
    /// The term.
    pub term: u64,
    /// False once the claimant stopped leading in `term`.
    pub leading: bool,
    /// The replica group it leads (terms of different groups are not
    /// comparable: see [`ClusterView::follows_claim`]).
    pub group: Option<ReplicaGroupId>,
}

impl LeaderClaim {
    /// Whether `claim` replaces `current`: a higher term always does; the
    /// same term only from the same node (a leader stepping down, or one
    /// restarted on its data directory that leads its term again under a
    /// new incarnation).
    pub fn supersedes(claim: &LeaderClaim, current: Option<&LeaderClaim>) -> bool {
        match current {
            None => true,
            Some(current) => {
                claim.term > current.term
                    || (claim.term == current.term && claim.member.name == current.member.name)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_protocol::Incarnation;

    fn info(name: &str, orchestrator_since: Option<u64>, state: MemberState) -> MemberInfo {
        MemberInfo {
            member: MemberId {
                name: NodeName::parse(name).unwrap(),
                incarnation: Incarnation(1),
            },
            state,
            roles: vec![],
            cluster_addr: format!("{name}:7100"),
            http_addr: None,
            workers: 0,
            orchestrator_since: orchestrator_since.map(UnixMillis),
            replica_id: None,
            replica_group: None,
            session: Some(1),
            state_since: UnixMillis(0),
        }
    }

    #[test]
    fn the_longest_running_up_orchestrator_is_kept() {
        let mut view = ClusterView::alone(info("n2", Some(200), MemberState::Up));
        assert_eq!(view.elect_orchestrator().unwrap().name.as_str(), "n2");
        view.peers.insert(
            NodeName::parse("n1").unwrap(),
            info("n1", Some(100), MemberState::Up),
        );
        assert_eq!(view.elect_orchestrator().unwrap().name.as_str(), "n1");
        view.peers
            .get_mut(&NodeName::parse("n1").unwrap())
            .unwrap()
            .state = MemberState::Down;
        assert_eq!(view.elect_orchestrator().unwrap().name.as_str(), "n2");
        // Same start time: the name decides, on every node alike.
        view.peers.insert(
            NodeName::parse("n0").unwrap(),
            info("n0", Some(200), MemberState::Up),
        );
        assert_eq!(view.elect_orchestrator().unwrap().name.as_str(), "n0");
    }

    #[test]
    fn with_raft_replication_the_alive_leader_of_the_highest_term_is_kept() {
        let mut view = ClusterView::alone(info("n1", None, MemberState::Up));
        for name in ["n2", "n3"] {
            view.peers.insert(
                NodeName::parse(name).unwrap(),
                info(name, None, MemberState::Up),
            );
        }
        let claim = |name: &str, term: u64, leading: bool| LeaderClaim {
            member: MemberId {
                name: NodeName::parse(name).unwrap(),
                incarnation: Incarnation(1),
            },
            term,
            leading,
            group: None,
        };
        assert_eq!(view.elect_orchestrator(), None);
        let first = claim("n2", 3, true);
        assert!(LeaderClaim::supersedes(&first, None));
        view.leader = Some(first.clone());
        assert_eq!(view.elect_orchestrator().unwrap().name.as_str(), "n2");
        // An older term never wins; another claimant of the same term is
        // ignored (Raft elects one leader per term); a newer term wins.
        assert!(!LeaderClaim::supersedes(
            &claim("n3", 2, true),
            Some(&first)
        ));
        assert!(!LeaderClaim::supersedes(
            &claim("n3", 3, true),
            Some(&first)
        ));
        assert!(LeaderClaim::supersedes(&claim("n3", 4, true), Some(&first)));
        // The same node under a new incarnation (restarted on its data
        // directory) may claim its term again.
        let mut restarted = claim("n2", 3, true);
        restarted.member.incarnation = Incarnation(2);
        assert!(LeaderClaim::supersedes(&restarted, Some(&first)));
        // Stepping down in its term clears it.
        let resigned = claim("n2", 3, false);
        assert!(LeaderClaim::supersedes(&resigned, Some(&first)));
        view.leader = Some(resigned);
        assert_eq!(view.elect_orchestrator(), None);
        // A leader declared down is not used.
        view.leader = Some(claim("n3", 5, true));
        view.peers
            .get_mut(&NodeName::parse("n3").unwrap())
            .unwrap()
            .state = MemberState::Down;
        assert_eq!(view.elect_orchestrator(), None);
    }

    #[test]
    fn an_orchestrator_in_the_other_mode_than_the_earliest_one_is_never_elected() {
        // A worker's view: n1 (raft, started first) leads; n9 joins in
        // single mode and runs an orchestrator until n1 refuses it.
        let orchestrator_role = |mut info: MemberInfo, incarnation: u64| {
            info.roles = vec![Role::Orchestrator];
            info.member.incarnation = Incarnation(incarnation);
            info
        };
        let mut view = ClusterView::alone(info("n2", None, MemberState::Up));
        let mut n1 = orchestrator_role(info("n1", None, MemberState::Up), 10);
        n1.replica_id = Some(1);
        view.leader = Some(LeaderClaim {
            member: n1.member.clone(),
            term: 2,
            leading: true,
            group: None,
        });
        view.peers.insert(n1.member.name.clone(), n1);
        let n9 = orchestrator_role(info("n9", Some(50), MemberState::Up), 20);
        view.peers.insert(n9.member.name.clone(), n9);
        assert_eq!(view.elect_orchestrator().unwrap().name.as_str(), "n1");

        // The other way round: a single-mode cluster keeps its orchestrator
        // while a raft newcomer that founded a group of its own is refused.
        let mut view = ClusterView::alone(info("n2", None, MemberState::Up));
        let n1 = orchestrator_role(info("n1", Some(5), MemberState::Up), 10);
        view.peers.insert(n1.member.name.clone(), n1);
        let mut n9 = orchestrator_role(info("n9", None, MemberState::Up), 20);
        n9.replica_id = Some(9);
        view.leader = Some(LeaderClaim {
            member: n9.member.clone(),
            term: 1,
            leading: true,
            group: None,
        });
        view.peers.insert(n9.member.name.clone(), n9);
        assert_eq!(view.elect_orchestrator().unwrap().name.as_str(), "n1");
    }

    #[test]
    fn only_the_leader_of_the_followed_group_is_the_orchestrator_whatever_the_terms() {
        use herd_protocol::messages::replica::ReplicaGroupId;
        let group = |founder: &str, founded_at: u64| ReplicaGroupId {
            founded_at: UnixMillis(founded_at),
            founder: 1,
            founder_node: NodeName::parse(founder).unwrap(),
        };
        let (older, younger) = (group("n1", 1_000), group("n2", 2_000));
        // A worker node that sees both groups' replica nodes.
        let mut view = ClusterView::alone(info("n3", None, MemberState::Up));
        for (name, replica_group) in [("n1", &older), ("n2", &younger)] {
            let mut peer = info(name, None, MemberState::Up);
            peer.replica_group = Some(replica_group.clone());
            view.peers.insert(NodeName::parse(name).unwrap(), peer);
        }
        assert_eq!(view.followed_group(), Some(&older));
        let claim = |name: &str, term: u64, group: &ReplicaGroupId| LeaderClaim {
            member: MemberId {
                name: NodeName::parse(name).unwrap(),
                incarnation: Incarnation(1),
            },
            term,
            leading: true,
            group: Some(group.clone()),
        };
        // The younger group's leader, even of a higher term, is not used.
        view.leader = Some(claim("n2", 9, &younger));
        assert_eq!(view.elect_orchestrator(), None);
        view.leader = Some(claim("n1", 1, &older));
        assert_eq!(view.elect_orchestrator().unwrap().name.as_str(), "n1");
        // Once the older group's nodes are gone, the younger is followed.
        view.peers
            .get_mut(&NodeName::parse("n1").unwrap())
            .unwrap()
            .state = MemberState::Left;
        assert_eq!(view.followed_group(), Some(&younger));
        // A replica node follows its own group's leader only.
        view.local.replica_group = Some(older.clone());
        view.leader = Some(claim("n2", 9, &younger));
        assert_eq!(view.elect_orchestrator(), None);
    }
}
