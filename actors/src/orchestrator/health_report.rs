//! Seed 004's SystemHealthReport, from what the orchestrator knows.

use std::collections::BTreeMap;
use std::time::Instant;

use herd_protocol::AgentType;
use herd_protocol::UnixMillis;
use herd_protocol::messages::orchestrator::MemberState;
use herd_protocol::messages::scaling::{
    OverallHealth, QueueHealth, ResourceUtilization, SystemHealthReport, WorkerPoolHealth,
};

use super::scaling_control::PoolSnapshot;
use super::state::OrchestratorState;

/// A pending task older than this degrades the cluster.
pub const STALE_PENDING_SECONDS: u64 = 60;

/// Everything the report is made from.
#[derive(Clone, Debug, PartialEq)]
pub struct HealthInput {
    /// Slots on all registered pools.
    pub total_slots: u32,
    /// Slots on pools that are up and not draining.
    pub healthy_slots: u32,
    /// Slots running an attempt.
    pub busy: u32,
    /// Tasks waiting.
    pub pending: u64,
    /// When the oldest waiting task was submitted.
    pub oldest_pending_since: Option<UnixMillis>,
    /// The type whose backlog takes longest to drain.
    pub bottleneck: Option<AgentType>,
    /// Peers suspected or declared down.
    pub nodes_unhealthy: usize,
    /// Pools draining.
    pub pools_draining: usize,
    /// Agent types with an open circuit.
    pub circuits_open: usize,
    /// Utilization (busy + queued over slots) above which the pool grows.
    pub scale_up_threshold: f64,
    /// The pool is as large as it may get.
    pub at_max: bool,
    /// Mean CPU use of herd processes, percent.
    pub cpu_percent: f64,
    /// Mean memory use, percent.
    pub memory_percent: f64,
    /// LLM-calling attempts running.
    pub llm_running: u32,
    /// LLM-calling attempts the serving nodes allow together.
    pub llm_capacity: u32,
    /// The largest share (0.0–1.0) of any LLM provider's budget in use, when
    /// providers are configured; it then is the LLM API usage.
    pub provider_budget_in_use: Option<f64>,
    /// Now.
    pub now: UnixMillis,
}

/// Builds the report. Critical: work waits and no slot can take it.
/// Degraded: a node is suspect or down, a pool drains, a circuit is open, a
/// task has waited over a minute, or the pool is saturated at its maximum.
pub fn health_report(input: &HealthInput) -> SystemHealthReport {
    let oldest = input
        .oldest_pending_since
        .map_or(0, |since| input.now.since(since).as_secs());
    let utilization = if input.healthy_slots == 0 {
        0.0
    } else {
        f64::from(input.busy) / f64::from(input.healthy_slots)
    };
    let pressure = if input.healthy_slots == 0 {
        0.0
    } else {
        (f64::from(input.busy) + input.pending as f64) / f64::from(input.healthy_slots)
    };
    let overall = if input.pending > 0 && input.healthy_slots == 0 {
        OverallHealth::Critical
    } else if input.nodes_unhealthy > 0
        || input.pools_draining > 0
        || input.circuits_open > 0
        || oldest > STALE_PENDING_SECONDS
        || (input.at_max && pressure > input.scale_up_threshold)
    {
        OverallHealth::Degraded
    } else {
        OverallHealth::Healthy
    };
    SystemHealthReport {
        timestamp: input.now,
        overall_health: overall,
        worker_pool_health: WorkerPoolHealth {
            total_workers: input.total_slots,
            healthy_workers: input.healthy_slots,
            utilization_percentage: round1(utilization * 100.0),
        },
        queue_health: QueueHealth {
            total_pending_tasks: input.pending,
            oldest_task_age_seconds: oldest,
            bottleneck_agent: input.bottleneck.clone(),
        },
        resource_utilization: ResourceUtilization {
            cpu_percentage: round1(input.cpu_percent),
            memory_percentage: round1(input.memory_percent),
            llm_api_usage_percentage: match input.provider_budget_in_use {
                Some(in_use) => round1(in_use * 100.0),
                None if input.llm_capacity == 0 => 0.0,
                None => {
                    round1(f64::from(input.llm_running) / f64::from(input.llm_capacity) * 100.0)
                }
            },
        },
    }
}

