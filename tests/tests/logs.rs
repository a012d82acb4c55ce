//! Structured logs: with `LOG_FORMAT=json` every line of every node is a
//! JSON object naming the node, lines about a task carry `task_id` and
//! `agent_type`, and no secret (the cluster cookie, a handler's API token)
//! appears in any log line or API answer.

use std::time::Duration;

use herd_protocol::TaskState;
use herd_tests::{DEADLINE, temp_dir, three_node_cluster_with, with_deadline, write_config};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_node_task_and_type_and_no_secret_leaks() {
    with_deadline(DEADLINE, async {
        let dir = temp_dir("logs").unwrap();
        let token = format!("tok-{}", std::process::id() * 7919);
        let config = write_config(
            dir.path(),
            "herd.toml",
            r#"
[agents.noisy]
handler = "exec"
command = ["sh", "-c", "echo 'the model refused' >&2; exit 1"]
max_attempts = 1

[agents.llm]
handler = "http"
url = "http://127.0.0.1:9/v1/run"
headers = { Authorization = "Bearer ${LLM_TOKEN}" }
max_attempts = 1
"#,
        );
        let mut cluster = three_node_cluster_with(
            2,
            &config,
            &[
                ("LOG_FORMAT", "json"),
                ("LOG_LEVEL", "debug"),
                ("LLM_TOKEN", &token),
            ],
        )
        .await;
        let api = cluster.api("n1");
        let noisy = api.submit("noisy", json!({ "q": 1 })).await.unwrap();
        let llm = api.submit("llm", json!({ "prompt": "hi" })).await.unwrap();
        for id in [noisy, llm] {
            let view = api.task(id, Some(Duration::from_secs(20))).await.unwrap();
            assert_eq!(view.state, TaskState::Dead, "{view:?}");
        }

        // API answers, including errors, never hold a secret.
        let mut answers = Vec::new();
        for path in [
            format!("/v1/tasks/{noisy}"),
            format!("/v1/tasks/{llm}"),
            "/v1/dead-letters".to_string(),
            "/v1/cluster".to_string(),
            "/health".to_string(),
            "/v1/tasks/oops".to_string(),
            "/v1/nowhere".to_string(),
        ] {
            let (_, body) = api.get_json(&path).await.unwrap();
            answers.push(body.to_string());
        }
        let (_, metrics) = api.get_text("/metrics").await.unwrap();
        answers.push(metrics);
        for answer in &answers {
            assert!(!answer.contains(&token), "the API token leaked: {answer}");
            assert!(
                !answer.contains(&cluster.cookie),
                "the cookie leaked: {answer}"
            );
        }

        cluster.stop().await;
        let mut task_lines = 0;
        for node in &cluster.nodes {
            let name = node.spec.name.clone();
            let text = node.log_text();
            assert!(!text.contains(&token), "{name}'s log holds the API token");
            assert!(
                !text.contains(&cluster.cookie),
                "{name}'s log holds the cookie"
            );
            let mut lines = 0;
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let value: Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("{name}: not a JSON line ({e}): {line}"));
                assert_eq!(value["node"], json!(name), "{line}");
                assert!(
                    value["timestamp"].is_string() && value["level"].is_string(),
                    "{line}"
                );
                if value["task_id"] == json!(noisy.to_string()) {
                    assert_eq!(value["agent_type"], json!("noisy"), "{line}");
                    task_lines += 1;
                }
                lines += 1;
            }
            assert!(lines > 5, "{name} logged only {lines} lines");
        }
        // The orchestrator logs the death, the worker the failed attempt.
        assert!(task_lines >= 2, "expected lines about task {noisy}");
    })
    .await;
}
