//! Sending reports of finished attempts to the orchestrator: the actor side
//! of the [`ReportOutbox`](super::outbox::ReportOutbox).

use herd_protocol::limits::chunk_by_budget;
use herd_protocol::messages::orchestrator::OrchestratorCast;
use herd_protocol::{Mailbox, MemberId, Outcome, TaskReport};
use ractor::ActorRef;
use tracing::warn;

use super::actor::{PoolLocal, PoolMsg, PoolState};

impl PoolState {
    /// Keeps `report` of an attempt assigned to `member` until acknowledged,
    /// and sends it soon.
    pub(super) fn queue_report(
        &mut self,
        myself: &ActorRef<PoolMsg>,
        member: MemberId,
        report: TaskReport,
    ) {
        if let Some(dropped) = self.outbox.push(member, report) {
            // Logged as it always was, `Some(..)` included, so searches match.
            warn!(task_id = ?Some(dropped.task_id), "report buffer full while the orchestrator is unreachable; dropping the oldest report (its task will be retried)");
        }
        self.schedule_flush(myself);
    }

    /// Makes sure a `Flush` follows.
    pub(super) fn schedule_flush(&mut self, myself: &ActorRef<PoolMsg>) {
        // Coalesce: one Flush per burst of completions, delivered after the
        // completions already queued in the mailbox.
        if !self.flush_scheduled {
            self.flush_scheduled = true;
            let _ = myself.cast(Mailbox::Local(PoolLocal::Flush));
        }
    }

    /// Sends every unsent report, grouped by the incarnation it belongs to,
    /// once the orchestrator has welcomed the pool.
    pub(super) fn flush(&mut self) {
        self.flush_scheduled = false;
        let Some(registration) = self.registration.as_ref().filter(|r| r.welcomed) else {
            return;
        };
        for run in self.outbox.take_unsent() {
            for batch in run.split(|reports| chunk_by_budget(reports, report_size)) {
                let message = OrchestratorCast::Reports {
                    member: batch.member,
                    first_sequence: batch.first_sequence,
                    reports: batch.reports,
                };
                if let Err(error) = registration.send(message) {
                    warn!(%error, "could not deliver reports to the orchestrator; they are re-sent after it re-registers the pool");
                    self.registration = None;
                    self.outbox.resend_all();
                    return;
                }
            }
        }
    }

    /// Forgets the reports the orchestrator has applied; a settled drain
    /// finishes once none is left.
    pub(super) fn on_ack(&mut self, through: u64) {
        self.outbox.ack(through);
        if self.drain.as_ref().is_some_and(|drain| drain.is_settled()) && self.outbox.is_empty() {
            self.finish_drain();
        }
    }
}

fn report_size(report: &TaskReport) -> usize {
    match &report.outcome {
        Outcome::Succeeded { result, .. } => result.len(),
        Outcome::Failed { message, .. } => message.len(),
    }
}
