//! Identifiers that stay stable across reconnects.
//!
//! ractor's `ActorId`s for remote actors change whenever a session is
//! re-established, so herd names things by its own ids: a node is its name
//! plus an incarnation, a worker is a slot index on that node, a task is a
//! time-ordered UUIDv7.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A task's identity: a UUIDv7, so ids sort by creation time.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskId(#[serde(with = "uuid_as_text_or_u128")] pub u128);

impl TaskId {
    /// A fresh time-ordered id.
    pub fn new_v7() -> Self {
        TaskId(uuid::Uuid::now_v7().as_u128())
    }

    /// The id as a [`uuid::Uuid`].
    pub fn as_uuid(&self) -> uuid::Uuid {
        uuid::Uuid::from_u128(self.0)
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.as_uuid().hyphenated(), f)
    }
}

impl fmt::Debug for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for TaskId {
    type Err = uuid::Error;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        uuid::Uuid::parse_str(text).map(|uuid| TaskId(uuid.as_u128()))
    }
}

/// JSON shows task ids as UUID strings; the cluster wire carries 16 bytes.
mod uuid_as_text_or_u128 {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &u128, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(&uuid::Uuid::from_u128(*value).hyphenated())
        } else {
            serializer.serialize_u128(*value)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u128, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            uuid::Uuid::parse_str(&text)
                .map(|uuid| uuid.as_u128())
                .map_err(D::Error::custom)
        } else {
            u128::deserialize(deserializer)
        }
    }
}

/// A node's configured name: 2–64 characters of lowercase letters, digits and
/// hyphens. This is the deployment guide's AGENT_ID rule (3–64) relaxed by one
/// character so that the documented launch line `--name n1` is valid.
/// Construct with [`NodeName::parse`]; the wire form is trusted because peers
/// validated it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeName(Arc<str>);

/// Why a string is not a valid [`NodeName`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeNameError {
    /// Too short or too long.
    #[error("must be 2 to 64 characters long, got {0}")]
    Length(usize),
    /// A character outside `[a-z0-9-]`.
    #[error("may contain only lowercase letters, digits and hyphens; found {0:?}")]
    Character(char),
    /// Starts or ends with a hyphen.
    #[error("must not start or end with a hyphen")]
    EdgeHyphen,
}

impl NodeName {
    /// Validates `text` against the node-name rule.
    pub fn parse(text: &str) -> Result<Self, NodeNameError> {
        let length = text.chars().count();
        if !(2..=64).contains(&length) {
            return Err(NodeNameError::Length(length));
        }
        if let Some(bad) = text
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return Err(NodeNameError::Character(bad));
        }
        if text.starts_with('-') || text.ends_with('-') {
            return Err(NodeNameError::EdgeHyphen);
        }
        Ok(NodeName(Arc::from(text)))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// Distinguishes successive lives of a node with the same name: the Unix time
/// in milliseconds at which the process started. A restarted node has a
/// larger incarnation, so state kept about the old one can be recognised as
/// stale.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize, Default,
)]
#[serde(transparent)]
pub struct Incarnation(pub u64);

/// One life of one node: the identity every other node tracks.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MemberId {
    /// The configured node name.
    pub name: NodeName,
    /// Which life of that node.
    pub incarnation: Incarnation,
}

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.name, self.incarnation.0)
    }
}

impl fmt::Debug for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A worker slot on one node. The index is stable across worker restarts, so
/// a task view names the slot, not a transient actor.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize, Default,
)]
#[serde(transparent)]
pub struct WorkerId(pub u32);

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "w{}", self.0)
    }
}

/// The fencing token of one assignment of one task. Every (re)assignment gets
/// a larger epoch; a report carrying an older epoch than the task's current
/// one is a duplicate and is dropped.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize, Default,
)]
#[serde(transparent)]
pub struct AssignmentEpoch(pub u64);

/// The name of an agent type (`echo`, `generation`, ...). Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AgentType(Arc<str>);

impl AgentType {
    /// Wraps a name. Agent type names are validated by the configuration.
    pub fn new(name: &str) -> Self {
        AgentType(Arc::from(name))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for AgentType {
    fn from(name: &str) -> Self {
        AgentType::new(name)
    }
}

impl fmt::Display for AgentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for AgentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_follow_the_agent_id_rule() {
        assert!(NodeName::parse("n1").is_ok());
        assert!(NodeName::parse("n1-a").is_ok());
        assert_eq!(NodeName::parse("n"), Err(NodeNameError::Length(1)));
        assert_eq!(NodeName::parse("Node1"), Err(NodeNameError::Character('N')));
        assert_eq!(
            NodeName::parse("node_1"),
            Err(NodeNameError::Character('_'))
        );
        assert_eq!(NodeName::parse("-node"), Err(NodeNameError::EdgeHyphen));
        assert!(NodeName::parse(&"a".repeat(64)).is_ok());
        assert_eq!(
            NodeName::parse(&"a".repeat(65)),
            Err(NodeNameError::Length(65))
        );
    }

    #[test]
    fn task_ids_are_time_ordered_and_round_trip_as_text() {
        // uuid guarantees ids made by one process are ordered by creation.
        let ids: Vec<TaskId> = (0..1000).map(|_| TaskId::new_v7()).collect();
        assert!(ids.windows(2).all(|pair| pair[0] < pair[1]));
        let first = ids[0];
        let text = first.to_string();
        assert_eq!(text.parse::<TaskId>().unwrap(), first);
        let json = serde_json::to_string(&first).unwrap();
        assert_eq!(json, format!("\"{text}\""));
        assert_eq!(serde_json::from_str::<TaskId>(&json).unwrap(), first);
    }
}
