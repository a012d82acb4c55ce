//! The pool's worker slots: which are in service, which are idle, what each
//! runs, and which worker (of which generation) occupies it.
//!
//! Plain bookkeeping: the pool actor starts, stops and kills the workers it
//! names, and logs. It is generic over the worker handle so it can be tested
//! without actors.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use herd_protocol::messages::orchestrator::RunningAttempt;
use herd_protocol::{AgentType, AssignmentEpoch, MemberId, TaskAssignment, TaskId, WorkerId};
use ractor::{ActorId, ActorRef};

use super::restarts::RestartIntensity;
use super::worker::WorkerMsg;

/// How long past its time limit an attempt may keep its worker before the
/// worker is abandoned and replaced (a handler that blocks its thread cannot
/// be cancelled at an `.await`).
const STUCK_GRACE: Duration = Duration::from_secs(5);

/// What the slots need of a worker: its actor id, by which its exit is
/// recognised.
pub(super) trait WorkerHandle {
    /// The worker's actor id.
    fn actor_id(&self) -> ActorId;
}

impl WorkerHandle for ActorRef<WorkerMsg> {
    fn actor_id(&self) -> ActorId {
        self.get_id()
    }
}

/// An attempt a slot runs.
#[derive(Debug)]
pub(super) struct RunningTask {
    /// The task.
    pub task_id: TaskId,
    /// Which attempt at it.
    pub epoch: AssignmentEpoch,
    /// For logs and metrics.
    pub agent_type: AgentType,
    /// The incarnation of this node the attempt was assigned to.
    pub member: MemberId,
    /// Its report, should one still come, is not wanted.
    pub cancelled: bool,
    /// When its time limit is over.
    pub deadline: Instant,
}

impl RunningTask {
    /// The attempt `assignment` of incarnation `member`, starting now.
    pub(super) fn start(member: MemberId, assignment: &TaskAssignment) -> Self {
        RunningTask {
            task_id: assignment.task_id,
            epoch: assignment.epoch,
            agent_type: assignment.agent_type.clone(),
            member,
            cancelled: false,
            deadline: Instant::now() + Duration::from_millis(assignment.timeout_ms),
        }
    }
}

#[derive(Debug)]
struct Slot<W> {
    worker: Option<W>,
    generation: u64,
    running: Option<RunningTask>,
    intensity: RestartIntensity,
}

impl<W> Default for Slot<W> {
    fn default() -> Self {
        Slot {
            worker: None,
            generation: 0,
            running: None,
            intensity: RestartIntensity::default(),
        }
    }
}

/// A worker handed an attempt.
#[derive(Debug)]
pub(super) struct Assigned<'a, W> {
    /// The worker to send the attempt to.
    pub worker: &'a W,
    /// How long the slot was without a working worker, if this is the first
    /// attempt since its worker was replaced.
    pub replaced_after: Option<Duration>,
}

/// A slot whose worker finished an attempt.
#[derive(Debug)]
pub(super) struct Freed {
    /// The attempt, unless it was taken away meanwhile.
    pub running: Option<RunningTask>,
    /// The slot is out of service: its worker is to be retired.
    pub retire: bool,
}

/// A slot whose worker stopped.
#[derive(Debug)]
pub(super) enum Exited {
    /// The idle worker of a slot out of service stopped: nothing to do.
    Retired,
    /// The worker failed or was stopped and counts as a restart.
    Failed {
        slot: WorkerId,
        /// The attempt it was running.
        running: Option<RunningTask>,
        /// When to start a replacement; `None` if the slot is out of service.
        restart_after: Option<Duration>,
    },
}

/// How [`Slots::resize`] changed the slots in service.
#[derive(Debug)]
pub(super) enum Resized<W> {
    /// Fewer slots: these idle ones retired, their workers are to be stopped
    /// (busy ones retire when their attempt ends).
    Shrunk { retired: Vec<(WorkerId, Option<W>)> },
    /// More slots: these need a worker started.
    Grown { unstaffed: Vec<WorkerId> },
}

/// The worker slots of a pool.
///
/// Guarantees: slots `0..target` are in service, and a resize never puts
/// more than `capacity` in service; an idle slot is in service and runs
/// nothing; idle slots are served lowest
/// index first (after [`Slots::serve_lowest_first`]); a report from an
/// earlier generation of a slot, or an exit of a worker the slots no longer
/// hold, changes nothing.
#[derive(Debug)]
pub(super) struct Slots<W> {
    slots: Vec<Slot<W>>,
    /// Served from the back.
    idle: Vec<WorkerId>,
    workers: HashMap<ActorId, WorkerId>,
    /// When each slot awaiting a replacement worker lost its previous one.
    replacements: HashMap<WorkerId, Instant>,
    /// Slots `0..target` are in service; higher ones retire when idle.
    target: u32,
    capacity: u32,
}

