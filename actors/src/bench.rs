//! Measurements of internals for `herd bench`. Not an API for programs that
//! embed herd: it exists so that the bench harness in the `herd` binary can
//! time parts of the orchestrator that are not public.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use herd_config::{DeploymentMode, ScalingSettings};
use herd_protocol::{AgentType, Incarnation, MemberId, NodeName};

use crate::orchestrator::{PoolSnapshot, ScalingControl};
use crate::scheduling::{PoolCapacity, allocate};

/// The agent types of seed 004's co-scientist.
pub const SEED_AGENT_TYPES: [&str; 6] = [
    "generation",
    "reflection",
    "ranking",
    "evolution",
    "proximity",
    "meta_review",
];

/// Durations of each measured scaling step.
#[derive(Debug, Clone)]
pub struct ScalingStepTimes {
    /// The decision alone: demand, rebalancing, autoscaling, spreading.
    pub decide: Vec<Duration>,
    /// The whole step, including the slot allocation and the decision record
    /// listing every slot.
    pub full_step: Vec<Duration>,
}

/// Times the orchestrator's scaling step `samples` times for 1,000 worker
/// slots on 10 nodes and the six agent types of seed 004, under load that
/// moves from type to type.
pub fn scaling_step_times(samples: usize) -> ScalingStepTimes {
    let types: Vec<AgentType> = SEED_AGENT_TYPES.iter().map(|t| AgentType::new(t)).collect();
    let configured: BTreeMap<AgentType, f64> = types
        .iter()
        .zip([0.30, 0.20, 0.20, 0.15, 0.10, 0.05])
        .map(|(t, w)| (t.clone(), w))
        .collect();
    let mut settings = ScalingSettings::preset(DeploymentMode::Production);
    settings.max_workers = 1000;
    settings.min_workers = 100;
    let mut control = ScalingControl::new(settings, &configured);
    let mut weights = control.initial_weights();
    let members: Vec<MemberId> = (0..10)
        .map(|i| MemberId {
            name: NodeName::parse(&format!("node-{i}")).expect("valid name"),
            incarnation: Incarnation(1),
        })
        .collect();
    let mut slots: BTreeMap<MemberId, u32> = members.iter().map(|m| (m.clone(), 100)).collect();
    let mut plan_times = Vec::with_capacity(samples);
    let mut step_times = Vec::with_capacity(samples);
    for step in 0..samples {
        // Load moves from type to type; about half the pool is busy.
        let hot = step / 20 % types.len();
        let per_type: Vec<(AgentType, u64, u32)> = types
            .iter()
            .enumerate()
            .map(|(i, t)| {
                control.arrived(t, if i == hot { 400 } else { 20 });
                for _ in 0..5 {
                    control.ended(
                        t,
                        i != 3 || step % 2 == 0,
                        Duration::from_millis(200),
                        Some(0.8),
                    );
                }
                (
                    t.clone(),
                    if i == hot { 2_000 } else { 10 },
                    if i == hot { 400 } else { 20 },
                )
            })
            .collect();
        let pools: Vec<PoolSnapshot> = members
            .iter()
            .map(|m| PoolSnapshot {
                member: m.clone(),
                slots: slots[m],
                capacity: 100,
                busy: slots[m] / 2,
                waiting: 0,
                serving: true,
            })
            .collect();
        let started = Instant::now();
        let plan = control.plan(&weights, &per_type, &pools);
        plan_times.push(started.elapsed());
        if let Some(new) = &plan.weights {
            weights = new.clone();
        }
        for (member, n) in &plan.resize {
            slots.insert(member.clone(), *n);
        }
        let capacities: Vec<PoolCapacity> = members
            .iter()
            .map(|m| PoolCapacity {
                member: m.clone(),
                slots: slots[m],
                supports: types.iter().cloned().collect(),
            })
            .collect();
        let allocation = allocate(&capacities, &weights);
        control.record(plan, &allocation, &pools);
        step_times.push(started.elapsed());
    }
    ScalingStepTimes {
        decide: plan_times,
        full_step: step_times,
    }
}
