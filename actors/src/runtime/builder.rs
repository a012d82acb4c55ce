//! Starting a node from code.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use herd_config::{
    AgentConfig, ConfigErrors, Environment, HandlerConfig, NodeConfig, Overrides, ReplicationMode,
};
use herd_protocol::Mailbox;
use herd_protocol::messages::groups;
use herd_protocol::messages::membership::Role;
use herd_protocol::{AgentType, Incarnation, MemberId, UnixMillis};
use ractor::{Actor, ActorRef};
use tokio::sync::{mpsc, oneshot, watch};

use super::fatal::NodeEvent;
use super::handle::NodeHandle;
use super::supervisor::{NodeSupervisor, SupervisorArgs, SupervisorMsg};
use crate::handlers::{HandlerRegistry, RegistryError, TaskHandler};
use crate::membership::{ClusterView, MemberInfo, MembershipLocal, MembershipMsg};
use crate::orchestrator::{AgentTypeEntry, LlmRoute};
use crate::pool::{PoolLocal, PoolMsg};
use crate::replica::local_replica::LocalReplica;
use crate::replica::network::ClusterDirectory;
use crate::replica::types::ReplicaNode;
use crate::task_book::{RetryPolicy, TaskBook, TaskBookSettings, TenantLimit, TenantLimits};

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigErrors),
    /// A configured handler could not be built.
    #[error(transparent)]
    Handlers(#[from] RegistryError),
    /// The orchestrator's data directory cannot be used by this release.
    #[error(transparent)]
    Journal(#[from] crate::journal::StoreError),
    /// The task book replica could not start (raft replication).
    #[error(transparent)]
    Replica(#[from] crate::replica::local_replica::ReplicaStartError),
    /// With raft replication, the data directory holds a journal of a
    /// single orchestrator.
    #[error(
        "{path} is the journal of a single orchestrator, and this node was started with raft replication (--replication raft), which keeps the task book in replica.redb; start the node with --replication single to use that journal (let its tasks finish, or export them with `herd tasks`), or move the file away to start an empty replica"
    )]
    JournalInRaftMode {
        /// The journal file.
        path: std::path::PathBuf,
    },
    /// An actor failed to start (e.g. the cluster port is in use).
    #[error("the node could not start: {0}")]
    Spawn(String),
}

impl StartError {
    /// True when an operator fixes it in the configuration or the data
    /// directory (the CLI exits 2), rather than a failure at run time.
    pub fn is_configuration(&self) -> bool {
        match self {
            StartError::Config(_) | StartError::Handlers(_) => true,
            StartError::Journal(error) => error.is_configuration(),
            StartError::JournalInRaftMode { .. } => true,
            StartError::Replica(crate::replica::local_replica::ReplicaStartError::File(_)) => true,
            StartError::Replica(_) | StartError::Spawn(_) => false,
        }
    }
}

/// Configures a node started from code. Values set here act like command-line
/// flags: they override environment variables (only read if
/// [`HerdNodeBuilder::with_process_env`] is called) and the config file.
#[derive(Default)]
pub struct HerdNodeBuilder {
    overrides: Overrides,
    env: Environment,
    config: Option<NodeConfig>,
    handlers: BTreeMap<AgentType, (Option<f64>, Arc<dyn TaskHandler>)>,
}

impl HerdNodeBuilder {
    /// Node name (2–64 lowercase letters, digits, hyphens).
    pub fn name(mut self, name: &str) -> Self {
        self.overrides.name = Some(name.to_string());
        self
    }

    /// Shared cluster secret.
    pub fn cookie(mut self, cookie: &str) -> Self {
        self.overrides.cookie = Some(cookie.to_string());
        self
    }

    /// Cluster listen address (`IP:PORT`).
    pub fn listen(mut self, address: &str) -> Self {
        self.overrides.listen = Some(address.to_string());
        self
    }

    /// Host peers dial to reach this node.
    pub fn advertise(mut self, host: &str) -> Self {
        self.overrides.advertise = Some(host.to_string());
        self
    }

    /// Adds a seed address (`HOST:PORT`).
    pub fn seed(mut self, address: &str) -> Self {
        self.overrides
            .seeds
            .get_or_insert_with(Vec::new)
            .push(address.to_string());
        self
    }

    /// Roles this node takes.
    pub fn roles(mut self, roles: &[Role]) -> Self {
        self.overrides.roles = Some(
            roles
                .iter()
                .map(|role| role.as_str())
                .collect::<Vec<_>>()
                .join(","),
        );
        self
    }

