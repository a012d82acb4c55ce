//! The orchestrator's spans of a task's trace (only for tasks that carry a
//! trace context, and only while export is on): `herd.queue` (submission to
//! first assignment), `herd.assign` (assignment to sending), and
//! `herd.complete` (the worker's finish to the outcome being recorded).

use herd_protocol::{MemberId, TaskAssignment, TaskReport};
use opentelemetry::KeyValue;

use super::state::OrchestratorState;
use crate::task_trace;

impl OrchestratorState {
    /// `herd.queue`: from submission to this first assignment.
    pub(super) fn trace_queued(&self, assignment: &TaskAssignment) {
        let Some(parent) = assignment
            .trace_context
            .as_deref()
            .filter(|_| task_trace::enabled() && assignment.attempt == 1)
        else {
            return;
        };
        if let Some(record) = self.book.record(assignment.task_id) {
            task_trace::record(
                "herd.queue",
                parent,
                task_trace::at(record.created_at.0),
                std::time::SystemTime::now(),
                vec![
                    KeyValue::new("herd.task_id", assignment.task_id.to_string()),
                    KeyValue::new("herd.agent_type", assignment.agent_type.to_string()),
                ],
            );
        }
    }

    /// `herd.complete`: from the worker's finish to the outcome being recorded.
    pub(super) fn trace_completed(&self, member: &MemberId, report: &TaskReport) {
        if !task_trace::enabled() {
            return;
        }
        let Some(parent) = self
            .book
            .record(report.task_id)
            .and_then(|r| r.trace_context.clone())
        else {
            return;
        };
        let outcome = match &report.outcome {
            herd_protocol::Outcome::Succeeded { .. } => "succeeded",
            herd_protocol::Outcome::Failed { kind, .. } => kind.as_str(),
        };
        task_trace::record(
            "herd.complete",
            &parent,
            task_trace::at(report.finished_at.0),
            std::time::SystemTime::now(),
            vec![
                KeyValue::new("herd.task_id", report.task_id.to_string()),
                KeyValue::new("herd.outcome", outcome),
                KeyValue::new("herd.ran_on", member.name.to_string()),
            ],
        );
    }

    /// `herd.assign`: from the attempt's start in the book to its sending.
    pub(super) fn trace_assigned(&self, member: &MemberId, assignments: &[TaskAssignment]) {
        if !task_trace::enabled() {
            return;
        }
        let now = std::time::SystemTime::now();
        for assignment in assignments {
            let (Some(parent), Some(started)) = (
                assignment.trace_context.as_deref(),
                self.book
                    .record(assignment.task_id)
                    .and_then(|r| r.started_at),
            ) else {
                continue;
            };
            task_trace::record(
                "herd.assign",
                parent,
                task_trace::at(started.0),
                now,
                vec![
                    KeyValue::new("herd.task_id", assignment.task_id.to_string()),
                    KeyValue::new("herd.attempt", i64::from(assignment.attempt)),
                    KeyValue::new("herd.assigned_to", member.name.to_string()),
                ],
            );
        }
    }
}
