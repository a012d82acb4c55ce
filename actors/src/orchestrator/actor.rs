//! The orchestrator actor: see the module docs.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use herd_config::{CircuitSettings, ScalingSettings};
use herd_protocol::limits::chunk_by_budget;
use herd_protocol::messages::groups;
use herd_protocol::messages::orchestrator::{
    CancelOutcome, DrainOutcome, MemberState, OrchestratorCast, OrchestratorReply,
    OrchestratorRequest, PoolRegistration, RequestFailure, RetryOutcome,
};
use herd_protocol::messages::pool::PoolCast;
use herd_protocol::{
    AgentType, AssignmentEpoch, JsonText, Mailbox, MemberId, Protocol, TaskAssignment, TaskId,
    TaskReport, UnixMillis,
};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

use super::circuits::Circuits;
use super::durability::{Deferred, Durability};
use super::health_report::{HealthInput, health_report};
use super::pools::{PoolEntry, PoolRegistry};
use super::scaling_control::{PoolSnapshot, ScalingControl};
use super::status::{StatusSources, cluster_status};
use crate::journal::{JournalStore, JournalWriter, WriterEvent};
use crate::membership::ClusterView;
use crate::pool::PoolMsg;
use crate::pool::ResourceSample;
use crate::scheduling::{DispatchInput, PoolLoad, plan_dispatch};
use crate::task_book::{
    AgentTypeSettings, Command, Effect, RequeueReason, RetryPolicy, StaleReason, TaskBook,
    TaskBookSettings,
};
use crate::task_trace;
use opentelemetry::KeyValue;

/// After a restart, how long nodes that ran tasks get to re-register before
/// their tasks are declared lost.
pub const RECOVERY_GRACE: Duration = Duration::from_secs(10);

/// The orchestrator's message vocabulary.
pub struct OrchestratorProtocol;

impl Protocol for OrchestratorProtocol {
    const NAME: &'static str = "orchestrator";
    type Cast = OrchestratorCast;
    type Request = OrchestratorRequest;
    type Reply = OrchestratorReply;
    type Local = OrchestratorLocal;
}

type OrchestratorMsg = Mailbox<OrchestratorProtocol>;

/// Messages from this node to the orchestrator.
#[derive(Debug)]
pub enum OrchestratorLocal {
    /// Spread pending work over free slots (coalesced).
    Dispatch,
    /// Scheduled retries may be due.
    Tick,
    /// The cluster view changed.
    ViewChanged,
    /// Hand buffered journal entries to the writer (coalesced).
    FlushJournal,
    /// The journal writer reports.
    Journal(WriterEvent),
    /// The recovery grace after a restart is over.
    RecoveryDeadline,
    /// Time for a scaling decision.
    ScalingTick,
}

/// One agent type as the orchestrator schedules it.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentTypeEntry {
    /// Share of the slots.
    pub weight: f64,
    /// Default per-attempt time limit.
    pub timeout_s: Option<u32>,
    /// Default attempts.
    pub max_attempts: Option<u32>,
    /// Backoff between attempts (`None`: the book's default).
    pub retry: Option<RetryPolicy>,
    /// Circuit breaker settings.
    pub circuit: CircuitSettings,
    /// Its tasks call an LLM API (they count toward
    /// `max_concurrent_llm_calls` per node).
    pub llm: bool,
}

/// Starts the orchestrator.
pub struct OrchestratorArgs {
    /// Book limits and defaults.
    pub settings: TaskBookSettings,
    /// The agent types the cluster runs.
    pub agent_types: BTreeMap<AgentType, AgentTypeEntry>,
    /// The cluster view (its `local` member is this node).
    pub view: watch::Receiver<ClusterView>,
    /// Where the journal lives; `None` keeps the book in memory only.
    pub data_dir: Option<PathBuf>,
    /// Grace period sent with drain requests.
    pub drain_grace: Duration,
    /// Deployment mode, pool bounds and rebalancing.
    pub scaling: ScalingSettings,
}

/// The orchestrator actor.
pub struct Orchestrator;

pub struct OrchestratorState {
    book: TaskBook,
    agent_types: BTreeMap<AgentType, AgentTypeEntry>,
    weights: BTreeMap<AgentType, f64>,
    borrow_order: Vec<AgentType>,
    pools: PoolRegistry,
    view: watch::Receiver<ClusterView>,
    waiters: HashMap<TaskId, Vec<RpcReplyPort<OrchestratorReply>>>,
    durability: Durability,
    circuits: Circuits,
    dispatch_scheduled: bool,
    flush_scheduled: bool,
    tick_at: Option<UnixMillis>,
    reopen_at: Option<Instant>,
    rotation: usize,
    recovering_until: Option<Instant>,
    drain_grace: Duration,
    max_payload_bytes: usize,
    scaling: ScalingControl,
    llm_types: BTreeSet<AgentType>,
}

