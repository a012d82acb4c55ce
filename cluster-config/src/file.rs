//! The TOML file as written: every key optional, unknown keys rejected.
//!
//! Numbers are read as `i64`/`f64` so that an out-of-range value gets a range
//! error naming its line instead of a type error; [`crate::resolve`] turns
//! this raw shape into a validated [`crate::NodeConfig`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::environment::Environment;
use crate::error::{ConfigError, ConfigErrors};
use crate::expand::{ExpandError, expand};
use crate::origin::{Origin, SourceMap, line_of};

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `[node]`: this node's identity and addresses.
    #[serde(default)]
    pub node: NodeSection,
    /// `[limits]`: payload and queue bounds.
    #[serde(default)]
    pub limits: LimitsSection,
    /// `[http]`: the API server's connection cap and timeouts.
    #[serde(default)]
    pub http: HttpSection,
    /// `[tasks]`: defaults for tasks that do not say.
    #[serde(default)]
    pub tasks: TasksSection,
    /// `[cluster]`: membership tuning.
    #[serde(default)]
    pub cluster: ClusterSection,
    /// `[agents.NAME]`: the agent types this node knows.
    #[serde(default)]
    pub agents: BTreeMap<String, AgentSection>,
    /// `[scaling]`: deployment mode, pool bounds, rebalancing.
    #[serde(default)]
    pub scaling: ScalingSection,
    /// `[providers.NAME]`: the LLM APIs `llm` agent types call.
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderSection>,
    /// `[tls]`: certificate and key files for the API and the cluster port.
    #[serde(default)]
    pub tls: TlsSection,
    /// `[api]`: tokens and which endpoints are open.
    #[serde(default)]
    pub api: ApiSection,
    /// `[tenants.NAME]`: per-tenant limits.
    #[serde(default)]
    pub tenants: BTreeMap<String, TenantSection>,
}

/// `[tls]`: paths to PEM files.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// The HTTP API's certificate chain.
    pub cert: Option<String>,
    /// The HTTP API's private key.
    pub key: Option<String>,
    /// This node's certificate on the cluster port.
    pub cluster_cert: Option<String>,
    /// Its private key.
    pub cluster_key: Option<String>,
    /// The CA every cluster peer's certificate must chain to.
    pub cluster_ca: Option<String>,
}

/// `[api]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
    /// `/metrics` without a token (default true).
    pub open_metrics: Option<bool>,
    /// `/health` without a token (default true).
    pub open_health: Option<bool>,
    /// `[[api.tokens]]`.
    #[serde(default)]
    pub tokens: Vec<TokenSection>,
}

/// `[[api.tokens]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSection {
    /// A label for logs.
    pub name: Option<String>,
    /// Hex SHA-256 digest of the token (`herd token new` prints one).
    pub sha256: Option<String>,
    /// `admin`, `submit` or `read`.
    pub role: Option<String>,
    /// The tenant (default `default`).
    pub tenant: Option<String>,
}

/// `[tenants.NAME]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSection {
    /// Unfinished tasks the tenant may hold.
    pub max_unfinished_tasks: Option<i64>,
    /// Unfinished payload and result bytes the tenant may hold.
    pub max_held_bytes: Option<i64>,
}

/// `[providers.NAME]`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSection {
    /// Base URL of the OpenAI-compatible API, e.g. `https://api.openai.com/v1`.
    pub base_url: Option<String>,
    /// The API key (usually `"${OPENAI_API_KEY}"`).
    pub api_key: Option<String>,
    /// A file holding the API key (read when the config is resolved).
    pub api_key_file: Option<String>,
    /// Default model for agent types that name none.
    pub model: Option<String>,
    /// Requests per minute, cluster-wide.
    pub requests_per_minute: Option<i64>,
    /// Tokens per minute, cluster-wide.
    pub tokens_per_minute: Option<i64>,
    /// Calls in flight at once, cluster-wide.
    pub max_concurrent: Option<i64>,
    /// Seconds a task may wait for this provider's budget before falling back.
    pub max_wait_s: Option<i64>,
    /// Consecutive provider failures that open its circuit (0 disables it).
    pub circuit_failures: Option<i64>,
    /// Seconds an open circuit waits before trial calls.
    pub circuit_recovery_s: Option<f64>,
    /// Trial calls that must succeed to close the circuit again.
    pub circuit_half_open_trials: Option<i64>,
}

