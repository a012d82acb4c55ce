//! The root of a node's supervision tree.
//!
//! Starts membership first (every other component reads its view), then the
//! orchestrator, worker pool and monitor according to the node's roles. A
//! failed component is restarted (one-for-one) within the restart intensity
//! of [`ComponentHistory`]; beyond that, or if membership fails, the node
//! stops with a [`FatalError`] so that its service manager can restart the
//! whole process.
//!
//! The supervisor is reachable across the cluster (process group
//! `herd.supervisors`): a monitor on another node may ask it to restart this
//! node's pool when the pool is stuck, and any node's API asks it for its
//! record of restarts and failures. Only cookie-authenticated peers reach it,
//! and a requested restart is refused (the monitor reports instead) when it
//! would exceed the restart intensity.

use std::sync::Arc;
use std::time::Instant;

use herd_config::NodeConfig;
use herd_protocol::messages::groups;
use herd_protocol::messages::membership::{Greeting, Role};
use herd_protocol::messages::supervision::{
    ComponentKind, NodeSupervision, RestartOutcome, SupervisorCast, SupervisorReply,
    SupervisorRequest,
};
use herd_protocol::{Mailbox, MemberId, Protocol, UnixMillis};
use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use std::path::PathBuf;
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use super::component_history::{AfterFailure, ComponentHistory};
use super::fatal::{FatalError, NodeEvent};
use crate::handlers::HandlerRegistry;
use crate::membership::{ClusterView, Membership, MembershipArgs};
use crate::monitor::{Monitor, MonitorArgs};
use crate::orchestrator::{AgentTypeEntry, Orchestrator, OrchestratorArgs};
use crate::pool::{PoolArgs, WorkerPool};
use crate::task_book::TaskBookSettings;

/// The supervisor's message vocabulary.
pub struct SupervisorProtocol;

impl Protocol for SupervisorProtocol {
    const NAME: &'static str = "supervisor";
    type Cast = SupervisorCast;
    type Request = SupervisorRequest;
    type Reply = SupervisorReply;
    type Local = SupervisorLocal;
}

/// The supervisor takes no local messages (its children reach it through
/// supervision events).
#[derive(Debug)]
pub enum SupervisorLocal {}

/// Messages to the supervisor.
pub type SupervisorMsg = Mailbox<SupervisorProtocol>;

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

/// One supervised component: its current actor (if running) and history.
struct Child {
    cell: Option<ActorCell>,
    history: ComponentHistory,
}

pub struct SupervisorState {
    args: SupervisorArgs,
    /// In start order; entries stay after a failure so their record remains.
    children: Vec<Child>,
    /// The pool actor this supervisor killed at a monitor's request, and the
    /// reason to record when its termination arrives (ractor reports a kill
    /// only as "killed").
    requested_kill: Option<(ActorId, String)>,
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
            requested_kill: None,
        };
        state.start(&myself, ComponentKind::Membership).await?;
        if state.args.config.has_role(Role::Orchestrator) {
            state.start(&myself, ComponentKind::Orchestrator).await?;
        }
        if state.args.config.has_role(Role::Worker) {
            state.start(&myself, ComponentKind::Pool).await?;
        }
        if state.args.config.has_role(Role::Monitor) {
            state.start(&myself, ComponentKind::Monitor).await?;
        }
        ractor::pg::join(groups::SUPERVISORS.to_string(), vec![myself.get_cell()]);
        info!(member = %state.args.member, roles = ?state.args.config.roles, "node started");
        Ok(state)
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // Stop dependents before membership, so peers see a clean leave.
        for child in state.children.iter().rev() {
            if let Some(cell) = &child.cell {
                cell.stop(Some("node stopping".to_string()));
            }
        }
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            Mailbox::Call(
                SupervisorRequest::RestartPool {
                    pool_pid,
                    monitor,
                    reason,
                },
                reply,
            ) => {
                let outcome = state.restart_pool_on_request(pool_pid, &monitor, reason);
                let _ = reply.send(SupervisorReply::Restart(outcome));
            }
            Mailbox::Call(SupervisorRequest::Report, reply) => {
                let _ = reply.send(SupervisorReply::Report(state.report()));
            }
            Mailbox::Cast(cast) => match cast {},
            Mailbox::Local(local) => match local {},
            Mailbox::Undecodable(frame) => {
                metrics::counter!("herd_undecodable_frames_total", "protocol" => frame.protocol)
                    .increment(1);
                warn!(bytes = frame.bytes, error = %frame.error, "dropped an undecodable frame addressed to the supervisor");
            }
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
        let Some(index) = state.children.iter().position(|child| {
            child
                .cell
                .as_ref()
                .is_some_and(|current| current.get_id() == cell.get_id())
        }) else {
            return Ok(());
        };
        let (reason, requested) = match state.requested_kill.take() {
            Some((killed, requested_reason)) if killed == cell.get_id() => (requested_reason, true),
            other => {
                state.requested_kill = other;
                (reason, false)
            }
        };
        let child = &mut state.children[index];
        child.cell = None;
        let component = child.history.component();
        let after =
            child
                .history
                .failed(Instant::now(), UnixMillis::now(), reason.clone(), requested);
        if component == ComponentKind::Membership || after == AfterFailure::StopNode {
            error!(component = component.as_str(), %reason, "component failed; stopping the node");
            let _ = state
                .args
                .events
                .send(NodeEvent::Fatal(FatalError::ComponentFailed {
                    component: component.as_str().to_string(),
                    reason,
                }));
            myself.stop(Some("component failed".to_string()));
            return Ok(());
        }
        let restarts = child.history.record().restarts;
        metrics::counter!(
            "herd_component_restarts_total",
            "component" => component.as_str(),
            "cause" => if requested { "monitor_request" } else { "failed" }
        )
        .increment(1);
        warn!(component = component.as_str(), %reason, restarts, requested_by_monitor = requested, "component failed; restarting it");
        if let Err(error) = state.start(&myself, component).await {
            let _ = state
                .args
                .events
                .send(NodeEvent::Fatal(FatalError::ComponentFailed {
                    component: component.as_str().to_string(),
                    reason: error.to_string(),
                }));
            myself.stop(Some("component failed".to_string()));
        }
        Ok(())
    }
}

