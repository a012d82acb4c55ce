//! The orchestrator's state: a deterministic machine over tasks.
//!
//! [`TaskBook::apply`] takes a [`Command`] (submit, assign, report, node lost,
//! cancel, tick, ...) and returns [`Effect`]s for its owner to carry out
//! (dispatch an attempt, stop an attempt, wake waiters). It reads no clock
//! and does no I/O, so it is tested directly and a journal of commands
//! rebuilds it exactly.
//!
//! Guarantees, checked by [`TaskBook::check_invariants`] and property tests:
//! - every accepted task is in exactly one state, and the per-state counts,
//!   the pending queues and the per-node running sets agree with the records;
//! - a task is running on at most one node, under one assignment epoch;
//! - a report is applied only if it carries the task's current epoch, so a
//!   task completes at most once and a stale attempt never overwrites a newer
//!   one (it is reported as [`StaleReason::Duplicate`]);
//! - a terminal task never changes again, except a dead one retried on
//!   request.

mod command;
mod queue;
mod record;
mod retry;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

use serde::{Deserialize, Serialize};

use herd_protocol::messages::orchestrator::{
    SubmitAck, SubmitRejection, TaskCounts, TaskPage, TaskQuery,
};
use herd_protocol::task::TaskError;
use herd_protocol::{
    AgentType, AssignmentEpoch, FailureKind, JsonText, MemberId, Outcome, TaskAssignment, TaskId,
    TaskReport, TaskSpec, TaskState, TaskView, UnixMillis,
};

pub use command::{Command, Effect, RequeueReason, StaleReason};
pub use queue::PendingQueue;
pub use record::TaskRecord;
pub use retry::{Backoff, RetryPolicy};

/// Limits and defaults the book enforces.
#[derive(Clone, Debug)]
pub struct TaskBookSettings {
    /// Per-attempt time limit for tasks and types that do not say.
    pub default_timeout_s: u32,
    /// Attempts for tasks and types that do not say.
    pub default_max_attempts: u32,
    /// Finished tasks kept; the oldest beyond this are forgotten.
    pub retain_finished: usize,
    /// Unfinished tasks accepted before submissions are refused.
    pub max_unfinished: u64,
    /// Largest payload, in bytes.
    pub max_payload_bytes: usize,
    /// Delay between attempts.
    pub retry: RetryPolicy,
    /// Crashes after which a task is dead (poison).
    pub poison_crashes: u32,
    /// Longest per-attempt time limit (the pool's `worker_timeout_seconds`):
    /// longer requests are refused, longer defaults are cut to it.
    pub max_timeout_s: u32,
}

impl Default for TaskBookSettings {
    fn default() -> Self {
        use herd_protocol::defaults::{
            DEFAULT_MAX_ATTEMPTS, DEFAULT_MAX_PAYLOAD_BYTES, DEFAULT_MAX_UNFINISHED_TASKS,
            DEFAULT_POISON_CRASHES, DEFAULT_RETAIN_FINISHED, DEFAULT_TIMEOUT_S,
        };
        TaskBookSettings {
            default_timeout_s: DEFAULT_TIMEOUT_S,
            default_max_attempts: DEFAULT_MAX_ATTEMPTS,
            retain_finished: DEFAULT_RETAIN_FINISHED,
            max_unfinished: DEFAULT_MAX_UNFINISHED_TASKS,
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            retry: RetryPolicy::default(),
            poison_crashes: DEFAULT_POISON_CRASHES,
            max_timeout_s: MAX_TIMEOUT_S,
        }
    }
}

/// Per-agent-type defaults.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentTypeSettings {
    /// Overrides the book's default timeout.
    pub timeout_s: Option<u32>,
    /// Overrides the book's default attempts.
    pub max_attempts: Option<u32>,
    /// Overrides the book's default backoff.
    pub retry: Option<RetryPolicy>,
}

// Defined once in herd-protocol (the config and the API check them too).
pub use herd_protocol::limits::{MAX_ATTEMPTS, MAX_IDEMPOTENCY_KEY_BYTES, MAX_TIMEOUT_S};