// Written by hand so that the API key never reaches a log line.
impl std::fmt::Debug for ProviderSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderSection")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "***"))
            .field("api_key_file", &self.api_key_file)
            .field("model", &self.model)
            .field("requests_per_minute", &self.requests_per_minute)
            .field("tokens_per_minute", &self.tokens_per_minute)
            .field("max_concurrent", &self.max_concurrent)
            .field("max_wait_s", &self.max_wait_s)
            .field("circuit_failures", &self.circuit_failures)
            .field("circuit_recovery_s", &self.circuit_recovery_s)
            .field("circuit_half_open_trials", &self.circuit_half_open_trials)
            .finish()
    }
}

/// `[scaling]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScalingSection {
    /// `static`, `development`, `trusted-tester` or `production`.
    pub mode: Option<String>,
    /// Milliseconds between scaling decisions.
    pub interval_ms: Option<i64>,
    /// Fewest slots in the cluster.
    pub min_workers: Option<i64>,
    /// Most slots in the cluster.
    pub max_workers: Option<i64>,
    /// Utilization above which the pool grows.
    pub scale_up_threshold: Option<f64>,
    /// Utilization below which the pool shrinks.
    pub scale_down_threshold: Option<f64>,
    /// Seconds utilization must stay low before the pool shrinks.
    pub stabilization_s: Option<i64>,
    /// Longest an attempt may run, seconds.
    pub worker_timeout_seconds: Option<i64>,
    /// LLM-calling tasks running at once per node.
    pub max_concurrent_llm_calls: Option<i64>,
    /// Attempts a pool is given per slot (one runs, the rest wait there).
    pub slot_credit: Option<i64>,
    /// Most attempts a pool is given per slot when commits are slow and a
    /// type's tasks short (the credit adapts between the two).
    pub max_slot_credit: Option<i64>,
    /// CPU cores budgeted per worker slot.
    pub max_cpu_per_worker: Option<f64>,
    /// Memory budgeted per worker slot, GB.
    pub max_memory_per_worker_gb: Option<f64>,
    /// Largest relative weight change per step.
    pub max_weight_step: Option<f64>,
    /// Move weights toward demand.
    pub rebalance: Option<bool>,
    /// Grow and shrink the pool.
    pub autoscale: Option<bool>,
}
/// `[node]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// Node name.
    pub name: Option<String>,
    /// Cluster listen address.
    pub listen: Option<String>,
    /// Host peers dial.
    pub advertise: Option<String>,
    /// HTTP listen address.
    pub http: Option<String>,
    /// Seed addresses.
    pub seeds: Option<Vec<String>>,
    /// Roles.
    pub roles: Option<Vec<String>>,
    /// Worker slots.
    pub workers: Option<i64>,
    /// Cluster cookie.
    pub cookie: Option<String>,
    /// Data directory.
    pub data_dir: Option<String>,
    /// Seconds a draining node lets running tasks finish.
    pub drain_grace_s: Option<i64>,
}

/// `[limits]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    /// Largest payload or result in bytes.
    pub max_payload_bytes: Option<i64>,
    /// Unfinished tasks the orchestrator holds before answering 429.
    pub max_unfinished_tasks: Option<i64>,
    /// Largest encoded size of one submitted batch, in bytes.
    pub max_batch_bytes: Option<i64>,
    /// Most tasks in one submitted batch.
    pub max_batch_tasks: Option<i64>,
    /// Payload and result bytes the task book holds.
    pub max_held_bytes: Option<i64>,
    /// Unfinished tasks one tenant may hold.
    pub tenant_max_unfinished_tasks: Option<i64>,
    /// Unfinished payload and result bytes one tenant may hold.
    pub tenant_max_held_bytes: Option<i64>,
}

/// `[http]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    /// Most connections open at once.
    pub max_connections: Option<i64>,
    /// Seconds to receive a request's line and headers.
    pub header_timeout_s: Option<i64>,
    /// Seconds a request body may go without data.
    pub body_timeout_s: Option<i64>,
    /// Seconds from a request's headers to its answer.
    pub request_timeout_s: Option<i64>,
}

