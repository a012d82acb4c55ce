//! The monitor actor: see the module docs.

use std::collections::{BTreeMap, BTreeSet};

use herd_protocol::messages::groups;
use herd_protocol::messages::membership::Role;
use herd_protocol::messages::orchestrator::MemberState;
use herd_protocol::messages::pool::{PoolReply, PoolRequest};
use herd_protocol::messages::supervision::{RestartOutcome, SupervisorReply, SupervisorRequest};
use herd_protocol::{Mailbox, NodeName};
use ractor::rpc::CallResult;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

use super::assignment::{monitors, watcher_of};
use super::leader_watch;
use super::probe::{MISSES_TO_STUCK, PING_DEADLINE, PROBE_INTERVAL, Probe, Verdict};
use crate::membership::ClusterView;
use crate::orchestrator::find_supervisor;
use crate::pool::PoolMsg;

/// How long a node's supervisor may take to answer a restart request.
const RESTART_REQUEST_DEADLINE: std::time::Duration = std::time::Duration::from_secs(5);

/// Starts a monitor.
pub struct MonitorArgs {
    /// The cluster view (its `local` member is this node).
    pub view: watch::Receiver<ClusterView>,
}

/// The monitor actor.
pub struct Monitor;

/// What a ping came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PingResult {
    /// The pool answered within the deadline.
    Answered,
    /// No answer within the deadline.
    Missed,
    /// The pool actor is gone (its node's supervisor restarts it).
    Gone,
}

/// Messages to the monitor (local only).
#[derive(Debug)]
pub enum MonitorMsg {
    /// Probe the pools this monitor watches.
    Tick,
    /// A ping came back (or did not).
    PingAnswered {
        /// The pool's node.
        node: NodeName,
        /// The pool actor pinged.
        pid: u64,
        /// What happened.
        result: PingResult,
    },
    /// A node's supervisor answered a restart request.
    RestartAnswered {
        /// The pool's node.
        node: NodeName,
        /// The pool actor it was about.
        pid: u64,
        /// The supervisor's answer, or why there was none.
        outcome: Result<RestartOutcome, String>,
    },
    /// A ping of the orchestrator came back (or did not).
    OrchestratorPinged {
        /// The orchestrator's node.
        node: NodeName,
        /// The orchestrator actor pinged.
        pid: u64,
        /// What happened.
        result: PingResult,
    },
    /// The leader's supervisor answered a step-down request.
    StepDownAnswered {
        /// The leader's node.
        node: NodeName,
        /// The orchestrator actor it was about.
        pid: u64,
        /// The supervisor's answer, or why there was none.
        outcome: Result<RestartOutcome, String>,
    },
}

impl ractor::Message for MonitorMsg {}

impl PingResult {
    /// Records this result in `probe` (a gone actor resets it: its node's
    /// supervisor replaces it) and returns the verdict, if there is one.
    fn record_in(self, probe: &mut Probe) -> Option<Verdict> {
        match self {
            PingResult::Answered => Some(probe.answered(true)),
            PingResult::Missed => Some(probe.answered(false)),
            PingResult::Gone => {
                probe.reset();
                None
            }
        }
    }
}

/// One pool this monitor watches.
struct Watched {
    pid: u64,
    actor: ActorRef<PoolMsg>,
    probe: Probe,
    restart_in_flight: bool,
}

/// The orchestrator this monitor watches (raft replication).
struct WatchedOrchestrator {
    node: NodeName,
    pid: u64,
    probe: Probe,
    step_down_in_flight: bool,
}

/// The monitor's state.
pub struct MonitorState {
    view: watch::Receiver<ClusterView>,
    watched: BTreeMap<NodeName, Watched>,
    orchestrator: Option<WatchedOrchestrator>,
}

impl Actor for Monitor {
    type Msg = MonitorMsg;
    type State = MonitorState;
    type Arguments = MonitorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: MonitorArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        myself.send_interval(PROBE_INTERVAL, || MonitorMsg::Tick);
        info!(
            probe_interval_ms = PROBE_INTERVAL.as_millis() as u64,
            ping_deadline_ms = PING_DEADLINE.as_millis() as u64,
            misses_to_stuck = MISSES_TO_STUCK,
            "monitor started"
        );
        Ok(MonitorState {
            view: args.view,
            watched: BTreeMap::new(),
            orchestrator: None,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            MonitorMsg::Tick => {
                state.probe_watched_pools(&myself);
                state.probe_orchestrator(&myself);
            }
            MonitorMsg::OrchestratorPinged { node, pid, result } => {
                state.on_orchestrator_ping(&myself, node, pid, result)
            }
            MonitorMsg::StepDownAnswered { node, pid, outcome } => {
                state.on_step_down_answer(node, pid, outcome)
            }
            MonitorMsg::PingAnswered { node, pid, result } => {
                state.on_ping(&myself, node, pid, result)
            }
            MonitorMsg::RestartAnswered { node, pid, outcome } => {
                state.on_restart_answer(node, pid, outcome)
            }
        }
        Ok(())
    }
}

