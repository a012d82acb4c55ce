//! Scaling decisions and the health report, in the JSON shapes of the
//! deployment spec (seed 004, "Outputs").

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::AgentType;
use crate::time::UnixMillis;

/// What a scaling step decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionType {
    /// More worker slots.
    ScaleUp,
    /// Fewer worker slots.
    ScaleDown,
    /// Same slots, different weights.
    Rebalance,
    /// Nothing changed.
    Maintain,
}

impl DecisionType {
    /// The name used in JSON and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionType::ScaleUp => "scale_up",
            DecisionType::ScaleDown => "scale_down",
            DecisionType::Rebalance => "rebalance",
            DecisionType::Maintain => "maintain",
        }
    }
}

/// How one agent type's weight changed, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WeightAdjustment {
    /// Before.
    pub previous_weight: f64,
    /// After.
    pub new_weight: f64,
    /// Why, for a person.
    pub reason: String,
}

/// One worker slot in a decision's resource allocation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SlotAllocation {
    /// The agent type whose quota the slot counts toward.
    pub assigned_agent: AgentType,
    /// Memory budget per worker.
    pub memory_gb: f64,
    /// CPU budget per worker.
    pub cpu_cores: f64,
}

/// One scaling step (seed 004's ScalingDecision).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScalingDecision {
    /// When it was made.
    pub timestamp: UnixMillis,
    /// What it decided.
    pub decision_type: DecisionType,
    /// Slots before.
    pub current_workers: u32,
    /// Slots after.
    pub target_workers: u32,
    /// Weight changes by agent type (empty when weights held).
    pub agent_weight_adjustments: BTreeMap<AgentType, WeightAdjustment>,
    /// Every slot (`node/wN`) and what it is for.
    pub resource_allocation: BTreeMap<String, SlotAllocation>,
}

/// Overall state in the health report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverallHealth {
    /// All good.
    Healthy,
    /// Working, with reduced capacity or growing backlog.
    Degraded,
    /// Not making progress.
    Critical,
}

/// Worker pool part of the health report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkerPoolHealth {
    /// Slots in the cluster.
    pub total_workers: u32,
    /// Slots on nodes that are up and not draining.
    pub healthy_workers: u32,
    /// Busy slots as a percentage of all slots.
    pub utilization_percentage: f64,
}

/// Queue part of the health report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QueueHealth {
    /// Tasks waiting for a worker or a retry.
    pub total_pending_tasks: u64,
    /// Age of the oldest pending task.
    pub oldest_task_age_seconds: u64,
    /// The agent type whose backlog would take longest to drain, if any.
    pub bottleneck_agent: Option<AgentType>,
}

/// Resource part of the health report (averages over worker nodes).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResourceUtilization {
    /// CPU use of the herd processes, percent of their nodes' cores.
    pub cpu_percentage: f64,
    /// Memory use of the herd processes, percent of their nodes' memory.
    pub memory_percentage: f64,
    /// Running LLM-calling tasks, percent of `max_concurrent_llm_calls`.
    pub llm_api_usage_percentage: f64,
}

/// Seed 004's SystemHealthReport.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SystemHealthReport {
    /// When it was made.
    pub timestamp: UnixMillis,
    /// The verdict.
    pub overall_health: OverallHealth,
    /// Slots.
    pub worker_pool_health: WorkerPoolHealth,
    /// Backlog.
    pub queue_health: QueueHealth,
    /// Resources.
    pub resource_utilization: ResourceUtilization,
}

/// A runtime change to one agent type (`PUT /v1/agents/{type}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AgentUpdate {
    /// New weight (0.0–1.0).
    pub weight: Option<f64>,
    /// Keep the rebalancer from moving this weight.
    pub pinned: Option<bool>,
}

/// A runtime change to the pool bounds (`PUT /v1/scaling`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ScalingUpdate {
    /// New minimum slots.
    pub min_workers: Option<u32>,
    /// New maximum slots.
    pub max_workers: Option<u32>,
    /// New scale-up utilization threshold.
    pub scale_up_threshold: Option<f64>,
    /// New scale-down utilization threshold.
    pub scale_down_threshold: Option<f64>,
}

/// Why an operator's agent or scaling update was refused; nothing changed.
/// Each message says what to send instead.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, thiserror::Error)]
pub enum UpdateRejection {
    /// `PUT /v1/agents/{type}` named a type the cluster does not run.
    #[error("unknown agent type {agent_type:?}; known: {}", known.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", "))]
    UnknownAgentType {
        /// The type asked for.
        agent_type: AgentType,
        /// The types the cluster runs.
        known: Vec<AgentType>,
    },
    /// A value is outside its range.
    #[error("{field} is {value}; give {allowed}")]
    OutOfRange {
        /// The field.
        field: String,
        /// The value sent.
        value: String,
        /// What is allowed.
        allowed: String,
    },
    /// A weight so large that the other types would fall below their floor.
    #[error(
        "weight {weight} leaves {room:.3} for the other types, below their floor of {floor:.3} each (pinned types hold {pinned:.3}); lower it or unpin a type with {{\"pinned\": false}}"
    )]
    NoRoomForOthers {
        /// The weight asked for (raised to the floor).
        weight: f64,
        /// What it leaves for the unpinned others.
        room: f64,
        /// The least weight of a type.
        floor: f64,
        /// Weight held by other pinned types.
        pinned: f64,
    },
    /// The update would put the minimum above the maximum.
    #[error("min_workers ({min}) is above max_workers ({max}); keep min ≤ max")]
    MinAboveMax {
        /// Resulting minimum.
        min: u32,
        /// Resulting maximum.
        max: u32,
    },
    /// The update would put the scale-up threshold at or below the
    /// scale-down threshold.
    #[error("scale_up_threshold ({up}) must be above scale_down_threshold ({down})")]
    ThresholdsCrossed {
        /// Resulting scale-up threshold.
        up: f64,
        /// Resulting scale-down threshold.
        down: f64,
    },
}
