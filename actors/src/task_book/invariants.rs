//! The book's internal consistency check, for tests.

use std::collections::{HashMap, HashSet};

use herd_protocol::messages::orchestrator::TaskCounts;
use herd_protocol::{AgentType, MemberId, TaskId, TaskState};

use super::TaskBook;

impl TaskBook {
    /// Panics if any internal index disagrees with the records. Used by tests;
    /// cheap enough to call after every command in property tests.
    pub fn check_invariants(&self) {
        let mut counts = TaskCounts::default();
        let mut pending_by_type: HashMap<&AgentType, usize> = HashMap::new();
        let mut running_by_member: HashMap<&MemberId, HashSet<TaskId>> = HashMap::new();
        for (id, record) in &self.tasks {
            assert_eq!(*id, record.id);
            *counts.get_mut(record.state) += 1;
            match record.state {
                TaskState::Pending => *pending_by_type.entry(&record.agent_type).or_default() += 1,
                TaskState::Running => {
                    let member = record
                        .member
                        .as_ref()
                        .expect("running task without a member");
                    running_by_member.entry(member).or_default().insert(*id);
                }
                TaskState::Failed => {
                    let due = record.retry_at.expect("failed task without retry time");
                    assert!(
                        self.retries.contains(&(due, *id)),
                        "failed task {id} not scheduled"
                    );
                }
                _ => {}
            }
            assert!(
                record.attempts <= record.max_attempts,
                "attempts beyond budget for {id}"
            );
            if record.state == TaskState::Succeeded {
                assert!(
                    record.result.is_some(),
                    "succeeded task {id} without a result"
                );
            }
        }
        let held: u64 = self.tasks.values().map(super::bytes::record_bytes).sum();
        assert_eq!(held, self.held_bytes, "held bytes disagree with records");
        let finished: u64 = self
            .finished
            .iter()
            .filter_map(|id| self.tasks.get(id))
            .map(super::bytes::record_bytes)
            .sum();
        assert_eq!(finished, self.finished_bytes, "finished bytes disagree");
        assert_eq!(
            self.tenant_usage_from_records(),
            self.tenant_usage,
            "tenant usage disagrees with records"
        );
        // Forgotten tasks leave the counts with them.
        assert_eq!(counts, self.counts, "state counts disagree with records");
        for (agent_type, queue) in &self.queues {
            assert_eq!(
                queue.len(),
                pending_by_type.get(agent_type).copied().unwrap_or(0),
                "queue length of {agent_type} disagrees with pending records"
            );
        }
        assert_eq!(self.retries.len() as u64, self.counts.failed);
        let loads: HashMap<&MemberId, HashSet<TaskId>> = self
            .load
            .iter()
            .map(|(member, load)| (member, load.tasks.clone()))
            .collect();
        assert_eq!(
            loads, running_by_member,
            "node loads disagree with running records"
        );
        for load in self.load.values() {
            let total: u32 = load.by_type.values().sum();
            assert_eq!(total as usize, load.tasks.len());
        }
        assert!(self.finished.len() <= self.settings.retain_finished);
    }
}
