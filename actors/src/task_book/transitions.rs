//! The transitions every command shares: queueing a pending task, releasing
//! a running attempt from its node, finishing a task, and forgetting finished
//! tasks beyond the retention limits (by count and by bytes).

use herd_protocol::{MemberId, TaskId, TaskState, UnixMillis};

use super::{Effect, TaskBook};

impl TaskBook {
    /// Puts a pending task in its queue. `front` keeps a re-queued task ahead
    /// of tasks submitted after it.
    pub(super) fn enqueue(&mut self, id: TaskId, front: bool, now: UnixMillis) {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        let record = self.tasks.get_mut(&id).expect("enqueue of a live task");
        record.queue_ticket = ticket;
        record.queued_at = now;
        let queue = self.queues.entry(record.agent_type.clone()).or_default();
        if front {
            queue.push_front(id, record.priority, ticket, &record.tenant);
        } else {
            queue.push(id, record.priority, ticket, &record.tenant);
        }
    }

    /// Removes a running attempt from its node's load.
    pub(super) fn release(&mut self, id: TaskId, member: &MemberId) {
        let agent_type = &self.tasks[&id].agent_type;
        if let Some(load) = self.load.get_mut(member) {
            load.tasks.remove(&id);
            if let Some(count) = load.by_type.get_mut(agent_type) {
                *count -= 1;
            }
            if load.tasks.is_empty() {
                self.load.remove(member);
            }
        }
    }

    /// Moves a running, pending or failed task to a terminal state.
    pub(super) fn finish(
        &mut self,
        id: TaskId,
        state: TaskState,
        now: UnixMillis,
        effects: &mut Vec<Effect>,
    ) {
        debug_assert!(state.is_terminal());
        let record = self.tasks.get_mut(&id).expect("finish of a live task");
        *self.counts.get_mut(record.state) -= 1;
        *self.counts.get_mut(state) += 1;
        record.state = state;
        record.finished_at = Some(now);
        record.updated_at = now;
        let agent_type = record.agent_type.clone();
        self.finished.push_back(id);
        self.bytes_finished(id, true);
        effects.push(Effect::StateChanged {
            id,
            agent_type,
            state,
        });
    }

    pub(super) fn forget_beyond_retention(&mut self, effects: &mut Vec<Effect>) {
        while self.finished.len() > self.settings.retain_finished || self.over_byte_budget() {
            let Some(id) = self.finished.pop_front() else {
                break;
            };
            if let Some(record) = self.tasks.remove(&id) {
                let bytes = super::bytes::record_bytes(&record);
                self.held_bytes -= bytes;
                self.finished_bytes -= bytes;
                *self.counts.get_mut(record.state) -= 1;
                *self.forgotten.get_mut(record.state) += 1;
                if let Some(key) = &record.idempotency_key {
                    self.idempotency
                        .remove(&super::tenants::idempotency_key(&record.tenant, key));
                }
                effects.push(Effect::Forgotten(id));
            }
        }
    }
}
