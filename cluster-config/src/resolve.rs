//! Layering: flag > environment > config file > default, then validation.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use herd_protocol::messages::membership::Role;
use herd_protocol::{AgentType, RetrySpec};

use crate::environment::Environment;
use crate::error::{ConfigError, ConfigErrors};
use crate::file::{AgentSection, LoadedFile, load_file};
use crate::model::*;
use crate::origin::Origin;
use crate::resolve_scaling::{MODE_ENV, MODE_FLAG, resolve_scaling};
use crate::rules;

/// Values given on the command line (or by an embedding program through the
/// builder). `None` means "not given", so lower layers apply.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--name`.
    pub name: Option<String>,
    /// `--listen`.
    pub listen: Option<String>,
    /// `--advertise`.
    pub advertise: Option<String>,
    /// `--http`.
    pub http: Option<String>,
    /// `--seed`, repeatable.
    pub seeds: Option<Vec<String>>,
    /// `--roles`, comma-separated.
    pub roles: Option<String>,
    /// `--workers`.
    pub workers: Option<String>,
    /// `--cookie`.
    pub cookie: Option<String>,
    /// `--config`.
    pub config: Option<PathBuf>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--drain-grace` (seconds).
    pub drain_grace: Option<String>,
    /// `--mode`: the deployment-mode preset.
    pub mode: Option<String>,
}

/// One `node.*` setting and the names it goes by in each layer.
struct Key {
    key: &'static str,
    flag: &'static str,
    env: &'static str,
}

const NAME: Key = Key {
    key: "node.name",
    flag: "--name",
    env: "HERD_NAME",
};
const LISTEN: Key = Key {
    key: "node.listen",
    flag: "--listen",
    env: "HERD_LISTEN",
};
const ADVERTISE: Key = Key {
    key: "node.advertise",
    flag: "--advertise",
    env: "HERD_ADVERTISE",
};
const HTTP: Key = Key {
    key: "node.http",
    flag: "--http",
    env: "HERD_HTTP",
};
const SEEDS: Key = Key {
    key: "node.seeds",
    flag: "--seed",
    env: "HERD_SEEDS",
};
const ROLES: Key = Key {
    key: "node.roles",
    flag: "--roles",
    env: "HERD_ROLES",
};
const WORKERS: Key = Key {
    key: "node.workers",
    flag: "--workers",
    env: "HERD_WORKERS",
};
const COOKIE: Key = Key {
    key: "node.cookie",
    flag: "--cookie",
    env: "HERD_COOKIE",
};
const DRAIN_GRACE: Key = Key {
    key: "node.drain_grace_s",
    flag: "--drain-grace",
    env: "HERD_DRAIN_GRACE",
};
const DATA_DIR: Key = Key {
    key: "node.data_dir",
    flag: "--data-dir",
    env: "HERD_DATA_DIR",
};

/// Default cluster listen address: loopback, so a node started without flags
/// does not expose its cluster port.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7100";
/// Default HTTP listen address.
pub const DEFAULT_HTTP: &str = "127.0.0.1:8100";
/// Default worker slots per node.
pub const DEFAULT_WORKERS: u32 = 4;

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

/// Builds a validated [`NodeConfig`] from command-line overrides, the
/// environment, and the config file they name. Every problem is reported,
/// each with where the value came from and how to fix it.
pub fn resolve(overrides: &Overrides, env: &Environment) -> Result<NodeConfig, ConfigErrors> {
    let file = match config_path(overrides, env) {
        Some((path, origin)) => Some(load_file(&path, origin, env)?),
        None => None,
    };
    resolve_with_file(overrides, env, file)
}

fn config_path(overrides: &Overrides, env: &Environment) -> Option<(PathBuf, Origin)> {
    if let Some(path) = &overrides.config {
        return Some((path.clone(), Origin::Flag("--config")));
    }
    env.get_non_empty("HERD_CONFIG")
        .map(|path| (PathBuf::from(path), Origin::Env("HERD_CONFIG")))
}

/// [`resolve`] with an already-loaded file (or none).
pub fn resolve_with_file(
    overrides: &Overrides,
    env: &Environment,
    file: Option<LoadedFile>,
) -> Result<NodeConfig, ConfigErrors> {
    let mut errors = Vec::new();
    let mut origins = BTreeMap::new();
    let layers = Layers {
        env,
        file: file.as_ref(),
    };
    let node_file = file.as_ref().map(|f| &f.config.node);

    let name = layers
        .pick(&NAME, overrides.name.clone().map(Raw::Text), node_file.and_then(|n| n.name.clone()).map(Raw::Text))
        .map(|(raw, origin)| setting(&NAME, raw, origin, &mut origins, &mut errors, |raw| rules::node_name(&raw.as_text())))
        .unwrap_or_else(|| {
            errors.push(ConfigError::new(Origin::Default, NAME.key, "is required: name this node with --name, HERD_NAME or node.name (2-64 lowercase letters, digits and hyphens, e.g. n1)"));
            None
        });

    let cookie = layers
        .pick(&COOKIE, overrides.cookie.clone().map(Raw::Text), node_file.and_then(|n| n.cookie.clone()).map(Raw::Text))
        .map(|(raw, origin)| setting(&COOKIE, raw, origin, &mut origins, &mut errors, |raw| rules::cookie(&raw.as_text())))
        .unwrap_or_else(|| {
            errors.push(ConfigError::new(Origin::Default, COOKIE.key, "is required and has no default: set the shared cluster secret with --cookie, HERD_COOKIE or node.cookie; every node of one cluster must use the same cookie"));
            None
        });

    let listen = layers
        .pick_or_default(
            &LISTEN,
            overrides.listen.clone().map(Raw::Text),
            node_file.and_then(|n| n.listen.clone()).map(Raw::Text),
            Raw::Text(DEFAULT_LISTEN.into()),
        )
        .and_then(|(raw, origin)| {
            setting(&LISTEN, raw, origin, &mut origins, &mut errors, |raw| {
                rules::socket_addr(&raw.as_text(), "0.0.0.0:7100")
            })
        });

    let http = layers
        .pick_or_default(
            &HTTP,
            overrides.http.clone().map(Raw::Text),
            node_file.and_then(|n| n.http.clone()).map(Raw::Text),
            Raw::Text(DEFAULT_HTTP.into()),
        )
        .and_then(|(raw, origin)| {
            setting(&HTTP, raw, origin, &mut origins, &mut errors, |raw| {
                rules::socket_addr(&raw.as_text(), "127.0.0.1:8100")
            })
        });

    let advertise = layers
        .pick(
            &ADVERTISE,
            overrides.advertise.clone().map(Raw::Text),
            node_file.and_then(|n| n.advertise.clone()).map(Raw::Text),
        )
        .and_then(|(raw, origin)| {
            setting(&ADVERTISE, raw, origin, &mut origins, &mut errors, |raw| {
                rules::host(&raw.as_text())
            })
        });

    let seeds = layers
        .pick_or_default(
            &SEEDS,
            overrides.seeds.clone().map(Raw::List),
            node_file.and_then(|n| n.seeds.clone()).map(Raw::List),
            Raw::List(Vec::new()),
        )
        .and_then(|(raw, origin)| {
            setting(&SEEDS, raw, origin, &mut origins, &mut errors, |raw| {
                raw.as_list()
                    .iter()
                    .map(|seed| rules::host_port(seed))
                    .collect()
            })
        });

    let roles = layers
        .pick_or_default(
            &ROLES,
            overrides.roles.clone().map(Raw::Text),
            node_file.and_then(|n| n.roles.clone()).map(Raw::List),
            Raw::List(Role::ALL.iter().map(|r| r.as_str().to_string()).collect()),
        )
        .and_then(|(raw, origin)| {
            setting(&ROLES, raw, origin, &mut origins, &mut errors, |raw| {
                rules::roles(&raw.as_list())
            })
        });

    let workers_setting = layers.pick_or_default(
        &WORKERS,
        overrides.workers.clone().map(Raw::Text),
        node_file.and_then(|n| n.workers).map(Raw::Integer),
        Raw::Integer(DEFAULT_WORKERS as i64),
    );
    let workers = workers_setting.clone().and_then(|(raw, origin)| {
        setting(&WORKERS, raw, origin, &mut origins, &mut errors, |raw| {
            rules::workers(&raw.as_text())
        })
    });

    let data_dir = layers
        .pick(
            &DATA_DIR,
            overrides
                .data_dir
                .clone()
                .map(|p| Raw::Text(p.display().to_string())),
            node_file.and_then(|n| n.data_dir.clone()).map(Raw::Text),
        )
        .and_then(|(raw, origin)| {
            setting(&DATA_DIR, raw, origin, &mut origins, &mut errors, |raw| {
                Ok::<_, String>(PathBuf::from(raw.as_text()))
            })
        });

    let drain_grace = layers
        .pick_or_default(
            &DRAIN_GRACE,
            overrides.drain_grace.clone().map(Raw::Text),
            node_file.and_then(|n| n.drain_grace_s).map(Raw::Integer),
            Raw::Integer(30),
        )
        .and_then(|(raw, origin)| {
            setting(
                &DRAIN_GRACE,
                raw,
                origin,
                &mut origins,
                &mut errors,
                |raw| {
                    rules::seconds(
                        &raw.as_text(),
                        0..=3600,
                        "how long a draining node lets running tasks finish",
                    )
                },
            )
        });

    // A node must say how peers reach it when it listens on every interface.
    let advertise_host = match (&listen, advertise) {
        (_, Some(host)) => Some(host),
        (Some(addr), None) if !addr.ip().is_unspecified() => Some(addr.ip().to_string()),
        (Some(addr), None) => {
            errors.push(ConfigError::new(
                origins.get(LISTEN.key).cloned().unwrap_or(Origin::Default),
                ADVERTISE.key,
                format!("is required because the listen address {addr} does not tell peers how to reach this node; set --advertise, HERD_ADVERTISE or node.advertise to a host name or IP they can dial"),
            ));
            None
        }
        (None, None) => None,
    };

    let limits = resolve_limits(file.as_ref(), &mut errors);
    let tasks = resolve_task_defaults(file.as_ref(), &mut errors);
    let cluster = resolve_cluster(file.as_ref(), &mut errors);
    let agents = resolve_agents(file.as_ref(), &tasks, &mut errors);
    let mode = overrides
        .mode
        .clone()
        .map(|m| (m, Origin::Flag(MODE_FLAG)))
        .or_else(|| {
            env.get_non_empty(MODE_ENV)
                .map(|m| (m, Origin::Env(MODE_ENV)))
        });
    let scaling = resolve_scaling(file.as_ref(), mode, &mut errors);

    let roles = roles.unwrap_or_default();
    let workers = match (workers, roles.contains(&Role::Worker)) {
        (Some(0), true) => {
            let origin = workers_setting
                .map(|(_, origin)| origin)
                .unwrap_or(Origin::Default);
            errors.push(ConfigError::new(origin, WORKERS.key, "is 0 but the node has the worker role; give it at least 1 worker slot, or drop `worker` from the roles"));
            0
        }
        (Some(count), true) => count,
        (_, false) => 0,
        (None, true) => 0,
    };

    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    // Every `Option` below is `Some`: a `None` always pushed an error above.
    Ok(NodeConfig {
        name: name.expect("name validated"),
        listen: listen.expect("listen validated"),
        advertise_host: advertise_host.expect("advertise validated"),
        http: http.expect("http validated"),
        seeds: seeds.unwrap_or_default(),
        roles,
        workers,
        cookie: cookie.expect("cookie validated"),
        data_dir,
        drain_grace: drain_grace.unwrap_or(Duration::from_secs(30)),
        config_file: file.as_ref().map(|f| f.path().to_path_buf()),
        limits,
        tasks,
        cluster,
        agents,
        scaling,
        origins,
    })
}

struct Layers<'a> {
    env: &'a Environment,
    file: Option<&'a LoadedFile>,
}

impl Layers<'_> {
    /// The highest-precedence layer that sets `key`.
    fn pick(&self, key: &Key, flag: Option<Raw>, file: Option<Raw>) -> Option<(Raw, Origin)> {
        if let Some(raw) = flag {
            return Some((raw, Origin::Flag(key.flag)));
        }
        if let Some(text) = self.env.get_non_empty(key.env) {
            return Some((Raw::Text(text), Origin::Env(key.env)));
        }
        if let (Some(raw), Some(file)) = (file, self.file) {
            return Some((raw, file.origin_of(key.key)));
        }
        None
    }

    fn pick_or_default(
        &self,
        key: &Key,
        flag: Option<Raw>,
        file: Option<Raw>,
        default: Raw,
    ) -> Option<(Raw, Origin)> {
        self.pick(key, flag, file)
            .or(Some((default, Origin::Default)))
    }
}

/// Parses one node setting, recording its origin or its error.
fn setting<T>(
    key: &Key,
    raw: Raw,
    origin: Origin,
    origins: &mut BTreeMap<&'static str, Origin>,
    errors: &mut Vec<ConfigError>,
    parse: impl FnOnce(&Raw) -> Result<T, String>,
) -> Option<T> {
    match parse(&raw) {
        Ok(value) => {
            origins.insert(key.key, origin);
            Some(value)
        }
        Err(message) => {
            errors.push(ConfigError::new(origin, key.key, message));
            None
        }
    }
}

/// Checks an optional integer from the file against a range.
pub(crate) fn file_integer(
    file: Option<&LoadedFile>,
    key: &str,
    value: Option<i64>,
    range: std::ops::RangeInclusive<i64>,
    meaning: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<i64> {
    file_in_range(file, key, value, range, meaning, errors)
}

/// Checks an optional number from the file against a range: the error names
/// the key, where it came from, the range and what the key is for. (NaN is
/// outside every range, and so are the infinities of a finite one.)
pub(crate) fn file_in_range<T: PartialOrd + std::fmt::Display>(
    file: Option<&LoadedFile>,
    key: &str,
    value: Option<T>,
    range: std::ops::RangeInclusive<T>,
    meaning: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<T> {
    let value = value?;
    if range.contains(&value) {
        Some(value)
    } else {
        let origin = file.map(|f| f.origin_of(key)).unwrap_or(Origin::Default);
        errors.push(ConfigError::new(
            origin,
            key,
            format!(
                "is {value}, outside {}..={}; {meaning}",
                range.start(),
                range.end()
            ),
        ));
        None
    }
}

fn resolve_limits(file: Option<&LoadedFile>, errors: &mut Vec<ConfigError>) -> Limits {
    let section = file.map(|f| &f.config.limits);
    let defaults = Limits::default();
    let max_payload_bytes = file_integer(
        file,
        "limits.max_payload_bytes",
        section.and_then(|s| s.max_payload_bytes),
        1..=herd_protocol::limits::MAX_CONFIGURABLE_PAYLOAD_BYTES as i64,
        "set the largest task payload in bytes; at most 8 MiB (8388608), because a cluster frame over 16 MiB drops the whole link",
        errors,
    )
    .map_or(defaults.max_payload_bytes, |v| v as usize);
    let max_unfinished_tasks = file_integer(
        file,
        "limits.max_unfinished_tasks",
        section.and_then(|s| s.max_unfinished_tasks),
        1..=100_000_000,
        "set how many unfinished tasks the orchestrator holds before it answers 429",
        errors,
    )
    .map_or(defaults.max_unfinished_tasks, |v| v as u64);
    Limits {
        max_payload_bytes,
        max_unfinished_tasks,
    }
}

fn resolve_task_defaults(file: Option<&LoadedFile>, errors: &mut Vec<ConfigError>) -> TaskDefaults {
    let section = file.map(|f| &f.config.tasks);
    let defaults = TaskDefaults::default();
    let mut resolved = TaskDefaults {
        timeout_s: file_integer(
            file,
            "tasks.default_timeout_s",
            section.and_then(|s| s.default_timeout_s),
            1..=86_400,
            "set the per-attempt time limit in seconds (1 second to 1 day)",
            errors,
        )
        .map_or(defaults.timeout_s, |v| v as u32),
        max_attempts: file_integer(
            file,
            "tasks.default_max_attempts",
            section.and_then(|s| s.default_max_attempts),
            1..=100,
            "set how many attempts a task gets (1 to 100)",
            errors,
        )
        .map_or(defaults.max_attempts, |v| v as u32),
        retain_finished: file_integer(
            file,
            "tasks.retain_finished",
            section.and_then(|s| s.retain_finished),
            0..=10_000_000,
            "set how many finished tasks stay queryable",
            errors,
        )
        .map_or(defaults.retain_finished, |v| v as usize),
        ..defaults.clone()
    };
    resolved.poison_crashes = file_integer(
        file,
        "tasks.poison_crashes",
        section.and_then(|s| s.poison_crashes),
        1..=100,
        "set after how many worker crashes a task is dead as poison",
        errors,
    )
    .map_or(defaults.poison_crashes, |v| v as u32);
    if let Some(section) = section {
        let fields = PolicyFields::of_tasks(section);
        if let Some(retry) = resolve_retry(file, "tasks", &fields, &defaults.retry, errors) {
            resolved.retry = retry;
        }
        if let Some(circuit) = resolve_circuit(file, "tasks", &fields, &defaults.circuit, errors) {
            resolved.circuit = circuit;
        }
    }
    resolved
}
fn resolve_cluster(file: Option<&LoadedFile>, errors: &mut Vec<ConfigError>) -> ClusterSettings {
    let section = file.map(|f| &f.config.cluster);
    let defaults = ClusterSettings::default();
    let initial = file_integer(
        file,
        "cluster.reconnect_initial_ms",
        section.and_then(|s| s.reconnect_initial_ms),
        10..=60_000,
        "set the first redial delay in milliseconds",
        errors,
    )
    .map_or(defaults.reconnect_initial, |v| {
        Duration::from_millis(v as u64)
    });
    let max = file_integer(
        file,
        "cluster.reconnect_max_ms",
        section.and_then(|s| s.reconnect_max_ms),
        10..=300_000,
        "set the longest redial delay in milliseconds",
        errors,
    )
    .map_or(defaults.reconnect_max, |v| Duration::from_millis(v as u64));
    if max < initial {
        errors.push(ConfigError::new(
            file.map(|f| f.origin_of("cluster.reconnect_max_ms"))
                .unwrap_or(Origin::Default),
            "cluster.reconnect_max_ms",
            format!(
                "is {} ms, below reconnect_initial_ms ({} ms); make it at least as large",
                max.as_millis(),
                initial.as_millis()
            ),
        ));
    }
    let detector_defaults = FailureDetectorSettings::default();
    let millis = |key: &str,
                  value: Option<i64>,
                  range: std::ops::RangeInclusive<i64>,
                  meaning: &str,
                  default: Duration,
                  errors: &mut Vec<ConfigError>| {
        file_integer(file, key, value, range, meaning, errors)
            .map_or(default, |v| Duration::from_millis(v as u64))
    };
    let failure_detector = FailureDetectorSettings {
        heartbeat_interval: millis(
            "cluster.heartbeat_interval_ms",
            section.and_then(|s| s.heartbeat_interval_ms),
            10..=10_000,
            "set how often peers are sent heartbeats, in milliseconds",
            detector_defaults.heartbeat_interval,
            errors,
        ),
        acceptable_pause: millis(
            "cluster.acceptable_pause_ms",
            section.and_then(|s| s.acceptable_pause_ms),
            0..=60_000,
            "set the silence tolerated on top of the usual heartbeat gap, in milliseconds",
            detector_defaults.acceptable_pause,
            errors,
        ),
        max_silence: millis(
            "cluster.max_silence_ms",
            section.and_then(|s| s.max_silence_ms),
            50..=600_000,
            "set the silence after which a peer is declared down, in milliseconds",
            detector_defaults.max_silence,
            errors,
        ),
        min_std_dev: millis(
            "cluster.min_std_dev_ms",
            section.and_then(|s| s.min_std_dev_ms),
            1..=10_000,
            "set the floor of the heartbeat-gap deviation, in milliseconds",
            detector_defaults.min_std_dev,
            errors,
        ),
        threshold: match section.and_then(|s| s.failure_threshold) {
            Some(phi) if phi.is_finite() && (1.0..=50.0).contains(&phi) => phi,
            Some(phi) => {
                errors.push(ConfigError::new(
                    file.map(|f| f.origin_of("cluster.failure_threshold")).unwrap_or(Origin::Default),
                    "cluster.failure_threshold",
                    format!("is {phi}, outside 1.0..=50.0; set the phi above which a silent peer is declared down (8 is a good default)"),
                ));
                detector_defaults.threshold
            }
            None => detector_defaults.threshold,
        },
    };
    ClusterSettings {
        reconnect_initial: initial,
        reconnect_max: max.max(initial),
        failure_detector,
    }
}

/// The retry and circuit fields that both `[tasks]` and `[agents.NAME]` hold.
struct PolicyFields<'a> {
    retry: Option<&'a str>,
    initial_s: Option<f64>,
    factor: Option<f64>,
    max_s: Option<f64>,
    delay_s: Option<f64>,
    circuit_failures: Option<i64>,
    circuit_recovery_s: Option<f64>,
    circuit_half_open_trials: Option<i64>,
}

macro_rules! policy_fields {
    ($section:expr) => {
        PolicyFields {
            retry: $section.retry.as_deref(),
            initial_s: $section.retry_initial_s,
            factor: $section.retry_factor,
            max_s: $section.retry_max_s,
            delay_s: $section.retry_delay_s,
            circuit_failures: $section.circuit_failures,
            circuit_recovery_s: $section.circuit_recovery_s,
            circuit_half_open_trials: $section.circuit_half_open_trials,
        }
    };
}

impl<'a> PolicyFields<'a> {
    fn of_tasks(section: &'a crate::file::TasksSection) -> Self {
        policy_fields!(section)
    }

    fn of_agent(section: &'a AgentSection) -> Self {
        policy_fields!(section)
    }
}

/// The backoff a section asks for, starting from `base`; `None` when the
/// section sets no retry field.
fn resolve_retry(
    file: Option<&LoadedFile>,
    prefix: &str,
    fields: &PolicyFields<'_>,
    base: &RetrySpec,
    errors: &mut Vec<ConfigError>,
) -> Option<RetrySpec> {
    let exponential_fields =
        fields.initial_s.is_some() || fields.factor.is_some() || fields.max_s.is_some();
    if fields.retry.is_none() && !exponential_fields && fields.delay_s.is_none() {
        return None;
    }
    let origin = |field: &str| {
        file.map(|f| f.origin_of(&format!("{prefix}.{field}")))
            .unwrap_or(Origin::Default)
    };
    let kind = match fields.retry {
        Some(kind @ ("exponential" | "linear")) => kind,
        Some(other) => {
            errors.push(ConfigError::new(
                origin("retry"),
                format!("{prefix}.retry"),
                format!("{other:?} is not a backoff; use \"exponential\" or \"linear\""),
            ));
            return None;
        }
        None if fields.delay_s.is_some() && !exponential_fields => "linear",
        None => match base {
            RetrySpec::Exponential { .. } => "exponential",
            RetrySpec::Linear { .. } => "linear",
        },
    };
    let spec = if kind == "linear" {
        if exponential_fields {
            errors.push(ConfigError::new(origin("retry"), format!("{prefix}.retry_initial_s"), "retry_initial_s, retry_factor and retry_max_s apply only to retry = \"exponential\"; use retry_delay_s for a linear backoff"));
            return None;
        }
        let default_delay = match base {
            RetrySpec::Linear { delay_s } => *delay_s,
            RetrySpec::Exponential { .. } => 30.0,
        };
        RetrySpec::Linear {
            delay_s: fields.delay_s.unwrap_or(default_delay),
        }
    } else {
        if fields.delay_s.is_some() {
            errors.push(ConfigError::new(origin("retry_delay_s"), format!("{prefix}.retry_delay_s"), "retry_delay_s applies only to retry = \"linear\"; use retry_initial_s, retry_factor and retry_max_s"));
            return None;
        }
        let (initial, factor, max) = match base {
            RetrySpec::Exponential {
                initial_s,
                factor,
                max_s,
            } => (*initial_s, *factor, *max_s),
            RetrySpec::Linear { .. } => (1.0, 2.0, 300.0),
        };
        RetrySpec::Exponential {
            initial_s: fields.initial_s.unwrap_or(initial),
            factor: fields.factor.unwrap_or(factor),
            max_s: fields.max_s.unwrap_or(max),
        }
    };
    if let Err(message) = spec.validate() {
        errors.push(ConfigError::new(
            origin("retry"),
            format!("{prefix}.retry"),
            message,
        ));
        return None;
    }
    Some(spec)
}

/// The circuit breaker a section asks for, starting from `base`; `None` when
/// the section sets no circuit field.
fn resolve_circuit(
    file: Option<&LoadedFile>,
    prefix: &str,
    fields: &PolicyFields<'_>,
    base: &CircuitSettings,
    errors: &mut Vec<ConfigError>,
) -> Option<CircuitSettings> {
    if fields.circuit_failures.is_none()
        && fields.circuit_recovery_s.is_none()
        && fields.circuit_half_open_trials.is_none()
    {
        return None;
    }
    let key = |field: &str| format!("{prefix}.{field}");
    let failures = file_integer(
        file,
        &key("circuit_failures"),
        fields.circuit_failures,
        0..=10_000,
        "set how many failures in a row open the circuit (0 disables it)",
        errors,
    );
    let trials = file_integer(
        file,
        &key("circuit_half_open_trials"),
        fields.circuit_half_open_trials,
        1..=1_000,
        "set how many trial tasks must succeed to close the circuit",
        errors,
    );
    let recovery = match fields.circuit_recovery_s {
        Some(seconds) if seconds.is_finite() && (0.01..=86_400.0).contains(&seconds) => {
            Some(Duration::from_secs_f64(seconds))
        }
        Some(seconds) => {
            errors.push(ConfigError::new(
                file.map(|f| f.origin_of(&key("circuit_recovery_s"))).unwrap_or(Origin::Default),
                key("circuit_recovery_s"),
                format!("is {seconds}, outside 0.01..=86400; set how many seconds an open circuit waits before trial tasks"),
            ));
            None
        }
        None => None,
    };
    Some(CircuitSettings {
        failures: failures.map_or(base.failures, |v| v as u32),
        recovery: recovery.unwrap_or(base.recovery),
        half_open_trials: trials.map_or(base.half_open_trials, |v| v as u32),
    })
}

fn resolve_agents(
    file: Option<&LoadedFile>,
    tasks: &TaskDefaults,
    errors: &mut Vec<ConfigError>,
) -> BTreeMap<AgentType, AgentConfig> {
    let Some(file) = file.filter(|f| !f.config.agents.is_empty()) else {
        return default_agents();
    };
    let mut agents = BTreeMap::new();
    for (name, section) in &file.config.agents {
        let prefix = format!("agents.{name}");
        if let Err(message) = rules::agent_type_name(name) {
            errors.push(ConfigError::new(
                file.origin_of(&prefix),
                prefix.clone(),
                message,
            ));
            continue;
        }
        if let Some(agent) = resolve_agent(file, &prefix, section, tasks, errors) {
            agents.insert(AgentType::new(name), agent);
        }
    }
    if !agents.is_empty() && agents.values().all(|agent| agent.weight == 0.0) {
        errors.push(ConfigError::new(
            file.origin_of("agents"),
            "agents",
            "every agent type has weight 0; give at least one a positive weight so slots can be shared by weight",
        ));
    }
    agents
}

fn resolve_agent(
    file: &LoadedFile,
    prefix: &str,
    section: &AgentSection,
    tasks: &TaskDefaults,
    errors: &mut Vec<ConfigError>,
) -> Option<AgentConfig> {
    let error_count = errors.len();
    let fields = PolicyFields::of_agent(section);
    let retry = resolve_retry(Some(file), prefix, &fields, &tasks.retry, errors);
    let circuit = resolve_circuit(Some(file), prefix, &fields, &tasks.circuit, errors);
    let key = |field: &str| format!("{prefix}.{field}");
    let mut fail = |field: &str, message: String| {
        errors.push(ConfigError::new(
            file.origin_of(&key(field)),
            key(field),
            message,
        ));
    };

    let weight = section.weight.unwrap_or(0.5);
    if !(0.0..=1.0).contains(&weight) || !weight.is_finite() {
        fail(
            "weight",
            format!(
                "is {weight}, outside 0.0..=1.0; weights are shares of the worker slots (they are normalised, so 0.5 and 0.5 split evenly)"
            ),
        );
    }
    let timeout_s = section.timeout_s.and_then(|v| {
        if (1..=86_400).contains(&v) {
            Some(v as u32)
        } else {
            fail(
                "timeout_s",
                format!("is {v}, outside 1..=86400; set the per-attempt time limit in seconds"),
            );
            None
        }
    });
    let max_attempts = section.max_attempts.and_then(|v| {
        if (1..=100).contains(&v) {
            Some(v as u32)
        } else {
            fail(
                "max_attempts",
                format!("is {v}, outside 1..=100; set how many attempts a task gets"),
            );
            None
        }
    });

    let kind = section.handler.as_deref().unwrap_or("");
    let exec_only = [
        ("command", section.command.is_some()),
        ("env", section.env.is_some()),
        ("working_dir", section.working_dir.is_some()),
        ("fatal_exit_codes", section.fatal_exit_codes.is_some()),
    ];
    let http_only = [
        ("url", section.url.is_some()),
        ("headers", section.headers.is_some()),
    ];
    let mut reject_foreign = |fields: &[(&str, bool)], owner: &str| {
        for (field, present) in fields {
            if *present {
                fail(
                    field,
                    format!(
                        "applies only to handler = \"{owner}\", but this agent type uses handler = \"{kind}\"; remove it or change the handler"
                    ),
                );
            }
        }
    };
    let handler = match kind {
        "echo" | "sleep" | "custom" => {
            reject_foreign(&exec_only, "exec");
            reject_foreign(&http_only, "http");
            Some(match kind {
                "echo" => HandlerConfig::Echo,
                "sleep" => HandlerConfig::Sleep,
                _ => HandlerConfig::Custom,
            })
        }
        "exec" => {
            reject_foreign(&http_only, "http");
            exec_handler(section, &mut fail)
        }
        "http" => {
            reject_foreign(&exec_only, "exec");
            http_handler(section, &mut fail)
        }
        "" => {
            fail("handler", "is required: set handler = \"echo\", \"sleep\", \"exec\", \"http\" or \"custom\" (registered in code)".to_string());
            None
        }
        other => {
            fail(
                "handler",
                format!(
                    "{other:?} is not a handler; use \"echo\", \"sleep\", \"exec\", \"http\" or \"custom\" (registered in code)"
                ),
            );
            None
        }
    };
    if errors.len() > error_count {
        return None;
    }
    Some(AgentConfig {
        weight,
        timeout_s,
        max_attempts,
        retry,
        circuit,
        llm: section
            .llm
            .unwrap_or(matches!(handler, Some(HandlerConfig::Http(_)))),
        handler: handler?,
    })
}

fn exec_handler(
    section: &AgentSection,
    fail: &mut impl FnMut(&str, String),
) -> Option<HandlerConfig> {
    let command = section.command.clone().unwrap_or_default();
    if command.is_empty() || command[0].trim().is_empty() {
        fail("command", "is required for handler = \"exec\": give the program and its arguments, e.g. command = [\"python3\", \"summarize.py\"]".to_string());
        return None;
    }
    let mut fatal_exit_codes = Vec::new();
    for code in section.fatal_exit_codes.clone().unwrap_or_default() {
        match i32::try_from(code) {
            Ok(code) if (1..=255).contains(&code) => fatal_exit_codes.push(code),
            _ => fail(
                "fatal_exit_codes",
                format!("contains {code}; exit codes are 1..=255"),
            ),
        }
    }
    Some(HandlerConfig::Exec(ExecHandlerConfig {
        command,
        env: section.env.clone().unwrap_or_default(),
        working_dir: section.working_dir.clone().map(PathBuf::from),
        fatal_exit_codes,
    }))
}

fn http_handler(
    section: &AgentSection,
    fail: &mut impl FnMut(&str, String),
) -> Option<HandlerConfig> {
    let Some(url) = section.url.clone() else {
        fail("url", "is required for handler = \"http\": give the endpoint to POST payloads to, e.g. url = \"http://127.0.0.1:9000/run\"".to_string());
        return None;
    };
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        fail("url", format!("{url:?} is not an http:// or https:// URL"));
        return None;
    }
    Some(HandlerConfig::Http(HttpHandlerConfig {
        url,
        headers: section
            .headers
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|(name, value)| (name, Secret::new(value)))
            .collect(),
    }))
}
