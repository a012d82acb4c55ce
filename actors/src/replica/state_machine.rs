//! The replica's state machine: a [`TaskBook`] that applies every committed
//! batch of commands, as openraft's v2 [`RaftStateMachine`].
//!
//! Applying is deterministic (commands carry their own times; nothing here
//! reads a clock or draws a random number), so every replica that applied
//! the same prefix of the log holds the same book. The effects a command
//! returns are dropped: the leader's orchestrator carries them out from its
//! own copy of the book.
//!
//! The state is persisted only as snapshots: with a replica file, the latest
//! snapshot is kept in it and [`ReplicaStateMachine::open`] starts from it;
//! openraft re-applies the committed entries after it from the log.
//!
//! Besides the book, the state machine keeps the replica group's id: the
//! first [`Command::ReplicaGroup`] in the log. Being part of the applied
//! state, it is the same on every replica that applied the same prefix,
//! travels in snapshots to a replica that joins later, and comes back with
//! the snapshot and the log after a restart on the data directory.

use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use herd_protocol::messages::replica::ReplicaGroupId;
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StorageIOError,
    StoredMembership,
};
use redb::ReadableDatabase;
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, watch};

use super::file::{ReplicaFile, ReplicaFileError, SNAPSHOT, SNAPSHOT_DATA_KEY, SNAPSHOT_META_KEY};
use super::types::{
    BatchApplied, ReplicaEntry, ReplicaId, ReplicaNode, ReplicaStorageError, ReplicaTypes,
};
use crate::task_book::{BookConfiguration, Command, ScalingOverrides, TaskBook};

/// The last applied log id of a replica.
pub type AppliedLogId = Option<LogId<ReplicaId>>;
/// The membership a replica last applied.
pub type AppliedMembership = StoredMembership<ReplicaId, ReplicaNode>;
/// A snapshot's metadata.
pub type ReplicaSnapshotMeta = SnapshotMeta<ReplicaId, ReplicaNode>;

/// What the state machine holds, changed only under its write lock, so a
/// reader always sees a book together with the log id it is as of.
#[derive(Debug)]
struct Applied {
    last_applied: AppliedLogId,
    last_membership: AppliedMembership,
    book: TaskBook,
    /// The replica group, once the log named it.
    group: Option<ReplicaGroupId>,
}

/// A snapshot's content, as encoded (borrowing the live state).
#[derive(Serialize)]
struct SnapshotOut<'a> {
    last_applied: AppliedLogId,
    last_membership: &'a AppliedMembership,
    book: &'a TaskBook,
    /// The book's settings and agent types (a book's encoding leaves them
    /// out): the last `Configure` in the log it covers, or the template's.
    configuration: BookConfiguration,
    /// The book's scaling overrides (left out of its encoding too): the
    /// last `ScalingOverrides` in the log it covers.
    scaling_overrides: &'a ScalingOverrides,
    /// The replica group, if the log it covers named it. Last, so that a
    /// snapshot written before it existed is told apart (see
    /// [`decode_snapshot`]).
    group: Option<&'a ReplicaGroupId>,
}

/// A snapshot's content, as decoded: the same fields as [`SnapshotOut`].
#[derive(Deserialize)]
struct SnapshotIn {
    last_applied: AppliedLogId,
    last_membership: AppliedMembership,
    book: TaskBook,
    configuration: BookConfiguration,
    scaling_overrides: ScalingOverrides,
    group: Option<ReplicaGroupId>,
}

/// A snapshot written by a release before replica groups were named:
/// [`SnapshotIn`] without its last field. Its group is named by the next
/// leader (see `runtime::leadership`), in the log after it.
#[derive(Deserialize)]
struct SnapshotBeforeGroups {
    last_applied: AppliedLogId,
    last_membership: AppliedMembership,
    book: TaskBook,
    configuration: BookConfiguration,
    scaling_overrides: ScalingOverrides,
}

impl From<SnapshotBeforeGroups> for SnapshotIn {
    fn from(old: SnapshotBeforeGroups) -> SnapshotIn {
        SnapshotIn {
            last_applied: old.last_applied,
            last_membership: old.last_membership,
            book: old.book,
            configuration: old.configuration,
            scaling_overrides: old.scaling_overrides,
            group: None,
        }
    }
}

/// A snapshot written by a release before scaling overrides were
/// replicated: [`SnapshotBeforeGroups`] without its last field. Such a book
/// had no overrides.
#[derive(Deserialize)]
struct SnapshotBeforeScalingOverrides {
    last_applied: AppliedLogId,
    last_membership: AppliedMembership,
    book: TaskBook,
    configuration: BookConfiguration,
}

