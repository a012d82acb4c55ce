//! Work in and out: assignments from the orchestrator go to idle workers
//! (waiting in the backlog while none is idle), finished attempts free their
//! slot and are reported, cancelled ones are stopped.

use herd_protocol::{
    AssignmentEpoch, MemberId, Outcome, TaskAssignment, TaskId, TaskReport, WorkerId,
};
use ractor::ActorRef;
use tracing::{debug, info, warn};

use super::actor::{PoolMsg, PoolState};
use super::slots::RunningTask;
use super::worker::WorkerMsg;

impl PoolState {
    /// Takes assignments from the orchestrator the pool is registered with;
    /// while draining, hands them straight back.
    pub(super) fn on_assign(&mut self, orchestrator: MemberId, assignments: Vec<TaskAssignment>) {
        let Some(member) = self
            .registration
            .as_ref()
            .filter(|r| r.orchestrator == orchestrator)
            .map(|r| r.member.clone())
        else {
            warn!(from = %orchestrator, count = assignments.len(), "ignoring assignments from an orchestrator this pool is not registered with");
            return;
        };
        if self.drain.is_some() {
            // Sent before the orchestrator learned of the drain: give them back.
            let attempts = assignments.iter().map(|a| (a.task_id, a.epoch)).collect();
            self.hand_back(member, attempts);
            return;
        }
        self.backlog.extend(
            assignments
                .into_iter()
                .map(|assignment| (member.clone(), assignment)),
        );
        self.assign_backlog();
        if !self.backlog.is_empty() {
            // Prefetched attempts (a slot credit above 1), or a slot is
            // restarting: they start, oldest first, the moment a slot frees.
            debug!(
                backlog = self.backlog.len(),
                "assignments waiting for a worker"
            );
        }
    }

    /// Hands waiting assignments to idle workers, oldest first.
    pub(super) fn assign_backlog(&mut self) {
        while !self.backlog.is_empty() {
            let Some(slot) = self.slots.take_idle() else {
                return;
            };
            let (member, assignment) = self.backlog.pop_front().expect("checked non-empty");
            let task = RunningTask::start(member, &assignment);
            let Some(assigned) = self.slots.assign(slot, task) else {
                continue;
            };
            if let Some(replaced_after) = assigned.replaced_after {
                metrics::histogram!("herd_worker_replacement_seconds")
                    .record(replaced_after.as_secs_f64());
            }
            if let Err(error) = assigned.worker.cast(WorkerMsg::Run(assignment)) {
                // The worker is stopping; supervision will report the task.
                debug!(%error, "worker could not take an assignment");
            }
        }
    }

    /// Frees the slot of a worker that finished an attempt and reports the
    /// attempt, unless it was cancelled or the worker is an earlier life of
    /// the slot.
    pub(super) fn on_finished(
        &mut self,
        myself: &ActorRef<PoolMsg>,
        slot: WorkerId,
        generation: u64,
        report: TaskReport,
    ) {
        let Some(freed) = self.slots.free(slot, generation) else {
            return;
        };
        if freed.retire {
            self.retire(slot);
        }
        if let Some(running) = freed.running
            && !running.cancelled
        {
            metrics::counter!("herd_worker_tasks_total", "agent_type" => running.agent_type.to_string(), "outcome" => outcome_label(&report.outcome)).increment(1);
            self.queue_report(myself, running.member, report);
        }
        self.assign_backlog();
        self.check_drained(myself);
    }

    /// Stops attempt `epoch` of `task_id`, waiting or running; its report
    /// will not be sent.
    pub(super) fn cancel(&mut self, task_id: TaskId, epoch: AssignmentEpoch) {
        self.backlog.retain(|(_, assignment)| {
            !(assignment.task_id == task_id && assignment.epoch == epoch)
        });
        for (_, worker) in self
            .slots
            .cancel_where(|r| r.task_id == task_id && r.epoch == epoch)
        {
            if let Some(worker) = worker {
                info!(task_id = %task_id, "stopping a cancelled task");
                worker.kill();
            }
        }
    }
}

fn outcome_label(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Succeeded { .. } => "succeeded",
        Outcome::Failed { kind, .. } => kind.as_str(),
    }
}
