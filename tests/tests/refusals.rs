//! Nodes that must not join are kept out, and the cluster is unharmed.

use std::collections::HashSet;
use std::io::Write;
use std::time::Duration;

use herd_protocol::messages::orchestrator::MemberState;
use herd_protocol::messages::replica::ReplicaRole;
use herd_protocol::{TaskState, UnixMillis};
use herd_tests::{
    DEADLINE, LocalCluster, NodeSpec, all_tasks, eventually, node_state, start_cluster,
    three_node_cluster, wait_finished, wait_until_busy, with_deadline,
};
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
        intruder.kill("n4").await;
        intruder.nodes[0].spec.extra_args = cluster.seed_args();
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

/// Under `--replication single` there is one orchestrator: a second
/// orchestrator-role node is refused (with raft replication it joins the
/// group instead; see the next test).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_single_replication_a_second_orchestrator_is_refused_with_a_clear_error_and_exit_code_two()
 {
    with_deadline(DEADLINE, async {
        let single = || ["--replication".to_string(), "single".to_string()];
        let mut specs = NodeSpec::three_nodes(2);
        specs[0].extra_args.extend(single());
        let mut cluster = start_cluster(specs).await;
        let mut rival_spec = NodeSpec::new("n9", "orchestrator,worker,monitor", 2);
        rival_spec.extra_args = cluster.seed_args().into_iter().chain(single()).collect();
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

/// With the default (raft) replication, a further orchestrator-role node is
/// not refused: it joins the replica group, receives the book, and votes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_a_second_orchestrator_role_node_joins_the_replica_group_and_holds_the_book() {
    with_deadline(DEADLINE, async {
        let mut cluster = three_node_cluster(2).await;
        let before = cluster.api("n2").cluster().await.unwrap();
        let replication = before.replication.expect("raft is the default");
        assert_eq!(replication.leader.as_deref(), Some("n1"));
        assert_eq!(replication.replicas.len(), 1, "{replication:?}");
        let mut ids = Vec::new();
        for i in 0..20 {
            ids.push(cluster.api(2).submit("echo", json!(i)).await.unwrap());
        }
        let mut joiner_spec = NodeSpec::new("n9", "orchestrator,worker,monitor", 2);
        joiner_spec.extra_args = cluster.seed_args();
        let mut joiner = LocalCluster::spawn(vec![joiner_spec], &cluster.cookie).unwrap();
        let api = cluster.api("n3");
        let group = eventually(
            Duration::from_secs(30),
            "n9 votes in the group and holds the leader's log",
            || {
                let api = api.clone();
                async move {
                    let replication = api.cluster().await.ok()?.replication?;
                    let leader_at = replication
                        .replicas
                        .iter()
                        .find(|r| r.state == ReplicaRole::Leader)?
                        .applied_index?;
                    let joined = replication.replicas.iter().any(|r| {
                        r.name == "n9"
                            && r.state == ReplicaRole::Follower
                            && r.applied_index == Some(leader_at)
                    });
                    joined.then_some(replication)
                }
            },
        )
        .await;
        assert_eq!(group.leader.as_deref(), Some("n1"), "{group:?}");
        assert_eq!(group.replicas.len(), 2, "{group:?}");
        // n9 stays up (no refusal), and its API forwards to the leader.
        assert!(joiner.nodes[0].pid().is_some());
        let status = joiner.api("n9").cluster().await.unwrap();
        assert_eq!(status.orchestrator.as_str(), "n1");
        for id in ids {
            let view = joiner
                .api("n9")
                .task(id, Some(Duration::from_secs(10)))
                .await
                .unwrap();
            assert_eq!(view.state, TaskState::Succeeded);
        }
        joiner.stop().await;
        cluster.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orchestrator_in_the_other_replication_mode_is_refused_with_a_clear_error_and_exit_code_two()
 {
    with_deadline(DEADLINE, async {
        let mut cluster = three_node_cluster(2).await;
        let mut rival_spec = NodeSpec::new("n9", "orchestrator,worker,monitor", 2);
        rival_spec.extra_args = vec!["--replication".into(), "single".into()];
        rival_spec.extra_args.extend(cluster.seed_args());
        let mut rival = LocalCluster::spawn(vec![rival_spec], &cluster.cookie).unwrap();
        let code = rival.wait_exit("n9", Duration::from_secs(15)).await;
        assert_eq!(code, Some(2), "log:\n{}", rival.log_tails());
        let log = rival.node("n9").log_text();
        assert!(
            log.contains("node n9") && log.contains("runs --replication single"),
            "{log}"
        );
        assert!(
            log.contains("runs --replication raft; set the same --replication"),
            "{log}"
        );
        // The cluster keeps its orchestrator and keeps working.
        let status = cluster.api("n2").cluster().await.unwrap();
        assert_eq!(status.orchestrator.as_str(), "n1");
        let id = cluster.api(2).submit("echo", json!("fine")).await.unwrap();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_node_with_a_taken_name_exits_two_and_the_real_one_keeps_running_its_tasks() {
    with_deadline(DEADLINE, async {
        let mut cluster = three_node_cluster(2).await;
        let api = cluster.api("n1");
        // Two waves of sleepers over the six slots: n2 is busy while the
        // impostor tries to join, and more of its work follows.
        let tasks: Vec<_> = (0..12)
            .map(|_| json!({ "agent_type": "sleep", "payload": { "ms": 4000 } }))
            .collect();
        let ids = api.submit_batch(&tasks).await.unwrap();
        wait_until_busy(&api, "n2", Duration::from_secs(30)).await;

        let real_addr = cluster.node("n2").cluster_addr();
        let mut impostor_spec = NodeSpec::new("n2", "worker,monitor", 2);
        impostor_spec.extra_args = cluster.seed_args();
        // What the nodes log from here on (a start-up redial may come before).
        let logged_before: Vec<usize> = cluster
            .nodes
            .iter()
            .map(|node| node.log_text().len())
            .collect();
        let impostor_started = UnixMillis::now();
        let mut impostor = LocalCluster::spawn(vec![impostor_spec], &cluster.cookie).unwrap();
        assert_ne!(impostor.node("n2").cluster_addr(), real_addr);

        // Every node's view of n2, polled until the impostor is gone.
        let watchers: Vec<_> = ["n1", "n2", "n3"]
            .map(|name| (name, cluster.api(name)))
            .into_iter()
            .collect();
        let watch = async {
            loop {
                for (name, api) in &watchers {
                    // An unanswered request says nothing about n2.
                    if let Some(state) = node_state(api, "n2").await
                        && state != MemberState::Up
                    {
                        return (*name, state);
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        let code = tokio::select! {
            code = impostor.wait_exit("n2", Duration::from_secs(30)) => code,
            (seen_by, state) = watch => panic!("{seen_by} saw n2 {state:?} while the impostor tried to join\n{}", cluster.log_tails()),
        };
        assert_eq!(
            code,
            Some(2),
            "the impostor did not exit with code 2:\n{}\n{}",
            impostor.log_tails(),
            cluster.log_tails()
        );
        let log = impostor.node("n2").log_text();
        assert!(
            log.contains("another node named n2")
                && log.contains(&real_addr)
                && log.contains("node names must be unique"),
            "the impostor's log does not say why it stopped:\n{log}"
        );
        // Whichever node it reached first refused it.
        eventually(
            Duration::from_secs(10),
            "a node logs the refusal",
            || {
                let refused = cluster.nodes.iter().any(|node| {
                    node.log_text()
                        .contains("refusing a second node named n2")
                });
                async move { refused.then_some(()) }
            },
        )
        .await;

        // The real n2 was never disturbed: it stays up everywhere, every
        // task ran once and succeeded, some of them on n2 across the attempt.
        for name in ["n1", "n2", "n3"] {
            assert_eq!(
                node_state(&cluster.api(name), "n2").await,
                Some(MemberState::Up),
                "n2 as {name} sees it"
            );
        }
        let status = wait_finished(&api, ids.len() as u64, Duration::from_secs(60)).await;
        assert_eq!(status.tasks.succeeded, ids.len() as u64, "{status:?}");
        let tasks = all_tasks(&api).await;
        for task in &tasks {
            assert_eq!(task.state, TaskState::Succeeded, "{task:?}");
            assert_eq!(task.attempts, 1, "a task was re-queued: {task:?}");
        }
        assert!(
            tasks.iter().any(|task| task.node.as_ref().is_some_and(|n| n.as_str() == "n2")
                && task.started_at.is_some_and(|at| at < impostor_started)
                && task.finished_at.is_some_and(|at| at > impostor_started)),
            "no task was running on n2 while the impostor tried to join: {tasks:?}"
        );
        let (_, metrics) = api.get_text("/metrics").await.unwrap();
        assert!(
            !metrics.contains("herd_tasks_requeued_total"),
            "the orchestrator re-queued tasks"
        );
        for (node, before) in cluster.nodes.iter().zip(logged_before) {
            let text = node.log_text();
            let text = text.get(before..).unwrap_or(&text);
            assert!(
                !text.contains("declaring peer down")
                    && !text.contains("rejoined with a new incarnation")
                    && !text.contains("rejoining under a new incarnation"),
                "{} saw n2 leave or rejoin:\n{text}",
                node.spec.name
            );
        }
        cluster.stop().await;
    })
    .await;
}