/// `[tasks]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TasksSection {
    /// Per-attempt time limit when neither task nor agent type says.
    pub default_timeout_s: Option<i64>,
    /// Attempts when neither task nor agent type says.
    pub default_max_attempts: Option<i64>,
    /// Finished tasks kept for queries before the oldest are forgotten.
    pub retain_finished: Option<i64>,
    /// Crashes after which a task is dead as poison.
    pub poison_crashes: Option<i64>,
    /// Backoff between attempts: `exponential` or `linear`.
    pub retry: Option<String>,
    /// Exponential: first delay, seconds.
    pub retry_initial_s: Option<f64>,
    /// Exponential: growth per attempt.
    pub retry_factor: Option<f64>,
    /// Exponential: longest delay, seconds.
    pub retry_max_s: Option<f64>,
    /// Linear: the delay, seconds.
    pub retry_delay_s: Option<f64>,
    /// Consecutive failures that open the circuit (0 disables it).
    pub circuit_failures: Option<i64>,
    /// Seconds an open circuit waits before trial tasks.
    pub circuit_recovery_s: Option<f64>,
    /// Trial tasks that must succeed to close the circuit again.
    pub circuit_half_open_trials: Option<i64>,
}

/// `[cluster]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// First reconnect delay.
    pub reconnect_initial_ms: Option<i64>,
    /// Longest reconnect delay.
    pub reconnect_max_ms: Option<i64>,
    /// How often peers are sent heartbeats.
    pub heartbeat_interval_ms: Option<i64>,
    /// Phi above which a silent peer is declared down.
    pub failure_threshold: Option<f64>,
    /// Silence tolerated on top of the usual heartbeat gap.
    pub acceptable_pause_ms: Option<i64>,
    /// Silence after which a peer is declared down regardless of phi.
    pub max_silence_ms: Option<i64>,
    /// Floor of the heartbeat-interval standard deviation.
    pub min_std_dev_ms: Option<i64>,
    /// Peers each node heartbeats (its ring successors).
    pub watchers: Option<i64>,
    /// `single` or `raft`.
    pub replication: Option<String>,
    /// Voting task book replicas (raft replication).
    pub voters: Option<i64>,
    /// Log entries between a replica's snapshots.
    pub snapshot_every_entries: Option<i64>,
}

/// `[agents.NAME]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSection {
    /// Share of worker slots (0.0–1.0).
    pub weight: Option<f64>,
    /// `echo`, `sleep`, `exec`, `http`, `llm` or `custom`.
    pub handler: Option<String>,
    /// Per-attempt time limit.
    pub timeout_s: Option<i64>,
    /// Attempts before dead.
    pub max_attempts: Option<i64>,
    /// `exec`: program and arguments.
    pub command: Option<Vec<String>>,
    /// `exec`: extra environment.
    pub env: Option<BTreeMap<String, String>>,
    /// `exec`: names of the node's environment variables passed to the program.
    pub pass_env: Option<Vec<String>>,
    /// `exec`: working directory.
    pub working_dir: Option<String>,
    /// `exec`: exit codes that mean "do not retry".
    pub fatal_exit_codes: Option<Vec<i64>>,
    /// `http`: the URL to POST to.
    pub url: Option<String>,
    /// `http`: extra request headers.
    pub headers: Option<BTreeMap<String, String>>,
    /// `llm`: the `[providers.NAME]` calls go to first.
    pub provider: Option<String>,
    /// `llm`: providers tried next, in order.
    pub fallback: Option<Vec<String>>,
    /// `llm`: the model (default: the provider's `model`).
    pub model: Option<String>,
    /// `llm`: sent first, as the system message.
    pub system_prompt: Option<String>,
    /// `llm`: sampling temperature.
    pub temperature: Option<f64>,
    /// `llm`: most tokens of one completion.
    pub max_tokens: Option<i64>,
    /// Its tasks call an LLM API (count against `max_concurrent_llm_calls`);
    /// default: true for `http` and `llm` handlers.
    pub llm: Option<bool>,
    /// Backoff between attempts: `exponential` or `linear`.
    pub retry: Option<String>,
    /// Exponential: first delay, seconds.
    pub retry_initial_s: Option<f64>,
    /// Exponential: growth per attempt.
    pub retry_factor: Option<f64>,
    /// Exponential: longest delay, seconds.
    pub retry_max_s: Option<f64>,
    /// Linear: the delay, seconds.
    pub retry_delay_s: Option<f64>,
    /// Consecutive failures that open the circuit (0 disables it).
    pub circuit_failures: Option<i64>,
    /// Seconds an open circuit waits before trial tasks.
    pub circuit_recovery_s: Option<f64>,
    /// Trial tasks that must succeed to close the circuit again.
    pub circuit_half_open_trials: Option<i64>,
}

