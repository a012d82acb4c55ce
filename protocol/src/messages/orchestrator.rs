//! What pools and API front-ends say to the orchestrator, and its answers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::membership::Role;
use crate::ids::{AgentType, AssignmentEpoch, MemberId, NodeName, TaskId, WorkerId};
use crate::json::JsonText;
use crate::mailbox::WireError;
use crate::task::{TaskReport, TaskSpec, TaskState, TaskView};

/// A task a pool is running when it (re)registers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunningAttempt {
    /// The task.
    pub task_id: TaskId,
    /// Its assignment epoch.
    pub epoch: AssignmentEpoch,
    /// The slot running it (`None` while it waits for a slot to restart).
    pub worker: Option<WorkerId>,
}

/// A worker pool announcing itself to the orchestrator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PoolRegistration {
    /// The pool's node.
    pub member: MemberId,
    /// Worker slots it hosts.
    pub workers: u32,
    /// Agent types it has handlers for.
    pub agent_types: Vec<AgentType>,
    /// Attempts it is running right now (non-empty after an orchestrator
    /// restart or a reconnect).
    pub running: Vec<RunningAttempt>,
    /// Attempts that finished but whose reports the orchestrator has not
    /// acknowledged; they are re-sent after the welcome.
    pub unacked: Vec<(TaskId, AssignmentEpoch)>,
    /// The pool is draining: send it nothing new.
    pub draining: bool,
    /// Most slots the node may host (from its CPU and memory per worker).
    pub capacity: u32,
}
/// One-way messages to the orchestrator.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum OrchestratorCast {
    /// A pool (re)announces itself.
    PoolRegistered(PoolRegistration),
    /// A pool reports finished attempts; each frees one slot. Reports are
    /// numbered per pool from `first_sequence`; the orchestrator acknowledges
    /// them once they are durable, and the pool re-sends unacknowledged ones
    /// after a reconnect (a report is applied at most once).
    Reports {
        /// The node the attempts were assigned to (an older incarnation of
        /// the pool's node for attempts from before a rejoin).
        member: MemberId,
        /// Sequence number of the first report.
        first_sequence: u64,
        /// Finished attempts, in completion order.
        reports: Vec<TaskReport>,
    },
    /// A draining pool will take no new work.
    PoolDraining {
        /// The pool's node.
        member: MemberId,
    },
    /// A pool's resource use (every scaling interval).
    PoolStats {
        /// The pool's node.
        member: MemberId,
        /// CPU use of the node's herd process, percent of the node's cores.
        cpu_percent: f64,
        /// Memory use of the process, percent of the node's memory.
        memory_percent: f64,
        /// CPU cores of the node.
        cores: f64,
        /// Memory of the node in GB.
        memory_gb: f64,
    },
    /// A draining pool gives back attempts it will not finish: they are
    /// re-queued at once and do not count as attempts.
    HandBack {
        /// The pool's node.
        member: MemberId,
        /// The attempts.
        attempts: Vec<(TaskId, AssignmentEpoch)>,
    },
    /// How a node's LLM calls went: tokens used, rate-limit hints, failures.
    /// Feeds the providers' budgets and circuits; best effort (a lost batch
    /// only leaves the token estimate in place until the window passes).
    ProviderCalls {
        /// The calling node.
        member: MemberId,
        /// The calls, in the order they finished.
        calls: Vec<super::provider::ProviderCall>,
    },
}

/// Which tasks a list request wants.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct TaskQuery {
    /// Only tasks in this state.
    pub state: Option<TaskState>,
    /// Only tasks of this agent type.
    pub agent_type: Option<AgentType>,
    /// Page size.
    pub limit: u32,
    /// Continue after this id (ids sort by creation time).
    pub after: Option<TaskId>,
    /// Only this tenant's tasks (`None`: every tenant's, for admins).
    pub tenant: Option<crate::Tenant>,
}