/// What runs on one node, by agent type.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct MemberLoad {
    tasks: HashSet<TaskId>,
    by_type: HashMap<AgentType, u32>,
}

/// The orchestrator's task state machine. See the module docs.
///
/// It serialises (for snapshots) without its settings and agent types, which
/// come from configuration: see [`TaskBook::reconfigure`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskBook {
    #[serde(skip)]
    settings: TaskBookSettings,
    #[serde(skip)]
    agent_types: BTreeMap<AgentType, AgentTypeSettings>,
    tasks: BTreeMap<TaskId, TaskRecord>,
    queues: HashMap<AgentType, PendingQueue>,
    idempotency: HashMap<String, TaskId>,
    load: HashMap<MemberId, MemberLoad>,
    retries: BTreeSet<(UnixMillis, TaskId)>,
    finished: VecDeque<TaskId>,
    counts: TaskCounts,
    /// Terminal tasks dropped by retention, so totals stay cumulative.
    forgotten: TaskCounts,
    next_epoch: u64,
    next_ticket: u64,
    #[serde(skip)]
    replaying: bool,
}

impl TaskBook {
    /// An empty book for the given agent types.
    pub fn new(
        settings: TaskBookSettings,
        agent_types: impl IntoIterator<Item = (AgentType, AgentTypeSettings)>,
    ) -> Self {
        let agent_types: BTreeMap<_, _> = agent_types.into_iter().collect();
        let queues = agent_types
            .keys()
            .map(|agent_type| (agent_type.clone(), PendingQueue::default()))
            .collect();
        TaskBook {
            settings,
            agent_types,
            tasks: BTreeMap::new(),
            queues,
            idempotency: HashMap::new(),
            load: HashMap::new(),
            retries: BTreeSet::new(),
            finished: VecDeque::new(),
            counts: TaskCounts::default(),
            forgotten: TaskCounts::default(),
            next_epoch: 1,
            next_ticket: 1,
            replaying: false,
        }
    }

    /// Replaces the settings and agent types (after loading a snapshot, or
    /// when the configuration changes). Queues of types no longer configured
    /// are kept, so their tasks are not lost.
    pub fn reconfigure(
        &mut self,
        settings: TaskBookSettings,
        agent_types: impl IntoIterator<Item = (AgentType, AgentTypeSettings)>,
    ) {
        self.settings = settings;
        self.agent_types = agent_types.into_iter().collect();
        for agent_type in self.agent_types.keys() {
            self.queues.entry(agent_type.clone()).or_default();
        }
    }

    /// Takes the settings and agent types of `other` (a freshly configured
    /// book), keeping this book's tasks.
    pub fn reconfigure_like(&mut self, other: &TaskBook) {
        self.reconfigure(other.settings.clone(), other.agent_types.clone());
    }

    /// Applies a journaled command during recovery. Submissions are applied
    /// without validation: they were accepted when first applied, and the
    /// configuration may have changed since (only accepted submissions are
    /// journaled).
    pub fn apply_replayed(&mut self, command: Command) {
        self.replaying = true;
        self.apply(command);
        self.replaying = false;
    }

    /// Checks a submission without applying it (the orchestrator journals only
    /// accepted submissions).
    pub fn validate_submission(&self, tasks: &[(TaskId, TaskSpec)]) -> Result<(), SubmitRejection> {
        self.validate_batch(tasks)
    }

    /// Applies one command and returns what must happen as a result.
    pub fn apply(&mut self, command: Command) -> Vec<Effect> {
        let mut effects = Vec::new();
        match command {
            Command::Submit { tasks, now } => self.submit(tasks, now, &mut effects),
            Command::Assign {
                member,
                agent_type,
                max,
                now,
            } => self.assign(member, &agent_type, max, now, &mut effects),
            Command::Report {
                member,
                report,
                now,
            } => self.report(member, report, now, &mut effects),
            Command::MemberLost { member, now } => self.member_lost(&member, now, &mut effects),
            Command::AttemptsLost {
                member,
                attempts,
                now,
            } => self.attempts_lost(&member, attempts, now, &mut effects),
            Command::HandBack {
                member,
                attempts,
                now,
            } => self.hand_back(&member, attempts, now, &mut effects),
            Command::Cancel { id, now } => self.cancel(id, now, &mut effects),
            Command::Tick { now } => self.tick(now, &mut effects),
            Command::RetryDead { id, payload, now } => {
                self.retry_dead(id, payload, now, &mut effects)
            }
        }
        self.forget_beyond_retention(&mut effects);
        effects
    }

