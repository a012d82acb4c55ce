//! Attempts: assigning pending tasks to pools, applying their reports
//! (fenced by assignment epoch), and taking back attempts whose node or pool
//! was lost or handed them back.

use herd_protocol::task::TaskError;
use herd_protocol::{
    AgentType, AssignmentEpoch, FailureKind, MemberId, Outcome, TaskAssignment, TaskId, TaskReport,
    TaskState, UnixMillis,
};

use super::{Effect, RequeueReason, StaleReason, TaskBook};

impl TaskBook {
    pub(super) fn assign(
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
                provider: None,
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

    pub(super) fn report(
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
                let before = super::bytes::record_bytes(record);
                record.result = Some(result);
                record.score = score;
                record.error = None;
                self.bytes_changed(id, before);
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

    pub(super) fn member_lost(
        &mut self,
        member: &MemberId,
        now: UnixMillis,
        effects: &mut Vec<Effect>,
    ) {
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

    pub(super) fn attempts_lost(
        &mut self,
        member: &MemberId,
        attempts: Vec<(TaskId, AssignmentEpoch)>,
        now: UnixMillis,
        effects: &mut Vec<Effect>,
    ) {
        for (id, epoch) in attempts {
            if !self.release_if_current(member, id, epoch) {
                continue;
            }
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

    /// Releases the attempt from `member`'s load if it is still its task's
    /// current attempt there (not superseded, not finished); says whether it
    /// was. Callers change the task's state before asking about the next
    /// attempt, so an attempt listed twice is taken once.
    fn release_if_current(
        &mut self,
        member: &MemberId,
        id: TaskId,
        epoch: AssignmentEpoch,
    ) -> bool {
        let current = self.tasks.get(&id).is_some_and(|record| {
            record.state == TaskState::Running
                && record.epoch == epoch
                && record.member.as_ref() == Some(member)
        });
        if current {
            self.release(id, member);
        }
        current
    }

    pub(super) fn hand_back(
        &mut self,
        member: &MemberId,
        attempts: Vec<(TaskId, AssignmentEpoch)>,
        now: UnixMillis,
        effects: &mut Vec<Effect>,
    ) {
        for (id, epoch) in attempts {
            if !self.release_if_current(member, id, epoch) {
                continue;
            }
            let record = self.tasks.get_mut(&id).expect("released above");
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

    /// Failed tasks whose backoff elapsed by `now` become pending again.
    pub(super) fn tick(&mut self, now: UnixMillis, effects: &mut Vec<Effect>) {
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
}
