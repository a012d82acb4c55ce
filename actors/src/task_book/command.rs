//! What can happen to the task book, and what it asks the world to do.

use std::time::Duration;

use herd_protocol::{
    AgentType, AssignmentEpoch, FailureKind, JsonText, MemberId, TaskAssignment, TaskId,
    TaskReport, TaskState, UnixMillis,
};
use serde::{Deserialize, Serialize};

/// An input to [`super::TaskBook::apply`]. Every command carries the time it
/// happened, so the book never reads a clock and replaying a journal of
/// commands rebuilds the same state.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Command {
    /// Accept a batch of tasks, all or none, already checked by
    /// [`super::TaskBook::validate_submission`]. (Encoded exactly as the
    /// earlier `Submit { tasks, now }`, so existing journals still read.)
    Submit(super::Submission),
    /// Start up to `max` pending tasks of `agent_type` on `member`'s pool.
    Assign {
        /// The pool's node.
        member: MemberId,
        /// Which queue to take from.
        agent_type: AgentType,
        /// Most tasks to start.
        max: usize,
        /// Assignment time.
        now: UnixMillis,
    },
    /// A pool reports a finished attempt.
    Report {
        /// The reporting pool's node.
        member: MemberId,
        /// The report.
        report: TaskReport,
        /// Arrival time.
        now: UnixMillis,
    },
    /// A node left or was declared down: its attempts are lost.
    MemberLost {
        /// The node.
        member: MemberId,
        /// Detection time.
        now: UnixMillis,
    },
    /// Specific attempts on a node were lost (its pool restarted without
    /// them): retried at once, counting as attempts.
    AttemptsLost {
        /// The node.
        member: MemberId,
        /// The lost attempts.
        attempts: Vec<(TaskId, AssignmentEpoch)>,
        /// Time.
        now: UnixMillis,
    },
    /// A node hands back attempts it will not finish (drain): re-queued
    /// without counting as failures.
    HandBack {
        /// The node.
        member: MemberId,
        /// The attempts it gives up.
        attempts: Vec<(TaskId, AssignmentEpoch)>,
        /// Time.
        now: UnixMillis,
    },
    /// A user cancels a task.
    Cancel {
        /// The task.
        id: TaskId,
        /// Time.
        now: UnixMillis,
    },
    /// Time passes: retries whose backoff elapsed become pending.
    Tick {
        /// Current time.
        now: UnixMillis,
    },
    /// A dead task is given another chance, optionally with a new payload.
    RetryDead {
        /// The task.
        id: TaskId,
        /// Replacement payload.
        payload: Option<JsonText>,
        /// Time.
        now: UnixMillis,
    },
    /// The book's settings and agent types from now on. Replicated books
    /// take them from the log rather than each node's own configuration,
    /// so every replica applies later commands under the same rules
    /// (retention, retries, limits). Appended last: earlier journals'
    /// variant numbers are unchanged.
    Configure(Box<BookConfiguration>),
    /// Operators' run-time scaling changes from now on (weights, pins, pool
    /// bounds): the whole state after a successful `PUT /v1/agents/{type}`
    /// or `PUT /v1/scaling`, never a delta, so replaying it is idempotent.
    /// The book keeps the latest and nothing else changes. Appended last:
    /// earlier journals' and logs' variant numbers are unchanged.
    ScalingOverrides(Box<super::ScalingOverrides>),
    /// Names the replica group whose log this is (raft replication): the
    /// group's first leader commits it before anything else it writes. The
    /// first one in a log names the group for good; the replica's state
    /// machine keeps it, the book changes nothing. Never journaled. Appended
    /// last: earlier journals' and logs' variant numbers are unchanged.
    ReplicaGroup(Box<herd_protocol::messages::replica::ReplicaGroupId>),
}

/// The settings and agent types a book applies commands under.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BookConfiguration {
    /// The book's settings.
    pub settings: super::TaskBookSettings,
    /// Per-agent-type settings, by type.
    pub agent_types: std::collections::BTreeMap<AgentType, super::AgentTypeSettings>,
}

/// Why a report was not applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StaleReason {
    /// Its epoch is not the task's current one: an older attempt finished
    /// after the task was re-assigned (the fencing case).
    Duplicate,
    /// The same attempt was already reported (a report re-sent after a
    /// reconnect): nothing to do.
    AlreadyApplied,
    /// The task was cancelled while the attempt ran.
    Cancelled,
    /// No such task (never existed, or forgotten after retention).
    Unknown,
}

/// Why a running attempt was taken back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequeueReason {
    /// Its node was lost.
    MemberLost,
    /// Its node handed it back (drain).
    HandedBack,
    /// A failed attempt's backoff elapsed.
    RetryDue,
    /// A user retried it from the dead-letter queue.
    DeadLetterRetry,
}

/// What the book asks its owner to do, or tells it happened.
#[derive(Clone, Debug)]
pub enum Effect {
    /// Send this attempt to `member`'s pool.
    Dispatch {
        /// The pool's node.
        member: MemberId,
        /// The attempt.
        assignment: TaskAssignment,
    },
    /// Tell `member`'s pool to stop this attempt.
    StopAttempt {
        /// The pool's node.
        member: MemberId,
        /// The task.
        task_id: TaskId,
        /// The attempt.
        epoch: AssignmentEpoch,
    },
    /// The task reached a state others may wait for (terminal, or failed).
    StateChanged {
        /// The task.
        id: TaskId,
        /// Its agent type.
        agent_type: AgentType,
        /// The new state.
        state: TaskState,
    },
    /// An attempt went back to the queue.
    Requeued {
        /// The task.
        id: TaskId,
        /// Why.
        reason: RequeueReason,
    },
    /// A report was ignored.
    StaleReport {
        /// The task.
        id: TaskId,
        /// Why.
        reason: StaleReason,
    },
    /// A finished task was dropped from memory (retention limit).
    Forgotten(TaskId),
    /// An attempt ended with a report (feeds the circuit breaker, metrics
    /// and the rebalancer).
    AttemptEnded {
        /// Its agent type.
        agent_type: AgentType,
        /// `None` for success, else why it failed.
        failure: Option<FailureKind>,
        /// How long the handler ran (worker clock).
        run_time: Duration,
        /// How long the task waited before this attempt started.
        queue_wait: Duration,
        /// The handler's quality score, if any.
        score: Option<f64>,
    },
}
