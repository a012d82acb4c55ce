//! Tests of the replica's storage: openraft's own storage suite against both
//! backends, the state machine against the task book applied directly, and
//! the replica file's reopening and refusals.

use std::collections::BTreeSet;
use std::path::Path;

use herd_protocol::messages::orchestrator::TaskQuery;
use herd_protocol::messages::replica::ReplicaGroupId;
use herd_protocol::{
    AgentType, FailureKind, Incarnation, JsonText, MemberId, NodeName, Outcome, TaskAssignment,
    TaskId, TaskReport, TaskSpec, UnixMillis, WorkerId,
};
use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{
    CommittedLeaderId, Entry, EntryPayload, LogId, Membership, RaftLogReader, RaftSnapshotBuilder,
    Vote,
};

use super::file::{FILE_NAME, ReplicaFile};
use super::log_store::ReplicaLogStore;
use super::state_machine::{AppliedLogId, AppliedMembership, ReplicaStateMachine};
use super::types::{
    BatchApplied, CommandBatch, ReplicaEntry, ReplicaId, ReplicaStorageError, ReplicaTypes,
};
use crate::task_book::{
    AgentTypeSettings, Command, Effect, ScalingOverrides, TaskBook, TaskBookSettings,
};

pub(super) fn template() -> TaskBook {
    TaskBook::new(
        TaskBookSettings::default(),
        ["echo", "sleep"].map(|t| (AgentType::new(t), AgentTypeSettings::default())),
    )
}

/// Builds in-memory log stores and state machines for openraft's suite.
struct InMemory;

impl StoreBuilder<ReplicaTypes, ReplicaLogStore, ReplicaStateMachine> for InMemory {
    async fn build(
        &self,
    ) -> Result<((), ReplicaLogStore, ReplicaStateMachine), ReplicaStorageError> {
        Ok((
            (),
            ReplicaLogStore::in_memory(),
            ReplicaStateMachine::in_memory(template()),
        ))
    }
}

/// Builds file-backed ones, each in a temporary directory that lives as
/// long as the suite's guard.
struct OnFile;

impl StoreBuilder<ReplicaTypes, ReplicaLogStore, ReplicaStateMachine, tempfile::TempDir>
    for OnFile
{
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, ReplicaLogStore, ReplicaStateMachine), ReplicaStorageError>
    {
        let dir = tempfile::tempdir().unwrap();
        let file = ReplicaFile::open(dir.path()).unwrap();
        let state_machine = ReplicaStateMachine::open(template(), file.clone()).unwrap();
        Ok((dir, ReplicaLogStore::on_file(file), state_machine))
    }
}

#[test]
fn the_in_memory_store_passes_openraft_s_storage_suite() {
    Suite::test_all(InMemory).unwrap();
}

#[test]
fn the_file_store_passes_openraft_s_storage_suite() {
    Suite::test_all(OnFile).unwrap();
}

fn member(name: &str) -> MemberId {
    MemberId {
        name: NodeName::parse(name).unwrap(),
        incarnation: Incarnation(3),
    }
}

fn log_id(index: u64) -> LogId<ReplicaId> {
    LogId::new(CommittedLeaderId::new(1, 7), index)
}

fn batch_entry(index: u64, commands: Vec<Command>) -> ReplicaEntry {
    Entry {
        log_id: log_id(index),
        payload: EntryPayload::Normal(CommandBatch { term: 1, commands }),
    }
}

/// Drives a book directly with a scenario of submissions, assignments and
/// reports, and returns the commands in batches of a few, as a leader would
/// commit them.
pub(super) struct Scenario {
    pub(super) book: TaskBook,
    dispatched: Vec<(MemberId, TaskAssignment)>,
    step: u64,
}

impl Scenario {
    pub(super) fn new() -> Scenario {
        Scenario {
            book: template(),
            dispatched: Vec::new(),
            step: 0,
        }
    }

