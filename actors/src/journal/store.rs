//! The on-disk journal: a redb file with two tables, every value sealed
//! with its format version (see `format`).

use std::path::{Path, PathBuf};

use redb::{
    Database, MultimapTableHandle, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition, TableHandle,
};
use tracing::info;

use super::format::{self, FORMAT_VERSION, Unsealed};
use super::preflight::{self, Found, OpenFailure};
use crate::task_book::{Command, TaskBook};

/// Journal entries: sequence number → encoded command.
pub(super) const JOURNAL: TableDefinition<u64, &[u8]> = TableDefinition::new("journal");
/// `snapshot` → encoded book; `snapshot_seq` → the last sequence it includes;
/// `format` → the file's format version.
pub(super) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// The journal's file name inside `--data-dir`.
pub const FILE_NAME: &str = "orchestrator.redb";
/// Where a new journal is initialised before it is renamed to [`FILE_NAME`],
/// so that the journal's path never holds a half-created file.
const NEW_FILE_NAME: &str = "orchestrator.redb.new";

/// What the operator can do about a journal file that cannot be read.
/// Starting empty is offered last and only as a deliberate choice: it loses
/// every task the file recorded.
fn recovery_options(path: &Path) -> String {
    format!(
        "restore {path} from a backup; or, only if losing the tasks it recorded is acceptable, move it away (e.g. mv {path} {path}.broken) and herd starts a new, empty journal",
        path = path.display()
    )
}

/// The journal could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The directory or file could not be opened or created.
    #[error(
        "cannot open the orchestrator journal at {path}: {reason}; check that --data-dir is writable and not used by another running orchestrator"
    )]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A read or write failed.
    #[error("orchestrator journal I/O failed: {0}")]
    Io(String),
    /// The file or a record was written in a format this release does not
    /// read (by another herd release).
    #[error(
        "the orchestrator journal at {path} holds {what} in format version {found}, but this herd release reads format versions {} to {expected}; start the herd release that wrote it (format {found}) on this data directory, or a release that reads that format",
        super::format::OLDEST_READABLE_VERSION
    )]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The file itself or which record.
        what: String,
        /// The version found.
        found: u16,
        /// The version this release reads.
        expected: u16,
    },
    /// The file is not a journal herd can read: empty (zero bytes), not a
    /// redb database, a redb database of something else, or damaged beyond
    /// what redb repairs. Never replaced by an empty journal: that would
    /// silently lose every task it recorded.
    #[error(
        "the orchestrator journal at {path} {problem}; herd refuses to start rather than lose the tasks it recorded: {}",
        recovery_options(path)
    )]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// Stored data did not decode (corruption, or a journal written by an
    /// incompatible herd release).
    #[error(
        "the orchestrator journal at {path} holds an undecodable {what} ({reason}); it is corrupt or was written by an incompatible herd release: {}",
        recovery_options(path)
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Which record.
        what: String,
        /// The decoder's complaint.
        reason: String,
    },
}

impl StoreError {
    /// True when the operator must fix the data directory (another release's
    /// format, corrupt data, a path that cannot be opened), not a passing
    /// I/O failure.
    pub fn is_configuration(&self) -> bool {
        !matches!(self, StoreError::Io(_))
    }
}

fn io(error: impl std::fmt::Display) -> StoreError {
    StoreError::Io(error.to_string())
}

/// What a restart finds on disk.
#[derive(Debug)]
pub struct Recovered {
    /// The book rebuilt from the snapshot and the journal after it.
    pub book: TaskBook,
    /// The highest sequence number on disk (0 if empty).
    pub last_sequence: u64,
    /// Journal entries replayed on top of the snapshot.
    pub replayed: u64,
}

/// The journal file.
pub struct JournalStore {
    database: Database,
    path: PathBuf,
}

impl JournalStore {
    /// Opens `dir/orchestrator.redb`, or starts a new journal there when no
    /// such file exists. A file that exists but is empty, not a redb
    /// database, not herd's, or corrupt is refused with
    /// [`StoreError::Unreadable`] and left as it is: it is never taken for a
    /// new, empty journal.
    pub fn open(dir: &Path) -> Result<JournalStore, StoreError> {
        let path = dir.join(FILE_NAME);
        let open_error = |reason: String| StoreError::Open {
            path: path.clone(),
            reason,
        };
        std::fs::create_dir_all(dir).map_err(|e| open_error(e.to_string()))?;
        match preflight::inspect(&path).map_err(|e| open_error(e.to_string()))? {
            Found::Missing => Self::start_new(dir, path),
            Found::Unusable(problem) => Err(StoreError::Unreadable { path, problem }),
            Found::Redb => {
                let database =
                    preflight::open_verified(&path).map_err(|failure| match failure {
                        OpenFailure::Damaged(problem) => StoreError::Unreadable {
                            path: path.clone(),
                            problem,
                        },
                        OpenFailure::Other(reason) => open_error(reason),
                    })?;
                let store = JournalStore { database, path };
                store.settle_format()?;
                Ok(store)
            }
        }
    }

