//! What users ask of one task: cancel it, or give a dead task another
//! chance. Both answer with a typed outcome next to their effects.

use herd_protocol::messages::orchestrator::{CancelOutcome, RetryOutcome};
use herd_protocol::{JsonText, TaskId, TaskState, UnixMillis};

use super::{Applied, Effect, RequeueReason, TaskBook};

impl TaskBook {
    /// Cancels a task that has not finished; a running attempt is asked to
    /// stop ([`Effect::StopAttempt`]) and its report will be ignored.
    pub fn cancel(&mut self, id: TaskId, now: UnixMillis) -> Applied<CancelOutcome> {
        let mut effects = Vec::new();
        let answer = self.cancel_task(id, now, &mut effects);
        self.forget_beyond_retention(&mut effects);
        Applied { answer, effects }
    }

    /// Re-queues a dead task with a fresh attempt budget, optionally with a
    /// new payload (checked beforehand with [`TaskBook::validate_payload`]).
    pub fn retry_dead(
        &mut self,
        id: TaskId,
        payload: Option<JsonText>,
        now: UnixMillis,
    ) -> Applied<RetryOutcome> {
        let mut effects = Vec::new();
        let answer = self.retry_dead_task(id, payload, now, &mut effects);
        self.forget_beyond_retention(&mut effects);
        Applied { answer, effects }
    }

    fn cancel_task(
        &mut self,
        id: TaskId,
        now: UnixMillis,
        effects: &mut Vec<Effect>,
    ) -> CancelOutcome {
        let Some(record) = self.tasks.get(&id) else {
            return CancelOutcome::NotFound;
        };
        match record.state {
            TaskState::Pending => {
                let agent_type = record.agent_type.clone();
                if let Some(queue) = self.queues.get_mut(&agent_type) {
                    queue.forget_one(&record.tenant);
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
                return CancelOutcome::AlreadyFinished(state);
            }
        }
        let record = self.tasks.get_mut(&id).expect("checked above");
        record.retry_at = None;
        self.finish(id, TaskState::Cancelled, now, effects);
        CancelOutcome::Cancelled
    }

    fn retry_dead_task(
        &mut self,
        id: TaskId,
        payload: Option<JsonText>,
        now: UnixMillis,
        effects: &mut Vec<Effect>,
    ) -> RetryOutcome {
        match self.tasks.get(&id).map(|record| record.state) {
            None => return RetryOutcome::NotFound,
            Some(TaskState::Dead) => {}
            Some(state) => return RetryOutcome::NotDead(state),
        }
        let was_finished = self.finished.len();
        self.finished.retain(|finished| *finished != id);
        if self.finished.len() < was_finished {
            self.bytes_finished(id, false);
        }
        let record = self.tasks.get_mut(&id).expect("checked above");
        let before = super::bytes::record_bytes(record);
        if let Some(payload) = payload {
            record.payload = payload;
        }
        // A fresh budget: the operator decided the task deserves new tries.
        record.attempts = 0;
        record.crashes = 0;
        record.state = TaskState::Pending;
        record.finished_at = None;
        record.updated_at = now;
        self.bytes_changed(id, before);
        self.counts.dead -= 1;
        self.counts.pending += 1;
        self.enqueue(id, false, now);
        effects.push(Effect::Requeued {
            id,
            reason: RequeueReason::DeadLetterRetry,
        });
        RetryOutcome::Retried
    }
}