    fn command(&mut self) -> Command {
        self.step += 1;
        let now = UnixMillis(1_000_000 + self.step * 10);
        match self.step % 5 {
            0 | 1 => {
                let tasks = (0..3)
                    .map(|i| {
                        let agent_type = if i % 2 == 0 { "echo" } else { "sleep" };
                        (
                            TaskId::new_v7(),
                            TaskSpec::new(agent_type, JsonText::from_value(&self.step).unwrap()),
                        )
                    })
                    .collect();
                Command::Submit(self.book.validate_submission(tasks, now).unwrap())
            }
            2 => Command::Assign {
                member: member(if self.step.is_multiple_of(2) {
                    "n1"
                } else {
                    "n2"
                }),
                agent_type: AgentType::new(if self.step.is_multiple_of(3) {
                    "echo"
                } else {
                    "sleep"
                }),
                max: 2,
                now,
            },
            3 => match self.dispatched.pop() {
                Some((who, assignment)) => Command::Report {
                    member: who,
                    report: TaskReport {
                        task_id: assignment.task_id,
                        epoch: assignment.epoch,
                        worker: WorkerId(1),
                        outcome: if self.step.is_multiple_of(3) {
                            Outcome::Failed {
                                kind: FailureKind::Retryable,
                                message: "busy".into(),
                            }
                        } else {
                            Outcome::Succeeded {
                                result: JsonText::null(),
                                score: None,
                            }
                        },
                        started_at: now,
                        finished_at: now,
                    },
                    now,
                },
                None => Command::Tick { now },
            },
            // Reports come slower than assignments, so some tasks stay
            // running.
            _ => Command::Tick { now },
        }
    }

    /// `count` commands, already applied to the scenario's own book.
    pub(super) fn batch(&mut self, count: usize) -> Vec<Command> {
        (0..count)
            .map(|_| {
                let command = self.command();
                for effect in self.book.apply(command.clone()) {
                    if let Effect::Dispatch { member, assignment } = effect {
                        self.dispatched.push((member, assignment));
                    }
                }
                command
            })
            .collect()
    }
}

/// Everything a reader can observe of a book.
pub(super) fn observe(book: &TaskBook) -> (Vec<String>, String, String) {
    let page = book.list(&TaskQuery {
        limit: 10_000,
        ..TaskQuery::default()
    });
    let views = page
        .tasks
        .iter()
        .map(|view| serde_json::to_string(view).unwrap())
        .collect();
    (
        views,
        format!("{:?}", book.counts()),
        format!("{:?} {:?}", book.totals(), book.next_retry_due()),
    )
}

#[tokio::test]
async fn the_state_machine_ends_with_the_book_the_commands_make_and_so_does_a_snapshot_of_it() {
    let mut scenario = Scenario::new();
    let mut leader = ReplicaStateMachine::in_memory(template());
    let leader_book = leader.book();

    let mut entries = vec![Entry {
        log_id: log_id(1),
        payload: EntryPayload::Blank,
    }];
    for index in 2..=20 {
        entries.push(batch_entry(index, scenario.batch(4)));
    }
    let answers = leader.apply(entries).await.unwrap();
    assert_eq!(answers[0], BatchApplied::default());
    assert!(answers[1..].iter().all(|a| a.commands == 4), "{answers:?}");
    assert_eq!(leader_book.applied_index(), Some(20));

    let (as_of, book) = leader_book.copy_of_book();
    assert_eq!(as_of, Some(log_id(20)));
    book.check_invariants();
    assert_eq!(observe(&book), observe(&scenario.book));
    assert!(
        scenario.book.counts().succeeded > 0 && scenario.book.counts().running > 0,
        "the scenario exercises several states: {:?}",
        scenario.book.counts()
    );

    // A follower that catches up by snapshot, then by entries.
    let snapshot = leader
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    assert_eq!(snapshot.meta.last_log_id, Some(log_id(20)));
    let mut follower = ReplicaStateMachine::in_memory(template());
    let follower_book = follower.book();
    let mut receiving = follower.begin_receiving_snapshot().await.unwrap();
    *receiving = *snapshot.snapshot;
    follower
        .install_snapshot(&snapshot.meta, receiving)
        .await
        .unwrap();
    assert_eq!(follower_book.applied_index(), Some(20));
    assert_eq!(
        follower.get_current_snapshot().await.unwrap().unwrap().meta,
        snapshot.meta
    );

    let later: Vec<_> = (21..=30)
        .map(|index| batch_entry(index, scenario.batch(5)))
        .collect();
    leader.apply(later.clone()).await.unwrap();
    follower.apply(later).await.unwrap();
    let (leader_as_of, leader_copy) = leader_book.copy_of_book();
    let (follower_as_of, follower_copy) = follower_book.copy_of_book();
    assert_eq!(leader_as_of, Some(log_id(30)));
    assert_eq!(follower_as_of, leader_as_of);
    follower_copy.check_invariants();
    assert_eq!(observe(&leader_copy), observe(&scenario.book));
    assert_eq!(observe(&follower_copy), observe(&scenario.book));
}

