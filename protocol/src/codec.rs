//! The one place that turns wire types into bytes and back.
//!
//! bincode 2 (serde mode) is used as the issue asks. The bincode crate is no
//! longer maintained (RUSTSEC-2025-0141), so it is confined to this module:
//! switching to postcard or wincode means changing these two functions.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::limits::CLUSTER_FRAME_LIMIT_BYTES;

/// Encoding failed (a type that bincode cannot represent, e.g. a map with
/// non-string keys is fine but `serde_json::Value` is not).
#[derive(Debug, thiserror::Error)]
#[error("could not encode message: {0}")]
pub struct EncodeError(#[from] bincode::error::EncodeError);

/// Decoding failed: truncated, corrupt, or from a peer speaking another
/// protocol version.
#[derive(Debug, Clone, thiserror::Error)]
#[error("could not decode message: {0}")]
pub struct DecodeError(String);

fn config() -> impl bincode::config::Config {
    // The limit stops a corrupt length prefix from allocating gigabytes.
    bincode::config::standard().with_limit::<CLUSTER_FRAME_LIMIT_BYTES>()
}

/// Encodes a value for the cluster wire.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, EncodeError> {
    Ok(bincode::serde::encode_to_vec(value, config())?)
}

/// The number of bytes [`encode`] would produce, counted without building
/// them, so a request can be measured against a frame budget before it is
/// sent. Not capped by the frame limit: an oversized value reports its size.
pub fn encoded_len<T: Serialize + ?Sized>(value: &T) -> Result<usize, EncodeError> {
    let mut counter = bincode::enc::write::SizeWriter::default();
    bincode::serde::encode_into_writer(value, &mut counter, bincode::config::standard())?;
    Ok(counter.bytes_written)
}

/// Decodes a value from the cluster wire; trailing bytes are an error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    decode_with(bytes, config(), "message")
}

/// Decodes a value this node stored itself (a journal or replica entry, a
/// snapshot of the task book): the frame limit does not apply, because a
/// book may hold far more than one frame (up to `limits.max_held_bytes`)
/// and must still be read back. Storage is checksummed by redb; a value
/// that does not decode is an error, never a panic.
pub fn decode_stored<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    decode_with(bytes, bincode::config::standard(), "value")
}

/// Decodes all of `bytes` under `config`; trailing bytes are an error.
fn decode_with<T: DeserializeOwned>(
    bytes: &[u8],
    config: impl bincode::config::Config,
    what: &str,
) -> Result<T, DecodeError> {
    let (value, read) = bincode::serde::decode_from_slice(bytes, config)
        .map_err(|error| DecodeError(error.to_string()))?;
    if read != bytes.len() {
        return Err(DecodeError(format!(
            "{} trailing bytes after the {what}",
            bytes.len() - read
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// bincode is positional: a field that serde skips when empty (or
    /// untagged or flattened shapes, which need `deserialize_any`) cannot be
    /// decoded by a peer. No message type may use them.
    #[test]
    fn message_types_use_no_serde_attribute_the_positional_codec_cannot_read() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = vec![dir.clone()];
        let mut checked = 0;
        while let Some(path) = files.pop() {
            if path.is_dir() {
                files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
                continue;
            }
            if path.extension().is_none_or(|ext| ext != "rs") || path.ends_with("codec.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for forbidden in ["skip_serializing_if", "serde(untagged)", "serde(flatten)"] {
                assert!(
                    !text.contains(forbidden),
                    "{} uses {forbidden}, which the cluster codec cannot decode",
                    path.display()
                );
            }
            checked += 1;
        }
        assert!(checked > 5, "the message sources were found");
    }

    #[test]
    fn encoded_len_counts_what_encode_writes() {
        let value = ("hello".to_string(), vec![7u64; 300], Some(1.5f64));
        assert_eq!(encoded_len(&value).unwrap(), encode(&value).unwrap().len());
    }

    #[test]
    fn a_stored_value_over_the_frame_limit_reads_back() {
        let big: Vec<String> = (0..20).map(|_| "x".repeat(1024 * 1024)).collect();
        let bytes = encode(&big).unwrap();
        assert!(bytes.len() > CLUSTER_FRAME_LIMIT_BYTES);
        // Off the wire it is refused; from storage it reads back whole.
        assert!(decode::<Vec<String>>(&bytes).is_err());
        assert_eq!(decode_stored::<Vec<String>>(&bytes).unwrap(), big);
        assert!(decode_stored::<Vec<String>>(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn garbage_and_truncation_are_errors_not_panics() {
        let bytes = encode(&("hello".to_string(), 7u64)).unwrap();
        assert!(decode::<(String, u64)>(&bytes[..bytes.len() - 1]).is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode::<(String, u64)>(&longer).is_err());
        assert!(decode::<(String, u64)>(&[0xff; 64]).is_err());
        assert_eq!(
            decode::<(String, u64)>(&bytes).unwrap(),
            ("hello".to_string(), 7)
        );
    }
}