    /// Initialises a journal under a temporary name and renames it into
    /// place once its format marker is durable, so a crash half-way leaves
    /// either no journal (started again next time) or a complete one, never
    /// an empty file that the next start would have to refuse.
    fn start_new(dir: &Path, path: PathBuf) -> Result<JournalStore, StoreError> {
        let open_error = |reason: String| StoreError::Open {
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
        let store = JournalStore {
            database,
            path: path.clone(),
        };
        store.settle_format()?;
        // The open database follows its file across the rename.
        std::fs::rename(&staging, &path).map_err(|e| open_error(e.to_string()))?;
        std::fs::File::open(dir)
            .and_then(|directory| directory.sync_all())
            .map_err(|e| open_error(format!("cannot sync the data directory: {e}")))?;
        info!(path = %path.display(), "started a new orchestrator journal");
        Ok(store)
    }

    /// Checks the file's format version; marks a new file with the current
    /// one, and migrates a file written before records carried versions
    /// (their encoding is the current payload's, so each is sealed as is).
    fn settle_format(&self) -> Result<(), StoreError> {
        let transaction = self.database.begin_write().map_err(io)?;
        {
            // A redb file with other tables belongs to another program;
            // marking it as a journal would hide that it is not ours.
            let foreign: Vec<String> = transaction
                .list_tables()
                .map_err(io)?
                .map(|table| table.name().to_string())
                .chain(
                    transaction
                        .list_multimap_tables()
                        .map_err(io)?
                        .map(|table| table.name().to_string()),
                )
                .filter(|name| name != JOURNAL.name() && name != META.name())
                .collect();
            if !foreign.is_empty() {
                return Err(StoreError::Unreadable {
                    path: self.path.clone(),
                    problem: format!(
                        "is a redb database of another program (tables {foreign:?}), not a herd journal"
                    ),
                });
            }
            let mut journal = transaction.open_table(JOURNAL).map_err(io)?;
            let mut meta = transaction.open_table(META).map_err(io)?;
            let marker: Option<Vec<u8>> =
                meta.get("format").map_err(io)?.map(|v| v.value().to_vec());
            match marker {
                Some(stored) => {
                    let found = format::decode_file_version(&stored)
                        .ok_or_else(|| self.corrupt("format marker", "wrong length"))?;
                    if !format::is_readable(found) {
                        return Err(self.unsupported("the file", found));
                    }
                    if found != FORMAT_VERSION {
                        // Its values keep their own versions and are read as
                        // such; the next snapshot rewrites them.
                        meta.insert(
                            "format",
                            format::encode_file_version(FORMAT_VERSION).as_slice(),
                        )
                        .map_err(io)?;
                        if found < 2 {
                            info!(path = %self.path.display(), from = found, to = FORMAT_VERSION, "migrating the orchestrator journal: tasks written before tenants belong to the default tenant");
                        } else {
                            info!(path = %self.path.display(), from = found, to = FORMAT_VERSION, "migrating the orchestrator journal");
                        }
                    }
                }
                None => {
                    let legacy_entries = journal.len().map_err(io)?;
                    let legacy_snapshot: Option<Vec<u8>> = meta
                        .get("snapshot")
                        .map_err(io)?
                        .map(|v| v.value().to_vec());
                    if legacy_entries > 0 || legacy_snapshot.is_some() {
                        let entries: Vec<(u64, Vec<u8>)> = journal
                            .iter()
                            .map_err(io)?
                            .map(|entry| {
                                entry.map(|(k, v)| (k.value(), format::seal_as(1, v.value())))
                            })
                            .collect::<Result<_, _>>()
                            .map_err(io)?;
                        for (sequence, sealed) in &entries {
                            journal.insert(*sequence, sealed.as_slice()).map_err(io)?;
                        }
                        if let Some(snapshot) = legacy_snapshot {
                            meta.insert("snapshot", format::seal_as(1, &snapshot).as_slice())
                                .map_err(io)?;
                        }
                        info!(path = %self.path.display(), entries = legacy_entries, version = FORMAT_VERSION, "migrated the orchestrator journal to the versioned format");
                    }
                    meta.insert(
                        "format",
                        format::encode_file_version(FORMAT_VERSION).as_slice(),
                    )
                    .map_err(io)?;
                }
            }
        }
        transaction.commit().map_err(io)
    }

    /// Rebuilds the book: the latest snapshot (configured like `empty`), then
    /// every later command; with nothing on disk, `empty` itself.
    pub fn recover(&self, empty: TaskBook) -> Result<Recovered, StoreError> {
        let transaction = self.database.begin_read().map_err(io)?;
        let meta = transaction.open_table(META).map_err(io)?;
        let snapshot_sequence = match meta.get("snapshot_seq").map_err(io)? {
            Some(bytes) => u64::from_be_bytes(
                bytes
                    .value()
                    .try_into()
                    .map_err(|_| self.corrupt("snapshot sequence", "wrong length"))?,
            ),
            None => 0,
        };
        let mut book = match meta.get("snapshot").map_err(io)? {
            Some(bytes) => {
                let (version, payload) = self.unseal("the snapshot", bytes.value())?;
                let mut book = format::decode_snapshot(version, payload)
                    .map_err(|e| self.corrupt("snapshot", &e.to_string()))?;
                book.reconfigure_like(&empty);
                book
            }
            None => empty,
        };
        let journal = transaction.open_table(JOURNAL).map_err(io)?;
        let mut last_sequence = snapshot_sequence;
        let mut replayed = 0;
        for entry in journal.range((snapshot_sequence + 1)..).map_err(io)? {
            let (sequence, bytes) = entry.map_err(io)?;
            let what = format!("journal entry {}", sequence.value());
            let (version, payload) = self.unseal(&what, bytes.value())?;
            let command: Command = format::decode(version, payload).map_err(|e| {
                self.corrupt(
                    &format!("journal entry {}", sequence.value()),
                    &e.to_string(),
                )
            })?;
            book.apply(command);
            last_sequence = sequence.value();
            replayed += 1;
        }
        Ok(Recovered {
            book,
            last_sequence,
            replayed,
        })
    }

    /// Appends encoded commands in one durable transaction.
    pub fn append(&self, entries: &[(u64, Vec<u8>)]) -> Result<(), StoreError> {
        let transaction = self.database.begin_write().map_err(io)?;
        {
            let mut journal = transaction.open_table(JOURNAL).map_err(io)?;
            for (sequence, bytes) in entries {
                journal
                    .insert(*sequence, format::seal(bytes).as_slice())
                    .map_err(io)?;
            }
        }
        transaction.commit().map_err(io)
    }

    /// Stores a snapshot covering everything up to `sequence` (`book`
    /// encoded by [`super::encode_snapshot`]) and deletes the journal entries
    /// it covers, in one transaction.
    pub fn snapshot(&self, sequence: u64, book: &[u8]) -> Result<(), StoreError> {
        let transaction = self.database.begin_write().map_err(io)?;
        {
            let mut meta = transaction.open_table(META).map_err(io)?;
            meta.insert("snapshot", format::seal(book).as_slice())
                .map_err(io)?;
            meta.insert("snapshot_seq", sequence.to_be_bytes().as_slice())
                .map_err(io)?;
            let mut journal = transaction.open_table(JOURNAL).map_err(io)?;
            journal.retain_in(..=sequence, |_, _| false).map_err(io)?;
        }
        transaction.commit().map_err(io)
    }

    /// Journal entries currently stored (for tests and metrics).
    #[cfg(test)]
    pub fn journal_len(&self) -> Result<u64, StoreError> {
        let transaction = self.database.begin_read().map_err(io)?;
        let journal = transaction.open_table(JOURNAL).map_err(io)?;
        journal.len().map_err(io)
    }

    /// The payload of a stored value, if this release reads its version.
    fn unseal<'a>(&self, what: &str, stored: &'a [u8]) -> Result<(u16, &'a [u8]), StoreError> {
        match format::unseal(stored) {
            Unsealed::Readable { version, payload } => Ok((version, payload)),
            Unsealed::Version(found) => Err(self.unsupported(what, found)),
            Unsealed::Truncated => Err(self.corrupt(what, "shorter than its version prefix")),
        }
    }

    fn unsupported(&self, what: &str, found: u16) -> StoreError {
        StoreError::UnsupportedVersion {
            path: self.path.clone(),
            what: what.to_string(),
            found,
            expected: FORMAT_VERSION,
        }
    }

    fn corrupt(&self, what: &str, reason: &str) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            what: what.to_string(),
            reason: reason.to_string(),
        }
    }
}
