//! Requests from every node's API: submit, read, cancel, wait for, and retry
//! tasks; cluster status, scaling decisions and updates, the health report,
//! and drains. Anything that changes the book answers only once the change
//! is durable.

use std::collections::BTreeMap;

use herd_protocol::messages::orchestrator::{
    DrainOutcome, MemberState, OrchestratorReply, OrchestratorRequest, RequestFailure, RetryOutcome,
};
use herd_protocol::messages::pool::PoolCast;
use herd_protocol::messages::scaling::UpdateRejection;
use herd_protocol::{AgentType, JsonText, Mailbox, NodeName, TaskId, TaskSpec, UnixMillis};
use ractor::{ActorRef, RpcReplyPort};
use tracing::info;

use super::OrchestratorMsg;
use super::durability::Deferred;
use super::state::OrchestratorState;
use super::status::{StatusSources, cluster_status};
use crate::task_book::{Applied, Command, Effect};

impl OrchestratorState {
    /// Answers one API request (some answers wait for the journal).
    pub(super) fn on_request(
        &mut self,
        myself: &ActorRef<OrchestratorMsg>,
        request: OrchestratorRequest,
        reply: RpcReplyPort<OrchestratorReply>,
    ) {
        if matches!(request, OrchestratorRequest::Ping) {
            let _ = reply.send(OrchestratorReply::Pong);
            return;
        }
        if let Err(failure) = self.serving() {
            let _ = reply.send(OrchestratorReply::Failed(failure));
            return;
        }
        let answer = match request {
            OrchestratorRequest::Submit(specs) => return self.submit(myself, specs, reply),
            OrchestratorRequest::Cancel(id) => return self.cancel(myself, id, reply),
            OrchestratorRequest::RetryDeadLetter { id, payload } => {
                return self.retry_dead_letter(myself, id, payload, reply);
            }
            OrchestratorRequest::AwaitTask(id) => return self.await_task(myself, id, reply),
            OrchestratorRequest::GetTask(id) => OrchestratorReply::Task(self.task_view(id)),
            OrchestratorRequest::ListTasks(query) => {
                let mut page = self.book.list(&query);
                for view in &mut page.tasks {
                    self.annotate_view(view);
                }
                OrchestratorReply::Tasks(page)
            }
            OrchestratorRequest::ClusterStatus => {
                let view = self.view.borrow().clone();
                let providers = self.providers.status(std::time::Instant::now());
                let replication = self.raft.as_ref().map(|raft| {
                    crate::replica::status::replication_status(
                        &raft.metrics().borrow(),
                        |id, node| {
                            view.up_members().any(|info| {
                                info.member.name.as_str() == node.name
                                    && info.replica_id == Some(id)
                            })
                        },
                    )
                });
                let slot_credits = self.slot_credits();
                OrchestratorReply::Cluster(cluster_status(StatusSources {
                    local: &view.local.member,
                    book: &self.book,
                    pools: &self.pools,
                    view: &view,
                    weights: &self.weights,
                    agent_types: &self.agent_types,
                    circuits: &mut self.circuits,
                    scaling: &self.scaling,
                    providers,
                    replication,
                    slot_credits: &slot_credits,
                }))
            }
            OrchestratorRequest::ScalingDecisions { limit } => {
                OrchestratorReply::Decisions(self.scaling.decisions(limit as usize))
            }
            OrchestratorRequest::HealthReport => OrchestratorReply::Health(self.health_report()),
            OrchestratorRequest::UpdateAgent { agent_type, update } => {
                let result = self
                    .scaling
                    .update_agent(&mut self.weights, &agent_type, &update);
                if result.is_ok() {
                    self.weights_changed();
                    self.schedule_dispatch(myself);
                }
                return self.answer_scaling_update(myself, result, reply);
            }
            OrchestratorRequest::UpdateScaling(update) => {
                let result = self.scaling.update_bounds(&update);
                return self.answer_scaling_update(myself, result, reply);
            }
            OrchestratorRequest::DrainNode(name) => {
                OrchestratorReply::Drain(self.drain_node(&name))
            }
            OrchestratorRequest::Ping => OrchestratorReply::Pong,
        };
        let _ = reply.send(answer);
    }

    /// Whether this node may answer as the orchestrator now.
    fn serving(&self) -> Result<(), RequestFailure> {
        let view = self.view.borrow();
        // Until the seeds were tried, this node cannot know whether the
        // cluster already has an orchestrator: accepting tasks now could
        // strand them on a junior that is about to be refused.
        if !view.discovery_complete {
            return Err(RequestFailure::Starting);
        }
        if view.orchestrator.as_ref() != Some(&view.local.member) {
            return Err(RequestFailure::NotOrchestrator);
        }
        Ok(())
    }

