//! JSON documents carried without re-parsing.
//!
//! Payloads and results travel through the orchestrator, the cluster link and
//! the worker untouched. Keeping them as validated JSON text avoids a parse and
//! re-serialisation at every hop; only handlers that need the structure parse
//! them.

use std::fmt;

use bytes::Bytes;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

/// A valid JSON document held as UTF-8 text. Cloning is cheap (shared bytes).
///
/// In JSON output it appears as the document itself, not as a string; on the
/// cluster wire it is length-prefixed bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct JsonText(Bytes);

/// Why bytes are not a JSON document.
#[derive(Debug, thiserror::Error)]
#[error("not valid JSON: {0}")]
pub struct InvalidJson(#[from] serde_json::Error);

impl JsonText {
    /// Validates `text` as one JSON document.
    pub fn parse(text: impl Into<Bytes>) -> Result<Self, InvalidJson> {
        let bytes = text.into();
        serde_json::from_slice::<&RawValue>(&bytes)?;
        Ok(JsonText(bytes))
    }

    /// Serialises any value (infallible for `serde_json::Value`).
    pub fn from_value<T: Serialize + ?Sized>(value: &T) -> Result<Self, InvalidJson> {
        Ok(JsonText(Bytes::from(serde_json::to_vec(value)?)))
    }

    /// The JSON `null` document.
    pub fn null() -> Self {
        JsonText(Bytes::from_static(b"null"))
    }

    /// Wraps text already known to be valid JSON (e.g. a `RawValue`).
    pub fn from_raw(raw: &RawValue) -> Self {
        JsonText(Bytes::copy_from_slice(raw.get().as_bytes()))
    }

    /// The document's text.
    pub fn as_str(&self) -> &str {
        // Constructors only accept UTF-8 JSON text.
        std::str::from_utf8(&self.0).unwrap_or("null")
    }

    /// The document's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Size in bytes, as counted against payload limits.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True for an empty buffer (never the case for a valid document).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Parses the document into a typed value.
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T, InvalidJson> {
        Ok(serde_json::from_slice(&self.0)?)
    }
}

impl fmt::Debug for JsonText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 120;
        let text = self.as_str();
        if text.len() <= SHOWN {
            f.write_str(text)
        } else {
            let cut = (0..=SHOWN)
                .rev()
                .find(|i| text.is_char_boundary(*i))
                .unwrap_or(0);
            write!(f, "{}…({} bytes)", &text[..cut], text.len())
        }
    }
}

impl fmt::Display for JsonText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for JsonText {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            let raw: &RawValue =
                serde_json::from_str(self.as_str()).map_err(serde::ser::Error::custom)?;
            raw.serialize(serializer)
        } else {
            serializer.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for JsonText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let raw = Box::<RawValue>::deserialize(deserializer)?;
            Ok(JsonText::from_raw(&raw))
        } else {
            let bytes = serde_bytes_owned(deserializer)?;
            JsonText::parse(bytes).map_err(D::Error::custom)
        }
    }
}

fn serde_bytes_owned<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
    struct BytesVisitor;
    impl<'de> serde::de::Visitor<'de> for BytesVisitor {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("JSON text as bytes")
        }
        fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<Vec<u8>, E> {
            Ok(bytes.to_vec())
        }
        fn visit_byte_buf<E: serde::de::Error>(self, bytes: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(bytes)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0));
            while let Some(byte) = seq.next_element()? {
                bytes.push(byte);
            }
            Ok(bytes)
        }
    }
    deserializer.deserialize_byte_buf(BytesVisitor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_invalid_json_and_keeps_valid_text_verbatim() {
        assert!(JsonText::parse("{\"a\": ").is_err());
        assert!(JsonText::parse("").is_err());
        let text = JsonText::parse("{\"a\": [1, 2]}").unwrap();
        assert_eq!(text.as_str(), "{\"a\": [1, 2]}");
    }

    #[test]
    fn embeds_as_a_document_in_json_and_as_bytes_in_bincode() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct Holder {
            payload: JsonText,
        }
        let holder = Holder {
            payload: JsonText::parse("{\"k\":1}").unwrap(),
        };
        assert_eq!(
            serde_json::to_string(&holder).unwrap(),
            "{\"payload\":{\"k\":1}}"
        );
        let bytes = crate::codec::encode(&holder).unwrap();
        let back: Holder = crate::codec::decode(&bytes).unwrap();
        assert_eq!(back, holder);
    }
}