    // ---- queries -------------------------------------------------------

    /// The API view of a task.
    pub fn view(&self, id: TaskId) -> Option<TaskView> {
        self.tasks.get(&id).map(TaskRecord::view)
    }

    /// The record of a task.
    pub fn record(&self, id: TaskId) -> Option<&TaskRecord> {
        self.tasks.get(&id)
    }

    /// A page of tasks in creation order.
    pub fn list(&self, query: &TaskQuery) -> TaskPage {
        let limit = query.limit.clamp(1, 10_000) as usize;
        let start = match query.after {
            Some(after) => std::ops::Bound::Excluded(after),
            None => std::ops::Bound::Unbounded,
        };
        let mut tasks = Vec::with_capacity(limit.min(256));
        let mut matching = self
            .tasks
            .range((start, std::ops::Bound::Unbounded))
            .map(|(_, record)| record)
            .filter(|record| query.state.is_none_or(|state| record.state == state))
            .filter(|record| {
                query
                    .agent_type
                    .as_ref()
                    .is_none_or(|agent_type| &record.agent_type == agent_type)
            });
        for record in matching.by_ref().take(limit) {
            tasks.push(record.view());
        }
        let next_after = if tasks.len() == limit && matching.next().is_some() {
            tasks.last().map(|view| view.id)
        } else {
            None
        };
        TaskPage { tasks, next_after }
    }

    /// Counts by state of the tasks the book holds now.
    pub fn counts(&self) -> TaskCounts {
        self.counts
    }

    /// Counts by state of every task the book accepted, including finished
    /// tasks already forgotten under the retention limit.
    pub fn totals(&self) -> TaskCounts {
        let mut totals = self.counts;
        for state in TaskState::ALL {
            *totals.get_mut(state) += self.forgotten.get(state);
        }
        totals
    }

    /// Pending tasks of one type.
    pub fn queue_depth(&self, agent_type: &AgentType) -> u64 {
        self.queues
            .get(agent_type)
            .map_or(0, |queue| queue.len() as u64)
    }

    /// Tasks of `agent_type` running on `member`.
    pub fn running_on(&self, member: &MemberId, agent_type: &AgentType) -> u32 {
        self.load
            .get(member)
            .and_then(|load| load.by_type.get(agent_type))
            .copied()
            .unwrap_or(0)
    }

    /// Tasks of any type running on `member`.
    pub fn running_total_on(&self, member: &MemberId) -> u32 {
        self.load
            .get(member)
            .map_or(0, |load| load.tasks.len() as u32)
    }

    /// The agent types the book accepts.
    pub fn agent_types(&self) -> impl Iterator<Item = &AgentType> {
        self.agent_types.keys()
    }

    /// When the earliest scheduled retry becomes due.
    pub fn next_retry_due(&self) -> Option<UnixMillis> {
        self.retries.first().map(|(due, _)| *due)
    }

    /// Creation time of the oldest pending task.
    pub fn oldest_pending_since(&self) -> Option<UnixMillis> {
        // Ids are time-ordered, so the first pending record is the oldest.
        self.tasks
            .values()
            .find(|record| record.state == TaskState::Pending)
            .map(|record| record.created_at)
    }

    /// Nodes with running attempts.
    pub fn members_with_work(&self) -> impl Iterator<Item = &MemberId> {
        self.load
            .iter()
            .filter(|(_, load)| !load.tasks.is_empty())
            .map(|(member, _)| member)
    }

    // ---- submit --------------------------------------------------------

