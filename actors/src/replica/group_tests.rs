//! Three replicas in one process, talking through their real RPC endpoints
//! and the codec: election, replication of real task book commands, a
//! leader lost and replaced, and a replica that lost its storage replaced by
//! a new one that catches up from a snapshot; the group's name, learned by
//! a joiner and kept across a restart, and replicas of two groups refusing
//! each other.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::{ChangeMembers, Raft, ServerState};
use ractor::ActorRef;

use herd_protocol::messages::replica::{RaftRpcKind, ReplicaGroupId, ReplicaReply, ReplicaRequest};
use herd_protocol::{Mailbox, NodeName};
use openraft::Vote;
use openraft::raft::AppendEntriesRequest;
use ractor::rpc::CallResult;

use super::group::name_if_unnamed;
use super::local_replica::LocalReplica;
use super::network::ReplicaDirectory;
use super::rpc_server::ReplicaMsg;
use super::state_machine::ReplicaBook;
use super::status::replication_status;
use super::tests::{Scenario, observe, template};
use super::types::{CommandBatch, ReplicaId, ReplicaNode, ReplicaTypes};

/// Endpoints by node name, standing in for the cluster's process group.
#[derive(Clone, Default)]
struct LocalDirectory(Arc<Mutex<HashMap<String, ActorRef<ReplicaMsg>>>>);

impl ReplicaDirectory for LocalDirectory {
    fn endpoint(&self, node: &ReplicaNode) -> Option<ActorRef<ReplicaMsg>> {
        self.0.lock().unwrap().get(&node.name).cloned()
    }
}

/// One replica under test: a [`LocalReplica`] reachable through the
/// shared directory.
struct TestReplica {
    id: ReplicaId,
    node: ReplicaNode,
    raft: Raft<ReplicaTypes>,
    book: ReplicaBook,
    replica: LocalReplica,
}

impl TestReplica {
    async fn start(name: &str, directory: &LocalDirectory) -> TestReplica {
        Self::start_in(name, None, directory).await
    }

    async fn start_in(
        name: &str,
        data_dir: Option<&std::path::Path>,
        directory: &LocalDirectory,
    ) -> TestReplica {
        let node = ReplicaNode {
            name: name.to_string(),
            cluster_addr: format!("{name}:7100"),
        };
        let replica = LocalReplica::start(
            node.clone(),
            data_dir,
            template(),
            directory.clone(),
            false,
            herd_config::DEFAULT_SNAPSHOT_EVERY_ENTRIES,
        )
        .await
        .unwrap();
        directory
            .0
            .lock()
            .unwrap()
            .insert(name.to_string(), replica.endpoint().clone());
        TestReplica {
            id: replica.id(),
            node,
            raft: replica.raft().clone(),
            book: replica.book().clone(),
            replica,
        }
    }

    /// Stops the replica as a killed process would vanish: its endpoint
    /// goes first, then its Raft.
    async fn kill(self, directory: &LocalDirectory) {
        directory.0.lock().unwrap().remove(&self.node.name);
        let TestReplica {
            replica,
            book,
            raft,
            ..
        } = self;
        drop((book, raft));
        assert!(replica.stop().await, "the replica file is released");
    }

    fn applied(&self) -> Option<u64> {
        self.raft.metrics().borrow().last_applied.map(|id| id.index)
    }

    /// Names the group as its leader does before its orchestrator starts.
    async fn name_group(&self) -> ReplicaGroupId {
        let term = self.raft.metrics().borrow().current_term;
        let node = NodeName::parse(&self.node.name).unwrap();
        name_if_unnamed(&self.raft, &self.book, self.id, &node, term)
            .await
            .unwrap()
    }

    /// Founds a one-replica group of its own and names it.
    async fn found(&self) -> ReplicaGroupId {
        self.raft
            .initialize(BTreeMap::from([(self.id, self.node.clone())]))
            .await
            .unwrap();
        leader_among(&[self]).await;
        self.name_group().await
    }
}

const DEADLINE: Duration = Duration::from_secs(20);

async fn leader_among(replicas: &[&TestReplica]) -> ReplicaId {
    let ids: Vec<ReplicaId> = replicas.iter().map(|r| r.id).collect();
    let metrics = replicas[0]
        .raft
        .wait(Some(DEADLINE))
        .metrics(
            |m| m.current_leader.is_some_and(|leader| ids.contains(&leader)),
            "a leader among the live replicas",
        )
        .await
        .unwrap();
    metrics.current_leader.unwrap()
}

/// Waits until every replica applied through `index`, then checks they hold
/// the same book as the scenario's.
async fn assert_converged(replicas: &[&TestReplica], index: u64, scenario: &Scenario) {
    for replica in replicas {
        replica
            .raft
            .wait(Some(DEADLINE))
            .applied_index_at_least(Some(index), "every replica applies the log")
            .await
            .unwrap();
        let (_, book) = replica.book.copy_of_book();
        assert_eq!(
            observe(&book),
            observe(&scenario.book),
            "{}",
            replica.node.name
        );
    }
}

