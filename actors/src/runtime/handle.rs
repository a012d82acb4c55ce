//! Submitting and querying tasks from the node's own process.

use std::sync::Arc;
use std::time::{Duration, Instant};

use herd_config::NodeConfig;
use herd_protocol::messages::orchestrator::{
    CancelOutcome, ClusterStatus, DrainOutcome, OrchestratorReply, OrchestratorRequest,
    RequestFailure, RetryOutcome, SubmitAck, SubmitRejection, TaskPage, TaskQuery,
};
use herd_protocol::messages::scaling::{
    AgentUpdate, ScalingDecision, ScalingUpdate, SystemHealthReport, UpdateRejection,
};
use herd_protocol::{AgentType, JsonText, Mailbox, NodeName, TaskId, TaskSpec, TaskView};
use ractor::rpc::CallResult;
use tokio::sync::watch;

use crate::membership::ClusterView;
use crate::orchestrator::find_orchestrator;
use crate::task_trace;

/// Default time limit for one request to the orchestrator.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How much longer than the wait a forwarded `AwaitTask` call may live (see
/// [`NodeHandle::wait_for`]): ample for the reply to cross the cluster.
const FORWARDED_WAIT_MARGIN: Duration = Duration::from_secs(5);

/// Why a request failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// No orchestrator is up in the cluster this node sees.
    #[error(
        "no orchestrator is reachable from this node; start a node with the orchestrator role, or check that this node joined the cluster (GET /v1/cluster)"
    )]
    NoOrchestrator,
    /// Raft replication: no leader of the task book's replica group is
    /// reachable — a minority of its replicas, or an election under way.
    #[error(
        "no quorum: the task book's replica group has no leader this node can reach; replicas reachable from here: {}; unreachable: {}. Writes resume once a majority of the voting replicas is up and connected (GET /v1/cluster shows the group)",
        list_or_none(reachable),
        list_or_none(unreachable)
    )]
    NoQuorum {
        /// Nodes with a replica that this node sees up.
        reachable: Vec<String>,
        /// Nodes with a replica that this node does not see up.
        unreachable: Vec<String>,
    },
    /// The orchestrator did not answer in time.
    #[error("the orchestrator did not answer within {0:?}")]
    Timeout(Duration),
    /// The request could not be delivered.
    #[error("the orchestrator could not be reached: {0}")]
    Unreachable(String),
    /// The submission was refused.
    #[error(transparent)]
    Rejected(#[from] SubmitRejection),
    /// The batch is too large to send to the orchestrator; nothing was sent.
    #[error(transparent)]
    BatchTooLarge(#[from] super::BatchTooLarge),
    /// The orchestrator could not serve the request.
    #[error(transparent)]
    Failed(#[from] RequestFailure),
    /// No task has this id.
    #[error("no task {0}")]
    NotFound(TaskId),
    /// The answer did not match the question (a bug or version skew).
    #[error("the orchestrator sent an unexpected answer")]
    UnexpectedReply,
}

impl ClientError {
    /// True for the errors a failover causes and a retry after it cures:
    /// no orchestrator or no quorum reachable, the orchestrator unreachable,
    /// or stopped before it answered.
    pub fn is_failover(&self) -> bool {
        matches!(
            self,
            ClientError::NoOrchestrator
                | ClientError::NoQuorum { .. }
                | ClientError::Unreachable(_)
                | ClientError::Failed(
                    RequestFailure::Interrupted
                        | RequestFailure::Starting
                        | RequestFailure::NotOrchestrator
                )
        )
    }
}

/// How long a wait interrupted by a failover pauses before it asks the
/// next orchestrator (about the time an election takes is spent waiting in
/// small steps, so the wait resumes soon after a new leader runs).
const FAILOVER_RETRY_PAUSE: Duration = Duration::from_millis(100);

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

/// Why no orchestrator can be asked: with raft replication (some member
/// holds a replica), the group lacks a reachable leader.
fn no_orchestrator(view: &crate::membership::ClusterView) -> ClientError {
    let replicas: Vec<&crate::membership::MemberInfo> = std::iter::once(&view.local)
        .chain(view.peers.values())
        .filter(|info| info.replica_id.is_some())
        .collect();
    if replicas.is_empty() {
        return ClientError::NoOrchestrator;
    }
    let (reachable, unreachable): (Vec<_>, Vec<_>) = replicas
        .into_iter()
        .partition(|info| view.is_up(&info.member));
    let names = |infos: Vec<&crate::membership::MemberInfo>| {
        infos
            .into_iter()
            .map(|info| info.member.name.to_string())
            .collect()
    };
    ClientError::NoQuorum {
        reachable: names(reachable),
        unreachable: names(unreachable),
    }
}

/// Talks to the cluster's orchestrator, wherever it runs. Cheap to clone.
#[derive(Clone)]
pub struct NodeHandle {
    view: watch::Receiver<ClusterView>,
    config: Arc<NodeConfig>,
}

impl NodeHandle {
    pub(crate) fn new(view: watch::Receiver<ClusterView>, config: Arc<NodeConfig>) -> Self {
        NodeHandle { view, config }
    }

    /// The cluster as this node sees it now.
    pub fn view(&self) -> ClusterView {
        self.view.borrow().clone()
    }

    /// A receiver that is notified of every change of the view.
    pub fn watch_view(&self) -> watch::Receiver<ClusterView> {
        self.view.clone()
    }

    /// The node's configuration.
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// The supervision tree of the whole cluster (`GET /v1/supervision`):
    /// every node's supervisor and pool are asked, each within a deadline;
    /// a node that does not answer is listed as unreported.
    pub async fn supervision(&self) -> herd_protocol::messages::supervision::SupervisionTree {
        let view = self.view.borrow().clone();
        crate::monitor::supervision_tree(&view).await
    }

    /// Test hook: makes this node's worker pool block its mailbox forever,
    /// as a pool stuck in a handler would. Does nothing (and returns false)
    /// unless the process was started with `HERD_TEST_HOOKS=1`
    /// ([`super::test_hooks`]); returns false as well without a local pool.
    #[doc(hidden)]
    pub fn test_hook_block_pool(&self) -> bool {
        if !super::test_hooks::enabled() {
            return false;
        }
        ractor::pg::get_local_members(&herd_protocol::messages::groups::POOLS.to_string())
            .into_iter()
            .next()
            .map(ractor::ActorRef::<crate::pool::PoolMsg>::from)
            .is_some_and(|pool| {
                pool.cast(Mailbox::Local(crate::pool::PoolLocal::TestHookStuck))
                    .is_ok()
            })
    }

    /// Test hook: makes the orchestrator on this node block its mailbox
    /// forever. Does nothing (and returns false) unless the process was
    /// started with `HERD_TEST_HOOKS=1`, or without a local orchestrator.
    #[doc(hidden)]
    pub fn test_hook_block_orchestrator(&self) -> bool {
        if !super::test_hooks::enabled() {
            return false;
        }
        ractor::pg::get_local_members(&herd_protocol::messages::groups::ORCHESTRATOR.to_string())
            .into_iter()
            .next()
            .map(ractor::ActorRef::<crate::orchestrator::OrchestratorMsg>::from)
            .is_some_and(|orchestrator| {
                orchestrator
                    .cast(Mailbox::Local(
                        crate::orchestrator::OrchestratorLocal::TestHookStuck,
                    ))
                    .is_ok()
            })
    }

    /// Whether the orchestrator the view names can be reached from this node
    /// now (its actor's process-group entry has arrived).
    pub fn orchestrator_reachable(&self) -> bool {
        find_orchestrator(&self.view.borrow()).is_some()
    }

    /// Waits until initial discovery is done and an orchestrator is reachable.
    pub async fn wait_until_ready(&self, limit: Duration) -> Result<(), ClientError> {
        let deadline = Instant::now() + limit;
        let mut view = self.view.clone();
        loop {
            {
                let current = view.borrow_and_update();
                if current.discovery_complete && find_orchestrator(&current).is_some() {
                    return Ok(());
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(no_orchestrator(&view.borrow()));
            }
            // The orchestrator's group entry can arrive without a view change.
            let _ = tokio::time::timeout(left.min(Duration::from_millis(50)), view.changed()).await;
        }
    }

    async fn request(
        &self,
        request: OrchestratorRequest,
        limit: Duration,
    ) -> Result<OrchestratorReply, ClientError> {
        let orchestrator = {
            let view = self.view.borrow();
            find_orchestrator(&view).ok_or_else(|| no_orchestrator(&view))?
        };
        match orchestrator
            .call(|port| Mailbox::Call(request, port), Some(limit))
            .await
        {
            Ok(CallResult::Success(OrchestratorReply::Failed(failure))) => {
                Err(ClientError::Failed(failure))
            }
            Ok(CallResult::Success(reply)) => Ok(reply),
            Ok(CallResult::Timeout) => Err(ClientError::Timeout(limit)),
            // The orchestrator stopped with the request in its mailbox (a
            // request it had taken is answered `Interrupted` as it stops):
            // the same uncertainty for the caller.
            Ok(CallResult::SenderError) => Err(ClientError::Failed(RequestFailure::Interrupted)),
            Err(error) => Err(ClientError::Unreachable(error.to_string())),
        }
    }

    /// Submits a batch of tasks, all or none; acks are in order. A batch over
    /// the configured task count or encoded size is refused with
    /// [`ClientError::BatchTooLarge`] before anything is sent. While traces
    /// are exported, the batch gets a `herd.submit` span (a child of the
    /// first task's trace context, if any) that its tasks' spans descend from.
    pub async fn submit_batch(
        &self,
        mut specs: Vec<TaskSpec>,
    ) -> Result<Vec<SubmitAck>, ClientError> {
        super::batch_limit::check_batch(&specs, &self.config.limits)?;
        let span = task_trace::enabled().then(|| {
            let span = task_trace::TaskSpan::start(
                "herd.submit",
                opentelemetry::trace::SpanKind::Server,
                specs.first().and_then(|s| s.trace_context.as_deref()),
                None,
                vec![
                    opentelemetry::KeyValue::new("herd.node", self.config.name.to_string()),
                    opentelemetry::KeyValue::new("herd.tasks", specs.len() as i64),
                ],
            );
            let traceparent = span.traceparent();
            for spec in &mut specs {
                spec.trace_context = traceparent.clone();
            }
            span
        });
        let answer = match self
            .request(OrchestratorRequest::Submit(specs), DEFAULT_REQUEST_TIMEOUT)
            .await?
        {
            OrchestratorReply::Submitted(Ok(acks)) => Ok(acks),
            OrchestratorReply::Submitted(Err(rejection)) => Err(ClientError::Rejected(rejection)),
            _ => Err(ClientError::UnexpectedReply),
        };
        if let Some(span) = span {
            match &answer {
                Ok(acks) if acks.len() == 1 => span.set(opentelemetry::KeyValue::new(
                    "herd.task_id",
                    acks[0].id.to_string(),
                )),
                Ok(_) => {}
                Err(error) => span.fail(error.to_string()),
            }
            span.end();
        }
        answer
    }

    /// Submits one task.
    pub async fn submit(&self, spec: TaskSpec) -> Result<SubmitAck, ClientError> {
        let mut acks = self.submit_batch(vec![spec]).await?;
        acks.pop().ok_or(ClientError::UnexpectedReply)
    }

    /// One task's current view.
    pub async fn task(&self, id: TaskId) -> Result<Option<TaskView>, ClientError> {
        match self
            .request(OrchestratorRequest::GetTask(id), DEFAULT_REQUEST_TIMEOUT)
            .await?
        {
            OrchestratorReply::Task(view) => Ok(view),
            _ => Err(ClientError::UnexpectedReply),
        }
    }

    /// Waits until the task is terminal (succeeded, dead or cancelled);
    /// [`ClientError::Timeout`] when `limit` runs out first, whichever node
    /// the orchestrator runs on.
    ///
    /// A wait outlives a failover: when the orchestrator stops (its
    /// leadership ended) or none is reachable for a moment, the wait is
    /// asked again of the next one until `limit` runs out — then
    /// [`ClientError::Timeout`], or that failover error if no time was left
    /// to ask again.
    pub async fn wait_for(&self, id: TaskId, limit: Duration) -> Result<TaskView, ClientError> {
        let deadline = Instant::now() + limit;
        let reply = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            // The wait is timed here, not by the call: a call forwarded to a
            // peer is relayed through reply ports that give up at the call's
            // own limit and drop the caller's port, which reads as
            // "unreachable" rather than "not finished yet". Giving the call a
            // longer limit than the wait lets this node's timer always end it
            // first.
            let forwarded = self.request(
                OrchestratorRequest::AwaitTask(id),
                left + FORWARDED_WAIT_MARGIN,
            );
            let error = match tokio::time::timeout(left, forwarded).await {
                Err(_) => return Err(ClientError::Timeout(limit)),
                Ok(Ok(reply)) => break reply,
                Ok(Err(error)) if error.is_failover() => error,
                Ok(Err(error)) => return Err(error),
            };
            let pause =
                FAILOVER_RETRY_PAUSE.min(deadline.saturating_duration_since(Instant::now()));
            if pause.is_zero() {
                return Err(error);
            }
            tokio::time::sleep(pause).await;
        };
        match reply {
            OrchestratorReply::Task(Some(view)) => Ok(view),
            OrchestratorReply::Task(None) => Err(ClientError::NotFound(id)),
            _ => Err(ClientError::UnexpectedReply),
        }
    }

    /// Submits a task and waits for it to finish.
    pub async fn run(&self, spec: TaskSpec, limit: Duration) -> Result<TaskView, ClientError> {
        let ack = self.submit(spec).await?;
        self.wait_for(ack.id, limit).await
    }

    /// A page of tasks.
    pub async fn list(&self, query: TaskQuery) -> Result<TaskPage, ClientError> {
        match self
            .request(
                OrchestratorRequest::ListTasks(query),
                DEFAULT_REQUEST_TIMEOUT,
            )
            .await?
        {
            OrchestratorReply::Tasks(page) => Ok(page),
            _ => Err(ClientError::UnexpectedReply),
        }
    }

    /// Cancels a task that has not finished.
    pub async fn cancel(&self, id: TaskId) -> Result<CancelOutcome, ClientError> {
        match self
            .request(OrchestratorRequest::Cancel(id), DEFAULT_REQUEST_TIMEOUT)
            .await?
        {
            OrchestratorReply::Cancel(outcome) => Ok(outcome),
            _ => Err(ClientError::UnexpectedReply),
        }
    }

    /// The cluster summary.
    pub async fn cluster(&self) -> Result<ClusterStatus, ClientError> {
        match self
            .request(OrchestratorRequest::ClusterStatus, DEFAULT_REQUEST_TIMEOUT)
            .await?
        {
            OrchestratorReply::Cluster(status) => Ok(status),
            _ => Err(ClientError::UnexpectedReply),
        }
    }

    /// Gives a dead task another chance, optionally with a new payload.
    pub async fn retry_dead_letter(
        &self,
        id: TaskId,
        payload: Option<JsonText>,
    ) -> Result<RetryOutcome, ClientError> {
        match self
            .request(
                OrchestratorRequest::RetryDeadLetter { id, payload },
                DEFAULT_REQUEST_TIMEOUT,
            )
            .await?
        {
            OrchestratorReply::Retry(outcome) => Ok(outcome),
            OrchestratorReply::Submitted(Err(rejection)) => Err(ClientError::Rejected(rejection)),
            _ => Err(ClientError::UnexpectedReply),
        }
    }

    /// Drains a node: it takes no new work, lets running tasks finish within
    /// its grace period, hands back the rest, and leaves.
    pub async fn drain_node(&self, name: NodeName) -> Result<DrainOutcome, ClientError> {
        match self
            .request(
                OrchestratorRequest::DrainNode(name),
                DEFAULT_REQUEST_TIMEOUT,
            )
            .await?
        {
            OrchestratorReply::Drain(outcome) => Ok(outcome),
            _ => Err(ClientError::UnexpectedReply),
        }
    }

    /// Whether this node's worker pool actor is running.
    pub fn pool_running(&self) -> bool {
        !ractor::pg::get_local_members(&herd_protocol::messages::groups::POOLS.to_string())
            .is_empty()
    }

    /// The most recent scaling decisions, newest first.
    pub async fn scaling_decisions(&self, limit: u32) -> Result<Vec<ScalingDecision>, ClientError> {
        match self
            .request(
                OrchestratorRequest::ScalingDecisions { limit },
                DEFAULT_REQUEST_TIMEOUT,
            )
            .await?
        {
            OrchestratorReply::Decisions(decisions) => Ok(decisions),
            _ => Err(ClientError::UnexpectedReply),
        }
    }

    /// Seed 004's system health report.
    pub async fn health_report(&self) -> Result<SystemHealthReport, ClientError> {
        match self
            .request(OrchestratorRequest::HealthReport, DEFAULT_REQUEST_TIMEOUT)
            .await?
        {
            OrchestratorReply::Health(report) => Ok(report),
            _ => Err(ClientError::UnexpectedReply),
        }
    }

    /// Changes an agent type's weight or pin at run time. `Ok` comes once
    /// the change is recorded in the task book (journaled, or committed on
    /// a majority of replicas), so it outlives the orchestrator. The inner
    /// `Err` says what is invalid (nothing changed then).
    pub async fn update_agent(
        &self,
        agent_type: AgentType,
        update: AgentUpdate,
    ) -> Result<Result<(), UpdateRejection>, ClientError> {
        match self
            .request(
                OrchestratorRequest::UpdateAgent { agent_type, update },
                DEFAULT_REQUEST_TIMEOUT,
            )
            .await?
        {
            OrchestratorReply::Updated(result) => Ok(result),
            _ => Err(ClientError::UnexpectedReply),
        }
    }

    /// Changes the pool bounds at run time. `Ok` comes once the change is
    /// recorded in the task book, as for [`Self::update_agent`]. The inner
    /// `Err` says what is invalid (nothing changed then).
    pub async fn update_scaling(
        &self,
        update: ScalingUpdate,
    ) -> Result<Result<(), UpdateRejection>, ClientError> {
        match self
            .request(
                OrchestratorRequest::UpdateScaling(update),
                DEFAULT_REQUEST_TIMEOUT,
            )
            .await?
        {
            OrchestratorReply::Updated(result) => Ok(result),
            _ => Err(ClientError::UnexpectedReply),
        }
    }
}
