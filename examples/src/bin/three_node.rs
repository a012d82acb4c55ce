//! The sample cluster: three `herd node` processes on loopback, configured by
//! `cluster-config/examples/three-node/n{1,2,3}.toml`, running 1,000 tasks of
//! the six agent types of the deployment spec — five of them calls to an LLM
//! provider, played by the stand-in `herd dev llm-stub` that the sample
//! starts first. Prints progress, a summary per node, per agent type and per
//! provider, and stops every process cleanly (also on Ctrl-C).
//!
//! Run: `cargo run -p herd-examples --bin three_node` (`-- --tasks 5000` for more).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use futures::StreamExt;
use herd_node::api_client::ApiClient;
use herd_node::llm_stub_process::LlmStubProcess;
use herd_node::local_cluster::{LocalCluster, random_cookie};
use herd_protocol::{TaskId, TaskState, TaskView};
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
    // Answers in 30–90 ms, like a small hosted model; its own limit is above
    // the one the sample configures, so it never has to refuse a call.
    let stub = match LlmStubProcess::start(
        &format!("127.0.0.1:{llm_port}"),
        &[
            "--api-key",
            &llm_key,
            "--latency-ms",
            "30",
            "--jitter-ms",
            "60",
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

    // Submit in batches, round-robin over the three nodes' APIs.
    let bar = bar(total, "submitted");
    let submit_started = Instant::now();
    let mut ids: Vec<TaskId> = Vec::with_capacity(total);
    let tasks: Vec<Value> = (0..total).map(task_for).collect();
    for (round, chunk) in tasks.chunks(100).enumerate() {
        ids.extend(apis[round % 3].submit_batch(chunk).await?);
        bar.inc(chunk.len() as u64);
    }
    bar.finish();
    println!(
        "submitted {total} tasks in {:.2?}",
        submit_started.elapsed()
    );

    // Follow progress through the cluster summary.
    let bar = bar_finished(total);
    loop {
        let status = apis[1].cluster().await?;
        let finished = status.tasks.succeeded + status.tasks.dead + status.tasks.cancelled;
        bar.set_position(finished.min(total as u64));
        if finished >= total as u64 {
            break;
        }
        if submit_started.elapsed() > Duration::from_secs(300) {
            bail!("tasks did not finish within 5 minutes: {:?}", status.tasks);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bar.finish();
    let elapsed = submit_started.elapsed();
    println!(
        "all {total} tasks finished {:.2?} after the first submission ({:.0} tasks/s)\n",
        elapsed,
        total as f64 / elapsed.as_secs_f64()
    );

    let views: Vec<TaskView> = futures::stream::iter(ids)
        .map(|id| {
            let api = apis[0].clone();
            async move { api.task(id, None).await }
        })
        .buffered(64)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    print_summary(&views);
    let status = apis[0].cluster().await?;
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
    println!(
        "cluster: orchestrator {}, {} nodes up",
        status.orchestrator,
        status.nodes.len()
    );
    if views.iter().any(|view| view.state != TaskState::Succeeded) {
        bail!("some tasks did not succeed");
    }
    Ok(())
}

fn bar(length: usize, verb: &str) -> ProgressBar {
    let bar = ProgressBar::new(length as u64);
    let template = format!("{verb:>9} [{{bar:40}}] {{pos}}/{{len}}  {{per_sec}}  eta {{eta}}");
    bar.set_style(
        ProgressStyle::with_template(&template)
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar
}

fn bar_finished(length: usize) -> ProgressBar {
    bar(length, "finished")
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
