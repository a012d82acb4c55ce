//! The journal's record format: every stored value (journal entry or
//! snapshot) starts with the format version it was written in, and the file
//! records its version too, so a release never misreads data written by
//! another one. The payload after the version is the codec's encoding of a
//! [`crate::task_book::Command`] or of the [`crate::task_book::TaskBook`].

/// The version this release writes and reads.
pub const FORMAT_VERSION: u16 = 1;

/// Bytes of the version prefix.
const PREFIX: usize = 2;

/// `payload` with the current version in front.
pub fn seal(payload: &[u8]) -> Vec<u8> {
    let mut sealed = Vec::with_capacity(PREFIX + payload.len());
    sealed.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    sealed.extend_from_slice(payload);
    sealed
}

/// Why a stored value cannot be read by this release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsealed<'a> {
    /// Written in [`FORMAT_VERSION`]: the payload.
    Current(&'a [u8]),
    /// Written in another version.
    Version(u16),
    /// Too short to hold a version.
    Truncated,
}

/// Splits a stored value into its version and payload.
pub fn unseal(stored: &[u8]) -> Unsealed<'_> {
    match stored.split_first_chunk::<PREFIX>() {
        None => Unsealed::Truncated,
        Some((version, payload)) => match u16::from_le_bytes(*version) {
            FORMAT_VERSION => Unsealed::Current(payload),
            other => Unsealed::Version(other),
        },
    }
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
        assert_eq!(unseal(&sealed), Unsealed::Current(b"payload"));
        let mut future = sealed.clone();
        future[..2].copy_from_slice(&7u16.to_le_bytes());
        assert_eq!(unseal(&future), Unsealed::Version(7));
        assert_eq!(unseal(&[1]), Unsealed::Truncated);
        assert_eq!(decode_file_version(&encode_file_version(3)), Some(3));
        assert_eq!(decode_file_version(&[1, 2, 3]), None);
    }
}