impl From<SnapshotBeforeScalingOverrides> for SnapshotIn {
    fn from(old: SnapshotBeforeScalingOverrides) -> SnapshotIn {
        SnapshotIn {
            last_applied: old.last_applied,
            last_membership: old.last_membership,
            book: old.book,
            configuration: old.configuration,
            scaling_overrides: ScalingOverrides::default(),
            group: None,
        }
    }
}

impl SnapshotIn {
    /// The state it holds: the book with what its encoding left out put back.
    fn into_applied(self) -> Applied {
        let mut book = self.book;
        book.reconfigure_to(self.configuration);
        book.restore_scaling_overrides(self.scaling_overrides);
        Applied {
            last_applied: self.last_applied,
            last_membership: self.last_membership,
            book,
            group: self.group,
        }
    }
}

/// The current snapshot: what `get_current_snapshot` hands out.
#[derive(Debug, Clone)]
struct CurrentSnapshot {
    meta: ReplicaSnapshotMeta,
    data: Vec<u8>,
}

/// A snapshot that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The data did not decode.
    #[error("the replica snapshot {snapshot_id} does not decode: {reason}")]
    Undecodable {
        /// The snapshot's id.
        snapshot_id: String,
        /// The decoder's complaint.
        reason: String,
    },
    /// The data is of another point in the log than its metadata says.
    #[error(
        "the replica snapshot {snapshot_id} claims to be as of {claimed:?} but holds the book as of {holds:?}"
    )]
    Mismatch {
        /// The snapshot's id.
        snapshot_id: String,
        /// The metadata's last log id.
        claimed: AppliedLogId,
        /// The data's last log id.
        holds: AppliedLogId,
    },
    /// A panic while applying left the book half-changed; this replica must
    /// not apply anything more on top of it.
    #[error("the replica's task book was left half-applied by a panic")]
    Poisoned,
}

/// The parts shared by the state machine, its snapshot builders and
/// [`ReplicaBook`] handles.
struct Shared {
    applied: RwLock<Applied>,
    /// `applied.group`, for those who wait for it to be named.
    group: watch::Sender<Option<ReplicaGroupId>>,
    /// Held across a snapshot's persisting, so the stored snapshot and the
    /// current one change together and never go back in the log.
    current: Mutex<Option<CurrentSnapshot>>,
    file: Option<ReplicaFile>,
    /// Numbers this process's snapshots (part of their ids).
    builds: AtomicU64,
}

/// A replica's state machine. See the module docs.
pub struct ReplicaStateMachine {
    shared: Arc<Shared>,
}

/// A read handle on a replica's book, for the local orchestrator.
#[derive(Clone)]
pub struct ReplicaBook {
    shared: Arc<Shared>,
}

/// Builds snapshots of a [`ReplicaStateMachine`] (openraft runs it in a
/// task of its own, alongside applying).
pub struct ReplicaSnapshotBuilder {
    shared: Arc<Shared>,
}

impl ReplicaStateMachine {
    /// A state machine in memory, starting from `template` (a freshly
    /// configured, empty book that carries settings and agent types).
    /// Its snapshots live in memory only.
    pub fn in_memory(template: TaskBook) -> ReplicaStateMachine {
        Self::start(template, None, None)
    }

    /// A state machine whose snapshots are kept in `file`, starting from the
    /// snapshot stored there (or from `template` if there is none). The
    /// entries after the snapshot are re-applied by openraft from the log.
    pub fn open(
        template: TaskBook,
        file: ReplicaFile,
    ) -> Result<ReplicaStateMachine, ReplicaFileError> {
        let stored = load_snapshot(&file)?;
        Ok(Self::start(template, Some(file), stored))
    }

    fn start(
        template: TaskBook,
        file: Option<ReplicaFile>,
        stored: Option<(CurrentSnapshot, SnapshotIn)>,
    ) -> ReplicaStateMachine {
        let (current, applied) = match stored {
            Some((current, content)) => (Some(current), content.into_applied()),
            None => (
                None,
                Applied {
                    last_applied: None,
                    last_membership: StoredMembership::default(),
                    book: template,
                    group: None,
                },
            ),
        };
        ReplicaStateMachine {
            shared: Arc::new(Shared {
                group: watch::Sender::new(applied.group.clone()),
                applied: RwLock::new(applied),
                current: Mutex::new(current),
                file,
                builds: AtomicU64::new(0),
            }),
        }
    }

