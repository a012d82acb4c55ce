//! Raft leadership on an orchestrator-role node (raft replication): when
//! this node's replica leads, its orchestrator runs; when it stops leading,
//! the orchestrator stops. Also the founding of the group and, while
//! leading, the changes of the replica set.
//!
//! A task per node watches the replica's Raft metrics and tells the
//! supervisor:
//! - [`LeadershipEvent::Lead`] once the replica leads a term and has
//!   applied everything committed before it (openraft's linearizable read:
//!   the leader's first entry of the term is committed and applied). The
//!   orchestrator starts from a copy of the replica's book at that point.
//!   Before that copy, the previous orchestrator's proposer must have
//!   finished, so nothing it proposed lands after the copy, and the group
//!   must be named in the log ([`crate::replica::group`]), so the claim
//!   names it.
//! - [`LeadershipEvent::Lost`] once the replica no longer leads that term.
//!
//! Founding: the group is initialized once, by one node: the up
//! orchestrator-role node with the smallest name, once discovery is
//! complete, no node claims leadership, and it either has no seeds or
//! reached a peer (a node that reached none of its seeds waits rather than
//! found a second group). Every other replica is taken in by the leader as
//! a learner and promoted by [`membership_plan`](crate::replica::membership_plan),
//! but only a replica of no group yet or of the leader's own: a replica of
//! a group founded apart holds another book, which cannot be merged.

use std::collections::BTreeMap;
use std::time::Duration;

use herd_protocol::Mailbox;
use herd_protocol::messages::membership::Role;
use herd_protocol::messages::orchestrator::MemberState;
use openraft::{ChangeMembers, Raft, RaftMetrics, ServerState};
use ractor::ActorRef;
use tokio::sync::{oneshot, watch};
use tracing::{info, warn};

use super::supervisor::{SupervisorLocal, SupervisorMsg};
use crate::membership::ClusterView;
use crate::replica::group;
use crate::replica::membership_plan::{self, MembershipStep, ReplicaSet, ReplicaStatus};
use crate::replica::proposer::ProposerDone;
use crate::replica::state_machine::ReplicaBook;
use crate::replica::types::{ReplicaId, ReplicaNode, ReplicaTypes};
use crate::task_book::TaskBook;

/// How long a would-be founder keeps seeing the founding conditions before
/// it founds: a node just started may not have heard a leader's claim yet.
const FOUNDING_GRACE: Duration = Duration::from_secs(1);

/// How often the leader reviews the replica set.
const PLAN_EVERY: Duration = Duration::from_millis(500);

/// A learner within this many entries of the leader's log counts as caught
/// up (it can vote without stalling commits).
const CAUGHT_UP_LAG: u64 = 1_000;

/// What the leadership task tells the supervisor.
pub enum LeadershipEvent {
    /// Start the orchestrator: this replica leads `term`.
    Lead {
        /// The term.
        term: u64,
        /// The replica's book, applied through the term's first entry.
        book: Box<TaskBook>,
        /// Where the orchestrator sends its proposer's completion, which
        /// the next leadership waits for.
        proposer_done: oneshot::Sender<ProposerDone>,
    },
    /// Stop the orchestrator: this replica no longer leads `term`.
    Lost {
        /// The term.
        term: u64,
    },
}

impl std::fmt::Debug for LeadershipEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LeadershipEvent::Lead { term, .. } => write!(f, "Lead {{ term: {term} }}"),
            LeadershipEvent::Lost { term } => write!(f, "Lost {{ term: {term} }}"),
        }
    }
}

/// What the leadership task watches and whom it tells.
pub struct LeadershipArgs {
    /// This node's replica.
    pub raft: Raft<ReplicaTypes>,
    /// Its id.
    pub id: ReplicaId,
    /// Where it runs.
    pub node: ReplicaNode,
    /// Its book.
    pub book: ReplicaBook,
    /// The cluster view.
    pub view: watch::Receiver<ClusterView>,
    /// Whether this node has seeds (see the module docs on founding).
    pub has_seeds: bool,
    /// Voters the group keeps.
    pub voters: usize,
    /// The supervisor.
    pub supervisor: ActorRef<SupervisorMsg>,
    /// Bumped by the supervisor when the orchestrator stopped while this
    /// replica may still lead: start it again if so.
    pub restarts: watch::Receiver<u64>,
    /// Bumped by the supervisor when a monitor asks this replica to stop
    /// leading (its orchestrator was unresponsive).
    pub step_down: watch::Receiver<u64>,
}

