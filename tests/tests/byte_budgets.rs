//! Bounds in bytes: no request can make a node drop a cluster session, and
//! the orchestrator's memory is bounded by bytes as well as by task counts.

use std::time::Duration;

use herd_protocol::TaskState;
use herd_protocol::messages::orchestrator::MemberState;
use herd_tests::{
    ApiClient, DEADLINE, all_tasks, eventually, post_raw, temp_dir, three_node_cluster,
    three_node_cluster_with, wait_finished, wait_until_busy, with_deadline, write_config,
};

/// A task object whose payload is exactly `payload_bytes` of JSON text: a
/// string for `echo`, `{"ms": …}` padded with spaces for `sleep`.
fn task(agent_type: &str, payload_bytes: usize, sleep_ms: u64) -> String {
    let payload = if agent_type == "sleep" {
        let head = format!("{{\"ms\": {sleep_ms}");
        format!("{head}{}}}", " ".repeat(payload_bytes - head.len() - 1))
    } else {
        format!("\"{}\"", "x".repeat(payload_bytes - 2))
    };
    format!("{{\"agent_type\": \"{agent_type}\", \"payload\": {payload}}}")
}

fn batch(tasks: impl IntoIterator<Item = String>) -> Vec<u8> {
    format!("[{}]", tasks.into_iter().collect::<Vec<_>>().join(",")).into_bytes()
}

async fn every_node_is_up(api: &ApiClient) {
    let status = api.cluster().await.expect("cluster status");
    assert_eq!(status.nodes.len(), 3, "{:?}", status.nodes);
    for node in &status.nodes {
        assert_eq!(node.state, MemberState::Up, "{:?}", status.nodes);
    }
}

