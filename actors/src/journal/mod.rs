//! Durability for the orchestrator: the task book's commands are journaled to
//! an embedded store (redb) before anything that depends on them leaves the
//! orchestrator, and replayed on restart.
//!
//! The book is a deterministic state machine, so the journal stores commands,
//! not states. A background thread commits whatever has accumulated in one
//! write transaction (group commit), then reports the highest durable
//! sequence number; the orchestrator releases replies, assignments and
//! acknowledgements up to it. Every so often the whole book is written as a
//! snapshot and the journal before it is deleted, which bounds both replay
//! time and disk use.

mod format;
pub(crate) mod preflight;
mod store;
mod writer;

pub use format::encode_snapshot;
pub use store::{FILE_NAME, JournalStore, StoreError};
pub use writer::{JournalWriter, WriterEvent};

#[cfg(test)]
mod tests {
    use herd_protocol::messages::orchestrator::TaskQuery;
    use herd_protocol::{
        AgentType, FailureKind, Incarnation, JsonText, MemberId, NodeName, Outcome, TaskAssignment,
        TaskId, TaskReport, TaskSpec, UnixMillis, WorkerId,
    };

    use super::*;
    use crate::task_book::{AgentTypeSettings, Command, Effect, TaskBook, TaskBookSettings};

    /// A small deterministic generator (xorshift), so the scenario is the same
    /// on every run without a seeding dependency.
    struct Dice(u64);

    impl Dice {
        fn roll(&mut self, sides: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % sides
        }
    }

    fn book() -> TaskBook {
        TaskBook::new(
            TaskBookSettings::default(),
            ["echo", "sleep"].map(|t| (AgentType::new(t), AgentTypeSettings::default())),
        )
    }

    fn member(name: &str) -> MemberId {
        MemberId {
            name: NodeName::parse(name).unwrap(),
            incarnation: Incarnation(7),
        }
    }

    /// Everything a reader can observe of a book.
    fn observe(book: &TaskBook) -> (Vec<String>, String, String, Vec<String>) {
        let page = book.list(&TaskQuery {
            limit: 10_000,
            ..TaskQuery::default()
        });
        let views = page
            .tasks
            .iter()
            .map(|view| serde_json::to_string(view).unwrap())
            .collect();
        let running = ["n1", "n2"]
            .map(|name| format!("{:?}", book.running_attempts_on(&member(name))))
            .to_vec();
        (
            views,
            format!("{:?}", book.counts()),
            format!("{:?} {:?}", book.totals(), book.next_retry_due()),
            running,
        )
    }

    #[test]
    fn a_snapshot_of_a_book_larger_than_a_cluster_frame_is_recovered() {
        // About 21 MiB of payloads: a snapshot over the 16 MiB frame limit,
        // which once bounded every decode, so such a journal refused to open.
        let dir = tempfile::tempdir().unwrap();
        let store = JournalStore::open(dir.path()).unwrap();
        let mut original = book();
        let payload = JsonText::from_value(&"p".repeat(900 * 1024)).unwrap();
        for step in 0..24u64 {
            let submission = original
                .validate_submission(
                    vec![(TaskId::new_v7(), TaskSpec::new("echo", payload.clone()))],
                    UnixMillis(1_000_000 + step),
                )
                .unwrap();
            let _ = original.apply(Command::Submit(submission));
        }
        let snapshot = encode_snapshot(&original).unwrap();
        assert!(snapshot.len() > herd_protocol::limits::CLUSTER_FRAME_LIMIT_BYTES);
        store.snapshot(24, &snapshot).unwrap();
        drop(store);

        let recovered = JournalStore::open(dir.path())
            .unwrap()
            .recover(book())
            .unwrap();
        assert_eq!(recovered.last_sequence, 24);
        assert_eq!(observe(&recovered.book), observe(&original));
    }