/// Starts the leadership task; it ends when the replica shuts down or the
/// supervisor is gone.
pub fn start(args: LeadershipArgs) -> tokio::task::JoinHandle<()> {
    tokio::spawn(publish_gauges(args.raft.metrics()));
    tokio::spawn(run(args))
}

/// Keeps the replica's gauges and the leader-change counter current until
/// it shuts down.
async fn publish_gauges(mut metrics: watch::Receiver<RaftMetrics<ReplicaId, ReplicaNode>>) {
    let mut leader = None;
    loop {
        {
            let current = metrics.borrow_and_update();
            if current.state == ServerState::Shutdown {
                return;
            }
            if current.current_leader.is_some() && current.current_leader != leader {
                metrics::counter!("herd_leader_changes_total").increment(1);
            }
            leader = current.current_leader;
            let last = current.last_log_index.unwrap_or(0);
            let purged = current.purged.map_or(0, |id| id.index + 1);
            metrics::gauge!("herd_raft_term").set(current.current_term as f64);
            metrics::gauge!("herd_raft_log_entries").set(last.saturating_sub(purged) as f64);
            metrics::gauge!("herd_raft_applied_index")
                .set(current.last_applied.map_or(0, |id| id.index) as f64);
            metrics::gauge!("herd_raft_leader")
                .set(f64::from(u8::from(current.state == ServerState::Leader)));
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

async fn run(mut args: LeadershipArgs) {
    found_if_due(&args).await;
    let mut metrics = args.raft.metrics();
    let mut previous: Option<oneshot::Receiver<ProposerDone>> = None;
    // The term last logged as unconfirmed, so a leader cut off from its
    // followers says so once, not every check.
    let mut unconfirmed_term = None;
    loop {
        let Some(term) = wait_for(&mut metrics, |m| {
            (m.state == ServerState::Leader).then_some(m.current_term)
        })
        .await
        else {
            return;
        };
        if let Some(done) = previous.take()
            && let Ok(done) = done.await
        {
            done.wait().await;
        }
        if let Err(error) = args.raft.ensure_linearizable().await {
            if unconfirmed_term != Some(term) {
                unconfirmed_term = Some(term);
                info!(term, %error, "leads without a confirmed quorum; not starting the orchestrator until a majority answers");
            }
            tokio::time::sleep(QUORUM_CHECK).await;
            continue;
        }
        if !leads(&args.raft.metrics().borrow(), term) {
            continue;
        }
        let founder_node = args.view.borrow().local.member.name.clone();
        let named =
            group::name_if_unnamed(&args.raft, &args.book, args.id, &founder_node, term).await;
        let group = match named {
            Ok(group) => group,
            Err(error) => {
                warn!(term, %error, "leads, but the replica group is not named yet; trying again before starting the orchestrator");
                tokio::time::sleep(QUORUM_CHECK).await;
                continue;
            }
        };
        let (_, book) = args.book.copy_of_book();
        let (proposer_done, done) = oneshot::channel();
        previous = Some(done);
        info!(
            term,
            replica = args.id,
            %group,
            "this replica leads; starting the orchestrator"
        );
        let lead = LeadershipEvent::Lead {
            term,
            book: Box::new(book),
            proposer_done,
        };
        if tell(&args.supervisor, lead).is_err() {
            return;
        }
        args.restarts.borrow_and_update();
        args.step_down.borrow_and_update();
        let mut stepping_down = false;
        let mut plan = tokio::time::interval(PLAN_EVERY);
        let mut quorum = QuorumWatch::new();
        let mut quorum_check = tokio::time::interval(QUORUM_CHECK);
        let stopped_leading = loop {
            // Biased, in this order: a monitor's step-down request is sent
            // before the stuck orchestrator is killed, so it must win over the
            // restart that the kill brings.
            tokio::select! {
                biased;
                changed = args.step_down.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    // openraft 0.9 has no leadership transfer: with no
                    // heartbeats, the followers time out and elect another
                    // replica, whose higher term deposes this one.
                    warn!(term, "stepping down at a monitor's request: heartbeats paused until another replica leads");
                    args.raft.runtime_config().heartbeat(false);
                    stepping_down = true;
                    break true;
                }
                left = wait_for(&mut metrics, |m| (!leads(m, term)).then_some(())) => {
                    break left.is_some();
                }
                changed = args.restarts.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    // The orchestrator stopped while this replica leads:
                    // start it again (after its proposer is done).
                    break false;
                }
                _ = quorum_check.tick() => {
                    if quorum.lost(&args.raft).await {
                        warn!(term, "this leader has heard from no quorum within {QUORUM_LEASE:?}; stopping its orchestrator (writes answer 503 no_quorum until a quorum is back)");
                        break true;
                    }
                }
                _ = plan.tick() => {
                    // A change that cannot commit (no quorum) must not keep
                    // this loop from noticing the lost leadership.
                    let _ = tokio::time::timeout(QUORUM_LEASE, plan_membership(&args, term)).await;
                }
            }
        };
        if stopped_leading {
            info!(
                term,
                "this replica no longer leads; stopping the orchestrator"
            );
            if tell(&args.supervisor, LeadershipEvent::Lost { term }).is_err() {
                return;
            }
        }
        if stepping_down {
            let deposed = tokio::time::timeout(
                STEP_DOWN_LIMIT,
                wait_for(&mut metrics, |m| (!leads(m, term)).then_some(())),
            )
            .await;
            args.raft.runtime_config().heartbeat(true);
            match deposed {
                Ok(_) => info!(term, "stepped down; another replica leads"),
                Err(_) => warn!(
                    term,
                    "no other replica took over within {STEP_DOWN_LIMIT:?}; leading again"
                ),
            }
        }
    }
}

/// How long a leader stepping down waits for another replica to be
/// elected before it resumes (a group whose only voter it is).
const STEP_DOWN_LIMIT: Duration = Duration::from_secs(10);

/// How often a leader checks that it still hears from a quorum, and how
/// long one check may take.
const QUORUM_CHECK: Duration = Duration::from_millis(150);

/// How long a leader may go without a quorum's acknowledgement before its
/// orchestrator stops: several heartbeats (100 ms each), under the 1.1 s
/// at least that a follower waits before it stands for election (openraft's
/// 600 ms leader lease plus an election timeout of 500–600 ms), so a
/// deposed leader's orchestrator has stopped before another can start.
const QUORUM_LEASE: Duration = Duration::from_millis(750);

/// Whether the leader still hears from a quorum: every check asks openraft
/// to confirm the leadership with a heartbeat round (what a linearizable
/// read does). openraft's own `millis_since_quorum_ack` is only as fresh as
/// its last published metrics, which an idle leader does not republish.
struct QuorumWatch {
    confirmed_at: tokio::time::Instant,
}

impl QuorumWatch {
    fn new() -> Self {
        // The leadership was confirmed by a quorum just before the
        // orchestrator started.
        QuorumWatch {
            confirmed_at: tokio::time::Instant::now(),
        }
    }

    /// True once no heartbeat round reached a quorum for [`QUORUM_LEASE`].
    async fn lost(&mut self, raft: &Raft<ReplicaTypes>) -> bool {
        let confirmed = tokio::time::timeout(QUORUM_CHECK, raft.get_read_log_id())
            .await
            .is_ok_and(|answer| answer.is_ok());
        let now = tokio::time::Instant::now();
        if confirmed {
            self.confirmed_at = now;
        }
        now.duration_since(self.confirmed_at) > QUORUM_LEASE
    }
}

fn tell(supervisor: &ActorRef<SupervisorMsg>, event: LeadershipEvent) -> Result<(), ()> {
    supervisor
        .cast(Mailbox::Local(SupervisorLocal::Leadership(event)))
        .map_err(|_| ())
}

fn leads(metrics: &RaftMetrics<ReplicaId, ReplicaNode>, term: u64) -> bool {
    metrics.state == ServerState::Leader && metrics.current_term == term
}

/// Waits until `check` says something of the metrics; `None` once the
/// replica has shut down.
async fn wait_for<T>(
    metrics: &mut watch::Receiver<RaftMetrics<ReplicaId, ReplicaNode>>,
    check: impl Fn(&RaftMetrics<ReplicaId, ReplicaNode>) -> Option<T>,
) -> Option<T> {
    loop {
        {
            let current = metrics.borrow_and_update();
            if current.state == ServerState::Shutdown {
                return None;
            }
            if let Some(found) = check(&current) {
                return Some(found);
            }
        }
        metrics.changed().await.ok()?;
    }
}

/// Initializes a one-voter group here if this node is the founder (see the
/// module docs); returns once the replica belongs to a group either way.
async fn found_if_due(args: &LeadershipArgs) {
    let mut view = args.view.clone();
    let mut metrics = args.raft.metrics();
    let mut since: Option<tokio::time::Instant> = None;
    loop {
        if in_a_group(&metrics.borrow()) {
            return;
        }
        let founder = is_founder(&view.borrow(), args.has_seeds);
        let now = tokio::time::Instant::now();
        since = founder.then(|| since.unwrap_or(now));
        if let Some(since) = since
            && now.duration_since(since) >= FOUNDING_GRACE
        {
            let members = BTreeMap::from([(args.id, args.node.clone())]);
            match args.raft.initialize(members).await {
                Ok(()) => info!(replica = args.id, "founded the task book's replica group"),
                Err(error) => warn!(%error, "could not found the replica group"),
            }
            return;
        }
        tokio::select! {
            changed = view.changed() => if changed.is_err() { return },
            changed = metrics.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}

fn in_a_group(metrics: &RaftMetrics<ReplicaId, ReplicaNode>) -> bool {
    metrics
        .membership_config
        .membership()
        .nodes()
        .next()
        .is_some()
}

/// Whether this node should found the group now.
fn is_founder(view: &ClusterView, has_seeds: bool) -> bool {
    if !view.discovery_complete || view.leader.is_some() {
        return false;
    }
    // A live peer already holds a replica of a group: the group exists
    // (its leader may be between terms, or without a quorum), so this node
    // waits to be added to it. Founding another would only make a younger
    // group, whose nodes must leave once they see the older one.
    if view.peer_groups().next().is_some() {
        return false;
    }
    let reached_a_peer = view
        .peers
        .values()
        .any(|peer| peer.state == MemberState::Up);
    if has_seeds && !reached_a_peer {
        return false;
    }
    view.up_members()
        .filter(|info| info.has_role(Role::Orchestrator) && info.replica_id.is_some())
        .map(|info| &info.member.name)
        .min()
        == Some(&view.local.member.name)
}

/// One step of the replica set's plan, if one is due.
async fn plan_membership(args: &LeadershipArgs, term: u64) {
    let metrics = args.raft.metrics().borrow().clone();
    if !leads(&metrics, term) {
        return;
    }
    let membership = metrics.membership_config.membership();
    // openraft changes one membership at a time; wait for a joint one to
    // settle.
    if membership.get_joint_config().len() > 1 {
        return;
    }
    let current = ReplicaSet {
        voters: membership.voter_ids().collect(),
        learners: membership.learner_ids().collect(),
    };
    let last_index = metrics.last_log_index.unwrap_or(0);
    let matched = |id: ReplicaId| {
        metrics
            .replication
            .as_ref()
            .and_then(|replication| replication.get(&id).copied().flatten())
            .map(|log_id| log_id.index)
    };
    let own_group = args.book.group();
    let replicas: BTreeMap<ReplicaId, ReplicaStatus> = {
        let view = args.view.borrow();
        view.up_members()
            .chain(
                view.peers
                    .values()
                    .filter(|peer| peer.state == MemberState::Suspect),
            )
            .filter(|info| info.has_role(Role::Orchestrator))
            // A replica of another group holds another book: it leaves
            // (or, if its group is older, this one does), it never joins.
            .filter(|info| info.replica_group.is_none() || info.replica_group == own_group)
            .filter_map(|info| {
                let id = info.replica_id?;
                let caught_up =
                    id == args.id || matched(id).is_some_and(|at| at + CAUGHT_UP_LAG >= last_index);
                let status = ReplicaStatus {
                    node: ReplicaNode {
                        name: info.member.name.to_string(),
                        cluster_addr: info.cluster_addr.clone(),
                    },
                    gone: false,
                    caught_up,
                };
                Some((id, status))
            })
            .collect()
    };
    let Some(step) = membership_plan::next_step(args.id, &current, &replicas, args.voters) else {
        return;
    };
    info!(?step, "changing the replica set");
    let outcome = match step {
        MembershipStep::AddLearner(id, node) => args
            .raft
            .add_learner(id, node, false)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        MembershipStep::SetVoters(voters) => args
            .raft
            .change_membership(ChangeMembers::ReplaceAllVoters(voters), false)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        MembershipStep::RemoveLearners(learners) => args
            .raft
            .change_membership(ChangeMembers::RemoveNodes(learners), false)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
    };
    if let Err(error) = outcome {
        warn!(%error, "the replica set change did not commit");
    }
}

#[cfg(test)]
mod tests {
    use herd_protocol::messages::replica::ReplicaGroupId;
    use herd_protocol::{Incarnation, MemberId, NodeName, UnixMillis};

    use super::*;
    use crate::membership::MemberInfo;

    fn replica_node(name: &str, replica_id: u64) -> MemberInfo {
        MemberInfo {
            member: MemberId {
                name: NodeName::parse(name).unwrap(),
                incarnation: Incarnation(1),
            },
            state: MemberState::Up,
            roles: vec![Role::Orchestrator, Role::Worker],
            cluster_addr: format!("{name}:7100"),
            http_addr: None,
            workers: 1,
            orchestrator_since: None,
            replica_id: Some(replica_id),
            replica_group: None,
            session: Some(1),
            state_since: UnixMillis(0),
        }
    }

    fn view_of_n1_with(peers: Vec<MemberInfo>) -> ClusterView {
        let mut view = ClusterView::alone(replica_node("n1", 1));
        view.discovery_complete = true;
        for peer in peers {
            view.peers.insert(peer.member.name.clone(), peer);
        }
        view
    }

    #[test]
    fn the_smallest_named_replica_node_founds_once_discovery_is_complete() {
        let alone = view_of_n1_with(vec![]);
        assert!(is_founder(&alone, false));
        // With seeds it must have reached one of them first.
        assert!(!is_founder(&alone, true));
        let with_n2 = view_of_n1_with(vec![replica_node("n2", 2)]);
        assert!(is_founder(&with_n2, true));
        let mut undiscovered = with_n2.clone();
        undiscovered.discovery_complete = false;
        assert!(!is_founder(&undiscovered, true));
        let with_n0 = view_of_n1_with(vec![replica_node("n0", 3)]);
        assert!(!is_founder(&with_n0, true));
    }

    #[test]
    fn no_node_founds_while_a_live_peer_holds_a_replica_of_a_group() {
        // n2's replica belongs to a group whose leader is between terms (no
        // claim seen): n1 waits to be added instead of founding a younger
        // group that would have to leave.
        let mut n2 = replica_node("n2", 2);
        n2.replica_group = Some(ReplicaGroupId {
            founded_at: UnixMillis(1_000),
            founder: 2,
            founder_node: NodeName::parse("n2").unwrap(),
        });
        let view = view_of_n1_with(vec![n2.clone()]);
        assert!(!is_founder(&view, true));
        // Once that peer is gone, founding is possible again.
        n2.state = MemberState::Down;
        assert!(is_founder(&view_of_n1_with(vec![n2]), false));
    }
}