impl<W: WorkerHandle> Slots<W> {
    /// `target` empty slots, on a node that can host `capacity`.
    pub(super) fn new(target: u32, capacity: u32) -> Self {
        Slots {
            slots: (0..target).map(|_| Slot::default()).collect(),
            idle: Vec::with_capacity(target as usize),
            workers: HashMap::new(),
            replacements: HashMap::new(),
            target,
            capacity,
        }
    }

    /// How many slots are in service.
    pub(super) fn target(&self) -> u32 {
        self.target
    }

    /// The most slots this node may host.
    pub(super) fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Whether `slot` is in service and has no worker, so one should start.
    pub(super) fn is_unstaffed(&self, slot: WorkerId) -> bool {
        slot.0 < self.target && self.slot(slot).worker.is_none()
    }

    /// The generation a new worker of `slot` starts as; `None` if the slot
    /// is out of service (it stays down until the pool grows again).
    pub(super) fn next_generation(&self, slot: WorkerId) -> Option<u64> {
        (slot.0 < self.target).then(|| self.slot(slot).generation + 1)
    }

    /// Puts a freshly started worker into `slot`, idle.
    pub(super) fn staff(&mut self, slot: WorkerId, generation: u64, worker: W) {
        self.workers.insert(worker.actor_id(), slot);
        let entry = self.slot_mut(slot);
        entry.worker = Some(worker);
        entry.generation = generation;
        entry.running = None;
        self.idle.push(slot);
    }

    /// Orders the idle slots so the lowest index is served first (w0 is the
    /// first used).
    pub(super) fn serve_lowest_first(&mut self) {
        self.idle.sort_by(|a, b| b.cmp(a));
    }

    /// Takes the next idle slot to hand an attempt to.
    pub(super) fn take_idle(&mut self) -> Option<WorkerId> {
        self.idle.pop()
    }

