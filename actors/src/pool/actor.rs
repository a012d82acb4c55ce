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
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use super::resources::ResourceProbe;
use super::restarts::RestartIntensity;
use super::worker::{Worker, WorkerArgs, WorkerMsg};
use crate::handlers::HandlerRegistry;
use crate::membership::ClusterView;
use crate::orchestrator::{OrchestratorMsg, find_orchestrator};
use crate::runtime::NodeEvent;

/// How often an unanswered registration is repeated and stuck workers are
/// looked for.
const HOUSEKEEPING: Duration = Duration::from_secs(1);
/// How long past its time limit an attempt may keep its worker before the
/// worker is abandoned and replaced (a handler that blocks its thread cannot
/// be cancelled at an `.await`).
const STUCK_GRACE: Duration = Duration::from_secs(5);
/// Reports kept until acknowledged; beyond this the oldest are dropped (their
/// tasks are then retried when the orchestrator notices).
const MAX_UNACKED_REPORTS: usize = 100_000;
/// After a drain, how long the pool waits for its last reports to be
/// acknowledged before it lets the node stop.
const DRAIN_ACK_WAIT: Duration = Duration::from_secs(5);

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
    /// Repeat an unanswered registration; look for stuck workers.
    Housekeeping,
    /// Start the worker of a slot whose restart was delayed.
    RestartSlot(WorkerId),
    /// Send resource use to the orchestrator.
    Stats,
    /// Drain (SIGTERM): answer on `done` once drained.
    Drain {
        /// How long running attempts may take.
        grace: Duration,
        /// Told when the pool is drained.
        done: oneshot::Sender<()>,
    },
    /// The drain grace period is over.
    DrainDeadline,
    /// Stop waiting for the last acknowledgements.
    DrainAckDeadline,
}

/// Starts a pool.
pub struct PoolArgs {
    /// Worker slots.
    pub workers: u32,
    /// Handlers by agent type.
    pub handlers: Arc<HandlerRegistry>,
    /// Largest result accepted.
    pub max_result_bytes: usize,
    /// The cluster view (its `local` member is this node).
    pub view: watch::Receiver<ClusterView>,
    /// Where the pool reports that a requested drain is complete.
    pub events: mpsc::UnboundedSender<NodeEvent>,
    /// Most slots this node may host (from its CPU and memory per worker).
    pub capacity: u32,
    /// How often resource use is sent to the orchestrator.
    pub stats_interval: Duration,
}

/// The worker pool actor.
pub struct WorkerPool;

#[derive(Debug)]
struct RunningTask {
    task_id: TaskId,
    epoch: AssignmentEpoch,
    agent_type: AgentType,
    /// The incarnation of this node the attempt was assigned to.
    member: MemberId,
    cancelled: bool,
    deadline: Instant,
}

#[derive(Debug)]
struct Slot {
    worker: Option<ActorRef<WorkerMsg>>,
    generation: u64,
    running: Option<RunningTask>,
    intensity: RestartIntensity,
}

#[derive(Debug)]
struct OutboxEntry {
    sequence: u64,
    member: MemberId,
    report: TaskReport,
}
#[derive(Debug)]
struct Registration {
    orchestrator: MemberId,
    actor: ActorRef<OrchestratorMsg>,
    /// The incarnation of this node the pool registered as.
    member: MemberId,
    welcomed: bool,
}

#[derive(Debug, Default)]
struct DrainState {
    done: Vec<oneshot::Sender<()>>,
    /// Running attempts ended or were handed back; waiting for acks.
    settled: bool,
    /// Drained: later requests are answered at once.
    finished: bool,
    /// The node was told (drain requested by the orchestrator).
    requested_remotely: bool,
}

