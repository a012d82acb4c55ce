//! API tokens, roles and tenants, as a client of a real cluster meets them:
//! 401 without a token, 403 for the wrong role or tenant, 415 for a post
//! that is not JSON, each tenant seeing only its own tasks through any node,
//! per-tenant limits, fair dispatch between tenants, and a node that refuses
//! to serve an open API beyond loopback.

use std::path::Path;
use std::time::Duration;

use herd_node::api::auth::digest_of;
use herd_protocol::TaskState;
use herd_tests::*;
use serde_json::{Value, json};

const ADMIN: &str = "admin-token-0123456789abcdef";
const TEAM_A: &str = "team-a-token-0123456789abcdef";
const TEAM_B: &str = "team-b-token-0123456789abcdef";
const READER_A: &str = "reader-a-token-0123456789abcd";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn token_entry(name: &str, token: &str, role: &str, tenant: &str) -> String {
    format!(
        "[[api.tokens]]\nname = \"{name}\"\nsha256 = \"{}\"\nrole = \"{role}\"\ntenant = \"{tenant}\"\n",
        hex(&digest_of(token))
    )
}

/// A config with an echo and a sleep type, three tenant tokens, and `extra`.
fn config(dir: &Path, extra: &str) -> std::path::PathBuf {
    let text = format!(
        "[agents.echo]\nweight = 0.5\nhandler = \"echo\"\n[agents.sleep]\nweight = 0.5\nhandler = \"sleep\"\n{}{}{}{extra}",
        token_entry("team-a", TEAM_A, "submit", "team-a"),
        token_entry("team-b", TEAM_B, "submit", "team-b"),
        token_entry("reader-a", READER_A, "read", "team-a"),
    );
    write_config(dir, "herd.toml", &text)
}