    fn submit(
        &mut self,
        tasks: Vec<(TaskId, TaskSpec)>,
        now: UnixMillis,
        effects: &mut Vec<Effect>,
    ) {
        if !self.replaying
            && let Err(rejection) = self.validate_batch(&tasks)
        {
            effects.push(Effect::Rejected(rejection));
            return;
        }
        let mut acks = Vec::with_capacity(tasks.len());
        for (id, spec) in tasks {
            if let Some(existing) = spec
                .idempotency_key
                .as_ref()
                .and_then(|key| self.idempotency.get(key))
            {
                acks.push(SubmitAck {
                    id: *existing,
                    existing: true,
                });
                continue;
            }
            let type_settings = self
                .agent_types
                .get(&spec.agent_type)
                .cloned()
                .unwrap_or_default();
            let timeout_s = spec
                .timeout_s
                .or(type_settings.timeout_s)
                .unwrap_or(self.settings.default_timeout_s)
                .min(self.settings.max_timeout_s);
            let max_attempts = spec
                .max_attempts
                .or(type_settings.max_attempts)
                .unwrap_or(self.settings.default_max_attempts);
            if let Some(key) = &spec.idempotency_key {
                self.idempotency.insert(key.clone(), id);
            }
            let record = TaskRecord {
                id,
                agent_type: spec.agent_type,
                payload: spec.payload,
                priority: spec.priority,
                timeout_s,
                max_attempts,
                idempotency_key: spec.idempotency_key,
                trace_context: spec.trace_context,
                retry: spec.retry.as_ref().map(RetryPolicy::from),
                state: TaskState::Pending,
                attempts: 0,
                crashes: 0,
                epoch: AssignmentEpoch(0),
                member: None,
                worker: None,
                result: None,
                score: None,
                error: None,
                created_at: now,
                updated_at: now,
                started_at: None,
                finished_at: None,
                retry_at: None,
                queue_ticket: 0,
                queued_at: now,
                reported_epoch: None,
            };
            self.counts.pending += 1;
            self.tasks.insert(id, record);
            self.enqueue(id, false, now);
            acks.push(SubmitAck {
                id,
                existing: false,
            });
        }
        effects.push(Effect::Accepted(acks));
    }

    fn validate_batch(&self, tasks: &[(TaskId, TaskSpec)]) -> Result<(), SubmitRejection> {
        let new_tasks = tasks
            .iter()
            .filter(|(_, spec)| {
                spec.idempotency_key
                    .as_ref()
                    .is_none_or(|key| !self.idempotency.contains_key(key))
            })
            .count() as u64;
        let unfinished = self.counts.unfinished();
        if new_tasks > 0 && unfinished + new_tasks > self.settings.max_unfinished {
            return Err(SubmitRejection::Overloaded {
                pending: unfinished,
                limit: self.settings.max_unfinished,
            });
        }
        for (index, (id, spec)) in tasks.iter().enumerate() {
            let invalid = |field: &str, message: String| SubmitRejection::InvalidField {
                index,
                field: field.to_string(),
                message,
            };
            if !self.agent_types.contains_key(&spec.agent_type) {
                return Err(SubmitRejection::UnknownAgentType {
                    index,
                    agent_type: spec.agent_type.clone(),
                    known: self.agent_types.keys().cloned().collect(),
                });
            }
            if spec.payload.len() > self.settings.max_payload_bytes {
                return Err(SubmitRejection::PayloadTooLarge {
                    index,
                    bytes: spec.payload.len(),
                    limit: self.settings.max_payload_bytes,
                });
            }
            if let Some(timeout) = spec.timeout_s
                && !(1..=self.settings.max_timeout_s.min(MAX_TIMEOUT_S)).contains(&timeout)
            {
                let limit = self.settings.max_timeout_s.min(MAX_TIMEOUT_S);
                let why = if limit < MAX_TIMEOUT_S {
                    " (the cluster's scaling.worker_timeout_seconds)"
                } else {
                    ""
                };
                return Err(invalid(
                    "timeout_s",
                    format!("is {timeout}; give 1 to {limit} seconds{why}"),
                ));
            }
            if let Some(attempts) = spec.max_attempts
                && !(1..=MAX_ATTEMPTS).contains(&attempts)
            {
                return Err(invalid(
                    "max_attempts",
                    format!("is {attempts}; give 1 to {MAX_ATTEMPTS}"),
                ));
            }
            if let Some(key) = &spec.idempotency_key
                && (key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_BYTES)
            {
                return Err(invalid(
                    "idempotency_key",
                    format!(
                        "must be 1 to {MAX_IDEMPOTENCY_KEY_BYTES} bytes, got {}",
                        key.len()
                    ),
                ));
            }
            if let Some(retry) = &spec.retry {
                retry
                    .validate()
                    .map_err(|message| invalid("retry", message))?;
            }
            if self.tasks.contains_key(id) {
                return Err(invalid("id", format!("{id} is already in use")));
            }
        }
        Ok(())
    }

