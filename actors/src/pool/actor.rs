//! The worker pool actor: see the module docs.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use herd_protocol::limits::chunk_by_budget;
use herd_protocol::messages::groups;
use herd_protocol::messages::orchestrator::{OrchestratorCast, PoolRegistration, RunningAttempt};
use herd_protocol::messages::pool::{PoolCast, PoolReply, PoolRequest};
use herd_protocol::{
    AgentType, AssignmentEpoch, FailureKind, Mailbox, MemberId, Outcome, Protocol, TaskAssignment,
    TaskId, TaskReport, UnixMillis, WorkerId,
};
use ractor::pg::GroupChangeMessage;
use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::restarts::RestartIntensity;
use super::worker::{Worker, WorkerArgs, WorkerMsg};
use crate::handlers::HandlerRegistry;
use crate::membership::ClusterView;
use crate::orchestrator::{OrchestratorMsg, find_orchestrator};

/// How often an unanswered registration is repeated.
const REGISTRATION_RETRY: Duration = Duration::from_secs(1);
/// Reports kept while no orchestrator is reachable; older ones are dropped
/// beyond this (their tasks are then retried when the orchestrator notices).
const MAX_BUFFERED_REPORTS: usize = 100_000;

/// The pool's message vocabulary.
pub struct PoolProtocol;

impl Protocol for PoolProtocol {
    const NAME: &'static str = "pool";
    type Cast = PoolCast;
    type Request = PoolRequest;
    type Reply = PoolReply;
    type Local = PoolLocal;
}

/// The pool's mailbox type.
pub type PoolMsg = Mailbox<PoolProtocol>;

/// Messages from this node to the pool.
#[derive(Debug)]
pub enum PoolLocal {
    /// A worker finished an attempt.
    Finished {
        /// The worker's slot.
        slot: WorkerId,
        /// Which life of the slot.
        generation: u64,
        /// The report.
        report: TaskReport,
    },
    /// Send buffered reports.
    Flush,
    /// The cluster view changed.
    ViewChanged,
    /// Repeat an unanswered registration.
    RegistrationTick,
    /// Start the worker of a slot whose restart was delayed.
    RestartSlot(WorkerId),
}

/// Starts a pool.
pub struct PoolArgs {
    /// This node.
    pub member: MemberId,
    /// Worker slots.
    pub workers: u32,
    /// Handlers by agent type.
    pub handlers: Arc<HandlerRegistry>,
    /// Largest result accepted.
    pub max_result_bytes: usize,
    /// The cluster view.
    pub view: watch::Receiver<ClusterView>,
}

/// The worker pool actor.
pub struct WorkerPool;

#[derive(Debug)]
struct RunningTask {
    task_id: TaskId,
    epoch: AssignmentEpoch,
    agent_type: AgentType,
    cancelled: bool,
}

#[derive(Debug)]
struct Slot {
    worker: Option<ActorRef<WorkerMsg>>,
    generation: u64,
    running: Option<RunningTask>,
    intensity: RestartIntensity,
}

#[derive(Debug)]
struct OrchestratorLink {
    member: MemberId,
    actor: ActorRef<OrchestratorMsg>,
    welcomed: bool,
}

pub struct PoolState {
    member: MemberId,
    handlers: Arc<HandlerRegistry>,
    max_result_bytes: usize,
    slots: Vec<Slot>,
    idle: Vec<WorkerId>,
    backlog: VecDeque<TaskAssignment>,
    link: Option<OrchestratorLink>,
    outbox: VecDeque<TaskReport>,
    flush_scheduled: bool,
    view: watch::Receiver<ClusterView>,
    worker_ids: HashMap<ractor::ActorId, WorkerId>,
}