/// Requests to the orchestrator.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum OrchestratorRequest {
    /// Accept these tasks, all or none.
    Submit(Vec<TaskSpec>),
    /// One task's view.
    GetTask(TaskId),
    /// A page of tasks.
    ListTasks(TaskQuery),
    /// Cancel a task that has not finished.
    Cancel(TaskId),
    /// Answer once the task is terminal (or at once if it already is).
    AwaitTask(TaskId),
    /// The cluster summary.
    ClusterStatus,
    /// Give a dead task another chance, optionally with a new payload.
    RetryDeadLetter {
        /// The task.
        id: TaskId,
        /// Replacement payload.
        payload: Option<JsonText>,
    },
    /// Drain a node: no new work, running tasks finish within its grace
    /// period, the rest is handed back, then the node leaves.
    DrainNode(NodeName),
    /// The most recent scaling decisions, newest first.
    ScalingDecisions {
        /// How many.
        limit: u32,
    },
    /// The system health report.
    HealthReport,
    /// Change an agent type's weight at run time.
    UpdateAgent {
        /// The type.
        agent_type: AgentType,
        /// The change.
        update: super::scaling::AgentUpdate,
    },
    /// Change the pool bounds at run time.
    UpdateScaling(super::scaling::ScalingUpdate),
    /// A monitor's liveness probe: answered at once with [`OrchestratorReply::Pong`].
    Ping,
}
/// Result of a dead-letter retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RetryOutcome {
    /// The task is pending again with a fresh attempt budget.
    Retried,
    /// Only dead tasks can be retried; it is in this state.
    NotDead(TaskState),
    /// No task has this id.
    NotFound,
}

/// Result of a drain request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DrainOutcome {
    /// The node's pool is draining.
    Draining,
    /// No such node is up.
    UnknownNode,
    /// The node runs no worker pool; there is nothing to drain.
    NoPool,
}

/// A circuit breaker's state, as the cluster summary shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CircuitStatus {
    /// Tasks flow.
    Closed,
    /// Tasks of the type wait until the recovery time passes.
    Open,
    /// A few trial tasks run.
    HalfOpen,
}

/// A task accepted by [`OrchestratorRequest::Submit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitAck {
    /// The task's id (the existing one for a repeated idempotency key).
    pub id: TaskId,
    /// True when the idempotency key matched an existing task.
    pub existing: bool,
}

/// Why a submission was refused. Refusals name what to fix.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, thiserror::Error)]
pub enum SubmitRejection {
    /// No such agent type.
    #[error("task {index}: unknown agent type {agent_type:?}; known types: {}", known.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", "))]
    UnknownAgentType {
        /// Position in the submitted batch.
        index: usize,
        /// The type asked for.
        agent_type: AgentType,
        /// The types this cluster runs.
        known: Vec<AgentType>,
    },
    /// The payload is over the limit.
    #[error(
        "task {index}: payload is {bytes} bytes, over the limit of {limit} bytes; send a reference (a URL or key) instead of the data, or raise limits.max_payload_bytes (at most {} MiB)",
        crate::limits::MAX_CONFIGURABLE_PAYLOAD_BYTES / crate::limits::MIB
    )]
    PayloadTooLarge {
        /// Position in the submitted batch.
        index: usize,
        /// Payload size.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// A field is out of range.
    #[error("task {index}: {field} {message}")]
    InvalidField {
        /// Position in the submitted batch.
        index: usize,
        /// The field.
        field: String,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// Too many tasks are waiting; try again later.
    #[error(
        "the orchestrator holds {pending} unfinished tasks, its limit is {limit}; retry after a short wait"
    )]
    Overloaded {
        /// Unfinished tasks now.
        pending: u64,
        /// The configured bound.
        limit: u64,
    },
    /// The payloads of unfinished tasks plus this batch's would exceed the
    /// task book's byte budget; try again once tasks finish.
    #[error(
        "the orchestrator holds {held_bytes} bytes of unfinished task payloads and this batch adds {batch_bytes}, over its budget of {limit} bytes (limits.max_held_bytes); retry after tasks finish"
    )]
    OverByteBudget {
        /// Payload bytes of unfinished tasks now.
        held_bytes: u64,
        /// Payload bytes the batch would add.
        batch_bytes: u64,
        /// The configured budget.
        limit: u64,
    },
    /// The batch would take its tenant over one of the tenant's limits.
    #[error(
        "tenant {tenant:?} holds {held} {what} and this batch adds {adding}, over the tenant's limit of {limit} ({key}); retry after some of its tasks finish"
    )]
    TenantOverLimit {
        /// The tenant.
        tenant: crate::Tenant,
        /// What is limited, for a person: "unfinished tasks" or "bytes of payloads and results".
        what: String,
        /// The config key that sets the limit.
        key: String,
        /// The tenant's current use.
        held: u64,
        /// What the batch would add.
        adding: u64,
        /// The limit.
        limit: u64,
    },
}