/// A raw request with optional bearer token and content type.
async fn call(
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: &str,
) -> (u16, Value) {
    let client = reqwest::Client::new();
    let mut request = client.request(method.parse().unwrap(), format!("{base}{path}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    let response = request
        .body(body.to_string())
        .send()
        .await
        .expect("answers");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

const JSON: Option<&str> = Some("application/json");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_roles_and_tenants_hold_through_every_node() {
    with_deadline(DEADLINE, async {
        let dir = temp_dir("auth-tenants").unwrap();
        let path = config(dir.path(), "");
        let mut cluster = three_node_cluster_with(2, &path, &[("HERD_API_TOKEN", ADMIN)]).await;
        // n3 forwards to the orchestrator on n1: scoping must hold there too.
        let base = cluster.node("n3").api_url();

        // Probes stay open; everything else needs a token.
        for probe in ["/live", "/ready", "/startup", "/metrics", "/health"] {
            let (status, _) = call(&base, "GET", probe, None, None, "").await;
            assert_ne!(status, 401, "{probe} is open by default");
        }
        let (status, body) = call(&base, "GET", "/v1/tasks", None, None, "").await;
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some("missing_token"))
        );
        let (status, body) = call(
            &base,
            "GET",
            "/v1/cluster",
            Some("not-a-token-at-all"),
            None,
            "",
        )
        .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some("invalid_token"))
        );
        assert!(!body.to_string().contains("not-a-token-at-all"), "{body}");

        // Bodies must be JSON, even empty ones: 415 before anything runs.
        let task = r#"{"agent_type": "echo", "payload": {"n": 1}}"#;
        for content_type in [
            None,
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
        ] {
            let (status, body) =
                call(&base, "POST", "/v1/tasks", Some(TEAM_A), content_type, task).await;
            assert_eq!(status, 415, "{content_type:?}: {body}");
            assert_eq!(body["code"], "unsupported_media_type");
        }

        // Each submitter's tasks are its tenant's.
        let (status, a) = call(&base, "POST", "/v1/tasks", Some(TEAM_A), JSON, task).await;
        assert_eq!(status, 202, "{a}");
        let a_id = a["id"].as_str().unwrap().to_string();
        let (status, b) = call(&base, "POST", "/v1/tasks", Some(TEAM_B), JSON, task).await;
        assert_eq!(status, 202, "{b}");
        let b_id = b["id"].as_str().unwrap().to_string();
        let (status, view) = call(
            &base,
            "GET",
            &format!("/v1/tasks/{a_id}?wait=30s"),
            Some(TEAM_A),
            None,
            "",
        )
        .await;
        assert_eq!(
            (status, view["tenant"].as_str()),
            (200, Some("team-a")),
            "{view}"
        );
        assert_eq!(view["state"], "succeeded");

        // Another tenant can neither read nor cancel it, nor find it listed.
        let (status, body) = call(
            &base,
            "GET",
            &format!("/v1/tasks/{a_id}"),
            Some(TEAM_B),
            None,
            "",
        )
        .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (403, Some("forbidden_tenant"))
        );
        let (status, _) = call(
            &base,
            "POST",
            &format!("/v1/tasks/{a_id}/cancel"),
            Some(TEAM_B),
            JSON,
            "",
        )
        .await;
        assert_eq!(status, 403);
        let listed = |page: &Value| -> Vec<String> {
            page["tasks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["id"].as_str().unwrap().to_string())
                .collect()
        };
        let (_, page) = call(&base, "GET", "/v1/tasks?limit=1000", Some(TEAM_B), None, "").await;
        assert_eq!(listed(&page), vec![b_id.clone()]);
        let (_, page) = call(
            &base,
            "GET",
            "/v1/tasks?limit=1000",
            Some(READER_A),
            None,
            "",
        )
        .await;
        assert_eq!(listed(&page), vec![a_id.clone()]);
        let (_, page) = call(&base, "GET", "/v1/tasks?limit=1000", Some(ADMIN), None, "").await;
        let all = listed(&page);
        assert!(all.contains(&a_id) && all.contains(&b_id), "{all:?}");

        // Roles: read only reads; submit cannot run the cluster.
        let (status, body) = call(&base, "POST", "/v1/tasks", Some(READER_A), JSON, task).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (403, Some("forbidden_role"))
        );
        let (status, _) = call(
            &base,
            "GET",
            &format!("/v1/tasks/{a_id}"),
            Some(READER_A),
            None,
            "",
        )
        .await;
        assert_eq!(status, 200);
        let (status, _) = call(&base, "POST", "/v1/nodes/n2/drain", Some(TEAM_A), JSON, "").await;
        assert_eq!(status, 403);
        let (status, _) = call(
            &base,
            "PUT",
            "/v1/agents/echo",
            Some(TEAM_A),
            JSON,
            r#"{"weight": 0.9}"#,
        )
        .await;
        assert_eq!(status, 403);

        // The same idempotency key in two tenants names two tasks.
        let keyed = r#"{"agent_type": "echo", "payload": 1, "idempotency_key": "k1"}"#;
        let (_, first_a) = call(&base, "POST", "/v1/tasks", Some(TEAM_A), JSON, keyed).await;
        let (_, first_b) = call(&base, "POST", "/v1/tasks", Some(TEAM_B), JSON, keyed).await;
        let (_, again_a) = call(&base, "POST", "/v1/tasks", Some(TEAM_A), JSON, keyed).await;
        assert_ne!(first_a["id"], first_b["id"]);
        assert_eq!(first_a["id"], again_a["id"]);

        // Per-tenant figures are for admins only.
        let (_, summary) = call(&base, "GET", "/v1/cluster", Some(TEAM_A), None, "").await;
        assert_eq!(summary["tenants"], json!([]));
        let admin = cluster.api("n3");
        let slow: Vec<Value> = (0..3)
            .map(|_| json!({"agent_type": "sleep", "payload": {"ms": 60_000}}))
            .collect();
        let (status, _) = call(
            &base,
            "POST",
            "/v1/tasks",
            Some(TEAM_B),
            JSON,
            &Value::Array(slow).to_string(),
        )
        .await;
        assert_eq!(status, 202);
        let summary = admin.cluster().await.unwrap();
        let team_b = summary
            .tenants
            .iter()
            .find(|t| t.tenant.as_str() == "team-b")
            .expect("team-b listed for the admin");
        assert_eq!(team_b.unfinished, 3);
        eventually_exported(
            &cluster,
            "herd_tenant_unfinished_tasks",
            "tenant=\"team-b\"",
            "3",
        )
        .await;
        for token in [ADMIN, TEAM_A, TEAM_B, READER_A] {
            for node in ["n1", "n2", "n3"] {
                assert!(
                    !cluster.node(node).log_text().contains(token),
                    "a token reached {node}'s log"
                );
            }
        }
        cluster.stop().await;
    })
    .await;
}