    // ---- assign --------------------------------------------------------

    fn assign(
        &mut self,
        member: MemberId,
        agent_type: &AgentType,
        max: usize,
        now: UnixMillis,
        effects: &mut Vec<Effect>,
    ) {
        for _ in 0..max {
            let Some(queue) = self.queues.get_mut(agent_type) else {
                return;
            };
            let tasks = &self.tasks;
            let Some(id) = queue.pop(|id, ticket| {
                tasks.get(&id).is_some_and(|record| {
                    record.state == TaskState::Pending && record.queue_ticket == ticket
                })
            }) else {
                return;
            };
            let epoch = AssignmentEpoch(self.next_epoch);
            self.next_epoch += 1;
            let record = self.tasks.get_mut(&id).expect("popped ids are live");
            record.state = TaskState::Running;
            record.attempts += 1;
            record.epoch = epoch;
            record.member = Some(member.clone());
            record.worker = None;
            record.started_at = Some(now);
            record.updated_at = now;
            record.retry_at = None;
            self.counts.pending -= 1;
            self.counts.running += 1;
            let assignment = TaskAssignment {
                task_id: id,
                epoch,
                agent_type: record.agent_type.clone(),
                payload: record.payload.clone(),
                attempt: record.attempts,
                timeout_ms: u64::from(record.timeout_s) * 1000,
                trace_context: record.trace_context.clone(),
            };
            let load = self.load.entry(member.clone()).or_default();
            load.tasks.insert(id);
            *load.by_type.entry(agent_type.clone()).or_insert(0) += 1;
            effects.push(Effect::Dispatch {
                member: member.clone(),
                assignment,
            });
        }
    }

    // ---- reports -------------------------------------------------------

    fn report(
        &mut self,
        member: MemberId,
        report: TaskReport,
        now: UnixMillis,
        effects: &mut Vec<Effect>,
    ) {
        let id = report.task_id;
        let Some(record) = self.tasks.get(&id) else {
            effects.push(Effect::StaleReport {
                id,
                reason: StaleReason::Unknown,
            });
            return;
        };
        let current = record.state == TaskState::Running
            && record.epoch == report.epoch
            && record.member.as_ref() == Some(&member);
        if !current {
            let same_attempt = record.reported_epoch == Some(report.epoch);
            let reason = match record.state {
                TaskState::Cancelled if record.epoch == report.epoch => StaleReason::Cancelled,
                _ if same_attempt => StaleReason::AlreadyApplied,
                _ => StaleReason::Duplicate,
            };
            effects.push(Effect::StaleReport { id, reason });
            return;
        }
        self.release(id, &member);
        let record = self.tasks.get_mut(&id).expect("checked above");
        record.worker = Some(report.worker);
        record.reported_epoch = Some(report.epoch);
        record.updated_at = now;
        let (failure, score) = match &report.outcome {
            Outcome::Succeeded { score, .. } => (None, *score),
            Outcome::Failed { kind, .. } => (Some(*kind), None),
        };
        effects.push(Effect::AttemptEnded {
            id,
            agent_type: record.agent_type.clone(),
            failure,
            run_time: report.finished_at.since(report.started_at),
            queue_wait: record
                .started_at
                .unwrap_or(record.queued_at)
                .since(record.queued_at),
            score,
        });
        match report.outcome {
            Outcome::Succeeded { result, score } => {
                record.result = Some(result);
                record.score = score;
                record.error = None;
                self.finish(id, TaskState::Succeeded, now, effects);
            }
            Outcome::Failed { kind, message } => {
                self.attempt_failed(id, kind, message, now, effects)
            }
        }
    }