fn round1(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

impl OrchestratorState {
    /// Gathers the report's inputs from the book, pools, circuits and
    /// scaling state.
    pub(super) fn health_report(&mut self) -> herd_protocol::messages::scaling::SystemHealthReport {
        let pools = self.pool_snapshots();
        let view = self.view.borrow().clone();
        let now = Instant::now();
        let serving: Vec<&PoolSnapshot> = pools.iter().filter(|p| p.serving).collect();
        let healthy_slots: u32 = serving.iter().map(|p| p.slots).sum();
        let llm_running: u32 = self
            .llm_types
            .iter()
            .flat_map(|t| pools.iter().map(|p| self.book.running_on(&p.member, t)))
            .sum();
        let settings = self.scaling.settings();
        let ceiling = settings
            .max_workers
            .min(serving.iter().map(|p| p.capacity).sum());
        let (cpu_percent, memory_percent) = self.scaling.mean_resources();
        let circuits_open = self
            .agent_types
            .keys()
            .filter(|t| {
                self.circuits.status(t, now)
                    != herd_protocol::messages::orchestrator::CircuitStatus::Closed
            })
            .count()
            + self.providers.circuits_open(now);
        let queued: BTreeMap<AgentType, crate::scaling::TypeDemand> = self
            .agent_types
            .keys()
            .map(|t| {
                let mut demand = self
                    .scaling
                    .demand()
                    .get(t)
                    .cloned()
                    .unwrap_or_else(crate::scaling::TypeDemand::idle);
                demand.queued = self.book.queue_depth(t);
                (t.clone(), demand)
            })
            .collect();
        health_report(&HealthInput {
            total_slots: pools.iter().map(|p| p.slots).sum(),
            healthy_slots,
            busy: serving.iter().map(|p| p.busy).sum(),
            pending: {
                // Attempts waiting in pools' backlogs are pending work too.
                let counts = self.book.counts();
                counts.pending
                    + counts.failed
                    + serving.iter().map(|p| u64::from(p.waiting)).sum::<u64>()
            },
            oldest_pending_since: self.book.oldest_pending_since(),
            bottleneck: crate::scaling::rebalance::bottleneck(&queued),
            nodes_unhealthy: view
                .peers
                .values()
                .filter(|p| matches!(p.state, MemberState::Suspect | MemberState::Down))
                .count(),
            pools_draining: pools.iter().filter(|p| !p.serving).count(),
            circuits_open,
            scale_up_threshold: settings.scale_up_threshold,
            at_max: settings.autoscale && healthy_slots >= ceiling,
            cpu_percent,
            memory_percent,
            llm_running,
            llm_capacity: settings.max_concurrent_llm_calls * serving.len() as u32,
            provider_budget_in_use: self.providers.busiest(now),
            now: UnixMillis::now(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calm() -> HealthInput {
        HealthInput {
            total_slots: 12,
            healthy_slots: 12,
            busy: 3,
            pending: 0,
            oldest_pending_since: None,
            bottleneck: None,
            nodes_unhealthy: 0,
            pools_draining: 0,
            circuits_open: 0,
            scale_up_threshold: 0.75,
            at_max: false,
            cpu_percent: 12.34,
            memory_percent: 1.0,
            llm_running: 2,
            llm_capacity: 8,
            provider_budget_in_use: None,
            now: UnixMillis(1_000_000),
        }
    }

    #[test]
    fn verdicts() {
        let report = health_report(&calm());
        assert_eq!(report.overall_health, OverallHealth::Healthy);
        assert_eq!(report.worker_pool_health.utilization_percentage, 25.0);
        assert_eq!(report.resource_utilization.llm_api_usage_percentage, 25.0);
        assert_eq!(report.resource_utilization.cpu_percentage, 12.3);
        // With providers configured, LLM API usage is their budget in use.
        let budgeted = HealthInput {
            provider_budget_in_use: Some(0.9),
            ..calm()
        };
        assert_eq!(
            health_report(&budgeted)
                .resource_utilization
                .llm_api_usage_percentage,
            90.0
        );

        let stuck = HealthInput {
            healthy_slots: 0,
            busy: 0,
            pending: 5,
            ..calm()
        };
        assert_eq!(
            health_report(&stuck).overall_health,
            OverallHealth::Critical
        );

        let down = HealthInput {
            nodes_unhealthy: 1,
            ..calm()
        };
        assert_eq!(health_report(&down).overall_health, OverallHealth::Degraded);

        let old = HealthInput {
            pending: 1,
            oldest_pending_since: Some(UnixMillis(1_000_000 - 61_000)),
            ..calm()
        };
        let report = health_report(&old);
        assert_eq!(report.overall_health, OverallHealth::Degraded);
        assert_eq!(report.queue_health.oldest_task_age_seconds, 61);

        let saturated = HealthInput {
            busy: 12,
            pending: 40,
            at_max: true,
            ..calm()
        };
        assert_eq!(
            health_report(&saturated).overall_health,
            OverallHealth::Degraded
        );
    }
}
