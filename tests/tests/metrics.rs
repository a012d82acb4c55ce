//! `/metrics` checked by the real Prometheus tools: `promtool check metrics`
//! accepts the exposition, and a real Prometheus server scrapes a three-node
//! cluster and answers queries about herd's metrics. Both tools come from
//! Debian's `prometheus` package, which `.ci/run` installs.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use herd_node::local_cluster::free_ports;
use herd_tests::{
    ApiClient, DEADLINE, LocalCluster, TempDir, eventually, temp_dir, three_node_cluster,
    wait_finished, with_deadline,
};
use serde_json::json;

/// The path of a Prometheus tool, or a failure that says how to get it.
fn tool(name: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|path| path.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "{name} is not installed; install Debian's prometheus package (apt-get install -y prometheus) or run .ci/run, which does"
        )
    })
}

async fn run_some_tasks(cluster: &LocalCluster) {
    let api = cluster.api("n2");
    let tasks: Vec<_> = (0..40)
        .map(|i| json!({ "agent_type": if i % 2 == 0 { "echo" } else { "sleep" }, "payload": { "ms": 5 } }))
        .collect();
    api.submit_batch(&tasks).await.unwrap();
    wait_finished(&api, 40, Duration::from_secs(30)).await;
    // A refused request shows up by route and status too.
    let _ = api.get_json("/v1/tasks/not-an-id").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_exposition_passes_promtool_and_covers_the_catalog() {
    with_deadline(DEADLINE, async {
        let promtool = tool("promtool");
        let mut cluster = three_node_cluster(2).await;
        run_some_tasks(&cluster).await;
        let n1 = cluster.api("n1");
        // Gauges set on the scaling interval (the orchestrator's) and the
        // stats interval (the pool's) appear within a second or two.
        let text = eventually(
            Duration::from_secs(10),
            "n1 exposes queue depth, weights and pool workers",
            || {
                let n1 = n1.clone();
                async move {
                    let text = fetch_text(&n1, "/metrics").await?;
                    (text.contains("herd_queue_depth{")
                        && text.contains("herd_agent_weight{")
                        && text.contains("herd_pool_workers{"))
                    .then_some(text)
                }
            },
        )
        .await;

        let mut check = Command::new(&promtool)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        check
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let output = check.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "promtool check metrics failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );

        for series in [
            "herd_tasks_submitted_total{node=\"n1\",agent_type=\"echo\"} 20",
            "herd_tasks_finished_total{",
            "herd_task_run_seconds_bucket{",
            "herd_task_queue_wait_seconds_bucket{",
            "herd_queue_depth{",
            "herd_pending_tasks{",
            "herd_pool_workers{node=\"n1\",state=\"idle\"}",
            "herd_agent_slots{",
            "herd_agent_weight{",
            "herd_slot_credit{",
            "herd_cluster_nodes{node=\"n1\",state=\"up\"} 3",
            "herd_heartbeat_rtt_seconds_bucket{",
            "herd_api_requests_total{node=\"n1\",route=\"/v1/cluster\",\
         method=\"GET\",status=\"200\"}",
            "# HELP herd_failover_detect_seconds",
            "# HELP herd_worker_restarts_total",
            "# HELP herd_duplicate_results_total",
            "# HELP herd_monitor_interventions_total",
            "herd_monitor_interventions_total{node=\"n1\",action=\"restart_pool\"} 0",
            "herd_monitor_watched_actors{node=\"n1\"} 1",
        ] {
            assert!(text.contains(series), "/metrics lacks {series}:\n{text}");
        }
        // Raw task ids never become label values.
        assert!(!text.contains("not-an-id"));
        let n2 = fetch_text(&cluster.api("n2"), "/metrics").await.unwrap();
        assert!(
            n2.contains(
                "herd_api_requests_total{node=\"n2\",route=\"/v1/tasks/{id}\",\
             method=\"GET\",status=\"400\"} 1"
            ),
            "{n2}"
        );
        cluster.stop().await;
    })
    .await;
}

async fn fetch_text(api: &ApiClient, path: &str) -> Option<String> {
    let (status, text) = api.get_text(path).await.ok()?;
    (status == 200).then_some(text)
}

/// A Prometheus server, stopped when dropped.
struct Prometheus {
    child: Child,
    api: ApiClient,
    _dir: TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_prometheus(targets: &[String]) -> Prometheus {
    let binary = tool("prometheus");
    let temp = temp_dir("prometheus").unwrap();
    let dir = temp.path();
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: herd\n    metrics_path: /metrics\n    static_configs:\n      - targets: [{}]\n",
        targets.join(", ")
    );
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let port = free_ports(1)[0];
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let child = Command::new(binary)
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    Prometheus {
        child,
        api: ApiClient::new(&format!("http://127.0.0.1:{port}")),
        _dir: temp,
    }
}

async fn query(prometheus: &Prometheus, expr: &str) -> Option<f64> {
    let encoded: String = expr
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let (status, body) = prometheus
        .api
        .get_json(&format!("/api/v1/query?query={encoded}"))
        .await
        .ok()?;
    if status != 200 {
        return None;
    }
    body["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_the_three_nodes() {
    with_deadline(DEADLINE, async {
        let mut cluster = three_node_cluster(2).await;
        let targets: Vec<String> = cluster
            .nodes
            .iter()
            .map(|node| node.api_url().trim_start_matches("http://").to_string())
            .collect();
        let prometheus = start_prometheus(&targets);
        run_some_tasks(&cluster).await;

        let up = eventually(
            Duration::from_secs(30),
            "Prometheus scrapes all three nodes",
            || async {
                query(&prometheus, "count(up{job=\"herd\"} == 1)")
                    .await
                    .filter(|n| *n == 3.0)
            },
        )
        .await;
        assert_eq!(up, 3.0);
        let submitted = eventually(
            Duration::from_secs(30),
            "Prometheus has herd_tasks_submitted_total",
            || async {
                query(&prometheus, "sum(herd_tasks_submitted_total)")
                    .await
                    .filter(|n| *n >= 40.0)
            },
        )
        .await;
        assert_eq!(submitted, 40.0);
        // Every node reports its own worker pool, labelled with its name.
        let pools = eventually(
            Duration::from_secs(30),
            "three pools report worker slots",
            || async {
                query(&prometheus, "count(count by (node) (herd_pool_workers))")
                    .await
                    .filter(|n| *n == 3.0)
            },
        )
        .await;
        assert_eq!(pools, 3.0);
        cluster.stop().await;
    })
    .await;
}