impl Actor for Orchestrator {
    type Msg = OrchestratorMsg;
    type State = OrchestratorState;
    type Arguments = OrchestratorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: OrchestratorArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let type_settings: Vec<(AgentType, AgentTypeSettings)> = args
            .agent_types
            .iter()
            .map(|(agent_type, entry)| {
                (
                    agent_type.clone(),
                    AgentTypeSettings {
                        timeout_s: entry.timeout_s,
                        max_attempts: entry.max_attempts,
                        retry: entry.retry.clone(),
                    },
                )
            })
            .collect();
        let max_payload_bytes = args.settings.max_payload_bytes;
        let (book, durability, recovered_work) = match &args.data_dir {
            None => (
                TaskBook::new(args.settings, type_settings),
                Durability::in_memory(),
                false,
            ),
            Some(dir) => {
                let started = Instant::now();
                let store = JournalStore::open(dir)?;
                let recovered = store.recover(TaskBook::new(args.settings, type_settings))?;
                let book = recovered.book;
                let counts = book.counts();
                info!(
                    data_dir = %dir.display(),
                    pending = counts.pending,
                    running = counts.running,
                    failed = counts.failed,
                    replayed = recovered.replayed,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "orchestrator state recovered from the journal"
                );
                let notify_to = myself.clone();
                let writer = JournalWriter::start(store, move |event| {
                    let _ = notify_to.cast(Mailbox::Local(OrchestratorLocal::Journal(event)));
                });
                let work = counts.running > 0;
                (
                    book,
                    Durability::journaled(writer, recovered.last_sequence),
                    work,
                )
            }
        };
        let configured: BTreeMap<AgentType, f64> = args
            .agent_types
            .iter()
            .map(|(t, e)| (t.clone(), e.weight))
            .collect();
        let scaling = ScalingControl::new(args.scaling.clone(), &configured);
        let weights = scaling.initial_weights();
        let borrow_order = borrow_order(&weights);
        let llm_types = args
            .agent_types
            .iter()
            .filter(|(_, e)| e.llm)
            .map(|(t, _)| t.clone())
            .collect();
        myself.send_interval(args.scaling.interval, || {
            Mailbox::Local(OrchestratorLocal::ScalingTick)
        });
        let circuits = Circuits::new(
            args.agent_types
                .iter()
                .map(|(t, e)| (t.clone(), e.circuit.clone())),
        );
        ractor::pg::join(groups::ORCHESTRATOR.to_string(), vec![myself.get_cell()]);
        forward_view_changes(args.view.clone(), myself.clone());
        let recovering_until = recovered_work.then(|| {
            myself.send_after(RECOVERY_GRACE, || {
                Mailbox::Local(OrchestratorLocal::RecoveryDeadline)
            });
            Instant::now() + RECOVERY_GRACE
        });
        info!(agent_types = ?weights.keys().collect::<Vec<_>>(), journaled = durability.is_journaled(), "orchestrator started");
        let mut state = OrchestratorState {
            book,
            agent_types: args.agent_types,
            weights,
            borrow_order,
            pools: PoolRegistry::default(),
            view: args.view,
            waiters: HashMap::new(),
            durability,
            circuits,
            dispatch_scheduled: false,
            flush_scheduled: false,
            tick_at: None,
            reopen_at: None,
            rotation: 0,
            recovering_until,
            drain_grace: args.drain_grace,
            max_payload_bytes,
            scaling,
            llm_types,
        };
        state.schedule_tick(&myself);
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            Mailbox::Call(request, reply) => state.on_request(&myself, request, reply),
            Mailbox::Cast(OrchestratorCast::PoolRegistered(registration)) => {
                state.on_pool_registered(&myself, registration)
            }
            Mailbox::Cast(OrchestratorCast::Reports {
                member,
                first_sequence,
                reports,
            }) => state.on_reports(&myself, member, first_sequence, reports),
            Mailbox::Cast(OrchestratorCast::PoolDraining { member }) => {
                if state.pools.set_draining(&member, &state.weights) {
                    info!(pool = %member, "pool is draining; it gets no new work");
                }
            }
            Mailbox::Cast(OrchestratorCast::HandBack { member, attempts }) => {
                info!(pool = %member, attempts = attempts.len(), "draining pool handed back unfinished attempts");
                let effects = state.apply(
                    &myself,
                    Command::HandBack {
                        member,
                        attempts,
                        now: UnixMillis::now(),
                    },
                );
                state.release(&myself, Deferred::Effects(effects));
                state.schedule_dispatch(&myself);
            }
            Mailbox::Cast(OrchestratorCast::PoolStats {
                member,
                cpu_percent,
                memory_percent,
                cores,
                memory_gb,
            }) => {
                if state.pools.get(&member).is_some() {
                    state.scaling.observe_resources(
                        member,
                        ResourceSample {
                            cpu_percent,
                            memory_percent,
                            cores,
                            memory_gb,
                        },
                    );
                }
            }
            Mailbox::Local(OrchestratorLocal::ScalingTick) => state.scaling_step(&myself),
            Mailbox::Local(OrchestratorLocal::Dispatch) => state.dispatch(&myself),
            Mailbox::Local(OrchestratorLocal::Tick) => {
                state.tick_at = None;
                let effects = state.apply(
                    &myself,
                    Command::Tick {
                        now: UnixMillis::now(),
                    },
                );
                state.release(&myself, Deferred::Effects(effects));
                state.schedule_dispatch(&myself);
                state.schedule_tick(&myself);
            }
            Mailbox::Local(OrchestratorLocal::ViewChanged) => state.on_view_changed(&myself),
            Mailbox::Local(OrchestratorLocal::RecoveryDeadline) => {
                state.recovering_until = None;
                state.on_view_changed(&myself);
            }
            Mailbox::Local(OrchestratorLocal::FlushJournal) => {
                state.flush_scheduled = false;
                state.durability.flush();
                if state.durability.snapshot_due() {
                    let started = Instant::now();
                    let snapshot = herd_protocol::codec::encode(&state.book)
                        .map_err(|e| format!("the task book could not be encoded: {e}"))?;
                    debug!(
                        bytes = snapshot.len(),
                        encode_ms = started.elapsed().as_millis() as u64,
                        "journal snapshot queued"
                    );
                    state.durability.snapshot(snapshot);
                }
            }
            Mailbox::Local(OrchestratorLocal::Journal(event)) => match event {
                WriterEvent::Durable {
                    through,
                    entries,
                    commit,
                } => {
                    metrics::histogram!("herd_journal_commit_seconds").record(commit.as_secs_f64());
                    metrics::counter!("herd_journal_entries_total").increment(entries as u64);
                    for action in state.durability.durable(through) {
                        state.run(&myself, action);
                    }
                }
                WriterEvent::Snapshotted { through, bytes } => {
                    metrics::gauge!("herd_journal_snapshot_bytes").set(bytes as f64);
                    debug!(through, bytes, "journal snapshot stored");
                }
                WriterEvent::Failed(reason) => {
                    error!(%reason, "the orchestrator journal failed; stopping the orchestrator so no unrecorded state is acknowledged");
                    return Err(format!("journal failure: {reason}").into());
                }
            },
            Mailbox::Undecodable(frame) => {
                metrics::counter!("herd_undecodable_frames_total", "protocol" => frame.protocol)
                    .increment(1);
                warn!(bytes = frame.bytes, error = %frame.error, "dropped an undecodable frame addressed to the orchestrator");
            }
        }
        Ok(())
    }
}

