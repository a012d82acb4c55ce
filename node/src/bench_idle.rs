//! `herd bench idle`: what an idle cluster costs each node.
//!
//! For each cluster size in turn (3, 10 and 30 nodes by default) the bench
//! starts that many `herd node` processes on loopback (n1 orchestrator,
//! worker and monitor, the rest workers, one slot each), waits until the
//! orchestrator sees them all up, lets them settle, then reads every node
//! process's CPU time (`utime + stime` in `/proc/PID/stat`) before and after
//! an idle interval. With nothing submitted, what remains is the cost of
//! staying a cluster: membership heartbeats, failure detection, ractor_cluster's
//! session pings, the pools' and the orchestrator's timers.
//!
//! Figures are printed, never asserted. Linux only (it reads `/proc`).

use std::time::{Duration, Instant};

use herd_protocol::messages::orchestrator::MemberState;

use crate::local_cluster::{LocalCluster, NodeSpec};

/// What `herd bench idle` measures, for the table's title.
pub const TITLE: &str = "herd bench idle: CPU of each idle `herd node` process (% of one core), n1 orchestrator, the rest workers, 1 slot each";

/// The idle cost of one cluster size.
#[derive(Clone, Debug, serde::Serialize)]
pub struct IdleCost {
    /// Nodes in the cluster.
    pub nodes: usize,
    /// Seconds measured.
    pub seconds: f64,
    /// Median node's CPU, % of one core.
    pub median_percent: f64,
    /// Busiest node's CPU, % of one core.
    pub max_percent: f64,
    /// The busiest node's name.
    pub max_node: String,
    /// All nodes together, % of one core.
    pub total_percent: f64,
}

/// How long a cluster is left alone after it formed, before measuring.
const SETTLE: Duration = Duration::from_secs(5);

/// Measures each size in `sizes` for `idle` seconds of idleness.
pub async fn run(sizes: &[usize], idle: Duration) -> anyhow::Result<Vec<IdleCost>> {
    let mut costs = Vec::new();
    for &size in sizes {
        costs.push(measure(size.max(2), idle).await?);
    }
    Ok(costs)
}

async fn measure(size: usize, idle: Duration) -> anyhow::Result<IdleCost> {
    let specs: Vec<NodeSpec> = (1..=size)
        .map(|i| {
            let roles = if i == 1 {
                "orchestrator,worker,monitor"
            } else {
                "worker"
            };
            NodeSpec::new(&format!("n{i}"), roles, 1)
        })
        .collect();
    // Formation of 30 nodes on two cores takes a while; the bench waits.
    let formation = Duration::from_secs(30 + 4 * size as u64);
    let mut cluster = LocalCluster::start(specs, formation).await?;
    tokio::time::sleep(SETTLE).await;
    let pids: Vec<(String, u32)> = cluster
        .nodes
        .iter()
        .filter_map(|node| node.pid().map(|pid| (node.spec.name.clone(), pid)))
        .collect();
    anyhow::ensure!(
        pids.len() == size,
        "only {} of {size} nodes run",
        pids.len()
    );
    let before = cpu_ticks(&pids)?;
    let started = Instant::now();
    tokio::time::sleep(idle).await;
    let after = cpu_ticks(&pids)?;
    let seconds = started.elapsed().as_secs_f64();
    // Still one cluster: a node that fell out would make the figure wrong.
    let status = cluster.api("n1").cluster().await?;
    let up = status
        .nodes
        .iter()
        .filter(|node| node.state == MemberState::Up)
        .count();
    cluster.stop().await;
    anyhow::ensure!(up == size, "only {up} of {size} nodes stayed up while idle");
    let ticks_per_second = clock_ticks_per_second();
    let mut percents: Vec<(f64, &str)> = before
        .iter()
        .zip(&after)
        .zip(&pids)
        .map(|((b, a), (name, _))| {
            let cpu_seconds = a.saturating_sub(*b) as f64 / ticks_per_second;
            (100.0 * cpu_seconds / seconds, name.as_str())
        })
        .collect();
    percents.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (max_percent, max_node) = percents.last().copied().unwrap_or((0.0, "-"));
    Ok(IdleCost {
        nodes: size,
        seconds,
        median_percent: percents[percents.len() / 2].0,
        max_percent,
        max_node: max_node.to_string(),
        total_percent: percents.iter().map(|(p, _)| p).sum(),
    })
}

/// `utime + stime` of each process, in clock ticks.
fn cpu_ticks(pids: &[(String, u32)]) -> anyhow::Result<Vec<u64>> {
    pids.iter()
        .map(|(name, pid)| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|error| {
                anyhow::anyhow!("cannot read {name}'s /proc/{pid}/stat: {error}")
            })?;
            process_cpu_ticks(&stat)
                .ok_or_else(|| anyhow::anyhow!("cannot parse {name}'s /proc/{pid}/stat: {stat}"))
        })
        .collect()
}

/// `utime + stime` from the text of `/proc/PID/stat`. The command name (the
/// second field) is in parentheses and may hold spaces, so fields are
/// counted after its closing one: utime and stime are the 14th and 15th
/// fields, the 12th and 13th after it.
fn process_cpu_ticks(stat: &str) -> Option<u64> {
    let (_, after_name) = stat.rsplit_once(')')?;
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// Prints the figures as a table.
pub fn print(costs: &[IdleCost]) {
    println!("{TITLE}");
    println!(
        "{:>6} {:>10} {:>12} {:>16} {:>14}",
        "nodes", "seconds", "median %", "max % (node)", "all nodes %"
    );
    for cost in costs {
        println!(
            "{:>6} {:>10.1} {:>12.2} {:>9.2} ({:>4}) {:>14.1}",
            cost.nodes,
            cost.seconds,
            cost.median_percent,
            cost.max_percent,
            cost.max_node,
            cost.total_percent
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_read_after_the_command_name_even_with_spaces_in_it() {
        let stat = "4242 (herd node (x)) S 1 4242 4242 0 -1 4194560 1234 0 0 0 170 30 0 0 20 0 3 0 100 0 0";
        assert_eq!(process_cpu_ticks(stat), Some(200));
        assert_eq!(process_cpu_ticks("garbage"), None);
    }
}