impl MonitorState {
    /// With raft replication, pings the leader's orchestrator if this
    /// monitor watches the leader's node (see `leader_watch`).
    fn probe_orchestrator(&mut self, myself: &ActorRef<MonitorMsg>) {
        let view = self.view.borrow().clone();
        let target = view
            .leader
            .as_ref()
            .filter(|claim| claim.leading)
            .and_then(|_| view.orchestrator.clone())
            .filter(|leader| {
                watcher_of(&leader.name, &monitors(&view)).as_ref() == Some(&view.local.member.name)
            })
            .and_then(|leader| {
                let actor = crate::orchestrator::find_orchestrator(&view)?;
                Some((leader.name, actor))
            });
        let Some((node, actor)) = target else {
            self.orchestrator = None;
            return;
        };
        let pid = actor.get_id().pid();
        let watched = self
            .orchestrator
            .get_or_insert_with(|| WatchedOrchestrator::new(node.clone(), pid));
        if watched.node != node || watched.pid != pid {
            info!(orchestrator = %node, "watching the orchestrator");
            *watched = WatchedOrchestrator::new(node.clone(), pid);
        }
        if watched.step_down_in_flight || !watched.probe.may_ping() {
            return;
        }
        watched.probe.sent();
        leader_watch::ping(myself.clone(), node, pid, actor);
    }

    fn on_orchestrator_ping(
        &mut self,
        myself: &ActorRef<MonitorMsg>,
        node: NodeName,
        pid: u64,
        result: PingResult,
    ) {
        let Some(watched) = self
            .orchestrator
            .as_mut()
            .filter(|w| w.node == node && w.pid == pid)
        else {
            return;
        };
        let Some(verdict) = result.record_in(&mut watched.probe) else {
            return;
        };
        match verdict {
            Verdict::Responsive => {}
            Verdict::Missed(misses) => {
                warn!(orchestrator = %node, misses, of = MISSES_TO_STUCK, deadline_ms = PING_DEADLINE.as_millis() as u64, "the orchestrator missed a ping")
            }
            Verdict::Stuck => {
                let view = self.view.borrow().clone();
                let reason = stuck_reason("orchestrator");
                let Some(supervisor) = supervisor_or_report_only(
                    &view,
                    &node,
                    &mut watched.probe,
                    || {
                        error!(orchestrator = %node, %reason, "the orchestrator is stuck and its node's supervisor cannot be reached; reporting only");
                    },
                ) else {
                    return;
                };
                warn!(orchestrator = %node, %reason, "the orchestrator is stuck; asking its node to step down so another replica leads");
                watched.step_down_in_flight = true;
                let request = SupervisorRequest::StepDown {
                    orchestrator_pid: pid,
                    monitor: view.local.member.clone(),
                    reason,
                };
                request_off_mailbox(myself.clone(), supervisor, request, move |outcome| {
                    MonitorMsg::StepDownAnswered { node, pid, outcome }
                });
            }
        }
    }

    fn on_step_down_answer(
        &mut self,
        node: NodeName,
        pid: u64,
        outcome: Result<RestartOutcome, String>,
    ) {
        if let Some(watched) = self
            .orchestrator
            .as_mut()
            .filter(|w| w.node == node && w.pid == pid)
        {
            watched.step_down_in_flight = false;
            watched.probe.reset();
        }
        let action = leader_watch::action_of(&outcome);
        match &outcome {
            Ok(RestartOutcome::SteppingDown) => {
                warn!(orchestrator = %node, "the leader's node killed its stuck orchestrator and steps down")
            }
            Ok(other) => info!(orchestrator = %node, ?other, "the leader's node did not step down"),
            Err(why) => {
                error!(orchestrator = %node, %why, "the leader's supervisor did not answer a step-down request; reporting only")
            }
        }
        metrics::counter!("herd_monitor_interventions_total", "action" => action).increment(1);
    }

