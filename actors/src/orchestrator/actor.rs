//! The orchestrator actor: see the module docs.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

use herd_protocol::limits::chunk_by_budget;
use herd_protocol::messages::groups;
use herd_protocol::messages::orchestrator::{
    CancelOutcome, OrchestratorCast, OrchestratorReply, OrchestratorRequest, PoolRegistration,
    RequestFailure,
};
use herd_protocol::messages::pool::PoolCast;
use herd_protocol::{
    AgentType, Mailbox, MemberId, Protocol, TaskAssignment, TaskId, TaskReport, UnixMillis,
};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::pools::{PoolEntry, PoolRegistry};
use super::status::cluster_status;
use crate::membership::ClusterView;
use crate::pool::PoolMsg;
use crate::scheduling::{DispatchInput, PoolLoad, plan_dispatch};
use crate::task_book::{
    AgentTypeSettings, Command, Effect, StaleReason, TaskBook, TaskBookSettings,
};

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
}

/// Starts the orchestrator.
pub struct OrchestratorArgs {
    /// This node.
    pub member: MemberId,
    /// Book limits and defaults.
    pub settings: TaskBookSettings,
    /// The agent types the cluster runs.
    pub agent_types: BTreeMap<AgentType, AgentTypeEntry>,
    /// The cluster view.
    pub view: watch::Receiver<ClusterView>,
}

/// The orchestrator actor.
pub struct Orchestrator;

