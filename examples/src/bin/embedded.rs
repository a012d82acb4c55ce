//! herd inside another service: an axum app that starts a herd node in its
//! own process, registers a custom `TaskHandler`, and serves an endpoint that
//! runs a task on the cluster and returns its result.
//!
//! Run: `cargo run -p herd-examples --bin embedded`, then
//! `curl -XPOST localhost:3000/summarize -d 'the quick brown fox'`.
//! `-- --demo` sends a few requests to itself, prints the answers and exits.
//!
//! Alone it starts a one-node cluster (orchestrator and workers) on
//! 127.0.0.1:7300. Given seeds it joins an existing cluster, as a service
//! would in production: it adds worker slots for `summarize` (the cluster's
//! orchestrator must declare that type, e.g. `[agents.summarize]` with
//! `handler = "custom"`) and submits through the cluster's orchestrator:
//!
//! ```text
//! HERD_COOKIE=… cargo run -p herd-examples --bin embedded -- \
//!     --name api-1 --listen 127.0.0.1:7310 --http 127.0.0.1:3010 \
//!     --seed 127.0.0.1:7101 --seed 127.0.0.1:7102
//! ```
//!
//! Each flag has a variable: `HERD_NAME`, `HERD_LISTEN`, `HERD_SEEDS`
//! (comma-separated), `EMBEDDED_HTTP`; the node reads the other `HERD_*`
//! variables too (`HERD_COOKIE`, `HERD_ROLES`, `HERD_ADVERTISE`, …). Flags
//! beat variables, which beat the defaults.

use std::time::Duration;

use anyhow::{Context, bail};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use herd_actors::{HandlerError, HerdNode, NodeHandle, TaskHandler, TaskInput, TaskOutput};
use herd_protocol::messages::membership::Role;
use herd_protocol::{JsonText, TaskSpec, TaskState};
use serde::Deserialize;
use serde_json::{Value, json};

/// A custom agent: counts words and reports a toy quality score.
struct Summarizer;

#[derive(Deserialize)]
struct SummarizeRequest {
    text: String,
}

#[async_trait::async_trait]
impl TaskHandler for Summarizer {
    async fn handle(&self, input: TaskInput) -> Result<TaskOutput, HandlerError> {
        let SummarizeRequest { text } = input.payload_as()?;
        if text.trim().is_empty() {
            return Err(HandlerError::Fatal(
                "nothing to summarise: the text is empty".into(),
            ));
        }
        let words: Vec<&str> = text.split_whitespace().collect();
        let summary = words.iter().take(5).copied().collect::<Vec<_>>().join(" ");
        let score = (words.len() as f64 / 100.0).min(1.0);
        Ok(
            TaskOutput::json(&json!({ "words": words.len(), "summary": summary }))?
                .with_score(score),
        )
    }
}

async fn summarize(
    State(node): State<NodeHandle>,
    body: String,
) -> (StatusCode, axum::Json<Value>) {
    let spec = TaskSpec::new(
        "summarize",
        JsonText::from_value(&json!({ "text": body })).expect("a string serialises"),
    );
    match node.run(spec, Duration::from_secs(30)).await {
        Ok(view) if view.state == TaskState::Succeeded => {
            let result: Value = view
                .result
                .and_then(|r| r.decode().ok())
                .unwrap_or(Value::Null);
            (
                StatusCode::OK,
                axum::Json(
                    json!({ "task": view.id.to_string(), "result": result, "node": view.node }),
                ),
            )
        }
        Ok(view) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            axum::Json(
                json!({ "task": view.id.to_string(), "state": view.state, "error": view.error }),
            ),
        ),
        Err(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({ "error": error.to_string() })),
        ),
    }
}

async fn cluster(
    State(node): State<NodeHandle>,
) -> Result<axum::Json<Value>, (StatusCode, String)> {
    let status = node
        .cluster()
        .await
        .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    Ok(axum::Json(
        serde_json::to_value(status).expect("status serialises"),
    ))
}

/// The command line: each flag beats its variable.
#[derive(Default)]
struct Flags {
    name: Option<String>,
    listen: Option<String>,
    seeds: Vec<String>,
    http: Option<String>,
    demo: bool,
}

