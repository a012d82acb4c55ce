//! The replica's redb file in the data directory: the Raft log, the vote,
//! the committed log id, the replica's own id, and the latest state machine
//! snapshot. Shared by the log store and the state machine, which each
//! write their own tables.
//!
//! A new file is initialised under a temporary name and renamed into place,
//! like the orchestrator journal, so the replica id drawn for it is either
//! on disk or was never seen by anyone.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{
    Database, MultimapTableHandle, ReadableDatabase, ReadableTable, TableDefinition, TableHandle,
};
use tracing::info;

use super::types::ReplicaId;
use crate::journal::preflight::{self, Found, OpenFailure};

/// Raft log entries: log index → codec-encoded [`super::types::ReplicaEntry`].
pub(super) const ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("entries");
/// The file's format version, the replica id, the vote, the committed and
/// the last purged log ids (see the `*_KEY` constants).
pub(super) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// The latest state machine snapshot: its metadata and its data.
pub(super) const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshot");

/// `META` key of the file's format version (u16, big-endian).
const FORMAT_KEY: &str = "format";
/// `META` key of the replica's id (u64, big-endian).
const REPLICA_ID_KEY: &str = "replica_id";
/// `META` key of the last saved vote (codec).
pub(super) const VOTE_KEY: &str = "vote";
/// `META` key of the last saved committed log id (codec).
pub(super) const COMMITTED_KEY: &str = "committed";
/// `META` key of the last purged log id (codec).
pub(super) const PURGED_KEY: &str = "last_purged";
/// `SNAPSHOT` key of the snapshot's metadata (codec).
pub(super) const SNAPSHOT_META_KEY: &str = "meta";
/// `SNAPSHOT` key of the name of the snapshot's data file, beside the
/// replica file (the data, the state machine's encoding, is not in redb).
pub(super) const SNAPSHOT_DATA_KEY: &str = "data";

/// The format this release writes and reads. A file of another version is
/// refused rather than misread.
const FORMAT_VERSION: u16 = 1;

/// The replica store's file name inside the data directory.
pub const FILE_NAME: &str = "replica.redb";
/// Where a new replica store is initialised before it is renamed to
/// [`FILE_NAME`].
const NEW_FILE_NAME: &str = "replica.redb.new";

/// What the operator can do about a replica file that cannot be used. Unlike
/// the journal, a replica's data can be rebuilt from the other replicas, so
/// moving it away is a normal way out, as long as the others hold the book.
fn recovery_options(path: &Path) -> String {
    format!(
        "if the other orchestrator replicas are running, move it away (e.g. mv {path} {path}.broken) and this node rejoins as a new replica that catches up from them; otherwise restore {path} from a backup",
        path = path.display()
    )
}

/// The replica file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaFileError {
    /// The directory or file could not be opened or created.
    #[error(
        "cannot open the replica store at {path}: {reason}; check that the data directory is writable and not used by another running herd node"
    )]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A read or write failed.
    #[error("replica store {path}: I/O failed: {reason}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The file is not a replica store: empty, not a redb database, a redb
    /// database of something else, or damaged. Left as it is: replacing it
    /// with an empty store would make this node a voter that forgot its vote.
    #[error(
        "the replica store at {path} {problem}; herd refuses to start with it: {}",
        recovery_options(path)
    )]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// The file was written in a format this release does not read.
    #[error(
        "the replica store at {path} is in format version {found}, but this herd release reads format version {FORMAT_VERSION}; start the herd release that wrote it, or {}",
        recovery_options(path)
    )]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version found.
        found: u16,
    },
    /// A stored value did not decode.
    #[error(
        "the replica store at {path} holds an undecodable {what} ({reason}); it is corrupt or was written by an incompatible herd release: {}",
        recovery_options(path)
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Which value.
        what: String,
        /// The decoder's complaint.
        reason: String,
    },
}

struct Shared {
    database: Database,
    path: PathBuf,
    replica_id: ReplicaId,
}

/// An open replica file. Cheap to clone: clones share the one database
/// handle (redb allows one per file), which closes when the last is dropped.
#[derive(Clone)]
pub struct ReplicaFile {
    shared: Arc<Shared>,
}

/// Says when every handle on a replica file is gone and redb has released
/// it, so the same file can be opened again in this process.
pub struct FileClosed(std::sync::Weak<Shared>);

impl FileClosed {
    /// Waits until the file is closed, `limit` at most; says whether it is.
    pub async fn wait(self, limit: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while self.0.strong_count() > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        true
    }
}