impl Actor for WorkerPool {
    type Msg = PoolMsg;
    type State = PoolState;
    type Arguments = PoolArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: PoolArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut state = PoolState {
            member: args.member,
            handlers: args.handlers,
            max_result_bytes: args.max_result_bytes,
            slots: Vec::with_capacity(args.workers as usize),
            idle: Vec::with_capacity(args.workers as usize),
            backlog: VecDeque::new(),
            link: None,
            outbox: VecDeque::new(),
            flush_scheduled: false,
            view: args.view.clone(),
            worker_ids: HashMap::new(),
        };
        for index in 0..args.workers {
            state.slots.push(Slot {
                worker: None,
                generation: 0,
                running: None,
                intensity: RestartIntensity::default(),
            });
            state.start_worker(&myself, WorkerId(index)).await?;
        }
        // Serve slots from the lowest index up, so w0 is the first used.
        state.idle.sort_by(|a, b| b.cmp(a));
        ractor::pg::join(groups::POOLS.to_string(), vec![myself.get_cell()]);
        ractor::pg::monitor(groups::ORCHESTRATOR.to_string(), myself.get_cell());
        forward_view_changes(args.view, myself.clone());
        myself.send_interval(REGISTRATION_RETRY, || {
            Mailbox::Local(PoolLocal::RegistrationTick)
        });
        info!(workers = args.workers, agent_types = ?state.handlers, "worker pool started");
        Ok(state)
    }

    async fn post_stop(
        &self,
        myself: ActorRef<Self::Msg>,
        _state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        ractor::pg::demonitor(groups::ORCHESTRATOR.to_string(), myself.get_id());
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            Mailbox::Cast(PoolCast::Assign {
                orchestrator,
                assignments,
            }) => state.on_assign(orchestrator, assignments),
            Mailbox::Cast(PoolCast::Welcome { orchestrator }) => {
                state.on_welcome(&myself, orchestrator)
            }
            Mailbox::Cast(PoolCast::Cancel { task_id, epoch }) => state.cancel(task_id, epoch),
            Mailbox::Local(PoolLocal::Finished {
                slot,
                generation,
                report,
            }) => state.on_finished(&myself, slot, generation, report),
            Mailbox::Local(PoolLocal::Flush) => state.flush(),
            Mailbox::Local(PoolLocal::ViewChanged | PoolLocal::RegistrationTick) => {
                state.refresh_link()
            }
            Mailbox::Local(PoolLocal::RestartSlot(slot)) => {
                state.start_worker(&myself, slot).await?
            }
            Mailbox::Call(request, _) => match request {},
            Mailbox::Undecodable(frame) => {
                metrics::counter!("herd_undecodable_frames_total", "protocol" => frame.protocol)
                    .increment(1);
                warn!(bytes = frame.bytes, error = %frame.error, "dropped an undecodable frame addressed to the pool");
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(cell, error) => {
                state.on_worker_exit(&myself, cell.get_id(), Some(error.to_string()))
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                state.on_worker_exit(&myself, cell.get_id(), reason)
            }
            SupervisionEvent::ProcessGroupChanged(GroupChangeMessage::Join(_, group, _))
                if group == groups::ORCHESTRATOR =>
            {
                state.refresh_link()
            }
            _ => {}
        }
        Ok(())
    }
}

/// Relays changes of the cluster view into the pool's mailbox.
fn forward_view_changes(mut view: watch::Receiver<ClusterView>, pool: ActorRef<PoolMsg>) {
    tokio::spawn(async move {
        while view.changed().await.is_ok() {
            if pool.cast(Mailbox::Local(PoolLocal::ViewChanged)).is_err() {
                break;
            }
        }
    });
}

impl PoolState {
    async fn start_worker(
        &mut self,
        myself: &ActorRef<PoolMsg>,
        slot: WorkerId,
    ) -> Result<(), ActorProcessingErr> {
        let index = slot.0 as usize;
        let generation = self.slots[index].generation + 1;
        let args = WorkerArgs {
            slot,
            generation,
            pool: myself.clone(),
            handlers: self.handlers.clone(),
            max_result_bytes: self.max_result_bytes,
        };
        let (worker, _) = Actor::spawn_linked(None, Worker, args, myself.get_cell()).await?;
        self.worker_ids.insert(worker.get_id(), slot);
        let entry = &mut self.slots[index];
        entry.worker = Some(worker);
        entry.generation = generation;
        entry.running = None;
        self.idle.push(slot);
        self.drain_backlog();
        Ok(())
    }

