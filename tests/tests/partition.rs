//! A node cut off by a real network partition (network namespaces) is
//! declared down, its tasks finish elsewhere, and it rejoins after the heal.
//! Needs root; skipped with a message otherwise.

use std::time::Duration;

use herd_protocol::messages::orchestrator::MemberState;
use herd_tests::{
    DEADLINE, NodeSpec, Partitionable, eventually, node_state, start_cluster, wait_finished,
    wait_until_busy, with_deadline,
};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_node_is_declared_down_its_tasks_finish_elsewhere_and_it_rejoins_after_the_heal()
 {
    with_deadline(DEADLINE, async {
        let net = match Partitionable::create() {
            Ok(net) => net,
            Err(why) => {
                eprintln!(
                    "SKIPPED a_partitioned_node_...: {why}; \
                 run the tests as root to include the partition test"
                );
                return;
            }
        };
        let mut specs = NodeSpec::three_nodes(4);
        specs[0].host = net.outer_ip.clone();
        specs[1].host = net.outer_ip.clone();
        specs[2].host = net.inner_ip.clone();
        specs[2].wrapper = net.wrapper();
        // Beyond loopback the API requires a token; the cluster's clients
        // send the one each node was given.
        let token = herd_node::local_cluster::random_cookie();
        for spec in &mut specs {
            spec.env.push(("HERD_API_TOKEN".into(), token.clone()));
        }
        let mut cluster = start_cluster(specs).await;
        let api = cluster.api("n1");
        let tasks: Vec<_> = (0..60)
            .map(|_| json!({ "agent_type": "sleep", "payload": { "ms": 1500 } }))
            .collect();
        api.submit_batch(&tasks).await.unwrap();
        wait_until_busy(&api, "n3", Duration::from_secs(10)).await;

        net.cut();
        eventually(
            Duration::from_secs(15),
            "the cut-off n3 is declared down",
            || {
                let api = api.clone();
                async move { (node_state(&api, "n3").await? == MemberState::Down).then_some(()) }
            },
        )
        .await;
        let status = wait_finished(&api, 60, Duration::from_secs(60)).await;
        assert_eq!(status.tasks.succeeded, 60, "{:?}", status.tasks);

        net.heal();
        eventually(Duration::from_secs(30), "n3 rejoins after the heal", || {
            let api = api.clone();
            async move { (node_state(&api, "n3").await? == MemberState::Up).then_some(()) }
        })
        .await;
        assert!(
            cluster
                .node("n3")
                .log_text()
                .contains("rejoining under a new incarnation"),
            "{}",
            cluster.log_tails()
        );
        let more: Vec<_> = (0..20)
            .map(|i| json!({ "agent_type": "echo", "payload": i }))
            .collect();
        api.submit_batch(&more).await.unwrap();
        let status = wait_finished(&api, 80, Duration::from_secs(30)).await;
        assert_eq!(
            status.tasks.succeeded, 80,
            "no task counted twice after the heal"
        );
        cluster.stop().await;
        drop(net);
    })
    .await;
}