impl std::fmt::Debug for ReplicaFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaFile")
            .field("path", &self.shared.path)
            .field("replica_id", &self.shared.replica_id)
            .finish()
    }
}

impl ReplicaFile {
    /// Opens `dir/replica.redb`, or creates it with a freshly drawn replica
    /// id when no such file exists. A file that exists but is empty, not a
    /// redb database, another program's, of another format or corrupt is
    /// refused and left as it is.
    pub fn open(dir: &Path) -> Result<ReplicaFile, ReplicaFileError> {
        let path = dir.join(FILE_NAME);
        let open_error = |reason: String| ReplicaFileError::Open {
            path: path.clone(),
            reason,
        };
        std::fs::create_dir_all(dir).map_err(|e| open_error(e.to_string()))?;
        match preflight::inspect(&path).map_err(|e| open_error(e.to_string()))? {
            Found::Missing => Self::create(dir, path),
            Found::Unusable(problem) => Err(ReplicaFileError::Unreadable { path, problem }),
            Found::Redb => {
                let database =
                    preflight::open_verified(&path).map_err(|failure| match failure {
                        OpenFailure::Damaged(problem) => ReplicaFileError::Unreadable {
                            path: path.clone(),
                            problem,
                        },
                        OpenFailure::Other(reason) => open_error(reason),
                    })?;
                let replica_id = settle(&database, &path, Settle::Existing)?;
                info!(path = %path.display(), replica_id, "opened the replica store; the replica rejoins with its log");
                Ok(Self::wrap(database, path, replica_id))
            }
        }
    }

    /// Creates the file under a temporary name with a new replica id and
    /// renames it into place once that is durable.
    fn create(dir: &Path, path: PathBuf) -> Result<ReplicaFile, ReplicaFileError> {
        let open_error = |reason: String| ReplicaFileError::Open {
            path: path.clone(),
            reason,
        };
        let staging = dir.join(NEW_FILE_NAME);
        match std::fs::remove_file(&staging) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                return Err(open_error(format!(
                    "cannot remove the unfinished {}: {error}",
                    staging.display()
                )));
            }
            _ => {}
        }
        let database = Database::create(&staging).map_err(|e| open_error(e.to_string()))?;
        let replica_id = settle(&database, &path, Settle::New)?;
        // The open database follows its file across the rename.
        std::fs::rename(&staging, &path).map_err(|e| open_error(e.to_string()))?;
        std::fs::File::open(dir)
            .and_then(|directory| directory.sync_all())
            .map_err(|e| open_error(format!("cannot sync the data directory: {e}")))?;
        info!(path = %path.display(), replica_id, "created a new replica store");
        Ok(Self::wrap(database, path, replica_id))
    }

    fn wrap(database: Database, path: PathBuf, replica_id: ReplicaId) -> ReplicaFile {
        ReplicaFile {
            shared: Arc::new(Shared {
                database,
                path,
                replica_id,
            }),
        }
    }

    /// The directory holding the file (and its snapshot data files).
    pub fn directory(&self) -> &Path {
        self.shared.path.parent().unwrap_or(Path::new("."))
    }

    /// A signal for when every handle on this file is dropped.
    pub fn closed(&self) -> FileClosed {
        FileClosed(Arc::downgrade(&self.shared))
    }

    /// The replica id stored in the file: the same every time it is opened.
    pub fn replica_id(&self) -> ReplicaId {
        self.shared.replica_id
    }

    /// The database, for the log store's and state machine's transactions.
    pub(super) fn database(&self) -> &Database {
        &self.shared.database
    }

    /// Runs `write` on tokio's blocking pool and waits for it, so a
    /// transaction's commit (an fsync) never stalls the runtime's workers.
    pub(super) async fn write_blocking<F>(&self, write: F) -> Result<(), openraft::AnyError>
    where
        F: FnOnce(&ReplicaFile) -> Result<(), ReplicaFileError> + Send + 'static,
    {
        let file = self.clone();
        match tokio::task::spawn_blocking(move || write(&file)).await {
            Ok(result) => result.map_err(|e| openraft::AnyError::new(&e)),
            Err(join) => Err(openraft::AnyError::new(&join)),
        }
    }

    /// An I/O failure on this file.
    pub(super) fn io(&self, error: impl std::fmt::Display) -> ReplicaFileError {
        ReplicaFileError::Io {
            path: self.shared.path.clone(),
            reason: error.to_string(),
        }
    }

    /// A stored value of this file that did not decode.
    pub(super) fn corrupt(&self, what: &str, error: impl std::fmt::Display) -> ReplicaFileError {
        ReplicaFileError::Corrupt {
            path: self.shared.path.clone(),
            what: what.to_string(),
            reason: error.to_string(),
        }
    }
}

