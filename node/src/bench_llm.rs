//! `herd bench llm`: what the `llm` handler costs, and how closely a cluster
//! uses a provider's limit.
//!
//! Starts the stand-in provider (`herd dev llm-stub`, answering at once) and
//! a three-node cluster of `herd node` processes whose agent types are
//! `chat` (`llm` handler) and `echo`, then measures:
//! - throughput of `chat` and of `echo` tasks with no provider limit, and
//!   the median submit→complete latency of single tasks of each: the
//!   difference is what the handler adds (building the request, one HTTP
//!   exchange with the provider, the grant and the call report);
//! - with `requests_per_minute` set and a backlog of twice that, the
//!   requests the provider received in the first full minute over the limit
//!   (the target is ≥ 0.95 without ever exceeding 1.0), and the most it saw
//!   in any 60 s window.
//!
//! Figures are printed, never asserted.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::api_client::ApiClient;
use crate::llm_stub_process::LlmStubProcess;
use crate::local_cluster::{LocalCluster, NodeSpec, random_cookie};

/// What `herd bench llm` measures.
#[derive(Clone, Debug)]
pub struct LlmBenchSettings {
    /// Tasks per throughput run.
    pub tasks: usize,
    /// Sequential single tasks for the latency medians.
    pub latency_samples: usize,
    /// The provider's `requests_per_minute` in the limit run; 0 skips it.
    pub requests_per_minute: u32,
    /// Worker slots per node.
    pub workers: u32,
}

/// The figures.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LlmFigures {
    /// `chat` tasks per second, no provider limit.
    pub llm_tasks_per_s: f64,
    /// `echo` tasks per second on the same cluster.
    pub echo_tasks_per_s: f64,
    /// Median submit→complete of one `chat` task, ms.
    pub llm_p50_ms: f64,
    /// Median submit→complete of one `echo` task, ms.
    pub echo_p50_ms: f64,
    /// The limit run's `requests_per_minute` (0 when skipped).
    pub allowed_per_minute: u32,
    /// Requests the provider received in the first 60 s of the limit run.
    pub achieved_first_minute: u64,
    /// The most requests it received in any 60 s window of that run.
    pub busiest_minute: u64,
}

/// The cluster's config: `chat` through the stub, `echo` beside it.
fn config_text(base_url: &str, requests_per_minute: Option<u32>) -> String {
    let limit = requests_per_minute
        .map(|n| format!("requests_per_minute = {n}"))
        .unwrap_or_default();
    format!(
        r#"
[providers.stub]
base_url = "{base_url}"
model = "stub-model"
{limit}

[agents.chat]
handler = "llm"
provider = "stub"
max_tokens = 32

[agents.echo]
handler = "echo"
"#
    )
}

