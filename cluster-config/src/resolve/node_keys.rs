//! The `node.*` keys: each is one row of [`NODE_KEYS`], resolved flag >
//! environment > file > default and parsed by the same loop.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use herd_protocol::NodeName;
use herd_protocol::messages::membership::Role;

use super::Overrides;
use crate::environment::Environment;
use crate::error::ConfigError;
use crate::file::{LoadedFile, NodeSection};
use crate::model::Secret;
use crate::origin::Origin;
use crate::rules;

/// Default cluster listen address: loopback, so a node started without flags
/// does not expose its cluster port.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7100";
/// Default HTTP listen address.
pub const DEFAULT_HTTP: &str = "127.0.0.1:8100";
/// Default worker slots per node.
pub const DEFAULT_WORKERS: u32 = 4;
/// Default seconds a draining node lets running tasks finish.
const DEFAULT_DRAIN_GRACE_S: u32 = 30;
/// The seconds `node.drain_grace_s` may be set to.
const DRAIN_GRACE_S_RANGE: RangeInclusive<u64> = 0..=3600;

/// The keys that other checks refer to by name.
pub(super) const LISTEN: &str = "node.listen";
pub(super) const ADVERTISE: &str = "node.advertise";
pub(super) const WORKERS: &str = "node.workers";

/// A value before it is parsed, from whichever layer supplied it.
#[derive(Clone, Debug)]
enum Raw {
    Text(String),
    List(Vec<String>),
    Integer(i64),
}

impl Raw {
    fn as_text(&self) -> String {
        match self {
            Raw::Text(text) => text.clone(),
            Raw::List(items) => items.join(","),
            Raw::Integer(value) => value.to_string(),
        }
    }

    /// Lists from flags and env are comma-separated text.
    fn as_list(&self) -> Vec<String> {
        match self {
            Raw::List(items) => items.clone(),
            other => other
                .as_text()
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(str::to_string)
                .collect(),
        }
    }
}