    /// Worker slots.
    pub fn workers(mut self, workers: u32) -> Self {
        self.overrides.workers = Some(workers.to_string());
        self
    }

    /// Reads a TOML config file.
    pub fn config_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.overrides.config = Some(path.into());
        self
    }

    /// Where durable state lives.
    pub fn data_dir(mut self, path: impl Into<PathBuf>) -> Self {
        self.overrides.data_dir = Some(path.into());
        self
    }

    /// Runs the cluster transport over mutual TLS (like `--cluster-tls-cert`,
    /// `--cluster-tls-key`, `--cluster-tls-ca`): PEM files of this node's
    /// certificate, its key, and the cluster CA. For HTTPS on an embedded
    /// API, see [`crate::tls::api_server_config`].
    pub fn cluster_tls(
        mut self,
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
        ca: impl Into<PathBuf>,
    ) -> Self {
        self.overrides.tls.cluster_cert = Some(cert.into());
        self.overrides.tls.cluster_key = Some(key.into());
        self.overrides.tls.cluster_ca = Some(ca.into());
        self
    }

    /// Lets `HERD_*` variables of this process fill settings not set here.
    pub fn with_process_env(mut self) -> Self {
        self.env = Environment::from_process();
        self
    }

    /// Uses an already-resolved configuration (the other setters are ignored).
    pub fn config(mut self, config: NodeConfig) -> Self {
        self.config = Some(config);
        self
    }

    /// Registers the handler for an agent type. A type the config does not
    /// declare is added with weight 0.5.
    pub fn handler(mut self, agent_type: &str, handler: impl TaskHandler) -> Self {
        self.handlers
            .insert(AgentType::new(agent_type), (None, Arc::new(handler)));
        self
    }

    /// Registers a handler and the type's weight.
    pub fn handler_with_weight(
        mut self,
        agent_type: &str,
        weight: f64,
        handler: impl TaskHandler,
    ) -> Self {
        self.handlers.insert(
            AgentType::new(agent_type),
            (Some(weight), Arc::new(handler)),
        );
        self
    }

    /// Validates the configuration and starts the node.
    pub async fn start(self) -> Result<HerdNode, StartError> {
        let mut config = match self.config {
            Some(config) => config,
            None => herd_config::resolve(&self.overrides, &self.env)?,
        };
        let mut custom = BTreeMap::new();
        for (agent_type, (weight, handler)) in self.handlers {
            let entry = config
                .agents
                .entry(agent_type.clone())
                .or_insert(AgentConfig {
                    weight: 0.5,
                    handler: HandlerConfig::Custom,
                    timeout_s: None,
                    max_attempts: None,
                    retry: None,
                    circuit: None,
                    llm: false,
                });
            entry.handler = HandlerConfig::Custom;
            if let Some(weight) = weight {
                entry.weight = weight.clamp(0.0, 1.0);
            }
            custom.insert(agent_type, handler);
        }
        HerdNode::start(config, custom).await
    }
}

/// A running node. Dropping it does not stop the node; call
/// [`HerdNode::shutdown`].
///
/// A process runs one node: ractor's process groups and registry, which the
/// node's actors find each other through, are global to the process. Start
/// one `HerdNode` per process (another node needs another process).
pub struct HerdNode {
    handle: NodeHandle,
    supervisor: ActorRef<SupervisorMsg>,
    join: Option<ractor::concurrency::JoinHandle<()>>,
    events: mpsc::UnboundedReceiver<NodeEvent>,
}

impl HerdNode {
    /// A builder for a node started from code.
    pub fn builder() -> HerdNodeBuilder {
        HerdNodeBuilder::default()
    }