    /// Decides what follows a failed attempt: retry later, retry now, or dead.
    fn attempt_failed(
        &mut self,
        id: TaskId,
        kind: FailureKind,
        message: String,
        now: UnixMillis,
        effects: &mut Vec<Effect>,
    ) {
        let poison_crashes = self.settings.poison_crashes;
        let record = self.tasks.get_mut(&id).expect("caller checked");
        if kind == FailureKind::Crash {
            record.crashes += 1;
        }
        let poisoned = kind == FailureKind::Crash && record.crashes >= poison_crashes;
        let exhausted = record.attempts >= record.max_attempts;
        let message = if poisoned {
            format!(
                "poison task: it crashed {} workers; last crash: {message}",
                record.crashes
            )
        } else if exhausted && kind != FailureKind::Fatal {
            format!(
                "gave up after {} attempts; last failure: {message}",
                record.attempts
            )
        } else {
            message
        };
        record.error = Some(TaskError { kind, message });
        if kind == FailureKind::Fatal || poisoned || exhausted {
            self.finish(id, TaskState::Dead, now, effects);
            return;
        }
        if kind == FailureKind::NodeLost {
            // The attempt did not fail on its own merits: run it again at once.
            record.state = TaskState::Pending;
            self.counts.running -= 1;
            self.counts.pending += 1;
            self.enqueue(id, true, now);
            effects.push(Effect::Requeued {
                id,
                reason: RequeueReason::MemberLost,
            });
            return;
        }
        let policy = record
            .retry
            .as_ref()
            .or_else(|| {
                self.agent_types
                    .get(&record.agent_type)
                    .and_then(|t| t.retry.as_ref())
            })
            .unwrap_or(&self.settings.retry);
        let due = now.plus(policy.delay(id, record.attempts));
        record.state = TaskState::Failed;
        record.retry_at = Some(due);
        let agent_type = record.agent_type.clone();
        self.counts.running -= 1;
        self.counts.failed += 1;
        self.retries.insert((due, id));
        effects.push(Effect::StateChanged {
            id,
            agent_type,
            state: TaskState::Failed,
        });
    }

    // ---- node loss and hand-back --------------------------------------

    fn member_lost(&mut self, member: &MemberId, now: UnixMillis, effects: &mut Vec<Effect>) {
        let Some(load) = self.load.remove(member) else {
            return;
        };
        // Re-queue in id (creation) order so older tasks keep their lead.
        let mut lost: Vec<TaskId> = load.tasks.into_iter().collect();
        lost.sort_unstable();
        for id in lost {
            let record = self.tasks.get_mut(&id).expect("load tracks live tasks");
            record.updated_at = now;
            let message = format!(
                "node {member} was lost while running attempt {}",
                record.attempts
            );
            self.attempt_failed(id, FailureKind::NodeLost, message, now, effects);
        }
    }

    fn attempts_lost(
        &mut self,
        member: &MemberId,
        attempts: Vec<(TaskId, AssignmentEpoch)>,
        now: UnixMillis,
        effects: &mut Vec<Effect>,
    ) {
        for (id, epoch) in attempts {
            if !self.is_running_on(id, epoch, member) {
                continue;
            }
            self.release(id, member);
            let message = format!("the worker pool on {member} restarted and lost this attempt");
            self.attempt_failed(id, FailureKind::NodeLost, message, now, effects);
        }
    }

    /// Attempts the book believes run on `member`, with their epochs.
    pub fn running_attempts_on(&self, member: &MemberId) -> Vec<(TaskId, AssignmentEpoch)> {
        let Some(load) = self.load.get(member) else {
            return Vec::new();
        };
        let mut attempts: Vec<_> = load
            .tasks
            .iter()
            .map(|id| (*id, self.tasks[id].epoch))
            .collect();
        attempts.sort_unstable();
        attempts
    }

    fn is_running_on(&self, id: TaskId, epoch: AssignmentEpoch, member: &MemberId) -> bool {
        self.tasks.get(&id).is_some_and(|record| {
            record.state == TaskState::Running
                && record.epoch == epoch
                && record.member.as_ref() == Some(member)
        })
    }