/// Runs the benchmark.
pub async fn run(settings: LlmBenchSettings) -> anyhow::Result<LlmFigures> {
    let dir = crate::local_cluster::temp_dir("bench-llm")?;
    let stub = LlmStubProcess::start("127.0.0.1:0", &[]).await?;
    let config = dir.path().join("unlimited.toml");
    std::fs::write(&config, config_text(&stub.base_url(), None))?;
    let (mut cluster, api) = start_cluster(&config, settings.workers).await?;
    let llm_tasks_per_s = throughput(&api, "chat", settings.tasks).await?;
    let echo_tasks_per_s = throughput(&api, "echo", settings.tasks).await?;
    let llm_p50_ms = median_latency(&api, "chat", settings.latency_samples).await?;
    let echo_p50_ms = median_latency(&api, "echo", settings.latency_samples).await?;
    cluster.stop().await;
    stub.stop().await;

    let mut figures = LlmFigures {
        llm_tasks_per_s,
        echo_tasks_per_s,
        llm_p50_ms,
        echo_p50_ms,
        allowed_per_minute: settings.requests_per_minute,
        achieved_first_minute: 0,
        busiest_minute: 0,
    };
    if settings.requests_per_minute > 0 {
        let stub = LlmStubProcess::start("127.0.0.1:0", &[]).await?;
        let config = dir.path().join("limited.toml");
        std::fs::write(
            &config,
            config_text(&stub.base_url(), Some(settings.requests_per_minute)),
        )?;
        let (mut cluster, api) = start_cluster(&config, settings.workers).await?;
        let backlog = settings.requests_per_minute as usize * 2;
        submit(&api, "chat", backlog).await?;
        // Wait for one full minute after the first request arrived.
        let started = Instant::now();
        let first = loop {
            let stats = stub.stats().await?;
            if let Some(first) = stats["arrivals_ms"].get(0).and_then(Value::as_u64) {
                break first;
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(60),
                "no request reached the provider within a minute"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        tokio::time::sleep(Duration::from_secs(61)).await;
        let stats = stub.stats().await?;
        figures.achieved_first_minute = stats["arrivals_ms"].as_array().map_or(0, |arrivals| {
            arrivals
                .iter()
                .filter_map(Value::as_u64)
                .filter(|at| *at < first + 60_000)
                .count() as u64
        });
        figures.busiest_minute = stats["max_requests_in_any_60s_window"]
            .as_u64()
            .unwrap_or(0);
        cluster.stop().await;
        stub.stop().await;
    }
    Ok(figures)
}

async fn start_cluster(
    config: &std::path::Path,
    workers: u32,
) -> anyhow::Result<(LocalCluster, ApiClient)> {
    let specs = NodeSpec::three_nodes(workers)
        .into_iter()
        .map(|spec| NodeSpec {
            config: Some(config.to_path_buf()),
            ..spec
        })
        .collect();
    let mut cluster = LocalCluster::spawn(specs, &random_cookie())?;
    cluster.wait_ready(Duration::from_secs(30)).await?;
    let api = cluster.api("n1");
    Ok((cluster, api))
}

async fn submit(api: &ApiClient, agent_type: &str, count: usize) -> anyhow::Result<()> {
    let tasks: Vec<Value> = (0..count)
        .map(|i| json!({"agent_type": agent_type, "payload": {"prompt": format!("task {i}")}}))
        .collect();
    for chunk in tasks.chunks(500) {
        api.submit_batch(chunk).await?;
    }
    Ok(())
}

/// Tasks per second from the first submission to the last completion.
async fn throughput(api: &ApiClient, agent_type: &str, count: usize) -> anyhow::Result<f64> {
    let before = finished(api).await?;
    let started = Instant::now();
    submit(api, agent_type, count).await?;
    loop {
        if finished(api).await? >= before + count as u64 {
            return Ok(count as f64 / started.elapsed().as_secs_f64());
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "{agent_type} tasks did not finish within 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn finished(api: &ApiClient) -> anyhow::Result<u64> {
    let tasks = api.cluster().await?.tasks;
    Ok(tasks.succeeded + tasks.dead + tasks.cancelled)
}

/// Median submit→complete of single tasks, ms.
async fn median_latency(api: &ApiClient, agent_type: &str, samples: usize) -> anyhow::Result<f64> {
    let mut times = Vec::with_capacity(samples);
    for i in 0..samples {
        let started = Instant::now();
        let id = api
            .submit(agent_type, json!({"prompt": format!("single {i}")}))
            .await?;
        let view = api.task(id, Some(Duration::from_secs(30))).await?;
        anyhow::ensure!(
            view.state == herd_protocol::TaskState::Succeeded,
            "a single {agent_type} task ended {:?}",
            view.state
        );
        times.push(started.elapsed());
    }
    times.sort();
    Ok(times[times.len() / 2].as_secs_f64() * 1000.0)
}

/// Prints the figures.
pub fn print(figures: &LlmFigures) {
    println!("herd bench llm — the llm handler against the stand-in provider (answers at once)");
    println!(
        "  throughput, no provider limit: chat {:.0} tasks/s, echo {:.0} tasks/s",
        figures.llm_tasks_per_s, figures.echo_tasks_per_s
    );
    println!(
        "  single task submit→complete, median: chat {:.2} ms, echo {:.2} ms → the handler adds {:.2} ms",
        figures.llm_p50_ms,
        figures.echo_p50_ms,
        figures.llm_p50_ms - figures.echo_p50_ms
    );
    if figures.allowed_per_minute > 0 {
        println!(
            "  provider limit {} requests/min, backlog of twice that: first minute {} requests ({:.3} of the limit); busiest 60 s window {}",
            figures.allowed_per_minute,
            figures.achieved_first_minute,
            figures.achieved_first_minute as f64 / f64::from(figures.allowed_per_minute),
            figures.busiest_minute
        );
    }
}