    /// Validates a batch once, journals it, and answers 202 once durable.
    fn submit(
        &mut self,
        myself: &ActorRef<OrchestratorMsg>,
        specs: Vec<TaskSpec>,
        reply: RpcReplyPort<OrchestratorReply>,
    ) {
        let tasks = specs
            .into_iter()
            .map(|spec| (TaskId::new_v7(), spec))
            .collect();
        // Only accepted submissions are journaled: replay never re-judges
        // them against a configuration that may have changed.
        let submission = match self.book.validate_submission(tasks, UnixMillis::now()) {
            Ok(submission) => submission,
            Err(rejection) => {
                let _ = reply.send(OrchestratorReply::Submitted(Err(rejection)));
                return;
            }
        };
        self.record_with(myself, || Command::Submit(submission.clone()));
        let agent_types: Vec<AgentType> = submission
            .tasks()
            .iter()
            .map(|(_, spec)| spec.agent_type.clone())
            .collect();
        let Applied {
            answer: acks,
            effects,
        } = self.book.submit(submission);
        // Acks are in submission order; a repeated idempotency key is not a
        // new arrival. Counted per type once per batch, not per task.
        let mut arrivals: BTreeMap<&AgentType, u64> = BTreeMap::new();
        for (ack, agent_type) in acks.iter().zip(&agent_types) {
            if !ack.existing {
                *arrivals.entry(agent_type).or_default() += 1;
            }
        }
        for (agent_type, count) in arrivals {
            self.scaling.arrived(agent_type, count);
            metrics::counter!("herd_tasks_submitted_total", "agent_type" => agent_type.to_string())
                .increment(count);
        }
        // A submission's only effects are finished tasks forgotten beyond
        // retention: nothing to carry out.
        debug_assert!(effects.iter().all(|e| matches!(e, Effect::Forgotten(_))));
        self.held_bytes_gauge();
        self.schedule_dispatch(myself);
        // 202 means durable: the answer waits for the journal.
        let answer = OrchestratorReply::Submitted(Ok(acks));
        self.release(myself, Deferred::Reply(reply, Box::new(answer)));
    }

    /// Records what operators have changed, after a successful scaling
    /// update, in the book (the whole overrides, so a new leader or a
    /// replayed journal resumes them) and answers once that is durable, as
    /// a 202 waits for its submission. A refused update changed nothing:
    /// nothing is recorded and it is answered at once.
    fn answer_scaling_update(
        &mut self,
        myself: &ActorRef<OrchestratorMsg>,
        result: Result<(), UpdateRejection>,
        reply: RpcReplyPort<OrchestratorReply>,
    ) {
        if result.is_err() {
            let _ = reply.send(OrchestratorReply::Updated(result));
            return;
        }
        let overrides = self.scaling.overrides();
        let effects = self.apply(myself, Command::ScalingOverrides(Box::new(overrides)));
        debug_assert!(effects.is_empty(), "scaling overrides change no task");
        let answer = OrchestratorReply::Updated(result);
        self.release(myself, Deferred::Reply(reply, Box::new(answer)));
    }

    fn cancel(
        &mut self,
        myself: &ActorRef<OrchestratorMsg>,
        id: TaskId,
        reply: RpcReplyPort<OrchestratorReply>,
    ) {
        let now = UnixMillis::now();
        self.record_with(myself, || Command::Cancel { id, now });
        let Applied { answer, effects } = self.book.cancel(id, now);
        self.release(myself, Deferred::Effects(effects));
        let answer = OrchestratorReply::Cancel(answer);
        self.release(myself, Deferred::Reply(reply, Box::new(answer)));
    }

    /// Answers at once for a finished (or unknown) task, else when it
    /// finishes.
    fn await_task(
        &mut self,
        myself: &ActorRef<OrchestratorMsg>,
        id: TaskId,
        reply: RpcReplyPort<OrchestratorReply>,
    ) {
        match self.task_view(id) {
            Some(view) if !view.state.is_terminal() => {
                self.waiters.entry(id).or_default().push(reply);
            }
            other => {
                let answer = OrchestratorReply::Task(other);
                self.release(myself, Deferred::Reply(reply, Box::new(answer)));
            }
        }
    }

    fn retry_dead_letter(
        &mut self,
        myself: &ActorRef<OrchestratorMsg>,
        id: TaskId,
        payload: Option<JsonText>,
        reply: RpcReplyPort<OrchestratorReply>,
    ) {
        if let Some(Err(rejection)) = payload.as_ref().map(|p| self.book.validate_payload(p)) {
            let _ = reply.send(OrchestratorReply::Submitted(Err(rejection)));
            return;
        }
        let now = UnixMillis::now();
        self.record_with(myself, || Command::RetryDead {
            id,
            payload: payload.clone(),
            now,
        });
        let Applied { answer, effects } = self.book.retry_dead(id, payload, now);
        if answer == RetryOutcome::Retried {
            info!(task_id = %id, "dead-letter task retried");
        }
        self.release(myself, Deferred::Effects(effects));
        let answer = OrchestratorReply::Retry(answer);
        self.release(myself, Deferred::Reply(reply, Box::new(answer)));
        self.schedule_dispatch(myself);
    }

    fn drain_node(&mut self, name: &NodeName) -> DrainOutcome {
        let Some((member, entry)) = self
            .pools
            .by_name(name)
            .map(|(m, e)| (m.clone(), e.clone()))
        else {
            let known = self
                .view
                .borrow()
                .member_named(name)
                .is_some_and(|info| info.state == MemberState::Up);
            return if known {
                DrainOutcome::NoPool
            } else {
                DrainOutcome::UnknownNode
            };
        };
        self.pools.set_draining(&member, &self.weights);
        let grace_ms = self.drain_grace.as_millis() as u64;
        info!(target_node = %member, grace_ms, "draining node on request");
        let _ = entry
            .actor
            .cast(Mailbox::Cast(PoolCast::Drain { grace_ms }));
        DrainOutcome::Draining
    }
}