fn forward_view_changes(
    mut view: watch::Receiver<ClusterView>,
    orchestrator: ActorRef<OrchestratorMsg>,
) {
    tokio::spawn(async move {
        while view.changed().await.is_ok() {
            if orchestrator
                .cast(Mailbox::Local(OrchestratorLocal::ViewChanged))
                .is_err()
            {
                break;
            }
        }
    });
}

impl OrchestratorState {
    fn local_member(&self) -> MemberId {
        self.view.borrow().local.member.clone()
    }

    // ---- the journaled book ---------------------------------------------

    /// Journals and applies one command.
    fn apply(&mut self, myself: &ActorRef<OrchestratorMsg>, command: Command) -> Vec<Effect> {
        self.durability.record(&command);
        if self.durability.has_buffered() && !self.flush_scheduled {
            self.flush_scheduled = true;
            let _ = myself.cast(Mailbox::Local(OrchestratorLocal::FlushJournal));
        }
        self.book.apply(command)
    }

    /// Runs `action` once everything applied so far is durable.
    fn release(&mut self, myself: &ActorRef<OrchestratorMsg>, action: Deferred) {
        if let Some(action) = self.durability.defer(action) {
            self.run(myself, action);
        }
    }

    fn run(&mut self, myself: &ActorRef<OrchestratorMsg>, action: Deferred) {
        match action {
            Deferred::Reply(port, reply) => {
                let _ = port.send(*reply);
            }
            Deferred::Effects(effects) => self.carry_out(myself, effects),
            Deferred::Assignments(member, assignments) => {
                self.send_assignments(&member, assignments)
            }
            Deferred::Ack { pool, through } => {
                let _ = pool.cast(Mailbox::Cast(PoolCast::ReportsAck { through }));
            }
        }
    }

    // ---- requests ------------------------------------------------------

