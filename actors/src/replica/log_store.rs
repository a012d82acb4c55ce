//! The Raft log of a replica, with its vote and committed log id: openraft's
//! v2 [`RaftLogStorage`], in memory or in the replica's redb file.
//!
//! Writes to the file run on tokio's blocking pool and are awaited, so they
//! neither stall the runtime's workers nor overtake one another: openraft
//! issues the next write only when the previous call returned, which is
//! how this store keeps its writes in order.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, LogId, OptionalSend, RaftLogReader, StorageIOError, Vote};
use redb::{ReadableDatabase, ReadableTable};

use super::file::{
    self, COMMITTED_KEY, ENTRIES, META, PURGED_KEY, ReplicaFile, ReplicaFileError, VOTE_KEY,
};
use super::types::{ReplicaEntry, ReplicaId, ReplicaStorageError, ReplicaTypes};

/// The in-memory log and its pointers.
#[derive(Debug, Default)]
struct MemoryLog {
    entries: BTreeMap<u64, ReplicaEntry>,
    vote: Option<Vote<ReplicaId>>,
    committed: Option<LogId<ReplicaId>>,
    last_purged: Option<LogId<ReplicaId>>,
}

#[derive(Debug, Clone)]
enum Backend {
    /// Lost when the process ends; the replica then comes back as a new
    /// member under a new id.
    Memory(Arc<Mutex<MemoryLog>>),
    /// The replica's redb file.
    File(ReplicaFile),
}

/// A replica's Raft log, vote and committed log id. Clones (and the log
/// reader, which is one) share the same data.
#[derive(Debug, Clone)]
pub struct ReplicaLogStore {
    replica_id: ReplicaId,
    backend: Backend,
}

impl ReplicaLogStore {
    /// An empty log in memory, under a freshly drawn replica id.
    pub fn in_memory() -> ReplicaLogStore {
        ReplicaLogStore {
            replica_id: rand::random(),
            backend: Backend::Memory(Arc::default()),
        }
    }

    /// The log in `file`, under the replica id stored there.
    pub fn on_file(file: ReplicaFile) -> ReplicaLogStore {
        ReplicaLogStore {
            replica_id: file.replica_id(),
            backend: Backend::File(file),
        }
    }

    /// This replica's id: drawn when its storage was created, the same for
    /// as long as that storage lasts.
    pub fn replica_id(&self) -> ReplicaId {
        self.replica_id
    }
}

/// The in-memory log, even if a panic elsewhere poisoned its lock: every
/// change below is a single map or field update, never left half-done.
fn lock(log: &Mutex<MemoryLog>) -> MutexGuard<'_, MemoryLog> {
    log.lock().unwrap_or_else(|e| e.into_inner())
}

fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, AnyError> {
    herd_protocol::codec::encode(value).map_err(|e| AnyError::new(&e))
}

/// Writes `pairs` into `META` in one durable transaction.
fn put_meta(file: &ReplicaFile, pairs: &[(&str, Vec<u8>)]) -> Result<(), ReplicaFileError> {
    put_meta_with(file, pairs, redb::Durability::Immediate)
}

/// Writes meta keys with the given durability: `None` for what may be lost
/// in a crash (the committed log id, which openraft only uses to re-apply
/// sooner after a restart), so a commit costs one fsync, not two.
fn put_meta_with(
    file: &ReplicaFile,
    pairs: &[(&str, Vec<u8>)],
    durability: redb::Durability,
) -> Result<(), ReplicaFileError> {
    let mut transaction = file.database().begin_write().map_err(|e| file.io(e))?;
    transaction
        .set_durability(durability)
        .map_err(|e| file.io(e))?;
    {
        let mut meta = transaction.open_table(META).map_err(|e| file.io(e))?;
        for (key, value) in pairs {
            meta.insert(*key, value.as_slice())
                .map_err(|e| file.io(e))?;
        }
    }
    transaction.commit().map_err(|e| file.io(e))
}

fn decode_entry(file: &ReplicaFile, index: u64, bytes: &[u8]) -> Result<ReplicaEntry, AnyError> {
    herd_protocol::codec::decode_stored(bytes)
        .map_err(|e| AnyError::new(&file.corrupt(&format!("log entry {index}"), e)))
}

