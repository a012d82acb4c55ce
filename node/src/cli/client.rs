//! `herd submit`, `herd status`, `herd task`: clients of a node's HTTP API.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use futures::StreamExt;
use herd_protocol::messages::orchestrator::CircuitStatus;
use herd_protocol::{TaskId, TaskState, TaskView};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use crate::api_client::ApiClient;

/// Where the API is, shared by the client commands.
#[derive(Args, Debug)]
pub struct ApiArg {
    /// The node's HTTP API. [env: HERD_API]
    #[arg(
        long,
        env = "HERD_API",
        default_value = "http://127.0.0.1:8100",
        value_name = "URL"
    )]
    api: String,
    /// API token (needed when the cluster has tokens). Prefer HERD_TOKEN: a flag's value shows in `ps`. [env: HERD_TOKEN]
    #[arg(long, env = "HERD_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    token: Option<String>,
    /// Trust only this CA certificate (PEM) for an https:// API, e.g. herd certs' ca.pem. [env: HERD_CA_CERT]
    #[arg(long = "ca-cert", env = "HERD_CA_CERT", value_name = "FILE")]
    ca_cert: Option<PathBuf>,
}

impl ApiArg {
    /// A client of the API, trusting `--ca-cert` if given, with the token if one was given.
    fn client(&self) -> anyhow::Result<ApiClient> {
        Ok(client_for(&self.api, self.ca_cert.as_deref())?.with_token(self.token.as_deref()))
    }
}

fn client_for(base: &str, ca_cert: Option<&std::path::Path>) -> anyhow::Result<ApiClient> {
    Ok(match ca_cert {
        Some(path) => ApiClient::with_ca_certificate(base, path)?,
        None => ApiClient::new(base),
    })
}

#[derive(Args, Debug)]
pub struct SubmitArgs {
    #[command(flatten)]
    api: ApiArg,
    /// Agent type of the task(s). With --file, each line is then a payload.
    #[arg(long, value_name = "TYPE")]
    agent: Option<String>,
    /// The task's payload (JSON).
    #[arg(long, value_name = "JSON", conflicts_with = "file")]
    payload: Option<String>,
    /// A JSON-lines file: one task object per line ({"agent_type", "payload", ...}), or one payload per line with --agent.
    #[arg(long, value_name = "FILE")]
    file: Option<PathBuf>,
    /// Priority 0 (lowest) to 9 (highest).
    #[arg(long)]
    priority: Option<u8>,
    /// Per-attempt time limit in seconds.
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<u32>,
    /// Attempts before the task is dead.
    #[arg(long)]
    max_attempts: Option<u32>,
    /// Idempotency key (single task only).
    #[arg(long, value_name = "KEY")]
    idempotency_key: Option<String>,
    /// Tasks per request when submitting a file.
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Wait for the tasks to finish and show results.
    #[arg(long)]
    wait: bool,
    /// Longest wait with --wait (e.g. 10m).
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    wait_timeout: Duration,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    api: ApiArg,
    /// Print the raw JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct TaskArgs {
    #[command(flatten)]
    api: ApiArg,
    /// The task id.
    id: String,
    /// Wait up to this long for the task to finish (e.g. 30s).
    #[arg(long, value_parser = humantime::parse_duration)]
    wait: Option<Duration>,
}