/// Waits until the orchestrator's `/metrics` (on n1) has a `metric` series
/// with `label` whose value is `value`.
async fn eventually_exported(cluster: &LocalCluster, metric: &str, label: &str, value: &str) {
    let api = cluster.api("n1");
    let what = format!("{metric}{{{label}}} {value} on n1's /metrics");
    eventually(Duration::from_secs(30), &what, || {
        let api = api.clone();
        async move {
            let (_, text) = api.get_text("/metrics").await.ok()?;
            text.lines()
                .any(|line| {
                    line.starts_with(&format!("{metric}{{"))
                        && line.contains(label)
                        && line.ends_with(&format!(" {value}"))
                })
                .then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenants_backlog_does_not_starve_another_and_limits_answer_429() {
    with_deadline(DEADLINE, async {
        let dir = temp_dir("auth-fairness").unwrap();
        let path = config(
            dir.path(),
            "[tenants.team-b]\nmax_unfinished_tasks = 50\nmax_held_bytes = 1048576\n",
        );
        // Two sleep slots in all, so dispatch order decides who waits.
        let cluster = start_cluster(vec![NodeSpec {
            config: Some(path),
            env: vec![("HERD_API_TOKEN".into(), ADMIN.into())],
            ..NodeSpec::new("n1", "orchestrator,worker,monitor", 2)
        }])
        .await;
        let team_a = herd_tests::ApiClient::new(&cluster.node("n1").api_url()).with_token(Some(TEAM_A));
        let team_b = herd_tests::ApiClient::new(&cluster.node("n1").api_url()).with_token(Some(TEAM_B));

        // team-a's backlog: 20,000 sleep tasks of 20 ms.
        let backlog: Vec<Value> = (0..5_000)
            .map(|_| json!({"agent_type": "sleep", "payload": {"ms": 20}}))
            .collect();
        for _ in 0..4 {
            team_a.submit_batch(&backlog).await.expect("backlog accepted");
        }
        // team-b's ten tasks arrive behind it, and still run next.
        let small: Vec<Value> = (0..10)
            .map(|_| json!({"agent_type": "sleep", "payload": {"ms": 20}}))
            .collect();
        let ids = team_b.submit_batch(&small).await.expect("accepted");
        for id in &ids {
            let view = team_b.task(*id, Some(Duration::from_secs(60))).await.unwrap();
            assert_eq!(view.state, TaskState::Succeeded, "{view:?}");
        }
        let summary = cluster.api("n1").cluster().await.unwrap();
        let team_a_left = summary
            .tenants
            .iter()
            .find(|t| t.tenant.as_str() == "team-a")
            .map_or(0, |t| t.unfinished);
        assert!(
            team_a_left > 19_000,
            "team-b's tasks waited for team-a's backlog: only {team_a_left} of team-a's 20,000 are left"
        );

        // team-b's own limits: 50 unfinished tasks, 1 MiB of payloads.
        let hold: Vec<Value> = (0..45)
            .map(|_| json!({"agent_type": "sleep", "payload": {"ms": 60_000}}))
            .collect();
        team_b.submit_batch(&hold).await.expect("within the limit");
        let over: Vec<Value> = (0..10)
            .map(|_| json!({"agent_type": "sleep", "payload": {"ms": 1}}))
            .collect();
        let (status, body) = call(
            &cluster.node("n1").api_url(),
            "POST",
            "/v1/tasks",
            Some(TEAM_B),
            JSON,
            &Value::Array(over).to_string(),
        )
        .await;
        assert_eq!((status, body["code"].as_str()), (429, Some("tenant_over_limit")), "{body}");
        assert_eq!(body["limit_key"], "tenants.team-b.max_unfinished_tasks");
        let big: Vec<Value> = (0..3)
            .map(|_| json!({"agent_type": "sleep", "payload": {"ms": 1, "pad": "x".repeat(400_000)}}))
            .collect();
        let (status, body) = call(
            &cluster.node("n1").api_url(),
            "POST",
            "/v1/tasks",
            Some(TEAM_B),
            JSON,
            &Value::Array(big).to_string(),
        )
        .await;
        assert_eq!(status, 429, "{body}");
        assert_eq!(body["limit_key"], "tenants.team-b.max_held_bytes");
        // team-a is not held by team-b's limits.
        team_a.submit("echo", json!(1)).await.expect("team-a unaffected");
        drop(cluster);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_refuses_an_open_api_beyond_loopback() {
    with_deadline(DEADLINE, async {
        let binary = herd_node::local_cluster::herd_binary().unwrap();
        let ports = herd_node::local_cluster::free_ports(2);
        let run = |extra: &[&str]| {
            let mut command = std::process::Command::new(&binary);
            command
                .args(["node", "--name", "lone"])
                .args(["--listen", &format!("127.0.0.1:{}", ports[0])])
                .args(["--http", &format!("0.0.0.0:{}", ports[1])])
                .args(extra)
                .env("HERD_COOKIE", "a-cookie-of-at-least-16-chars")
                .env_remove("HERD_API_TOKEN")
                .env_remove("HERD_INSECURE_NO_AUTH");
            command
        };
        let refused = run(&["--check-config"]).output().unwrap();
        assert_eq!(refused.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(
            stderr.contains("--insecure-no-auth") && stderr.contains("HERD_API_TOKEN"),
            "{stderr}"
        );
        let accepted = run(&["--check-config", "--insecure-no-auth"])
            .output()
            .unwrap();
        assert_eq!(
            accepted.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&accepted.stderr)
        );
        let with_token = run(&["--check-config"])
            .env("HERD_API_TOKEN", ADMIN)
            .output()
            .unwrap();
        assert_eq!(with_token.status.code(), Some(0));
        let printed = String::from_utf8_lossy(&with_token.stdout);
        assert!(
            printed.contains("admin (admin, tenant default)"),
            "{printed}"
        );
        assert!(
            !printed.contains(ADMIN),
            "the token is never printed: {printed}"
        );
    })
    .await;
}