    #[test]
    fn a_journal_with_a_snapshot_replays_to_the_same_book() {
        let dir = tempfile::tempdir().unwrap();
        let store = JournalStore::open(dir.path()).unwrap();
        let mut original = book();
        let mut dice = Dice(0x9E37_79B9_7F4A_7C15);
        let mut dispatched: Vec<(MemberId, TaskAssignment)> = Vec::new();
        let mut ids: Vec<TaskId> = Vec::new();
        let mut sequence = 0u64;
        let mut batch = Vec::new();
        for step in 0..3_000u64 {
            let now = UnixMillis(1_000_000 + step * 10);
            let command = match dice.roll(10) {
                0..=2 => {
                    let tasks: Vec<_> = (0..=dice.roll(3))
                        .map(|i| {
                            (
                                TaskId::new_v7(),
                                TaskSpec::new(
                                    if i % 2 == 0 { "echo" } else { "sleep" },
                                    JsonText::from_value(&step).unwrap(),
                                ),
                            )
                        })
                        .collect();
                    ids.extend(tasks.iter().map(|(id, _)| *id));
                    Command::Submit(
                        original
                            .validate_submission(tasks, now)
                            .expect("the scenario submits only valid batches"),
                    )
                }
                3..=4 => Command::Assign {
                    member: member(if dice.roll(2) == 0 { "n1" } else { "n2" }),
                    agent_type: AgentType::new(if dice.roll(2) == 0 { "echo" } else { "sleep" }),
                    max: dice.roll(4) as usize,
                    now,
                },
                5..=7 if !dispatched.is_empty() => {
                    let (who, assignment) =
                        dispatched[dice.roll(dispatched.len() as u64) as usize].clone();
                    let outcome = match dice.roll(4) {
                        0 | 1 => Outcome::Succeeded {
                            result: JsonText::null(),
                            score: None,
                        },
                        2 => Outcome::Failed {
                            kind: FailureKind::Retryable,
                            message: "busy".into(),
                        },
                        _ => Outcome::Failed {
                            kind: FailureKind::Crash,
                            message: "boom".into(),
                        },
                    };
                    let report = TaskReport {
                        task_id: assignment.task_id,
                        epoch: assignment.epoch,
                        worker: WorkerId(1),
                        outcome,
                        started_at: now,
                        finished_at: now,
                    };
                    Command::Report {
                        member: who,
                        report,
                        now,
                    }
                }
                8 => Command::Tick {
                    now: UnixMillis(now.0 + 5_000),
                },
                _ if !ids.is_empty() && dice.roll(4) == 0 => Command::Cancel {
                    id: ids[dice.roll(ids.len() as u64) as usize],
                    now,
                },
                _ => Command::MemberLost {
                    member: member("n2"),
                    now,
                },
            };
            sequence += 1;
            batch.push((sequence, herd_protocol::codec::encode(&command).unwrap()));
            for effect in original.apply(command) {
                if let Effect::Dispatch { member, assignment } = effect {
                    dispatched.push((member, assignment));
                }
            }
            if batch.len() == 50 {
                store.append(&batch).unwrap();
                batch.clear();
            }
            if step == 1_700 {
                store.append(&batch).unwrap();
                batch.clear();
                store
                    .snapshot(sequence, &encode_snapshot(&original).unwrap())
                    .unwrap();
                assert_eq!(
                    store.journal_len().unwrap(),
                    0,
                    "the snapshot replaces the journal it covers"
                );
            }
        }
        store.append(&batch).unwrap();
        drop(store);

        let reopened = JournalStore::open(dir.path()).unwrap();
        let recovered = reopened.recover(book()).unwrap();
        assert_eq!(recovered.last_sequence, sequence);
        assert_eq!(recovered.replayed, 3_000 - 1_701);
        let restored = recovered.book;
        restored.check_invariants();
        let (restored_views, restored_counts, restored_totals, restored_running) =
            observe(&restored);
        let (original_views, original_counts, original_totals, original_running) =
            observe(&original);
        assert_eq!(restored_views.len(), original_views.len());
        if let Some((restored, original)) = restored_views
            .iter()
            .zip(&original_views)
            .find(|(a, b)| a != b)
        {
            panic!("a task differs after recovery:\nrestored {restored}\noriginal {original}");
        }
        assert_eq!(
            (restored_counts, restored_totals),
            (original_counts, original_totals)
        );
        assert_eq!(restored_running, original_running);
        assert!(
            original.counts().succeeded > 0 && original.counts().running > 0,
            "the scenario exercises most states: {:?}",
            original.counts()
        );
    }