#[tokio::test]
async fn a_batch_logged_under_another_term_than_it_was_proposed_in_is_skipped_by_every_replica() {
    let mut scenario = Scenario::new();
    let mut replica = ReplicaStateMachine::in_memory(template());
    let book = replica.book();
    let kept = batch_entry(1, scenario.batch(4));
    // Proposed by the orchestrator of term 0, logged in term 1 (log_id's).
    let mut late = batch_entry(2, Scenario::new().batch(4));
    if let EntryPayload::Normal(batch) = &mut late.payload {
        batch.term = 0;
    }
    let answers = replica.apply(vec![kept, late]).await.unwrap();
    assert_eq!(
        answers[0],
        BatchApplied {
            commands: 4,
            fenced: false
        }
    );
    assert_eq!(
        answers[1],
        BatchApplied {
            commands: 0,
            fenced: true
        }
    );
    let (as_of, copy) = book.copy_of_book();
    assert_eq!(
        as_of,
        Some(log_id(2)),
        "the skipped entry still counts as applied"
    );
    assert_eq!(observe(&copy), observe(&scenario.book));
}

#[tokio::test]
async fn a_replica_file_reopens_with_the_same_id_vote_entries_and_committed_log_id() {
    let dir = tempfile::tempdir().unwrap();
    let vote = Vote::new_committed(3, 42);
    let entries = vec![
        Entry {
            log_id: log_id(1),
            payload: EntryPayload::Blank,
        },
        Entry {
            log_id: log_id(2),
            payload: EntryPayload::Membership(Membership::new(
                vec![BTreeSet::from([42, 43])],
                None,
            )),
        },
        batch_entry(3, Scenario::new().batch(3)),
    ];
    let id = {
        let mut store = ReplicaLogStore::on_file(ReplicaFile::open(dir.path()).unwrap());
        store.save_vote(&vote).await.unwrap();
        store.blocking_append(entries.clone()).await.unwrap();
        store.save_committed(Some(log_id(2))).await.unwrap();
        store.replica_id()
    };

    let file = ReplicaFile::open(dir.path()).unwrap();
    assert_eq!(file.replica_id(), id);
    let mut store = ReplicaLogStore::on_file(file);
    assert_eq!(store.replica_id(), id);
    assert_eq!(store.read_vote().await.unwrap(), Some(vote));
    assert_eq!(store.read_committed().await.unwrap(), Some(log_id(2)));
    let state = store.get_log_state().await.unwrap();
    assert_eq!(state.last_log_id, Some(log_id(3)));
    assert_eq!(state.last_purged_log_id, None);
    let mut reader = store.get_log_reader().await;
    let read = reader.try_get_log_entries(1..=3).await.unwrap();
    assert_eq!(format!("{read:?}"), format!("{entries:?}"));

    store.purge(log_id(1)).await.unwrap();
    drop(store);
    drop(reader);
    let mut store = ReplicaLogStore::on_file(ReplicaFile::open(dir.path()).unwrap());
    let state = store.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(1)));
    assert_eq!(store.try_get_log_entries(..).await.unwrap().len(), 2);
}

#[test]
fn in_memory_stores_draw_a_new_id_each_time() {
    let ids: BTreeSet<ReplicaId> = (0..8)
        .map(|_| ReplicaLogStore::in_memory().replica_id())
        .collect();
    assert_eq!(ids.len(), 8);
}