pub struct OrchestratorState {
    member: MemberId,
    book: TaskBook,
    agent_types: BTreeMap<AgentType, AgentTypeEntry>,
    weights: BTreeMap<AgentType, f64>,
    borrow_order: Vec<AgentType>,
    pools: PoolRegistry,
    view: watch::Receiver<ClusterView>,
    waiters: HashMap<TaskId, Vec<RpcReplyPort<OrchestratorReply>>>,
    dispatch_scheduled: bool,
    tick_at: Option<UnixMillis>,
    rotation: usize,
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
        let book = TaskBook::new(
            args.settings,
            args.agent_types.iter().map(|(agent_type, entry)| {
                (
                    agent_type.clone(),
                    AgentTypeSettings {
                        timeout_s: entry.timeout_s,
                        max_attempts: entry.max_attempts,
                    },
                )
            }),
        );
        let weights: BTreeMap<AgentType, f64> = args
            .agent_types
            .iter()
            .map(|(t, e)| (t.clone(), e.weight))
            .collect();
        let mut borrow_order: Vec<AgentType> = weights.keys().cloned().collect();
        borrow_order.sort_by(|a, b| weights[b].total_cmp(&weights[a]).then(a.cmp(b)));
        ractor::pg::join(groups::ORCHESTRATOR.to_string(), vec![myself.get_cell()]);
        forward_view_changes(args.view.clone(), myself.clone());
        info!(agent_types = ?weights.keys().collect::<Vec<_>>(), "orchestrator started");
        Ok(OrchestratorState {
            member: args.member,
            book,
            agent_types: args.agent_types,
            weights,
            borrow_order,
            pools: PoolRegistry::default(),
            view: args.view,
            waiters: HashMap::new(),
            dispatch_scheduled: false,
            tick_at: None,
            rotation: 0,
        })
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
            Mailbox::Cast(OrchestratorCast::Reports { member, reports }) => {
                state.on_reports(&myself, member, reports)
            }
            Mailbox::Local(OrchestratorLocal::Dispatch) => state.dispatch(),
            Mailbox::Local(OrchestratorLocal::Tick) => {
                state.tick_at = None;
                let effects = state.book.apply(Command::Tick {
                    now: UnixMillis::now(),
                });
                state.carry_out(&myself, effects);
            }
            Mailbox::Local(OrchestratorLocal::ViewChanged) => state.on_view_changed(&myself),
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
            if view.orchestrator.as_ref() != Some(&self.member) {
                let _ = reply.send(OrchestratorReply::Failed(RequestFailure::NotOrchestrator));
                return;
            }
        }
        let now = UnixMillis::now();
        let answer = match request {
            OrchestratorRequest::Submit(specs) => {
                let count = specs.len();
                let tasks = specs
                    .into_iter()
                    .map(|spec| (TaskId::new_v7(), spec))
                    .collect();
                let effects = self.book.apply(Command::Submit { tasks, now });
                let mut answer = None;
                for effect in &effects {
                    match effect {
                        Effect::Accepted(acks) => {
                            metrics::counter!("herd_tasks_submitted_total")
                                .increment(acks.iter().filter(|ack| !ack.existing).count() as u64);
                            answer = Some(OrchestratorReply::Submitted(Ok(acks.clone())));
                        }
                        Effect::Rejected(rejection) => {
                            debug!(%rejection, count, "submission refused");
                            answer = Some(OrchestratorReply::Submitted(Err(rejection.clone())));
                        }
                        _ => {}
                    }
                }
                self.carry_out(myself, effects);
                answer.expect("submit always answers")
            }
            OrchestratorRequest::GetTask(id) => OrchestratorReply::Task(self.book.view(id)),
            OrchestratorRequest::ListTasks(query) => {
                OrchestratorReply::Tasks(self.book.list(&query))
            }
            OrchestratorRequest::Cancel(id) => {
                let effects = self.book.apply(Command::Cancel { id, now });
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
                self.carry_out(myself, effects);
                OrchestratorReply::Cancel(outcome)
            }
            OrchestratorRequest::AwaitTask(id) => match self.book.view(id) {
                Some(view) if !view.state.is_terminal() => {
                    self.waiters.entry(id).or_default().push(reply);
                    return;
                }
                other => OrchestratorReply::Task(other),
            },
            OrchestratorRequest::ClusterStatus => OrchestratorReply::Cluster(cluster_status(
                &self.member,
                &self.book,
                &self.pools,
                &self.view.borrow(),
                &self.agent_types,
            )),
        };
        let _ = reply.send(answer);
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
        if let Some(previous) = self.pools.same_name(&member) {
            info!(old = %previous, new = %member, "pool re-registered under a new incarnation");
            self.pools.remove(&previous, &self.weights);
            let effects = self.book.apply(Command::MemberLost {
                member: previous,
                now,
            });
            self.carry_out(myself, effects);
        }
        // Attempts the book places on this pool but the pool does not run
        // were lost (the pool restarted); retry them.
        let reported: HashSet<(TaskId, _)> = registration
            .running
            .iter()
            .map(|r| (r.task_id, r.epoch))
            .collect();
        let lost: Vec<_> = self
            .book
            .running_attempts_on(&member)
            .into_iter()
            .filter(|attempt| !reported.contains(attempt))
            .collect();
        if !lost.is_empty() {
            warn!(pool = %member, lost = lost.len(), "pool registered without attempts it was running; retrying them");
            let effects = self.book.apply(Command::AttemptsLost {
                member: member.clone(),
                attempts: lost,
                now,
            });
            self.carry_out(myself, effects);
        }
        let known = self.pools.get(&member).is_some();
        let supports: BTreeSet<AgentType> = registration
            .agent_types
            .into_iter()
            .filter(|t| self.agent_types.contains_key(t))
            .collect();
        self.pools.insert(
            member.clone(),
            PoolEntry {
                actor: actor.clone(),
                workers: registration.workers,
                supports,
            },
            &self.weights,
        );
        if !known {
            info!(pool = %member, workers = registration.workers, "pool registered");
        }
        let _ = actor.cast(Mailbox::Cast(PoolCast::Welcome {
            orchestrator: self.member.clone(),
        }));
        self.schedule_dispatch(myself);
    }

    fn on_reports(
        &mut self,
        myself: &ActorRef<OrchestratorMsg>,
        member: MemberId,
        reports: Vec<TaskReport>,
    ) {
        let now = UnixMillis::now();
        let mut effects = Vec::new();
        for report in reports {
            effects.extend(self.book.apply(Command::Report {
                member: member.clone(),
                report,
                now,
            }));
        }
        self.carry_out(myself, effects);
    }

    fn on_view_changed(&mut self, myself: &ActorRef<OrchestratorMsg>) {
        let view = self.view.borrow().clone();
        let now = UnixMillis::now();
        let mut lost: BTreeSet<MemberId> = self
            .pools
            .members()
            .into_iter()
            .filter(|member| !view.is_up(member))
            .collect();
        lost.extend(
            self.book
                .members_with_work()
                .filter(|member| !view.is_up(member))
                .cloned(),
        );
        for member in lost {
            let attempts = self.book.running_total_on(&member);
            warn!(node = %member, attempts, "node is gone; re-queueing its tasks");
            self.pools.remove(&member, &self.weights);
            let effects = self.book.apply(Command::MemberLost { member, now });
            self.carry_out(myself, effects);
        }
        self.schedule_dispatch(myself);
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

    fn dispatch(&mut self) {
        self.dispatch_scheduled = false;
        let demand: BTreeMap<AgentType, u64> = self
            .agent_types
            .keys()
            .map(|t| (t.clone(), self.book.queue_depth(t)))
            .filter(|(_, n)| *n > 0)
            .collect();
        if demand.is_empty() {
            return;
        }
        let view = self.view.borrow().clone();
        let mut loads: Vec<PoolLoad> = self
            .pools
            .iter()
            .filter(|(member, _)| view.is_up(member))
            .map(|(member, entry)| PoolLoad {
                member: member.clone(),
                slots: entry.workers,
                running: self
                    .agent_types
                    .keys()
                    .map(|t| (t.clone(), self.book.running_on(member, t)))
                    .collect(),
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
        });
        tracing::trace!(?plan, ?demand, pools = loads.len(), "dispatch plan");
        let now = UnixMillis::now();
        let mut batches: BTreeMap<MemberId, Vec<TaskAssignment>> = BTreeMap::new();
        for (member, agent_type, count) in plan {
            for effect in self.book.apply(Command::Assign {
                member,
                agent_type,
                max: count as usize,
                now,
            }) {
                if let Effect::Dispatch { member, assignment } = effect {
                    batches.entry(member).or_default().push(assignment);
                }
            }
        }
        for (member, assignments) in batches {
            self.send_assignments(&member, assignments);
        }
    }

    fn send_assignments(&self, member: &MemberId, assignments: Vec<TaskAssignment>) {
        let Some(pool) = self.pools.get(member) else {
            return;
        };
        for batch in chunk_by_budget(assignments, |a| a.payload.len()) {
            let message = Mailbox::Cast(PoolCast::Assign {
                orchestrator: self.member.clone(),
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
        let mut needs_dispatch = false;
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
                    needs_dispatch = true;
                }
                Effect::StateChanged {
                    id,
                    agent_type,
                    state,
                } => {
                    metrics::counter!("herd_tasks_finished_total", "agent_type" => agent_type.to_string(), "state" => state.as_str()).increment(1);
                    if state.is_terminal() {
                        self.wake_waiters(id);
                    }
                    needs_dispatch = true;
                }
                Effect::Requeued { reason, .. } => {
                    metrics::counter!("herd_tasks_requeued_total", "reason" => format!("{reason:?}")).increment(1);
                    needs_dispatch = true;
                }
                Effect::StaleReport { id, reason } => {
                    if reason == StaleReason::Duplicate {
                        metrics::counter!("herd_duplicate_results_total").increment(1);
                        debug!(task = %id, "dropped a result from a superseded attempt");
                    }
                }
            }
        }
        for (member, assignments) in direct {
            self.send_assignments(&member, assignments);
        }
        let counts = self.book.counts();
        metrics::gauge!("herd_pending_tasks").set(counts.pending as f64);
        if needs_dispatch || counts.pending > 0 {
            self.schedule_dispatch(myself);
        }
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
