//! `herd bench failover`: how fast herd notices failures and recovers.
//!
//! The bench process embeds node n1 (orchestrator, one worker slot running a
//! `chaos` handler) and starts n2 and n3 as `herd node` processes. It
//! measures, with default settings, over several rounds:
//! - `kill -9` of n3 → every task it was running is re-queued, and → the
//!   first of those finishes elsewhere;
//! - `SIGSTOP` of n3 → n3 is declared down (then `SIGCONT` and rejoin);
//! - a handler panic → the replacement worker starts its next task.
//!
//! With `--replicas 3` it then measures leader rounds on a second cluster of
//! three raft replicas (see [`crate::bench_leader`]).
//!
//! Figures are printed, never asserted.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herd_actors::{HandlerError, HerdNode, NodeHandle, TaskHandler, TaskInput, TaskOutput};
use herd_config::Overrides;
use herd_protocol::messages::orchestrator::{MemberState, TaskQuery};
use herd_protocol::{JsonText, TaskSpec, TaskState};

use crate::local_cluster::{LocalCluster, NodeSpec, free_ports, random_cookie};

/// Median and maximum of one measured phase.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Phase {
    /// What was measured.
    pub name: String,
    /// Rounds measured.
    pub rounds: usize,
    /// Median, milliseconds.
    pub median_ms: f64,
    /// Worst round, milliseconds.
    pub max_ms: f64,
    /// Every round, in the order measured, milliseconds.
    pub rounds_ms: Vec<f64>,
    /// Anything about the rounds a reader of the figures must know.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Median and maximum of `samples`.
pub fn phase(name: &str, mut samples: Vec<Duration>) -> Phase {
    let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
    let rounds_ms = samples.iter().map(ms).collect();
    samples.sort();
    Phase {
        name: name.to_string(),
        rounds: samples.len(),
        median_ms: samples.get(samples.len() / 2).map_or(0.0, ms),
        max_ms: samples.last().map_or(0.0, ms),
        rounds_ms,
        note: None,
    }
}

/// Panics on payload `"boom"`; records when each other task starts.
struct Chaos {
    panicked_at: Arc<Mutex<Option<Instant>>>,
    started_at: Arc<Mutex<Vec<Instant>>>,
}

#[async_trait::async_trait]
impl TaskHandler for Chaos {
    async fn handle(&self, input: TaskInput) -> Result<TaskOutput, HandlerError> {
        if input.payload.as_str() == "\"boom\"" {
            *self.panicked_at.lock().expect("not poisoned") = Some(Instant::now());
            panic!("chaos handler panics on purpose");
        }
        self.started_at
            .lock()
            .expect("not poisoned")
            .push(Instant::now());
        Ok(TaskOutput::raw(input.payload))
    }
}

/// Runs every failover measurement for `rounds` rounds each; with
/// `replicas` 3, then the raft leader rounds (replicas journaling under
/// `data_dir`, if given).
pub async fn run(
    rounds: usize,
    replicas: usize,
    data_dir: Option<&std::path::Path>,
) -> anyhow::Result<Vec<Phase>> {
    anyhow::ensure!(
        matches!(replicas, 1 | 3),
        "--replicas {replicas}: give 1 (a single orchestrator) or 3 (also the raft leader rounds)"
    );
    let mut phases = single_orchestrator(rounds).await?;
    if replicas == 3 {
        phases.extend(crate::bench_leader::run(rounds, data_dir).await?);
    }
    Ok(phases)
}