fn read_entries<RB: RangeBounds<u64>>(
    file: &ReplicaFile,
    range: RB,
) -> Result<Vec<ReplicaEntry>, AnyError> {
    let io = |e: &dyn std::fmt::Display| AnyError::new(&file.io(e));
    let transaction = file.database().begin_read().map_err(|e| io(&e))?;
    let table = transaction.open_table(ENTRIES).map_err(|e| io(&e))?;
    let mut entries = Vec::new();
    for row in table.range(range).map_err(|e| io(&e))? {
        let (index, bytes) = row.map_err(|e| io(&e))?;
        entries.push(decode_entry(file, index.value(), bytes.value())?);
    }
    Ok(entries)
}

fn last_entry(file: &ReplicaFile) -> Result<Option<ReplicaEntry>, AnyError> {
    let io = |e: &dyn std::fmt::Display| AnyError::new(&file.io(e));
    let transaction = file.database().begin_read().map_err(|e| io(&e))?;
    let table = transaction.open_table(ENTRIES).map_err(|e| io(&e))?;
    match table.last().map_err(|e| io(&e))? {
        None => Ok(None),
        Some((index, bytes)) => decode_entry(file, index.value(), bytes.value()).map(Some),
    }
}

fn meta<T: serde::de::DeserializeOwned>(
    file: &ReplicaFile,
    key: &str,
) -> Result<Option<T>, AnyError> {
    file::read_meta(file, key).map_err(|e| AnyError::new(&e))
}

impl RaftLogReader<ReplicaTypes> for ReplicaLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<ReplicaEntry>, ReplicaStorageError> {
        match &self.backend {
            Backend::Memory(log) => Ok(lock(log)
                .entries
                .range(range)
                .map(|(_, entry)| entry.clone())
                .collect()),
            // Read in place: a read transaction takes no lock and openraft
            // asks for bounded ranges.
            Backend::File(file) => {
                read_entries(file, range).map_err(|e| StorageIOError::read_logs(e).into())
            }
        }
    }
}

impl RaftLogStorage<ReplicaTypes> for ReplicaLogStore {
    type LogReader = ReplicaLogStore;