pub struct PoolState {
    handlers: Arc<HandlerRegistry>,
    max_result_bytes: usize,
    slots: Vec<Slot>,
    idle: Vec<WorkerId>,
    backlog: VecDeque<(MemberId, TaskAssignment)>,
    registration: Option<Registration>,
    /// Reports not yet acknowledged, oldest first. The last `unsent` of them
    /// have not been sent to the current registration (sending is in order,
    /// so the unsent ones are always a suffix).
    outbox: VecDeque<OutboxEntry>,
    unsent: usize,
    next_sequence: u64,
    flush_scheduled: bool,
    view: watch::Receiver<ClusterView>,
    worker_ids: HashMap<ractor::ActorId, WorkerId>,
    drain: Option<DrainState>,
    events: mpsc::UnboundedSender<NodeEvent>,
    last_member: MemberId,
    replacements: HashMap<WorkerId, Instant>,
    /// Slots `0..target` are in service; higher ones retire when idle.
    target: u32,
    capacity: u32,
    probe: ResourceProbe,
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
        let last_member = args.view.borrow().local.member.clone();
        let mut state = PoolState {
            handlers: args.handlers,
            max_result_bytes: args.max_result_bytes,
            slots: Vec::with_capacity(args.workers as usize),
            idle: Vec::with_capacity(args.workers as usize),
            backlog: VecDeque::new(),
            registration: None,
            outbox: VecDeque::new(),
            unsent: 0,
            next_sequence: 1,
            flush_scheduled: false,
            view: args.view.clone(),
            worker_ids: HashMap::new(),
            drain: None,
            events: args.events,
            last_member,
            replacements: HashMap::new(),
            target: args.workers,
            capacity: args.capacity,
            probe: ResourceProbe::new(),
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
        myself.send_interval(HOUSEKEEPING, || Mailbox::Local(PoolLocal::Housekeeping));
        myself.send_interval(args.stats_interval, || Mailbox::Local(PoolLocal::Stats));
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
            Mailbox::Cast(PoolCast::ReportsAck { through }) => state.on_ack(through),
            Mailbox::Cast(PoolCast::Cancel { task_id, epoch }) => state.cancel(task_id, epoch),
            Mailbox::Cast(PoolCast::Resize { workers }) => state.resize(&myself, workers).await?,
            Mailbox::Local(PoolLocal::Stats) => state.send_stats(),
            Mailbox::Cast(PoolCast::Drain { grace_ms }) => {
                state.start_drain(&myself, Duration::from_millis(grace_ms), None)
            }
            Mailbox::Local(PoolLocal::Drain { grace, done }) => {
                state.start_drain(&myself, grace, Some(done))
            }
            Mailbox::Local(PoolLocal::DrainDeadline) => state.drain_deadline(&myself),
            Mailbox::Local(PoolLocal::DrainAckDeadline) => state.finish_drain(),
            Mailbox::Local(PoolLocal::Finished {
                slot,
                generation,
                report,
            }) => state.on_finished(&myself, slot, generation, report),
            Mailbox::Local(PoolLocal::Flush) => state.flush(),
            Mailbox::Local(PoolLocal::ViewChanged) => state.refresh_registration(),
            Mailbox::Local(PoolLocal::Housekeeping) => {
                state.refresh_registration();
                state.replace_stuck_workers(&myself).await?;
            }
            Mailbox::Local(PoolLocal::RestartSlot(slot)) => {
                // A slot retired while its restart was delayed stays down.
                if slot.0 < state.target && state.slots[slot.0 as usize].worker.is_none() {
                    state.start_worker(&myself, slot).await?
                }
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
                state.refresh_registration()
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
    // ---- workers -------------------------------------------------------

    async fn start_worker(
        &mut self,
        myself: &ActorRef<PoolMsg>,
        slot: WorkerId,
    ) -> Result<(), ActorProcessingErr> {
        if slot.0 >= self.target {
            // Retired by a resize (e.g. while its stuck worker was being
            // replaced): it stays down until the pool grows again.
            return Ok(());
        }
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

    fn drain_backlog(&mut self) {
        while !self.backlog.is_empty() {
            let Some(slot) = self.idle.pop() else {
                return;
            };
            let (member, assignment) = self.backlog.pop_front().expect("checked non-empty");
            let entry = &mut self.slots[slot.0 as usize];
            let Some(worker) = entry.worker.clone() else {
                continue;
            };
            if let Some(replaced_at) = self.replacements.remove(&slot) {
                metrics::histogram!("herd_worker_replacement_seconds")
                    .record(replaced_at.elapsed().as_secs_f64());
            }
            entry.running = Some(RunningTask {
                task_id: assignment.task_id,
                epoch: assignment.epoch,
                agent_type: assignment.agent_type.clone(),
                member,
                cancelled: false,
                deadline: Instant::now() + Duration::from_millis(assignment.timeout_ms),
            });
            if let Err(error) = worker.cast(WorkerMsg::Run(assignment)) {
                // The worker is stopping; supervision will report the task.
                debug!(%error, "worker could not take an assignment");
            }
        }
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
        let retired = slot.0 >= self.target;
        let entry = &mut self.slots[slot.0 as usize];
        entry.worker = None;
        self.idle.retain(|idle| *idle != slot);
        let running = entry.running.take();
        if retired && running.is_none() {
            self.check_drained(myself);
            return;
        }
        let delay = entry.intensity.next_delay(Instant::now());
        metrics::counter!("herd_worker_restarts_total").increment(1);
        self.replacements.insert(slot, Instant::now());
        let reason = reason.unwrap_or_else(|| "stopped".to_string());
        match running {
            Some(running) if running.cancelled => {
                debug!(%slot, task_id = %running.task_id, agent_type = %running.agent_type, "worker stopped for a cancelled task")
            }
            Some(running) => {
                warn!(%slot, task_id = %running.task_id, agent_type = %running.agent_type, %reason, "worker died while running a task; replacing it");
                let now = UnixMillis::now();
                let report = TaskReport {
                    task_id: running.task_id,
                    epoch: running.epoch,
                    worker: slot,
                    outcome: Outcome::Failed {
                        kind: FailureKind::Crash,
                        message: format!("worker {slot} crashed: {reason}"),
                    },
                    started_at: now,
                    finished_at: now,
                };
                self.queue_report(myself, running.member, report);
            }
            None => warn!(%slot, %reason, "idle worker died; replacing it"),
        }
        if retired {
            // Its task is reported above; the slot itself is no longer wanted.
        } else if delay.is_zero() {
            let _ = myself.cast(Mailbox::Local(PoolLocal::RestartSlot(slot)));
        } else {
            warn!(%slot, delay_ms = delay.as_millis() as u64, "worker keeps failing; delaying its restart");
            myself.send_after(delay, move || Mailbox::Local(PoolLocal::RestartSlot(slot)));
        }
        self.check_drained(myself);
    }

    /// Abandons workers still busy well past their task's time limit (their
    /// handler blocks its thread) and starts replacements.
    async fn replace_stuck_workers(
        &mut self,
        myself: &ActorRef<PoolMsg>,
    ) -> Result<(), ActorProcessingErr> {
        let now = Instant::now();
        let stuck: Vec<WorkerId> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, slot)| {
                slot.running
                    .as_ref()
                    .is_some_and(|r| now > r.deadline + STUCK_GRACE)
            })
            .map(|(index, _)| WorkerId(index as u32))
            .collect();
        for slot in stuck {
            let entry = &mut self.slots[slot.0 as usize];
            let running = entry.running.take().expect("filtered on running");
            if let Some(worker) = entry.worker.take() {
                self.worker_ids.remove(&worker.get_id());
                worker.kill();
            }
            metrics::counter!("herd_worker_restarts_total").increment(1);
            self.replacements.insert(slot, now);
            if !running.cancelled {
                warn!(%slot, task_id = %running.task_id, agent_type = %running.agent_type, "worker did not stop at its task's time limit (its handler blocks); abandoning it and starting a replacement");
                let stamp = UnixMillis::now();
                let report = TaskReport {
                    task_id: running.task_id,
                    epoch: running.epoch,
                    worker: slot,
                    outcome: Outcome::Failed {
                        kind: FailureKind::Timeout,
                        message: format!(
                            "the handler ignored its time limit; worker {slot} was abandoned and replaced"
                        ),
                    },
                    started_at: stamp,
                    finished_at: stamp,
                };
                self.queue_report(myself, running.member, report);
            }
            // A new generation: anything the abandoned worker still sends is ignored.
            self.start_worker(myself, slot).await?;
        }
        Ok(())
    }

    // ---- resizing ------------------------------------------------------

    /// Runs `workers` slots (at most the node's capacity): slots above the
    /// new count retire now if idle, else when their task ends.
    async fn resize(
        &mut self,
        myself: &ActorRef<PoolMsg>,
        workers: u32,
    ) -> Result<(), ActorProcessingErr> {
        if self.drain.is_some() {
            return Ok(());
        }
        let workers = workers.min(self.capacity);
        if workers == self.target {
            return Ok(());
        }
        info!(from = self.target, to = workers, "resizing the worker pool");
        let previous = self.target;
        self.target = workers;
        if workers < previous {
            let idle: Vec<WorkerId> = self
                .idle
                .iter()
                .copied()
                .filter(|slot| slot.0 >= workers)
                .collect();
            for slot in idle {
                self.retire(slot);
            }
        } else {
            for index in previous..workers {
                let slot = WorkerId(index);
                if (index as usize) >= self.slots.len() {
                    self.slots.push(Slot {
                        worker: None,
                        generation: 0,
                        running: None,
                        intensity: RestartIntensity::default(),
                    });
                }
                // A retiring slot still finishing its task simply stays.
                if self.slots[index as usize].worker.is_none() {
                    self.start_worker(myself, slot).await?;
                }
            }
            self.idle.sort_by(|a, b| b.cmp(a));
        }
        metrics::gauge!("herd_pool_slots").set(f64::from(self.target));
        Ok(())
    }

    /// Stops the idle worker of a slot that is no longer in service.
    fn retire(&mut self, slot: WorkerId) {
        self.idle.retain(|idle| *idle != slot);
        let entry = &mut self.slots[slot.0 as usize];
        if let Some(worker) = entry.worker.take() {
            self.worker_ids.remove(&worker.get_id());
            worker.stop(Some("slot retired".to_string()));
        }
        debug!(%slot, "worker slot retired");
    }

    fn send_stats(&mut self) {
        let busy = self.slots.iter().filter(|s| s.running.is_some()).count();
        metrics::gauge!("herd_pool_workers", "state" => "busy").set(busy as f64);
        metrics::gauge!("herd_pool_workers", "state" => "idle").set(self.idle.len() as f64);
        metrics::gauge!("herd_pool_slots").set(f64::from(self.target));
        let sample = self.probe.sample();
        let Some(registration) = self.registration.as_ref().filter(|r| r.welcomed) else {
            return;
        };
        let _ = registration
            .actor
            .cast(Mailbox::Cast(OrchestratorCast::PoolStats {
                member: registration.member.clone(),
                cpu_percent: sample.cpu_percent,
                memory_percent: sample.memory_percent,
                cores: sample.cores,
                memory_gb: sample.memory_gb,
            }));
    }

    // ---- assignments ---------------------------------------------------

    fn on_assign(&mut self, orchestrator: MemberId, assignments: Vec<TaskAssignment>) {
        let Some(member) = self
            .registration
            .as_ref()
            .filter(|r| r.orchestrator == orchestrator)
            .map(|r| r.member.clone())
        else {
            warn!(from = %orchestrator, count = assignments.len(), "ignoring assignments from an orchestrator this pool is not registered with");
            return;
        };
        if self.drain.is_some() {
            // Sent before the orchestrator learned of the drain: give them back.
            let attempts = assignments.iter().map(|a| (a.task_id, a.epoch)).collect();
            self.hand_back(member, attempts);
            return;
        }
        self.backlog.extend(
            assignments
                .into_iter()
                .map(|assignment| (member.clone(), assignment)),
        );
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
        if slot.0 < self.target {
            self.idle.push(slot);
        } else {
            self.retire(slot);
        }
        if let Some(running) = running
            && !running.cancelled
        {
            metrics::counter!("herd_worker_tasks_total", "agent_type" => running.agent_type.to_string(), "outcome" => outcome_label(&report.outcome)).increment(1);
            self.queue_report(myself, running.member, report);
        }
        self.drain_backlog();
        self.check_drained(myself);
    }

    fn cancel(&mut self, task_id: TaskId, epoch: AssignmentEpoch) {
        self.backlog.retain(|(_, assignment)| {
            !(assignment.task_id == task_id && assignment.epoch == epoch)
        });
        for entry in &mut self.slots {
            if let Some(running) = entry
                .running
                .as_mut()
                .filter(|r| r.task_id == task_id && r.epoch == epoch)
            {
                running.cancelled = true;
                if let Some(worker) = &entry.worker {
                    info!(task_id = %task_id, "stopping a cancelled task");
                    worker.kill();
                }
            }
        }
    }

    // ---- reports -------------------------------------------------------

    fn queue_report(&mut self, myself: &ActorRef<PoolMsg>, member: MemberId, report: TaskReport) {
        if self.outbox.len() >= MAX_UNACKED_REPORTS {
            let dropped = self.outbox.pop_front();
            self.unsent = self.unsent.min(self.outbox.len());
            warn!(task_id = ?dropped.map(|e| e.report.task_id), "report buffer full while the orchestrator is unreachable; dropping the oldest report (its task will be retried)");
        }
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        self.outbox.push_back(OutboxEntry {
            sequence,
            member,
            report,
        });
        self.unsent += 1;
        self.schedule_flush(myself);
    }

    fn schedule_flush(&mut self, myself: &ActorRef<PoolMsg>) {
        // Coalesce: one Flush per burst of completions, delivered after the
        // completions already queued in the mailbox.
        if !self.flush_scheduled {
            self.flush_scheduled = true;
            let _ = myself.cast(Mailbox::Local(PoolLocal::Flush));
        }
    }

    /// Sends every unsent report, grouped by the incarnation it belongs to.
    fn flush(&mut self) {
        self.flush_scheduled = false;
        let Some(registration) = self.registration.as_ref().filter(|r| r.welcomed) else {
            return;
        };
        let first_unsent = self.outbox.len() - self.unsent;
        self.unsent = 0;
        let mut groups: Vec<(MemberId, u64, Vec<TaskReport>)> = Vec::new();
        for entry in self.outbox.range(first_unsent..) {
            match groups.last_mut() {
                Some((member, first, reports))
                    if *member == entry.member
                        && *first + reports.len() as u64 == entry.sequence =>
                {
                    reports.push(entry.report.clone())
                }
                _ => groups.push((
                    entry.member.clone(),
                    entry.sequence,
                    vec![entry.report.clone()],
                )),
            }
        }
        for (member, first_sequence, reports) in groups {
            let mut sequence = first_sequence;
            for batch in chunk_by_budget(reports, report_size) {
                let count = batch.len() as u64;
                let message = Mailbox::Cast(OrchestratorCast::Reports {
                    member: member.clone(),
                    first_sequence: sequence,
                    reports: batch,
                });
                if let Err(error) = registration.actor.cast(message) {
                    warn!(%error, "could not deliver reports to the orchestrator; they are re-sent after it re-registers the pool");
                    self.registration = None;
                    self.unsent = self.outbox.len();
                    return;
                }
                sequence += count;
            }
        }
    }

    fn on_ack(&mut self, through: u64) {
        while self
            .outbox
            .front()
            .is_some_and(|entry| entry.sequence <= through)
        {
            self.outbox.pop_front();
        }
        self.unsent = self.unsent.min(self.outbox.len());
        if self.drain.as_ref().is_some_and(|drain| drain.settled) && self.outbox.is_empty() {
            self.finish_drain();
        }
    }

    // ---- registration --------------------------------------------------

    /// Registers with the cluster's orchestrator whenever the orchestrator or
    /// this node's incarnation changes, or the orchestrator went away.
    fn refresh_registration(&mut self) {
        let view = self.view.borrow().clone();
        let local = view.local.member.clone();
        if local != self.last_member {
            info!(old = %self.last_member, new = %local, "this node rejoined under a new incarnation; abandoning attempts of the old one");
            self.abandon_attempts_of_old_incarnations(&local);
            self.last_member = local.clone();
        }
        let target = view
            .orchestrator
            .clone()
            .filter(|member| view.is_alive(member));
        let valid = self.registration.as_ref().is_some_and(|r| {
            Some(&r.orchestrator) == target.as_ref()
                && r.member == local
                && r.actor.get_status() != ractor::ActorStatus::Stopped
        });
        if !valid && self.registration.take().is_some() {
            // Everything not acknowledged is re-sent to the next registration.
            self.unsent = self.outbox.len();
        }
        if self.registration.as_ref().is_some_and(|r| r.welcomed) {
            return;
        }
        let Some(target) = target else {
            return;
        };
        if self.registration.is_none() {
            let Some(actor) = find_orchestrator(&view) else {
                return;
            };
            info!(orchestrator = %target, as_member = %local, "registering with the orchestrator");
            self.registration = Some(Registration {
                orchestrator: target,
                actor,
                member: local,
                welcomed: false,
            });
        }
        self.register();
    }

    fn abandon_attempts_of_old_incarnations(&mut self, current: &MemberId) {
        // Their tasks were re-queued when the old incarnation was declared
        // down; finishing them would only duplicate work.
        for entry in &mut self.slots {
            if let Some(running) = entry
                .running
                .as_mut()
                .filter(|r| &r.member != current && !r.cancelled)
            {
                running.cancelled = true;
                if let Some(worker) = &entry.worker {
                    worker.kill();
                }
            }
        }
        self.backlog.retain(|(member, _)| member == current);
    }

    fn register(&self) {
        let Some(registration) = &self.registration else {
            return;
        };
        let running = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(index, slot)| {
                slot.running
                    .as_ref()
                    .filter(|r| !r.cancelled && r.member == registration.member)
                    .map(|r| RunningAttempt {
                        task_id: r.task_id,
                        epoch: r.epoch,
                        worker: Some(WorkerId(index as u32)),
                    })
            })
            .chain(
                self.backlog
                    .iter()
                    .filter(|(member, _)| *member == registration.member)
                    .map(|(_, a)| RunningAttempt {
                        task_id: a.task_id,
                        epoch: a.epoch,
                        worker: None,
                    }),
            )
            .collect();
        let unacked = self
            .outbox
            .iter()
            .filter(|entry| entry.member == registration.member)
            .map(|entry| (entry.report.task_id, entry.report.epoch))
            .collect();
        let message = PoolRegistration {
            member: registration.member.clone(),
            workers: self.target,
            capacity: self.capacity,
            agent_types: self.handlers.agent_types().cloned().collect(),
            running,
            unacked,
            draining: self.drain.is_some(),
        };
        if let Err(error) = registration
            .actor
            .cast(Mailbox::Cast(OrchestratorCast::PoolRegistered(message)))
        {
            debug!(%error, "registration not delivered; will retry");
        }
    }