    /// Follows the assignment (pools come and go, monitors join and leave)
    /// and pings each watched pool that has no ping in flight.
    fn probe_watched_pools(&mut self, myself: &ActorRef<MonitorMsg>) {
        let view = self.view.borrow().clone();
        let me = view.local.member.name.clone();
        let monitors = monitors(&view);
        let mut seen = BTreeSet::new();
        for cell in ractor::pg::get_members(&groups::POOLS.to_string()) {
            // Only pools on live nodes: a node that stopped answering
            // heartbeats is membership's to declare down.
            let Some(info) = view.member_of_actor(cell.get_id()) else {
                continue;
            };
            if info.state != MemberState::Up || !info.has_role(Role::Worker) {
                continue;
            }
            let node = info.member.name.clone();
            if watcher_of(&node, &monitors).as_ref() != Some(&me) {
                continue;
            }
            let pid = cell.get_id().pid();
            seen.insert(node.clone());
            let watched = self.watched.entry(node.clone()).or_insert_with(|| {
                info!(pool = %node, "watching a worker pool");
                Watched::new(pid, ActorRef::from(cell.clone()))
            });
            if watched.pid != pid {
                info!(pool = %node, "watching the worker pool's new actor");
                *watched = Watched::new(pid, ActorRef::from(cell));
            }
            if watched.restart_in_flight || !watched.probe.may_ping() {
                continue;
            }
            watched.probe.sent();
            ping(myself.clone(), node, pid, watched.actor.clone());
        }
        self.watched.retain(|node, _| {
            let keep = seen.contains(node);
            if !keep {
                debug!(pool = %node, "no longer watching a worker pool");
            }
            keep
        });
        metrics::gauge!("herd_monitor_watched_actors").set(self.watched.len() as f64);
    }

    fn on_ping(
        &mut self,
        myself: &ActorRef<MonitorMsg>,
        node: NodeName,
        pid: u64,
        result: PingResult,
    ) {
        let Some(watched) = self.watched.get_mut(&node).filter(|w| w.pid == pid) else {
            return;
        };
        let Some(verdict) = result.record_in(&mut watched.probe) else {
            return;
        };
        match verdict {
            Verdict::Responsive => {}
            Verdict::Missed(misses) => {
                warn!(pool = %node, misses, of = MISSES_TO_STUCK, deadline_ms = PING_DEADLINE.as_millis() as u64, "worker pool missed a ping")
            }
            Verdict::Stuck => {
                let view = self.view.borrow().clone();
                let reason = stuck_reason("pool");
                let Some(supervisor) = supervisor_or_report_only(
                    &view,
                    &node,
                    &mut watched.probe,
                    || {
                        error!(pool = %node, %reason, "worker pool is stuck and its node's supervisor cannot be reached; reporting only");
                    },
                ) else {
                    return;
                };
                warn!(pool = %node, %reason, "worker pool is stuck; asking its node's supervisor to restart it");
                watched.restart_in_flight = true;
                let request = SupervisorRequest::RestartPool {
                    pool_pid: pid,
                    monitor: view.local.member.clone(),
                    reason,
                };
                request_off_mailbox(myself.clone(), supervisor, request, move |outcome| {
                    MonitorMsg::RestartAnswered { node, pid, outcome }
                });
            }
        }
    }

    fn on_restart_answer(
        &mut self,
        node: NodeName,
        pid: u64,
        outcome: Result<RestartOutcome, String>,
    ) {
        if let Some(watched) = self.watched.get_mut(&node).filter(|w| w.pid == pid) {
            watched.restart_in_flight = false;
            watched.probe.reset();
        }
        let action = match outcome {
            Ok(RestartOutcome::Restarting) => {
                warn!(pool = %node, "the node's supervisor is restarting its stuck worker pool");
                "restart_pool"
            }
            Ok(RestartOutcome::AlreadyReplaced) => {
                info!(pool = %node, "the stuck worker pool was already replaced");
                "already_replaced"
            }
            Ok(RestartOutcome::NoPool) => {
                info!(pool = %node, "the node runs no worker pool any more");
                "already_replaced"
            }
            Ok(RestartOutcome::SteppingDown | RestartOutcome::NotReplicated) => {
                // Answers to a step-down request, never to a pool restart.
                "report_only"
            }
            Ok(RestartOutcome::RefusedByIntensity { recent_restarts }) => {
                error!(pool = %node, recent_restarts, "the node's supervisor refused to restart its stuck worker pool again (restart intensity); reporting only: look at the node");
                "report_only"
            }
            Err(why) => {
                error!(pool = %node, %why, "the node's supervisor did not answer a restart request; reporting only");
                "report_only"
            }
        };
        metrics::counter!("herd_monitor_interventions_total", "action" => action).increment(1);
    }
}