    async fn get_log_state(&mut self) -> Result<LogState<ReplicaTypes>, ReplicaStorageError> {
        let (last_purged_log_id, last_entry) = match &self.backend {
            Backend::Memory(log) => {
                let log = lock(log);
                let last = log.entries.values().next_back().map(|entry| entry.log_id);
                (log.last_purged, last)
            }
            Backend::File(file) => {
                let purged = meta::<LogId<ReplicaId>>(file, PURGED_KEY)
                    .map_err(StorageIOError::read_logs)?;
                let last = last_entry(file)
                    .map_err(StorageIOError::read_logs)?
                    .map(|entry| entry.log_id);
                (purged, last)
            }
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id: last_entry.or(last_purged_log_id),
        })
    }

    async fn get_log_reader(&mut self) -> ReplicaLogStore {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<ReplicaId>) -> Result<(), ReplicaStorageError> {
        match &self.backend {
            Backend::Memory(log) => {
                lock(log).vote = Some(*vote);
                Ok(())
            }
            Backend::File(file) => {
                let bytes = encode(vote).map_err(StorageIOError::write_vote)?;
                file.write_blocking(move |file| put_meta(file, &[(VOTE_KEY, bytes)]))
                    .await
                    .map_err(|e| StorageIOError::write_vote(e).into())
            }
        }
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<ReplicaId>>, ReplicaStorageError> {
        match &self.backend {
            Backend::Memory(log) => Ok(lock(log).vote),
            Backend::File(file) => {
                meta(file, VOTE_KEY).map_err(|e| StorageIOError::read_vote(e).into())
            }
        }
    }

    /// Saved so that a restarted replica re-applies everything it knew was
    /// committed before it serves anything (the state machine itself is
    /// persisted only as snapshots).
    async fn save_committed(
        &mut self,
        committed: Option<LogId<ReplicaId>>,
    ) -> Result<(), ReplicaStorageError> {
        match &self.backend {
            Backend::Memory(log) => {
                lock(log).committed = committed;
                Ok(())
            }
            Backend::File(file) => {
                let bytes = encode(&committed).map_err(StorageIOError::write)?;
                file.write_blocking(move |file| {
                    put_meta_with(file, &[(COMMITTED_KEY, bytes)], redb::Durability::None)
                })
                .await
                .map_err(|e| StorageIOError::write(e).into())
            }
        }
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<ReplicaId>>, ReplicaStorageError> {
        match &self.backend {
            Backend::Memory(log) => Ok(lock(log).committed),
            Backend::File(file) => {
                // Stored as an `Option` itself: `None` written is `None` read.
                let stored: Option<Option<LogId<ReplicaId>>> =
                    meta(file, COMMITTED_KEY).map_err(StorageIOError::read)?;
                Ok(stored.flatten())
            }
        }
    }

    /// Memory: the entries are in place before the callback is called.
    /// File: the callback is called only once the write transaction holding
    /// the entries has committed, i.e. they are on disk.
    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<ReplicaTypes>,
    ) -> Result<(), ReplicaStorageError>
    where
        I: IntoIterator<Item = ReplicaEntry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        match &self.backend {
            Backend::Memory(log) => {
                let mut log = lock(log);
                for entry in entries {
                    log.entries.insert(entry.log_id.index, entry);
                }
                drop(log);
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Backend::File(file) => {
                let encoded = entries
                    .into_iter()
                    .map(|entry| Ok((entry.log_id.index, encode(&entry)?)))
                    .collect::<Result<Vec<_>, AnyError>>()
                    .map_err(StorageIOError::write_logs)?;
                // Returning only after the commit also makes the entries
                // readable when this returns, as openraft requires.
                let written = file
                    .write_blocking(move |file| {
                        let transaction = file.database().begin_write().map_err(|e| file.io(e))?;
                        {
                            let mut table =
                                transaction.open_table(ENTRIES).map_err(|e| file.io(e))?;
                            for (index, bytes) in &encoded {
                                table
                                    .insert(*index, bytes.as_slice())
                                    .map_err(|e| file.io(e))?;
                            }
                        }
                        transaction.commit().map_err(|e| file.io(e))
                    })
                    .await;
                match written {
                    Ok(()) => {
                        callback.log_io_completed(Ok(()));
                        Ok(())
                    }
                    Err(error) => {
                        callback.log_io_completed(Err(std::io::Error::other(error.to_string())));
                        Err(StorageIOError::write_logs(error).into())
                    }
                }
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<ReplicaId>) -> Result<(), ReplicaStorageError> {
        match &self.backend {
            Backend::Memory(log) => {
                lock(log).entries.split_off(&log_id.index);
                Ok(())
            }
            Backend::File(file) => file
                .write_blocking(move |file| {
                    let transaction = file.database().begin_write().map_err(|e| file.io(e))?;
                    transaction
                        .open_table(ENTRIES)
                        .map_err(|e| file.io(e))?
                        .retain_in(log_id.index.., |_, _| false)
                        .map_err(|e| file.io(e))?;
                    transaction.commit().map_err(|e| file.io(e))
                })
                .await
                .map_err(|e| StorageIOError::write_logs(e).into()),
        }
    }

    async fn purge(&mut self, log_id: LogId<ReplicaId>) -> Result<(), ReplicaStorageError> {
        match &self.backend {
            Backend::Memory(log) => {
                let mut log = lock(log);
                log.entries = log.entries.split_off(&(log_id.index + 1));
                log.last_purged = Some(log_id);
                Ok(())
            }
            Backend::File(file) => {
                let purged = encode(&log_id).map_err(StorageIOError::write_logs)?;
                // One transaction: the purged pointer and the entries it
                // covers never disagree on disk.
                file.write_blocking(move |file| {
                    let transaction = file.database().begin_write().map_err(|e| file.io(e))?;
                    {
                        transaction
                            .open_table(META)
                            .map_err(|e| file.io(e))?
                            .insert(PURGED_KEY, purged.as_slice())
                            .map_err(|e| file.io(e))?;
                        transaction
                            .open_table(ENTRIES)
                            .map_err(|e| file.io(e))?
                            .retain_in(..=log_id.index, |_, _| false)
                            .map_err(|e| file.io(e))?;
                    }
                    transaction.commit().map_err(|e| file.io(e))
                })
                .await
                .map_err(|e| StorageIOError::write_logs(e).into())
            }
        }
    }
}
