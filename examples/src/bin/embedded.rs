//! herd inside another service: an axum app that starts a herd node in its
//! own process, registers a custom `TaskHandler`, and serves an endpoint that
//! runs a task on the cluster and returns its result.
//!
//! Run: `cargo run -p herd-examples --bin embedded`, then
//! `curl -XPOST localhost:3000/summarize -d 'the quick brown fox'`.
//! `-- --demo` sends a few requests to itself, prints the answers and exits.
//! Other nodes can join this one: point their `--seed` at 127.0.0.1:7300.

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use herd_actors::{HandlerError, HerdNode, NodeHandle, TaskHandler, TaskInput, TaskOutput};
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let demo = std::env::args().any(|arg| arg == "--demo");
    let node = HerdNode::builder()
        .name("embedded-1")
        .cookie(
            &std::env::var("HERD_COOKIE").unwrap_or_else(|_| "embedded-demo-cookie".to_string()),
        )
        .listen("127.0.0.1:7300")
        .workers(4)
        .handler_with_weight("summarize", 0.8, Summarizer)
        .start()
        .await?;
    let handle = node.handle();
    handle.wait_until_ready(Duration::from_secs(10)).await?;

    let app = Router::new()
        .route("/summarize", post(summarize))
        .route("/cluster", get(cluster))
        .with_state(handle.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("embedded herd node up; POST http://127.0.0.1:3000/summarize");

    if demo {
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        for text in [
            "the quick brown fox jumps over the lazy dog",
            "herd runs agents on a cluster",
        ] {
            let answer = post_text("http://127.0.0.1:3000/summarize", text).await?;
            println!("{text:?} -> {answer}");
        }
        server.abort();
    } else {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
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
        .body(text.to_string())
        .send()
        .await?;
    Ok(response.json().await?)
}
