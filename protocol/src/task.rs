//! Tasks as users submit them, as workers receive them, and as they report back.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ids::{AgentType, AssignmentEpoch, NodeName, TaskId, WorkerId};
use crate::json::JsonText;
use crate::limits::{RETRY_DELAY_S_RANGE, RETRY_FACTOR_RANGE};
use crate::tenant::Tenant;
use crate::time::UnixMillis;

/// Scheduling priority, 0 (lowest) to 9 (highest); 5 by default. Within one
/// agent type a higher priority always runs first; equal priorities run in
/// submission order.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Priority(u8);

impl Priority {
    /// The highest priority.
    pub const MAX: Priority = Priority(9);
    /// The default priority.
    pub const DEFAULT: Priority = Priority(5);
    /// Number of distinct priorities.
    pub const LEVELS: usize = 10;

    /// `Some` for 0..=9.
    pub fn new(level: u8) -> Option<Priority> {
        (level <= Self::MAX.0).then_some(Priority(level))
    }

    /// The level, 0..=9.
    pub fn level(self) -> u8 {
        self.0
    }
}

impl Default for Priority {
    fn default() -> Self {
        Priority::DEFAULT
    }
}

/// Everything a submitter says about a task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// Which agent type runs it.
    pub agent_type: AgentType,
    /// Handler input.
    pub payload: JsonText,
    /// Scheduling priority.
    pub priority: Priority,
    /// Per-attempt time limit; `None` uses the agent type's default.
    pub timeout_s: Option<u32>,
    /// Attempts before the task is dead; `None` uses the agent type's default.
    pub max_attempts: Option<u32>,
    /// Submitting the same key again returns the first task's id.
    pub idempotency_key: Option<String>,
    /// W3C `traceparent` of the submitter's span, so the task's spans on the
    /// executing node join the submitter's trace.
    pub trace_context: Option<String>,
    /// Backoff between attempts; `None` uses the agent type's policy.
    pub retry: Option<RetrySpec>,
    /// Who the task belongs to: the submitting token's tenant.
    pub tenant: Tenant,
}

/// How long to wait between attempts of one task. (Externally tagged, as
/// bincode requires; the HTTP API has its own `{"backoff": ...}` shape.)
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum RetrySpec {
    /// `initial_s × factor^(n-1)`, capped at `max_s`, plus up to 1 s of jitter.
    Exponential {
        /// Delay before the second attempt, in seconds.
        initial_s: f64,
        /// Growth per attempt.
        factor: f64,
        /// Longest delay, in seconds.
        max_s: f64,
    },
    /// The same delay every time.
    Linear {
        /// The delay, in seconds.
        delay_s: f64,
    },
}

impl RetrySpec {
    /// Checks the numbers; the message says what is allowed.
    pub fn validate(&self) -> Result<(), String> {
        let in_range = |value: f64, name: &str| {
            if value.is_finite() && RETRY_DELAY_S_RANGE.contains(&value) {
                Ok(())
            } else {
                Err(format!(
                    "{name} is {value}; give {} to {} seconds",
                    RETRY_DELAY_S_RANGE.start(),
                    RETRY_DELAY_S_RANGE.end()
                ))
            }
        };
        match self {
            RetrySpec::Exponential {
                initial_s,
                factor,
                max_s,
            } => {
                in_range(*initial_s, "initial_s")?;
                in_range(*max_s, "max_s")?;
                if !(factor.is_finite() && RETRY_FACTOR_RANGE.contains(factor)) {
                    return Err(format!(
                        "factor is {factor}; give {:?} to {:?}",
                        RETRY_FACTOR_RANGE.start(),
                        RETRY_FACTOR_RANGE.end()
                    ));
                }
                if max_s < initial_s {
                    return Err(format!("max_s ({max_s}) is below initial_s ({initial_s})"));
                }
                Ok(())
            }
            RetrySpec::Linear { delay_s } => in_range(*delay_s, "delay_s"),
        }
    }
}

impl TaskSpec {
    /// A spec with default priority, timeout and attempts.
    pub fn new(agent_type: impl Into<AgentType>, payload: JsonText) -> Self {
        TaskSpec {
            agent_type: agent_type.into(),
            payload,
            priority: Priority::DEFAULT,
            timeout_s: None,
            max_attempts: None,
            idempotency_key: None,
            trace_context: None,
            retry: None,
            tenant: Tenant::default(),
        }
    }
}

/// Where a task is in its life.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Waiting for a worker.
    Pending,
    /// Assigned to a worker.
    Running,
    /// Finished with a result (terminal).
    Succeeded,
    /// The last attempt failed and a retry is scheduled (see `retry_at`).
    Failed,
    /// Failed for good: fatal error or attempts exhausted; in the dead-letter
    /// queue (terminal until retried from there).
    Dead,
    /// Cancelled by a user (terminal).
    Cancelled,
}

impl TaskState {
    /// Every state, in lifecycle order.
    pub const ALL: [TaskState; 6] = [
        TaskState::Pending,
        TaskState::Running,
        TaskState::Succeeded,
        TaskState::Failed,
        TaskState::Dead,
        TaskState::Cancelled,
    ];