    /// A read handle on the book, which follows this state machine.
    pub fn book(&self) -> ReplicaBook {
        ReplicaBook {
            shared: self.shared.clone(),
        }
    }
}

impl ReplicaBook {
    /// A copy of the book together with the log id it is as of (`None`:
    /// nothing applied yet). Never a book half-way through a batch.
    pub fn copy_of_book(&self) -> (AppliedLogId, TaskBook) {
        // A poisoned lock means applying panicked; the state machine then
        // refuses to go on and Raft stops, so this replica's orchestrator is
        // being dropped anyway: what it reads last does not matter.
        let applied = self
            .shared
            .applied
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        (applied.last_applied, applied.book.clone())
    }

    /// The replica group, if the log applied so far named it. Once named it
    /// never changes (a snapshot installed over it is of the same group:
    /// replicas of another group refuse each other's requests).
    pub fn group(&self) -> Option<ReplicaGroupId> {
        self.shared.group.borrow().clone()
    }

    /// Follows [`Self::group`]: changes when the log names the group (or a
    /// snapshot brings it).
    pub fn group_changes(&self) -> watch::Receiver<Option<ReplicaGroupId>> {
        self.shared.group.subscribe()
    }

    /// The index of the last applied entry (openraft's metrics say the
    /// same to everyone else).
    #[cfg(test)]
    pub fn applied_index(&self) -> Option<u64> {
        let applied = self
            .shared
            .applied
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        applied.last_applied.map(|id| id.index)
    }
}

fn poisoned<T>(_: PoisonError<T>) -> AnyError {
    AnyError::new(&SnapshotError::Poisoned)
}

/// Replaces the snapshot stored in `file` in one durable transaction.
/// Snapshot data files sit beside the replica file, named after their
/// snapshot: `replica-snapshot-<id>.bin`.
const SNAPSHOT_FILE_PREFIX: &str = "replica-snapshot-";

