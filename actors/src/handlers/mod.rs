//! What runs a task: the [`TaskHandler`] trait and the built-in handlers.
//!
//! Library users implement [`TaskHandler`] and register it for an agent type;
//! config files pick a built-in (`echo`, `sleep`, `exec`, `http`, `llm`). A handler
//! returns a result, or an error that says whether retrying can help. Time
//! limits are enforced around the handler by its worker: when an attempt
//! times out its future is dropped, which also kills an `exec` child.

mod echo;
mod exec;
mod http;
mod llm;
mod registry;
mod sleep;
#[cfg(test)]
mod stand_in;

use std::time::Duration;

use herd_protocol::{AgentType, AssignmentEpoch, JsonText, TaskId};
use serde::Serialize;

pub use echo::EchoHandler;
pub use exec::ExecHandler;
pub use http::HttpHandler;
pub use llm::{LlmHandler, ProviderCallSink};
pub use registry::{HandlerRegistry, RegistryError};
pub use sleep::SleepHandler;

/// One attempt of one task, as a handler sees it.
#[derive(Clone, Debug)]
pub struct TaskInput {
    /// The task.
    pub task_id: TaskId,
    /// Its agent type.
    pub agent_type: AgentType,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The submitted payload.
    pub payload: JsonText,
    /// Time this attempt may take; the worker cancels it afterwards.
    pub timeout: Duration,
    /// W3C `traceparent` of the submitter, if any.
    pub trace_context: Option<String>,
    /// This attempt's fencing token (reported back with provider calls).
    pub epoch: AssignmentEpoch,
    /// For an `llm` agent type: the provider the orchestrator granted this
    /// attempt a call to; `None` for other handlers.
    pub provider: Option<String>,
}

impl TaskInput {
    /// Parses the payload.
    pub fn payload_as<T: serde::de::DeserializeOwned>(&self) -> Result<T, HandlerError> {
        self.payload.decode().map_err(|error| {
            HandlerError::Fatal(format!("payload does not fit this agent type: {error}"))
        })
    }
}

/// A handler's successful answer.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskOutput {
    /// The result document.
    pub result: JsonText,
    /// Optional quality score in [0, 1]; the rebalancer favours types whose
    /// results score well.
    pub score: Option<f64>,
}

impl TaskOutput {
    /// A result serialised from any value.
    pub fn json(value: &impl Serialize) -> Result<Self, HandlerError> {
        let result = JsonText::from_value(value)
            .map_err(|error| HandlerError::Fatal(format!("result is not serialisable: {error}")))?;
        Ok(TaskOutput {
            result,
            score: None,
        })
    }

    /// A result given as JSON text.
    pub fn raw(result: JsonText) -> Self {
        TaskOutput {
            result,
            score: None,
        }
    }

    /// Adds a quality score.
    pub fn with_score(mut self, score: f64) -> Self {
        self.score = Some(score);
        self
    }
}

/// Why an attempt failed, as the handler judges it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    /// Worth retrying (rate limit, unavailable dependency, transient I/O).
    #[error("{0}")]
    Retryable(String),
    /// Retrying cannot help (bad payload, permanent refusal).
    #[error("{0}")]
    Fatal(String),
}

/// Runs tasks of one or more agent types. Implementations must be cheap to
/// share: one instance serves every worker slot of the node concurrently.
#[async_trait::async_trait]
pub trait TaskHandler: Send + Sync + 'static {
    /// Runs one attempt. May be cancelled at any `.await` when the attempt
    /// times out or the task is cancelled.
    async fn handle(&self, input: TaskInput) -> Result<TaskOutput, HandlerError>;
}