    #[test]
    fn a_corrupt_entry_is_reported_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let store = JournalStore::open(dir.path()).unwrap();
        store.append(&[(1, vec![0xff, 0x00, 0x13])]).unwrap();
        let error = store.recover(book()).unwrap_err().to_string();
        assert!(error.contains("journal entry 1"), "{error}");
        assert!(error.contains("restore"), "{error}");
        assert!(error.contains("from a backup"), "{error}");
        assert!(error.contains("only if losing the tasks"), "{error}");
        assert!(error.contains("move it away"), "{error}");
    }

    /// Opens `dir` expecting a refusal; returns its message.
    fn refusal(dir: &std::path::Path) -> String {
        let error = JournalStore::open(dir)
            .err()
            .expect("the journal is refused");
        assert!(
            error.is_configuration(),
            "an unreadable journal is the operator's to fix: {error}"
        );
        let message = error.to_string();
        assert!(message.contains("orchestrator.redb"), "{message}");
        assert!(message.contains("from a backup"), "{message}");
        assert!(message.contains("move it away"), "{message}");
        message
    }

    #[test]
    fn a_missing_journal_starts_a_new_one_and_it_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let store = JournalStore::open(&data).unwrap();
        store.append(&[(1, vec![7])]).unwrap();
        drop(store);
        assert!(!data.join("orchestrator.redb.new").exists());
        assert_eq!(JournalStore::open(&data).unwrap().journal_len().unwrap(), 1);
    }

    #[test]
    fn a_zero_length_journal_is_refused_and_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("orchestrator.redb");
        std::fs::write(&path, b"").unwrap();
        let message = refusal(dir.path());
        assert!(message.contains("is empty"), "{message}");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    }

    #[test]
    fn a_file_that_is_not_a_redb_database_is_refused_and_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("orchestrator.redb");
        let garbage: Vec<u8> = (0..10_000u32).map(|i| (i * 31 % 251) as u8).collect();
        std::fs::write(&path, &garbage).unwrap();
        let message = refusal(dir.path());
        assert!(message.contains("not a redb database"), "{message}");
        assert_eq!(std::fs::read(&path).unwrap(), garbage);
    }

    #[test]
    fn a_redb_database_of_another_program_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let database = redb::Database::create(dir.path().join("orchestrator.redb")).unwrap();
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
        assert!(message.contains("users"), "{message}");
    }

    #[test]
    fn a_truncated_journal_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("orchestrator.redb");
        let store = JournalStore::open(dir.path()).unwrap();
        for sequence in 1..=200u64 {
            store.append(&[(sequence, vec![0xAB; 512])]).unwrap();
        }
        drop(store);
        let whole = std::fs::read(&path).unwrap();
        for keep in [whole.len() / 2, 4096, 600, 16] {
            std::fs::write(&path, &whole[..keep]).unwrap();
            let message = refusal(dir.path());
            assert!(
                message.contains("truncated") || message.contains("corrupt"),
                "{keep} bytes kept: {message}"
            );
        }
    }

    /// Writes `commands` the way releases before versioned records did: bare
    /// codec encodings and no format marker.
    fn write_legacy_journal(dir: &std::path::Path, commands: &[Command]) {
        let database = redb::Database::create(dir.join("orchestrator.redb")).unwrap();
        let transaction = database.begin_write().unwrap();
        {
            let mut journal = transaction.open_table(store::JOURNAL).unwrap();
            for (index, command) in commands.iter().enumerate() {
                // Encoded as format 1 wrote it: no tenants.
                let bytes = herd_protocol::tenant::without_tenants(|| {
                    herd_protocol::codec::encode(command).unwrap()
                });
                journal.insert(index as u64 + 1, bytes.as_slice()).unwrap();
            }
            transaction.open_table(store::META).unwrap();
        }
        transaction.commit().unwrap();
    }

    #[test]
    fn a_journal_from_before_versioned_records_is_migrated_and_replays() {
        let dir = tempfile::tempdir().unwrap();
        let mut original = book();
        let tasks = vec![
            (TaskId::new_v7(), TaskSpec::new("echo", JsonText::null())),
            (TaskId::new_v7(), TaskSpec::new("sleep", JsonText::null())),
        ];
        let commands = vec![
            Command::Submit(original.validate_submission(tasks, UnixMillis(5)).unwrap()),
            Command::Assign {
                member: member("n1"),
                agent_type: AgentType::new("echo"),
                max: 1,
                now: UnixMillis(6),
            },
        ];
        for command in commands.clone() {
            let _ = original.apply(command);
        }
        write_legacy_journal(dir.path(), &commands);

        let store = JournalStore::open(dir.path()).unwrap();
        let recovered = store.recover(book()).unwrap();
        assert_eq!(recovered.last_sequence, 2);
        assert_eq!(observe(&recovered.book), observe(&original));
        drop(store);
        // Migrated once: the file now reads as the current format.
        let reopened = JournalStore::open(dir.path()).unwrap();
        assert_eq!(
            observe(&reopened.recover(book()).unwrap().book),
            observe(&original)
        );
    }

    #[test]
    fn a_format_1_journal_with_a_snapshot_opens_with_every_task_in_the_default_tenant() {
        let dir = tempfile::tempdir().unwrap();
        let mut original = book();
        let submit = |book: &TaskBook, at: u64| {
            let tasks = (0..3)
                .map(|i| {
                    let agent_type = if i == 0 { "echo" } else { "sleep" };
                    (
                        TaskId::new_v7(),
                        TaskSpec::new(agent_type, JsonText::null()),
                    )
                })
                .collect();
            Command::Submit(book.validate_submission(tasks, UnixMillis(at)).unwrap())
        };
        let before_snapshot = submit(&original, 5);
        let _ = original.apply(before_snapshot);
        // Written as format 1 wrote it: a snapshot, then one later entry.
        let old_snapshot = herd_protocol::tenant::without_tenants(|| {
            herd_protocol::codec::encode(&original).unwrap()
        });
        let after_snapshot = submit(&original, 6);
        let old_entry = herd_protocol::tenant::without_tenants(|| {
            herd_protocol::codec::encode(&after_snapshot).unwrap()
        });
        let _ = original.apply(after_snapshot);
        drop(JournalStore::open(dir.path()).unwrap());
        {
            let database = redb::Database::create(dir.path().join("orchestrator.redb")).unwrap();
            let transaction = database.begin_write().unwrap();
            {
                let mut meta = transaction.open_table(store::META).unwrap();
                meta.insert("format", 1u16.to_be_bytes().as_slice())
                    .unwrap();
                meta.insert("snapshot", format::seal_as(1, &old_snapshot).as_slice())
                    .unwrap();
                meta.insert("snapshot_seq", 1u64.to_be_bytes().as_slice())
                    .unwrap();
                let mut journal = transaction.open_table(store::JOURNAL).unwrap();
                journal
                    .insert(2u64, format::seal_as(1, &old_entry).as_slice())
                    .unwrap();
            }
            transaction.commit().unwrap();
        }
        let store = JournalStore::open(dir.path()).unwrap();
        let mut recovered = store.recover(book()).unwrap().book;
        assert_eq!(observe(&recovered), observe(&original));
        let page = recovered.list(&TaskQuery {
            limit: 100,
            ..TaskQuery::default()
        });
        assert_eq!(page.tasks.len(), 6);
        assert!(
            page.tasks
                .iter()
                .all(|t| t.tenant == herd_protocol::Tenant::default())
        );
        // The migrated queues dispatch.
        let effects = recovered.apply(Command::Assign {
            member: member("n1"),
            agent_type: AgentType::new("sleep"),
            max: 10,
            now: UnixMillis(7),
        });
        assert_eq!(effects.len(), 4, "{effects:?}");
    }

    #[test]
    fn scaling_overrides_survive_replay_and_a_snapshot() {
        use crate::task_book::ScalingOverrides;
        let dir = tempfile::tempdir().unwrap();
        let store = JournalStore::open(dir.path()).unwrap();
        let mut original = book();
        let overrides = ScalingOverrides::example();
        let submit = Command::Submit(
            original
                .validate_submission(
                    vec![(TaskId::new_v7(), TaskSpec::new("echo", JsonText::null()))],
                    UnixMillis(5),
                )
                .unwrap(),
        );
        let record = Command::ScalingOverrides(Box::new(overrides.clone()));
        let entries: Vec<(u64, Vec<u8>)> = [submit, record]
            .into_iter()
            .enumerate()
            .map(|(index, command)| {
                let bytes = herd_protocol::codec::encode(&command).unwrap();
                let _ = original.apply(command);
                (index as u64 + 1, bytes)
            })
            .collect();
        store.append(&entries).unwrap();
        let replayed = store.recover(book()).unwrap().book;
        assert_eq!(replayed.scaling_overrides(), &overrides);

        // The snapshot replaces the entries: it must carry them.
        store
            .snapshot(2, &encode_snapshot(&original).unwrap())
            .unwrap();
        assert_eq!(store.journal_len().unwrap(), 0);
        drop(store);
        let recovered = JournalStore::open(dir.path())
            .unwrap()
            .recover(book())
            .unwrap()
            .book;
        assert_eq!(recovered.scaling_overrides(), &overrides);
        assert_eq!(observe(&recovered), observe(&original));
    }

    #[test]
    fn a_format_2_journal_with_a_snapshot_replays_and_has_no_scaling_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let mut original = book();
        let submit = |book: &TaskBook, at: u64| {
            Command::Submit(
                book.validate_submission(
                    vec![(TaskId::new_v7(), TaskSpec::new("sleep", JsonText::null()))],
                    UnixMillis(at),
                )
                .unwrap(),
            )
        };
        let before_snapshot = submit(&original, 5);
        let _ = original.apply(before_snapshot);
        // Written as format 2 wrote it: a bare book, then one later entry.
        let old_snapshot = herd_protocol::codec::encode(&original).unwrap();
        let after_snapshot = submit(&original, 6);
        let old_entry = herd_protocol::codec::encode(&after_snapshot).unwrap();
        let _ = original.apply(after_snapshot);
        drop(JournalStore::open(dir.path()).unwrap());
        {
            let database = redb::Database::create(dir.path().join("orchestrator.redb")).unwrap();
            let transaction = database.begin_write().unwrap();
            {
                let mut meta = transaction.open_table(store::META).unwrap();
                meta.insert("format", 2u16.to_be_bytes().as_slice())
                    .unwrap();
                meta.insert("snapshot", format::seal_as(2, &old_snapshot).as_slice())
                    .unwrap();
                meta.insert("snapshot_seq", 1u64.to_be_bytes().as_slice())
                    .unwrap();
                let mut journal = transaction.open_table(store::JOURNAL).unwrap();
                journal
                    .insert(2u64, format::seal_as(2, &old_entry).as_slice())
                    .unwrap();
            }
            transaction.commit().unwrap();
        }
        let store = JournalStore::open(dir.path()).unwrap();
        let recovered = store.recover(book()).unwrap();
        assert_eq!(recovered.last_sequence, 2);
        assert_eq!(observe(&recovered.book), observe(&original));
        assert_eq!(
            recovered.book.scaling_overrides(),
            &crate::task_book::ScalingOverrides::default()
        );
        // The migrated file takes today's entries after the old ones.
        let overrides = crate::task_book::ScalingOverrides::example();
        let record = Command::ScalingOverrides(Box::new(overrides.clone()));
        store
            .append(&[(3, herd_protocol::codec::encode(&record).unwrap())])
            .unwrap();
        let again = store.recover(book()).unwrap().book;
        assert_eq!(again.scaling_overrides(), &overrides);
        assert_eq!(observe(&again), observe(&original));
    }

    #[test]
    fn a_journal_of_another_format_version_is_refused_naming_file_and_versions() {
        let dir = tempfile::tempdir().unwrap();
        drop(JournalStore::open(dir.path()).unwrap());
        {
            let database = redb::Database::create(dir.path().join("orchestrator.redb")).unwrap();
            let transaction = database.begin_write().unwrap();
            transaction
                .open_table(store::META)
                .unwrap()
                .insert("format", 9u16.to_be_bytes().as_slice())
                .unwrap();
            transaction.commit().unwrap();
        }
        let error = JournalStore::open(dir.path())
            .err()
            .expect("refused")
            .to_string();
        assert!(error.contains("orchestrator.redb"), "{error}");
        assert!(error.contains("format version 9"), "{error}");
        assert!(error.contains("reads format versions 1 to 3"), "{error}");
        assert!(!error.contains("delete"), "{error}");

        // One record of another version inside a current file is refused too.
        let dir = tempfile::tempdir().unwrap();
        let store = JournalStore::open(dir.path()).unwrap();
        store.append(&[(1, vec![1, 2, 3])]).unwrap();
        drop(store);
        {
            let database = redb::Database::create(dir.path().join("orchestrator.redb")).unwrap();
            let transaction = database.begin_write().unwrap();
            transaction
                .open_table(store::JOURNAL)
                .unwrap()
                .insert(1u64, [4u8, 0, 1, 2, 3].as_slice())
                .unwrap();
            transaction.commit().unwrap();
        }
        let store = JournalStore::open(dir.path()).unwrap();
        let error = store.recover(book()).unwrap_err().to_string();
        assert!(
            error.contains("journal entry 1 in format version 4"),
            "{error}"
        );
    }
}
