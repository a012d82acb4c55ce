//! Bad input to the HTTP API gets a JSON error that says what to fix, and
//! nothing is accepted half-way.

use std::time::Duration;

use herd_tests::{
    ApiClientError, DEADLINE, post_raw, send_raw, temp_dir, three_node_cluster,
    three_node_cluster_with, with_deadline, write_config,
};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_json_errors_that_say_what_to_fix() {
    with_deadline(DEADLINE, async {
        let mut cluster = three_node_cluster(2).await;
        let base = cluster.node("n2").api_url();

        let (status, body, _) = post_raw(
            &base,
            "/v1/tasks",
            b"{\"agent_type\": \"echo\", \"payload\": ".to_vec(),
        )
        .await;
        assert_eq!(status, 400);
        assert_eq!(body["code"], "malformed_json");
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("EOF while parsing"),
            "{body}"
        );

        let (status, body, _) = post_raw(
            &base,
            "/v1/tasks",
            br#"{"agent_type": "echo", "payload": 1, "priorty": 3}"#.to_vec(),
        )
        .await;
        assert_eq!(status, 400);
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("unknown field `priorty`"),
            "{body}"
        );

        let (status, body, _) = post_raw(
            &base,
            "/v1/tasks",
            br#"{"agent_type": "translate", "payload": {}}"#.to_vec(),
        )
        .await;
        assert_eq!(status, 422);
        assert_eq!(body["code"], "unknown_agent_type");
        assert_eq!(
            body["error"],
            "task 0: unknown agent type \"translate\"; known types: echo, sleep"
        );
        assert_eq!(body["known_agent_types"], json!(["echo", "sleep"]));

        let (status, body, _) = post_raw(
            &base,
            "/v1/tasks",
            br#"{"agent_type": "echo", "payload": {}, "priority": 12}"#.to_vec(),
        )
        .await;
        assert_eq!(status, 422);
        assert_eq!(
            body["error"],
            "task 0: priority is 12; give 0 (lowest) to 9 (highest)"
        );

        let big = format!(
            r#"{{"agent_type": "echo", "payload": "{}"}}"#,
            "x".repeat(1024 * 1024 + 1)
        );
        let (status, body, _) = post_raw(&base, "/v1/tasks", big.into_bytes()).await;
        assert_eq!(status, 413);
        assert_eq!(body["code"], "payload_too_large");
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("over this cluster's limit of 1048576 bytes"),
            "{body}"
        );

        // A batch with one bad task is refused whole: nothing was accepted.
        let (status, body, _) = post_raw(
            &base,
            "/v1/tasks",
            br#"[{"agent_type": "echo", "payload": 1}, {"agent_type": "nope", "payload": 2}]"#
                .to_vec(),
        )
        .await;
        assert_eq!(status, 422);
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .starts_with("task 1: unknown agent type"),
            "{body}"
        );
        let status_now = cluster.api("n1").cluster().await.unwrap();
        assert_eq!(
            status_now.tasks.pending + status_now.tasks.running + status_now.tasks.succeeded,
            0
        );

        let (status, body, _) = post_raw(&base, "/v1/tasks", b"[]".to_vec()).await;
        assert_eq!((status, body["code"].as_str()), (400, Some("empty_batch")));

        // Reading and cancelling.
        let api = cluster.api("n3");
        match api
            .task(
                "01890000-0000-7000-8000-000000000000".parse().unwrap(),
                None,
            )
            .await
        {
            Err(ApiClientError::Api {
                status: 404, code, ..
            }) => assert_eq!(code, "task_not_found"),
            other => panic!("expected 404, got {other:?}"),
        }
        let (status, body) = api.get_json("/v1/tasks/not-an-id").await.unwrap();
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("invalid_task_id"))
        );
        let (status, body) = api.get_json("/v1/tasks?state=done").await.unwrap();
        assert_eq!(status, 400);
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("expected one of pending, running"),
            "{body}"
        );
        let (status, body) = api.get_json("/v1/nowhere").await.unwrap();
        assert_eq!(
            (status, body["code"].as_str()),
            (404, Some("no_such_route"))
        );

        let id = api.submit("echo", json!("done soon")).await.unwrap();
        let view = api.task(id, Some(Duration::from_secs(10))).await.unwrap();
        assert_eq!(view.state, herd_protocol::TaskState::Succeeded);
        match api.cancel(id).await {
            Err(ApiClientError::Api {
                status: 409,
                message,
                ..
            }) => assert!(
                message.contains("already finished as succeeded"),
                "{message}"
            ),
            other => panic!("expected 409, got {other:?}"),
        }
        cluster.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_priorities_listing_and_cancellation_work_over_http() {
    with_deadline(DEADLINE, async {
        // Without prefetch, so that a task waits in the orchestrator's queue
        // (pending, in priority order) as soon as the slots are taken.
        let dir = temp_dir("api-priorities").unwrap();
        let config = write_config(
            dir.path(),
            "herd.toml",
            "[scaling]\nslot_credit = 1\nmax_slot_credit = 1\n",
        );
        let mut cluster = three_node_cluster_with(2, &config, &[]).await;
        let api = cluster.api("n1");
        let first = api
            .submit_raw(&json!({
                "agent_type": "echo",
                "payload": 1,
                "idempotency_key": "order-7"
            }))
            .await
            .unwrap();
        let again = api
            .submit_raw(&json!({
                "agent_type": "echo",
                "payload": 2,
                "idempotency_key": "order-7"
            }))
            .await
            .unwrap();
        assert_eq!(first["id"], again["id"]);

        // Fill the six slots with sleepers (one stays reserved for the quiet
        // `echo` type), then queue one more and cancel it while it is pending.
        let sleepers: Vec<_> = (0..10)
            .map(|_| json!({ "agent_type": "sleep", "payload": { "ms": 3000 } }))
            .collect();
        api.submit_batch(&sleepers).await.unwrap();
        let queued = api.submit("sleep", json!({ "ms": 1 })).await.unwrap();
        let view = api.task(queued, None).await.unwrap();
        assert_eq!(view.state, herd_protocol::TaskState::Pending);
        api.cancel(queued).await.unwrap();
        assert_eq!(
            api.task(queued, None).await.unwrap().state,
            herd_protocol::TaskState::Cancelled
        );
        let page = api.list("state=cancelled&limit=10").await.unwrap();
        assert_eq!(
            page.tasks.iter().map(|t| t.id).collect::<Vec<_>>(),
            vec![queued]
        );

        // Listing pages through the running tasks.
        let running = api.list("state=running&limit=2").await.unwrap();
        assert_eq!(running.tasks.len(), 2);
        let rest = api
            .list(&format!(
                "state=running&limit=100&after={}",
                running.next_after.expect("a second page")
            ))
            .await
            .unwrap();
        assert_eq!(
            rest.tasks.len(),
            3,
            "five sleepers run on six slots, one slot is kept for echo"
        );

        // A high-priority task starts before the sleepers that were already
        // waiting when it arrived.
        let waiting = api
            .list("state=pending&agent_type=sleep&limit=100")
            .await
            .unwrap();
        assert_eq!(waiting.tasks.len(), 5);
        let urgent = api
            .submit_raw(&json!({
                "agent_type": "sleep",
                "payload": { "ms": 1 },
                "priority": 9
            }))
            .await
            .unwrap();
        let urgent: herd_protocol::TaskId = urgent["id"].as_str().unwrap().parse().unwrap();
        let urgent_started = api
            .task(urgent, Some(Duration::from_secs(20)))
            .await
            .unwrap()
            .started_at
            .unwrap();
        for earlier in &waiting.tasks {
            let started = api
                .task(earlier.id, Some(Duration::from_secs(20)))
                .await
                .unwrap()
                .started_at
                .unwrap();
            assert!(
                urgent_started <= started,
                "priority 9 started at {urgent_started}, \
             after a priority 5 task waiting before it ({started})"
            );
        }
        cluster.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_axum_answers_by_itself_is_json_with_a_code() {
    with_deadline(DEADLINE, async {
        let mut cluster = three_node_cluster(1).await;
        let base = cluster.node("n2").api_url();
        let cases: &[(&str, &str, &[u8], u16, &str)] = &[
            // Path segments that are not UTF-8 once percent-decoded.
            ("GET", "/v1/tasks/%FF", b"", 400, "invalid_path"),
            ("POST", "/v1/tasks/%FF/cancel", b"", 400, "invalid_path"),
            (
                "POST",
                "/v1/dead-letters/%FF/retry",
                b"{}",
                400,
                "invalid_path",
            ),
            ("POST", "/v1/nodes/%FF/drain", b"", 400, "invalid_path"),
            (
                "PUT",
                "/v1/agents/%FF",
                b"{\"weight\": 0.5}",
                400,
                "invalid_path",
            ),
            // Methods a route does not serve.
            ("DELETE", "/v1/cluster", b"", 405, "method_not_allowed"),
            ("PUT", "/v1/tasks", b"{}", 405, "method_not_allowed"),
            ("GET", "/v1/scaling", b"", 405, "method_not_allowed"),
            // Query strings the handlers cannot read.
            ("GET", "/v1/tasks?limit=lots", b"", 400, "invalid_query"),
            ("GET", "/v1/tasks?colour=red", b"", 400, "invalid_query"),
            (
                "GET",
                "/v1/dead-letters?limit=-1",
                b"",
                400,
                "invalid_query",
            ),
            (
                "GET",
                "/v1/scaling/decisions?limit=x",
                b"",
                400,
                "invalid_query",
            ),
            (
                "GET",
                "/v1/tasks/01890000-0000-7000-8000-000000000000?wait=soon",
                b"",
                400,
                "invalid_wait",
            ),
            // Bodies of the wrong JSON shape.
            (
                "POST",
                "/v1/tasks",
                b"{\"agent_type\": 5}",
                400,
                "malformed_json",
            ),
            ("POST", "/v1/tasks", b"\"echo\"", 400, "malformed_json"),
            ("PUT", "/v1/scaling", b"[1, 2]", 400, "malformed_json"),
            (
                "PUT",
                "/v1/agents/echo",
                b"{\"weight\": \"half\"}",
                400,
                "malformed_json",
            ),
            ("POST", "/v1/tasks", b"\xff\xfe", 400, "malformed_json"),
        ];
        for (method, path, body, status, code) in cases {
            let answer = send_raw(&base, method, path, body).await;
            let what = format!("{method} {path}");
            assert_eq!(answer.status, *status, "{what}: {:?}", answer.body);
            assert_eq!(
                answer.header("content-type"),
                Some("application/json"),
                "{what}"
            );
            assert_eq!(answer.body["code"], *code, "{what}: {}", answer.body);
            let message = answer.body["error"].as_str().unwrap_or_default();
            assert!(message.len() > 20, "{what}: {message:?} says nothing");
        }

        // A 405 says which methods the route serves, in Allow and in words.
        let answer = send_raw(&base, "DELETE", "/v1/cluster", b"").await;
        assert_eq!(answer.header("allow"), Some("GET,HEAD"));
        assert_eq!(
            answer.body["error"],
            "DELETE is not allowed on /v1/cluster; use GET, HEAD"
        );
        let answer = send_raw(&base, "GET", "/v1/tasks/%FF", b"").await;
        assert!(
            answer.body["error"]
                .as_str()
                .unwrap()
                .contains("percent-encoded"),
            "{}",
            answer.body
        );
        cluster.stop().await;
    })
    .await;
}
