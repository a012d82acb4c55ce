//! What lies at the journal's path before redb is asked to open it (also
//! used for the replica store's file, `crate::replica::file`).
//!
//! redb's `Database::create` initialises a new database in a file that is
//! missing *or empty*, so a journal truncated to zero bytes (a full disk, a
//! botched copy) would silently become a new, empty task book and every task
//! it acknowledged would be lost. Only a missing file may start a new journal;
//! this module tells the two apart, and recognises a file that is not a redb
//! database at all, without writing anything.

use std::io::Read;
use std::path::Path;

/// The first bytes of every redb file (redb 4's `MAGICNUMBER`).
const REDB_MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];

/// What was found at the journal's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// Nothing: a fresh data directory, where a new journal is started.
    Missing,
    /// A redb file (whether it is herd's and intact is checked once open).
    Redb,
    /// A file no journal can be: the reason, for the operator.
    Unusable(String),
}

/// Looks at `path` without modifying it. `Err` only when the file cannot be
/// read at all (permissions, I/O), which is reported as such.
pub fn inspect(path: &Path) -> std::io::Result<Found> {
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Found::Missing),
        Err(error) => return Err(error),
    };
    let length = file.metadata()?.len();
    if length == 0 {
        return Ok(Found::Unusable(
            "is empty (zero bytes: truncated, e.g. by a full disk)".to_string(),
        ));
    }
    let mut head = Vec::with_capacity(REDB_MAGIC.len());
    (&mut file)
        .take(REDB_MAGIC.len() as u64)
        .read_to_end(&mut head)?;
    if head != REDB_MAGIC {
        return Ok(Found::Unusable(format!(
            "is not a redb database ({length} bytes without redb's header): not a file herd wrote, or its start was overwritten"
        )));
    }
    Ok(Found::Redb)
}

/// Why an existing redb file did not open.
#[derive(Debug)]
pub enum OpenFailure {
    /// The file is damaged (corrupt pages, truncated): the reason, for the
    /// operator. It is left as it is.
    Damaged(String),
    /// Anything else (in use by another process, permissions, I/O).
    Other(String),
}

/// Opens an existing redb file, verifying every page first: that costs one
/// read of the file at start, and without it redb trusts a cleanly closed
/// file and may panic on one damaged since.
pub fn open_verified(path: &Path) -> Result<redb::Database, OpenFailure> {
    use redb::{DatabaseError, StorageError};
    redb::Builder::new()
        .set_check_integrity_on_open(true)
        .open(path)
        .map_err(|error| match error {
            DatabaseError::Storage(StorageError::Corrupted(reason)) => {
                OpenFailure::Damaged(format!("is corrupt ({reason})"))
            }
            DatabaseError::Storage(StorageError::Io(io))
                if io.kind() == std::io::ErrorKind::UnexpectedEof =>
            {
                OpenFailure::Damaged(format!("is truncated ({io})"))
            }
            other => OpenFailure::Other(other.to_string()),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_empty_foreign_and_redb_files_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("orchestrator.redb");
        assert_eq!(inspect(&path).unwrap(), Found::Missing);

        std::fs::write(&path, b"").unwrap();
        assert!(matches!(inspect(&path).unwrap(), Found::Unusable(why) if why.contains("empty")));

        std::fs::write(&path, b"{\"not\": \"a journal\"}").unwrap();
        assert!(
            matches!(inspect(&path).unwrap(), Found::Unusable(why) if why.contains("not a redb database"))
        );

        // Shorter than the header.
        std::fs::write(&path, b"redb").unwrap();
        assert!(matches!(inspect(&path).unwrap(), Found::Unusable(_)));

        std::fs::remove_file(&path).unwrap();
        drop(redb::Database::create(&path).unwrap());
        assert_eq!(inspect(&path).unwrap(), Found::Redb);
    }
}
