//! The validated configuration a node runs with.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use herd_protocol::defaults::{
    DEFAULT_HTTP_BODY_TIMEOUT_S, DEFAULT_HTTP_HEADER_TIMEOUT_S, DEFAULT_HTTP_MAX_CONNECTIONS,
    DEFAULT_HTTP_REQUEST_TIMEOUT_S, DEFAULT_MAX_ATTEMPTS, DEFAULT_MAX_BATCH_BYTES,
    DEFAULT_MAX_BATCH_TASKS, DEFAULT_MAX_HELD_BYTES, DEFAULT_MAX_PAYLOAD_BYTES,
    DEFAULT_MAX_UNFINISHED_TASKS, DEFAULT_POISON_CRASHES, DEFAULT_RETAIN_FINISHED, DEFAULT_RETRY,
    DEFAULT_TIMEOUT_S,
};
use herd_protocol::messages::membership::Role;
use herd_protocol::{AgentType, NodeName, RetrySpec, Tenant};

use crate::origin::Origin;

/// A value that must never appear in logs or error bodies (the cookie, API
/// tokens). `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself; call only where it is used, never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Everything a node needs to start. Built by [`crate::resolve`], which
/// guarantees every field is within its documented range.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// This node's name.
    pub name: NodeName,
    /// Where the cluster (ractor_cluster) listener binds.
    pub listen: SocketAddr,
    /// The host name or IP peers dial to reach `listen`'s port.
    pub advertise_host: String,
    /// Where the HTTP API binds.
    pub http: SocketAddr,
    /// Seed addresses (`host:port`) to join through.
    pub seeds: Vec<String>,
    /// This node's roles, sorted, without duplicates.
    pub roles: Vec<Role>,
    /// Worker slots (0 when the node has no worker role).
    pub workers: u32,
    /// The shared cluster secret.
    pub cookie: Secret,
    /// Where durable state lives; `None` keeps it in memory.
    pub data_dir: Option<PathBuf>,
    /// How long a draining node lets running tasks finish before handing
    /// the rest back.
    pub drain_grace: Duration,
    /// The config file that was read, if any.
    pub config_file: Option<PathBuf>,
    /// Payload and queue bounds.
    pub limits: Limits,
    /// The HTTP API server's connection cap and timeouts.
    pub http_server: HttpServerSettings,
    /// Defaults for tasks that do not say.
    pub tasks: TaskDefaults,
    /// Membership tuning.
    pub cluster: ClusterSettings,
    /// Agent types this node knows, by name.
    pub agents: BTreeMap<AgentType, AgentConfig>,
    /// Deployment mode, pool bounds and rebalancing.
    pub scaling: ScalingSettings,
    /// LLM providers (`[providers.NAME]`) that `llm` agent types call.
    pub providers: BTreeMap<String, ProviderConfig>,
    /// `[api]` and `--api-token`: who may use the HTTP API.
    pub api: ApiSettings,
    /// `[tenants.NAME]`: tenants with limits of their own.
    pub tenants: BTreeMap<Tenant, TenantLimitSettings>,
    /// TLS for the HTTP API and the cluster transport (`[tls]`).
    pub tls: crate::TlsSettings,
    /// Where each `node.*` value came from.
    pub origins: BTreeMap<&'static str, Origin>,
}

impl NodeConfig {
    /// True if the node has `role`.
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// `advertise_host:listen-port`, the address peers dial.
    pub fn advertise_addr(&self) -> String {
        format!("{}:{}", self.advertise_host, self.listen.port())
    }
}

/// Payload and queue bounds.
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    /// Largest task payload or result, in bytes (at most 7 MiB).
    pub max_payload_bytes: usize,
    /// Unfinished tasks the orchestrator holds before refusing more (429).
    pub max_unfinished_tasks: u64,
    /// Largest encoded size of one submitted batch, in bytes (at most 12 MiB,
    /// so an all-or-none batch fits one cluster frame); larger ones get 413.
    pub max_batch_bytes: usize,
    /// Most tasks in one submitted batch; more get 413.
    pub max_batch_tasks: usize,
    /// Payload and result bytes the task book holds: submissions that would
    /// push unfinished payloads past it get 429, and the oldest finished
    /// tasks are forgotten to stay under it.
    pub max_held_bytes: u64,
    /// Unfinished tasks one tenant may hold (`None`: only the cluster-wide
    /// limit applies).
    pub tenant_max_unfinished_tasks: Option<u64>,
    /// Unfinished payload and result bytes one tenant may hold (`None`: only
    /// the cluster-wide budget applies).
    pub tenant_max_held_bytes: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            max_unfinished_tasks: DEFAULT_MAX_UNFINISHED_TASKS,
            max_batch_bytes: DEFAULT_MAX_BATCH_BYTES,
            max_batch_tasks: DEFAULT_MAX_BATCH_TASKS,
            max_held_bytes: DEFAULT_MAX_HELD_BYTES,
            tenant_max_unfinished_tasks: None,
            tenant_max_held_bytes: None,
        }
    }
}

