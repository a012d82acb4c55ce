//! Everything the task book knows about one task.

use herd_protocol::task::TaskError;
use serde::{Deserialize, Serialize};

use super::retry::RetryPolicy;
use herd_protocol::{
    AgentType, AssignmentEpoch, JsonText, MemberId, Priority, TaskId, TaskState, TaskView, Tenant,
    UnixMillis, WorkerId,
};

/// One task's full record.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TaskRecord {
    pub id: TaskId,
    pub agent_type: AgentType,
    pub payload: JsonText,
    pub priority: Priority,
    pub timeout_s: u32,
    pub max_attempts: u32,
    pub idempotency_key: Option<String>,
    pub trace_context: Option<String>,
    /// The task's own backoff, overriding its agent type's.
    pub retry: Option<RetryPolicy>,
    pub state: TaskState,
    /// Attempts started so far.
    pub attempts: u32,
    /// Attempts that crashed their worker (poison detection).
    pub crashes: u32,
    /// The current (or last) assignment's fencing token.
    pub epoch: AssignmentEpoch,
    /// Node of the current or last attempt.
    pub member: Option<MemberId>,
    /// Worker slot of the last reported attempt.
    pub worker: Option<WorkerId>,
    pub result: Option<JsonText>,
    pub score: Option<f64>,
    pub error: Option<TaskError>,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
    pub started_at: Option<UnixMillis>,
    pub finished_at: Option<UnixMillis>,
    pub retry_at: Option<UnixMillis>,
    /// Identifies the task's current entry in its pending queue.
    pub queue_ticket: u64,
    /// When it last became pending (queue-wait measurements).
    pub queued_at: UnixMillis,
    /// The attempt whose report was last applied: a report of that attempt
    /// arriving again is a harmless re-send, any other stale one a duplicate.
    pub reported_epoch: Option<AssignmentEpoch>,
    /// Who the task belongs to (journal format 1 records read as the
    /// default tenant).
    pub tenant: Tenant,
}

impl TaskRecord {
    /// The API view of this record.
    pub fn view(&self) -> TaskView {
        TaskView {
            id: self.id,
            agent_type: self.agent_type.clone(),
            tenant: self.tenant.clone(),
            payload: self.payload.clone(),
            priority: self.priority,
            timeout_s: self.timeout_s,
            max_attempts: self.max_attempts,
            idempotency_key: self.idempotency_key.clone(),
            state: self.state,
            attempts: self.attempts,
            node: self.member.as_ref().map(|member| member.name.clone()),
            worker: self.worker,
            result: self.result.clone(),
            score: self.score,
            error: self.error.clone(),
            created_at: self.created_at,
            updated_at: self.updated_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
            retry_at: self.retry_at,
            waiting_for: None,
            tokens: None,
        }
    }
}