    fn on_welcome(&mut self, myself: &ActorRef<PoolMsg>, orchestrator: MemberId) {
        match self.registration.as_mut() {
            Some(registration) if registration.orchestrator == orchestrator => {
                if !registration.welcomed {
                    info!(orchestrator = %orchestrator, "registered with the orchestrator");
                }
                registration.welcomed = true;
            }
            _ => return,
        }
        if self.unsent > 0 {
            self.schedule_flush(myself);
        }
    }

    // ---- draining ------------------------------------------------------

    fn start_drain(
        &mut self,
        myself: &ActorRef<PoolMsg>,
        grace: Duration,
        done: Option<oneshot::Sender<()>>,
    ) {
        let remote = done.is_none();
        match self.drain.as_mut() {
            Some(drain) if drain.finished => {
                if let Some(done) = done {
                    let _ = done.send(());
                }
                return;
            }
            Some(drain) => {
                drain.done.extend(done);
                drain.requested_remotely |= remote;
            }
            None => {
                let running = self
                    .slots
                    .iter()
                    .filter(|slot| slot.running.as_ref().is_some_and(|r| !r.cancelled))
                    .count();
                info!(
                    running,
                    grace_s = grace.as_secs_f64(),
                    "draining: no new work; running tasks may finish within the grace period"
                );
                self.drain = Some(DrainState {
                    done: done.into_iter().collect(),
                    settled: false,
                    finished: false,
                    requested_remotely: remote,
                });
                if let Some(registration) = &self.registration {
                    let _ =
                        registration
                            .actor
                            .cast(Mailbox::Cast(OrchestratorCast::PoolDraining {
                                member: registration.member.clone(),
                            }));
                }
                let backlog: Vec<(MemberId, TaskAssignment)> = self.backlog.drain(..).collect();
                for (member, assignment) in backlog {
                    self.hand_back(member, vec![(assignment.task_id, assignment.epoch)]);
                }
                myself.send_after(grace, || Mailbox::Local(PoolLocal::DrainDeadline));
            }
        }
        self.check_drained(myself);
    }

