//! Carrying out the task book's effects: assignments made outside dispatch,
//! stopping cancelled attempts, waking `?wait` requests, metrics and logs of
//! finished and re-queued tasks, feeding circuits and the rebalancer, and
//! scheduling the tick that makes retries due.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use herd_protocol::messages::orchestrator::{OrchestratorReply, RequestFailure};
use herd_protocol::messages::pool::PoolCast;
use herd_protocol::{Mailbox, MemberId, TaskAssignment, TaskId, UnixMillis};
use ractor::ActorRef;
use tracing::{debug, warn};

use super::OrchestratorMsg;
use super::actor::OrchestratorLocal;
use super::state::OrchestratorState;
use crate::task_book::{Effect, RequeueReason, StaleReason};

impl OrchestratorState {
    /// Carries out effects that are durable.
    pub(super) fn carry_out(&mut self, myself: &ActorRef<OrchestratorMsg>, effects: Vec<Effect>) {
        let now = Instant::now();
        let mut direct: BTreeMap<MemberId, Vec<TaskAssignment>> = BTreeMap::new();
        for effect in effects {
            match effect {
                Effect::Forgotten(id) => {
                    debug!(task_id = %id, "finished task forgotten (beyond tasks.retain_finished or limits.max_held_bytes)")
                }
                Effect::Dispatch { member, assignment } => {
                    direct.entry(member).or_default().push(assignment)
                }
                Effect::StopAttempt {
                    member,
                    task_id,
                    epoch,
                } => {
                    if let Some(pool) = self.pools.get(&member) {
                        let _ = pool
                            .actor
                            .cast(Mailbox::Cast(PoolCast::Cancel { task_id, epoch }));
                    }
                }
                Effect::StateChanged {
                    id,
                    agent_type,
                    state,
                } => {
                    metrics::counter!("herd_tasks_finished_total", "agent_type" => agent_type.to_string(), "state" => state.as_str()).increment(1);
                    if state == herd_protocol::TaskState::Dead {
                        let error = self
                            .book
                            .record(id)
                            .and_then(|r| r.error.as_ref())
                            .map(|e| e.message.clone())
                            .unwrap_or_default();
                        warn!(task_id = %id, agent_type = %agent_type, %error, "task is dead: it is in the dead-letter queue (GET /v1/dead-letters)");
                    }
                    if state.is_terminal() {
                        self.wake_waiters(id);
                    }
                }
                Effect::Requeued { id, reason } => {
                    debug!(task_id = %id, reason = requeue_label(reason), "task re-queued");
                    metrics::counter!("herd_tasks_requeued_total", "reason" => requeue_label(reason)).increment(1);
                }
                Effect::StaleReport { id, reason } => {
                    if reason == StaleReason::Duplicate {
                        metrics::counter!("herd_duplicate_results_total").increment(1);
                        debug!(task_id = %id, "dropped a result from a superseded attempt");
                    }
                }
                Effect::AttemptEnded {
                    agent_type,
                    failure,
                    run_time,
                    queue_wait,
                    score,
                    ..
                } => {
                    self.circuits.record(&agent_type, failure, now);
                    self.scaling
                        .ended(&agent_type, failure.is_none(), run_time, score);
                    let outcome = failure.map_or("succeeded", |kind| kind.as_str());
                    metrics::histogram!("herd_task_run_seconds", "agent_type" => agent_type.to_string(), "outcome" => outcome).record(run_time.as_secs_f64());
                    metrics::histogram!("herd_task_queue_wait_seconds", "agent_type" => agent_type.to_string()).record(queue_wait.as_secs_f64());
                }
            }
        }
        for (member, assignments) in direct {
            self.send_assignments(&member, assignments);
        }
        let counts = self.book.counts();
        metrics::gauge!("herd_pending_tasks").set(counts.pending as f64);
        self.held_bytes_gauge();
        self.schedule_dispatch(myself);
        // A failed attempt schedules a retry: make sure a tick comes for it.
        self.schedule_tick(myself);
    }

    /// Zeroes what this orchestrator exported of its book when it stops (a
    /// raft leader that lost its term, a restart), so that its node does not
    /// keep showing a backlog another leader now holds: an autoscaler that
    /// takes the maximum over nodes would act on it.
    pub(super) fn clear_book_gauges(&self) {
        clear_book_gauges(self.agent_types.keys());
    }

    /// The orchestrator is stopping: answers what it holds — requests
    /// waiting for their commit, and `?wait` requests — with
    /// `RequestFailure::Interrupted` rather than dropping them, which a
    /// caller on another node would only notice at its timeout.
    pub(super) fn interrupt_held_requests(&mut self) {
        let mut answered = self.durability.interrupt_held();
        for (_, waiters) in self.waiters.drain() {
            for waiter in waiters {
                let _ = waiter.send(OrchestratorReply::Failed(RequestFailure::Interrupted));
                answered += 1;
            }
        }
        if answered > 0 {
            tracing::info!(
                answered,
                "the orchestrator stops: requests it held are answered as interrupted (outcome unknown; clients retry)"
            );
        }
    }

    /// Exports the bytes the book holds; called after every change that can
    /// move them (effects carried out, submissions, which have none).
    pub(super) fn held_bytes_gauge(&self) {
        metrics::gauge!("herd_task_book_bytes").set(self.book.held_bytes() as f64);
    }

    fn wake_waiters(&mut self, id: TaskId) {
        if let Some(waiters) = self.waiters.remove(&id) {
            let view = self.task_view(id);
            for waiter in waiters {
                let _ = waiter.send(OrchestratorReply::Task(view.clone()));
            }
        }
    }

    /// Makes sure a tick comes when the next retry is due.
    pub(super) fn schedule_tick(&mut self, myself: &ActorRef<OrchestratorMsg>) {
        let Some(due) = self.book.next_retry_due() else {
            return;
        };
        if self.tick_at.is_some_and(|scheduled| scheduled <= due) {
            return;
        }
        self.tick_at = Some(due);
        let delay = due.since(UnixMillis::now()) + Duration::from_millis(1);
        myself.send_after(delay, || Mailbox::Local(OrchestratorLocal::Tick));
    }
}

fn requeue_label(reason: RequeueReason) -> &'static str {
    match reason {
        RequeueReason::MemberLost => "node_lost",
        RequeueReason::HandedBack => "handed_back",
        RequeueReason::RetryDue => "retry",
        RequeueReason::DeadLetterRetry => "dead_letter_retry",
    }
}

/// Zeroes the gauges an orchestrator exports of its book (see
/// `OrchestratorState::clear_book_gauges`); also called by the supervisor
/// when it kills one, which skips its `post_stop`.
pub fn clear_book_gauges<'a>(agent_types: impl IntoIterator<Item = &'a herd_protocol::AgentType>) {
    metrics::gauge!("herd_pending_tasks").set(0.0);
    metrics::gauge!("herd_task_book_bytes").set(0.0);
    for agent_type in agent_types {
        metrics::gauge!("herd_queue_depth", "agent_type" => agent_type.to_string()).set(0.0);
        metrics::gauge!("herd_agent_busy", "agent_type" => agent_type.to_string()).set(0.0);
    }
}