/// The HTTP API server's bounds (`[http]`): what keeps slow or idle clients
/// from holding a node's file descriptors or handlers.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpServerSettings {
    /// Most connections open at once (before the file-descriptor cap the
    /// server applies at run time).
    pub max_connections: u32,
    /// Time a client has to send a request's line and headers.
    pub header_timeout: Duration,
    /// Longest a request body may go without sending data.
    pub body_timeout: Duration,
    /// Longest from a request's headers to its answer (a `?wait=` long-poll
    /// gets its wait on top).
    pub request_timeout: Duration,
}

impl Default for HttpServerSettings {
    fn default() -> Self {
        HttpServerSettings {
            max_connections: DEFAULT_HTTP_MAX_CONNECTIONS,
            header_timeout: Duration::from_secs(DEFAULT_HTTP_HEADER_TIMEOUT_S.into()),
            body_timeout: Duration::from_secs(DEFAULT_HTTP_BODY_TIMEOUT_S.into()),
            request_timeout: Duration::from_secs(DEFAULT_HTTP_REQUEST_TIMEOUT_S.into()),
        }
    }
}

/// Defaults for tasks that do not set these fields.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskDefaults {
    /// Per-attempt time limit in seconds.
    pub timeout_s: u32,
    /// Attempts before a task is dead.
    pub max_attempts: u32,
    /// Finished tasks kept for queries; the oldest are forgotten beyond this.
    pub retain_finished: usize,
    /// Crashes after which a task is dead as poison.
    pub poison_crashes: u32,
    /// Backoff between attempts.
    pub retry: RetrySpec,
    /// Circuit breaker per agent type.
    pub circuit: CircuitSettings,
}

impl Default for TaskDefaults {
    fn default() -> Self {
        TaskDefaults {
            timeout_s: DEFAULT_TIMEOUT_S,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            retain_finished: DEFAULT_RETAIN_FINISHED,
            poison_crashes: DEFAULT_POISON_CRASHES,
            retry: DEFAULT_RETRY,
            circuit: CircuitSettings::default(),
        }
    }
}

/// When an agent type's circuit opens and how it recovers (seed 000's
/// workflow retry pattern: 5 failures, 60 s recovery, 3 half-open trials).
#[derive(Clone, Debug, PartialEq)]
pub struct CircuitSettings {
    /// Consecutive failed attempts that open the circuit; 0 disables it.
    pub failures: u32,
    /// How long the circuit stays open before trial tasks run.
    pub recovery: Duration,
    /// Trial tasks that must succeed, in a row, to close it again.
    pub half_open_trials: u32,
}

impl Default for CircuitSettings {
    fn default() -> Self {
        CircuitSettings {
            failures: 5,
            recovery: Duration::from_secs(60),
            half_open_trials: 3,
        }
    }
}

/// How silent peers are detected (phi-accrual with a hard silence cap).
#[derive(Clone, Debug, PartialEq)]
pub struct FailureDetectorSettings {
    /// How often each watched peer is sent a heartbeat.
    pub heartbeat_interval: Duration,
    /// Phi above which a peer is declared down (8 ≈ one false alarm in 10^8).
    pub threshold: f64,
    /// Silence tolerated on top of the usual gap.
    pub acceptable_pause: Duration,
    /// Silence after which a peer is down regardless of phi.
    pub max_silence: Duration,
    /// Floor of the gap's standard deviation, so a very regular peer is not
    /// declared down for a small delay.
    pub min_std_dev: Duration,
}

impl Default for FailureDetectorSettings {
    fn default() -> Self {
        FailureDetectorSettings {
            heartbeat_interval: Duration::from_millis(250),
            threshold: 8.0,
            acceptable_pause: Duration::from_millis(1000),
            max_silence: Duration::from_millis(2500),
            min_std_dev: Duration::from_millis(100),
        }
    }
}