impl WatchedOrchestrator {
    fn new(node: NodeName, pid: u64) -> Self {
        WatchedOrchestrator {
            node,
            pid,
            probe: Probe::default(),
            step_down_in_flight: false,
        }
    }
}

impl Watched {
    fn new(pid: u64, actor: ActorRef<PoolMsg>) -> Self {
        Watched {
            pid,
            actor,
            probe: Probe::default(),
            restart_in_flight: false,
        }
    }
}

/// Pings `pool` off the monitor's mailbox and reports the result to it.
fn ping(monitor: ActorRef<MonitorMsg>, node: NodeName, pid: u64, pool: ActorRef<PoolMsg>) {
    tokio::spawn(async move {
        let result = match pool
            .call(
                |port| Mailbox::Call(PoolRequest::Ping, port),
                Some(PING_DEADLINE),
            )
            .await
        {
            Ok(CallResult::Success(PoolReply::Pong { .. })) => PingResult::Answered,
            // A wire error is an answer: the pool's mailbox moved.
            Ok(CallResult::Success(PoolReply::Wire(_))) => PingResult::Answered,
            Ok(CallResult::Timeout) => PingResult::Missed,
            // A remote call's reply port is bridged through the session with
            // its own copy of the deadline, which may expire first and drop
            // the port: that is a miss too, unless the actor really is gone.
            Ok(CallResult::SenderError) | Err(_) => {
                if pool.get_status() >= ractor::ActorStatus::Stopping {
                    PingResult::Gone
                } else {
                    PingResult::Missed
                }
            }
        };
        let _ = monitor.cast(MonitorMsg::PingAnswered { node, pid, result });
    });
}

/// Why a monitor intervenes on a stuck `what` (a pool, the orchestrator):
/// recorded with the restart or step-down.
fn stuck_reason(what: &str) -> String {
    format!(
        "stuck: the {what} missed {MISSES_TO_STUCK} pings in a row ({} ms deadline each) while its node answered heartbeats",
        PING_DEADLINE.as_millis()
    )
}

/// The supervisor of `node`, to ask for an intervention on a stuck actor
/// there; when it cannot be reached, the monitor only reports: counted as
/// `report_only`, said by `report`, and the actor's probe starts afresh.
fn supervisor_or_report_only(
    view: &ClusterView,
    node: &NodeName,
    probe: &mut Probe,
    report: impl FnOnce(),
) -> Option<ActorRef<crate::runtime::SupervisorMsg>> {
    let supervisor = find_supervisor(view, node);
    if supervisor.is_none() {
        metrics::counter!("herd_monitor_interventions_total", "action" => "report_only")
            .increment(1);
        report();
        probe.reset();
    }
    supervisor
}

/// Sends a restart or step-down `request` to a node's supervisor off the
/// monitor's mailbox, and hands the monitor the answer as
/// `answered(outcome)`.
fn request_off_mailbox(
    monitor: ActorRef<MonitorMsg>,
    supervisor: ActorRef<crate::runtime::SupervisorMsg>,
    request: SupervisorRequest,
    answered: impl FnOnce(Result<RestartOutcome, String>) -> MonitorMsg + Send + 'static,
) {
    tokio::spawn(async move {
        let outcome = ask_supervisor(&supervisor, request).await;
        let _ = monitor.cast(answered(outcome));
    });
}

/// Sends a restart or step-down request to a node's supervisor and waits
/// (at most [`RESTART_REQUEST_DEADLINE`]) for its answer, or says why there
/// was none.
async fn ask_supervisor(
    supervisor: &ActorRef<crate::runtime::SupervisorMsg>,
    request: SupervisorRequest,
) -> Result<RestartOutcome, String> {
    match supervisor
        .call(
            |port| Mailbox::Call(request, port),
            Some(RESTART_REQUEST_DEADLINE),
        )
        .await
    {
        Ok(CallResult::Success(SupervisorReply::Restart(outcome))) => Ok(outcome),
        Ok(CallResult::Success(other)) => Err(format!("unexpected answer {other:?}")),
        Ok(CallResult::Timeout) => Err(format!(
            "no answer within {} ms",
            RESTART_REQUEST_DEADLINE.as_millis()
        )),
        Ok(CallResult::SenderError) => Err("the supervisor dropped the request".to_string()),
        Err(error) => Err(error.to_string()),
    }
}