#[tokio::test]
async fn a_state_machine_on_a_file_restarts_from_its_stored_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let mut scenario = Scenario::new();
    {
        let file = ReplicaFile::open(dir.path()).unwrap();
        let mut state_machine = ReplicaStateMachine::open(template(), file).unwrap();
        let entries: Vec<_> = (1..=10)
            .map(|index| batch_entry(index, scenario.batch(3)))
            .collect();
        state_machine.apply(entries).await.unwrap();
        state_machine
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        // Applied after the snapshot: on restart these come back from the
        // log (openraft re-applies them), not from the state machine.
        state_machine
            .apply([batch_entry(
                11,
                vec![Command::Tick {
                    now: UnixMillis(5_000_000),
                }],
            )])
            .await
            .unwrap();
    }

    let file = ReplicaFile::open(dir.path()).unwrap();
    let mut state_machine = ReplicaStateMachine::open(template(), file).unwrap();
    let (applied, _) = state_machine.applied_state().await.unwrap();
    assert_eq!(applied, Some(log_id(10)));
    let current = state_machine.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(current.meta.last_log_id, Some(log_id(10)));
    let (as_of, book) = state_machine.book().copy_of_book();
    assert_eq!(as_of, Some(log_id(10)));
    book.check_invariants();
    assert_eq!(observe(&book), observe(&scenario.book));
    assert_eq!(state_machine.book().applied_index(), Some(10));
}

#[tokio::test]
async fn a_snapshot_that_does_not_decode_is_refused_and_changes_nothing() {
    let mut state_machine = ReplicaStateMachine::in_memory(template());
    let meta = openraft::SnapshotMeta {
        last_log_id: Some(log_id(5)),
        last_membership: Default::default(),
        snapshot_id: "bogus".to_string(),
    };
    let error = state_machine
        .install_snapshot(&meta, Box::new(std::io::Cursor::new(vec![0xff; 16])))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("bogus"), "{error}");
    assert_eq!(state_machine.applied_state().await.unwrap().0, None);
    assert!(
        state_machine
            .get_current_snapshot()
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn scaling_overrides_survive_a_snapshot_its_install_and_a_restart_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let overrides = ScalingOverrides::example();
    let mut scenario = Scenario::new();
    let mut commands = scenario.batch(3);
    commands.push(Command::ScalingOverrides(Box::new(overrides.clone())));
    let _ = scenario.book.apply(commands[3].clone());
    let file = ReplicaFile::open(dir.path()).unwrap();
    let mut leader = ReplicaStateMachine::open(template(), file).unwrap();
    leader
        .apply(vec![
            batch_entry(1, commands),
            batch_entry(2, scenario.batch(2)),
        ])
        .await
        .unwrap();
    assert_eq!(
        leader.book().copy_of_book().1.scaling_overrides(),
        &overrides
    );

    let snapshot = leader
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    let mut follower = ReplicaStateMachine::in_memory(template());
    let mut receiving = follower.begin_receiving_snapshot().await.unwrap();
    *receiving = *snapshot.snapshot;
    follower
        .install_snapshot(&snapshot.meta, receiving)
        .await
        .unwrap();
    let (_, installed) = follower.book().copy_of_book();
    assert_eq!(installed.scaling_overrides(), &overrides);
    assert_eq!(observe(&installed), observe(&scenario.book));
    drop(leader);

    let restarted =
        ReplicaStateMachine::open(template(), ReplicaFile::open(dir.path()).unwrap()).unwrap();
    let (as_of, book) = restarted.book().copy_of_book();
    assert_eq!(as_of, Some(log_id(2)));
    assert_eq!(book.scaling_overrides(), &overrides);
    assert_eq!(observe(&book), observe(&scenario.book));
}

#[tokio::test]
async fn a_snapshot_written_before_scaling_overrides_were_replicated_still_installs() {
    // The layout of such snapshots: today's fields but the last.
    #[derive(serde::Serialize)]
    struct OldSnapshot<'a> {
        last_applied: AppliedLogId,
        last_membership: &'a AppliedMembership,
        book: &'a TaskBook,
        configuration: crate::task_book::BookConfiguration,
    }
    let mut scenario = Scenario::new();
    let _ = scenario.batch(6);
    let data = herd_protocol::codec::encode(&OldSnapshot {
        last_applied: Some(log_id(4)),
        last_membership: &AppliedMembership::default(),
        book: &scenario.book,
        configuration: scenario.book.configuration(),
    })
    .unwrap();
    let follower = install_on_a_new_follower(data, "before-overrides").await;
    let (as_of, book) = follower.book().copy_of_book();
    assert_eq!(as_of, Some(log_id(4)));
    assert_eq!(observe(&book), observe(&scenario.book));
    assert_eq!(book.scaling_overrides(), &ScalingOverrides::default());
}