#[derive(clap::Subcommand, Debug)]
pub enum DlqCommand {
    /// List dead tasks with the error that killed them.
    List {
        #[command(flatten)]
        api: ApiArg,
        /// Only this agent type.
        #[arg(long, value_name = "TYPE")]
        agent: Option<String>,
        /// Page size.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
    /// Retry a dead task, optionally with a corrected payload.
    Retry {
        #[command(flatten)]
        api: ApiArg,
        /// The task id.
        id: String,
        /// Replacement payload (JSON).
        #[arg(long, value_name = "JSON")]
        payload: Option<String>,
    },
}

#[derive(Args, Debug)]
pub struct DrainArgs {
    #[command(flatten)]
    api: ApiArg,
    /// The node to drain.
    node: String,
}

/// Runs a client command on a fresh runtime; errors exit with status 1.
pub fn run(command: impl Future<Output = anyhow::Result<ExitCode>>) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime builds");
    match runtime.block_on(command) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("herd: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn task_object(args: &SubmitArgs, agent_type: &str, payload: Value) -> Value {
    let mut task = json!({ "agent_type": agent_type, "payload": payload });
    let object = task.as_object_mut().expect("literal object");
    if let Some(priority) = args.priority {
        object.insert("priority".into(), json!(priority));
    }
    if let Some(timeout) = args.timeout {
        object.insert("timeout_s".into(), json!(timeout));
    }
    if let Some(attempts) = args.max_attempts {
        object.insert("max_attempts".into(), json!(attempts));
    }
    task
}

pub async fn submit(args: SubmitArgs) -> anyhow::Result<ExitCode> {
    let client = args.api.client()?;
    let tasks: Vec<Value> = match (&args.file, &args.payload) {
        (Some(path), _) => read_task_file(path, &args)?,
        (None, Some(payload)) => {
            let agent = args
                .agent
                .as_deref()
                .context("--agent is required with --payload")?;
            let payload: Value =
                serde_json::from_str(payload).context("--payload is not valid JSON")?;
            let mut task = task_object(&args, agent, payload);
            if let Some(key) = &args.idempotency_key {
                task["idempotency_key"] = json!(key);
            }
            vec![task]
        }
        (None, None) => bail!("give --agent TYPE --payload JSON, or --file tasks.jsonl"),
    };
    if tasks.is_empty() {
        bail!("no tasks to submit");
    }
    let single = args.file.is_none();
    let ids = if single {
        vec![
            client
                .submit_raw(&tasks[0])
                .await
                .map(|answer| answer["id"].as_str().and_then(|id| id.parse().ok()))?
                .context("the API answered without an id")?,
        ]
    } else {
        submit_with_progress(&client, &tasks, args.batch.max(1)).await?
    };
    if !args.wait {
        for id in &ids {
            println!("{id}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let views = wait_all(&client, &ids, args.wait_timeout, !single).await?;
    if single {
        println!("{}", serde_json::to_string_pretty(&views[0])?);
    } else {
        print_summary(&views);
    }
    let all_succeeded = views.iter().all(|view| view.state == TaskState::Succeeded);
    Ok(if all_succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn read_task_file(path: &PathBuf, args: &SubmitArgs) -> anyhow::Result<Vec<Value>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut tasks = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not valid JSON", path.display(), index + 1))?;
        let task = match &args.agent {
            Some(agent) => task_object(args, agent, value),
            None if value.get("agent_type").is_some() => value,
            None => bail!(
                "{}:{}: the line has no agent_type; add it, or pass --agent TYPE to treat each line as a payload",
                path.display(),
                index + 1
            ),
        };
        tasks.push(task);
    }
    Ok(tasks)
}

fn progress_bar(length: usize, verb: &str) -> ProgressBar {
    let bar = ProgressBar::new(length as u64);
    let template =
        format!("{verb:>9} [{{bar:40}}] {{pos}}/{{len}} tasks  {{per_sec}}  eta {{eta}}");
    bar.set_style(
        ProgressStyle::with_template(&template)
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar
}

async fn submit_with_progress(
    client: &ApiClient,
    tasks: &[Value],
    batch: usize,
) -> anyhow::Result<Vec<TaskId>> {
    let bar = progress_bar(tasks.len(), "submitted");
    let started = Instant::now();
    let mut ids = Vec::with_capacity(tasks.len());
    for chunk in tasks.chunks(batch) {
        ids.extend(client.submit_batch(chunk).await?);
        bar.inc(chunk.len() as u64);
    }
    bar.finish();
    eprintln!(
        "submitted {} tasks in {:.2?} ({:.0} tasks/s)",
        ids.len(),
        started.elapsed(),
        ids.len() as f64 / started.elapsed().as_secs_f64()
    );
    Ok(ids)
}

async fn wait_all(
    client: &ApiClient,
    ids: &[TaskId],
    limit: Duration,
    show_progress: bool,
) -> anyhow::Result<Vec<TaskView>> {
    let deadline = Instant::now() + limit;
    let bar = show_progress.then(|| progress_bar(ids.len(), "finished"));
    let views: Vec<anyhow::Result<TaskView>> = futures::stream::iter(ids.iter().copied())
        .map(|id| {
            let bar = bar.clone();
            async move {
                loop {
                    let left = deadline.saturating_duration_since(Instant::now());
                    let view = client
                        .task(id, Some(left.min(Duration::from_secs(60))))
                        .await?;
                    if view.state.is_terminal() || left.is_zero() {
                        if let Some(bar) = &bar {
                            bar.inc(1);
                        }
                        return Ok(view);
                    }
                }
            }
        })
        .buffered(32)
        .collect()
        .await;
    if let Some(bar) = bar {
        bar.finish();
    }
    views.into_iter().collect()
}

fn print_summary(views: &[TaskView]) {
    let mut by_state = std::collections::BTreeMap::<String, usize>::new();
    let mut by_node = std::collections::BTreeMap::<String, usize>::new();
    for view in views {
        *by_state.entry(view.state.to_string()).or_default() += 1;
        if let Some(node) = &view.node {
            *by_node.entry(node.to_string()).or_default() += 1;
        }
    }
    let states: Vec<String> = by_state
        .iter()
        .map(|(state, n)| format!("{state}: {n}"))
        .collect();
    let nodes: Vec<String> = by_node
        .iter()
        .map(|(node, n)| format!("{node}: {n}"))
        .collect();
    println!("{} tasks — {}", views.len(), states.join(", "));
    println!("ran on — {}", nodes.join(", "));
}

/// The replica group in one line: `replication: term 2 · leader n2 ·
/// n1 follower @5120, n2 leader @5120, n3 follower @5118`.
fn replication_line(replication: &herd_protocol::messages::replica::ReplicationStatus) -> String {
    let replicas: Vec<String> = replication
        .replicas
        .iter()
        .map(|replica| {
            let state = serde_json::to_value(replica.state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            match replica.applied_index {
                Some(index) => format!("{} {state} @{index}", replica.name),
                None => format!("{} {state}", replica.name),
            }
        })
        .collect();
    format!(
        "replication: term {} · leader {} · {}",
        replication.term,
        replication.leader.as_deref().unwrap_or("none"),
        replicas.join(", ")
    )
}

pub async fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let client = args.api.client()?;
    let status = client.cluster().await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("orchestrator: {}", status.orchestrator);
    if let Some(replication) = &status.replication {
        println!("{}", replication_line(replication));
    }
    let mut nodes = Table::new();
    nodes.load_style(UTF8_FULL_CONDENSED).set_header([
        "node", "state", "roles", "workers", "capacity", "busy", "http",
    ]);
    for node in &status.nodes {
        let roles: Vec<&str> = node.roles.iter().map(|r| r.as_str()).collect();
        nodes.add_row([
            node.name.to_string(),
            format!("{:?}", node.state).to_lowercase(),
            roles.join(","),
            node.workers.to_string(),
            node.capacity.to_string(),
            node.busy.to_string(),
            node.http_addr.clone().unwrap_or_default(),
        ]);
    }
    println!("{nodes}");
    let s = &status.scaling;
    println!(
        "scaling: mode {} · {}–{} workers · grow above {:.0} % · shrink below {:.0} % · rebalance {} · autoscale {}",
        s.mode,
        s.min_workers,
        s.max_workers,
        s.scale_up_threshold * 100.0,
        s.scale_down_threshold * 100.0,
        if s.rebalance { "on" } else { "off" },
        if s.autoscale { "on" } else { "off" },
    );
    // Slots per type and node: which share of each node's slots a type may
    // fill before it has to borrow idle ones.
    let pool_nodes: Vec<_> = status.nodes.iter().filter(|n| n.workers > 0).collect();
    let mut header = vec![
        "agent type".to_string(),
        "weight".to_string(),
        "slots".to_string(),
    ];
    header.extend(pool_nodes.iter().map(|n| format!("on {}", n.name)));
    header.extend(["busy".to_string(), "queued".to_string()]);
    let mut agents = Table::new();
    agents.load_style(UTF8_FULL_CONDENSED).set_header(header);
    for (agent_type, agent) in &status.agents {
        let mut row = vec![
            agent_type.to_string(),
            format!(
                "{:.3}{}",
                agent.weight,
                if agent.pinned { " (pinned)" } else { "" }
            ),
            agent.workers.to_string(),
        ];
        row.extend(pool_nodes.iter().map(|n| {
            n.slots_by_type
                .get(agent_type)
                .copied()
                .unwrap_or(0)
                .to_string()
        }));
        row.extend([agent.busy.to_string(), agent.queue_depth.to_string()]);
        agents.add_row(row);
    }
    println!("{agents}");
    if !status.recent_decisions.is_empty() {
        let mut decisions = Table::new();
        decisions.load_style(UTF8_FULL_CONDENSED).set_header([
            "decision",
            "when",
            "workers",
            "weight changes",
        ]);
        for decision in &status.recent_decisions {
            let changes: Vec<String> = decision
                .agent_weight_adjustments
                .iter()
                .map(|(t, a)| format!("{t} {:.3}→{:.3}", a.previous_weight, a.new_weight))
                .collect();
            decisions.add_row([
                decision.decision_type.as_str().to_string(),
                humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH + std::time::Duration::from_millis(decision.timestamp.0),
                )
                .to_string(),
                format!("{} → {}", decision.current_workers, decision.target_workers),
                changes.join(", "),
            ]);
        }
        println!("recent scaling decisions (newest first):\n{decisions}");
    }
    if !status.providers.is_empty() {
        let limit = |used: u64, limit: Option<u64>| match limit {
            Some(limit) => format!("{used} / {limit}"),
            None => used.to_string(),
        };
        let mut providers = Table::new();
        providers.load_style(UTF8_FULL_CONDENSED).set_header([
            "llm provider",
            "requests/min",
            "tokens/min",
            "in flight",
            "budget in use",
            "circuit",
            "paused",
        ]);
        for p in &status.providers {
            providers.add_row([
                p.name.clone(),
                limit(p.requests_last_minute, p.requests_per_minute.map(u64::from)),
                limit(p.tokens_last_minute, p.tokens_per_minute),
                limit(u64::from(p.in_flight), p.max_concurrent.map(u64::from)),
                format!("{:.0} %", p.budget_in_use * 100.0),
                match p.circuit {
                    CircuitStatus::Closed => "closed",
                    CircuitStatus::Open => "open",
                    CircuitStatus::HalfOpen => "half open",
                }
                .to_string(),
                if p.paused_for_ms > 0 {
                    format!("{:.1} s", p.paused_for_ms as f64 / 1000.0)
                } else {
                    "-".to_string()
                },
            ]);
        }
        println!("{providers}");
    }
    // Listed for admin tokens only (empty otherwise).
    if !status.tenants.is_empty() {
        let limited = |used: u64, limit: Option<u64>| match limit {
            Some(limit) => format!("{used} / {limit}"),
            None => used.to_string(),
        };
        let mut tenants = Table::new();
        tenants.load_style(UTF8_FULL_CONDENSED).set_header([
            "tenant",
            "unfinished",
            "pending",
            "held bytes",
        ]);
        for t in &status.tenants {
            tenants.add_row([
                t.tenant.to_string(),
                limited(t.unfinished, t.max_unfinished),
                t.pending.to_string(),
                limited(t.held_bytes, t.max_held_bytes),
            ]);
        }
        println!("{tenants}");
    }
    // A node from before /v1/supervision, or a token that may not read it:
    // the section is left out rather than failing the whole status.
    if let Ok(tree) = client.supervision().await {
        print_supervision(&tree);
    }
    let t = status.tasks;
    println!(
        "tasks: {} pending, {} running, {} succeeded, {} failed (retrying), {} dead, {} cancelled",
        t.pending, t.running, t.succeeded, t.failed, t.dead, t.cancelled
    );
    Ok(ExitCode::SUCCESS)
}

/// One row per node: its actors with restart counts, who watches its pool,
/// and its latest failure.
fn print_supervision(tree: &herd_protocol::messages::supervision::SupervisionTree) {
    let mut table = Table::new();
    table.load_style(UTF8_FULL_CONDENSED).set_header([
        "node",
        "actors (restarts)",
        "pool watched by",
        "last failure",
    ]);
    for node in &tree.nodes {
        let actors: Vec<String> = node
            .actors
            .iter()
            .filter(|a| a.actor != "supervisor")
            .map(|a| {
                let slots = a.slots.map(|s| format!(" {s} slots")).unwrap_or_default();
                let stopped = if a.running == Some(false) {
                    " (down)"
                } else {
                    ""
                };
                match a.restarts {
                    0 => format!("{}{slots}{stopped}", a.actor),
                    n => format!("{}{slots}{stopped} ×{n}", a.actor),
                }
            })
            .collect();
        let watcher = node
            .actors
            .iter()
            .find(|a| a.actor == "pool")
            .map(|a| {
                a.watched_by
                    .clone()
                    .unwrap_or_else(|| "no monitor".to_string())
            })
            .unwrap_or_else(|| "-".to_string());
        let last = node
            .actors
            .iter()
            .filter_map(|a| a.last_failure.as_ref().map(|f| (a, f)))
            .max_by_key(|(_, f)| f.at)
            .map(|(a, f)| {
                let when = humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH + std::time::Duration::from_millis(f.at.0),
                );
                // The whole reason is in GET /v1/supervision; a table row stays short.
                let reason: String = if f.reason.chars().count() > 60 {
                    f.reason.chars().take(59).chain(['…']).collect()
                } else {
                    f.reason.clone()
                };
                format!("{} at {when}: {reason}", a.actor)
            })
            .unwrap_or_else(|| "-".to_string());
        let name = if node.reported {
            node.name.clone()
        } else {
            format!("{} (no answer)", node.name)
        };
        table.add_row([name, actors.join(", "), watcher, last]);
    }
    let monitors = if tree.monitors.is_empty() {
        "none".to_string()
    } else {
        tree.monitors.join(", ")
    };
    println!("supervision (monitors: {monitors}):\n{table}");
}

pub async fn task(args: TaskArgs) -> anyhow::Result<ExitCode> {
    let client = args.api.client()?;
    let id: TaskId = args
        .id
        .parse()
        .with_context(|| format!("{:?} is not a task id", args.id))?;
    let view = client.task(id, args.wait).await?;
    println!("{}", serde_json::to_string_pretty(&view)?);
    Ok(ExitCode::SUCCESS)
}

pub async fn dlq(command: DlqCommand) -> anyhow::Result<ExitCode> {
    match command {
        DlqCommand::List {
            api,
            agent,
            limit,
            json,
        } => {
            let client = api.client()?;
            let mut query = format!("limit={limit}");
            if let Some(agent) = agent {
                query.push_str(&format!("&agent_type={agent}"));
            }
            let page = client.dead_letters(&query).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&page)?);
                return Ok(ExitCode::SUCCESS);
            }
            if page.tasks.is_empty() {
                println!("the dead-letter queue is empty");
                return Ok(ExitCode::SUCCESS);
            }
            let mut table = Table::new();
            table
                .load_style(UTF8_FULL_CONDENSED)
                .set_content_arrangement(comfy_table::ContentArrangement::Dynamic)
                .set_width(160)
                .set_header(["task", "agent type", "attempts", "failed at", "error"]);
            for task in &page.tasks {
                let error = task.error.as_ref().map_or(String::new(), |e| {
                    format!("{}: {}", e.kind.as_str(), e.message)
                });
                let error: String = error.chars().take(400).collect();
                table.add_row([
                    task.id.to_string(),
                    task.agent_type.to_string(),
                    task.attempts.to_string(),
                    task.finished_at.map_or(String::new(), |t| t.to_string()),
                    error,
                ]);
            }
            println!("{table}");
            if let Some(next) = page.next_after {
                println!("more: --after {next}");
            }
            Ok(ExitCode::SUCCESS)
        }
        DlqCommand::Retry { api, id, payload } => {
            let client = api.client()?;
            let id: TaskId = id
                .parse()
                .with_context(|| format!("{id:?} is not a task id"))?;
            let payload = payload
                .map(|text| serde_json::from_str::<Value>(&text))
                .transpose()
                .context("--payload is not valid JSON")?;
            client.retry_dead_letter(id, payload).await?;
            println!("{id} is pending again");
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub async fn drain(args: DrainArgs) -> anyhow::Result<ExitCode> {
    let client = args.api.client()?;
    client.drain(&args.node).await?;
    println!(
        "{} is draining: it takes no new work, lets running tasks finish, hands back the rest and leaves",
        args.node
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct HealthArgs {
    /// The node's HTTP address (HOST:PORT or URL). [env: HERD_HTTP]
    #[arg(
        long = "http",
        env = "HERD_HTTP",
        default_value = "127.0.0.1:8100",
        value_name = "ADDR"
    )]
    http: String,
    /// Which probe: health (every check), ready, live or startup.
    #[arg(long, default_value = "health", value_parser = ["health", "ready", "live", "startup"])]
    probe: String,
    /// Give up after this long.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Print nothing; only the exit code tells.
    #[arg(long, short)]
    quiet: bool,
    /// Trust only this CA certificate (PEM) for an https:// address. [env: HERD_CA_CERT]
    #[arg(long = "ca-cert", env = "HERD_CA_CERT", value_name = "FILE")]
    ca_cert: Option<PathBuf>,
}

/// `herd health`: exit 0 when the probe answers 200, 1 otherwise (also when
/// the node does not answer), printing the probe's JSON.
pub async fn health(args: HealthArgs) -> anyhow::Result<ExitCode> {
    let base = if args.http.contains("://") {
        args.http.clone()
    } else {
        format!("http://{}", args.http)
    };
    // /health may be closed to callers without a token ([api] open_health).
    let token = std::env::var("HERD_TOKEN").ok();
    let client = match client_for(&base, args.ca_cert.as_deref()) {
        Ok(client) => client.with_token(token.as_deref()),
        Err(error) => {
            if !args.quiet {
                eprintln!("herd health: {error}");
            }
            return Ok(ExitCode::from(1));
        }
    };
    let probe = format!("/{}", args.probe);
    match tokio::time::timeout(args.timeout, client.get_json(&probe)).await {
        Ok(Ok((status, body))) => {
            if !args.quiet {
                println!("{}", serde_json::to_string_pretty(&body)?);
            }
            Ok(if status == 200 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Ok(Err(error)) => {
            if !args.quiet {
                eprintln!("herd health: {error}");
            }
            Ok(ExitCode::from(1))
        }
        Err(_) => {
            if !args.quiet {
                eprintln!(
                    "herd health: {base}{probe} did not answer within {:?}",
                    args.timeout
                );
            }
            Ok(ExitCode::from(1))
        }
    }
}
