//! The sample cluster: three `herd node` processes on loopback, configured by
//! `cluster-config/examples/three-node/n{1,2,3}.toml`, each with every role
//! and a replica of the task book (raft replication: the leader's node runs
//! the orchestrator; the sample says which one leads), running 1,000 tasks of
//! the six agent types of the deployment spec — five of them calls to an LLM
//! provider, played by the stand-in `herd dev llm-stub` that the sample
//! starts first. The tasks go in five rounds, one stage of a co-scientist
//! run after another, with rebalancing and autoscaling on (the `production`
//! preset; `HERD_MODE=static` for fixed slots and weights): the progress
//! shows the slots per node and the weights moving, the summary each type's
//! weight and each node's slots at the start, lowest, highest and at the end,
//! and the scaling decisions taken, besides a summary per node, per agent
//! type and per provider. Stops every process cleanly (also on Ctrl-C).
//!
//! Run: `cargo run -p herd-examples --bin three_node` (`-- --tasks 5000` for more).

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use futures::StreamExt;
use herd_node::api_client::{ApiClient, ApiClientError};
use herd_node::llm_stub_process::LlmStubProcess;
use herd_node::local_cluster::{LocalCluster, random_cookie};
use herd_protocol::messages::orchestrator::{ClusterStatus, MemberState};
use herd_protocol::messages::replica::{ReplicaRole, ReplicationStatus};
use herd_protocol::messages::scaling::{DecisionType, ScalingDecision};
use herd_protocol::{AgentType, TaskId, TaskState, TaskView, UnixMillis};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

/// The mix of work submitted: (agent type, share of tasks, payload maker).
fn task_for(index: usize) -> Value {
    let (agent_type, payload) = match index % 20 {
        0..=5 => (
            "generation",
            json!({ "prompt": format!("Propose a hypothesis about enzyme family {}.", index % 37) }),
        ),
        // A template: `inputs` are filled in by the submitter here (by a
        // workflow from its parent steps' results, once workflows exist).
        6..=9 => (
            "reflection",
            json!({
                "prompt": "Critique this hypothesis: {{ inputs.generation.content }}",
                "inputs": { "generation": { "content": format!("h-{index}: enzyme {} binds copper", index % 37) } },
            }),
        ),
        10..=13 => (
            "ranking",
            json!({ "messages": [
                { "role": "user", "content": format!("Which is stronger, h-{index} or h-{}?", index + 1) }
            ], "max_tokens": 16 }),
        ),
        14..=16 => (
            "evolution",
            json!({ "prompt": format!("Combine h-{index} and h-{} into one simpler hypothesis.", index / 2) }),
        ),
        17..=18 => ("proximity", json!({ "text": format!("idea {index}") })),
        _ => (
            "meta_review",
            json!({ "prompt": format!("Summarise review round {}.", index / 20) }),
        ),
    };
    json!({ "agent_type": agent_type, "payload": payload, "priority": if index.is_multiple_of(50) { 9 } else { 5 } })
}

fn parse_args() -> anyhow::Result<usize> {
    let mut args = std::env::args().skip(1);
    let mut tasks = 1000;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--tasks" => {
                tasks = args
                    .next()
                    .context("--tasks needs a number")?
                    .parse()
                    .context("--tasks needs a number")?
            }
            "-h" | "--help" => {
                println!("usage: three_node [--tasks N]   (default 1000)");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}; usage: three_node [--tasks N]"),
        }
    }
    Ok(tasks)
}

fn config_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../cluster-config/examples/three-node")
}

