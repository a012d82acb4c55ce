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
use super::leadership::{LeadershipArgs, LeadershipEvent};
use crate::handlers::HandlerRegistry;
use crate::membership::{ClusterView, Membership, MembershipArgs, MembershipLocal, MembershipMsg};
use crate::monitor::{Monitor, MonitorArgs};
use crate::orchestrator::ReplicatedStart;
use crate::orchestrator::{AgentTypeEntry, Orchestrator, OrchestratorArgs};
use crate::pool::{PoolArgs, WorkerPool};
use crate::replica::local_replica::LocalReplica;
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

/// Messages from this node to the supervisor (its children reach it through
/// supervision events).
#[derive(Debug)]
pub enum SupervisorLocal {
    /// This node's replica gained or lost the leadership (raft replication).
    Leadership(LeadershipEvent),
}

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
    /// This node's task book replica (raft replication, orchestrator role):
    /// the orchestrator then runs only while it leads.
    pub replica: Option<LocalReplica>,
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
    /// Raft replication on this node, if any.
    replication: Option<Replication>,
}

/// The replica and its leadership, on an orchestrator-role node with raft
/// replication.
struct Replication {
    /// Taken when the node stops.
    replica: Option<LocalReplica>,
    /// The leadership task.
    leadership: tokio::task::JoinHandle<()>,
    /// Bumped when the orchestrator stopped while the replica may lead.
    restarts: watch::Sender<u64>,
    /// Bumped when a monitor asks this replica to stop leading.
    step_down: watch::Sender<u64>,
    /// The leader's start, consumed when the orchestrator is spawned.
    pending: Option<ReplicatedStart>,
    /// The term whose orchestrator runs (or was last started).
    term: Option<u64>,
    /// The orchestrator this supervisor stopped because its term is over
    /// (not a failure).
    stopping: Option<ActorId>,
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
            replication: None,
            children: Vec::new(),
            requested_kill: None,
            args,
        };
        // The replica first: membership's greeting carries its id.
        if let Some(replica) = state.args.replica.take() {
            state.start_replication(&myself, replica);
        }
        state.start(&myself, ComponentKind::Membership).await?;
        if state.replication.is_none() && state.args.config.has_role(Role::Orchestrator) {
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
        if let Some(replication) = state.replication.as_mut() {
            replication.leadership.abort();
            if let Some(replica) = replication.replica.take() {
                replica.stop().await;
            }
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
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
            Mailbox::Call(
                SupervisorRequest::StepDown {
                    orchestrator_pid,
                    monitor,
                    reason,
                },
                reply,
            ) => {
                let outcome = state.step_down_on_request(orchestrator_pid, &monitor, reason);
                let _ = reply.send(SupervisorReply::Restart(outcome));
            }
            Mailbox::Call(SupervisorRequest::Report, reply) => {
                let _ = reply.send(SupervisorReply::Report(state.report()));
            }
            Mailbox::Cast(cast) => match cast {},
            Mailbox::Local(SupervisorLocal::Leadership(event)) => {
                state.on_leadership(&myself, event).await?
            }
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
        if component == ComponentKind::Orchestrator
            && let Some(replication) = state.replication.as_mut()
        {
            let ended_term = replication.stopping.take() == Some(cell.get_id())
                || reason.starts_with("term over");
            // A killed orchestrator skipped its own post_stop.
            crate::orchestrator::clear_book_gauges(state.args.agent_types.keys());
            if ended_term && !requested {
                info!(%reason, "the orchestrator stopped with its term");
            } else {
                let after = child.history.failed(
                    Instant::now(),
                    UnixMillis::now(),
                    reason.clone(),
                    requested,
                );
                if after == AfterFailure::StopNode {
                    stop_node(&state.args.events, &myself, component, reason);
                    return Ok(());
                }
                metrics::counter!(
                    "herd_component_restarts_total",
                    "component" => component.as_str(),
                    "cause" => if requested { "monitor_request" } else { "failed" }
                )
                .increment(1);
                warn!(component = component.as_str(), %reason, "the orchestrator failed; it starts again if this replica still leads");
            }
            // The leadership task starts it again if this replica still
            // leads (from the committed book, once its proposals settled).
            replication.restarts.send_modify(|count| *count += 1);
            return Ok(());
        }
        let after =
            child
                .history
                .failed(Instant::now(), UnixMillis::now(), reason.clone(), requested);
        if component == ComponentKind::Membership || after == AfterFailure::StopNode {
            stop_node(&state.args.events, &myself, component, reason);
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
            stop_node(&state.args.events, &myself, component, error.to_string());
        }
        Ok(())
    }
}

/// A component failed beyond recovery: report it (the process exits, so
/// its service manager restarts it) and stop the supervision tree.
fn stop_node(
    events: &mpsc::UnboundedSender<NodeEvent>,
    myself: &ActorRef<SupervisorMsg>,
    component: ComponentKind,
    reason: String,
) {
    error!(component = component.as_str(), %reason, "component failed; stopping the node");
    let _ = events.send(NodeEvent::Fatal(FatalError::ComponentFailed {
        component: component.as_str().to_string(),
        reason,
    }));
    myself.stop(Some("component failed".to_string()));
}

