//! What monitors and API nodes say to a node's supervisor, and the
//! supervision tree of the cluster that `GET /v1/supervision` answers.
//!
//! Every node's supervisor joins [`super::groups::SUPERVISORS`]; only
//! cookie-authenticated peers reach it (ractor_cluster delivers nothing from
//! an unauthenticated session), and the supervisor itself limits how often a
//! peer may make it restart a component (restart intensity).

use serde::{Deserialize, Serialize};

use crate::ids::MemberId;
use crate::mailbox::WireError;
use crate::time::UnixMillis;

/// The supervisor takes no one-way messages from peers.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum SupervisorCast {}

/// Requests to a node's supervisor.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum SupervisorRequest {
    /// Restart this node's worker pool: a monitor found it stuck. Honoured
    /// only while `pool_pid` is still the running pool (a request about a
    /// pool that was replaced since is answered
    /// [`RestartOutcome::AlreadyReplaced`]) and within the restart intensity.
    RestartPool {
        /// The pool actor's process id as the monitor saw it.
        pool_pid: u64,
        /// The monitor asking.
        monitor: MemberId,
        /// Why, as recorded in the pool's last failure.
        reason: String,
    },
    /// This node's supervision record: its components, restarts and failures.
    Report,
    /// The orchestrator on this node does not answer while the node does: a
    /// monitor asks this node's replica to stop leading (raft replication),
    /// so that another replica is elected and runs the orchestrator.
    StepDown {
        /// The orchestrator actor's process id as the monitor saw it.
        orchestrator_pid: u64,
        /// The monitor asking.
        monitor: MemberId,
        /// Why, as recorded in the orchestrator's last failure.
        reason: String,
    },
}

/// Replies of a node's supervisor.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum SupervisorReply {
    /// The answer to [`SupervisorRequest::RestartPool`].
    Restart(RestartOutcome),
    /// The answer to [`SupervisorRequest::Report`].
    Report(NodeSupervision),
    /// The request failed on the wire.
    Wire(WireError),
}

impl From<WireError> for SupervisorReply {
    fn from(error: WireError) -> Self {
        SupervisorReply::Wire(error)
    }
}

/// What a supervisor did with a restart request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestartOutcome {
    /// The pool was killed; the supervisor starts a fresh one at once.
    Restarting,
    /// The pool named in the request is no longer running: nothing done.
    AlreadyReplaced,
    /// This node runs no worker pool.
    NoPool,
    /// The stuck orchestrator was killed and this node's replica stops
    /// leading; another replica is elected.
    SteppingDown,
    /// This node's orchestrator is not replicated (single replication):
    /// nothing else could take over, so nothing was done.
    NotReplicated,
    /// The pool was restarted too often within the supervisor's window;
    /// restarting again would exceed the node's restart intensity (and stop
    /// the node), so the supervisor refused. The monitor reports instead.
    RefusedByIntensity {
        /// Restarts of the pool within the window.
        recent_restarts: u32,
    },
}

/// A component a node's supervisor runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ComponentKind {
    /// Membership: sessions, heartbeats, the failure detector.
    Membership,
    /// The orchestrator (role orchestrator).
    Orchestrator,
    /// The worker pool (role worker) and its slots.
    Pool,
    /// The monitor (role monitor).
    Monitor,
}

impl ComponentKind {
    /// The lowercase name used in logs and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            ComponentKind::Membership => "membership",
            ComponentKind::Orchestrator => "orchestrator",
            ComponentKind::Pool => "pool",
            ComponentKind::Monitor => "monitor",
        }
    }
}

/// When and why a component last failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureRecord {
    /// When its supervisor saw it stop.
    pub at: UnixMillis,
    /// Why (a panic message, `stuck: ...` for a monitor's restart, ...).
    pub reason: String,
}

/// One component as its supervisor knows it. (Crosses the wire with bincode:
/// positional, so fields are never skipped.)
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentRecord {
    /// Which component.
    pub component: ComponentKind,
    /// Running now (false between a failure and its restart).
    pub running: bool,
    /// Restarts since the node started.
    pub restarts: u32,
    /// Of those, restarts a monitor requested.
    pub requested_restarts: u32,
    /// The last failure, if any.
    pub last_failure: Option<FailureRecord>,
}

/// A node supervisor's record of its components.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSupervision {
    /// The node.
    pub member: MemberId,
    /// Its components, in start order.
    pub components: Vec<ComponentRecord>,
}

/// `GET /v1/supervision`: the supervision tree of the whole cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupervisionTree {
    /// The node that answered.
    pub reported_by: String,
    /// Up monitor-role nodes, in name order: the monitors that watch pools.
    pub monitors: Vec<String>,
    /// Every node the answering node knows that is up or suspect.
    pub nodes: Vec<NodeTree>,
}

/// One node of [`SupervisionTree`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeTree {
    /// Its name.
    pub name: String,
    /// `up` or `suspect`.
    pub state: String,
    /// Its supervisor answered: the records below are its own. When false,
    /// the actors listed are those its roles imply, without counts.
    pub reported: bool,
    /// Its actors.
    pub actors: Vec<ActorTree>,
}

/// One actor of [`NodeTree`]: where it runs, who watches and restarts it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActorTree {
    /// `supervisor`, `membership`, `orchestrator`, `pool` or `monitor`.
    pub actor: String,
    /// The node it runs on.
    pub runs_on: String,
    /// Running now, as its supervisor reports (`None` if unreported).
    pub running: Option<bool>,
    /// Who watches it: `monitor@NODE` for a pool, else its supervisor.
    pub watched_by: Option<String>,
    /// Who restarts it: `supervisor@NODE`, or the process's service manager.
    pub restarted_by: String,
    /// Restarts since its node started.
    pub restarts: u32,
    /// Of those, restarts a monitor requested.
    pub requested_restarts: u32,
    /// Its last failure.
    pub last_failure: Option<FailureRecord>,
    /// For a pool: its worker slots (each restarted by the pool itself), as
    /// the pool answered a ping just now; `None` if it did not answer.
    pub slots: Option<u32>,
    /// For a pool: slots running a task, from the same ping.
    pub busy: Option<u32>,
}