    /// Starts a node with a resolved configuration and code-registered
    /// handlers for `handler = "custom"` agent types.
    pub async fn start(
        config: NodeConfig,
        custom: BTreeMap<AgentType, Arc<dyn TaskHandler>>,
    ) -> Result<HerdNode, StartError> {
        // Only a pool runs handlers. A node without the worker role builds
        // none, so its config may declare `custom` types whose handlers are
        // registered on the nodes that run them (e.g. a service that embeds
        // herd and joins this cluster).
        let (provider_calls, provider_call_receiver) =
            mpsc::channel(super::provider_feedback::PROVIDER_CALL_BUFFER);
        let handlers = if config.has_role(Role::Worker) {
            HandlerRegistry::from_config(
                &config,
                custom,
                crate::handlers::ProviderCallSink::new(provider_calls),
            )?
        } else {
            HandlerRegistry::default()
        };
        let handlers = Arc::new(handlers);
        // Loaded before anything listens: a bad certificate is a
        // configuration error, not a node that cannot reach its peers.
        crate::tls::install_default_crypto_provider();
        let cluster_tls = match &config.tls.cluster {
            Some(files) => Some(
                crate::tls::ClusterTls::load(files, &config.advertise_host)
                    .map_err(ConfigErrors::from)?,
            ),
            None => None,
        };
        let mut config = config;
        let pool_capacity = {
            let (cores, memory_gb) = crate::pool::host_resources();
            let scaling = &config.scaling;
            crate::scaling::node_capacity(
                cores,
                memory_gb,
                scaling.max_cpu_per_worker,
                scaling.max_memory_per_worker_gb,
                scaling.max_workers,
            )
        };
        if config.workers > pool_capacity {
            tracing::warn!(
                workers = config.workers,
                capacity = pool_capacity,
                "--workers is more than this node may host (scaling.max_cpu_per_worker, scaling.max_memory_per_worker_gb, scaling.max_workers); starting {pool_capacity} slots"
            );
            config.workers = pool_capacity;
        }
        let config = Arc::new(config);
        let now = UnixMillis::now();
        let member = MemberId {
            name: config.name.clone(),
            incarnation: Incarnation(now.0),
        };
        let raft_replication = config.cluster.replication == ReplicationMode::Raft
            && config.has_role(Role::Orchestrator);
        let orchestrator_since =
            (config.has_role(Role::Orchestrator) && !raft_replication).then_some(now);
        let local = MemberInfo {
            member: member.clone(),
            state: herd_protocol::messages::orchestrator::MemberState::Up,
            roles: config.roles.clone(),
            cluster_addr: config.advertise_addr(),
            http_addr: Some(config.http.to_string()),
            workers: config.workers,
            orchestrator_since,
            replica_id: None,
            replica_group: None,
            session: None,
            state_since: now,
        };
        let (view_tx, view_rx) = watch::channel(ClusterView::alone(local));
        super::provider_feedback::forward_provider_calls(
            provider_call_receiver,
            member.clone(),
            view_rx.clone(),
        );
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let agent_types: BTreeMap<AgentType, AgentTypeEntry> = config
            .agents
            .iter()
            .map(|(agent_type, agent)| {
                let entry = AgentTypeEntry {
                    weight: agent.weight,
                    timeout_s: agent.timeout_s,
                    max_attempts: agent.max_attempts,
                    retry: agent.retry.as_ref().map(RetryPolicy::from),
                    circuit: agent
                        .circuit
                        .clone()
                        .unwrap_or_else(|| config.tasks.circuit.clone()),
                    llm: agent.llm,
                    llm_route: match &agent.handler {
                        HandlerConfig::Llm(llm) => Some(LlmRoute {
                            chain: llm.chain().map(str::to_string).collect(),
                            max_tokens: llm.max_tokens,
                        }),
                        _ => None,
                    },
                };
                (agent_type.clone(), entry)
            })
            .collect();
        let book_settings = TaskBookSettings {
            default_timeout_s: config.tasks.timeout_s,
            default_max_attempts: config.tasks.max_attempts,
            retain_finished: config.tasks.retain_finished,
            max_unfinished: config.limits.max_unfinished_tasks,
            max_held_bytes: config.limits.max_held_bytes,
            max_payload_bytes: config.limits.max_payload_bytes,
            retry: RetryPolicy::from(&config.tasks.retry),
            poison_crashes: config.tasks.poison_crashes,
            max_timeout_s: config
                .scaling
                .worker_timeout
                .map_or(herd_protocol::limits::MAX_TIMEOUT_S, |t| t.as_secs() as u32),
            tenant_limits: tenant_limits(&config),
        };
        let replica = if raft_replication {
            if let Some(dir) = &config.data_dir {
                let journal = dir.join(crate::journal::FILE_NAME);
                if journal.exists() {
                    return Err(StartError::JournalInRaftMode { path: journal });
                }
            }
            let template = TaskBook::new(
                book_settings.clone(),
                agent_types
                    .iter()
                    .map(|(agent_type, entry): (&AgentType, &AgentTypeEntry)| {
                        (agent_type.clone(), entry.book_settings())
                    }),
            );
            let replica = LocalReplica::start(
                ReplicaNode {
                    name: config.name.to_string(),
                    cluster_addr: config.advertise_addr(),
                },
                config.data_dir.as_deref(),
                template,
                ClusterDirectory::new(view_rx.clone()),
                true,
                config.cluster.snapshot_every_entries,
            )
            .await?;
            view_tx.send_modify(|view| view.local.replica_id = Some(replica.id()));
            Some(replica)
        } else {
            None
        };
        let args = SupervisorArgs {
            config: config.clone(),
            member,
            orchestrator_since,
            handlers,
            agent_types,
            book_settings,
            view_tx,
            events: events_tx,
            data_dir: config.data_dir.clone(),
            drain_grace: config.drain_grace,
            pool_capacity,
            cluster_tls,
            replica,
        };
        if config.has_role(Role::Orchestrator)
            && !raft_replication
            && let Some(dir) = &config.data_dir
        {
            // Refuse a data directory this release cannot read before joining
            // the cluster (and migrate one from before versioned records).
            drop(crate::journal::JournalStore::open(dir)?);
        }
        let (supervisor, join) = Actor::spawn(None, NodeSupervisor, args)
            .await
            .map_err(|error| StartError::Spawn(error.to_string()))?;
        Ok(HerdNode {
            handle: NodeHandle::new(view_rx, config),
            supervisor,
            join: Some(join),
            events: events_rx,
        })
    }

