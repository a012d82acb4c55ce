//! `herd bench scaling`: how long one scaling decision takes, and how soon
//! the cluster reacts to a change of load.
//!
//! - **Decision time**: the orchestrator's whole scaling step (demand
//!   measurement, rebalancing, autoscaling, spreading slots over nodes, the
//!   slot allocation and the decision record with every slot listed) for
//!   1,000 worker slots on 10 nodes and the six agent types of seed 004,
//!   under load that shifts between types every step.
//! - **Reaction time**: a three-node cluster of real processes in
//!   `production` mode (1 s interval) sits idle; a burst of tasks of one type
//!   arrives; the time from the submission to the first recorded decision
//!   that moves that type's weight or grows the pool. The load arrives at a
//!   random moment of the interval, so the median is about half an interval
//!   and the maximum about one.
//!
//! Figures are printed, never asserted.

use std::time::{Duration, Instant};

use herd_actors::bench::SEED_AGENT_TYPES as SIX_TYPES;
use herd_protocol::messages::scaling::DecisionType;
use herd_protocol::{AgentType, UnixMillis};
use serde_json::json;

use crate::bench_failover::{Phase, phase};
use crate::local_cluster::{LocalCluster, NodeSpec};

/// What `herd bench scaling` measures, for the table's title.
pub const TITLE: &str = "herd bench scaling: scaling step in-process (1000 slots on 10 nodes × 6 types); reaction on three real processes, production mode";

/// Runs both measurements.
pub async fn run(rounds: usize) -> anyhow::Result<Vec<Phase>> {
    let mut phases = decision_time(rounds.max(1) * 200);
    phases.push(reaction_time(rounds).await?);
    Ok(phases)
}

/// Times the full scaling step for 1,000 slots × 6 types.
fn decision_time(samples: usize) -> Vec<Phase> {
    let times = herd_actors::bench::scaling_step_times(samples);
    vec![
        phase(
            "decide only (demand, rebalance, autoscale, spread), 1000 slots × 6 types",
            times.decide,
        ),
        phase(
            "full step incl. allocation + decision record listing 1000 slots",
            times.full_step,
        ),
    ]
}

/// Times load change → first reacting decision on a real cluster.
async fn reaction_time(rounds: usize) -> anyhow::Result<Phase> {
    let dir = crate::local_cluster::temp_dir("bench-scaling")?;
    let mut config = String::from(
        "[scaling]\nmode = \"production\"\nmin_workers = 6\nmax_workers = 60\nstabilization_s = 600\n",
    );
    for name in SIX_TYPES {
        config.push_str(&format!("[agents.{name}]\nhandler = \"sleep\"\n"));
    }
    let path = dir.path().join("herd.toml");
    std::fs::write(&path, config)?;
    let specs = NodeSpec::three_nodes(4)
        .into_iter()
        .map(|spec| NodeSpec {
            config: Some(path.clone()),
            ..spec
        })
        .collect();
    let mut cluster = LocalCluster::start(specs, Duration::from_secs(30)).await?;
    let api = cluster.api(0);
    let mut samples = Vec::new();
    let result: anyhow::Result<()> = async {
        for round in 0..rounds {
            let loaded = AgentType::new(SIX_TYPES[round % SIX_TYPES.len()]);
            // Idle first: nothing queued, weights settled.
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let status = api.cluster().await?;
                let busy = status.tasks.pending + status.tasks.running;
                let last = api.scaling_decisions(1).await?;
                let settled = last
                    .first()
                    .is_none_or(|d| d.decision_type == DecisionType::Maintain);
                if busy == 0 && settled {
                    break;
                }
                anyhow::ensure!(Instant::now() < deadline, "the cluster did not settle");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            // Settling is noticed just after a tick; a random offset makes
            // the load arrive anywhere in the interval, as real load does.
            tokio::time::sleep(Duration::from_millis(rand::random_range(0..1000))).await;
            let tasks: Vec<_> = (0..200)
                .map(|_| json!({ "agent_type": loaded.as_str(), "payload": { "ms": 100 } }))
                .collect();
            let submitted = UnixMillis::now();
            api.submit_batch(&tasks).await?;
            let deadline = Instant::now() + Duration::from_secs(10);
            let reacted = loop {
                let decisions = api.scaling_decisions(10).await?;
                let first = decisions.iter().rev().find(|d| {
                    d.timestamp >= submitted
                        && (d
                            .agent_weight_adjustments
                            .get(&loaded)
                            .is_some_and(|a| a.new_weight > a.previous_weight)
                            || d.decision_type == DecisionType::ScaleUp)
                });
                if let Some(decision) = first {
                    break decision.timestamp;
                }
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "no decision reacted to the load within 10 s"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            };
            samples.push(reacted.since(submitted));
        }
        Ok(())
    }
    .await;
    cluster.stop().await;
    result?;
    Ok(phase(
        "load change → first reacting decision (1 s interval)",
        samples,
    ))
}
