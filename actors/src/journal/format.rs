//! The journal's record format: every stored value (journal entry or
//! snapshot) starts with the format version it was written in, and the file
//! records its version too, so a release never misreads data written by
//! another one. The payload after the version is the codec's encoding of a
//! [`crate::task_book::Command`] or, for the snapshot, of the
//! [`crate::task_book::TaskBook`] (see [`encode_snapshot`]).
//!
//! Versions:
//! - 1: before tenants. Still read: [`decode`] reads a version 1 value in
//!   herd-protocol's `without_tenants` mode, where every task
//!   belongs to the default tenant. Values are rewritten in the current
//!   version as the journal snapshots, so a migrated file holds no version 1
//!   value for long.
//! - 2: tasks carry their tenant; pending queues are per tenant.
//! - 3: entries may be `Command::ScalingOverrides`, and the snapshot is the
//!   book followed by its scaling overrides (a book's encoding leaves them
//!   out). Version 1 and 2 snapshots are a bare book: no overrides.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::task_book::{ScalingOverrides, TaskBook};

/// The version this release writes.
pub const FORMAT_VERSION: u16 = 3;

/// The oldest version this release reads.
pub const OLDEST_READABLE_VERSION: u16 = 1;

/// Bytes of the version prefix.
const PREFIX: usize = 2;

/// `payload` with the current version in front.
pub fn seal(payload: &[u8]) -> Vec<u8> {
    seal_as(FORMAT_VERSION, payload)
}

/// `payload` with `version` in front (for values migrated from files that
/// predate version prefixes, whose payloads are version 1's).
pub fn seal_as(version: u16, payload: &[u8]) -> Vec<u8> {
    let mut sealed = Vec::with_capacity(PREFIX + payload.len());
    sealed.extend_from_slice(&version.to_le_bytes());
    sealed.extend_from_slice(payload);
    sealed
}

/// A stored value, split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsealed<'a> {
    /// Written in a version this release reads: which, and the payload.
    Readable { version: u16, payload: &'a [u8] },
    /// Written in a version this release does not read.
    Version(u16),
    /// Too short to hold a version.
    Truncated,
}

/// Splits a stored value into its version and payload.
pub fn unseal(stored: &[u8]) -> Unsealed<'_> {
    match stored.split_first_chunk::<PREFIX>() {
        None => Unsealed::Truncated,
        Some((version, payload)) => match u16::from_le_bytes(*version) {
            version @ OLDEST_READABLE_VERSION..=FORMAT_VERSION => {
                Unsealed::Readable { version, payload }
            }
            other => Unsealed::Version(other),
        },
    }
}

/// Decodes a payload written in `version` into today's types.
pub fn decode<T: DeserializeOwned>(
    version: u16,
    payload: &[u8],
) -> Result<T, herd_protocol::codec::DecodeError> {
    if version == 1 {
        herd_protocol::tenant::without_tenants(|| herd_protocol::codec::decode_stored(payload))
    } else {
        herd_protocol::codec::decode_stored(payload)
    }
}

/// A snapshot's payload from version 3, as encoded.
#[derive(Serialize)]
struct SnapshotOut<'a> {
    book: &'a TaskBook,
    scaling_overrides: &'a ScalingOverrides,
}

/// A snapshot's payload from version 3, as decoded.
#[derive(Deserialize)]
struct SnapshotIn {
    book: TaskBook,
    scaling_overrides: ScalingOverrides,
}

/// The payload of a snapshot of `book` in the current version.
pub fn encode_snapshot(book: &TaskBook) -> Result<Vec<u8>, herd_protocol::codec::EncodeError> {
    herd_protocol::codec::encode(&SnapshotOut {
        book,
        scaling_overrides: book.scaling_overrides(),
    })
}

/// The book of a snapshot payload written in `version` (without the
/// settings and agent types, which the caller gives it).
pub fn decode_snapshot(
    version: u16,
    payload: &[u8],
) -> Result<TaskBook, herd_protocol::codec::DecodeError> {
    if version < 3 {
        return decode(version, payload);
    }
    let SnapshotIn {
        mut book,
        scaling_overrides,
    } = decode(version, payload)?;
    book.restore_scaling_overrides(scaling_overrides);
    Ok(book)
}

/// True when a file marked `version` can be opened by this release.
pub fn is_readable(version: u16) -> bool {
    (OLDEST_READABLE_VERSION..=FORMAT_VERSION).contains(&version)
}

/// The file-level version marker, stored big-endian under the `format` key.
pub fn encode_file_version(version: u16) -> [u8; 2] {
    version.to_be_bytes()
}

/// Reads the file-level version marker; `None` if it is malformed.
pub fn decode_file_version(stored: &[u8]) -> Option<u16> {
    stored.try_into().ok().map(u16::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_to_their_payload_and_other_versions_are_named() {
        let sealed = seal(b"payload");
        assert_eq!(
            unseal(&sealed),
            Unsealed::Readable {
                version: FORMAT_VERSION,
                payload: b"payload"
            }
        );
        assert_eq!(
            unseal(&seal_as(1, b"old")),
            Unsealed::Readable {
                version: 1,
                payload: b"old"
            }
        );
        let mut future = sealed.clone();
        future[..2].copy_from_slice(&7u16.to_le_bytes());
        assert_eq!(unseal(&future), Unsealed::Version(7));
        assert_eq!(unseal(&[1]), Unsealed::Truncated);
        assert_eq!(decode_file_version(&encode_file_version(3)), Some(3));
        assert_eq!(decode_file_version(&[1, 2, 3]), None);
    }
}