    fn hand_back(
        &mut self,
        member: &MemberId,
        attempts: Vec<(TaskId, AssignmentEpoch)>,
        now: UnixMillis,
        effects: &mut Vec<Effect>,
    ) {
        for (id, epoch) in attempts {
            if !self.is_running_on(id, epoch, member) {
                continue;
            }
            self.release(id, member);
            let record = self.tasks.get_mut(&id).expect("checked above");
            // A handed-back attempt never ran to an outcome: it does not count.
            record.attempts = record.attempts.saturating_sub(1);
            record.state = TaskState::Pending;
            record.updated_at = now;
            self.counts.running -= 1;
            self.counts.pending += 1;
            self.enqueue(id, true, now);
            effects.push(Effect::Requeued {
                id,
                reason: RequeueReason::HandedBack,
            });
        }
    }

    // ---- cancel, retries, dead letters ---------------------------------

    fn cancel(&mut self, id: TaskId, now: UnixMillis, effects: &mut Vec<Effect>) {
        let Some(record) = self.tasks.get(&id) else {
            effects.push(Effect::NotApplicable { id, state: None });
            return;
        };
        match record.state {
            TaskState::Pending => {
                let agent_type = record.agent_type.clone();
                if let Some(queue) = self.queues.get_mut(&agent_type) {
                    queue.forget_one();
                }
            }
            TaskState::Running => {
                let member = record.member.clone().expect("running tasks have a member");
                effects.push(Effect::StopAttempt {
                    member: member.clone(),
                    task_id: id,
                    epoch: record.epoch,
                });
                self.release(id, &member);
            }
            TaskState::Failed => {
                let due = record.retry_at.expect("failed tasks have a retry time");
                self.retries.remove(&(due, id));
            }
            state @ (TaskState::Succeeded | TaskState::Dead | TaskState::Cancelled) => {
                effects.push(Effect::NotApplicable {
                    id,
                    state: Some(state),
                });
                return;
            }
        }
        let record = self.tasks.get_mut(&id).expect("checked above");
        record.retry_at = None;
        self.finish(id, TaskState::Cancelled, now, effects);
    }

    fn tick(&mut self, now: UnixMillis, effects: &mut Vec<Effect>) {
        while let Some(&(due, id)) = self.retries.first() {
            if due > now {
                break;
            }
            self.retries.pop_first();
            let record = self.tasks.get_mut(&id).expect("retries track live tasks");
            debug_assert_eq!(record.state, TaskState::Failed);
            record.state = TaskState::Pending;
            record.retry_at = None;
            record.updated_at = now;
            self.counts.failed -= 1;
            self.counts.pending += 1;
            self.enqueue(id, false, now);
            effects.push(Effect::Requeued {
                id,
                reason: RequeueReason::RetryDue,
            });
        }
    }

    fn retry_dead(
        &mut self,
        id: TaskId,
        payload: Option<JsonText>,
        now: UnixMillis,
        effects: &mut Vec<Effect>,
    ) {
        let state = self.tasks.get(&id).map(|record| record.state);
        if state != Some(TaskState::Dead) {
            effects.push(Effect::NotApplicable { id, state });
            return;
        }
        self.finished.retain(|finished| *finished != id);
        let record = self.tasks.get_mut(&id).expect("checked above");
        if let Some(payload) = payload {
            record.payload = payload;
        }
        // A fresh budget: the operator decided the task deserves new tries.
        record.attempts = 0;
        record.crashes = 0;
        record.state = TaskState::Pending;
        record.finished_at = None;
        record.updated_at = now;
        self.counts.dead -= 1;
        self.counts.pending += 1;
        self.enqueue(id, false, now);
        effects.push(Effect::Requeued {
            id,
            reason: RequeueReason::DeadLetterRetry,
        });
    }

    // ---- shared transitions -------------------------------------------

    /// Puts a pending task in its queue. `front` keeps a re-queued task ahead
    /// of tasks submitted after it.
    fn enqueue(&mut self, id: TaskId, front: bool, now: UnixMillis) {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        let record = self.tasks.get_mut(&id).expect("enqueue of a live task");
        record.queue_ticket = ticket;
        record.queued_at = now;
        let queue = self.queues.entry(record.agent_type.clone()).or_default();
        if front {
            queue.push_front(id, record.priority, ticket);
        } else {
            queue.push(id, record.priority, ticket);
        }
    }