/// Membership tuning.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterSettings {
    /// First delay before redialling an unreachable seed or peer.
    pub reconnect_initial: Duration,
    /// Longest delay between redials (the backoff doubles up to this).
    pub reconnect_max: Duration,
    /// Heartbeats and failure detection.
    pub failure_detector: FailureDetectorSettings,
    /// How many peers each node heartbeats: the live members are ordered by
    /// name on a ring and each watches the next `watchers` of them (all
    /// others in a smaller cluster), so each node's idle cost does not grow
    /// with the cluster. A member is declared down once two of its watchers
    /// report it unreachable. Set the same value on every node.
    pub watchers: usize,
    /// How the orchestrator's task book survives its node: one orchestrator
    /// with an optional journal, or a Raft group of every orchestrator-role
    /// node.
    pub replication: ReplicationMode,
    /// With [`ReplicationMode::Raft`]: how many replicas vote (the rest are
    /// learners that keep a hot copy). 1–5.
    pub voters: usize,
    /// With [`ReplicationMode::Raft`]: log entries after which a replica
    /// snapshots its book and compacts its log. Fewer keep less log in
    /// memory and on disk; more snapshot less often.
    pub snapshot_every_entries: u64,
}

/// How the orchestrator's task book is kept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReplicationMode {
    /// One orchestrator (the senior orchestrator-role node; any other is
    /// refused). Its book is journaled with a data directory, else lost with
    /// its node.
    Single,
    /// Every orchestrator-role node holds a replica of the book, kept in step
    /// by Raft; the leader runs the orchestrator, and a follower takes over
    /// when it is lost. The default: one orchestrator-role node is a valid
    /// one-replica group, and each further one joins it.
    #[default]
    Raft,
}

impl ReplicationMode {
    /// Its name in config files and flags.
    pub fn as_str(self) -> &'static str {
        match self {
            ReplicationMode::Single => "single",
            ReplicationMode::Raft => "raft",
        }
    }

    /// The mode named `text`, if any.
    pub fn parse(text: &str) -> Option<ReplicationMode> {
        match text {
            "single" => Some(ReplicationMode::Single),
            "raft" => Some(ReplicationMode::Raft),
            _ => None,
        }
    }
}

/// Log entries between a replica's snapshots unless configured.
pub const DEFAULT_SNAPSHOT_EVERY_ENTRIES: u64 = 20_000;

/// Accepted `cluster.snapshot_every_entries`.
pub const SNAPSHOT_EVERY_ENTRIES_RANGE: std::ops::RangeInclusive<i64> = 100..=10_000_000;

/// Voting replicas unless configured.
pub const DEFAULT_VOTERS: usize = 3;

/// Accepted `cluster.voters`: more than five make every commit wait for more
/// acknowledgements and tolerate failures no one plans for.
pub const VOTERS_RANGE: std::ops::RangeInclusive<i64> = 1..=5;

/// Peers each node watches unless configured: enough that a member stays
/// watched by two independent nodes through several simultaneous failures.
pub const DEFAULT_WATCHERS: usize = 5;

/// Accepted `cluster.watchers`: at least two, so that no member depends on a
/// single watcher (one watcher could declare it down alone).
pub const WATCHERS_RANGE: std::ops::RangeInclusive<i64> = 2..=16;

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            reconnect_initial: Duration::from_millis(100),
            reconnect_max: Duration::from_millis(5_000),
            failure_detector: FailureDetectorSettings::default(),
            watchers: DEFAULT_WATCHERS,
            replication: ReplicationMode::default(),
            voters: DEFAULT_VOTERS,
            snapshot_every_entries: DEFAULT_SNAPSHOT_EVERY_ENTRIES,
        }
    }
}

/// The weight of an agent type that sets none: with every type at the
/// default, slots are shared evenly.
pub(crate) const DEFAULT_AGENT_WEIGHT: f64 = 0.5;

/// One agent type.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentConfig {
    /// Its share of worker slots (0.0–1.0; shares are normalised).
    pub weight: f64,
    /// What runs its tasks.
    pub handler: HandlerConfig,
    /// Per-attempt time limit, overriding `[tasks]`.
    pub timeout_s: Option<u32>,
    /// Attempts, overriding `[tasks]`.
    pub max_attempts: Option<u32>,
    /// Backoff, overriding `[tasks]`.
    pub retry: Option<RetrySpec>,
    /// Circuit breaker, overriding `[tasks]`.
    pub circuit: Option<CircuitSettings>,
    /// Its tasks call an LLM API.
    pub llm: bool,
}