const USAGE: &str = "usage: embedded [--name NAME] [--listen IP:PORT] [--seed HOST:PORT]... [--http IP:PORT] [--demo]";

fn parse_flags() -> anyhow::Result<Flags> {
    let mut flags = Flags::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .with_context(|| format!("{arg} needs a value; {USAGE}"))
        };
        match arg.as_str() {
            "--name" => flags.name = Some(value()?),
            "--listen" => flags.listen = Some(value()?),
            "--seed" => flags.seeds.push(value()?),
            "--http" => flags.http = Some(value()?),
            "--demo" => flags.demo = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}; {USAGE}"),
        }
    }
    Ok(flags)
}

/// True if the variable is set to something.
fn is_set(variable: &str) -> bool {
    std::env::var(variable).is_ok_and(|value| !value.trim().is_empty())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let flags = parse_flags()?;
    // The node reads HERD_* variables (and a HERD_CONFIG file); the flags,
    // set on the builder, beat them; the standalone defaults fill what
    // neither says.
    let mut builder = HerdNode::builder().with_process_env();
    builder = builder.handler_with_weight("summarize", 0.8, Summarizer);
    let from_file = is_set("HERD_CONFIG");
    let unset = |variable: &str| !is_set(variable) && !from_file;
    let name = flags.name.as_deref();
    if let Some(name) = name.or(unset("HERD_NAME").then_some("embedded-1")) {
        builder = builder.name(name);
    }
    let listen = flags.listen.as_deref();
    if let Some(listen) = listen.or(unset("HERD_LISTEN").then_some("127.0.0.1:7300")) {
        builder = builder.listen(listen);
    }
    if unset("HERD_COOKIE") {
        builder = builder.cookie("embedded-demo-cookie-not-secret");
    }
    if unset("HERD_WORKERS") {
        builder = builder.workers(4);
    }
    for seed in &flags.seeds {
        builder = builder.seed(seed);
    }
    // Joining a cluster, this service adds workers and leaves the
    // orchestrator's role to the cluster's own.
    let joining = !flags.seeds.is_empty() || is_set("HERD_SEEDS");
    if joining && !is_set("HERD_ROLES") {
        builder = builder.roles(&[Role::Worker, Role::Monitor]);
    }
    let node = builder.start().await?;
    let handle = node.handle();
    handle.wait_until_ready(Duration::from_secs(10)).await?;

    let app = Router::new()
        .route("/summarize", post(summarize))
        .route("/cluster", get(cluster))
        .with_state(handle.clone());
    let http = match flags.http {
        Some(address) => address,
        None => std::env::var("EMBEDDED_HTTP").unwrap_or_else(|_| "127.0.0.1:3000".to_string()),
    };
    let listener = tokio::net::TcpListener::bind(&http).await?;
    let url = format!("http://{}", listener.local_addr()?);
    let config = handle.config();
    // herd's server, not bare axum::serve: it caps connections and drops
    // clients that never finish their headers ([http] in the config).
    let http_settings = config.http_server.clone();
    println!(
        "embedded herd node {} up (cluster {}); POST {url}/summarize",
        config.name, config.listen
    );

    if flags.demo {
        let server = tokio::spawn(async move {
            herd_node::http_server::serve(listener, app, &http_settings, std::future::pending())
                .await
        });
        for text in [
            "the quick brown fox jumps over the lazy dog",
            "herd runs agents on a cluster",
        ] {
            let answer = post_text(&format!("{url}/summarize"), text).await?;
            println!("{text:?} -> {answer}");
        }
        let status = handle.cluster().await?;
        let nodes: Vec<&str> = status.nodes.iter().map(|n| n.name.as_str()).collect();
        println!(
            "cluster: orchestrator {}, nodes {}",
            status.orchestrator,
            nodes.join(", ")
        );
        server.abort();
    } else {
        herd_node::http_server::serve(listener, app, &http_settings, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    }
    node.shutdown().await;
    Ok(())
}

async fn post_text(url: &str, text: &str) -> anyhow::Result<Value> {
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(text.to_string())
        .send()
        .await?;
    Ok(response.json().await?)
}