/// Whether [`settle`] is looking at a file it just created.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Settle {
    /// Just created: mark it and draw its replica id.
    New,
    /// Found on disk: it must already be a replica store.
    Existing,
}

/// Checks that `database` holds nothing but a replica store's tables and
/// returns its replica id; marks a new one (format, tables, a freshly drawn
/// id) in one transaction. A refused file is left unchanged: the
/// transaction is dropped uncommitted.
fn settle(database: &Database, path: &Path, settle: Settle) -> Result<ReplicaId, ReplicaFileError> {
    let io = |error: &dyn std::fmt::Display| ReplicaFileError::Io {
        path: path.to_path_buf(),
        reason: error.to_string(),
    };
    let corrupt = |what: &str, reason: &str| ReplicaFileError::Corrupt {
        path: path.to_path_buf(),
        what: what.to_string(),
        reason: reason.to_string(),
    };
    let transaction = database.begin_write().map_err(|e| io(&e))?;
    let replica_id = {
        // Another program's redb file (or herd's journal under this name)
        // is not taken over: marking it as a replica store would hide that.
        let ours = [ENTRIES.name(), META.name(), SNAPSHOT.name()];
        let foreign: Vec<String> = transaction
            .list_tables()
            .map_err(|e| io(&e))?
            .map(|table| table.name().to_string())
            .chain(
                transaction
                    .list_multimap_tables()
                    .map_err(|e| io(&e))?
                    .map(|table| table.name().to_string()),
            )
            .filter(|name| !ours.contains(&name.as_str()))
            .collect();
        if !foreign.is_empty() {
            return Err(ReplicaFileError::Unreadable {
                path: path.to_path_buf(),
                problem: format!(
                    "is a redb database of another program (tables {foreign:?}), not a replica store"
                ),
            });
        }
        transaction.open_table(ENTRIES).map_err(|e| io(&e))?;
        transaction.open_table(SNAPSHOT).map_err(|e| io(&e))?;
        let mut meta = transaction.open_table(META).map_err(|e| io(&e))?;
        let stored_format = meta
            .get(FORMAT_KEY)
            .map_err(|e| io(&e))?
            .map(|v| v.value().to_vec());
        match stored_format {
            Some(bytes) => {
                let found = <[u8; 2]>::try_from(bytes.as_slice())
                    .map(u16::from_be_bytes)
                    .map_err(|_| corrupt("format marker", "wrong length"))?;
                if found != FORMAT_VERSION {
                    return Err(ReplicaFileError::UnsupportedVersion {
                        path: path.to_path_buf(),
                        found,
                    });
                }
            }
            None => {
                meta.insert(FORMAT_KEY, FORMAT_VERSION.to_be_bytes().as_slice())
                    .map_err(|e| io(&e))?;
            }
        }
        let stored_id = meta
            .get(REPLICA_ID_KEY)
            .map_err(|e| io(&e))?
            .map(|v| v.value().to_vec());
        match (stored_id, settle) {
            (Some(bytes), _) => <[u8; 8]>::try_from(bytes.as_slice())
                .map(u64::from_be_bytes)
                .map_err(|_| corrupt("replica id", "wrong length"))?,
            (None, Settle::New) => {
                let id = rand::random::<ReplicaId>();
                meta.insert(REPLICA_ID_KEY, id.to_be_bytes().as_slice())
                    .map_err(|e| io(&e))?;
                id
            }
            (None, Settle::Existing) => {
                return Err(ReplicaFileError::Unreadable {
                    path: path.to_path_buf(),
                    problem: "has no replica id (it was not created by herd's replica store)"
                        .to_string(),
                });
            }
        }
    };
    transaction.commit().map_err(|e| io(&e))?;
    Ok(replica_id)
}

/// Reads one `META` value and decodes it with the codec.
pub(super) fn read_meta<T: serde::de::DeserializeOwned>(
    file: &ReplicaFile,
    key: &str,
) -> Result<Option<T>, ReplicaFileError> {
    let transaction = file.database().begin_read().map_err(|e| file.io(e))?;
    let meta = transaction.open_table(META).map_err(|e| file.io(e))?;
    match meta.get(key).map_err(|e| file.io(e))? {
        None => Ok(None),
        Some(bytes) => herd_protocol::codec::decode_stored(bytes.value())
            .map(Some)
            .map_err(|e| file.corrupt(key, e)),
    }
}