    fn on_assign(&mut self, orchestrator: MemberId, assignments: Vec<TaskAssignment>) {
        if self.view.borrow().orchestrator.as_ref() != Some(&orchestrator) {
            warn!(from = %orchestrator, count = assignments.len(), "ignoring assignments from a node that is not the cluster's orchestrator");
            return;
        }
        if self
            .link
            .as_ref()
            .is_none_or(|link| link.member != orchestrator)
        {
            self.refresh_link();
        }
        for assignment in assignments {
            self.backlog.push_back(assignment);
        }
        self.drain_backlog();
        if !self.backlog.is_empty() {
            // The orchestrator never sends more than the idle slots it knows
            // of; a backlog means a slot is restarting. It runs when one frees.
            debug!(
                backlog = self.backlog.len(),
                "assignments waiting for a worker"
            );
        }
    }

    fn drain_backlog(&mut self) {
        while !self.backlog.is_empty() {
            let Some(slot) = self.idle.pop() else {
                return;
            };
            let assignment = self.backlog.pop_front().expect("checked non-empty");
            let entry = &mut self.slots[slot.0 as usize];
            let Some(worker) = entry.worker.clone() else {
                continue;
            };
            entry.running = Some(RunningTask {
                task_id: assignment.task_id,
                epoch: assignment.epoch,
                agent_type: assignment.agent_type.clone(),
                cancelled: false,
            });
            if let Err(error) = worker.cast(WorkerMsg::Run(assignment)) {
                // The worker is stopping; supervision will report the task.
                debug!(%error, "worker could not take an assignment");
            }
        }
    }

    fn on_finished(
        &mut self,
        myself: &ActorRef<PoolMsg>,
        slot: WorkerId,
        generation: u64,
        report: TaskReport,
    ) {
        let entry = &mut self.slots[slot.0 as usize];
        if entry.generation != generation {
            return;
        }
        let running = entry.running.take();
        self.idle.push(slot);
        if let Some(running) = running
            && !running.cancelled
        {
            metrics::counter!("herd_worker_tasks_total", "agent_type" => running.agent_type.to_string(), "outcome" => outcome_label(&report.outcome)).increment(1);
            self.queue_report(myself, report);
        }
        self.drain_backlog();
    }

    fn on_worker_exit(
        &mut self,
        myself: &ActorRef<PoolMsg>,
        actor: ractor::ActorId,
        reason: Option<String>,
    ) {
        let Some(slot) = self.worker_ids.remove(&actor) else {
            return;
        };
        let entry = &mut self.slots[slot.0 as usize];
        entry.worker = None;
        self.idle.retain(|idle| *idle != slot);
        let running = entry.running.take();
        let delay = entry.intensity.next_delay(Instant::now());
        metrics::counter!("herd_worker_restarts_total").increment(1);
        let reason = reason.unwrap_or_else(|| "stopped".to_string());
        if let Some(running) = running {
            if running.cancelled {
                debug!(%slot, task = %running.task_id, "worker stopped for a cancelled task");
            } else {
                warn!(%slot, task = %running.task_id, %reason, "worker died while running a task; replacing it");
                let now = UnixMillis::now();
                self.queue_report(
                    myself,
                    TaskReport {
                        task_id: running.task_id,
                        epoch: running.epoch,
                        worker: slot,
                        outcome: Outcome::Failed {
                            kind: FailureKind::Crash,
                            message: format!("worker {slot} crashed: {reason}"),
                        },
                        started_at: now,
                        finished_at: now,
                    },
                );
            }
        } else {
            warn!(%slot, %reason, "idle worker died; replacing it");
        }
        if delay.is_zero() {
            let _ = myself.cast(Mailbox::Local(PoolLocal::RestartSlot(slot)));
        } else {
            warn!(%slot, delay_ms = delay.as_millis() as u64, "worker keeps failing; delaying its restart");
            myself.send_after(delay, move || Mailbox::Local(PoolLocal::RestartSlot(slot)));
        }
    }

    fn cancel(&mut self, task_id: TaskId, epoch: AssignmentEpoch) {
        self.backlog
            .retain(|assignment| !(assignment.task_id == task_id && assignment.epoch == epoch));
        for entry in &mut self.slots {
            if let Some(running) = entry
                .running
                .as_mut()
                .filter(|r| r.task_id == task_id && r.epoch == epoch)
            {
                running.cancelled = true;
                if let Some(worker) = &entry.worker {
                    info!(task = %task_id, "stopping a cancelled task");
                    worker.kill();
                }
            }
        }
    }