pub(super) fn group_of(founder_node: &str, founded_at: u64) -> ReplicaGroupId {
    ReplicaGroupId {
        founded_at: UnixMillis(founded_at),
        founder: 7,
        founder_node: NodeName::parse(founder_node).unwrap(),
    }
}

fn naming(group: &ReplicaGroupId) -> Command {
    Command::ReplicaGroup(Box::new(group.clone()))
}

#[tokio::test]
async fn the_first_group_named_in_the_log_is_the_replica_s_group_for_good() {
    let mut replica = ReplicaStateMachine::in_memory(template());
    let book = replica.book();
    let mut changes = book.group_changes();
    assert_eq!(book.group(), None);
    let mut scenario = Scenario::new();
    let first = group_of("n1", 1_000);
    let mut commands = vec![naming(&first)];
    commands.extend(scenario.batch(3));
    replica.apply(vec![batch_entry(1, commands)]).await.unwrap();
    assert_eq!(book.group(), Some(first.clone()));
    assert!(changes.has_changed().unwrap(), "followers are told");
    assert_eq!(*changes.borrow_and_update(), Some(first.clone()));
    // A later naming (a leader that proposed one while an earlier one was
    // in flight) changes nothing, on every replica alike.
    replica
        .apply(vec![batch_entry(2, vec![naming(&group_of("n2", 500))])])
        .await
        .unwrap();
    assert_eq!(book.group(), Some(first));
    assert!(!changes.has_changed().unwrap());
    // The book itself is untouched by the naming.
    assert_eq!(observe(&book.copy_of_book().1), observe(&scenario.book));
}

#[tokio::test]
async fn the_group_survives_a_snapshot_its_install_and_a_restart_from_the_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let group = group_of("n1", 1_000);
    let mut scenario = Scenario::new();
    {
        let file = ReplicaFile::open(dir.path()).unwrap();
        let mut leader = ReplicaStateMachine::open(template(), file).unwrap();
        let mut commands = vec![naming(&group)];
        commands.extend(scenario.batch(3));
        leader
            .apply(vec![
                batch_entry(1, commands),
                batch_entry(2, scenario.batch(2)),
            ])
            .await
            .unwrap();
        let snapshot = leader
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        // A replica that joins later and catches up by snapshot learns it.
        let mut joiner = ReplicaStateMachine::in_memory(template());
        let changes = joiner.book().group_changes();
        let mut receiving = joiner.begin_receiving_snapshot().await.unwrap();
        *receiving = *snapshot.snapshot;
        joiner
            .install_snapshot(&snapshot.meta, receiving)
            .await
            .unwrap();
        assert_eq!(joiner.book().group(), Some(group.clone()));
        assert!(changes.has_changed().unwrap());
        assert_eq!(
            observe(&joiner.book().copy_of_book().1),
            observe(&scenario.book)
        );
    }
    // The same data directory: the group is back with the stored snapshot,
    // before anything is applied again.
    let restarted =
        ReplicaStateMachine::open(template(), ReplicaFile::open(dir.path()).unwrap()).unwrap();
    assert_eq!(restarted.book().group(), Some(group));
    assert_eq!(restarted.book().applied_index(), Some(2));
}

#[tokio::test]
async fn a_snapshot_written_before_groups_were_named_still_installs_without_a_group() {
    // The layout of such snapshots: today's fields but the last.
    #[derive(serde::Serialize)]
    struct OldSnapshot<'a> {
        last_applied: AppliedLogId,
        last_membership: &'a AppliedMembership,
        book: &'a TaskBook,
        configuration: crate::task_book::BookConfiguration,
        scaling_overrides: &'a ScalingOverrides,
    }
    let mut scenario = Scenario::new();
    let _ = scenario.batch(6);
    let overrides = ScalingOverrides::example();
    let data = herd_protocol::codec::encode(&OldSnapshot {
        last_applied: Some(log_id(4)),
        last_membership: &AppliedMembership::default(),
        book: &scenario.book,
        configuration: scenario.book.configuration(),
        scaling_overrides: &overrides,
    })
    .unwrap();
    let mut follower = install_on_a_new_follower(data, "before-groups").await;
    let (as_of, book) = follower.book().copy_of_book();
    assert_eq!(as_of, Some(log_id(4)));
    assert_eq!(observe(&book), observe(&scenario.book));
    assert_eq!(book.scaling_overrides(), &overrides);
    assert_eq!(follower.book().group(), None);
    // The next leader names it in the log after the snapshot.
    let group = group_of("n3", 9_000);
    follower
        .apply(vec![batch_entry(5, vec![naming(&group)])])
        .await
        .unwrap();
    assert_eq!(follower.book().group(), Some(group));
}