/// What a `node.*` key is when no layer sets it.
enum WhenUnset {
    /// An error: the key is required, and the message says how to set it.
    Required(&'static str),
    /// The built-in default.
    Default(fn() -> Raw),
    /// Absent (`None` in [`NodeKeyValues`]).
    Absent,
}

/// One `node.*` key: its name in each layer, where each layer holds it, what
/// applies when none does, and how its value is parsed into
/// [`NodeKeyValues`] (an `Err` is the message of the key's error).
struct NodeKey {
    key: &'static str,
    flag: &'static str,
    env: &'static str,
    from_flag: fn(&Overrides) -> Option<Raw>,
    from_file: fn(&NodeSection) -> Option<Raw>,
    when_unset: WhenUnset,
    parse_into: fn(&Raw, &mut NodeKeyValues) -> Result<(), String>,
}

/// Every `node.*` key, in the order they are resolved and their errors
/// reported. Adding a key is adding a row (and its field).
const NODE_KEYS: &[NodeKey] = &[
    NodeKey {
        key: "node.name",
        flag: "--name",
        env: "HERD_NAME",
        from_flag: |flags| flags.name.clone().map(Raw::Text),
        from_file: |node| node.name.clone().map(Raw::Text),
        when_unset: WhenUnset::Required(
            "is required: name this node with --name, HERD_NAME or node.name (2-64 lowercase letters, digits and hyphens, e.g. n1)",
        ),
        parse_into: |raw, values| store(&mut values.name, rules::node_name(&raw.as_text())),
    },
    NodeKey {
        key: "node.cookie",
        flag: "--cookie",
        env: "HERD_COOKIE",
        from_flag: |flags| flags.cookie.clone().map(Raw::Text),
        from_file: |node| node.cookie.clone().map(Raw::Text),
        when_unset: WhenUnset::Required(
            "is required and has no default: set the shared cluster secret with --cookie, HERD_COOKIE or node.cookie; every node of one cluster must use the same cookie",
        ),
        parse_into: |raw, values| store(&mut values.cookie, rules::cookie(&raw.as_text())),
    },
    NodeKey {
        key: LISTEN,
        flag: "--listen",
        env: "HERD_LISTEN",
        from_flag: |flags| flags.listen.clone().map(Raw::Text),
        from_file: |node| node.listen.clone().map(Raw::Text),
        when_unset: WhenUnset::Default(|| Raw::Text(DEFAULT_LISTEN.into())),
        parse_into: |raw, values| {
            store(
                &mut values.listen,
                rules::socket_addr(&raw.as_text(), "0.0.0.0:7100"),
            )
        },
    },
    NodeKey {
        key: "node.http",
        flag: "--http",
        env: "HERD_HTTP",
        from_flag: |flags| flags.http.clone().map(Raw::Text),
        from_file: |node| node.http.clone().map(Raw::Text),
        when_unset: WhenUnset::Default(|| Raw::Text(DEFAULT_HTTP.into())),
        parse_into: |raw, values| {
            store(
                &mut values.http,
                rules::socket_addr(&raw.as_text(), "127.0.0.1:8100"),
            )
        },
    },
    NodeKey {
        key: ADVERTISE,
        flag: "--advertise",
        env: "HERD_ADVERTISE",
        from_flag: |flags| flags.advertise.clone().map(Raw::Text),
        from_file: |node| node.advertise.clone().map(Raw::Text),
        when_unset: WhenUnset::Absent,
        parse_into: |raw, values| store(&mut values.advertise, rules::host(&raw.as_text())),
    },
    NodeKey {
        key: "node.seeds",
        flag: "--seed",
        env: "HERD_SEEDS",
        from_flag: |flags| flags.seeds.clone().map(Raw::List),
        from_file: |node| node.seeds.clone().map(Raw::List),
        when_unset: WhenUnset::Default(|| Raw::List(Vec::new())),
        parse_into: |raw, values| {
            let seeds = raw
                .as_list()
                .iter()
                .map(|seed| rules::host_port(seed))
                .collect();
            store(&mut values.seeds, seeds)
        },
    },
    NodeKey {
        key: "node.roles",
        flag: "--roles",
        env: "HERD_ROLES",
        from_flag: |flags| flags.roles.clone().map(Raw::Text),
        from_file: |node| node.roles.clone().map(Raw::List),
        when_unset: WhenUnset::Default(|| {
            Raw::List(Role::ALL.iter().map(|r| r.as_str().to_string()).collect())
        }),
        parse_into: |raw, values| store(&mut values.roles, rules::roles(&raw.as_list())),
    },
    NodeKey {
        key: WORKERS,
        flag: "--workers",
        env: "HERD_WORKERS",
        from_flag: |flags| flags.workers.clone().map(Raw::Text),
        from_file: |node| node.workers.map(Raw::Integer),
        when_unset: WhenUnset::Default(|| Raw::Integer(DEFAULT_WORKERS.into())),
        parse_into: |raw, values| store(&mut values.workers, rules::workers(&raw.as_text())),
    },
    NodeKey {
        key: "node.data_dir",
        flag: "--data-dir",
        env: "HERD_DATA_DIR",
        from_flag: |flags| {
            let path = flags.data_dir.as_ref()?;
            Some(Raw::Text(path.display().to_string()))
        },
        from_file: |node| node.data_dir.clone().map(Raw::Text),
        when_unset: WhenUnset::Absent,
        parse_into: |raw, values| store(&mut values.data_dir, Ok(PathBuf::from(raw.as_text()))),
    },
    NodeKey {
        key: "node.drain_grace_s",
        flag: "--drain-grace",
        env: "HERD_DRAIN_GRACE",
        from_flag: |flags| flags.drain_grace.clone().map(Raw::Text),
        from_file: |node| node.drain_grace_s.map(Raw::Integer),
        when_unset: WhenUnset::Default(|| Raw::Integer(DEFAULT_DRAIN_GRACE_S.into())),
        parse_into: |raw, values| {
            let meaning = "how long a draining node lets running tasks finish";
            let grace = rules::seconds(&raw.as_text(), DRAIN_GRACE_S_RANGE, meaning);
            store(&mut values.drain_grace, grace)
        },
    },
];

/// The `node.*` values that parsed, and where each came from. A value is
/// `None` when its key is unset without a default or failed to parse (and
/// then an error was reported).
#[derive(Debug, Default)]
pub(super) struct NodeKeyValues {
    pub name: Option<NodeName>,
    pub cookie: Option<Secret>,
    pub listen: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
    pub advertise: Option<String>,
    pub seeds: Option<Vec<String>>,
    pub roles: Option<Vec<Role>>,
    pub workers: Option<u32>,
    pub data_dir: Option<PathBuf>,
    pub drain_grace: Option<Duration>,
    /// The layer each parsed key came from, by key.
    pub origins: BTreeMap<&'static str, Origin>,
}

/// Puts a parsed value in its slot, or passes its error on.
fn store<T>(slot: &mut Option<T>, parsed: Result<T, String>) -> Result<(), String> {
    *slot = Some(parsed?);
    Ok(())
}

/// Resolves every row of [`NODE_KEYS`], pushing an error for each key that
/// is required but unset or that does not parse.
pub(super) fn resolve_node_keys(
    overrides: &Overrides,
    env: &Environment,
    file: Option<&LoadedFile>,
    errors: &mut Vec<ConfigError>,
) -> NodeKeyValues {
    let mut values = NodeKeyValues::default();
    for node_key in NODE_KEYS {
        let Some((raw, origin)) = node_key.pick(overrides, env, file) else {
            if let WhenUnset::Required(message) = node_key.when_unset {
                errors.push(ConfigError::new(Origin::Default, node_key.key, message));
            }
            continue;
        };
        match (node_key.parse_into)(&raw, &mut values) {
            Ok(()) => {
                values.origins.insert(node_key.key, origin);
            }
            Err(message) => errors.push(ConfigError::new(origin, node_key.key, message)),
        }
    }
    values
}

impl NodeKey {
    /// The value of the highest-precedence layer that sets this key, and
    /// that layer; the default when none does.
    fn pick(
        &self,
        overrides: &Overrides,
        env: &Environment,
        file: Option<&LoadedFile>,
    ) -> Option<(Raw, Origin)> {
        (self.from_flag)(overrides)
            .map(|raw| (raw, Origin::Flag(self.flag)))
            .or_else(|| {
                let text = env.get_non_empty(self.env)?;
                Some((Raw::Text(text), Origin::Env(self.env)))
            })
            .or_else(|| {
                let file = file?;
                let raw = (self.from_file)(&file.config.node)?;
                Some((raw, file.origin_of(self.key)))
            })
            .or_else(|| match self.when_unset {
                WhenUnset::Default(default) => Some((default(), Origin::Default)),
                WhenUnset::Required(_) | WhenUnset::Absent => None,
            })
    }
}