/// A parsed file with the positions of its keys.
#[derive(Debug)]
pub struct LoadedFile {
    /// The typed content.
    pub config: FileConfig,
    /// Key → line.
    pub source: SourceMap,
}

impl LoadedFile {
    /// Where `key` was written (or its table, or the file).
    pub fn origin_of(&self, key: &str) -> Origin {
        self.source.origin_of(key)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        self.source.path()
    }
}

/// Reads, expands and parses a config file. `origin` says how the path was
/// chosen (flag or env), for the error when the file cannot be read.
pub fn load_file(
    path: &Path,
    origin: Origin,
    env: &Environment,
) -> Result<LoadedFile, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        ConfigErrors(vec![ConfigError::new(
            origin,
            "config",
            format!(
                "cannot read config file {}: {error}; check the path given to --config / HERD_CONFIG",
                path.display()
            ),
        )])
    })?;
    parse_text(path, &text, env)
}

/// Expands and parses config text as if read from `path`.
pub fn parse_text(path: &Path, text: &str, env: &Environment) -> Result<LoadedFile, ConfigErrors> {
    let expanded = expand(text, &|name| env.get(name)).map_err(|error| {
        let line = match &error {
            ExpandError::Unset { line, .. }
            | ExpandError::Malformed { line, .. }
            | ExpandError::Multiline { line, .. } => *line,
        };
        ConfigErrors(vec![ConfigError::new(
            Origin::File {
                path: path.to_path_buf(),
                line,
            },
            "${...}",
            strip_line_prefix(&error.to_string()),
        )])
    })?;
    let source = SourceMap::build(path, &expanded);
    let config: FileConfig = toml::from_str(&expanded).map_err(|error| {
        let line = error
            .span()
            .map(|span| line_of(&expanded, span.start))
            .unwrap_or(0);
        ConfigErrors(vec![ConfigError::new(
            Origin::File {
                path: PathBuf::from(path),
                line,
            },
            "toml",
            error.message().trim().to_string(),
        )])
    })?;
    Ok(LoadedFile { config, source })
}

fn strip_line_prefix(message: &str) -> String {
    match message.split_once(": ") {
        Some((prefix, rest)) if prefix.starts_with("line ") => rest.to_string(),
        _ => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<LoadedFile, ConfigErrors> {
        parse_text(Path::new("herd.toml"), text, &Environment::default())
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_line() {
        let error = parse("[node]\nname = \"n1\"\nwokers = 4\n").unwrap_err();
        let message = error.to_string();
        assert!(message.contains("herd.toml:3"), "{message}");
        assert!(message.contains("unknown field `wokers`"), "{message}");
        assert!(message.contains("`workers`"), "{message}");
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let error = parse("[node]\nname = \"n1\nworkers = 4\n").unwrap_err();
        assert!(error.to_string().contains("herd.toml:2"), "{error}");
    }

    #[test]
    fn type_errors_name_the_line() {
        let error = parse("[node]\n\nworkers = \"many\"\n").unwrap_err();
        assert!(error.to_string().contains("herd.toml:3"), "{error}");
    }

    #[test]
    fn missing_variables_name_the_line() {
        let error = parse("[node]\ncookie = \"${HERD_TEST_UNSET_COOKIE}\"\n").unwrap_err();
        let message = error.to_string();
        assert!(message.contains("herd.toml:2"), "{message}");
        assert!(
            message.contains("HERD_TEST_UNSET_COOKIE is not set"),
            "{message}"
        );
    }
}