/// Opens `dir` expecting a refusal; returns its message.
fn refusal(dir: &Path) -> String {
    let error = ReplicaFile::open(dir).expect_err("the file is refused");
    let message = error.to_string();
    assert!(message.contains(FILE_NAME), "{message}");
    assert!(message.contains("move it away"), "{message}");
    assert!(message.contains("from a backup"), "{message}");
    message
}

#[test]
fn a_zero_length_file_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    std::fs::write(&path, b"").unwrap();
    let message = refusal(dir.path());
    assert!(message.contains("is empty"), "{message}");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
}

#[test]
fn a_file_of_random_bytes_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    let garbage: Vec<u8> = (0..10_000).map(|_| rand::random::<u8>()).collect();
    std::fs::write(&path, &garbage).unwrap();
    let message = refusal(dir.path());
    assert!(message.contains("not a redb database"), "{message}");
    assert_eq!(std::fs::read(&path).unwrap(), garbage);
}

#[test]
fn a_redb_database_of_another_program_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let database = redb::Database::create(dir.path().join(FILE_NAME)).unwrap();
        let transaction = database.begin_write().unwrap();
        transaction
            .open_table(redb::TableDefinition::<&str, u64>::new("users"))
            .unwrap()
            .insert("ada", 1)
            .unwrap();
        transaction.commit().unwrap();
    }
    let message = refusal(dir.path());
    assert!(message.contains("another program"), "{message}");
}

#[test]
fn a_redb_database_without_a_replica_id_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(redb::Database::create(dir.path().join(FILE_NAME)).unwrap());
    let message = refusal(dir.path());
    assert!(message.contains("no replica id"), "{message}");
}

#[tokio::test]
async fn a_book_larger_than_a_cluster_frame_snapshots_installs_and_restarts() {
    // 24 tasks of ~900 KiB: about 21 MiB, over the 16 MiB frame limit that
    // once bounded every decode.
    let mut book = template();
    let payload = JsonText::from_value(&"p".repeat(900 * 1024)).unwrap();
    let commands: Vec<Command> = (0..24)
        .map(|step| {
            let now = UnixMillis(1_000_000 + step);
            let submission = book
                .validate_submission(
                    vec![(TaskId::new_v7(), TaskSpec::new("echo", payload.clone()))],
                    now,
                )
                .unwrap();
            let command = Command::Submit(submission);
            let _ = book.apply(command.clone());
            command
        })
        .collect();

    let dir = tempfile::tempdir().unwrap();
    let file = ReplicaFile::open(dir.path()).unwrap();
    let mut leader = ReplicaStateMachine::open(template(), file.clone()).unwrap();
    leader.apply(vec![batch_entry(1, commands)]).await.unwrap();
    let snapshot = leader
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    assert!(snapshot.snapshot.get_ref().len() > 16 * 1024 * 1024);

    let mut follower = ReplicaStateMachine::in_memory(template());
    let mut receiving = follower.begin_receiving_snapshot().await.unwrap();
    *receiving = *snapshot.snapshot;
    follower
        .install_snapshot(&snapshot.meta, receiving)
        .await
        .unwrap();
    assert_eq!(observe(&follower.book().copy_of_book().1), observe(&book));

    drop(leader);
    drop(file);
    let reopened = ReplicaFile::open(dir.path()).unwrap();
    let restarted = ReplicaStateMachine::open(template(), reopened).unwrap();
    assert_eq!(observe(&restarted.book().copy_of_book().1), observe(&book));
}

