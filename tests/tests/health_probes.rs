//! Probes and `herd health`: the command a container HEALTHCHECK runs (no
//! curl needed) exits 0 on a healthy node and 1 otherwise.

use std::time::Duration;

use herd_node::local_cluster::{free_ports, herd_binary};
use herd_tests::{DEADLINE, eventually, three_node_cluster, with_deadline};
use serde_json::Value;

/// Runs `herd health ARGS`; returns the exit code and stdout.
async fn herd_health(args: &[&str]) -> (i32, String) {
    let output = tokio::process::Command::new(herd_binary().unwrap())
        .arg("health")
        .args(args)
        .output()
        .await
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).to_string(),
    )
}

fn addr(url: &str) -> String {
    url.trim_start_matches("http://").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herd_health_follows_the_node_and_the_cluster() {
    with_deadline(DEADLINE, async {
        let mut cluster = three_node_cluster(2).await;
        let n2 = addr(&cluster.node("n2").api_url());

        let (code, out) = herd_health(&["--http", &n2]).await;
        assert_eq!(code, 0, "{out}");
        let body: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(body["status"], "healthy", "{body}");
        assert_eq!(body["node"], "n2");
        for check in [
            "cluster_membership",
            "orchestrator",
            "workers",
            "task_processing",
        ] {
            assert_eq!(
                body["checks"][check]["status"], "healthy",
                "{check}: {body}"
            );
            assert!(
                body["checks"][check]["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty())
            );
        }
        for probe in ["live", "ready", "startup"] {
            let (code, out) = herd_health(&["--http", &n2, "--probe", probe]).await;
            assert_eq!(code, 0, "{probe}: {out}");
        }

        // Nothing listens: exit 1 with a message, not a hang.
        let closed = format!("127.0.0.1:{}", free_ports(1)[0]);
        let (code, _) = herd_health(&["--http", &closed, "--timeout", "2s"]).await;
        assert_eq!(code, 1);

        // The orchestrator dies: n2 is alive but neither ready nor healthy.
        cluster.kill("n1").await;
        eventually(
            Duration::from_secs(15),
            "n2 reports the orchestrator gone",
            || {
                let n2 = n2.clone();
                async move {
                    let (code, out) = herd_health(&["--http", &n2]).await;
                    (code == 1).then_some(out)
                }
            },
        )
        .await;
        let (code, _) = herd_health(&["--http", &n2, "--probe", "ready", "-q"]).await;
        assert_eq!(code, 1);
        let (code, _) = herd_health(&["--http", &n2, "--probe", "live", "-q"]).await;
        assert_eq!(code, 0, "liveness never depends on peers");
        cluster.stop().await;
    })
    .await;
}
