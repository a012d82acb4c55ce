//! Byte accounting: how many payload and result bytes the book holds, so
//! that memory is bounded by bytes and not only by task counts.
//!
//! Both counters are derived state. They are not serialised: they are
//! rebuilt from the records when a snapshot is loaded
//! ([`TaskBook::reconfigure`]) and kept up to date by every command, so a
//! journal replayed gives the same counts and the journal's encoding does not
//! change.
//!
//! What the budget (`max_held_bytes`) guarantees:
//! - a submission is refused (429) when the payloads of unfinished tasks plus
//!   the batch's would exceed it, so unfinished tasks alone never pass it
//!   through submissions (a dead-letter retry with a larger payload, or a
//!   budget lowered by reconfiguration, may);
//! - after every command the oldest finished tasks are forgotten while the
//!   book holds more than the budget, so held bytes return under it whenever
//!   unfinished tasks alone fit.

use herd_protocol::TaskId;
use herd_protocol::messages::orchestrator::SubmitRejection;

use super::{TaskBook, TaskRecord};

/// The bytes one record holds that the budget counts: its payload and its
/// result (other fields are small and bounded).
pub(super) fn record_bytes(record: &TaskRecord) -> u64 {
    (record.payload.len() + record.result.as_ref().map_or(0, |result| result.len())) as u64
}

impl TaskBook {
    /// Payload and result bytes of every task the book holds now.
    pub fn held_bytes(&self) -> u64 {
        self.held_bytes
    }

    /// Payload bytes of the tasks that have not finished (they cannot be
    /// forgotten to make room).
    pub fn unfinished_bytes(&self) -> u64 {
        self.held_bytes - self.finished_bytes
    }

    /// Recomputes both counters from the records (after loading a snapshot,
    /// which does not carry them).
    pub(super) fn recount_bytes(&mut self) {
        self.held_bytes = self.tasks.values().map(record_bytes).sum();
        self.finished_bytes = self
            .finished
            .iter()
            .filter_map(|id| self.tasks.get(id))
            .map(record_bytes)
            .sum();
        self.recount_tenants();
    }

    /// Refuses a batch whose new payloads would push unfinished tasks past
    /// the byte budget.
    pub(super) fn batch_fits_byte_budget(&self, batch_bytes: u64) -> Result<(), SubmitRejection> {
        let held_bytes = self.unfinished_bytes();
        let limit = self.settings.max_held_bytes;
        if batch_bytes > 0 && held_bytes + batch_bytes > limit {
            return Err(SubmitRejection::OverByteBudget {
                held_bytes,
                batch_bytes,
                limit,
            });
        }
        Ok(())
    }

    /// Accounts for a task entering the book.
    pub(super) fn bytes_added(&mut self, id: TaskId) {
        self.held_bytes += record_bytes(&self.tasks[&id]);
        self.tenant_task_counted(id, true);
    }

    /// Accounts for a change of a live record's payload or result: `before`
    /// is [`record_bytes`] of the record before the change.
    pub(super) fn bytes_changed(&mut self, id: TaskId, before: u64) {
        self.held_bytes = self.held_bytes - before + record_bytes(&self.tasks[&id]);
        self.tenant_bytes_changed(id, before);
    }

    /// Accounts for a task joining (`true`) or leaving (`false`) the
    /// finished tasks that may be forgotten.
    pub(super) fn bytes_finished(&mut self, id: TaskId, finished: bool) {
        self.tenant_task_counted(id, !finished);
        let bytes = record_bytes(&self.tasks[&id]);
        if finished {
            self.finished_bytes += bytes;
        } else {
            self.finished_bytes -= bytes;
        }
    }

    /// Whether the book holds more than its byte budget and a finished task
    /// could be forgotten to make room.
    pub(super) fn over_byte_budget(&self) -> bool {
        self.held_bytes > self.settings.max_held_bytes && !self.finished.is_empty()
    }
}