/// The orchestrator's `herd_task_book_bytes` gauge.
async fn task_book_bytes(orchestrator: &ApiClient) -> Option<u64> {
    let (_, text) = orchestrator.get_text("/metrics").await.ok()?;
    // Lines carry the node's global labels: `herd_task_book_bytes{…} 123`.
    text.lines()
        .find(|line| {
            line.strip_prefix("herd_task_book_bytes")
                .is_some_and(|rest| rest.starts_with(['{', ' ']))
        })
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse::<f64>().ok())
        .map(|value| value as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_20_mb_batch_through_a_non_orchestrator_node_gets_413_and_no_node_goes_down() {
    with_deadline(DEADLINE, async {
        let mut cluster = three_node_cluster(2).await;
        let n2 = cluster.api("n2");
        let sleepers = batch((0..6).map(|_| task("sleep", 20, 60_000)));
        let (status, body, _) = post_raw(n2.base(), "/v1/tasks", sleepers).await;
        assert_eq!(status, 202, "{body}");
        wait_until_busy(&n2, "n2", Duration::from_secs(20)).await;

        // 25 tasks of 800 kB: each payload is under the 1 MiB limit, the
        // batch is 20 MB, more than one cluster frame carries.
        let big = batch((0..25).map(|_| task("echo", 800_000, 0)));
        let (status, body, _) = post_raw(n2.base(), "/v1/tasks", big).await;
        assert_eq!(status, 413, "{body}");
        assert_eq!(body["code"], "batch_too_large", "{body}");
        assert_eq!(
            body["limits"]["max_batch_bytes"],
            12 * 1024 * 1024,
            "{body}"
        );
        assert_eq!(body["limits"]["max_batch_tasks"], 10_000, "{body}");
        assert_eq!(body["batch"]["tasks"], 25, "{body}");
        assert!(
            body["batch"]["bytes"].as_u64().unwrap() > 20_000_000,
            "{body}"
        );
        let message = body["error"].as_str().unwrap();
        assert!(
            message.contains("limits.max_batch_bytes")
                && message.contains("limits.max_batch_tasks"),
            "{message}"
        );

        // Too many tasks, however small, is refused the same way.
        let many = batch((0..10_001).map(|_| task("echo", 4, 0)));
        let (status, body, _) = post_raw(n2.base(), "/v1/tasks", many).await;
        assert_eq!(status, 413, "{body}");
        assert_eq!(body["batch"]["tasks"], 10_001, "{body}");

        // n2's link to the orchestrator still works, and nothing was re-queued.
        let id = n2.submit("echo", serde_json::json!("after")).await.unwrap();
        let done = n2.task(id, Some(Duration::from_secs(20))).await.unwrap();
        assert_eq!(done.state, TaskState::Succeeded);
        every_node_is_up(&n2).await;
        let tasks = all_tasks(&n2).await;
        let sleeping: Vec<_> = tasks
            .iter()
            .filter(|t| t.agent_type.as_str() == "sleep")
            .collect();
        assert!(
            sleeping
                .iter()
                .all(|t| t.state != TaskState::Dead && t.attempts <= 1),
            "{sleeping:?}"
        );
        assert!(
            sleeping.iter().any(|t| t.state == TaskState::Running
                && t.node.as_ref().is_some_and(|n| n.as_str() == "n2")),
            "{sleeping:?}"
        );
        assert_eq!(n2.cluster().await.unwrap().tasks.dead, 0);
        cluster.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_at_the_largest_payload_limit_is_read_whole_through_a_non_orchestrator_node() {
    with_deadline(DEADLINE, async {
        let dir = temp_dir("byte-budgets-view").unwrap();
        let limit = herd_protocol::limits::MAX_CONFIGURABLE_PAYLOAD_BYTES;
        let config = write_config(
            dir.path(),
            "herd.toml",
            &format!("[limits]\nmax_payload_bytes = {limit}\n"),
        );
        let mut cluster = three_node_cluster_with(2, &config, &[]).await;
        // An echo task's view holds its payload and its result: twice the
        // limit, forwarded from the orchestrator to n2 in one frame.
        let n2 = cluster.api("n2");
        let (status, body, _) =
            post_raw(n2.base(), "/v1/tasks", task("echo", limit, 0).into_bytes()).await;
        assert_eq!(status, 202, "{body}");
        let id = body["id"].as_str().unwrap().parse().unwrap();
        let view = n2
            .task(id, Some(Duration::from_secs(60)))
            .await
            .expect("the view through n2");
        assert_eq!(view.state, TaskState::Succeeded);
        assert_eq!(view.payload.len(), limit);
        assert_eq!(view.result.as_ref().map(|r| r.len()), Some(limit));
        every_node_is_up(&n2).await;
        cluster.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_72_mb_listing_through_a_non_orchestrator_node_comes_in_pages_under_a_frame() {
    with_deadline(DEADLINE, async {
        let mut cluster = three_node_cluster(2).await;
        let n1 = cluster.api("n1");
        // 40 echo tasks of 900 kB: each view holds payload and result, 1.8 MB.
        for _ in 0..4 {
            let tasks = batch((0..10).map(|_| task("echo", 900_000, 0)));
            let (status, body, _) = post_raw(n1.base(), "/v1/tasks", tasks).await;
            assert_eq!(status, 202, "{body}");
        }
        wait_finished(&n1, 40, Duration::from_secs(60)).await;

        let n2 = cluster.api("n2");
        let mut pages = 0;
        let mut listed = Vec::new();
        let mut after = None;
        loop {
            let query = match after {
                Some(id) => format!("limit=1000&after={id}"),
                None => "limit=1000".to_string(),
            };
            let page = n2.list(&query).await.expect("a page through n2");
            pages += 1;
            assert!(
                page.tasks.len() <= 5,
                "{} tasks in one page",
                page.tasks.len()
            );
            listed.extend(page.tasks);
            match page.next_after {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert_eq!(listed.len(), 40);
        assert!(pages >= 8, "{pages} pages");
        assert!(
            listed
                .iter()
                .all(|t| t.result.as_ref().is_some_and(|r| r.len() == 900_000)),
        );
        let dead = n2.dead_letters("limit=1000").await.unwrap();
        assert!(dead.tasks.is_empty());
        every_node_is_up(&n2).await;
        cluster.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_task_book_refuses_and_evicts_by_bytes_to_stay_under_max_held_bytes() {
    const BUDGET: u64 = 64 * 1024 * 1024;
    const MB: usize = 1_000_000;
    with_deadline(DEADLINE, async {
        let dir = temp_dir("held-bytes").unwrap();
        let config = write_config(
            dir.path(),
            "limits.toml",
            &format!("[limits]\nmax_held_bytes = {BUDGET}\n"),
        );
        let mut cluster = three_node_cluster_with(2, &config, &[]).await;
        let n1 = cluster.api("n1");
        let n2 = cluster.api("n2");

        // Sleepers of 1 MB that do not finish: the 68th cannot fit.
        let mut refused = None;
        let mut sleepers = 0;
        for _ in 0..80 {
            let (status, body, retry_after) = post_raw(
                n2.base(),
                "/v1/tasks",
                task("sleep", MB, 120_000).into_bytes(),
            )
            .await;
            if status == 202 {
                sleepers += 1;
                continue;
            }
            refused = Some((status, body, retry_after));
            break;
        }
        let (status, body, retry_after) = refused.expect("a submission is refused by bytes");
        assert_eq!(status, 429, "{body}");
        assert_eq!(body["code"], "over_byte_budget", "{body}");
        assert_eq!(body["max_held_bytes"], BUDGET, "{body}");
        assert!(retry_after.is_some(), "429 without Retry-After");
        assert_eq!(sleepers, (BUDGET as usize) / MB, "sleepers accepted");
        let held = task_book_bytes(&n1).await.expect("the gauge is exported");
        assert!(held <= BUDGET && held >= (sleepers * MB) as u64, "{held}");

        // Cancelled tasks are finished: they make room when evicted.
        for view in all_tasks(&n2).await {
            n2.cancel(view.id).await.unwrap();
        }

        // 200 echo tasks of 1 MB (2 MB held each once finished), retried
        // on 429 as Retry-After asks.
        let mut first = None;
        for _ in 0..200 {
            let id = eventually(
                Duration::from_secs(60),
                "an echo submission is accepted",
                || {
                    let n2 = n2.clone();
                    async move {
                        let (status, body, _) =
                            post_raw(n2.base(), "/v1/tasks", task("echo", MB, 0).into_bytes())
                                .await;
                        match status {
                            202 => body["id"].as_str().map(str::to_string),
                            429 => None,
                            other => panic!("{other}: {body}"),
                        }
                    }
                },
            )
            .await;
            first.get_or_insert(id);
            let held = task_book_bytes(&n1).await.unwrap_or(0);
            assert!(held <= BUDGET, "the task book holds {held} bytes");
        }
        wait_finished(&n1, (sleepers + 200) as u64, Duration::from_secs(120)).await;
        let held = task_book_bytes(&n1).await.unwrap();
        assert!(held <= BUDGET, "the task book holds {held} bytes");
        let status = n1.cluster().await.unwrap();
        assert_eq!(
            status.tasks.succeeded + status.tasks.cancelled,
            200 + sleepers as u64
        );
        let (code, _) = n1
            .get_json(&format!("/v1/tasks/{}", first.unwrap()))
            .await
            .unwrap();
        assert_eq!(code, 404, "the oldest finished echo task was forgotten");
        every_node_is_up(&n1).await;
        cluster.stop().await;
    })
    .await;
}