    /// Removes a running attempt from its node's load.
    fn release(&mut self, id: TaskId, member: &MemberId) {
        let agent_type = &self.tasks[&id].agent_type;
        if let Some(load) = self.load.get_mut(member) {
            load.tasks.remove(&id);
            if let Some(count) = load.by_type.get_mut(agent_type) {
                *count -= 1;
            }
            if load.tasks.is_empty() {
                self.load.remove(member);
            }
        }
    }

    /// Moves a running, pending or failed task to a terminal state.
    fn finish(&mut self, id: TaskId, state: TaskState, now: UnixMillis, effects: &mut Vec<Effect>) {
        debug_assert!(state.is_terminal());
        let record = self.tasks.get_mut(&id).expect("finish of a live task");
        *self.counts.get_mut(record.state) -= 1;
        *self.counts.get_mut(state) += 1;
        record.state = state;
        record.finished_at = Some(now);
        record.updated_at = now;
        let agent_type = record.agent_type.clone();
        self.finished.push_back(id);
        effects.push(Effect::StateChanged {
            id,
            agent_type,
            state,
        });
    }

    fn forget_beyond_retention(&mut self, effects: &mut Vec<Effect>) {
        while self.finished.len() > self.settings.retain_finished {
            let Some(id) = self.finished.pop_front() else {
                break;
            };
            if let Some(record) = self.tasks.remove(&id) {
                *self.counts.get_mut(record.state) -= 1;
                *self.forgotten.get_mut(record.state) += 1;
                if let Some(key) = &record.idempotency_key {
                    self.idempotency.remove(key);
                }
                effects.push(Effect::Forgotten(id));
            }
        }
    }

    /// Panics if any internal index disagrees with the records. Used by tests;
    /// cheap enough to call after every command in property tests.
    pub fn check_invariants(&self) {
        let mut counts = TaskCounts::default();
        let mut pending_by_type: HashMap<&AgentType, usize> = HashMap::new();
        let mut running_by_member: HashMap<&MemberId, HashSet<TaskId>> = HashMap::new();
        for (id, record) in &self.tasks {
            assert_eq!(*id, record.id);
            *counts.get_mut(record.state) += 1;
            match record.state {
                TaskState::Pending => *pending_by_type.entry(&record.agent_type).or_default() += 1,
                TaskState::Running => {
                    let member = record
                        .member
                        .as_ref()
                        .expect("running task without a member");
                    running_by_member.entry(member).or_default().insert(*id);
                }
                TaskState::Failed => {
                    let due = record.retry_at.expect("failed task without retry time");
                    assert!(
                        self.retries.contains(&(due, *id)),
                        "failed task {id} not scheduled"
                    );
                }
                _ => {}
            }
            assert!(
                record.attempts <= record.max_attempts,
                "attempts beyond budget for {id}"
            );
            if record.state == TaskState::Succeeded {
                assert!(
                    record.result.is_some(),
                    "succeeded task {id} without a result"
                );
            }
        }
        // Forgotten tasks leave the counts with them.
        assert_eq!(counts, self.counts, "state counts disagree with records");
        for (agent_type, queue) in &self.queues {
            assert_eq!(
                queue.len(),
                pending_by_type.get(agent_type).copied().unwrap_or(0),
                "queue length of {agent_type} disagrees with pending records"
            );
        }
        assert_eq!(self.retries.len() as u64, self.counts.failed);
        let loads: HashMap<&MemberId, HashSet<TaskId>> = self
            .load
            .iter()
            .map(|(member, load)| (member, load.tasks.clone()))
            .collect();
        assert_eq!(
            loads, running_by_member,
            "node loads disagree with running records"
        );
        for load in self.load.values() {
            let total: u32 = load.by_type.values().sum();
            assert_eq!(total as usize, load.tasks.len());
        }
        assert!(self.finished.len() <= self.settings.retain_finished);
    }
}