impl SupervisorState {
    /// A monitor found the pool stuck: kill it (its workers go with it) and
    /// let the ordinary failure path start a fresh one, which re-registers
    /// with the orchestrator without the attempts the old one ran (they are
    /// retried, as after any pool crash).
    fn restart_pool_on_request(
        &mut self,
        pool_pid: u64,
        monitor: &MemberId,
        reason: String,
    ) -> RestartOutcome {
        let Some(child) = self
            .children
            .iter_mut()
            .find(|child| child.history.component() == ComponentKind::Pool)
        else {
            return RestartOutcome::NoPool;
        };
        let Some(cell) = child.cell.clone() else {
            return RestartOutcome::AlreadyReplaced;
        };
        if cell.get_id().pid() != pool_pid {
            info!(%monitor, requested_pid = pool_pid, running_pid = cell.get_id().pid(), "a monitor asked to restart a pool that was already replaced; nothing to do");
            return RestartOutcome::AlreadyReplaced;
        }
        if let Err(recent_restarts) = child.history.may_restart_on_request(Instant::now()) {
            error!(%monitor, %reason, recent_restarts, "a monitor asked to restart the worker pool, but it was restarted too often lately; refusing (restarting again would stop the node)");
            return RestartOutcome::RefusedByIntensity { recent_restarts };
        }
        warn!(%monitor, %reason, "a monitor asked to restart the worker pool; killing it");
        self.requested_kill = Some((
            cell.get_id(),
            format!("{reason} (restart requested by monitor@{})", monitor.name),
        ));
        // A kill interrupts the handler the pool is stuck in; a stop would
        // wait behind it forever.
        cell.kill();
        RestartOutcome::Restarting
    }

    /// This node's supervision record.
    fn report(&self) -> NodeSupervision {
        NodeSupervision {
            member: self.args.view_tx.borrow().local.member.clone(),
            components: self
                .children
                .iter()
                .map(|child| child.history.record())
                .collect(),
        }
    }

    async fn start(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        component: ComponentKind,
    ) -> Result<(), ActorProcessingErr> {
        let args = &self.args;
        let view_rx = args.view_tx.subscribe();
        let cell = match component {
            ComponentKind::Membership => {
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
            ComponentKind::Orchestrator => {
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
            ComponentKind::Pool => {
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
            ComponentKind::Monitor => {
                let monitor_args = MonitorArgs { view: view_rx };
                Actor::spawn_linked(None, Monitor, monitor_args, myself.get_cell())
                    .await?
                    .0
                    .get_cell()
            }
        };
        match self
            .children
            .iter_mut()
            .find(|child| child.history.component() == component)
        {
            Some(child) => {
                child.cell = Some(cell);
                child.history.restarted();
            }
            None => self.children.push(Child {
                cell: Some(cell),
                history: ComponentHistory::new(component),
            }),
        }
        Ok(())
    }
}