    /// Records that `slot` runs `task`. `None`, recording nothing, if the
    /// slot has no worker.
    pub(super) fn assign(&mut self, slot: WorkerId, task: RunningTask) -> Option<Assigned<'_, W>> {
        let entry = &mut self.slots[slot.0 as usize];
        let worker = entry.worker.as_ref()?;
        entry.running = Some(task);
        let replaced_after = self
            .replacements
            .remove(&slot)
            .map(|replaced_at| replaced_at.elapsed());
        Some(Assigned {
            worker,
            replaced_after,
        })
    }

    /// Frees `slot` after its worker of `generation` finished an attempt;
    /// `None` if that worker is an earlier life of the slot.
    pub(super) fn free(&mut self, slot: WorkerId, generation: u64) -> Option<Freed> {
        let entry = self.slot_mut(slot);
        if entry.generation != generation {
            return None;
        }
        let running = entry.running.take();
        let retire = slot.0 >= self.target;
        if !retire {
            self.idle.push(slot);
        }
        Some(Freed { running, retire })
    }

    /// Empties the slot of a worker that stopped; `None` if the slots no
    /// longer hold that worker (it was abandoned or retired).
    pub(super) fn worker_exited(&mut self, actor: &ActorId, now: Instant) -> Option<Exited> {
        let slot = self.workers.remove(actor)?;
        let in_service = slot.0 < self.target;
        self.idle.retain(|idle| *idle != slot);
        let entry = self.slot_mut(slot);
        entry.worker = None;
        let running = entry.running.take();
        if !in_service && running.is_none() {
            return Some(Exited::Retired);
        }
        let delay = entry.intensity.next_delay(now);
        self.replacements.insert(slot, now);
        Some(Exited::Failed {
            slot,
            running,
            restart_after: in_service.then_some(delay),
        })
    }

    /// Slots whose attempt ran well past its time limit at `now`.
    pub(super) fn stuck(&self, now: Instant) -> Vec<WorkerId> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, slot)| {
                slot.running
                    .as_ref()
                    .is_some_and(|r| now > r.deadline + STUCK_GRACE)
            })
            .map(|(index, _)| WorkerId(index as u32))
            .collect()
    }

    /// Empties a stuck slot: returns its attempt and its worker, to be
    /// killed. A replacement is due.
    pub(super) fn abandon(&mut self, slot: WorkerId, now: Instant) -> (RunningTask, Option<W>) {
        let entry = &mut self.slots[slot.0 as usize];
        let running = entry
            .running
            .take()
            .expect("abandoned slots run an attempt");
        let worker = entry.worker.take();
        if let Some(worker) = &worker {
            self.workers.remove(&worker.actor_id());
        }
        self.replacements.insert(slot, now);
        (running, worker)
    }

    /// Takes `slot` out of service now: returns its worker, to be stopped.
    pub(super) fn retire(&mut self, slot: WorkerId) -> Option<W> {
        self.idle.retain(|idle| *idle != slot);
        let worker = self.slot_mut(slot).worker.take();
        if let Some(worker) = &worker {
            self.workers.remove(&worker.actor_id());
        }
        worker
    }

    /// Puts `workers` slots in service, at most the node's capacity. Slots
    /// above the new count retire now if idle, else when their attempt ends.
    /// `None` if the count does not change.
    pub(super) fn resize(&mut self, workers: u32) -> Option<Resized<W>> {
        let workers = workers.min(self.capacity);
        if workers == self.target {
            return None;
        }
        let previous = std::mem::replace(&mut self.target, workers);
        if workers < previous {
            let idle: Vec<WorkerId> = self
                .idle
                .iter()
                .copied()
                .filter(|slot| slot.0 >= workers)
                .collect();
            let retired = idle
                .into_iter()
                .map(|slot| (slot, self.retire(slot)))
                .collect();
            return Some(Resized::Shrunk { retired });
        }
        let missing = (workers as usize).saturating_sub(self.slots.len());
        self.slots.extend((0..missing).map(|_| Slot::default()));
        // A retiring slot still finishing its attempt simply stays.
        let unstaffed = (previous..workers)
            .map(WorkerId)
            .filter(|slot| self.is_unstaffed(*slot))
            .collect();
        Some(Resized::Grown { unstaffed })
    }

    /// Marks the attempts `select` picks as cancelled (their reports will be
    /// ignored) and returns them with their workers, to be killed.
    pub(super) fn cancel_where(
        &mut self,
        select: impl Fn(&RunningTask) -> bool,
    ) -> Vec<(&RunningTask, Option<&W>)> {
        self.slots
            .iter_mut()
            .filter_map(|slot| {
                let running = slot.running.as_mut().filter(|r| select(r))?;
                running.cancelled = true;
                Some((&*running, slot.worker.as_ref()))
            })
            .collect()
    }

    /// The attempts of incarnation `member` that run and are wanted.
    pub(super) fn running_attempts_of<'a>(
        &'a self,
        member: &'a MemberId,
    ) -> impl Iterator<Item = RunningAttempt> + 'a {
        self.slots
            .iter()
            .enumerate()
            .filter_map(move |(index, slot)| {
                slot.running
                    .as_ref()
                    .filter(|r| !r.cancelled && &r.member == member)
                    .map(|r| RunningAttempt {
                        task_id: r.task_id,
                        epoch: r.epoch,
                        worker: Some(WorkerId(index as u32)),
                    })
            })
    }

    /// How many attempts run whose reports are wanted.
    pub(super) fn wanted_attempts(&self) -> usize {
        self.slots
            .iter()
            .filter(|slot| slot.running.as_ref().is_some_and(|r| !r.cancelled))
            .count()
    }

    /// How many slots have an attempt, wanted or not.
    pub(super) fn busy(&self) -> usize {
        self.slots.iter().filter(|s| s.running.is_some()).count()
    }

    /// How many slots wait for an attempt.
    pub(super) fn idle(&self) -> usize {
        self.idle.len()
    }

    fn slot(&self, slot: WorkerId) -> &Slot<W> {
        &self.slots[slot.0 as usize]
    }

    fn slot_mut(&mut self, slot: WorkerId) -> &mut Slot<W> {
        &mut self.slots[slot.0 as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_protocol::{Incarnation, NodeName};

    /// A worker known only by its actor id.
    #[derive(Debug, PartialEq)]
    struct FakeWorker(u64);

    impl WorkerHandle for FakeWorker {
        fn actor_id(&self) -> ActorId {
            ActorId::Local(self.0)
        }
    }

    fn incarnation(number: u64) -> MemberId {
        MemberId {
            name: NodeName::parse("node-a").unwrap(),
            incarnation: Incarnation(number),
        }
    }

    fn task(id: u128, member: u64) -> RunningTask {
        RunningTask {
            task_id: TaskId(id),
            epoch: AssignmentEpoch(1),
            agent_type: AgentType::new("generation"),
            member: incarnation(member),
            cancelled: false,
            deadline: Instant::now() + Duration::from_secs(60),
        }
    }

    /// `target` slots, each staffed by worker `100 + index` (generation 1).
    fn staffed(target: u32, capacity: u32) -> Slots<FakeWorker> {
        let mut slots = Slots::new(target, capacity);
        for index in 0..target {
            let slot = WorkerId(index);
            let generation = slots.next_generation(slot).unwrap();
            slots.staff(slot, generation, FakeWorker(100 + u64::from(index)));
        }
        slots.serve_lowest_first();
        slots
    }

    /// Two busy slots (tasks 1 and 2), shrunk to one: the second retires
    /// when its attempt ends.
    fn shrunk_with_second_busy(capacity: u32) -> Slots<FakeWorker> {
        let mut slots = staffed(2, capacity);
        for id in 1..=2 {
            let slot = slots.take_idle().unwrap();
            slots.assign(slot, task(id, 1));
        }
        slots.resize(1);
        slots
    }

    #[test]
    fn idle_slots_are_served_lowest_index_first() {
        let mut slots = staffed(3, 3);
        assert_eq!(slots.take_idle(), Some(WorkerId(0)));
        assert_eq!(slots.take_idle(), Some(WorkerId(1)));
        assert_eq!(slots.take_idle(), Some(WorkerId(2)));
        assert_eq!(slots.take_idle(), None);
    }

    #[test]
    fn a_finished_attempt_frees_its_slot_once() {
        let mut slots = staffed(1, 1);
        let slot = slots.take_idle().unwrap();
        let assigned = slots.assign(slot, task(1, 1)).unwrap();
        assert_eq!(assigned.worker, &FakeWorker(100));
        assert_eq!(assigned.replaced_after, None);
        assert_eq!((slots.busy(), slots.idle()), (1, 0));
        let freed = slots.free(slot, 1).unwrap();
        assert_eq!(freed.running.unwrap().task_id, TaskId(1));
        assert!(!freed.retire);
        assert_eq!((slots.busy(), slots.idle()), (0, 1));
    }

    #[test]
    fn a_report_from_an_earlier_generation_is_ignored() {
        let mut slots = staffed(1, 1);
        let slot = slots.take_idle().unwrap();
        slots.assign(slot, task(1, 1));
        assert!(slots.free(slot, 0).is_none());
        assert_eq!(slots.busy(), 1);
    }

    #[test]
    fn a_worker_that_dies_mid_attempt_is_replaced_at_once_and_timed() {
        let mut slots = staffed(2, 2);
        let slot = slots.take_idle().unwrap();
        slots.assign(slot, task(1, 1));
        let now = Instant::now();
        let Some(Exited::Failed {
            slot: exited,
            running,
            restart_after,
        }) = slots.worker_exited(&ActorId::Local(100), now)
        else {
            panic!("a failed worker");
        };
        assert_eq!(exited, slot);
        assert_eq!(running.unwrap().task_id, TaskId(1));
        assert_eq!(restart_after, Some(Duration::ZERO));
        assert!(slots.is_unstaffed(slot));
        assert!(
            slots.worker_exited(&ActorId::Local(100), now).is_none(),
            "a second exit of the same worker changes nothing"
        );
        let generation = slots.next_generation(slot).unwrap();
        assert_eq!(generation, 2);
        slots.staff(slot, generation, FakeWorker(200));
        slots.serve_lowest_first();
        let slot = slots.take_idle().unwrap();
        let assigned = slots.assign(slot, task(2, 1)).unwrap();
        assert_eq!(assigned.worker, &FakeWorker(200));
        assert!(assigned.replaced_after.is_some());
    }

    #[test]
    fn an_idle_worker_that_dies_leaves_the_idle_list() {
        let mut slots = staffed(2, 2);
        assert!(matches!(
            slots.worker_exited(&ActorId::Local(100), Instant::now()),
            Some(Exited::Failed { running: None, .. })
        ));
        assert_eq!(slots.idle(), 1);
        assert_eq!(slots.take_idle(), Some(WorkerId(1)));
    }

    #[test]
    fn shrinking_retires_idle_slots_now_and_busy_ones_when_they_finish() {
        let mut slots = staffed(3, 3);
        let busy = slots.take_idle().unwrap();
        let busy = [busy, slots.take_idle().unwrap()];
        for (id, slot) in busy.iter().enumerate() {
            slots.assign(*slot, task(id as u128, 1));
        }
        let Some(Resized::Shrunk { retired }) = slots.resize(1) else {
            panic!("a shrink");
        };
        assert_eq!(retired, vec![(WorkerId(2), Some(FakeWorker(102)))]);
        assert_eq!(slots.target(), 1);
        let freed = slots.free(WorkerId(1), 1).unwrap();
        assert!(freed.retire);
        assert_eq!(slots.retire(WorkerId(1)), Some(FakeWorker(101)));
        assert!(!slots.free(WorkerId(0), 1).unwrap().retire);
        assert_eq!(slots.idle(), 1);
        assert!(
            slots
                .worker_exited(&ActorId::Local(102), Instant::now())
                .is_none()
        );
        assert!(slots.next_generation(WorkerId(2)).is_none());
    }

    #[test]
    fn the_idle_worker_of_a_retired_slot_stops_without_a_restart() {
        let mut slots = staffed(2, 2);
        slots.resize(1);
        // Stopped by the shrink: the slots let go of it already.
        assert!(
            slots
                .worker_exited(&ActorId::Local(101), Instant::now())
                .is_none()
        );
        let mut slots = shrunk_with_second_busy(2);
        slots.free(WorkerId(1), 1);
        // It died before the pool retired it.
        assert!(matches!(
            slots.worker_exited(&ActorId::Local(101), Instant::now()),
            Some(Exited::Retired)
        ));
    }

    #[test]
    fn a_busy_retired_slot_whose_worker_dies_reports_but_is_not_restarted() {
        let mut slots = shrunk_with_second_busy(2);
        let Some(Exited::Failed {
            running,
            restart_after,
            ..
        }) = slots.worker_exited(&ActorId::Local(101), Instant::now())
        else {
            panic!("a failed worker");
        };
        assert!(running.is_some());
        assert_eq!(restart_after, None);
    }

    #[test]
    fn growing_adds_slots_up_to_the_capacity_and_keeps_busy_retiring_ones() {
        let mut slots = shrunk_with_second_busy(4);
        let Some(Resized::Grown { unstaffed }) = slots.resize(10) else {
            panic!("a growth");
        };
        assert_eq!(unstaffed, vec![WorkerId(2), WorkerId(3)]);
        assert_eq!(slots.target(), 4);
        assert!(slots.resize(7).is_none(), "already at capacity");
        assert!(!slots.free(WorkerId(1), 1).unwrap().retire);
    }

    #[test]
    fn attempts_past_their_time_limit_and_grace_are_stuck() {
        let mut slots = staffed(2, 2);
        let slot = slots.take_idle().unwrap();
        let now = Instant::now();
        let mut late = task(1, 1);
        late.deadline = now;
        slots.assign(slot, late);
        assert!(slots.stuck(now + STUCK_GRACE).is_empty());
        let later = now + STUCK_GRACE + Duration::from_millis(1);
        assert_eq!(slots.stuck(later), vec![slot]);
        let (running, worker) = slots.abandon(slot, later);
        assert_eq!(running.task_id, TaskId(1));
        assert_eq!(worker, Some(FakeWorker(100)));
        assert!(
            slots.worker_exited(&ActorId::Local(100), later).is_none(),
            "an abandoned worker's exit changes nothing"
        );
        assert!(slots.is_unstaffed(slot));
    }

    #[test]
    fn cancelled_attempts_are_neither_wanted_nor_registered() {
        let mut slots = staffed(3, 3);
        for (id, member) in [(1, 1), (2, 2), (3, 2)] {
            let slot = slots.take_idle().unwrap();
            slots.assign(slot, task(id, member));
        }
        let cancelled: Vec<TaskId> = slots
            .cancel_where(|r| r.member != incarnation(2))
            .into_iter()
            .map(|(running, worker)| {
                assert!(worker.is_some());
                running.task_id
            })
            .collect();
        assert_eq!(cancelled, vec![TaskId(1)]);
        assert_eq!(slots.wanted_attempts(), 2);
        assert_eq!(slots.busy(), 3);
        let registered: Vec<TaskId> = slots
            .running_attempts_of(&incarnation(2))
            .map(|attempt| attempt.task_id)
            .collect();
        assert_eq!(registered, vec![TaskId(2), TaskId(3)]);
        assert_eq!(slots.running_attempts_of(&incarnation(1)).count(), 0);
    }
}
