//! What the book answers without changing: task views and pages, counts,
//! queue depths and per-node load.

use herd_protocol::codec;
use herd_protocol::limits::PAGE_BYTE_BUDGET;
use herd_protocol::messages::orchestrator::{TaskCounts, TaskPage, TaskQuery};
use herd_protocol::{
    AgentType, AssignmentEpoch, MemberId, TaskId, TaskState, TaskView, UnixMillis,
};

use super::{TaskBook, TaskRecord};

impl TaskBook {
    /// The API view of a task.
    pub fn view(&self, id: TaskId) -> Option<TaskView> {
        self.tasks.get(&id).map(TaskRecord::view)
    }

    /// True if `epoch` is the running attempt of task `id`.
    pub fn is_current_attempt(&self, id: TaskId, epoch: AssignmentEpoch) -> bool {
        self.tasks
            .get(&id)
            .is_some_and(|record| record.state == TaskState::Running && record.epoch == epoch)
    }

    /// The record of a task.
    pub fn record(&self, id: TaskId) -> Option<&TaskRecord> {
        self.tasks.get(&id)
    }

    /// A page of tasks in creation order, cut by count (`query.limit`) and by
    /// bytes: it stops before the tasks' encoded size would pass
    /// [`PAGE_BYTE_BUDGET`], so a page forwarded to another node stays well
    /// under the cluster frame limit. Its first task is always included,
    /// however large, so paging with `next_after` always moves on.
    pub fn list(&self, query: &TaskQuery) -> TaskPage {
        let limit = query.limit.clamp(1, 10_000) as usize;
        let start = match query.after {
            Some(after) => std::ops::Bound::Excluded(after),
            None => std::ops::Bound::Unbounded,
        };
        let mut tasks = Vec::with_capacity(limit.min(256));
        let matching = self
            .tasks
            .range((start, std::ops::Bound::Unbounded))
            .map(|(_, record)| record)
            .filter(|record| query.state.is_none_or(|state| record.state == state))
            .filter(|record| {
                query
                    .tenant
                    .as_ref()
                    .is_none_or(|tenant| &record.tenant == tenant)
            })
            .filter(|record| {
                query
                    .agent_type
                    .as_ref()
                    .is_none_or(|agent_type| &record.agent_type == agent_type)
            });
        let mut page_bytes = 0usize;
        let mut more = false;
        for record in matching {
            if tasks.len() == limit {
                more = true;
                break;
            }
            let view = record.view();
            // An unencodable view cannot be forwarded either: count it as
            // full so it comes alone.
            let view_bytes = codec::encoded_len(&view).unwrap_or(PAGE_BYTE_BUDGET);
            if !tasks.is_empty() && page_bytes + view_bytes > PAGE_BYTE_BUDGET {
                more = true;
                break;
            }
            page_bytes += view_bytes;
            tasks.push(view);
        }
        let next_after = if more {
            tasks.last().map(|view| view.id)
        } else {
            None
        };
        TaskPage { tasks, next_after }
    }

    /// Counts by state of the tasks the book holds now.
    pub fn counts(&self) -> TaskCounts {
        self.counts
    }

    /// Counts by state of every task the book accepted, including finished
    /// tasks already forgotten under the retention limit.
    pub fn totals(&self) -> TaskCounts {
        let mut totals = self.counts;
        for state in TaskState::ALL {
            *totals.get_mut(state) += self.forgotten.get(state);
        }
        totals
    }

    /// Pending tasks of one type.
    pub fn queue_depth(&self, agent_type: &AgentType) -> u64 {
        self.queues
            .get(agent_type)
            .map_or(0, |queue| queue.len() as u64)
    }

    /// The configured agent types.
    pub fn agent_types(&self) -> impl Iterator<Item = &AgentType> {
        self.agent_types.keys()
    }

    /// Pending tasks of one type, by tenant with waiting work.
    pub fn queue_depth_by_tenant(
        &self,
        agent_type: &AgentType,
    ) -> impl Iterator<Item = (&herd_protocol::Tenant, usize)> {
        self.queues
            .get(agent_type)
            .into_iter()
            .flat_map(|queue| queue.len_by_tenant())
    }

    /// Tasks of `agent_type` running on `member`.
    pub fn running_on(&self, member: &MemberId, agent_type: &AgentType) -> u32 {
        self.load
            .get(member)
            .and_then(|load| load.by_type.get(agent_type))
            .copied()
            .unwrap_or(0)
    }

    /// Tasks of any type running on `member`.
    pub fn running_total_on(&self, member: &MemberId) -> u32 {
        self.load
            .get(member)
            .map_or(0, |load| load.tasks.len() as u32)
    }

    /// When the earliest scheduled retry becomes due.
    pub fn next_retry_due(&self) -> Option<UnixMillis> {
        self.retries.first().map(|(due, _)| *due)
    }

    /// Creation time of the oldest pending task.
    pub fn oldest_pending_since(&self) -> Option<UnixMillis> {
        // Ids are time-ordered, so the first pending record is the oldest.
        self.tasks
            .values()
            .find(|record| record.state == TaskState::Pending)
            .map(|record| record.created_at)
    }

    /// Nodes with running attempts.
    pub fn members_with_work(&self) -> impl Iterator<Item = &MemberId> {
        self.load
            .iter()
            .filter(|(_, load)| !load.tasks.is_empty())
            .map(|(member, _)| member)
    }
}