    /// Settles the drain once no attempt runs any more.
    fn check_drained(&mut self, myself: &ActorRef<PoolMsg>) {
        let Some(drain) = self.drain.as_mut() else {
            return;
        };
        if drain.settled
            || self
                .slots
                .iter()
                .any(|slot| slot.running.as_ref().is_some_and(|r| !r.cancelled))
        {
            return;
        }
        drain.settled = true;
        self.flush();
        if self.outbox.is_empty() {
            self.finish_drain();
        } else {
            myself.send_after(DRAIN_ACK_WAIT, || {
                Mailbox::Local(PoolLocal::DrainAckDeadline)
            });
        }
    }

    fn drain_deadline(&mut self, myself: &ActorRef<PoolMsg>) {
        let Some(drain) = self.drain.as_ref() else {
            return;
        };
        if drain.settled {
            return;
        }
        let mut handed: Vec<(MemberId, (TaskId, AssignmentEpoch))> = Vec::new();
        for entry in &mut self.slots {
            if let Some(running) = entry.running.as_mut().filter(|r| !r.cancelled) {
                running.cancelled = true;
                handed.push((running.member.clone(), (running.task_id, running.epoch)));
                if let Some(worker) = &entry.worker {
                    worker.kill();
                }
            }
        }
        info!(
            handed_back = handed.len(),
            "drain grace period over; handing back unfinished tasks"
        );
        for (member, attempt) in handed {
            self.hand_back(member, vec![attempt]);
        }
        self.check_drained(myself);
    }

    fn hand_back(&mut self, member: MemberId, attempts: Vec<(TaskId, AssignmentEpoch)>) {
        // Reports first, so the orchestrator sees them before the hand-back.
        self.flush();
        if let Some(registration) = &self.registration {
            let _ = registration
                .actor
                .cast(Mailbox::Cast(OrchestratorCast::HandBack {
                    member,
                    attempts,
                }));
        }
    }

    fn finish_drain(&mut self) {
        let Some(drain) = self.drain.as_mut().filter(|drain| !drain.finished) else {
            return;
        };
        drain.finished = true;
        if !self.outbox.is_empty() {
            warn!(
                unacknowledged = self.outbox.len(),
                "drained with reports the orchestrator has not acknowledged; their tasks may run again"
            );
        }
        info!("drained");
        for done in drain.done.drain(..) {
            let _ = done.send(());
        }
        if std::mem::take(&mut drain.requested_remotely) {
            let _ = self.events.send(NodeEvent::Drained);
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
