//! LLM agent types against the stand-in provider (`herd dev llm-stub`, a real
//! process): the cluster-wide provider budget, `Retry-After`, fallback
//! providers, a refused key, and token accounting. Never a real provider.

use std::time::Duration;

use herd_node::llm_stub_process::LlmStubProcess;
use herd_protocol::{TaskState, TaskView};
use herd_tests::{
    ApiClient, DEADLINE, LocalCluster, all_tasks, eventually, temp_dir, three_node_cluster_with,
    wait_finished, with_deadline, write_config,
};
use serde_json::{Value, json};

/// One `llm` agent type `chat` calling provider `primary` (and `backup`
/// when `fallback` is set), plus whatever `extra` adds.
fn config(primary: &str, extra: &str) -> String {
    format!(
        r#"
[providers.primary]
base_url = "${{HERD_TEST_PRIMARY_URL}}"
api_key = "${{HERD_TEST_LLM_KEY}}"
model = "stub-model"
{primary}

[agents.chat]
handler = "llm"
provider = "primary"
max_tokens = 64
{extra}
"#
    )
}

async fn start(
    config_text: &str,
    primary: &LlmStubProcess,
    env: &[(&str, &str)],
) -> (LocalCluster, herd_tests::TempDir) {
    let dir = temp_dir("llm").unwrap();
    let path = write_config(dir.path(), "llm.toml", config_text);
    let url = primary.base_url();
    let mut all_env = vec![
        ("HERD_TEST_PRIMARY_URL", url.as_str()),
        ("HERD_TEST_LLM_KEY", "test-key"),
    ];
    all_env.extend_from_slice(env);
    (three_node_cluster_with(4, &path, &all_env).await, dir)
}

/// Submits `count` chat tasks, spread over the three nodes' APIs.
async fn submit_chats(cluster: &LocalCluster, count: usize) {
    let tasks: Vec<Value> = (0..count)
        .map(|i| json!({"agent_type": "chat", "payload": {"prompt": format!("question {i}: what is {i} plus one?")}}))
        .collect();
    for (index, chunk) in tasks.chunks(count.div_ceil(3)).enumerate() {
        let api = cluster.api(["n1", "n2", "n3"][index % 3]);
        api.submit_batch(chunk).await.expect("tasks are accepted");
    }
}

fn stat(stats: &Value, key: &str) -> u64 {
    stats[key]
        .as_u64()
        .unwrap_or_else(|| panic!("the stub's stats have no {key}: {stats}"))
}

/// The sum of a counter over every node's `/metrics`, for series whose
/// labels contain all of `labels`.
async fn counter_sum(cluster: &LocalCluster, metric: &str, labels: &[&str]) -> f64 {
    let mut sum = 0.0;
    for node in ["n1", "n2", "n3"] {
        let (_, text) = cluster.api(node).get_text("/metrics").await.unwrap();
        for line in text.lines() {
            if line.starts_with(&format!("{metric}{{"))
                && labels.iter().all(|label| line.contains(label))
            {
                sum += line
                    .rsplit(' ')
                    .next()
                    .and_then(|v| v.parse::<f64>().ok())
                    .unwrap_or(0.0);
            }
        }
    }
    sum
}

