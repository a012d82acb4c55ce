//! One worker slot: runs one attempt at a time under its time limit.

use std::sync::Arc;
use std::time::Duration;

use herd_protocol::{
    FailureKind, Mailbox, Outcome, TaskAssignment, TaskReport, UnixMillis, WorkerId,
};
use ractor::{Actor, ActorProcessingErr, ActorRef};

use super::actor::{PoolLocal, PoolMsg};
use crate::handlers::{HandlerError, HandlerRegistry, TaskInput};
use crate::task_trace;

/// Messages to a worker.
#[derive(Debug)]
pub enum WorkerMsg {
    /// Run this attempt and report to the pool.
    Run(TaskAssignment),
}

impl ractor::Message for WorkerMsg {}

/// Starts a worker.
pub struct WorkerArgs {
    /// The slot it occupies.
    pub slot: WorkerId,
    /// Distinguishes this life of the slot from earlier ones.
    pub generation: u64,
    /// Where reports go.
    pub pool: ActorRef<PoolMsg>,
    /// Handlers by agent type.
    pub handlers: Arc<HandlerRegistry>,
    /// Largest result accepted.
    pub max_result_bytes: usize,
}

/// A worker actor. A panic inside a handler fails this actor; its pool
/// notices through supervision, reports the task as crashed and starts a
/// replacement.
pub struct Worker;

impl Actor for Worker {
    type Msg = WorkerMsg;
    type State = WorkerArgs;
    type Arguments = WorkerArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: WorkerArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(args)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let WorkerMsg::Run(assignment) = message;
        let started_at = UnixMillis::now();
        let outcome = run_attempt(&state.handlers, &assignment, state.max_result_bytes).await;
        let report = TaskReport {
            task_id: assignment.task_id,
            epoch: assignment.epoch,
            worker: state.slot,
            outcome,
            started_at,
            finished_at: UnixMillis::now(),
        };
        state.pool.cast(Mailbox::Local(PoolLocal::Finished {
            slot: state.slot,
            generation: state.generation,
            report,
        }))?;
        Ok(())
    }
}

/// Runs one attempt with its handler under its time limit.
pub async fn run_attempt(
    handlers: &HandlerRegistry,
    assignment: &TaskAssignment,
    max_result_bytes: usize,
) -> Outcome {
    let Some(handler) = handlers.get(&assignment.agent_type) else {
        return Outcome::Failed {
            kind: FailureKind::Fatal,
            message: format!(
                "this node has no handler for agent type {:?}",
                assignment.agent_type.as_str()
            ),
        };
    };
    let timeout = Duration::from_millis(assignment.timeout_ms);
    // The handler's own spans (an exec child, an HTTP call) nest under this.
    let span = assignment
        .trace_context
        .as_deref()
        .filter(|_| task_trace::enabled())
        .map(|parent| {
            task_trace::TaskSpan::start(
                "herd.execute",
                opentelemetry::trace::SpanKind::Consumer,
                Some(parent),
                None,
                vec![
                    opentelemetry::KeyValue::new("herd.task_id", assignment.task_id.to_string()),
                    opentelemetry::KeyValue::new(
                        "herd.agent_type",
                        assignment.agent_type.to_string(),
                    ),
                    opentelemetry::KeyValue::new("herd.attempt", i64::from(assignment.attempt)),
                ],
            )
        });
    let input = TaskInput {
        task_id: assignment.task_id,
        agent_type: assignment.agent_type.clone(),
        attempt: assignment.attempt,
        payload: assignment.payload.clone(),
        timeout,
        trace_context: span
            .as_ref()
            .and_then(|s| s.traceparent())
            .or_else(|| assignment.trace_context.clone()),
        epoch: assignment.epoch,
        provider: assignment.provider.clone(),
    };
    let outcome = handle_in_time(handler.as_ref(), input, assignment, max_result_bytes).await;
    if let Outcome::Failed { kind, message } = &outcome {
        tracing::debug!(task_id = %assignment.task_id, agent_type = %assignment.agent_type, attempt = assignment.attempt, kind = kind.as_str(), error = %message, "attempt failed");
    }
    if let Some(span) = span {
        if let Outcome::Failed { kind, message } = &outcome {
            span.fail(format!("{}: {message}", kind.as_str()));
        }
        span.end();
    }
    outcome
}

async fn handle_in_time(
    handler: &dyn crate::handlers::TaskHandler,
    input: TaskInput,
    assignment: &TaskAssignment,
    max_result_bytes: usize,
) -> Outcome {
    let timeout = input.timeout;
    // Whatever the handler logs carries the task's id and type.
    let log_span = tracing::info_span!(
        "task",
        task_id = %assignment.task_id,
        agent_type = %assignment.agent_type,
        attempt = assignment.attempt
    );
    let run = tracing::Instrument::instrument(handler.handle(input), log_span);
    match tokio::time::timeout(timeout, run).await {
        Ok(Ok(output)) if output.result.len() > max_result_bytes => Outcome::Failed {
            kind: FailureKind::Fatal,
            message: format!(
                "result is {} bytes, over the limit of {max_result_bytes} bytes",
                output.result.len()
            ),
        },
        Ok(Ok(output)) => Outcome::Succeeded {
            result: output.result,
            score: output.score.filter(|s| s.is_finite()),
        },
        Ok(Err(HandlerError::Retryable(message))) => Outcome::Failed {
            kind: FailureKind::Retryable,
            message,
        },
        Ok(Err(HandlerError::Fatal(message))) => Outcome::Failed {
            kind: FailureKind::Fatal,
            message,
        },
        Err(_) => Outcome::Failed {
            kind: FailureKind::Timeout,
            message: format!(
                "attempt {} ran past its time limit of {} ms and was cancelled",
                assignment.attempt, assignment.timeout_ms
            ),
        },
    }
}