    /// A handle to submit and query tasks; cheap to clone.
    pub fn handle(&self) -> NodeHandle {
        self.handle.clone()
    }

    /// Resolves when the node must stop on its own: refused by the cluster
    /// (for example as a second orchestrator), or drained on request.
    pub async fn stopped(&mut self) -> NodeEvent {
        match self.events.recv().await {
            Some(event) => event,
            None => std::future::pending().await,
        }
    }

    /// Drains this node's pool (no new work; running tasks finish within
    /// `grace`; the rest is handed back to the orchestrator), tells the
    /// cluster this node is leaving, then stops it. What SIGTERM does.
    pub async fn drain_and_stop(self, grace: Duration) {
        if let Some(pool) = local_actor::<PoolMsg>(groups::POOLS) {
            let (done, drained) = oneshot::channel();
            if pool
                .cast(Mailbox::Local(PoolLocal::Drain { grace, done }))
                .is_ok()
            {
                // The grace period plus time to hand back and be acknowledged.
                let _ = tokio::time::timeout(grace + Duration::from_secs(10), drained).await;
            }
        }
        if let Some(membership) = local_actor::<MembershipMsg>(groups::MEMBERSHIP) {
            let (done, left) = oneshot::channel();
            if membership
                .cast(Mailbox::Local(MembershipLocal::Leave(done)))
                .is_ok()
            {
                let _ = tokio::time::timeout(Duration::from_secs(2), left).await;
            }
        }
        self.shutdown().await;
    }

    /// Stops every actor of this node and waits for them (at most 10 s).
    pub async fn shutdown(mut self) {
        self.supervisor.stop(Some("shutdown".to_string()));
        if let Some(join) = self.join.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), join).await;
        }
    }
}

/// This process's member of a process group (one node per process).
fn local_actor<M: ractor::Message>(group: &str) -> Option<ActorRef<M>> {
    ractor::pg::get_local_members(&group.to_string())
        .into_iter()
        .next()
        .map(ActorRef::from)
}

/// The task book's per-tenant limits: `[tenants.NAME]` key by key over
/// `limits.tenant_*`; unset means only the cluster-wide limit applies.
fn tenant_limits(config: &NodeConfig) -> TenantLimits {
    let default = TenantLimit {
        max_unfinished: config
            .limits
            .tenant_max_unfinished_tasks
            .unwrap_or(u64::MAX),
        max_held_bytes: config.limits.tenant_max_held_bytes.unwrap_or(u64::MAX),
    };
    TenantLimits {
        default,
        by_tenant: config
            .tenants
            .iter()
            .map(|(tenant, limits)| {
                let limit = TenantLimit {
                    max_unfinished: limits
                        .max_unfinished_tasks
                        .unwrap_or(default.max_unfinished),
                    max_held_bytes: limits.max_held_bytes.unwrap_or(default.max_held_bytes),
                };
                (tenant.clone(), limit)
            })
            .collect(),
    }
}
