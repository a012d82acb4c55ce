//! Operators' run-time changes to the scaling loop, as the book records them.
//!
//! `PUT /v1/agents/{type}` and `PUT /v1/scaling` change the leader's
//! scaling loop; each successful one is recorded as
//! [`super::Command::ScalingOverrides`] carrying the whole of what
//! operators have changed so far — a state, not a delta — so applying the
//! latest one (replaying a journal, applying the log, installing a
//! snapshot) gives the same result however many came before it. An
//! orchestrator that starts from a book (a new leader, a replayed journal)
//! takes its loop's pinned weights and pool bounds from here.
//!
//! What the loop decides by itself — weights moved by the rebalancer, the
//! pool size the autoscaler picks — is not recorded: it is derived from the
//! load every interval, and a new orchestrator derives it again.
//!
//! Size: at most one weight per configured agent type in each map
//! (`PUT /v1/agents/{type}` refuses types that are not configured) and four
//! numbers of pool bounds, so an entry is as small as the configuration.

use std::collections::{BTreeMap, BTreeSet};

use herd_protocol::AgentType;
use serde::{Deserialize, Serialize};

/// The operators' changes in force. `None` parts were never changed at run
/// time and follow the configuration of whichever orchestrator runs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ScalingOverrides {
    /// Weights and pins, once an operator changed any.
    pub weights: Option<WeightOverrides>,
    /// Pool bounds and thresholds, once an operator changed any.
    pub pool_bounds: Option<PoolBounds>,
}

/// Weights as operators left them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WeightOverrides {
    /// The weights in force right after the latest agent update: the type
    /// it set at its new weight, the others as they were scaled to make
    /// room. (With the rebalancer on, its moves of unpinned types up to that
    /// update are in them; its later moves are not recorded.)
    pub weights: BTreeMap<AgentType, f64>,
    /// The pinned types: the rebalancer leaves their weight in `weights`
    /// alone.
    pub pinned: BTreeSet<AgentType>,
    /// The weights the rebalancer returns unpinned types toward when there
    /// is no load: the configured ones with every weight an operator set,
    /// normalized to sum to one.
    pub base: BTreeMap<AgentType, f64>,
}

/// Pool bounds and autoscaling thresholds as `PUT /v1/scaling` left them
/// (the same fields, already validated).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PoolBounds {
    /// Fewest slots in the cluster.
    pub min_workers: u32,
    /// Most slots in the cluster.
    pub max_workers: u32,
    /// Utilization above which the pool grows.
    pub scale_up_threshold: f64,
    /// Utilization below which the pool shrinks.
    pub scale_down_threshold: f64,
}

#[cfg(test)]
impl ScalingOverrides {
    /// Overrides of every kind, for tests of where they are kept: `echo`
    /// pinned at 0.8, `sleep` with the rest, bounds 2 to 40.
    pub(crate) fn example() -> ScalingOverrides {
        ScalingOverrides {
            weights: Some(WeightOverrides {
                weights: [("echo", 0.8), ("sleep", 0.2)]
                    .map(|(t, w)| (AgentType::new(t), w))
                    .into(),
                pinned: [AgentType::new("echo")].into(),
                base: [("echo", 0.6), ("sleep", 0.4)]
                    .map(|(t, w)| (AgentType::new(t), w))
                    .into(),
            }),
            pool_bounds: Some(PoolBounds {
                min_workers: 2,
                max_workers: 40,
                scale_up_threshold: 0.9,
                scale_down_threshold: 0.1,
            }),
        }
    }
}