/// Stores a snapshot: its data in a file of its own (written under a
/// temporary name, synced, renamed, the directory synced), then its metadata
/// and the file's name in one small redb transaction, then older data files
/// are removed. A large book is never written inside a redb transaction,
/// which would hold redb's one writer — and with it every log append and
/// vote — for as long as the write takes. A crash before the transaction
/// leaves an orphan file that the next store removes.
fn store_snapshot(
    file: &ReplicaFile,
    snapshot_id: &str,
    meta: &[u8],
    data: &[u8],
) -> Result<(), ReplicaFileError> {
    use std::io::Write;
    let dir = file.directory();
    let safe_id: String = snapshot_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let name = format!("{SNAPSHOT_FILE_PREFIX}{safe_id}.bin");
    let temporary = dir.join(format!("{name}.tmp"));
    let written = (|| {
        let mut out = std::fs::File::create(&temporary)?;
        out.write_all(data)?;
        out.sync_all()?;
        std::fs::rename(&temporary, dir.join(&name))?;
        std::fs::File::open(dir)?.sync_all()
    })();
    written.map_err(|e| file.io(e))?;
    let transaction = file.database().begin_write().map_err(|e| file.io(e))?;
    {
        let mut table = transaction.open_table(SNAPSHOT).map_err(|e| file.io(e))?;
        table
            .insert(SNAPSHOT_META_KEY, meta)
            .map_err(|e| file.io(e))?;
        table
            .insert(SNAPSHOT_DATA_KEY, name.as_bytes())
            .map_err(|e| file.io(e))?;
    }
    transaction.commit().map_err(|e| file.io(e))?;
    // Older snapshots and leftovers of interrupted stores.
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let other = entry.file_name().to_string_lossy().into_owned();
            if other.starts_with(SNAPSHOT_FILE_PREFIX) && other != name {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    Ok(())
}

/// The snapshot stored in `file`, decoded, if there is one.
fn load_snapshot(
    file: &ReplicaFile,
) -> Result<Option<(CurrentSnapshot, SnapshotIn)>, ReplicaFileError> {
    let transaction = file.database().begin_read().map_err(|e| file.io(e))?;
    let table = transaction.open_table(SNAPSHOT).map_err(|e| file.io(e))?;
    let meta = table.get(SNAPSHOT_META_KEY).map_err(|e| file.io(e))?;
    let data = table.get(SNAPSHOT_DATA_KEY).map_err(|e| file.io(e))?;
    let (meta, name) = match (meta, data) {
        (Some(meta), Some(name)) => (meta.value().to_vec(), name.value().to_vec()),
        (None, None) => return Ok(None),
        _ => return Err(file.corrupt("snapshot", "metadata or data missing")),
    };
    let name = String::from_utf8(name)
        .ok()
        .filter(|name| name.starts_with(SNAPSHOT_FILE_PREFIX) && !name.contains('/'))
        .ok_or_else(|| file.corrupt("snapshot", "the data file's name is not one herd writes"))?;
    let data = std::fs::read(file.directory().join(&name))
        .map_err(|e| file.corrupt("snapshot", format!("its data file {name}: {e}")))?;
    let meta: ReplicaSnapshotMeta = herd_protocol::codec::decode_stored(&meta)
        .map_err(|e| file.corrupt("snapshot metadata", e))?;
    let content = decode_snapshot(&meta, &data).map_err(|e| file.corrupt("snapshot", e))?;
    Ok(Some((CurrentSnapshot { meta, data }, content)))
}

/// Decodes a snapshot's data and checks it is what `meta` says. Data of a
/// release before replica groups were named, or before scaling overrides
/// were replicated (a data directory kept across the upgrade), lacks the
/// last field or two: decoding it as a later layout runs out of bytes, and
/// decoding a later one as an earlier layout leaves bytes over, so no two
/// layouts pass for each other.
fn decode_snapshot(meta: &ReplicaSnapshotMeta, data: &[u8]) -> Result<SnapshotIn, SnapshotError> {
    use herd_protocol::codec::decode_stored;
    let content: SnapshotIn = decode_stored(data)
        .or_else(|error| {
            decode_stored::<SnapshotBeforeGroups>(data)
                .map(SnapshotIn::from)
                .or_else(|_| {
                    decode_stored::<SnapshotBeforeScalingOverrides>(data).map(|old| {
                        SnapshotIn::from(SnapshotBeforeGroups {
                            last_applied: old.last_applied,
                            last_membership: old.last_membership,
                            book: old.book,
                            configuration: old.configuration,
                            scaling_overrides: ScalingOverrides::default(),
                        })
                    })
                })
                .map_err(|_| error)
        })
        .map_err(|e| SnapshotError::Undecodable {
            snapshot_id: meta.snapshot_id.clone(),
            reason: e.to_string(),
        })?;
    if content.last_applied != meta.last_log_id || content.last_membership != meta.last_membership {
        return Err(SnapshotError::Mismatch {
            snapshot_id: meta.snapshot_id.clone(),
            claimed: meta.last_log_id,
            holds: content.last_applied,
        });
    }
    Ok(content)
}

impl Shared {
    /// Tells [`ReplicaBook::group_changes`] followers of a newly named group.
    fn publish_group(&self, applied: &Applied) {
        self.group.send_if_modified(|published| {
            let changed = *published != applied.group;
            if changed {
                published.clone_from(&applied.group);
            }
            changed
        });
    }

    /// Makes `snapshot` the current one (and the stored one, with a file),
    /// unless the current one is further along the log: a build that raced
    /// with an install must not replace the newer snapshot.
    async fn keep_snapshot(&self, snapshot: CurrentSnapshot, force: bool) -> Result<(), AnyError> {
        let mut current = self.current.lock().await;
        if !force
            && let Some(kept) = current.as_ref()
            && kept.meta.last_log_id > snapshot.meta.last_log_id
        {
            return Ok(());
        }
        if let Some(file) = &self.file {
            let meta =
                herd_protocol::codec::encode(&snapshot.meta).map_err(|e| AnyError::new(&e))?;
            let data = snapshot.data.clone();
            let snapshot_id = snapshot.meta.snapshot_id.clone();
            file.write_blocking(move |file| store_snapshot(file, &snapshot_id, &meta, &data))
                .await?;
        }
        *current = Some(snapshot);
        Ok(())
    }
}

impl RaftSnapshotBuilder<ReplicaTypes> for ReplicaSnapshotBuilder {
    /// Encodes the book as of the last applied entry, keeps it as the
    /// current snapshot and, with a file, stores it there before returning
    /// (openraft may purge the log it covers right after).
    async fn build_snapshot(&mut self) -> Result<Snapshot<ReplicaTypes>, ReplicaStorageError> {
        let (meta, data) = {
            let applied = self
                .shared
                .applied
                .read()
                .map_err(|e| StorageIOError::read_state_machine(poisoned(e)))?;
            let data = herd_protocol::codec::encode(&SnapshotOut {
                last_applied: applied.last_applied,
                last_membership: &applied.last_membership,
                book: &applied.book,
                configuration: applied.book.configuration(),
                scaling_overrides: applied.book.scaling_overrides(),
                group: applied.group.as_ref(),
            })
            .map_err(|e| StorageIOError::read_state_machine(AnyError::new(&e)))?;
            // A random part keeps ids unique across restarts: two different
            // encodings of the same point (maps encode in any order) must
            // never be streamed to a follower under one id.
            let snapshot_id = format!(
                "{}-{}-{}-{:016x}",
                applied
                    .last_applied
                    .map(|id| id.leader_id.term)
                    .unwrap_or(0),
                applied.last_applied.map(|id| id.index).unwrap_or(0),
                self.shared.builds.fetch_add(1, Ordering::Relaxed),
                rand::random::<u64>(),
            );
            let meta = SnapshotMeta {
                last_log_id: applied.last_applied,
                last_membership: applied.last_membership.clone(),
                snapshot_id,
            };
            (meta, data)
        };
        let snapshot = CurrentSnapshot {
            meta: meta.clone(),
            data: data.clone(),
        };
        self.shared
            .keep_snapshot(snapshot, false)
            .await
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<ReplicaTypes> for ReplicaStateMachine {
    type SnapshotBuilder = ReplicaSnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(AppliedLogId, AppliedMembership), ReplicaStorageError> {
        let applied = self
            .shared
            .applied
            .read()
            .map_err(|e| StorageIOError::read_state_machine(poisoned(e)))?;
        Ok((applied.last_applied, applied.last_membership.clone()))
    }

    /// Applies the entries in order, under one write lock, so a reader sees
    /// the book before or after the whole call.
    async fn apply<I>(&mut self, entries: I) -> Result<Vec<BatchApplied>, ReplicaStorageError>
    where
        I: IntoIterator<Item = ReplicaEntry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut answers = Vec::new();
        {
            let mut applied = self
                .shared
                .applied
                .write()
                .map_err(|e| StorageIOError::write_state_machine(poisoned(e)))?;
            for entry in entries {
                let mut answer = BatchApplied::default();
                match entry.payload {
                    EntryPayload::Blank => {}
                    EntryPayload::Normal(batch) if batch.term != entry.log_id.leader_id.term => {
                        answer.fenced = true;
                    }
                    EntryPayload::Normal(batch) => {
                        answer.commands = batch.commands.len();
                        for command in batch.commands {
                            if let Command::ReplicaGroup(group) = &command
                                && applied.group.is_none()
                            {
                                // The first one names the group for good.
                                applied.group = Some((**group).clone());
                            }
                            // The leader's orchestrator acts on its own copy.
                            let _effects = applied.book.apply(command);
                        }
                    }
                    EntryPayload::Membership(membership) => {
                        applied.last_membership =
                            StoredMembership::new(Some(entry.log_id), membership);
                    }
                }
                applied.last_applied = Some(entry.log_id);
                answers.push(answer);
            }
            self.shared.publish_group(&applied);
        }
        Ok(answers)
    }

    async fn get_snapshot_builder(&mut self) -> ReplicaSnapshotBuilder {
        ReplicaSnapshotBuilder {
            shared: self.shared.clone(),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, ReplicaStorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    /// Decodes the snapshot, stores it (with a file), then replaces the book:
    /// a snapshot that does not decode or cannot be stored changes nothing.
    async fn install_snapshot(
        &mut self,
        meta: &ReplicaSnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), ReplicaStorageError> {
        let data = snapshot.into_inner();
        let bytes = data.len();
        let content = decode_snapshot(meta, &data).map_err(|e| {
            StorageIOError::read_snapshot(Some(meta.signature()), AnyError::new(&e))
        })?;
        let installed = content.into_applied();
        let current = CurrentSnapshot {
            meta: meta.clone(),
            data,
        };
        self.shared
            .keep_snapshot(current, true)
            .await
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), e))?;
        {
            let mut applied = self
                .shared
                .applied
                .write()
                .map_err(|e| StorageIOError::write_state_machine(poisoned(e)))?;
            *applied = installed;
            self.shared.publish_group(&applied);
        }
        tracing::info!(
            through = ?meta.last_log_id,
            bytes,
            "installed a snapshot of the task book from the leader"
        );
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<ReplicaTypes>>, ReplicaStorageError> {
        let current = self.shared.current.lock().await;
        Ok(current.as_ref().map(|kept| Snapshot {
            meta: kept.meta.clone(),
            snapshot: Box::new(Cursor::new(kept.data.clone())),
        }))
    }
}