    fn on_request(
        &mut self,
        myself: &ActorRef<OrchestratorMsg>,
        request: OrchestratorRequest,
        reply: RpcReplyPort<OrchestratorReply>,
    ) {
        {
            let view = self.view.borrow();
            // Until the seeds were tried, this node cannot know whether the
            // cluster already has an orchestrator: accepting tasks now could
            // strand them on a junior that is about to be refused.
            if !view.discovery_complete {
                let _ = reply.send(OrchestratorReply::Failed(RequestFailure::Starting));
                return;
            }
            if view.orchestrator.as_ref() != Some(&view.local.member) {
                let _ = reply.send(OrchestratorReply::Failed(RequestFailure::NotOrchestrator));
                return;
            }
        }
        let now = UnixMillis::now();
        let answer = match request {
            OrchestratorRequest::Submit(specs) => {
                let tasks: Vec<_> = specs
                    .into_iter()
                    .map(|spec| (TaskId::new_v7(), spec))
                    .collect();
                // Only accepted submissions are journaled: replay never
                // re-judges them against a configuration that may have changed.
                if let Err(rejection) = self.book.validate_submission(&tasks) {
                    let _ = reply.send(OrchestratorReply::Submitted(Err(rejection)));
                    return;
                }
                let agent_types: Vec<AgentType> = tasks
                    .iter()
                    .map(|(_, spec)| spec.agent_type.clone())
                    .collect();
                let effects = self.apply(myself, Command::Submit { tasks, now });
                let answer = effects
                    .iter()
                    .find_map(|effect| match effect {
                        Effect::Accepted(acks) => {
                            // Acks are in submission order; a repeated
                            // idempotency key is not a new arrival. Counted
                            // per type once per batch, not per task.
                            let mut arrivals: BTreeMap<&AgentType, u64> = BTreeMap::new();
                            for (ack, agent_type) in acks.iter().zip(&agent_types) {
                                if !ack.existing {
                                    *arrivals.entry(agent_type).or_default() += 1;
                                }
                            }
                            for (agent_type, count) in arrivals {
                                self.scaling.arrived(agent_type, count);
                                metrics::counter!("herd_tasks_submitted_total", "agent_type" => agent_type.to_string()).increment(count);
                            }
                            Some(OrchestratorReply::Submitted(Ok(acks.clone())))
                        }
                        Effect::Rejected(rejection) => {
                            Some(OrchestratorReply::Submitted(Err(rejection.clone())))
                        }
                        _ => None,
                    })
                    .expect("submit always answers");
                self.schedule_dispatch(myself);
                // 202 means durable: the answer waits for the journal.
                self.release(myself, Deferred::Reply(reply, Box::new(answer)));
                return;
            }
            OrchestratorRequest::GetTask(id) => OrchestratorReply::Task(self.book.view(id)),
            OrchestratorRequest::ListTasks(query) => {
                OrchestratorReply::Tasks(self.book.list(&query))
            }
            OrchestratorRequest::Cancel(id) => {
                let effects = self.apply(myself, Command::Cancel { id, now });
                let outcome = effects
                    .iter()
                    .find_map(|effect| match effect {
                        Effect::NotApplicable {
                            state: Some(state), ..
                        } => Some(CancelOutcome::AlreadyFinished(*state)),
                        Effect::NotApplicable { state: None, .. } => Some(CancelOutcome::NotFound),
                        _ => None,
                    })
                    .unwrap_or(CancelOutcome::Cancelled);
                self.release(myself, Deferred::Effects(effects));
                self.release(
                    myself,
                    Deferred::Reply(reply, Box::new(OrchestratorReply::Cancel(outcome))),
                );
                return;
            }
            OrchestratorRequest::AwaitTask(id) => match self.book.view(id) {
                Some(view) if !view.state.is_terminal() => {
                    self.waiters.entry(id).or_default().push(reply);
                    return;
                }
                other => {
                    self.release(
                        myself,
                        Deferred::Reply(reply, Box::new(OrchestratorReply::Task(other))),
                    );
                    return;
                }
            },
            OrchestratorRequest::ClusterStatus => {
                let view = self.view.borrow().clone();
                OrchestratorReply::Cluster(cluster_status(StatusSources {
                    local: &view.local.member,
                    book: &self.book,
                    pools: &self.pools,
                    view: &view,
                    weights: &self.weights,
                    agent_types: &self.agent_types,
                    circuits: &mut self.circuits,
                    scaling: &self.scaling,
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
                OrchestratorReply::Updated(result)
            }
            OrchestratorRequest::UpdateScaling(update) => {
                OrchestratorReply::Updated(self.scaling.update_bounds(&update))
            }
            OrchestratorRequest::RetryDeadLetter { id, payload } => {
                if let Some(payload) = payload
                    .as_ref()
                    .filter(|p| p.len() > self.max_payload_bytes)
                {
                    let rejection =
                        herd_protocol::messages::orchestrator::SubmitRejection::PayloadTooLarge {
                            index: 0,
                            bytes: payload.len(),
                            limit: self.max_payload_bytes,
                        };
                    let _ = reply.send(OrchestratorReply::Submitted(Err(rejection)));
                    return;
                }
                self.retry_dead_letter(myself, id, payload, reply);
                return;
            }
            OrchestratorRequest::DrainNode(name) => {
                OrchestratorReply::Drain(self.drain_node(&name))
            }
        };
        let _ = reply.send(answer);
    }

    fn retry_dead_letter(
        &mut self,
        myself: &ActorRef<OrchestratorMsg>,
        id: TaskId,
        payload: Option<JsonText>,
        reply: RpcReplyPort<OrchestratorReply>,
    ) {
        let effects = self.apply(
            myself,
            Command::RetryDead {
                id,
                payload,
                now: UnixMillis::now(),
            },
        );
        let outcome = effects
            .iter()
            .find_map(|effect| match effect {
                Effect::NotApplicable {
                    state: Some(state), ..
                } => Some(RetryOutcome::NotDead(*state)),
                Effect::NotApplicable { state: None, .. } => Some(RetryOutcome::NotFound),
                Effect::Requeued {
                    reason: RequeueReason::DeadLetterRetry,
                    ..
                } => Some(RetryOutcome::Retried),
                _ => None,
            })
            .unwrap_or(RetryOutcome::NotFound);
        if outcome == RetryOutcome::Retried {
            info!(task_id = %id, "dead-letter task retried");
        }
        self.release(myself, Deferred::Effects(effects));
        self.release(
            myself,
            Deferred::Reply(reply, Box::new(OrchestratorReply::Retry(outcome))),
        );
        self.schedule_dispatch(myself);
    }

    fn drain_node(&mut self, name: &herd_protocol::NodeName) -> DrainOutcome {
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

    // ---- pools and reports ----------------------------------------------

    fn on_pool_registered(
        &mut self,
        myself: &ActorRef<OrchestratorMsg>,
        registration: PoolRegistration,
    ) {
        let member = registration.member.clone();
        let view = self.view.borrow().clone();
        let Some(actor) = find_pool(&view, &member) else {
            debug!(pool = %member, "registration from a pool not yet in the view; it will retry");
            return;
        };
        let now = UnixMillis::now();
        // A new incarnation replaces the old one, whose attempts are lost.
        if let Some((previous, _)) = self
            .pools
            .by_name(&member.name)
            .map(|(m, e)| (m.clone(), e.clone()))
            && previous != member
        {
            info!(old = %previous, new = %member, "pool re-registered under a new incarnation");
            self.pools.remove(&previous, &self.weights);
            let effects = self.apply(
                myself,
                Command::MemberLost {
                    member: previous,
                    now,
                },
            );
            self.release(myself, Deferred::Effects(effects));
        }
        // Attempts the book places on this pool that the pool neither runs nor
        // has a report for were lost (the pool restarted); retry them.
        let accounted: HashSet<(TaskId, AssignmentEpoch)> = registration
            .running
            .iter()
            .map(|r| (r.task_id, r.epoch))
            .chain(registration.unacked.iter().copied())
            .collect();
        let lost: Vec<_> = self
            .book
            .running_attempts_on(&member)
            .into_iter()
            .filter(|attempt| !accounted.contains(attempt))
            .collect();
        if !lost.is_empty() {
            warn!(pool = %member, lost = lost.len(), "pool registered without attempts it was running; retrying them");
            let effects = self.apply(
                myself,
                Command::AttemptsLost {
                    member: member.clone(),
                    attempts: lost,
                    now,
                },
            );
            self.release(myself, Deferred::Effects(effects));
        }
        let known = self.pools.get(&member).is_some();
        let supports: BTreeSet<AgentType> = registration
            .agent_types
            .into_iter()
            .filter(|t| self.agent_types.contains_key(t))
            .collect();
        let entry = PoolEntry {
            actor: actor.clone(),
            workers: registration.workers,
            supports,
            draining: registration.draining,
            capacity: registration.capacity.max(registration.workers),
        };
        self.pools.insert(member.clone(), entry, &self.weights);
        if !known {
            info!(pool = %member, workers = registration.workers, "pool registered");
        }
        let _ = actor.cast(Mailbox::Cast(PoolCast::Welcome {
            orchestrator: self.local_member(),
        }));
        self.schedule_dispatch(myself);
    }

    fn on_reports(
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

    fn on_view_changed(&mut self, myself: &ActorRef<OrchestratorMsg>) {
        let view = self.view.borrow().clone();
        let now = UnixMillis::now();
        let recovering = self
            .recovering_until
            .is_some_and(|until| Instant::now() < until);
        let mut lost: BTreeSet<MemberId> = BTreeSet::new();
        for member in self
            .pools
            .members()
            .into_iter()
            .chain(self.book.members_with_work().cloned().collect::<Vec<_>>())
        {
            if view.is_alive(&member) {
                continue;
            }
            match view.member_named(&member.name) {
                // Seen and gone (down, left, or replaced by a newer incarnation).
                Some(info) if info.member != member || info.state != MemberState::Up => {
                    lost.insert(member);
                }
                // Not seen since a restart: wait for it to re-register.
                _ if recovering => {}
                _ => {
                    lost.insert(member);
                }
            }
        }
        for member in lost {
            let attempts = self.book.running_total_on(&member);
            let info = view
                .member_named(&member.name)
                .filter(|info| info.member == member);
            let left = info.is_some_and(|info| info.state == MemberState::Left);
            if left {
                info!(peer = %member, attempts, "node left; re-queueing anything it still held");
            } else {
                warn!(peer = %member, attempts, "node is gone; re-queueing its tasks");
            }
            if let Some(info) = info {
                metrics::histogram!("herd_failover_requeue_seconds")
                    .record(now.since(info.state_since).as_secs_f64());
            }
            self.pools.remove(&member, &self.weights);
            self.scaling.forget_pool(&member);
            // A node that left on purpose handed back everything it knew of;
            // what it still holds here was sent while it was leaving and never
            // ran: give it back without counting an attempt.
            let command = if left {
                Command::HandBack {
                    attempts: self.book.running_attempts_on(&member),
                    member,
                    now,
                }
            } else {
                Command::MemberLost { member, now }
            };
            let effects = self.apply(myself, command);
            self.release(myself, Deferred::Effects(effects));
        }
        self.schedule_dispatch(myself);
    }

    // ---- traces --------------------------------------------------------

    /// `herd.queue`: from submission to this first assignment.
    fn trace_queued(&self, assignment: &TaskAssignment) {
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
    fn trace_completed(&self, member: &MemberId, report: &TaskReport) {
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

    // ---- scaling -------------------------------------------------------

    /// Every pool with its slots, capacity and busy slots.
    fn pool_snapshots(&self) -> Vec<PoolSnapshot> {
        let view = self.view.borrow();
        self.pools
            .iter()
            .map(|(member, entry)| PoolSnapshot {
                member: member.clone(),
                slots: entry.workers,
                capacity: entry.capacity,
                busy: self.book.running_total_on(member),
                serving: !entry.draining && view.is_up(member),
            })
            .collect()
    }

    /// One scaling interval: measure, decide, resize pools, move weights,
    /// record the decision.
    fn scaling_step(&mut self, myself: &ActorRef<OrchestratorMsg>) {
        if !self.view.borrow().discovery_complete {
            return;
        }
        let pools = self.pool_snapshots();
        let per_type: Vec<(AgentType, u64, u32)> = self
            .agent_types
            .keys()
            .map(|t| {
                let running = pools
                    .iter()
                    .map(|p| self.book.running_on(&p.member, t))
                    .sum();
                (t.clone(), self.book.queue_depth(t), running)
            })
            .collect();
        for (agent_type, queued, running) in &per_type {
            metrics::gauge!("herd_queue_depth", "agent_type" => agent_type.to_string())
                .set(*queued as f64);
            metrics::gauge!("herd_agent_busy", "agent_type" => agent_type.to_string())
                .set(f64::from(*running));
        }
        if pools.is_empty() {
            // Nothing to size or share until a pool registers.
            return;
        }
        let plan = self.scaling.plan(&self.weights, &per_type, &pools);
        if let Some(weights) = &plan.weights {
            self.weights = weights.clone();
        }
        for (member, workers) in &plan.resize {
            self.pools.set_workers(member, *workers);
            if let Some(entry) = self.pools.get(member) {
                let _ = entry
                    .actor
                    .cast(Mailbox::Cast(PoolCast::Resize { workers: *workers }));
            }
        }
        let changed = plan.weights.is_some() || !plan.resize.is_empty();
        if changed {
            self.weights_changed();
        } else {
            self.publish_allocation();
        }
        self.scaling.record(plan, self.pools.allocation(), &pools);
        if changed {
            self.schedule_dispatch(myself);
        }
    }

    /// Weights or slots changed: new quotas, borrowing order and gauges.
    fn weights_changed(&mut self) {
        self.pools.reallocate(&self.weights);
        self.borrow_order = borrow_order(&self.weights);
        self.publish_allocation();
    }

    /// Weight and slot gauges.
    fn publish_allocation(&self) {
        let allocation = self.pools.allocation();
        for (agent_type, weight) in &self.weights {
            metrics::gauge!("herd_agent_weight", "agent_type" => agent_type.to_string())
                .set(*weight);
            metrics::gauge!("herd_agent_slots", "agent_type" => agent_type.to_string()).set(
                f64::from(allocation.per_type.get(agent_type).copied().unwrap_or(0)),
            );
        }
        let total: u32 = self
            .pools
            .iter()
            .filter(|(_, e)| !e.draining)
            .map(|(_, e)| e.workers)
            .sum();
        metrics::gauge!("herd_worker_slots").set(f64::from(total));
    }

    fn health_report(&mut self) -> herd_protocol::messages::scaling::SystemHealthReport {
        let pools = self.pool_snapshots();
        let view = self.view.borrow().clone();
        let now = Instant::now();
        let serving: Vec<&PoolSnapshot> = pools.iter().filter(|p| p.serving).collect();
        let healthy_slots: u32 = serving.iter().map(|p| p.slots).sum();
        let llm_running: u32 = self
            .llm_types
            .iter()
            .flat_map(|t| pools.iter().map(|p| self.book.running_on(&p.member, t)))
            .sum();
        let settings = self.scaling.settings();
        let ceiling = settings
            .max_workers
            .min(serving.iter().map(|p| p.capacity).sum());
        let (cpu_percent, memory_percent) = self.scaling.mean_resources();
        let circuits_open = self
            .agent_types
            .keys()
            .filter(|t| {
                self.circuits.status(t, now)
                    != herd_protocol::messages::orchestrator::CircuitStatus::Closed
            })
            .count();
        let queued: BTreeMap<AgentType, crate::scaling::TypeDemand> = self
            .agent_types
            .keys()
            .map(|t| {
                let mut demand = self
                    .scaling
                    .demand()
                    .get(t)
                    .cloned()
                    .unwrap_or_else(crate::scaling::TypeDemand::idle);
                demand.queued = self.book.queue_depth(t);
                (t.clone(), demand)
            })
            .collect();
        health_report(&HealthInput {
            total_slots: pools.iter().map(|p| p.slots).sum(),
            healthy_slots,
            busy: serving.iter().map(|p| p.busy).sum(),
            pending: {
                let counts = self.book.counts();
                counts.pending + counts.failed
            },
            oldest_pending_since: self.book.oldest_pending_since(),
            bottleneck: crate::scaling::rebalance::bottleneck(&queued),
            nodes_unhealthy: view
                .peers
                .values()
                .filter(|p| matches!(p.state, MemberState::Suspect | MemberState::Down))
                .count(),
            pools_draining: pools.iter().filter(|p| !p.serving).count(),
            circuits_open,
            scale_up_threshold: settings.scale_up_threshold,
            at_max: settings.autoscale && healthy_slots >= ceiling,
            cpu_percent,
            memory_percent,
            llm_running,
            llm_capacity: settings.max_concurrent_llm_calls * serving.len() as u32,
            now: UnixMillis::now(),
        })
    }

    // ---- dispatch ------------------------------------------------------

    fn schedule_dispatch(&mut self, myself: &ActorRef<OrchestratorMsg>) {
        // One Dispatch per burst: it runs after the messages already queued,
        // so a burst of submissions or reports yields one batch per pool.
        if !self.dispatch_scheduled {
            self.dispatch_scheduled = true;
            let _ = myself.cast(Mailbox::Local(OrchestratorLocal::Dispatch));
        }
    }

    fn dispatch(&mut self, myself: &ActorRef<OrchestratorMsg>) {
        self.dispatch_scheduled = false;
        let now = Instant::now();
        let mut demand = BTreeMap::new();
        for agent_type in self.agent_types.keys() {
            let queued = self.book.queue_depth(agent_type);
            if queued > 0 {
                let admissible = self.circuits.admissible(agent_type, now);
                if admissible > 0 {
                    demand.insert(agent_type.clone(), queued.min(admissible));
                }
            }
        }
        self.schedule_reopening(myself);
        if demand.is_empty() {
            return;
        }
        let view = self.view.borrow().clone();
        let mut loads: Vec<PoolLoad> = self
            .pools
            .iter()
            .filter(|(member, entry)| !entry.draining && view.is_up(member))
            .map(|(member, entry)| {
                let running: BTreeMap<AgentType, u32> = self
                    .agent_types
                    .keys()
                    .map(|t| (t.clone(), self.book.running_on(member, t)))
                    .collect();
                let llm_running: u32 = self.llm_types.iter().map(|t| running[t]).sum();
                PoolLoad {
                    member: member.clone(),
                    slots: entry.workers,
                    llm_room: self
                        .scaling
                        .settings()
                        .max_concurrent_llm_calls
                        .saturating_sub(llm_running),
                    running,
                }
            })
            .collect();
        if loads.is_empty() {
            return;
        }
        // Rotate the starting pool so light load spreads evenly.
        self.rotation = self.rotation.wrapping_add(1);
        let start = self.rotation % loads.len();
        loads.rotate_left(start);
        let plan = plan_dispatch(&DispatchInput {
            pools: &loads,
            allocation: self.pools.allocation(),
            demand: &demand,
            borrow_order: &self.borrow_order,
            llm_types: &self.llm_types,
        });
        let stamp = UnixMillis::now();
        let mut batches: BTreeMap<MemberId, Vec<TaskAssignment>> = BTreeMap::new();
        for (member, agent_type, count) in plan {
            let effects = self.apply(
                myself,
                Command::Assign {
                    member,
                    agent_type: agent_type.clone(),
                    max: count as usize,
                    now: stamp,
                },
            );
            let mut assigned = 0;
            for effect in effects {
                if let Effect::Dispatch { member, assignment } = effect {
                    self.trace_queued(&assignment);
                    batches.entry(member).or_default().push(assignment);
                    assigned += 1;
                }
            }
            self.circuits.admitted(&agent_type, assigned);
        }
        for (member, assignments) in batches {
            self.release(myself, Deferred::Assignments(member, assignments));
        }
    }

    fn send_assignments(&self, member: &MemberId, assignments: Vec<TaskAssignment>) {
        let Some(pool) = self.pools.get(member) else {
            // The pool left while the journal was committing; the view change
            // that removed it re-queued these attempts.
            return;
        };
        if task_trace::enabled() {
            let now = std::time::SystemTime::now();
            for assignment in &assignments {
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
        for batch in chunk_by_budget(assignments, |a| a.payload.len()) {
            let message = Mailbox::Cast(PoolCast::Assign {
                orchestrator: self.local_member(),
                assignments: batch,
            });
            if let Err(error) = pool.actor.cast(message) {
                // The session is going away; the view change re-queues these.
                warn!(pool = %member, %error, "could not send assignments");
            }
        }
    }

    // ---- effects -------------------------------------------------------

    fn carry_out(&mut self, myself: &ActorRef<OrchestratorMsg>, effects: Vec<Effect>) {
        let now = Instant::now();
        let mut direct: BTreeMap<MemberId, Vec<TaskAssignment>> = BTreeMap::new();
        for effect in effects {
            match effect {
                Effect::Accepted(_)
                | Effect::Rejected(_)
                | Effect::NotApplicable { .. }
                | Effect::Forgotten(_) => {}
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
                Effect::Requeued { reason, .. } => {
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
        self.schedule_dispatch(myself);
        // A failed attempt schedules a retry: make sure a tick comes for it.
        self.schedule_tick(myself);
    }

    fn wake_waiters(&mut self, id: TaskId) {
        if let Some(waiters) = self.waiters.remove(&id) {
            let view = self.book.view(id);
            for waiter in waiters {
                let _ = waiter.send(OrchestratorReply::Task(view.clone()));
            }
        }
    }

    fn schedule_tick(&mut self, myself: &ActorRef<OrchestratorMsg>) {
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

    /// Re-dispatches when an open circuit will admit trial tasks.
    fn schedule_reopening(&mut self, myself: &ActorRef<OrchestratorMsg>) {
        let Some(at) = self.circuits.next_reopening() else {
            return;
        };
        if self
            .reopen_at
            .is_some_and(|scheduled| scheduled <= at && scheduled > Instant::now())
        {
            return;
        }
        self.reopen_at = Some(at);
        let delay = at.saturating_duration_since(Instant::now()) + Duration::from_millis(1);
        myself.send_after(delay, || Mailbox::Local(OrchestratorLocal::Dispatch));
    }
}

/// Types in borrowing order: heaviest weight first, then by name.
fn borrow_order(weights: &BTreeMap<AgentType, f64>) -> Vec<AgentType> {
    let mut order: Vec<AgentType> = weights.keys().cloned().collect();
    order.sort_by(|a, b| weights[b].total_cmp(&weights[a]).then(a.cmp(b)));
    order
}

fn requeue_label(reason: RequeueReason) -> &'static str {
    match reason {
        RequeueReason::MemberLost => "node_lost",
        RequeueReason::HandedBack => "handed_back",
        RequeueReason::RetryDue => "retry",
        RequeueReason::DeadLetterRetry => "dead_letter_retry",
    }
}

/// The pool actor on `member`, local or remote.
fn find_pool(view: &ClusterView, member: &MemberId) -> Option<ActorRef<PoolMsg>> {
    ractor::pg::get_members(&groups::POOLS.to_string())
        .into_iter()
        .find(|cell| {
            view.member_of_actor(cell.get_id())
                .is_some_and(|info| &info.member == member)
        })
        .map(ActorRef::from)
}

/// The pool actor of the node called `name`, whatever its incarnation.
fn find_pool_named(
    view: &ClusterView,
    name: &herd_protocol::NodeName,
) -> Option<ActorRef<PoolMsg>> {
    ractor::pg::get_members(&groups::POOLS.to_string())
        .into_iter()
        .find(|cell| {
            view.member_of_actor(cell.get_id())
                .is_some_and(|info| &info.member.name == name)
        })
        .map(ActorRef::from)
}
