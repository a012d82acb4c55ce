//! Nodes that must not join are kept out, and the cluster is unharmed.

use std::collections::HashSet;
use std::io::Write;
use std::time::Duration;

use herd_tests::{DEADLINE, LocalCluster, NodeSpec, eventually, three_node_cluster, with_deadline};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_the_wrong_cookie_cannot_join_nor_see_nor_run_tasks() {
    with_deadline(DEADLINE, async {
        let mut cluster = three_node_cluster(2).await;
        let mut intruder = LocalCluster::spawn(
            vec![NodeSpec::new("n4", "worker,monitor", 4)],
            "not-the-cookie-of-this-cluster",
        )
        .unwrap();
        // Point the intruder at the real cluster: restart it with real seeds.
        let seeds: Vec<String> = cluster
            .nodes
            .iter()
            .map(|node| node.cluster_addr())
            .collect();
        intruder.kill("n4").await;
        intruder.nodes[0].spec.extra_args = seeds
            .iter()
            .flat_map(|seed| ["--seed".to_string(), seed.clone()])
            .collect();
        intruder.restart("n4").unwrap();
        let intruder_api = intruder.api("n4");
        eventually(
            Duration::from_secs(10),
            "the intruder logs the handshake failure",
            || {
                let text = intruder.node("n4").log_text();
                async move {
                    text.contains("closed before authentication: the peer uses a different cookie")
                        .then_some(())
                }
            },
        )
        .await;
        eventually(
            Duration::from_secs(10),
            "the cluster logs the intruder's failed handshake",
            || {
                let text = cluster.node("n1").log_text();
                async move {
                    text.contains("different cookie or is not a herd node")
                        .then_some(())
                }
            },
        )
        .await;

        let tasks: Vec<_> = (0..300)
            .map(|i| json!({ "agent_type": "echo", "payload": i }))
            .collect();
        let ids = cluster.api("n1").submit_batch(&tasks).await.unwrap();
        let mut nodes = HashSet::new();
        for id in ids {
            let view = cluster
                .api(0)
                .task(id, Some(Duration::from_secs(10)))
                .await
                .unwrap();
            nodes.insert(view.node.unwrap().to_string());
        }
        assert!(!nodes.contains("n4"), "the intruder ran tasks: {nodes:?}");

        let status = cluster.api("n2").cluster().await.unwrap();
        assert!(
            status.nodes.iter().all(|node| node.name.as_str() != "n4"),
            "{status:?}"
        );
        // The intruder sees no orchestrator and is not ready.
        let (ready, _) = intruder_api.get_json("/ready").await.unwrap();
        assert_eq!(ready, 503);
        let (cluster_status, body) = intruder_api.get_json("/v1/cluster").await.unwrap();
        assert_eq!(
            (cluster_status, body["code"].as_str()),
            (503, Some("no_orchestrator"))
        );
        // No secret leaks into a log line.
        for node in cluster.nodes.iter().chain(intruder.nodes.iter()) {
            let text = node.log_text();
            assert!(
                !text.contains(&cluster.cookie) && !text.contains("not-the-cookie-of-this-cluster"),
                "a cookie leaked into {}",
                node.log.display()
            );
        }
        intruder.stop().await;
        cluster.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_orchestrator_is_refused_with_a_clear_error_and_exit_code_two() {
    with_deadline(DEADLINE, async {
        let mut cluster = three_node_cluster(2).await;
        let seeds: Vec<String> = cluster
            .nodes
            .iter()
            .map(|node| node.cluster_addr())
            .collect();
        let mut rival_spec = NodeSpec::new("n9", "orchestrator,worker,monitor", 2);
        rival_spec.extra_args = seeds
            .iter()
            .flat_map(|seed| ["--seed".to_string(), seed.clone()])
            .collect();
        let mut rival = LocalCluster::spawn(vec![rival_spec], &cluster.cookie).unwrap();
        let code = rival.wait_exit("n9", Duration::from_secs(15)).await;
        assert_eq!(code, Some(2), "log:\n{}", rival.log_tails());
        let log = rival.node("n9").log_text();
        assert!(
        log.contains(
            "was started with the orchestrator role, but the cluster already runs orchestrator n1"
        ),
        "{log}"
    );
        assert!(log.contains("remove `orchestrator` from --roles"), "{log}");
        // The cluster keeps its orchestrator and keeps working.
        let status = cluster.api("n3").cluster().await.unwrap();
        assert_eq!(status.orchestrator.as_str(), "n1");
        let id = cluster
            .api(2)
            .submit("echo", json!("still fine"))
            .await
            .unwrap();
        let view = cluster
            .api(1)
            .task(id, Some(Duration::from_secs(10)))
            .await
            .unwrap();
        assert_eq!(view.state, herd_protocol::TaskState::Succeeded);
        cluster.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_cluster_port_breaks_nothing() {
    with_deadline(DEADLINE, async {
        let mut cluster = three_node_cluster(2).await;
        for payload in [
            vec![0xffu8; 4096],
            b"GET / HTTP/1.1\r\nhost: x\r\n\r\n".to_vec(),
            vec![0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8],
            vec![0x7f, 0xff, 0xff, 0xff],
        ] {
            let mut socket =
                std::net::TcpStream::connect(cluster.node("n1").cluster_addr()).unwrap();
            let _ = socket.write_all(&payload);
            drop(socket);
        }
        let tasks: Vec<_> = (0..200)
            .map(|i| json!({ "agent_type": "echo", "payload": i }))
            .collect();
        let ids = cluster.api("n1").submit_batch(&tasks).await.unwrap();
        for id in ids {
            let view = cluster
                .api(0)
                .task(id, Some(Duration::from_secs(10)))
                .await
                .unwrap();
            assert_eq!(view.state, herd_protocol::TaskState::Succeeded);
        }
        let status = cluster.api("n1").cluster().await.unwrap();
        assert_eq!(
            status
                .nodes
                .iter()
                .filter(|n| n.state == herd_protocol::messages::orchestrator::MemberState::Up)
                .count(),
            3
        );
        cluster.stop().await;
    })
    .await;
}