/// How the cluster sizes its pool and shares it (seed 004's deployment modes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeploymentMode {
    /// Fixed slots (`--workers`) and configured weights: nothing moves.
    Static,
    /// 2–5 slots, simple scaling, weights as configured, every decision logged.
    Development,
    /// 5–50 slots, conservative scaling and small weight steps.
    TrustedTester,
    /// 10–1000 slots, the full rebalancing and autoscaling algorithm.
    Production,
}

impl DeploymentMode {
    /// The name used in config and flags.
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentMode::Static => "static",
            DeploymentMode::Development => "development",
            DeploymentMode::TrustedTester => "trusted-tester",
            DeploymentMode::Production => "production",
        }
    }

    /// Parses a mode name.
    pub fn parse(text: &str) -> Option<Self> {
        [
            DeploymentMode::Static,
            DeploymentMode::Development,
            DeploymentMode::TrustedTester,
            DeploymentMode::Production,
        ]
        .into_iter()
        .find(|mode| mode.as_str() == text.trim())
    }
}

/// The longest one attempt may run in every mode but static (seed 004's
/// `worker_timeout_seconds` default).
const SCALED_MODES_WORKER_TIMEOUT: Duration = Duration::from_secs(300);

/// Pool bounds and rebalancing. Each mode is a preset; explicit keys win.
#[derive(Clone, Debug, PartialEq)]
pub struct ScalingSettings {
    /// The preset in use.
    pub mode: DeploymentMode,
    /// Time between decisions.
    pub interval: Duration,
    /// Fewest slots in the cluster.
    pub min_workers: u32,
    /// Most slots in the cluster.
    pub max_workers: u32,
    /// Utilization (busy + backlog over slots) above which the pool grows.
    pub scale_up_threshold: f64,
    /// Utilization below which, for `stabilization`, the pool shrinks.
    pub scale_down_threshold: f64,
    /// How long utilization must stay low before shrinking.
    pub stabilization: Duration,
    /// Longest an attempt may run: caps task time limits (`None` in static
    /// mode: only the one-day task limit applies).
    pub worker_timeout: Option<Duration>,
    /// LLM-calling tasks running at once on one node.
    pub max_concurrent_llm_calls: u32,
    /// Attempts a pool is given per slot: one runs, the others wait in the
    /// pool's backlog and start as soon as the slot frees.
    pub slot_credit: u32,
    /// Most attempts a pool is given per slot: a type whose tasks are short
    /// against the commit latency gets up to this many (see the
    /// orchestrator's slot credit meter); equal to `slot_credit`, the
    /// credit is fixed.
    pub max_slot_credit: u32,
    /// CPU cores budgeted per slot (limits slots per node).
    pub max_cpu_per_worker: Option<f64>,
    /// Memory budgeted per slot in GB (limits slots per node).
    pub max_memory_per_worker_gb: Option<f64>,
    /// Largest relative weight change per step (at most 0.5).
    pub max_weight_step: f64,
    /// Move weights toward demand.
    pub rebalance: bool,
    /// Grow and shrink the pool.
    pub autoscale: bool,
}