fn result_of(task: &TaskView) -> Value {
    task.result
        .as_ref()
        .unwrap_or_else(|| panic!("task {} has no result: {task:?}", task.id))
        .decode()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_together_stay_within_the_providers_requests_per_minute() {
    with_deadline(DEADLINE, async {
        const LIMIT: u64 = 400;
        const TASKS: u64 = 500;
        let stub = LlmStubProcess::start("127.0.0.1:0", &["--api-key", "test-key"])
            .await
            .unwrap();
        let (mut cluster, _dir) = start(
            &config(
                &format!("requests_per_minute = {LIMIT}\nmax_concurrent = 24"),
                "",
            ),
            &stub,
            &[],
        )
        .await;
        let api = cluster.api("n2");
        submit_chats(&cluster, TASKS as usize).await;

        // The first minute's budget is spent long before the backlog is:
        // the rest wait, pending, and say for which provider and why.
        let waiting = eventually(
            Duration::from_secs(60),
            "a pending chat task says it waits for the provider",
            || {
                let api = api.clone();
                async move {
                    let page = api
                        .list("state=pending&agent_type=chat&limit=1")
                        .await
                        .ok()?;
                    page.tasks.first()?.waiting_for.clone()
                }
            },
        )
        .await;
        assert!(
            waiting.contains("\"primary\"") && waiting.contains("requests_per_minute"),
            "{waiting}"
        );
        let status = api.cluster().await.unwrap();
        let provider = &status.providers[0];
        assert_eq!(provider.name, "primary");
        assert_eq!(provider.requests_per_minute, Some(LIMIT as u32));
        assert!(provider.requests_last_minute <= LIMIT, "{provider:?}");

        // The second minute's budget finishes the rest.
        wait_finished(&api, TASKS, Duration::from_secs(150)).await;
        let tasks = all_tasks(&api).await;
        assert_eq!(tasks.len() as u64, TASKS);
        let mut view_tokens = 0;
        for task in &tasks {
            assert_eq!(task.state, TaskState::Succeeded, "{task:?}");
            let result = result_of(task);
            assert_eq!(result["provider"], "primary", "{result}");
            assert!(
                result["content"].as_str().is_some_and(|c| !c.is_empty()),
                "{result}"
            );
            let tokens = task.tokens.expect("a succeeded llm task shows its tokens");
            assert_eq!(result["usage"]["prompt_tokens"], tokens.prompt_tokens);
            view_tokens += tokens.prompt_tokens + tokens.completion_tokens;
        }

        let stats = stub.stats().await.unwrap();
        assert_eq!(
            stat(&stats, "requests"),
            TASKS,
            "every task called once: {stats}"
        );
        // The stub's arrival clock differs from the orchestrator's by the
        // dispatch delay (milliseconds): a tolerance of 1 %.
        let busiest = stat(&stats, "max_requests_in_any_60s_window");
        assert!(
            busiest <= LIMIT + LIMIT / 100,
            "the provider saw {busiest} requests in one minute; the limit is {LIMIT}"
        );
        assert!(
            stats["by_status"].get("429").is_none(),
            "no call was refused for the provider's own limit: {stats}"
        );

        // Tokens: what the provider billed = herd's metrics = task views.
        let billed = stat(&stats, "prompt_tokens") + stat(&stats, "completion_tokens");
        assert_eq!(view_tokens, billed);
        let metered = eventually(
            Duration::from_secs(10),
            "every node's token counter is exported",
            || {
                let cluster = &cluster;
                async move {
                    let sum =
                        counter_sum(cluster, "herd_llm_tokens_total", &["provider=\"primary\""])
                            .await;
                    (sum as u64 == billed).then_some(sum)
                }
            },
        )
        .await;
        assert_eq!(metered as u64, billed);
        let requests = counter_sum(&cluster, "herd_llm_requests_total", &["status=\"ok\""]).await;
        assert_eq!(requests as u64, TASKS);
        cluster.stop().await;
        stub.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_pauses_the_provider_for_the_whole_cluster() {
    with_deadline(DEADLINE, async {
        let stub = LlmStubProcess::start("127.0.0.1:0", &[]).await.unwrap();
        stub.add_fault(&json!({"status": 429, "count": 3, "retry_after_s": 2}))
            .await
            .unwrap();
        let (mut cluster, _dir) = start(&config("max_concurrent = 3", ""), &stub, &[]).await;
        let api = cluster.api("n1");
        submit_chats(&cluster, 30).await;
        wait_finished(&api, 30, Duration::from_secs(60)).await;
        for task in all_tasks(&api).await {
            assert_eq!(task.state, TaskState::Succeeded, "{task:?}");
        }
        let stats = stub.stats().await.unwrap();
        let refused: Vec<u64> = stats["rate_limited_responses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(refused.len(), 3, "{stats}");
        let first = refused[0];
        let arrivals: Vec<u64> = stats["arrivals_ms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        // Calls already granted when the 429 came may still arrive within a
        // moment; after that nothing until Retry-After has passed.
        let during_pause: Vec<u64> = arrivals
            .iter()
            .filter(|at| **at > first + 300 && **at < first + 1_950)
            .map(|at| at - first)
            .collect();
        assert!(
            during_pause.is_empty(),
            "requests reached the provider during its Retry-After pause, at +{during_pause:?} ms"
        );
        assert_eq!(stat(&stats, "requests"), 33, "30 successes and 3 refusals");
        cluster.stop().await;
        stub.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_primary_sends_calls_to_the_fallback_provider() {
    with_deadline(DEADLINE, async {
        let primary = LlmStubProcess::start("127.0.0.1:0", &[]).await.unwrap();
        primary
            .add_fault(&json!({"status": 500, "count": null}))
            .await
            .unwrap();
        let backup = LlmStubProcess::start("127.0.0.1:0", &[]).await.unwrap();
        let backup_url = backup.base_url();
        let text = config(
            "circuit_failures = 3\ncircuit_recovery_s = 120",
            r#"fallback = ["backup"]

[providers.backup]
base_url = "${HERD_TEST_BACKUP_URL}"
model = "backup-model""#,
        );
        let (mut cluster, _dir) = start(
            &text,
            &primary,
            &[("HERD_TEST_BACKUP_URL", backup_url.as_str())],
        )
        .await;
        let api = cluster.api("n3");
        submit_chats(&cluster, 20).await;
        wait_finished(&api, 20, Duration::from_secs(60)).await;
        for task in all_tasks(&api).await {
            assert_eq!(task.state, TaskState::Succeeded, "{task:?}");
            let result = result_of(&task);
            assert_eq!(result["provider"], "backup", "{result}");
            assert_eq!(result["model"], "backup-model", "{result}");
        }
        let failed = primary.stats().await.unwrap();
        assert!(
            failed["by_status"]["500"].as_u64().unwrap_or(0) >= 1,
            "{failed}"
        );
        assert_eq!(stat(&backup.stats().await.unwrap(), "requests"), 20);
        let status = api.cluster().await.unwrap();
        let primary_status = status
            .providers
            .iter()
            .find(|p| p.name == "primary")
            .unwrap();
        assert_eq!(
            primary_status.circuit,
            herd_protocol::messages::orchestrator::CircuitStatus::Open,
            "{primary_status:?}"
        );
        cluster.stop().await;
        primary.stop().await;
        backup.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_key_is_fatal_and_never_shown() {
    with_deadline(DEADLINE, async {
        const WRONG_KEY: &str = "sk-wrong-0123456789abcdef";
        let stub = LlmStubProcess::start("127.0.0.1:0", &["--api-key", "the-right-key"])
            .await
            .unwrap();
        let (mut cluster, _dir) =
            start(&config("", ""), &stub, &[("HERD_TEST_LLM_KEY", WRONG_KEY)]).await;
        let api: ApiClient = cluster.api("n2");
        let id = api
            .submit("chat", json!({"prompt": "hello"}))
            .await
            .unwrap();
        let task = eventually(Duration::from_secs(30), "the task is dead", || {
            let api = api.clone();
            async move {
                let task = api.task(id, None).await.ok()?;
                (task.state == TaskState::Dead).then_some(task)
            }
        })
        .await;
        assert_eq!(task.attempts, 1, "a refused key is not retried: {task:?}");
        let error = task.error.expect("a dead task says why");
        assert!(error.message.contains("API key"), "{}", error.message);
        assert!(!error.message.contains(WRONG_KEY), "{}", error.message);
        // The stub echoed the key in its 401 body; no node logged it.
        assert!(
            !cluster.log_tails().contains(WRONG_KEY),
            "a node log contains the key"
        );
        for node in ["n1", "n2", "n3"] {
            assert!(!cluster.node(node).log_text().contains(WRONG_KEY));
            let (_, metrics) = cluster.api(node).get_text("/metrics").await.unwrap();
            assert!(!metrics.contains(WRONG_KEY));
        }
        assert_eq!(
            counter_sum(
                &cluster,
                "herd_llm_requests_total",
                &["status=\"auth_rejected\""]
            )
            .await,
            1.0
        );
        cluster.stop().await;
        stub.stop().await;
    })
    .await;
}
