//! Submissions: checked once against the book and its configuration into a
//! [`Submission`], which is what the journal records and what the book
//! applies. A bad request is refused by [`TaskBook::validate_submission`] and
//! never reaches [`TaskBook::submit`], so applying (and replaying) a
//! submission judges nothing again.

use herd_protocol::messages::orchestrator::{SubmitAck, SubmitRejection};
use herd_protocol::{AssignmentEpoch, JsonText, TaskId, TaskSpec, TaskState, UnixMillis};
use serde::{Deserialize, Serialize};

use herd_protocol::limits::{ATTEMPTS_RANGE, MAX_IDEMPOTENCY_KEY_BYTES, TIMEOUT_S_RANGE};

use super::tenants::idempotency_key;
use super::{Applied, RetryPolicy, TaskBook, TaskRecord};

/// A batch of tasks the book has accepted, all or none. Made only by
/// [`TaskBook::validate_submission`] (or read back from a journal that
/// recorded one), so holding one means the batch passed every check.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Submission {
    /// Ids (chosen by the caller, time ordered, so replay reproduces them)
    /// and specs, in submission order.
    tasks: Vec<(TaskId, TaskSpec)>,
    /// Acceptance time.
    now: UnixMillis,
}

impl Submission {
    /// The tasks, in submission order.
    pub fn tasks(&self) -> &[(TaskId, TaskSpec)] {
        &self.tasks
    }
}

impl TaskBook {
    /// Checks a batch against the book's limits and agent types; the only way
    /// to make a [`Submission`].
    pub fn validate_submission(
        &self,
        tasks: Vec<(TaskId, TaskSpec)>,
        now: UnixMillis,
    ) -> Result<Submission, SubmitRejection> {
        self.validate_batch(&tasks)?;
        Ok(Submission { tasks, now })
    }

    /// Checks a replacement payload for a dead-letter retry against the same
    /// limit as submissions.
    pub fn validate_payload(&self, payload: &JsonText) -> Result<(), SubmitRejection> {
        self.payload_fits(0, payload)
    }

    /// Accepts a validated batch. The answer has one ack per task, in
    /// submission order; a task whose idempotency key is already known is
    /// acknowledged with the existing task's id.
    pub fn submit(&mut self, submission: Submission) -> Applied<Vec<SubmitAck>> {
        let Submission { tasks, now } = submission;
        let mut acks = Vec::with_capacity(tasks.len());
        for (id, spec) in tasks {
            let scoped_key = spec
                .idempotency_key
                .as_ref()
                .map(|key| idempotency_key(&spec.tenant, key));
            if let Some(existing) = scoped_key
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
            if let Some(key) = scoped_key {
                self.idempotency.insert(key, id);
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
                tenant: spec.tenant,
            };
            self.counts.pending += 1;
            self.tasks.insert(id, record);
            self.bytes_added(id);
            self.enqueue(id, false, now);
            acks.push(SubmitAck {
                id,
                existing: false,
            });
        }
        let mut effects = Vec::new();
        self.forget_beyond_retention(&mut effects);
        Applied {
            answer: acks,
            effects,
        }
    }

    fn payload_fits(&self, index: usize, payload: &JsonText) -> Result<(), SubmitRejection> {
        if payload.len() > self.settings.max_payload_bytes {
            return Err(SubmitRejection::PayloadTooLarge {
                index,
                bytes: payload.len(),
                limit: self.settings.max_payload_bytes,
            });
        }
        Ok(())
    }

    fn validate_batch(&self, tasks: &[(TaskId, TaskSpec)]) -> Result<(), SubmitRejection> {
        let is_new = |spec: &TaskSpec| {
            spec.idempotency_key.as_ref().is_none_or(|key| {
                !self
                    .idempotency
                    .contains_key(&idempotency_key(&spec.tenant, key))
            })
        };
        let new_tasks = tasks.iter().filter(|(_, spec)| is_new(spec)).count() as u64;
        let unfinished = self.counts.unfinished();
        if new_tasks > 0 && unfinished + new_tasks > self.settings.max_unfinished {
            return Err(SubmitRejection::Overloaded {
                pending: unfinished,
                limit: self.settings.max_unfinished,
            });
        }
        let new_bytes: u64 = tasks
            .iter()
            .filter(|(_, spec)| is_new(spec))
            .map(|(_, spec)| spec.payload.len() as u64)
            .sum();
        self.batch_fits_byte_budget(new_bytes)?;
        self.batch_fits_tenant_limits(
            tasks
                .iter()
                .map(|(_, spec)| spec)
                .filter(|spec| is_new(spec)),
        )?;
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
            self.payload_fits(index, &spec.payload)?;
            // The cluster's scaling.worker_timeout_seconds may cap the range.
            let shortest = *TIMEOUT_S_RANGE.start();
            let longest = self.settings.max_timeout_s.min(*TIMEOUT_S_RANGE.end());
            if let Some(timeout) = spec.timeout_s
                && !(shortest..=longest).contains(&timeout)
            {
                let why = if longest < *TIMEOUT_S_RANGE.end() {
                    " (the cluster's scaling.worker_timeout_seconds)"
                } else {
                    ""
                };
                return Err(invalid(
                    "timeout_s",
                    format!("is {timeout}; give {shortest} to {longest} seconds{why}"),
                ));
            }
            if let Some(attempts) = spec.max_attempts
                && !ATTEMPTS_RANGE.contains(&attempts)
            {
                return Err(invalid(
                    "max_attempts",
                    format!(
                        "is {attempts}; give {} to {}",
                        ATTEMPTS_RANGE.start(),
                        ATTEMPTS_RANGE.end()
                    ),
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
}