    /// True once nothing more will happen to the task on its own.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Succeeded | TaskState::Dead | TaskState::Cancelled
        )
    }

    /// The lowercase name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Running => "running",
            TaskState::Succeeded => "succeeded",
            TaskState::Failed => "failed",
            TaskState::Dead => "dead",
            TaskState::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text is not one of the six state names.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "unknown task state {0:?}; expected one of pending, running, succeeded, failed, dead, cancelled"
)]
pub struct UnknownTaskState(pub String);

impl FromStr for TaskState {
    type Err = UnknownTaskState;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        TaskState::ALL
            .into_iter()
            .find(|state| state.as_str() == text)
            .ok_or_else(|| UnknownTaskState(text.to_string()))
    }
}

/// Why an attempt failed.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The handler reported an error worth retrying.
    Retryable,
    /// The handler reported an error retrying cannot fix.
    Fatal,
    /// The attempt ran past its time limit and was cancelled.
    Timeout,
    /// The worker panicked or died while running the task.
    Crash,
    /// The node running the task left or was declared down.
    NodeLost,
}

impl FailureKind {
    /// The lowercase name used in the API and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Retryable => "retryable",
            FailureKind::Fatal => "fatal",
            FailureKind::Timeout => "timeout",
            FailureKind::Crash => "crash",
            FailureKind::NodeLost => "node_lost",
        }
    }
}

/// The error a failed or dead task shows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskError {
    /// What kind of failure.
    pub kind: FailureKind,
    /// What went wrong, for a person.
    pub message: String,
}

/// A task as the API shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskView {
    /// The task's id.
    pub id: TaskId,
    /// Its agent type.
    pub agent_type: AgentType,
    /// Who it belongs to.
    #[serde(default)]
    pub tenant: Tenant,
    /// Handler input.
    pub payload: JsonText,
    /// Scheduling priority (0–9).
    pub priority: Priority,
    /// Per-attempt time limit in seconds.
    pub timeout_s: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// The submitter's idempotency key, if any.
    pub idempotency_key: Option<String>,
    /// Lifecycle state.
    pub state: TaskState,
    /// Attempts started so far.
    pub attempts: u32,
    /// Node of the latest attempt.
    pub node: Option<NodeName>,
    /// Worker slot of the latest attempt.
    pub worker: Option<WorkerId>,
    /// The handler's result, once succeeded.
    pub result: Option<JsonText>,
    /// Quality score the handler reported with its result, if any.
    pub score: Option<f64>,
    /// The latest failure, if any.
    pub error: Option<TaskError>,
    /// When the task was accepted.
    pub created_at: UnixMillis,
    /// When anything about it last changed.
    pub updated_at: UnixMillis,
    /// When the latest attempt started.
    pub started_at: Option<UnixMillis>,
    /// When it reached a terminal state.
    pub finished_at: Option<UnixMillis>,
    /// When a scheduled retry becomes eligible (state `failed`).
    pub retry_at: Option<UnixMillis>,
    /// For a pending task of an `llm` agent type that waits for a
    /// provider's budget: which provider and why.
    pub waiting_for: Option<String>,
    /// For a succeeded task of an `llm` agent type: the tokens its call used.
    pub tokens: Option<TokenUsage>,
}

/// Tokens one LLM call used, as the provider counted them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUsage {
    /// Tokens of the prompt.
    pub prompt_tokens: u64,
    /// Tokens of the completion.
    pub completion_tokens: u64,
}

/// One attempt of one task, pushed from the orchestrator to a worker pool.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskAssignment {
    /// The task.
    pub task_id: TaskId,
    /// Fencing token of this attempt; the report must carry it back.
    pub epoch: AssignmentEpoch,
    /// Which handler runs it.
    pub agent_type: AgentType,
    /// Handler input.
    pub payload: JsonText,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// Time limit for this attempt, in milliseconds.
    pub timeout_ms: u64,
    /// W3C `traceparent` to continue.
    pub trace_context: Option<String>,
    /// For an `llm` agent type: the provider this attempt was granted a
    /// call to (the orchestrator's budget already counts it).
    pub provider: Option<String>,
}

/// How one attempt ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    /// The handler returned a result.
    Succeeded {
        /// The result document.
        result: JsonText,
        /// Optional quality score (used by the rebalancer).
        score: Option<f64>,
    },
    /// The attempt failed.
    Failed {
        /// Why.
        kind: FailureKind,
        /// Details for a person (for `exec`, the stderr tail).
        message: String,
    },
}

/// A worker pool's report of one finished attempt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskReport {
    /// The task.
    pub task_id: TaskId,
    /// The epoch of the assignment this reports on.
    pub epoch: AssignmentEpoch,
    /// The slot that ran it.
    pub worker: WorkerId,
    /// How it ended.
    pub outcome: Outcome,
    /// When the handler started.
    pub started_at: UnixMillis,
    /// When the handler returned.
    pub finished_at: UnixMillis,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_parse_from_their_api_names() {
        for state in TaskState::ALL {
            assert_eq!(state.as_str().parse::<TaskState>().unwrap(), state);
            assert_eq!(
                serde_json::to_string(&state).unwrap(),
                format!("\"{}\"", state.as_str())
            );
        }
        assert!("done".parse::<TaskState>().is_err());
    }

    #[test]
    fn priority_accepts_zero_to_nine() {
        assert!(Priority::new(0).is_some());
        assert!(Priority::new(9).is_some());
        assert!(Priority::new(10).is_none());
    }
}