/// The rounds of the single-orchestrator cluster (n1 embedded).
async fn single_orchestrator(rounds: usize) -> anyhow::Result<Vec<Phase>> {
    let cookie = random_cookie();
    let ports = free_ports(2);
    let seed = vec!["--seed".to_string(), format!("127.0.0.1:{}", ports[0])];
    let specs: Vec<NodeSpec> = ["n2", "n3"]
        .into_iter()
        .map(|name| NodeSpec {
            extra_args: seed.clone(),
            ..NodeSpec::new(name, "worker,monitor", 8)
        })
        .collect();
    let mut peers = LocalCluster::spawn(specs, &cookie)?;
    let overrides = Overrides {
        name: Some("n1".into()),
        cookie: Some(cookie),
        listen: Some(format!("127.0.0.1:{}", ports[0])),
        http: Some(format!("127.0.0.1:{}", ports[1])),
        workers: Some("1".into()),
        seeds: Some(peers.nodes.iter().map(|node| node.cluster_addr()).collect()),
        // These rounds measure worker loss and restarts under one
        // orchestrator; the raft leader rounds are `bench_leader`'s.
        replication: Some("single".into()),
        ..Overrides::default()
    };
    let config = herd_config::resolve(&overrides, &herd_config::Environment::default())?;
    let panicked_at = Arc::new(Mutex::new(None));
    let started_at = Arc::new(Mutex::new(Vec::new()));
    let chaos = Chaos {
        panicked_at: panicked_at.clone(),
        started_at: started_at.clone(),
    };
    let mut custom: BTreeMap<herd_protocol::AgentType, Arc<dyn TaskHandler>> = BTreeMap::new();
    custom.insert("chaos".into(), Arc::new(chaos));
    let mut config = config;
    config.agents.insert(
        "chaos".into(),
        herd_config::AgentConfig {
            weight: 0.1,
            handler: herd_config::HandlerConfig::Custom,
            timeout_s: None,
            max_attempts: Some(1),
            retry: None,
            circuit: None,
            llm: false,
        },
    );
    let node = HerdNode::start(config, custom).await?;
    let handle = node.handle();
    handle.wait_until_ready(Duration::from_secs(20)).await?;
    wait_for_up(&handle, 3).await?;

    let mut requeued = Vec::new();
    let mut first_finished = Vec::new();
    let mut detected = Vec::new();
    for _ in 0..rounds {
        let (requeue, finish) = kill_round(&handle, &mut peers).await?;
        requeued.push(requeue);
        first_finished.push(finish);
    }
    for _ in 0..rounds {
        detected.push(stop_round(&handle, &peers).await?);
    }
    let mut replaced = Vec::new();
    for _ in 0..rounds.clamp(1, 5) {
        replaced.push(panic_round(&handle, &panicked_at, &started_at).await?);
        // Stay under the restart intensity (5 per 10 s), past which restarts
        // are deliberately delayed.
        tokio::time::sleep(Duration::from_millis(2_100)).await;
    }
    node.shutdown().await;
    peers.stop().await;
    Ok(vec![
        phase("kill -9 → its tasks re-queued", requeued),
        phase(
            "kill -9 → first re-queued task finished (200 ms task)",
            first_finished,
        ),
        phase("SIGSTOP → declared down", detected),
        phase(
            "handler panic → replacement worker starts next task",
            replaced,
        ),
    ])
}