/// How the run ended, for the exit code.
enum Ending {
    Finished,
    Interrupted,
    Failed(anyhow::Error),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let total = match parse_args() {
        Ok(total) => total,
        Err(error) => {
            eprintln!("three_node: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    let configs: Vec<PathBuf> = (1..=3)
        .map(|i| config_dir().join(format!("n{i}.toml")))
        .collect();
    let llm_port = std::env::var("HERD_SAMPLE_LLM_PORT").unwrap_or_else(|_| "8199".to_string());
    let llm_key = std::env::var("HERD_SAMPLE_LLM_KEY").unwrap_or_else(|_| "sample-key".to_string());
    // Answers in 100–300 ms, like a small hosted model; its own limit is
    // above the one the sample configures, so it never has to refuse a call.
    let stub = match LlmStubProcess::start(
        &format!("127.0.0.1:{llm_port}"),
        &[
            "--api-key",
            &llm_key,
            "--latency-ms",
            "100",
            "--jitter-ms",
            "200",
            "--requests-per-minute",
            "12000",
        ],
    )
    .await
    {
        Ok(stub) => stub,
        Err(error) => {
            eprintln!(
                "three_node: the stand-in LLM provider did not start: {error:#}\n(set HERD_SAMPLE_LLM_PORT to move it off port {llm_port})"
            );
            return std::process::ExitCode::FAILURE;
        }
    };
    println!(
        "stand-in LLM provider (herd dev llm-stub) at {}",
        stub.base_url()
    );
    println!(
        "starting three herd nodes from {} (a fresh cookie for this run)",
        config_dir().display()
    );
    let mut cluster = match LocalCluster::spawn_from_configs(&configs, &random_cookie()) {
        Ok(cluster) => cluster,
        Err(error) => {
            eprintln!("three_node: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let ending = tokio::select! {
        outcome = run(&mut cluster, total) => match outcome {
            Ok(()) => Ending::Finished,
            Err(error) => Ending::Failed(error),
        },
        _ = tokio::signal::ctrl_c() => Ending::Interrupted,
    };
    match &ending {
        Ending::Interrupted => eprintln!("\ninterrupted: stopping the nodes"),
        Ending::Failed(error) => eprintln!("three_node: {error:#}\n{}", cluster.log_tails()),
        Ending::Finished => {}
    }
    let stopping = Instant::now();
    cluster.stop().await;
    stub.stop().await;
    let kept = if std::env::var_os("HERD_KEEP_LOGS").is_some() {
        format!("logs kept in {}", cluster.log_dir().display())
    } else {
        "set HERD_KEEP_LOGS=1 to keep the node logs".to_string()
    };
    println!("stopped all nodes in {:.2?}; {kept}", stopping.elapsed());
    match ending {
        Ending::Finished => std::process::ExitCode::SUCCESS,
        Ending::Interrupted => std::process::ExitCode::from(130),
        Ending::Failed(_) => std::process::ExitCode::FAILURE,
    }
}

/// Reads answered 503 and retried by [`retrying`].
static RETRIED: AtomicU64 = AtomicU64::new(0);

/// How long [`retrying`] keeps asking: an election takes about a second.
const RETRY_FOR: Duration = Duration::from_secs(10);

/// Runs the read `call` until it answers, retrying a 503 — the API's answer
/// while no orchestrator runs, during a leader change or while the leader
/// has no quorum — for up to [`RETRY_FOR`]. Submissions are not retried
/// this way: a refused batch may or may not have been taken.
async fn retrying<T, F, Fut>(mut call: F) -> Result<T, ApiClientError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ApiClientError>>,
{
    let deadline = Instant::now() + RETRY_FOR;
    loop {
        match call().await {
            Err(ApiClientError::Api { status: 503, .. }) if Instant::now() < deadline => {
                RETRIED.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            answer => return answer,
        }
    }
}

/// The replica group once its three replicas vote (n2 and n3 join as
/// learners and are promoted within a second or so), or as it is after 15 s.
async fn three_voters(api: &ApiClient) -> Option<ReplicationStatus> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let group = api
            .cluster()
            .await
            .ok()
            .and_then(|status| status.replication);
        let voting = group.as_ref().map_or(0, |group| {
            group
                .replicas
                .iter()
                .filter(|r| matches!(r.state, ReplicaRole::Leader | ReplicaRole::Follower))
                .count()
        });
        if voting == 3 || Instant::now() > deadline {
            return group;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `n1 leads (term 1); replicas n1 leader, n2 follower, n3 follower`.
fn describe_group(group: &ReplicationStatus) -> String {
    let replicas = group
        .replicas
        .iter()
        .map(|replica| {
            let role = match replica.state {
                ReplicaRole::Leader => "leader",
                ReplicaRole::Follower => "follower",
                ReplicaRole::Candidate => "candidate",
                ReplicaRole::Learner => "learner",
                ReplicaRole::Unreachable => "unreachable",
            };
            format!("{} {role}", replica.name)
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "{} (term {}); replicas {replicas}",
        group
            .leader
            .as_ref()
            .map_or("no leader".to_string(), |leader| format!("{leader} leads")),
        group.term
    )
}

/// The rounds the work goes in, as in a co-scientist run: hypotheses first,
/// then their reviews, rankings (with proximity checks), evolution, and a
/// meta-review last. Empty rounds are left out.
const ROUNDS: [&[&str]; 5] = [
    &["generation"],
    &["reflection"],
    &["ranking", "proximity"],
    &["evolution"],
    &["meta_review"],
];

/// Agent type names in the order of [`ROUNDS`]; others after, by name.
fn in_round_order(types: impl IntoIterator<Item = String>) -> Vec<String> {
    let position = |t: &str| {
        ROUNDS
            .iter()
            .flat_map(|round| round.iter())
            .position(|r| *r == t)
            .unwrap_or(usize::MAX)
    };
    let mut types: Vec<String> = types.into_iter().collect();
    types.sort_by(|a, b| position(a).cmp(&position(b)).then(a.cmp(b)));
    types
}

fn rounds(total: usize) -> Vec<(String, Vec<Value>)> {
    let tasks: Vec<Value> = (0..total).map(task_for).collect();
    ROUNDS
        .iter()
        .map(|types| {
            let round: Vec<Value> = tasks
                .iter()
                .filter(|task| types.iter().any(|t| task["agent_type"] == *t))
                .cloned()
                .collect();
            (types.join(" and "), round)
        })
        .filter(|(_, round)| !round.is_empty())
        .collect()
}

/// How long the sample waits, after the last task, for the idle pool to
/// shrink (the sample's `stabilization_s` is 2).
const IDLE_WAIT: Duration = Duration::from_secs(10);

async fn run(cluster: &mut LocalCluster, total: usize) -> anyhow::Result<()> {
    let started = Instant::now();
    cluster.wait_ready(Duration::from_secs(30)).await?;
    println!(
        "cluster ready in {:.2?}: {}",
        started.elapsed(),
        cluster
            .nodes
            .iter()
            .map(|n| format!("{} (api {})", n.spec.name, n.api_url()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let apis: Vec<ApiClient> = (0..3).map(|i| cluster.api(i)).collect();
    match three_voters(&apis[1]).await {
        Some(group) => println!("replication: raft, {}", describe_group(&group)),
        None => println!("replication: off (the cluster reports no replica group)"),
    }
    let run_started = UnixMillis::now();
    let first = retrying(|| apis[1].cluster()).await?;
    let scaling = first.scaling.clone();
    println!(
        "scaling mode {}: {}",
        scaling.mode,
        match (scaling.rebalance, scaling.autoscale) {
            (false, false) => "fixed slots and configured weights".to_string(),
            (rebalance, autoscale) => format!(
                "weights {}, slots {} ({}–{} in all)",
                if rebalance { "follow demand" } else { "fixed" },
                if autoscale { "follow load" } else { "fixed" },
                scaling.min_workers,
                scaling.max_workers
            ),
        }
    );
    let mut watch = ScalingWatch::new(&first);

    // Submit round by round, round-robin over the three nodes' APIs: the
    // next round goes in once fewer tasks wait than there are slots, so the
    // load moves from one agent type to the next and the pool stays busy.
    let rounds = rounds(total);
    let bar = bar_finished(total);
    let submit_started = Instant::now();
    let mut ids: Vec<TaskId> = Vec::with_capacity(total);
    let mut next_round = 0;
    let mut batches = 0;
    let mut tick: u64 = 0;
    loop {
        let status = retrying(|| apis[1].cluster()).await?;
        watch.observe(&status);
        if tick.is_multiple_of(10) {
            watch.note_decisions(
                &retrying(|| apis[1].scaling_decisions(50)).await?,
                run_started,
            );
        }
        tick += 1;
        let waiting = status.tasks.pending + status.tasks.failed;
        if next_round < rounds.len() && (next_round == 0 || waiting < watch.total_slots()) {
            let (name, tasks) = &rounds[next_round];
            for chunk in tasks.chunks(100) {
                ids.extend(apis[batches % 3].submit_batch(chunk).await?);
                batches += 1;
            }
            next_round += 1;
            bar.suspend(|| {
                println!(
                    "round {next_round} of {}: submitted {} {name} tasks at {:.1?}",
                    rounds.len(),
                    tasks.len(),
                    submit_started.elapsed()
                )
            });
        }
        let finished = status.tasks.succeeded + status.tasks.dead + status.tasks.cancelled;
        bar.set_position(finished.min(total as u64));
        bar.set_message(watch.progress_lines(&status));
        if finished >= total as u64 && next_round == rounds.len() {
            break;
        }
        if submit_started.elapsed() > Duration::from_secs(300) {
            bail!("tasks did not finish within 5 minutes: {:?}", status.tasks);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bar.finish_and_clear();
    let elapsed = submit_started.elapsed();
    println!(
        "all {total} tasks finished {:.2?} after the first submission ({:.0} tasks/s)",
        elapsed,
        total as f64 / elapsed.as_secs_f64()
    );

    // With nothing left to do, the pool shrinks once utilization has stayed
    // low for the stabilization window.
    if scaling.autoscale {
        let busy_slots = watch.total_slots();
        let idle_since = Instant::now();
        let spinner = ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} idle: waiting for the pool to shrink\n{msg}")
                .expect("valid template"),
        );
        loop {
            let status = retrying(|| apis[1].cluster()).await?;
            watch.observe(&status);
            spinner.set_message(watch.progress_lines(&status));
            spinner.tick();
            if watch.total_slots() < busy_slots || idle_since.elapsed() > IDLE_WAIT {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        spinner.finish_and_clear();
        if watch.total_slots() < busy_slots {
            println!(
                "idle: the pool shrank from {busy_slots} to {} slots {:.1?} after the last task",
                watch.total_slots(),
                idle_since.elapsed()
            );
        } else {
            println!("idle: the pool kept its {busy_slots} slots for {IDLE_WAIT:?}");
        }
    }
    watch.note_decisions(
        &retrying(|| apis[1].scaling_decisions(100)).await?,
        run_started,
    );
    println!();

    let views: Vec<TaskView> = futures::stream::iter(ids)
        .map(|id| {
            let api = apis[0].clone();
            async move { retrying(|| api.task(id, None)).await }
        })
        .buffered(64)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    print_summary(&views);
    watch.print_summary();
    let status = retrying(|| apis[0].cluster()).await?;
    let tokens =
        views
            .iter()
            .filter_map(|view| view.tokens)
            .fold((0, 0), |(prompt, completion), used| {
                (
                    prompt + used.prompt_tokens,
                    completion + used.completion_tokens,
                )
            });
    for provider in &status.providers {
        println!(
            "llm provider {}: {} calls in the last minute (limit {}), {} prompt + {} completion tokens in all",
            provider.name,
            provider.requests_last_minute,
            provider
                .requests_per_minute
                .map_or("none".to_string(), |n| n.to_string()),
            tokens.0,
            tokens.1,
        );
    }
    let retried = RETRIED.load(Ordering::Relaxed);
    if retried > 0 {
        println!(
            "api: {retried} reads answered 503 (no orchestrator for a moment: a leader change, or a leader that lost its quorum) and were retried"
        );
    }
    println!(
        "cluster: orchestrator {}, {} nodes up; replication {}",
        status.orchestrator,
        status
            .nodes
            .iter()
            .filter(|node| node.state == MemberState::Up)
            .count(),
        status
            .replication
            .as_ref()
            .map_or("off".to_string(), |group| format!(
                "raft, {}",
                describe_group(group)
            ))
    );
    if views.iter().any(|view| view.state != TaskState::Succeeded) {
        bail!("some tasks did not succeed");
    }
    Ok(())
}

/// A value's first, lowest, highest and latest reading.
#[derive(Clone, Copy, Debug)]
struct Span {
    start: f64,
    low: f64,
    high: f64,
    end: f64,
}

impl Span {
    fn new(value: f64) -> Self {
        Span {
            start: value,
            low: value,
            high: value,
            end: value,
        }
    }

    fn see(&mut self, value: f64) {
        self.low = self.low.min(value);
        self.high = self.high.max(value);
        self.end = value;
    }

    fn moved(&self) -> bool {
        self.high - self.low > 1e-9
    }
}

/// What the scaling loop did during the run: weights and slots as
/// `GET /v1/cluster` showed them, and the decisions of
/// `GET /v1/scaling/decisions` taken since the run started.
struct ScalingWatch {
    weights: BTreeMap<String, Span>,
    slots: BTreeMap<String, Span>,
    total: Span,
    /// Decision type and whether it moved weights, by timestamp.
    decisions: BTreeMap<u64, (DecisionType, bool)>,
}

/// Slots on nodes that are up.
fn slots_by_node(status: &ClusterStatus) -> BTreeMap<String, f64> {
    status
        .nodes
        .iter()
        .filter(|node| node.state == MemberState::Up)
        .map(|node| (node.name.to_string(), f64::from(node.workers)))
        .collect()
}

impl ScalingWatch {
    fn new(status: &ClusterStatus) -> Self {
        let slots = slots_by_node(status);
        ScalingWatch {
            weights: status
                .agents
                .iter()
                .map(|(t, a)| (t.to_string(), Span::new(a.weight)))
                .collect(),
            total: Span::new(slots.values().sum()),
            slots: slots.into_iter().map(|(n, s)| (n, Span::new(s))).collect(),
            decisions: BTreeMap::new(),
        }
    }

    fn observe(&mut self, status: &ClusterStatus) {
        for (agent_type, agent) in &status.agents {
            self.weights
                .entry(agent_type.to_string())
                .and_modify(|span| span.see(agent.weight))
                .or_insert_with(|| Span::new(agent.weight));
        }
        let slots = slots_by_node(status);
        self.total.see(slots.values().sum());
        for (node, count) in slots {
            self.slots
                .entry(node)
                .and_modify(|span| span.see(count))
                .or_insert_with(|| Span::new(count));
        }
    }

    fn note_decisions(&mut self, decisions: &[ScalingDecision], since: UnixMillis) {
        for decision in decisions.iter().filter(|d| d.timestamp >= since) {
            self.decisions.insert(
                decision.timestamp.0,
                (
                    decision.decision_type,
                    !decision.agent_weight_adjustments.is_empty(),
                ),
            );
        }
    }

    fn total_slots(&self) -> u64 {
        self.total.end as u64
    }

    /// The lines under the progress bar: slots per node, then the current
    /// weights in the order the rounds use them, three to a line.
    fn progress_lines(&self, status: &ClusterStatus) -> String {
        let slots = self
            .slots
            .iter()
            .map(|(node, span)| format!("{node} {}", span.end))
            .collect::<Vec<_>>()
            .join(", ");
        let weights: Vec<String> = in_round_order(status.agents.keys().map(|t| t.to_string()))
            .into_iter()
            .map(|t| format!("{t} {:.2}", status.agents[&AgentType::new(&t)].weight))
            .collect();
        let mut lines = vec![format!(
            "    slots {:>2} ({slots}), {} tasks waiting",
            self.total.end,
            status.tasks.pending + status.tasks.failed
        )];
        for (index, three) in weights.chunks(3).enumerate() {
            let label = if index == 0 { "weights" } else { "" };
            lines.push(format!("  {label:>7} {}", three.join("  ")));
        }
        lines.join("\n")
    }

    fn print_summary(&self) {
        let mut table = Table::new();
        table
            .load_style(UTF8_FULL_CONDENSED)
            .set_header(["weight", "at start", "lowest", "highest", "at end"]);
        for agent_type in in_round_order(self.weights.keys().cloned()) {
            let span = &self.weights[&agent_type];
            table.add_row(
                std::iter::once(agent_type.clone())
                    .chain([span.start, span.low, span.high, span.end].map(|w| format!("{w:.3}"))),
            );
        }
        println!("{table}");
        let mut table = Table::new();
        table
            .load_style(UTF8_FULL_CONDENSED)
            .set_header(["slots", "at start", "fewest", "most", "at end"]);
        for (name, span) in self.slots.iter().chain([(&"all".to_string(), &self.total)]) {
            table.add_row(
                std::iter::once(name.clone())
                    .chain([span.start, span.low, span.high, span.end].map(|n| n.to_string())),
            );
        }
        println!("{table}");
        let count =
            |kind: DecisionType| self.decisions.values().filter(|(t, _)| *t == kind).count();
        let taken = self
            .decisions
            .values()
            .filter(|(t, _)| *t != DecisionType::Maintain)
            .count();
        println!(
            "scaling decisions: {taken} ({} scale_up, {} scale_down, {} rebalance; weights moved in {}), from GET /v1/scaling/decisions",
            count(DecisionType::ScaleUp),
            count(DecisionType::ScaleDown),
            count(DecisionType::Rebalance),
            self.decisions.values().filter(|(_, moved)| *moved).count()
        );
        println!(
            "weights moved for {} of {} agent types; slots {} at the start, {}–{} during the run, {} at the end",
            self.weights.values().filter(|span| span.moved()).count(),
            self.weights.len(),
            self.total.start,
            self.total.low,
            self.total.high,
            self.total.end
        );
    }
}

/// Tasks finished, with the scaling lines under it.
fn bar_finished(length: usize) -> ProgressBar {
    let bar = ProgressBar::new(length as u64);
    bar.set_style(
        ProgressStyle::with_template(
            " finished [{bar:40}] {pos}/{len}  {per_sec}  eta {eta}\n{msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar
}

#[derive(Default)]
struct Tally {
    tasks: usize,
    succeeded: usize,
    attempts: u64,
    run_ms: u64,
    wait_ms: u64,
}

fn print_summary(views: &[TaskView]) {
    let mut by_node: BTreeMap<String, Tally> = BTreeMap::new();
    let mut by_type: BTreeMap<String, Tally> = BTreeMap::new();
    for view in views {
        let run_ms = match (view.started_at, view.finished_at) {
            (Some(start), Some(end)) => end.since(start).as_millis() as u64,
            _ => 0,
        };
        let wait_ms = view
            .started_at
            .map_or(0, |start| start.since(view.created_at).as_millis() as u64);
        for tally in [
            by_node
                .entry(
                    view.node
                        .as_ref()
                        .map_or("-".to_string(), |n| n.to_string()),
                )
                .or_default(),
            by_type.entry(view.agent_type.to_string()).or_default(),
        ] {
            tally.tasks += 1;
            tally.succeeded += usize::from(view.state == TaskState::Succeeded);
            tally.attempts += u64::from(view.attempts);
            tally.run_ms += run_ms;
            tally.wait_ms += wait_ms;
        }
    }
    for (title, tallies) in [("node", &by_node), ("agent type", &by_type)] {
        let mut table = Table::new();
        table.load_style(UTF8_FULL_CONDENSED).set_header([
            title,
            "tasks",
            "succeeded",
            "attempts",
            "avg run ms",
            "avg queue ms",
        ]);
        for (name, tally) in tallies {
            let n = tally.tasks.max(1) as u64;
            table.add_row([
                name.clone(),
                tally.tasks.to_string(),
                tally.succeeded.to_string(),
                tally.attempts.to_string(),
                (tally.run_ms / n).to_string(),
                (tally.wait_ms / n).to_string(),
            ]);
        }
        println!("{table}");
    }
}
