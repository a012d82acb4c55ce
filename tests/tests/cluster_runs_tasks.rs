//! Three real node processes run tasks submitted over HTTP.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use herd_protocol::TaskState;
use herd_tests::{DEADLINE, LocalCluster, NodeSpec, eventually, three_node_cluster, with_deadline};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_echo_tasks_each_run_once_spread_over_all_three_nodes() {
    with_deadline(DEADLINE, async {
        let mut cluster = three_node_cluster(4).await;
        // Submit through every node's API: non-orchestrator nodes forward.
        let mut ids = Vec::new();
        for batch in 0..20 {
            let tasks: Vec<_> = (0..100)
                .map(|i| json!({ "agent_type": "echo", "payload": { "batch": batch, "i": i } }))
                .collect();
            ids.extend(
                cluster
                    .api(batch % 3)
                    .submit_batch(&tasks)
                    .await
                    .expect("batch accepted"),
            );
        }
        assert_eq!(ids.len(), 2000);
        assert_eq!(
            ids.iter().collect::<HashSet<_>>().len(),
            2000,
            "ids are unique"
        );

        let api = cluster.api("n2");
        let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
        let mut workers_seen: HashSet<(String, u32)> = HashSet::new();
        for (index, id) in ids.iter().enumerate() {
            let view = api
                .task(*id, Some(Duration::from_secs(30)))
                .await
                .expect("task readable");
            assert_eq!(view.state, TaskState::Succeeded, "task {id}: {view:?}");
            assert_eq!(view.attempts, 1, "task {id} ran more than once");
            assert_eq!(
                view.result.as_ref().unwrap().as_str(),
                json!({ "batch": index / 100, "i": index % 100 }).to_string()
            );
            let node = view.node.expect("a node ran it").to_string();
            workers_seen.insert((node.clone(), view.worker.expect("a worker ran it").0));
            *per_node.entry(node).or_default() += 1;
        }
        assert_eq!(
            per_node.keys().cloned().collect::<Vec<_>>(),
            vec!["n1", "n2", "n3"],
            "{per_node:?}"
        );
        assert!(
            workers_seen.len() > 3,
            "more than one worker per node should be used: {workers_seen:?}"
        );

        let status = cluster.api("n3").cluster().await.unwrap();
        assert_eq!(status.orchestrator.as_str(), "n1");
        assert_eq!(status.tasks.succeeded, 2000);
        assert_eq!(
            status.tasks.running + status.tasks.pending + status.tasks.dead,
            0
        );
        // The workers' own counts agree: exactly 2000 executions happened.
        cluster.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_started_together_see_each_other_within_five_seconds() {
    with_deadline(DEADLINE, async {
        let started = Instant::now();
        let mut cluster =
            LocalCluster::spawn(NodeSpec::three_nodes(2), "same-cookie-for-three-nodes").unwrap();
        cluster
            .wait_ready(Duration::from_secs(5))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let elapsed = started.elapsed();
        for node in &cluster.nodes {
            let status = node.api().cluster().await.unwrap();
            assert!(
                status.nodes.iter().all(
                    |node| node.state == herd_protocol::messages::orchestrator::MemberState::Up
                ),
                "{status:?}"
            );
            assert_eq!(status.nodes.len(), 3);
        }
        eprintln!("three nodes saw each other {elapsed:?} after spawning");
        cluster.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_whose_seeds_are_down_keep_retrying_and_join_later() {
    with_deadline(DEADLINE, async {
        // Start the two workers first; their only seeds (n1 and each other) are
        // not listening for a while. n1, the orchestrator, starts last.
        let specs = NodeSpec::three_nodes(2);
        let mut cluster = LocalCluster::spawn(specs, "late-seed-cookie-for-this-test").unwrap();
        cluster.kill("n1").await;
        let worker_api = cluster.api("n2");
        eventually(
            Duration::from_secs(10),
            "n2 and n3 answer /live while n1 is down",
            || {
                let api = worker_api.clone();
                async move { matches!(api.get_json("/live").await, Ok((200, _))).then_some(()) }
            },
        )
        .await;
        // Both keep failing to reach n1 for well over one backoff step.
        eventually(
            Duration::from_secs(10),
            "n2 has retried n1 several times",
            || {
                let api = worker_api.clone();
                async move {
                    let (status, _) = api.get_json("/ready").await.ok()?;
                    (status == 503).then_some(())
                }
            },
        )
        .await;
        cluster.restart("n1").unwrap();
        cluster
            .wait_ready(Duration::from_secs(15))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let id = cluster
            .api(2)
            .submit("echo", json!({ "late": true }))
            .await
            .unwrap();
        let view = cluster
            .api(2)
            .task(id, Some(Duration::from_secs(10)))
            .await
            .unwrap();
        assert_eq!(view.state, TaskState::Succeeded);
        cluster.stop().await;
    })
    .await;
}
