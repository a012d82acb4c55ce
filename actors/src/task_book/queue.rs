//! The pending queue of one agent type: priorities first, then FIFO.

use std::collections::VecDeque;

use herd_protocol::{Priority, TaskId};
use serde::{Deserialize, Serialize};

/// Pending tasks of one agent type, one FIFO per priority level.
///
/// Removal is lazy: a cancelled task stays in its FIFO until popped, and a
/// pop skips entries whose ticket no longer matches the task (the caller
/// checks). `len` counts live entries only.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct PendingQueue {
    levels: [VecDeque<(TaskId, u64)>; Priority::LEVELS],
    live: usize,
}

impl PendingQueue {
    /// Appends a task; `ticket` identifies this enqueueing.
    pub fn push(&mut self, id: TaskId, priority: Priority, ticket: u64) {
        self.levels[priority.level() as usize].push_back((id, ticket));
        self.live += 1;
    }

    /// Puts a task back at the front of its level (it was already waiting).
    pub fn push_front(&mut self, id: TaskId, priority: Priority, ticket: u64) {
        self.levels[priority.level() as usize].push_front((id, ticket));
        self.live += 1;
    }

    /// Removes and returns the next entry that `is_live` accepts, highest
    /// priority first. Entries it rejects are discarded (already counted out
    /// by [`PendingQueue::forget_one`]).
    pub fn pop(&mut self, mut is_live: impl FnMut(TaskId, u64) -> bool) -> Option<TaskId> {
        for level in self.levels.iter_mut().rev() {
            while let Some((id, ticket)) = level.pop_front() {
                if is_live(id, ticket) {
                    self.live -= 1;
                    return Some(id);
                }
            }
        }
        None
    }

    /// Accounts for an entry that became dead without being popped.
    pub fn forget_one(&mut self) {
        debug_assert!(self.live > 0, "forgetting from an empty queue");
        self.live = self.live.saturating_sub(1);
    }

    /// Live entries.
    pub fn len(&self) -> usize {
        self.live
    }

    /// True when no live entry remains.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> TaskId {
        TaskId(n)
    }

    #[test]
    fn higher_priority_first_then_fifo() {
        let mut queue = PendingQueue::default();
        queue.push(id(1), Priority::new(5).unwrap(), 0);
        queue.push(id(2), Priority::new(9).unwrap(), 0);
        queue.push(id(3), Priority::new(5).unwrap(), 0);
        queue.push(id(4), Priority::new(0).unwrap(), 0);
        let order: Vec<_> = std::iter::from_fn(|| queue.pop(|_, _| true)).collect();
        assert_eq!(order, vec![id(2), id(1), id(3), id(4)]);
        assert!(queue.is_empty());
    }

    #[test]
    fn dead_entries_are_skipped() {
        let mut queue = PendingQueue::default();
        queue.push(id(1), Priority::DEFAULT, 1);
        queue.push(id(2), Priority::DEFAULT, 2);
        queue.forget_one(); // id 1 was cancelled
        assert_eq!(queue.len(), 1);
        assert_eq!(queue.pop(|task, _| task != id(1)), Some(id(2)));
        assert!(queue.is_empty());
        assert_eq!(queue.pop(|_, _| true), None);
    }
}