impl ScalingSettings {
    /// The defaults of a deployment mode.
    pub fn preset(mode: DeploymentMode) -> Self {
        let base = ScalingSettings {
            mode,
            interval: Duration::from_secs(1),
            min_workers: 1,
            max_workers: 1000,
            scale_up_threshold: 0.8,
            scale_down_threshold: 0.2,
            stabilization: Duration::from_secs(30),
            worker_timeout: None,
            max_concurrent_llm_calls: 10,
            slot_credit: herd_protocol::defaults::DEFAULT_SLOT_CREDIT,
            max_slot_credit: herd_protocol::defaults::DEFAULT_MAX_SLOT_CREDIT,
            max_cpu_per_worker: None,
            max_memory_per_worker_gb: None,
            max_weight_step: 0.5,
            rebalance: false,
            autoscale: false,
        };
        match mode {
            DeploymentMode::Static => base,
            DeploymentMode::Development => ScalingSettings {
                worker_timeout: Some(SCALED_MODES_WORKER_TIMEOUT),
                min_workers: 2,
                max_workers: 5,
                stabilization: Duration::from_secs(10),
                max_concurrent_llm_calls: 5,
                autoscale: true,
                ..base
            },
            DeploymentMode::TrustedTester => ScalingSettings {
                worker_timeout: Some(SCALED_MODES_WORKER_TIMEOUT),
                min_workers: 5,
                max_workers: 50,
                scale_up_threshold: 0.85,
                scale_down_threshold: 0.3,
                stabilization: Duration::from_secs(120),
                max_concurrent_llm_calls: 20,
                max_weight_step: 0.25,
                rebalance: true,
                autoscale: true,
                ..base
            },
            DeploymentMode::Production => ScalingSettings {
                worker_timeout: Some(SCALED_MODES_WORKER_TIMEOUT),
                min_workers: 10,
                max_workers: 1000,
                scale_up_threshold: 0.75,
                scale_down_threshold: 0.25,
                stabilization: Duration::from_secs(60),
                max_concurrent_llm_calls: 100,
                rebalance: true,
                autoscale: true,
                ..base
            },
        }
    }
}

impl Default for ScalingSettings {
    fn default() -> Self {
        ScalingSettings::preset(DeploymentMode::Static)
    }
}
/// The built-in handler an agent type uses.
#[derive(Clone, Debug, PartialEq)]
pub enum HandlerConfig {
    /// Result = payload.
    Echo,
    /// Payload `{"ms": N}`; sleeps N ms; result `{"slept_ms": N}`.
    Sleep,
    /// Runs a program: payload on stdin, JSON result on stdout.
    Exec(ExecHandlerConfig),
    /// POSTs the payload to a URL; the response body is the result.
    Http(HttpHandlerConfig),
    /// Calls an OpenAI-compatible chat-completions API through a provider.
    Llm(LlmHandlerConfig),
    /// Provided by the embedding program (registered in code).
    Custom,
}

impl HandlerConfig {
    /// The handler's name as written in config.
    pub fn kind(&self) -> &'static str {
        match self {
            HandlerConfig::Echo => "echo",
            HandlerConfig::Sleep => "sleep",
            HandlerConfig::Exec(_) => "exec",
            HandlerConfig::Http(_) => "http",
            HandlerConfig::Llm(_) => "llm",
            HandlerConfig::Custom => "custom",
        }
    }
}

/// `exec` handler settings.
#[derive(Clone, Debug, PartialEq)]
pub struct ExecHandlerConfig {
    /// Program and arguments.
    pub command: Vec<String>,
    /// Extra environment variables for the program, set on top of what it
    /// inherits.
    pub env: BTreeMap<String, String>,
    /// The node's environment variables passed through to the program,
    /// sorted and without duplicates. The program inherits nothing else of
    /// the node's environment but a fixed baseline (`PATH`, `HOME`, locale,
    /// `TZ`, `TMPDIR`), so that the node's secrets never reach it. Never
    /// names a `HERD_*` variable: those configure the node and hold its
    /// secrets (`HERD_COOKIE`), and validation refuses them.
    pub pass_env: Vec<String>,
    /// Working directory.
    pub working_dir: Option<PathBuf>,
    /// Exit codes meaning "retrying cannot help" (others are retried).
    pub fatal_exit_codes: Vec<i32>,
}

/// `http` handler settings.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpHandlerConfig {
    /// The URL to POST to.
    pub url: String,
    /// Extra request headers (values may be secrets, so they are never logged).
    pub headers: BTreeMap<String, Secret>,
}

/// `llm` handler settings of one agent type.
#[derive(Clone, Debug, PartialEq)]
pub struct LlmHandlerConfig {
    /// The `[providers.NAME]` its calls go to first.
    pub provider: String,
    /// Providers tried, in order, when the one before has an open circuit
    /// or no budget within its `max_wait`.
    pub fallback: Vec<String>,
    /// Model name; `None` uses the provider's `model`.
    pub model: Option<String>,
    /// Sent as the first (system) message.
    pub system_prompt: Option<String>,
    /// Sampling temperature (0.0–2.0).
    pub temperature: Option<f64>,
    /// Most tokens of one completion; also the token estimate the budget
    /// reserves before the provider says what a call used.
    pub max_tokens: Option<u32>,
}

impl LlmHandlerConfig {
    /// The providers in the order calls try them: `provider`, then `fallback`.
    pub fn chain(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.provider.as_str()).chain(self.fallback.iter().map(String::as_str))
    }
}