/// Result of a cancel request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CancelOutcome {
    /// The task is now cancelled (a running attempt is being stopped).
    Cancelled,
    /// The task had already finished in this state.
    AlreadyFinished(TaskState),
    /// No task has this id.
    NotFound,
}

/// A page of tasks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskPage {
    /// The tasks, oldest first.
    pub tasks: Vec<TaskView>,
    /// Pass as `after` to get the next page; `None` on the last page.
    pub next_after: Option<TaskId>,
}

/// Task counts by state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TaskCounts {
    /// Waiting for a worker.
    pub pending: u64,
    /// Assigned to a worker.
    pub running: u64,
    /// Finished with a result.
    pub succeeded: u64,
    /// Waiting to be retried.
    pub failed: u64,
    /// In the dead-letter queue.
    pub dead: u64,
    /// Cancelled.
    pub cancelled: u64,
}

impl TaskCounts {
    /// The count for one state.
    pub fn get(&self, state: TaskState) -> u64 {
        match state {
            TaskState::Pending => self.pending,
            TaskState::Running => self.running,
            TaskState::Succeeded => self.succeeded,
            TaskState::Failed => self.failed,
            TaskState::Dead => self.dead,
            TaskState::Cancelled => self.cancelled,
        }
    }

    /// Mutable access to the count for one state.
    pub fn get_mut(&mut self, state: TaskState) -> &mut u64 {
        match state {
            TaskState::Pending => &mut self.pending,
            TaskState::Running => &mut self.running,
            TaskState::Succeeded => &mut self.succeeded,
            TaskState::Failed => &mut self.failed,
            TaskState::Dead => &mut self.dead,
            TaskState::Cancelled => &mut self.cancelled,
        }
    }

    /// Tasks not yet terminal.
    pub fn unfinished(&self) -> u64 {
        self.pending + self.running + self.failed
    }
}

/// How the orchestrator sees a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberState {
    /// Connected and greeted.
    Up,
    /// Missed heartbeats; may be down.
    Suspect,
    /// Declared down; its tasks were re-queued.
    Down,
    /// Left on purpose (drained).
    Left,
}

/// One node in the cluster summary.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Node name.
    pub name: NodeName,
    /// Current state.
    pub state: MemberState,
    /// Its roles.
    pub roles: Vec<Role>,
    /// Worker slots registered with the orchestrator.
    pub workers: u32,
    /// Slots running a task now.
    pub busy: u32,
    /// Where its HTTP API listens.
    pub http_addr: Option<String>,
    /// Its pool is draining.
    pub draining: bool,
    /// Most slots the node may host.
    pub capacity: u32,
    /// Its slots as allotted to agent types (quota per type).
    pub slots_by_type: BTreeMap<AgentType, u32>,
}

/// One agent type in the cluster summary.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentStatus {
    /// Current share of the slots (weights sum to 1; the rebalancer and
    /// `PUT /v1/agents/{type}` move them).
    pub weight: f64,
    /// The weight as configured (relative; not normalized).
    pub configured_weight: f64,
    /// Slots allotted to this type across the cluster.
    pub workers: u32,
    /// Slots running a task of this type now.
    pub busy: u32,
    /// Tasks of this type waiting for a worker.
    pub queue_depth: u64,
    /// Its circuit breaker.
    pub circuit: CircuitStatus,
    /// An operator fixed its weight (the rebalancer leaves it alone).
    pub pinned: bool,
    /// Attempts a pool may hold per slot of this type now: between
    /// `scaling.slot_credit` and `scaling.max_slot_credit`, following the
    /// commit latency and the type's run time.
    pub slot_credit: u32,
}

/// The cluster summary served at `GET /v1/cluster`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// The orchestrator's node.
    pub orchestrator: NodeName,
    /// Every known node, by name.
    pub nodes: Vec<NodeStatus>,
    /// Every agent type, by name.
    pub agents: BTreeMap<AgentType, AgentStatus>,
    /// Tasks the orchestrator holds, by state.
    pub tasks: TaskCounts,
    /// The deployment mode and pool bounds in force.
    pub scaling: ScalingStatus,
    /// The latest scaling decisions, newest first.
    pub recent_decisions: Vec<super::scaling::ScalingDecision>,
    /// Every LLM provider's cluster-wide budget, by name.
    pub providers: Vec<ProviderStatus>,
    /// Every tenant with unfinished tasks, by name (shown to admins only).
    pub tenants: Vec<TenantStatus>,
    /// The task book's replica group (raft replication), as its leader sees
    /// it; `null` with single replication. (Never skipped when empty: the
    /// cluster codec is positional.)
    pub replication: Option<super::replica::ReplicationStatus>,
}

