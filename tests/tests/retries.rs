//! Retries, the dead-letter queue, circuit breakers and time limits, through
//! real processes running `exec` handlers.

use std::time::Duration;

use herd_protocol::messages::orchestrator::CircuitStatus;
use herd_protocol::{FailureKind, TaskState};
use herd_tests::{
    ApiClientError, DEADLINE, LocalCluster, eventually, temp_dir, three_node_cluster_with,
    wait_finished, with_deadline, write_config,
};
use serde_json::json;

fn config(marker: &std::path::Path) -> String {
    format!(
        r#"
[agents.picky]
handler = "exec"
command = ["sh", "-c", "read -r p; case \"$p\" in *fixed*) echo '{{\"ok\": true}}';; *) echo 'payload is not fixed' >&2; exit 3;; esac"]
retry = "linear"
retry_delay_s = 0.05
max_attempts = 2

[agents.dependent]
handler = "exec"
command = ["sh", "-c", "test -f {marker} && echo '{{}}' || {{ echo 'dependency down' >&2; exit 1; }}"]
retry = "linear"
retry_delay_s = 0.05
max_attempts = 50
circuit_failures = 3
circuit_recovery_s = 1
circuit_half_open_trials = 1

[agents.slow]
handler = "exec"
command = ["sleep", "30"]
timeout_s = 1
max_attempts = 1

[agents.echo]
handler = "echo"
"#,
        marker = marker.display()
    )
}

async fn cluster_with(dir: &std::path::Path) -> LocalCluster {
    let path = write_config(dir, "agents.toml", &config(&dir.join("healthy")));
    three_node_cluster_with(4, &path, &[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_task_goes_to_the_dead_letter_queue_and_is_retried_with_a_new_payload() {
    with_deadline(DEADLINE, async {
        let dir = temp_dir("dlq").unwrap();
        let mut cluster = cluster_with(dir.path()).await;
        let api = cluster.api("n2");
        let id = api.submit("picky", json!({ "draft": 1 })).await.unwrap();
        let view = api.task(id, Some(Duration::from_secs(20))).await.unwrap();
        assert_eq!(
            (view.state, view.attempts),
            (TaskState::Dead, 2),
            "{view:?}"
        );
        let error = view.error.unwrap();
        assert_eq!(error.kind, FailureKind::Retryable);
        assert!(
            error.message.contains("gave up after 2 attempts")
                && error.message.contains("payload is not fixed"),
            "{}",
            error.message
        );

        let dead = api.dead_letters("limit=10").await.unwrap();
        assert_eq!(
            dead.tasks.iter().map(|t| t.id).collect::<Vec<_>>(),
            vec![id]
        );
        // The command line shows it too.
        let herd = herd_node::local_cluster::herd_binary().unwrap();
        let listed = std::process::Command::new(&herd)
            .args(["dlq", "list", "--api", api.base()])
            .output()
            .unwrap();
        let listed_text = String::from_utf8_lossy(&listed.stdout);
        assert!(
            listed.status.success()
                && listed_text.contains(&id.to_string())
                && listed_text.contains("payload is not fixed"),
            "{listed_text}"
        );

        let retried = std::process::Command::new(&herd)
            .args([
                "dlq",
                "retry",
                "--api",
                api.base(),
                &id.to_string(),
                "--payload",
                r#"{"draft": 2, "fixed": true}"#,
            ])
            .output()
            .unwrap();
        assert!(
            retried.status.success(),
            "{}",
            String::from_utf8_lossy(&retried.stderr)
        );
        assert!(String::from_utf8_lossy(&retried.stdout).contains("is pending again"));
        let view = api.task(id, Some(Duration::from_secs(20))).await.unwrap();
        assert_eq!(view.state, TaskState::Succeeded, "{view:?}");
        assert_eq!(view.result.unwrap().as_str().trim(), "{\"ok\": true}");
        assert!(api.dead_letters("limit=10").await.unwrap().tasks.is_empty());
        match api.retry_dead_letter(id, None).await {
            Err(ApiClientError::Api {
                status: 409, code, ..
            }) => assert_eq!(code, "not_dead"),
            other => panic!("expected 409, got {other:?}"),
        }
        cluster.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_circuit_holds_tasks_back_until_the_dependency_recovers() {
    with_deadline(DEADLINE, async {
        let dir = temp_dir("circuit").unwrap();
        let mut cluster = cluster_with(dir.path()).await;
        let api = cluster.api("n1");
        let tasks: Vec<_> = (0..10)
            .map(|i| json!({ "agent_type": "dependent", "payload": i }))
            .collect();
        api.submit_batch(&tasks).await.unwrap();
        // Failures open the circuit; the tasks wait instead of failing for good.
        let status = eventually(
            Duration::from_secs(20),
            "the circuit opens while tasks wait",
            || {
                let api = api.clone();
                async move {
                    let status = api.cluster().await.ok()?;
                    let agent = status.agents.get(&"dependent".into())?;
                    (agent.circuit == CircuitStatus::Open && agent.queue_depth > 0)
                        .then_some(status)
                }
            },
        )
        .await;
        assert_eq!(
            status.tasks.dead, 0,
            "tasks must wait, not fail, while the circuit is open"
        );
        // Other types are unaffected.
        let echo = api.submit("echo", json!("still flows")).await.unwrap();
        assert_eq!(
            api.task(echo, Some(Duration::from_secs(10)))
                .await
                .unwrap()
                .state,
            TaskState::Succeeded
        );
        // The dependency recovers: a trial succeeds, the circuit closes, all run.
        std::fs::write(dir.path().join("healthy"), "").unwrap();
        let status = wait_finished(&api, 11, Duration::from_secs(60)).await;
        assert_eq!(status.tasks.succeeded, 11, "{:?}", status.tasks);
        assert_eq!(
            status.agents[&"dependent".into()].circuit,
            CircuitStatus::Closed
        );
        let log = cluster.node("n1").log_text();
        assert!(
            log.contains("circuit opened after repeated failures")
                && log.contains("circuit closed"),
            "{log}"
        );
        cluster.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_past_its_time_limit_is_stopped_and_counted_as_failed() {
    with_deadline(DEADLINE, async {
        let dir = temp_dir("timeout").unwrap();
        let mut cluster = cluster_with(dir.path()).await;
        let api = cluster.api("n3");
        let id = api.submit("slow", json!(null)).await.unwrap();
        let view = api.task(id, Some(Duration::from_secs(20))).await.unwrap();
        assert_eq!(view.state, TaskState::Dead);
        let error = view.error.unwrap();
        assert_eq!(error.kind, FailureKind::Timeout);
        assert!(
            error.message.contains("ran past its time limit of 1000 ms"),
            "{}",
            error.message
        );
        cluster.stop().await;
    })
    .await;
}