/// One `[providers.NAME]`: where an OpenAI-compatible API lives and the
/// limits the provider enforces. Limits hold for the whole cluster: the
/// orchestrator grants calls so that all nodes together stay within them.
#[derive(Clone, Debug, PartialEq)]
pub struct ProviderConfig {
    /// Base URL of the API, e.g. `https://api.openai.com/v1`; calls go to
    /// `{base_url}/chat/completions`.
    pub base_url: String,
    /// Sent as `Authorization: Bearer …`; never logged or returned.
    pub api_key: Option<Secret>,
    /// Default model for agent types that name none.
    pub model: Option<String>,
    /// Requests started in any 60 s window, cluster-wide.
    pub requests_per_minute: Option<u32>,
    /// Tokens (prompt + completion) used in any 60 s window, cluster-wide.
    pub tokens_per_minute: Option<u64>,
    /// Calls in flight at once, cluster-wide.
    pub max_concurrent: Option<u32>,
    /// How long a task may wait for this provider's budget before its call
    /// goes to the next provider of its agent type's `fallback` list.
    pub max_wait: Duration,
    /// When this provider's circuit opens (consecutive 5xx, timeouts,
    /// unreachable) and how it recovers.
    pub circuit: CircuitSettings,
}

/// The agent types a node offers when its config declares none.
pub fn default_agents() -> BTreeMap<AgentType, AgentConfig> {
    [
        ("echo", HandlerConfig::Echo),
        ("sleep", HandlerConfig::Sleep),
    ]
    .into_iter()
    .map(|(name, handler)| {
        (
            AgentType::new(name),
            AgentConfig {
                weight: DEFAULT_AGENT_WEIGHT,
                handler,
                timeout_s: None,
                max_attempts: None,
                retry: None,
                circuit: None,
                llm: false,
            },
        )
    })
    .collect()
}

/// What an API token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ApiRole {
    /// Read only: its tenant's tasks and dead letters, the cluster summary.
    Read,
    /// Read, plus submit, cancel and retry its own tenant's tasks.
    Submit,
    /// Everything, for every tenant: drains, weights, scaling.
    Admin,
}

impl ApiRole {
    /// The name used in config files and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiRole::Read => "read",
            ApiRole::Submit => "submit",
            ApiRole::Admin => "admin",
        }
    }

    /// Parses `read`, `submit` or `admin`.
    pub fn parse(text: &str) -> Option<ApiRole> {
        match text {
            "read" => Some(ApiRole::Read),
            "submit" => Some(ApiRole::Submit),
            "admin" => Some(ApiRole::Admin),
            _ => None,
        }
    }
}

/// How a token is known: its SHA-256 digest (`[[api.tokens]]`), or the
/// token itself (`--api-token`), which the node digests at start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenSecret {
    /// The SHA-256 digest of the token.
    Sha256([u8; 32]),
    /// The token.
    Plain(Secret),
}

/// One accepted API token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiToken {
    /// A label for logs and metrics (never the token).
    pub name: String,
    /// The token, or its digest.
    pub secret: TokenSecret,
    /// What it may do.
    pub role: ApiRole,
    /// Whose tasks it submits and sees.
    pub tenant: Tenant,
}

/// Who may use the HTTP API (`[api]`, `--api-token`, `--insecure-no-auth`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiSettings {
    /// Accepted tokens; empty means the API is open (allowed only on a
    /// loopback address, or with `insecure_no_auth`).
    pub tokens: Vec<ApiToken>,
    /// `/metrics` answers without a token.
    pub open_metrics: bool,
    /// `/health` answers without a token.
    pub open_health: bool,
    /// The operator accepted an open API on a non-loopback address.
    pub insecure_no_auth: bool,
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            tokens: Vec::new(),
            open_metrics: true,
            open_health: true,
            insecure_no_auth: false,
        }
    }
}

impl ApiSettings {
    /// True when requests must carry a token.
    pub fn requires_token(&self) -> bool {
        !self.tokens.is_empty()
    }
}

/// Limits of one tenant (`[tenants.NAME]`); `None` inherits
/// `limits.tenant_*`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TenantLimitSettings {
    /// Unfinished tasks.
    pub max_unfinished_tasks: Option<u64>,
    /// Unfinished payload and result bytes.
    pub max_held_bytes: Option<u64>,
}
