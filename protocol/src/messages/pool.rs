//! What the orchestrator says to worker pools.

use serde::{Deserialize, Serialize};

use crate::ids::{AssignmentEpoch, MemberId, TaskId};
use crate::mailbox::WireError;
use crate::task::TaskAssignment;

/// One-way messages to a worker pool.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum PoolCast {
    /// The orchestrator accepted the pool's registration.
    Welcome {
        /// The orchestrator's node.
        orchestrator: MemberId,
    },
    /// Run these attempts; the orchestrator never sends more than the pool
    /// has idle slots plus its credit (up to `credit − 1` per slot, the
    /// credit adapting between `scaling.slot_credit` and
    /// `scaling.max_slot_credit`) for attempts that wait in its backlog.
    Assign {
        /// The orchestrator's node (assignments from any other are refused).
        orchestrator: MemberId,
        /// The attempts.
        assignments: Vec<TaskAssignment>,
    },
    /// Reports up to this sequence number are durable: forget them.
    ReportsAck {
        /// Highest acknowledged sequence number.
        through: u64,
    },
    /// Take no new work, let running attempts finish for up to `grace_ms`,
    /// hand back the rest, then stop the node.
    Drain {
        /// The grace period in milliseconds.
        grace_ms: u64,
    },
    /// Run this many worker slots: new ones start at once, surplus ones
    /// retire when idle (a running task is never interrupted).
    Resize {
        /// The new slot count.
        workers: u32,
    },
    /// Stop this attempt if it is still running (task cancelled).
    Cancel {
        /// The task.
        task_id: TaskId,
        /// The attempt to stop.
        epoch: AssignmentEpoch,
    },
}

/// Requests to a worker pool.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum PoolRequest {
    /// Are you responsive? A monitor's probe: a pool that does not answer
    /// within the monitor's deadline several times in a row is stuck.
    Ping,
}

/// Replies of a worker pool.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum PoolReply {
    /// The answer to [`PoolRequest::Ping`].
    Pong {
        /// Slots in service.
        slots: u32,
        /// Slots running a task now.
        busy: u32,
    },
    /// The request failed on the wire.
    Wire(WireError),
}

impl From<WireError> for PoolReply {
    fn from(error: WireError) -> Self {
        PoolReply::Wire(error)
    }
}
