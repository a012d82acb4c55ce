//! The root of a node's supervision tree.
//!
//! Starts membership first (every other component reads its view), then the
//! orchestrator and worker pool according to the node's roles. A failed
//! orchestrator or pool is restarted (one-for-one), at most
//! [`MAX_RESTARTS`] times per [`RESTART_PERIOD`]; beyond that, or if
//! membership fails, the node stops with a [`FatalError`] so that its
//! service manager can restart the whole process.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use herd_config::NodeConfig;
use herd_protocol::messages::membership::{Greeting, Role};
use herd_protocol::{MemberId, UnixMillis};
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SupervisionEvent};
use std::path::PathBuf;
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use super::fatal::{FatalError, NodeEvent};
use crate::handlers::HandlerRegistry;
use crate::membership::{ClusterView, Membership, MembershipArgs};
use crate::orchestrator::{AgentTypeEntry, Orchestrator, OrchestratorArgs};
use crate::pool::{PoolArgs, WorkerPool};
use crate::task_book::TaskBookSettings;

/// Restarts allowed per component within [`RESTART_PERIOD`].
pub const MAX_RESTARTS: usize = 3;
/// Window for [`MAX_RESTARTS`].
pub const RESTART_PERIOD: Duration = Duration::from_secs(60);

/// Messages to the supervisor.
#[derive(Debug)]
pub enum SupervisorMsg {}

impl ractor::Message for SupervisorMsg {}

/// Everything the supervision tree needs.
pub struct SupervisorArgs {
    /// The node's configuration.
    pub config: Arc<NodeConfig>,
    /// This node's identity.
    pub member: MemberId,
    /// When its orchestrator (if any) started.
    pub orchestrator_since: Option<UnixMillis>,
    /// Handlers by agent type.
    pub handlers: Arc<HandlerRegistry>,
    /// Agent types the orchestrator schedules.
    pub agent_types: std::collections::BTreeMap<herd_protocol::AgentType, AgentTypeEntry>,
    /// Task book limits.
    pub book_settings: TaskBookSettings,
    /// Where the view is published.
    pub view_tx: watch::Sender<ClusterView>,
    /// Where fatal errors and completed drains are reported.
    pub events: mpsc::UnboundedSender<NodeEvent>,
    /// Where the orchestrator journals (orchestrator role only).
    pub data_dir: Option<PathBuf>,
    /// How long a draining pool lets running tasks finish.
    pub drain_grace: std::time::Duration,
    /// Most slots this node may host.
    pub pool_capacity: u32,
    /// Mutual TLS for the cluster transport, loaded at startup.
    pub cluster_tls: Option<crate::tls::ClusterTls>,
}

/// The supervisor actor.
pub struct NodeSupervisor;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Component {
    Membership,
    Orchestrator,
    Pool,
}

impl Component {
    fn name(self) -> &'static str {
        match self {
            Component::Membership => "membership",
            Component::Orchestrator => "orchestrator",
            Component::Pool => "worker pool",
        }
    }
}

pub struct SupervisorState {
    args: SupervisorArgs,
    children: Vec<(Component, ActorCell, VecDeque<Instant>)>,
}

impl Actor for NodeSupervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: SupervisorArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut state = SupervisorState {
            args,
            children: Vec::new(),
        };
        state.start(&myself, Component::Membership).await?;
        if state.args.config.has_role(Role::Orchestrator) {
            state.start(&myself, Component::Orchestrator).await?;
        }
        if state.args.config.has_role(Role::Worker) {
            state.start(&myself, Component::Pool).await?;
        }
        info!(member = %state.args.member, roles = ?state.args.config.roles, "node started");
        Ok(state)
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // Stop dependents before membership, so peers see a clean leave.
        for (_, cell, _) in state.children.iter().rev() {
            cell.stop(Some("node stopping".to_string()));
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, reason) = match event {
            SupervisionEvent::ActorFailed(cell, error) => (cell, error.to_string()),
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                (cell, reason.unwrap_or_else(|| "stopped".to_string()))
            }
            _ => return Ok(()),
        };
        let Some(index) = state
            .children
            .iter()
            .position(|(_, child, _)| child.get_id() == cell.get_id())
        else {
            return Ok(());
        };
        let (component, _, mut history) = state.children.remove(index);
        let now = Instant::now();
        history.retain(|at| now.duration_since(*at) < RESTART_PERIOD);
        history.push_back(now);
        if component == Component::Membership || history.len() > MAX_RESTARTS {
            error!(component = component.name(), %reason, "component failed; stopping the node");
            let _ = state
                .args
                .events
                .send(NodeEvent::Fatal(FatalError::ComponentFailed {
                    component: component.name().to_string(),
                    reason,
                }));
            myself.stop(Some("component failed".to_string()));
            return Ok(());
        }
        warn!(component = component.name(), %reason, restarts = history.len(), "component failed; restarting it");
        match state.start(&myself, component).await {
            Ok(()) => {
                if let Some(entry) = state.children.last_mut() {
                    entry.2 = history;
                }
            }
            Err(error) => {
                let _ = state
                    .args
                    .events
                    .send(NodeEvent::Fatal(FatalError::ComponentFailed {
                        component: component.name().to_string(),
                        reason: error.to_string(),
                    }));
                myself.stop(Some("component failed".to_string()));
            }
        }
        Ok(())
    }
}

impl SupervisorState {
    async fn start(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        component: Component,
    ) -> Result<(), ActorProcessingErr> {
        let args = &self.args;
        let view_rx = args.view_tx.subscribe();
        let cell = match component {
            Component::Membership => {
                let greeting = Greeting {
                    member: args.member.clone(),
                    protocol_version: herd_protocol::PROTOCOL_VERSION,
                    herd_version: herd_protocol::HERD_VERSION.to_string(),
                    roles: args.config.roles.clone(),
                    cluster_addr: args.config.advertise_addr(),
                    http_addr: Some(args.config.http.to_string()),
                    workers: args.config.workers,
                    orchestrator_since: args.orchestrator_since,
                };
                let membership_args = MembershipArgs {
                    config: args.config.clone(),
                    greeting,
                    view: args.view_tx.clone(),
                    events: args.events.clone(),
                    cluster_tls: args.cluster_tls.clone(),
                };
                Actor::spawn_linked(None, Membership, membership_args, myself.get_cell())
                    .await?
                    .0
                    .get_cell()
            }
            Component::Orchestrator => {
                let orchestrator_args = OrchestratorArgs {
                    settings: args.book_settings.clone(),
                    agent_types: args.agent_types.clone(),
                    view: view_rx,
                    data_dir: args.data_dir.clone(),
                    drain_grace: args.drain_grace,
                    scaling: args.config.scaling.clone(),
                    providers: args.config.providers.clone(),
                };
                Actor::spawn_linked(None, Orchestrator, orchestrator_args, myself.get_cell())
                    .await?
                    .0
                    .get_cell()
            }
            Component::Pool => {
                let pool_args = PoolArgs {
                    workers: args.config.workers,
                    handlers: args.handlers.clone(),
                    max_result_bytes: args.config.limits.max_payload_bytes,
                    view: view_rx,
                    events: args.events.clone(),
                    capacity: args.pool_capacity,
                    stats_interval: args.config.scaling.interval,
                };
                Actor::spawn_linked(None, WorkerPool, pool_args, myself.get_cell())
                    .await?
                    .0
                    .get_cell()
            }
        };
        self.children.push((component, cell, VecDeque::new()));
        Ok(())
    }
}