/// One tenant's use of the cluster, in the cluster summary.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TenantStatus {
    /// The tenant.
    pub tenant: crate::Tenant,
    /// Its unfinished tasks (pending, running, failed awaiting a retry).
    pub unfinished: u64,
    /// Those waiting for a slot.
    pub pending: u64,
    /// Payload and result bytes of its unfinished tasks.
    pub held_bytes: u64,
    /// Its limit on unfinished tasks, if any.
    pub max_unfinished: Option<u64>,
    /// Its limit on held bytes, if any.
    pub max_held_bytes: Option<u64>,
}

/// One LLM provider's budget in the cluster summary.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProviderStatus {
    /// The `[providers.NAME]`.
    pub name: String,
    /// Calls started in the last minute, cluster-wide.
    pub requests_last_minute: u64,
    /// Its `requests_per_minute`, if set.
    pub requests_per_minute: Option<u32>,
    /// Tokens used in the last minute (estimates for calls not yet ended).
    pub tokens_last_minute: u64,
    /// Its `tokens_per_minute`, if set.
    pub tokens_per_minute: Option<u64>,
    /// Calls in flight.
    pub in_flight: u32,
    /// Its `max_concurrent`, if set.
    pub max_concurrent: Option<u32>,
    /// The largest share of any limit in use (0.0–1.0; 1.0 while paused).
    pub budget_in_use: f64,
    /// Time left of a pause the provider asked for (`Retry-After`).
    pub paused_for_ms: u64,
    /// Its circuit breaker.
    pub circuit: CircuitStatus,
}

/// The scaling settings in force, in the cluster summary.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScalingStatus {
    /// Deployment mode (`static`, `development`, `trusted-tester`, `production`).
    pub mode: String,
    /// Fewest slots.
    pub min_workers: u32,
    /// Most slots.
    pub max_workers: u32,
    /// Grow above this utilization.
    pub scale_up_threshold: f64,
    /// Shrink below this utilization.
    pub scale_down_threshold: f64,
    /// Weights follow demand.
    pub rebalance: bool,
    /// The slot total follows load.
    pub autoscale: bool,
}

/// Replies from the orchestrator.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum OrchestratorReply {
    /// Answer to `Submit`: one ack per task, in order.
    Submitted(Result<Vec<SubmitAck>, SubmitRejection>),
    /// Answer to `GetTask` and `AwaitTask`.
    Task(Option<TaskView>),
    /// Answer to `ListTasks`.
    Tasks(TaskPage),
    /// Answer to `Cancel`.
    Cancel(CancelOutcome),
    /// Answer to `ClusterStatus`.
    Cluster(ClusterStatus),
    /// Answer to `RetryDeadLetter`.
    Retry(RetryOutcome),
    /// Answer to `DrainNode`.
    Drain(DrainOutcome),
    /// Answer to `ScalingDecisions`.
    Decisions(Vec<super::scaling::ScalingDecision>),
    /// Answer to `HealthReport`.
    Health(super::scaling::SystemHealthReport),
    /// Answer to `UpdateAgent` and `UpdateScaling`: `Err` says what is invalid.
    Updated(Result<(), super::scaling::UpdateRejection>),
    /// Answer to `Ping`.
    Pong,
    /// The request could not be served.
    Failed(RequestFailure),
}

/// A request the orchestrator could not serve.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, thiserror::Error)]
pub enum RequestFailure {
    /// Transport-level failure.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The orchestrator is still loading its state.
    #[error("the orchestrator is starting up; retry shortly")]
    Starting,
    /// The addressed node is not (or no longer) the cluster's orchestrator.
    #[error("this node is not the cluster's orchestrator")]
    NotOrchestrator,
    /// The orchestrator stopped before it could answer: its leadership
    /// ended or lapsed (raft replication) or it restarted, while the request
    /// waited for its commit or in its mailbox. The request may or may not
    /// take effect (an entry proposed before the stop can still commit);
    /// retrying is safe for a submission with idempotency keys.
    #[error(
        "the orchestrator stopped before it answered (its leadership ended or it restarted): the request may or may not take effect; retry it, and give submissions an idempotency_key so that a retry returns the first task instead of making a second"
    )]
    Interrupted,
}

impl From<WireError> for OrchestratorReply {
    fn from(error: WireError) -> Self {
        OrchestratorReply::Failed(RequestFailure::Wire(error))
    }
}
