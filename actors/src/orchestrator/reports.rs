//! Finished attempts reported by the pools: applied to the book (a report
//! of a superseded attempt is fenced by its epoch), then acknowledged to the
//! pool once durable, so the pool can forget it.

use std::time::Duration;

use herd_protocol::{MemberId, Outcome, TaskReport, UnixMillis};
use ractor::ActorRef;
use tracing::info;

use super::OrchestratorMsg;
use super::durability::Deferred;
use super::process_groups::find_pool_named;
use super::state::OrchestratorState;
use crate::task_book::{Command, Effect, StaleReason};

impl OrchestratorState {
    /// Applies a batch of reports numbered from `first_sequence`.
    pub(super) fn on_reports(
        &mut self,
        myself: &ActorRef<OrchestratorMsg>,
        member: MemberId,
        first_sequence: u64,
        reports: Vec<TaskReport>,
    ) {
        let now = UnixMillis::now();
        let count = reports.len() as u64;
        let mut effects = Vec::new();
        for report in reports {
            self.trace_completed(&member, &report);
            // Only handlers that returned say how long the type's tasks
            // run: a crash or a timeout is reported with no run time, and a
            // clock step is bounded by the task's own time limit.
            if let Some(record) = self.book.record(report.task_id)
                && matches!(report.outcome, Outcome::Succeeded { .. })
            {
                let run_ms = report
                    .finished_at
                    .0
                    .saturating_sub(report.started_at.0)
                    .min(u64::from(record.timeout_s) * 1_000);
                self.slot_credit
                    .observe_run(&record.agent_type, Duration::from_millis(run_ms));
            }
            effects.extend(self.apply(
                myself,
                Command::Report {
                    member: member.clone(),
                    report,
                    now,
                },
            ));
        }
        let fenced = effects
            .iter()
            .filter(|effect| {
                matches!(
                    effect,
                    Effect::StaleReport {
                        reason: StaleReason::Duplicate,
                        ..
                    }
                )
            })
            .count();
        if fenced > 0 {
            info!(from = %member, fenced, "fenced results of superseded attempts (their tasks were re-queued)");
        }
        self.release(myself, Deferred::Effects(effects));
        // The ack goes to the pool of the node, whatever incarnation the
        // attempts were assigned under.
        let pool = self
            .pools
            .by_name(&member.name)
            .map(|(_, entry)| entry.actor.clone())
            .or_else(|| find_pool_named(&self.view.borrow(), &member.name));
        if let Some(pool) = pool
            && count > 0
        {
            self.release(
                myself,
                Deferred::Ack {
                    pool,
                    through: first_sequence + count - 1,
                },
            );
        }
        self.schedule_dispatch(myself);
    }
}