async fn wait_for_up(handle: &NodeHandle, count: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = handle.cluster().await?;
        if status
            .nodes
            .iter()
            .filter(|node| node.state == MemberState::Up && node.workers > 0)
            .count()
            >= count
        {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "only {:?} up", status.nodes);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn sleep_task(ms: u64) -> TaskSpec {
    TaskSpec::new(
        "sleep",
        JsonText::from_value(&serde_json::json!({ "ms": ms })).expect("json"),
    )
}

/// Kills n3 while it runs tasks; returns (all its tasks re-queued, first of them finished).
async fn kill_round(
    handle: &NodeHandle,
    peers: &mut LocalCluster,
) -> anyhow::Result<(Duration, Duration)> {
    // Fewer tasks than slots, so a re-queued task starts at once and its
    // finish time measures recovery, not queueing (each runs 200 ms).
    handle
        .submit_batch((0..8).map(|_| sleep_task(200)).collect())
        .await?;
    let on_n3 = loop {
        let page = handle
            .list(TaskQuery {
                state: Some(TaskState::Running),
                limit: 1000,
                ..TaskQuery::default()
            })
            .await?;
        let ids: Vec<_> = page
            .tasks
            .iter()
            .filter(|task| task.node.as_ref().is_some_and(|n| n.as_str() == "n3"))
            .map(|task| (task.id, task.attempts))
            .collect();
        if !ids.is_empty() {
            break ids;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let killed = Instant::now();
    peers.kill(1).await;
    let mut requeued = None;
    let mut finished = None;
    while finished.is_none() {
        let mut all_requeued = true;
        for (id, attempts) in &on_n3 {
            let view = handle
                .task(*id)
                .await?
                .ok_or_else(|| anyhow::anyhow!("task vanished"))?;
            let moved = view.state != TaskState::Running || view.attempts > *attempts;
            all_requeued &= moved;
            if view.state == TaskState::Succeeded && view.attempts > *attempts && finished.is_none()
            {
                finished = Some(killed.elapsed());
            }
        }
        if all_requeued && requeued.is_none() {
            requeued = Some(killed.elapsed());
        }
        anyhow::ensure!(
            killed.elapsed() < Duration::from_secs(60),
            "re-queue did not happen"
        );
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    peers.restart(1)?;
    wait_for_up(handle, 3).await?;
    drain_queue(handle).await?;
    Ok((
        requeued.expect("set before finished"),
        finished.expect("loop exit"),
    ))
}

/// Freezes n3; returns the time until it is declared down.
async fn stop_round(handle: &NodeHandle, peers: &LocalCluster) -> anyhow::Result<Duration> {
    let stopped = Instant::now();
    peers.signal(1, libc::SIGSTOP);
    loop {
        let view = handle.view();
        if view
            .peers
            .values()
            .any(|peer| peer.member.name.as_str() == "n3" && peer.state == MemberState::Down)
        {
            break;
        }
        anyhow::ensure!(
            stopped.elapsed() < Duration::from_secs(30),
            "n3 was never declared down"
        );
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
    let detected = stopped.elapsed();
    peers.signal(1, libc::SIGCONT);
    wait_for_up(handle, 3).await?;
    Ok(detected)
}

/// Crashes the single chaos worker; returns the time until the replacement
/// starts the next task.
async fn panic_round(
    handle: &NodeHandle,
    panicked_at: &Mutex<Option<Instant>>,
    started_at: &Mutex<Vec<Instant>>,
) -> anyhow::Result<Duration> {
    started_at.lock().expect("not poisoned").clear();
    let chaos =
        |payload: &str| TaskSpec::new("chaos", JsonText::parse(payload.to_string()).expect("json"));
    handle
        .submit_batch(vec![chaos("\"boom\""), chaos("\"next\"")])
        .await?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let panic = *panicked_at.lock().expect("not poisoned");
        let next = started_at.lock().expect("not poisoned").first().copied();
        if let (Some(panic), Some(next)) = (panic, next)
            && next > panic
        {
            *panicked_at.lock().expect("not poisoned") = None;
            return Ok(next - panic);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the replacement worker never started"
        );
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

async fn drain_queue(handle: &NodeHandle) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let tasks = handle.cluster().await?.tasks;
        if tasks.pending + tasks.running + tasks.failed == 0 {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "tasks did not finish: {tasks:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What `herd bench failover` measures, for the table's title.
pub const TITLE: &str = "herd bench failover: n1 embedded (orchestrator), n2 and n3 as processes, default detector settings";

/// Prints the figures as a table under `title`; with `per_round`, then
/// every round of each phase.
pub fn print_rounds(title: &str, phases: &[Phase], per_round: bool) {
    print(title, phases);
    if per_round {
        println!("every round, ms, in the order measured:");
        for phase in phases {
            let rounds: Vec<String> = phase
                .rounds_ms
                .iter()
                .map(|ms| format!("{ms:.0}"))
                .collect();
            println!("  {:<56} {}", phase.name, rounds.join(", "));
        }
    }
    for phase in phases {
        if let Some(note) = &phase.note {
            println!("note: {}: {note}", phase.name);
        }
    }
}

/// Prints the figures as a table under `title`.
pub fn print(title: &str, phases: &[Phase]) {
    println!("{title}");
    println!(
        "{:<58} {:>7} {:>12} {:>10}",
        "phase", "rounds", "median ms", "max ms"
    );
    for phase in phases {
        println!(
            "{:<58} {:>7} {:>12.3} {:>10.3}",
            phase.name, phase.rounds, phase.median_ms, phase.max_ms
        );
    }
}