async fn write(leader: &TestReplica, scenario: &mut Scenario, batches: usize) -> u64 {
    let mut last = 0;
    for _ in 0..batches {
        let commands = scenario.batch(7);
        let term = leader.raft.metrics().borrow().current_term;
        let written = leader
            .raft
            .client_write(CommandBatch { term, commands })
            .await
            .unwrap();
        assert_eq!(written.data.commands, 7);
        last = written.log_id.index;
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_elect_replicate_survive_their_leader_and_replace_a_lost_one() {
    let directory = LocalDirectory::default();
    let mut replicas = Vec::new();
    for name in ["n1", "n2", "n3"] {
        replicas.push(TestReplica::start(name, &directory).await);
    }
    let members: BTreeMap<ReplicaId, ReplicaNode> =
        replicas.iter().map(|r| (r.id, r.node.clone())).collect();
    replicas[0].raft.initialize(members).await.unwrap();

    // Commands committed through the leader reach every replica's book.
    let all: Vec<&TestReplica> = replicas.iter().collect();
    let leader = leader_among(&all).await;
    let mut scenario = Scenario::new();
    let at = {
        let leader = replicas.iter().find(|r| r.id == leader).unwrap();
        write(leader, &mut scenario, 20).await
    };
    assert_converged(&all, at, &scenario).await;

    // The leader vanishes: the two others elect one of themselves and go on
    // from the same book.
    let position = replicas.iter().position(|r| r.id == leader).unwrap();
    let lost = replicas.remove(position);
    let lost_id = lost.id;
    lost.kill(&directory).await;
    let survivors: Vec<&TestReplica> = replicas.iter().collect();
    let new_leader = leader_among(&survivors).await;
    assert_ne!(new_leader, lost_id);
    let leader = replicas.iter().find(|r| r.id == new_leader).unwrap();
    let at = write(leader, &mut scenario, 20).await;
    assert_converged(&survivors, at, &scenario).await;

    // The lost replica's node comes back without its storage: a new replica
    // (a new id) joins as a learner after the leader snapshotted and purged
    // its log, so it can only catch up from the snapshot; then it replaces
    // the lost voter.
    leader.raft.trigger().snapshot().await.unwrap();
    leader
        .raft
        .wait(Some(DEADLINE))
        .metrics(|m| m.snapshot.is_some_and(|s| s.index >= at), "a snapshot")
        .await
        .unwrap();
    leader.raft.trigger().purge_log(at).await.unwrap();
    leader
        .raft
        .wait(Some(DEADLINE))
        .metrics(
            |m| m.purged.is_some_and(|p| p.index >= at),
            "the log purged",
        )
        .await
        .unwrap();
    let rejoined = TestReplica::start("n-rejoined", &directory).await;
    assert_ne!(rejoined.id, lost_id);
    leader
        .raft
        .add_learner(rejoined.id, rejoined.node.clone(), true)
        .await
        .unwrap();
    rejoined
        .raft
        .wait(Some(DEADLINE))
        .metrics(
            |m| m.snapshot.is_some_and(|s| s.index >= at),
            "the learner installs the snapshot",
        )
        .await
        .unwrap();
    leader
        .raft
        .change_membership(
            ChangeMembers::ReplaceAllVoters(
                [
                    leader.id,
                    replicas.iter().find(|r| r.id != new_leader).unwrap().id,
                    rejoined.id,
                ]
                .into(),
            ),
            false,
        )
        .await
        .unwrap();
    let at = write(leader, &mut scenario, 5).await;
    let everyone: Vec<&TestReplica> = replicas.iter().chain([&rejoined]).collect();
    assert_converged(&everyone, at, &scenario).await;
    rejoined
        .raft
        .wait(Some(DEADLINE))
        .state(ServerState::Follower, "the rejoined replica votes")
        .await
        .unwrap();
    assert!(rejoined.applied().unwrap() >= at);

    // The leader shows the group as /v1/cluster will: three voters, the
    // lost replica gone from it, and a fresh quorum.
    let metrics = leader.raft.metrics().borrow().clone();
    let status = replication_status(&metrics, |_, _| true);
    let mut names: Vec<&str> = status.replicas.iter().map(|r| r.name.as_str()).collect();
    names.sort_unstable();
    let mut expected: Vec<&str> = everyone.iter().map(|r| r.node.name.as_str()).collect();
    expected.sort_unstable();
    assert_eq!(names, expected);
    assert_eq!(status.leader.as_deref(), Some(leader.node.name.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_with_a_data_directory_restarts_as_itself_with_its_book() {
    let directory = LocalDirectory::default();
    let dir = tempfile::tempdir().unwrap();
    let replica = TestReplica::start_in("n1", Some(dir.path()), &directory).await;
    let id = replica.id;
    let group = replica.found().await;
    let mut scenario = Scenario::new();
    let at = write(&replica, &mut scenario, 30).await;
    replica.raft.trigger().snapshot().await.unwrap();
    let more = write(&replica, &mut scenario, 10).await;
    assert!(more > at);
    replica.kill(&directory).await;

    // The same directory: the same replica, its snapshot and the entries
    // after it, elected again (it is the only voter) with the same book.
    let restarted = TestReplica::start_in("n1", Some(dir.path()), &directory).await;
    assert_eq!(restarted.id, id);
    leader_among(&[&restarted]).await;
    assert_converged(&[&restarted], more, &scenario).await;
    // Its group too: leading again, it finds the group named, names nothing.
    assert_eq!(restarted.book.group(), Some(group.clone()));
    let last = restarted.raft.metrics().borrow().last_log_index;
    assert_eq!(restarted.name_group().await, group);
    assert_eq!(restarted.raft.metrics().borrow().last_log_index, last);
    let at = write(&restarted, &mut scenario, 5).await;
    assert_converged(&[&restarted], at, &scenario).await;
    restarted.kill(&directory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_founder_names_the_group_and_a_replica_that_joins_by_snapshot_learns_it() {
    let directory = LocalDirectory::default();
    let founder = TestReplica::start("n1", &directory).await;
    let group = founder.found().await;
    assert_eq!(group.founder, founder.id);
    assert_eq!(group.founder_node.as_str(), "n1");
    assert_eq!(founder.book.group(), Some(group.clone()));

    // Its log is compacted away: a replica that joins now can learn the
    // group only from the snapshot.
    let mut scenario = Scenario::new();
    let at = write(&founder, &mut scenario, 10).await;
    founder.raft.trigger().snapshot().await.unwrap();
    founder
        .raft
        .wait(Some(DEADLINE))
        .metrics(|m| m.snapshot.is_some_and(|s| s.index >= at), "a snapshot")
        .await
        .unwrap();
    founder.raft.trigger().purge_log(at).await.unwrap();
    founder
        .raft
        .wait(Some(DEADLINE))
        .metrics(
            |m| m.purged.is_some_and(|p| p.index >= at),
            "the log purged",
        )
        .await
        .unwrap();
    let joiner = TestReplica::start("n2", &directory).await;
    assert_eq!(joiner.book.group(), None);
    let mut learned = joiner.book.group_changes();
    founder
        .raft
        .add_learner(joiner.id, joiner.node.clone(), true)
        .await
        .unwrap();
    tokio::time::timeout(DEADLINE, learned.wait_for(Option::is_some))
        .await
        .expect("the joiner learns the group")
        .unwrap();
    assert_eq!(joiner.book.group(), Some(group));
    assert_converged(&[&joiner], at, &scenario).await;
    founder.kill(&directory).await;
    joiner.kill(&directory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_refuses_the_requests_of_another_group_s_leader_and_keeps_leading_its_own() {
    let directory = LocalDirectory::default();
    let older = TestReplica::start("n1", &directory).await;
    let older_group = older.found().await;
    let younger = TestReplica::start("n2", &directory).await;
    let younger_group = younger.found().await;
    assert_ne!(older_group, younger_group);
    let younger_term = younger.raft.metrics().borrow().current_term;

    // A heartbeat of the older group's leader, under a term far above the
    // younger's: taken, it would depose the younger's leader and make its
    // log follow the other book.
    let heartbeat = AppendEntriesRequest::<ReplicaTypes> {
        vote: Vote::new_committed(younger_term + 100, older.id),
        prev_log_id: None,
        entries: Vec::new(),
        leader_commit: None,
    };
    let request = ReplicaRequest {
        to: younger.id,
        kind: RaftRpcKind::AppendEntries,
        body: herd_protocol::codec::encode(&heartbeat).unwrap(),
        group: Some(older_group.clone()),
    };
    let reply = younger
        .replica
        .endpoint()
        .call(|port| Mailbox::Call(request, port), Some(DEADLINE))
        .await
        .unwrap();
    let CallResult::Success(ReplicaReply::Refused(why)) = reply else {
        panic!("a request of another group is refused: {reply:?}");
    };
    assert!(
        why.contains("founded by n2") && why.contains("founded by n1"),
        "{why}"
    );
    let metrics = younger.raft.metrics().borrow().clone();
    assert_eq!(metrics.state, ServerState::Leader);
    assert_eq!(metrics.current_term, younger_term);
    assert_eq!(younger.book.group(), Some(younger_group));
    older.kill(&directory).await;
    younger.kill(&directory).await;
}