impl SupervisorState {
    /// Takes in this node's replica and starts watching its leadership (the
    /// orchestrator starts when it leads).
    fn start_replication(&mut self, myself: &ActorRef<SupervisorMsg>, replica: LocalReplica) {
        let (restarts, restarts_rx) = watch::channel(0);
        let (step_down, step_down_rx) = watch::channel(0);
        let leadership = super::leadership::start(LeadershipArgs {
            raft: replica.raft().clone(),
            id: replica.id(),
            node: replica.node().clone(),
            book: replica.book().clone(),
            view: self.args.view_tx.subscribe(),
            has_seeds: !self.args.config.seeds.is_empty(),
            voters: self.args.config.cluster.voters,
            supervisor: myself.clone(),
            restarts: restarts_rx,
            step_down: step_down_rx,
        });
        self.replication = Some(Replication {
            replica: Some(replica),
            leadership,
            restarts,
            step_down,
            pending: None,
            term: None,
            stopping: None,
        });
    }

    /// Starts or stops the orchestrator with this replica's leadership, and
    /// tells the cluster (membership claims).
    async fn on_leadership(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        event: LeadershipEvent,
    ) -> Result<(), ActorProcessingErr> {
        let Some(replication) = self.replication.as_mut() else {
            return Ok(());
        };
        let Some(raft) = replication.replica.as_ref().map(|r| r.raft().clone()) else {
            return Ok(());
        };
        match event {
            LeadershipEvent::Lead {
                term,
                book,
                proposer_done,
            } => {
                self.stop_orchestrator("a new term started");
                let replication = self.replication.as_mut().expect("checked");
                replication.term = Some(term);
                replication.pending = Some(ReplicatedStart {
                    book: *book,
                    raft,
                    term,
                    proposer_done,
                });
                if let Err(error) = self.start(myself, ComponentKind::Orchestrator).await {
                    error!(%error, term, "the orchestrator did not start on this leader");
                    if let Some(replication) = self.replication.as_mut() {
                        replication.restarts.send_modify(|count| *count += 1);
                    }
                    return Ok(());
                }
                self.claim(term, true);
            }
            LeadershipEvent::Lost { term } => {
                self.stop_orchestrator("this replica no longer leads");
                self.claim(term, false);
            }
        }
        Ok(())
    }

    /// Stops the running orchestrator, if any, as the end of its term.
    fn stop_orchestrator(&mut self, reason: &str) {
        let Some(cell) = self
            .children
            .iter()
            .find(|child| child.history.component() == ComponentKind::Orchestrator)
            .and_then(|child| child.cell.clone())
        else {
            return;
        };
        if let Some(replication) = self.replication.as_mut() {
            replication.stopping = Some(cell.get_id());
        }
        cell.stop(Some(format!("term over: {reason}")));
    }

    /// Tells this node's membership (and through it every peer) whether this
    /// node leads `term`, in its replica's group (named before it leads).
    fn claim(&self, term: u64, leading: bool) {
        let group = self
            .replication
            .as_ref()
            .and_then(|r| r.replica.as_ref())
            .and_then(|replica| replica.book().group());
        let membership = self
            .children
            .iter()
            .find(|child| child.history.component() == ComponentKind::Membership)
            .and_then(|child| child.cell.clone());
        if let Some(cell) = membership {
            let membership: ActorRef<MembershipMsg> = cell.into();
            let _ = membership.cast(Mailbox::Local(MembershipLocal::Leadership {
                term,
                leading,
                group,
            }));
        }
    }

    /// A monitor found the orchestrator stuck while this node answers: with
    /// raft replication, kill it and make the replica stop leading, so that
    /// another replica is elected and runs the orchestrator (restarting it
    /// here would leave the same leader behind whatever made it stick).
    /// Without replication nothing else could take over, so nothing is done.
    fn step_down_on_request(
        &mut self,
        orchestrator_pid: u64,
        monitor: &MemberId,
        reason: String,
    ) -> RestartOutcome {
        let Some(replication) = self.replication.as_ref() else {
            error!(%monitor, %reason, "a monitor found the orchestrator unresponsive; with single replication no other node can take over, so it is left running");
            return RestartOutcome::NotReplicated;
        };
        let Some(cell) = self
            .children
            .iter()
            .find(|child| child.history.component() == ComponentKind::Orchestrator)
            .and_then(|child| child.cell.clone())
        else {
            return RestartOutcome::AlreadyReplaced;
        };
        if cell.get_id().pid() != orchestrator_pid {
            return RestartOutcome::AlreadyReplaced;
        }
        warn!(%monitor, %reason, "a monitor found the orchestrator unresponsive; killing it and stepping down so another replica leads");
        replication.step_down.send_modify(|count| *count += 1);
        self.requested_kill = Some((
            cell.get_id(),
            format!("{reason} (step-down requested by monitor@{})", monitor.name),
        ));
        // A kill interrupts the handler it is stuck in.
        cell.kill();
        RestartOutcome::SteppingDown
    }

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
                    replica_id: self
                        .replication
                        .as_ref()
                        .and_then(|r| r.replica.as_ref())
                        .map(LocalReplica::id),
                    // Membership reads it from the replica (below).
                    replica_group: None,
                };
                let membership_args = MembershipArgs {
                    config: args.config.clone(),
                    greeting,
                    view: args.view_tx.clone(),
                    events: args.events.clone(),
                    cluster_tls: args.cluster_tls.clone(),
                    replica_group: self
                        .replication
                        .as_ref()
                        .and_then(|r| r.replica.as_ref())
                        .map(|replica| replica.book().group_changes()),
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
                    replicated: self
                        .replication
                        .as_mut()
                        .and_then(|replication| replication.pending.take()),
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
