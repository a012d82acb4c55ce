//! A node embedded in this test process, driven through the library API.
//! ractor's process groups are process-global, so one test function runs
//! every scenario against one node.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use herd_actors::runtime::StartError;
use herd_actors::{HandlerError, HerdNode, TaskHandler, TaskInput, TaskOutput};
use herd_protocol::messages::orchestrator::CancelOutcome;
use herd_protocol::{FailureKind, JsonText, TaskSpec, TaskState};
use serde_json::json;

/// Fails with a retryable error until its third attempt.
struct Flaky(Arc<AtomicU32>);

#[async_trait::async_trait]
impl TaskHandler for Flaky {
    async fn handle(&self, input: TaskInput) -> Result<TaskOutput, HandlerError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        if input.attempt < 3 {
            return Err(HandlerError::Retryable(format!(
                "busy on attempt {}",
                input.attempt
            )));
        }
        TaskOutput::json(&json!({ "attempt": input.attempt }))
    }
}

/// Panics on payload `"boom"`, refuses `"bad"`, answers otherwise.
struct Picky;

#[async_trait::async_trait]
impl TaskHandler for Picky {
    async fn handle(&self, input: TaskInput) -> Result<TaskOutput, HandlerError> {
        match input.payload.as_str() {
            "\"boom\"" => panic!("handler crashed on purpose"),
            "\"bad\"" => Err(HandlerError::Fatal("bad input".into())),
            "\"slow\"" => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                TaskOutput::json(&"slow")
            }
            _ => Ok(TaskOutput::raw(input.payload).with_score(0.75)),
        }
    }
}

fn payload(value: serde_json::Value) -> JsonText {
    JsonText::from_value(&value).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_node_runs_custom_handlers_through_the_handle() {
    // A config naming a custom handler that the program forgot to register.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("node.toml");
    std::fs::write(&config, "[agents.picky]\nhandler = \"custom\"\n").unwrap();
    let missing = HerdNode::builder()
        .name("lib-0")
        .cookie("c-cookie-for-this-test")
        .listen("127.0.0.1:0")
        .config_file(&config)
        .start()
        .await;
    match missing {
        Err(StartError::Handlers(error)) => assert!(
            error
                .to_string()
                .contains("register one with HerdNodeBuilder::handler"),
            "{error}"
        ),
        other => panic!("expected a missing-handler error, got {:?}", other.err()),
    }

    let flaky_calls = Arc::new(AtomicU32::new(0));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let node = HerdNode::builder()
        .name("lib-1")
        .cookie("library-test-cookie")
        .listen(&format!("127.0.0.1:{port}"))
        .workers(3)
        .handler("flaky", Flaky(flaky_calls.clone()))
        .handler_with_weight("picky", 0.7, Picky)
        .start()
        .await
        .expect("node starts");
    let handle = node.handle();
    handle
        .wait_until_ready(Duration::from_secs(10))
        .await
        .expect("ready");

    // A plain success through a built-in handler, with its score.
    let view = handle
        .run(
            TaskSpec::new("echo", payload(json!({ "x": 1 }))),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(view.state, TaskState::Succeeded);
    assert_eq!(view.result.unwrap().as_str(), "{\"x\":1}");
    let view = handle
        .run(
            TaskSpec::new("picky", payload(json!("fine"))),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!((view.state, view.score), (TaskState::Succeeded, Some(0.75)));

    // Retryable errors are retried with backoff until the handler succeeds.
    let view = handle
        .run(
            TaskSpec::new("flaky", payload(json!(null))),
            Duration::from_secs(20),
        )
        .await
        .unwrap();
    assert_eq!(view.state, TaskState::Succeeded, "{view:?}");
    assert_eq!(view.attempts, 3);
    assert_eq!(flaky_calls.load(Ordering::SeqCst), 3);

    // A fatal error is dead at once, with the handler's message.
    let view = handle
        .run(
            TaskSpec::new("picky", payload(json!("bad"))),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(view.state, TaskState::Dead);
    assert_eq!(view.attempts, 1);
    let error = view.error.unwrap();
    assert_eq!(
        (error.kind, error.message.as_str()),
        (FailureKind::Fatal, "bad input")
    );

    // A panicking handler crashes its worker: the pool replaces the worker,
    // the task is retried, and after two crashes it is dead as poison.
    let view = handle
        .run(
            TaskSpec::new("picky", payload(json!("boom"))),
            Duration::from_secs(20),
        )
        .await
        .unwrap();
    assert_eq!(view.state, TaskState::Dead, "{view:?}");
    let error = view.error.unwrap();
    assert_eq!(error.kind, FailureKind::Crash);
    assert!(
        error
            .message
            .starts_with("poison task: it crashed 2 workers"),
        "{}",
        error.message
    );
    // The replaced workers serve new tasks.
    for i in 0..6 {
        let view = handle
            .run(
                TaskSpec::new("echo", payload(json!(i))),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
        assert_eq!(view.state, TaskState::Succeeded);
    }

    // A time limit cancels the attempt.
    let mut slow = TaskSpec::new("picky", payload(json!("slow")));
    slow.timeout_s = Some(1);
    slow.max_attempts = Some(1);
    let view = handle.run(slow, Duration::from_secs(20)).await.unwrap();
    assert_eq!(
        (view.state, view.error.unwrap().kind),
        (TaskState::Dead, FailureKind::Timeout)
    );

    // Cancelling a running task stops it.
    let ack = handle
        .submit(TaskSpec::new("picky", payload(json!("slow"))))
        .await
        .unwrap();
    let running = async {
        loop {
            if handle.task(ack.id).await.unwrap().unwrap().state == TaskState::Running {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("the slow task starts");
    assert_eq!(
        handle.cancel(ack.id).await.unwrap(),
        CancelOutcome::Cancelled
    );
    assert_eq!(
        handle
            .wait_for(ack.id, Duration::from_secs(5))
            .await
            .unwrap()
            .state,
        TaskState::Cancelled
    );

    // The cluster summary reflects all of it.
    let status = handle.cluster().await.unwrap();
    assert_eq!(status.orchestrator.as_str(), "lib-1");
    assert_eq!(status.nodes.len(), 1);
    let picky = &status.agents[&"picky".into()];
    assert_eq!(picky.configured_weight, 0.7);
    // Current weights are shares of the slots: configured weights normalized.
    let configured: f64 = status.agents.values().map(|a| a.configured_weight).sum();
    assert!((picky.weight - 0.7 / configured).abs() < 1e-9, "{status:?}");
    assert_eq!(status.tasks.succeeded, 9);
    assert_eq!(status.tasks.dead, 3);
    assert_eq!(status.tasks.cancelled, 1);

    node.shutdown().await;
}