    fn queue_report(&mut self, myself: &ActorRef<PoolMsg>, report: TaskReport) {
        if self.outbox.len() >= MAX_BUFFERED_REPORTS {
            let dropped = self.outbox.pop_front();
            warn!(task = ?dropped.map(|r| r.task_id), "report buffer full while the orchestrator is unreachable; dropping the oldest report (its task will be retried)");
        }
        self.outbox.push_back(report);
        // Coalesce: one Flush per burst of completions, delivered after the
        // completions already queued in the mailbox.
        if !self.flush_scheduled {
            self.flush_scheduled = true;
            let _ = myself.cast(Mailbox::Local(PoolLocal::Flush));
        }
    }

    fn flush(&mut self) {
        self.flush_scheduled = false;
        let Some(link) = self.link.as_ref().filter(|link| link.welcomed) else {
            return;
        };
        let reports: Vec<TaskReport> = self.outbox.drain(..).collect();
        let mut batches = chunk_by_budget(reports, report_size).into_iter();
        while let Some(batch) = batches.next() {
            let message = Mailbox::Cast(OrchestratorCast::Reports {
                member: self.member.clone(),
                reports: batch,
            });
            if let Err(error) = link.actor.cast(message) {
                warn!(%error, "could not deliver reports to the orchestrator; keeping them until it re-registers");
                if let ractor::MessagingErr::SendErr(Mailbox::Cast(OrchestratorCast::Reports {
                    reports,
                    ..
                })) = error
                {
                    self.outbox.extend(reports);
                }
                self.outbox.extend(batches.flatten());
                self.link = None;
                return;
            }
        }
    }

    /// Finds the cluster's orchestrator and (re)registers with it if needed.
    fn refresh_link(&mut self) {
        let view = self.view.borrow().clone();
        let Some(target) = view.orchestrator.clone() else {
            self.link = None;
            return;
        };
        let current = self.link.as_ref().filter(|link| {
            link.member == target && link.actor.get_status() != ractor::ActorStatus::Stopped
        });
        if current.is_some_and(|link| link.welcomed) {
            return;
        }
        let Some(actor) = find_orchestrator(&view) else {
            return;
        };
        if self
            .link
            .as_ref()
            .is_none_or(|link| link.member != target || link.actor.get_id() != actor.get_id())
        {
            info!(orchestrator = %target, "registering with the orchestrator");
            self.link = Some(OrchestratorLink {
                member: target,
                actor,
                welcomed: false,
            });
        }
        self.register();
    }

    fn register(&self) {
        let Some(link) = &self.link else { return };
        let running = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(index, slot)| {
                slot.running
                    .as_ref()
                    .filter(|r| !r.cancelled)
                    .map(|r| RunningAttempt {
                        task_id: r.task_id,
                        epoch: r.epoch,
                        worker: WorkerId(index as u32),
                    })
            })
            .collect();
        let registration = PoolRegistration {
            member: self.member.clone(),
            workers: self.slots.len() as u32,
            agent_types: self.handlers.agent_types().cloned().collect(),
            running,
        };
        if let Err(error) = link
            .actor
            .cast(Mailbox::Cast(OrchestratorCast::PoolRegistered(
                registration,
            )))
        {
            debug!(%error, "registration not delivered; will retry");
        }
    }

    fn on_welcome(&mut self, myself: &ActorRef<PoolMsg>, orchestrator: MemberId) {
        match self.link.as_mut() {
            Some(link) if link.member == orchestrator => {
                if !link.welcomed {
                    info!(orchestrator = %orchestrator, "registered with the orchestrator");
                }
                link.welcomed = true;
            }
            _ => return,
        }
        if !self.outbox.is_empty() && !self.flush_scheduled {
            self.flush_scheduled = true;
            let _ = myself.cast(Mailbox::Local(PoolLocal::Flush));
        }
    }
}

fn report_size(report: &TaskReport) -> usize {
    match &report.outcome {
        Outcome::Succeeded { result, .. } => result.len(),
        Outcome::Failed { message, .. } => message.len(),
    }
}

fn outcome_label(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Succeeded { .. } => "succeeded",
        Outcome::Failed { kind, .. } => kind.as_str(),
    }
}
