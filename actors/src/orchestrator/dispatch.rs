//! Dispatch: spreading pending work over the pools' free slots. Which pool
//! gets how many tasks of which type is decided by the pure
//! [`crate::scheduling::plan_dispatch`]; this module gathers its inputs
//! (demand admitted by the circuits, each serving pool's load), applies the
//! plan to the book, and sends the assignments once durable.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use herd_protocol::limits::chunk_by_budget;
use herd_protocol::messages::pool::PoolCast;
use herd_protocol::{AgentType, Mailbox, MemberId, TaskAssignment, UnixMillis};
use ractor::ActorRef;
use tracing::warn;

use super::OrchestratorMsg;
use super::actor::OrchestratorLocal;
use super::durability::Deferred;
use super::state::OrchestratorState;
use crate::scheduling::{DispatchInput, PoolLoad, SlotCredits, plan_dispatch};
use crate::task_book::{Command, Effect};

impl OrchestratorState {
    /// Asks for one dispatch after the messages already queued.
    pub(super) fn schedule_dispatch(&mut self, myself: &ActorRef<OrchestratorMsg>) {
        // One Dispatch per burst: it runs after the messages already queued,
        // so a burst of submissions or reports yields one batch per pool.
        if !self.dispatch_scheduled {
            self.dispatch_scheduled = true;
            let _ = myself.cast(Mailbox::Local(OrchestratorLocal::Dispatch));
        }
    }

    /// Assigns pending work to free slots.
    pub(super) fn dispatch(&mut self, myself: &ActorRef<OrchestratorMsg>) {
        self.dispatch_scheduled = false;
        let now = Instant::now();
        if self
            .agent_types
            .keys()
            .all(|agent_type| self.book.queue_depth(agent_type) == 0)
        {
            // Nothing waits: skip gathering the pools' loads (the common case
            // on a busy cluster, where every report asks for a dispatch).
            self.providers.begin_round(|_, _| true);
            self.schedule_reopening(myself);
            return;
        }
        let mut loads = self.serving_loads();
        // A provider is asked for no more calls than free slots can start,
        // so a task waiting for a slot is not shown as waiting for it.
        let llm_slots: u64 = loads
            .iter()
            .map(|load| u64::from(load.idle().min(load.llm_room)))
            .sum();
        let book = &self.book;
        self.providers
            .begin_round(|task, epoch| book.is_current_attempt(task, epoch));
        let mut demand = BTreeMap::new();
        let mut reserved = BTreeMap::new();
        for agent_type in self.agent_types.keys() {
            let queued = self.book.queue_depth(agent_type);
            if queued > 0 {
                let mut wanted = queued.min(self.circuits.admissible(agent_type, now));
                if self.providers.routes(agent_type) {
                    wanted = wanted.min(llm_slots);
                }
                let granted = self.providers.allot(agent_type, wanted, &mut reserved, now);
                if granted > 0 {
                    demand.insert(agent_type.clone(), granted);
                }
            }
        }
        self.schedule_reopening(myself);
        if demand.is_empty() || loads.is_empty() {
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
            slot_credit: self.slot_credits(),
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
                if let Effect::Dispatch {
                    member,
                    mut assignment,
                } = effect
                {
                    if self.providers.routes(&assignment.agent_type) {
                        self.providers.grant(&mut assignment, now);
                    }
                    self.slot_credit
                        .observe_payload(&assignment.agent_type, assignment.payload.len());
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

    /// Each type's slot credit as the meter has it (between
    /// `scaling.slot_credit` and `scaling.max_slot_credit`, fixed when the
    /// orchestrator starts: a scaling update does not change them).
    pub(super) fn slot_credits(&self) -> SlotCredits {
        SlotCredits {
            default: self.slot_credit.floor(),
            by_type: self.slot_credit.credits(),
        }
    }

    /// The load of every pool that may take work (up, not draining).
    fn serving_loads(&self) -> Vec<PoolLoad> {
        let view = self.view.borrow();
        self.pools
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
            .collect()
    }

    /// Sends attempts to `member`'s pool in frames bounded by bytes.
    pub(super) fn send_assignments(&self, member: &MemberId, assignments: Vec<TaskAssignment>) {
        let Some(pool) = self.pools.get(member) else {
            // The pool left while the journal was committing; the view change
            // that removed it re-queued these.
            return;
        };
        self.trace_assigned(member, &assignments);
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

    /// Re-dispatches when an open circuit will admit trial tasks, or a
    /// provider that tasks wait for will have room again.
    fn schedule_reopening(&mut self, myself: &ActorRef<OrchestratorMsg>) {
        let Some(at) = [
            self.circuits.next_reopening(),
            self.providers.next_room_at(),
        ]
        .into_iter()
        .flatten()
        .min() else {
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
pub(super) fn borrow_order(weights: &BTreeMap<AgentType, f64>) -> Vec<AgentType> {
    let mut order: Vec<AgentType> = weights.keys().cloned().collect();
    order.sort_by(|a, b| weights[b].total_cmp(&weights[a]).then(a.cmp(b)));
    order
}