#[tokio::test]
async fn snapshot_data_lives_in_one_file_beside_the_replica_file_and_a_missing_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = ReplicaFile::open(dir.path()).unwrap();
    let mut state_machine = ReplicaStateMachine::open(template(), file.clone()).unwrap();
    let mut scenario = Scenario::new();
    let snapshot_files = || {
        std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("replica-snapshot-"))
            .collect::<Vec<_>>()
    };
    for round in 0..3u64 {
        let entries = (1..=5)
            .map(|i| batch_entry(round * 5 + i, scenario.batch(3)))
            .collect::<Vec<_>>();
        state_machine.apply(entries).await.unwrap();
        state_machine
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        assert_eq!(snapshot_files().len(), 1, "older snapshots are removed");
    }
    drop(state_machine);
    drop(file);
    let restarted =
        ReplicaStateMachine::open(template(), ReplicaFile::open(dir.path()).unwrap()).unwrap();
    assert_eq!(
        observe(&restarted.book().copy_of_book().1),
        observe(&scenario.book)
    );
    drop(restarted);

    std::fs::remove_file(dir.path().join(&snapshot_files()[0])).unwrap();
    let refused = ReplicaStateMachine::open(template(), ReplicaFile::open(dir.path()).unwrap())
        .err()
        .expect("a snapshot whose data file is gone is refused");
    assert!(refused.to_string().contains("data file"), "{refused}");
}

#[tokio::test]
async fn replicas_with_different_local_configurations_apply_the_log_under_its_configure() {
    // Two nodes configured differently: one keeps 1,000 finished tasks, the
    // other 2. The log's Configure makes both keep 3.
    let keeps = |retain_finished: usize| {
        let mut book = template();
        let mut configuration = book.configuration();
        configuration.settings.retain_finished = retain_finished;
        book.reconfigure(configuration.settings, configuration.agent_types);
        book
    };
    let mut agreed = template().configuration();
    agreed.settings.retain_finished = 3;
    let mut reference = template();
    let mut commands = vec![Command::Configure(Box::new(agreed.clone()))];
    let _ = reference.apply(commands[0].clone());
    for step in 0..6u64 {
        let now = UnixMillis(1_000_000 + step * 10);
        let id = TaskId::new_v7();
        let submission = reference
            .validate_submission(
                vec![(
                    id,
                    TaskSpec::new("echo", JsonText::from_value(&step).unwrap()),
                )],
                now,
            )
            .unwrap();
        let submit = Command::Submit(submission);
        let _ = reference.apply(submit.clone());
        let cancel = Command::Cancel { id, now };
        let _ = reference.apply(cancel.clone());
        commands.extend([submit, cancel]);
    }
    assert_eq!(reference.counts().cancelled, 3, "retention keeps three");

    let mut generous = ReplicaStateMachine::in_memory(keeps(1_000));
    let mut strict = ReplicaStateMachine::in_memory(keeps(2));
    generous
        .apply(vec![batch_entry(1, commands.clone())])
        .await
        .unwrap();
    strict.apply(vec![batch_entry(1, commands)]).await.unwrap();
    let (_, generous_book) = generous.book().copy_of_book();
    let (_, strict_book) = strict.book().copy_of_book();
    assert_eq!(observe(&generous_book), observe(&reference));
    assert_eq!(observe(&strict_book), observe(&reference));

    // A snapshot carries the configuration to a replica configured otherwise.
    let snapshot = generous
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    let mut follower = ReplicaStateMachine::in_memory(keeps(1));
    let mut receiving = follower.begin_receiving_snapshot().await.unwrap();
    *receiving = *snapshot.snapshot;
    follower
        .install_snapshot(&snapshot.meta, receiving)
        .await
        .unwrap();
    assert_eq!(follower.book().copy_of_book().1.configuration(), agreed);
}

/// A new in-memory replica that installed `data` as a snapshot through
/// log index 4 (as a follower installs a leader's).
async fn install_on_a_new_follower(data: Vec<u8>, snapshot_id: &str) -> ReplicaStateMachine {
    let meta = openraft::SnapshotMeta {
        last_log_id: Some(log_id(4)),
        last_membership: Default::default(),
        snapshot_id: snapshot_id.to_string(),
    };
    let mut follower = ReplicaStateMachine::in_memory(template());
    follower
        .install_snapshot(&meta, Box::new(std::io::Cursor::new(data)))
        .await
        .unwrap();
    follower
}
