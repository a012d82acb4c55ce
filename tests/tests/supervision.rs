//! Monitors supervise across nodes: a stuck worker pool on a live node is
//! restarted through its own node's supervisor at a monitor's request, and
//! nothing is lost or run twice to completion. Real processes; the pool is
//! made stuck through the test hook (`HERD_TEST_HOOKS=1`, off by default).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use herd_protocol::TaskState;
use herd_protocol::messages::supervision::{ActorTree, SupervisionTree};
use herd_tests::{
    ApiClient, DEADLINE, NodeSpec, all_tasks, eventually, metric_value, start_cluster,
    wait_finished, wait_until_busy, with_deadline,
};
use serde_json::json;

fn sleep_tasks(count: usize, ms: u64) -> Vec<serde_json::Value> {
    (0..count)
        .map(|_| json!({ "agent_type": "sleep", "payload": { "ms": ms } }))
        .collect()
}

fn with_hooks(spec: NodeSpec) -> NodeSpec {
    NodeSpec {
        env: vec![("HERD_TEST_HOOKS".to_string(), "1".to_string())],
        ..spec
    }
}

fn pool_of<'a>(tree: &'a SupervisionTree, node: &str) -> Option<&'a ActorTree> {
    tree.nodes
        .iter()
        .find(|n| n.name == node)?
        .actors
        .iter()
        .find(|a| a.actor == "pool")
}

/// The value of `herd_monitor_interventions_total{action=...}` on a node.
async fn interventions(api: &ApiClient, action: &str) -> Option<f64> {
    let label = format!("action=\"{action}\"");
    metric_value(api, "herd_monitor_interventions_total", &label).await
}

/// Makes `node`'s pool stuck through the test hook and waits until the
/// supervision tree (read from `observer`) shows its restart; returns how
/// long that took and the tree.
async fn stick_and_await_restart(
    hooked: &ApiClient,
    observer: &ApiClient,
    node: &str,
) -> (Duration, SupervisionTree) {
    let (status, body) = hooked
        .post_json_with_headers("/v1/test-hooks/stuck-pool", &json!({}), &[])
        .await
        .expect("the hook answers");
    assert_eq!(status, 202, "the hook made the pool stuck: {body}");
    let stuck_at = Instant::now();
    let tree = eventually(
        Duration::from_secs(20),
        &format!("a monitor has {node}'s stuck pool restarted"),
        || async move {
            let tree = observer.supervision().await.ok()?;
            let pool = pool_of(&tree, node)?;
            (pool.restarts == 1 && pool.running == Some(true) && pool.slots.is_some())
                .then_some(tree)
        },
    )
    .await;
    (stuck_at.elapsed(), tree)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_pool_on_a_live_node_is_restarted_at_a_monitors_request_and_nothing_is_lost() {
    with_deadline(DEADLINE, async {
        let mut cluster = start_cluster(
            NodeSpec::three_nodes(2)
                .into_iter()
                .map(with_hooks)
                .collect(),
        )
        .await;
        let api = cluster.api("n1");
        let before = sleep_tasks(300, 50);
        let mut ids = api.submit_batch(&before).await.unwrap();
        wait_until_busy(&api, "n2", Duration::from_secs(30)).await;

        let (took, tree) = stick_and_await_restart(&cluster.api("n2"), &api, "n2").await;
        println!(
            "stuck pool on n2 restarted after {:.2} s",
            took.as_secs_f64()
        );
        assert_eq!(tree.monitors, ["n1", "n2", "n3"]);
        let pool = pool_of(&tree, "n2").unwrap();
        assert_eq!(pool.watched_by.as_deref(), Some("monitor@n3"));
        assert_eq!(pool.restarted_by, "supervisor@n2");
        assert_eq!(pool.requested_restarts, 1);
        let failure = pool.last_failure.as_ref().expect("the failure is recorded");
        assert!(
            failure.reason.starts_with("stuck") && failure.reason.contains("monitor@n3"),
            "{failure:?}"
        );
        // Only the pool was restarted, and only n2's.
        for node in &tree.nodes {
            for actor in &node.actors {
                let expected = u32::from(node.name == "n2" && actor.actor == "pool");
                assert_eq!(actor.restarts, expected, "{}@{}", actor.actor, node.name);
            }
        }

        // The acting monitor (n3) counted it; the others did not act.
        let n3 = cluster.api("n3");
        eventually(Duration::from_secs(5), "n3 counts its intervention", || {
            let n3 = n3.clone();
            async move { (interventions(&n3, "restart_pool").await? == 1.0).then_some(()) }
        })
        .await;
        for other in ["n1", "n2"] {
            assert_eq!(
                interventions(&cluster.api(other), "restart_pool").await,
                Some(0.0),
                "{other} did not act"
            );
        }

        // The restarted pool takes work again once it has registered with
        // the orchestrator. The old registration may still show n2's slots
        // until the new pool's arrives, and on a loaded machine a single
        // batch could all finish elsewhere first: so later work goes in
        // rounds until a task of a round ran on n2.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let round = api.submit_batch(&sleep_tasks(20, 20)).await.unwrap();
            ids.extend(round.iter().copied());
            wait_finished(&api, ids.len() as u64, Duration::from_secs(60)).await;
            let round: HashSet<_> = round.into_iter().collect();
            let ran_on_n2 = all_tasks(&api).await.iter().any(|task| {
                round.contains(&task.id) && task.node.as_ref().is_some_and(|n| n.as_str() == "n2")
            });
            if ran_on_n2 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "n2's restarted pool ran none of the later tasks within 60 s"
            );
        }
        let total = ids.len() as u64;
        let status = wait_finished(&api, total, Duration::from_secs(120)).await;
        assert_eq!(status.tasks.succeeded, total, "{:?}", status.tasks);
        assert_eq!(
            status.tasks.dead
                + status.tasks.cancelled
                + status.tasks.pending
                + status.tasks.running,
            0
        );
        let tasks = all_tasks(&api).await;
        assert_eq!(tasks.len() as u64, total, "no task duplicated or lost");
        let returned: HashSet<_> = tasks.iter().map(|task| task.id).collect();
        assert!(
            ids.iter().all(|id| returned.contains(id)),
            "a task is missing"
        );
        assert!(tasks.iter().all(|task| task.state == TaskState::Succeeded));
        let rerun = tasks.iter().filter(|task| task.attempts > 1).count();
        let most = tasks.iter().map(|task| task.attempts).max().unwrap_or(0);
        println!("{rerun} tasks ran again after the pool restart; most attempts {most}");
        assert!(most <= 2, "a lost attempt is retried once: {most}");
        cluster.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_one_monitor_in_the_cluster_it_watches_every_pool_and_restarts_a_stuck_one() {
    with_deadline(DEADLINE, async {
        let mut cluster = start_cluster(vec![
            NodeSpec::new("n1", "orchestrator,worker,monitor", 2),
            NodeSpec::new("n2", "worker", 2),
            with_hooks(NodeSpec::new("n3", "worker", 2)),
        ])
        .await;
        let api = cluster.api("n2");
        let tree = api.supervision().await.unwrap();
        assert_eq!(tree.monitors, ["n1"]);
        for node in ["n1", "n2", "n3"] {
            let pool = pool_of(&tree, node).unwrap_or_else(|| panic!("{node} has a pool"));
            assert_eq!(pool.watched_by.as_deref(), Some("monitor@n1"), "{node}");
            assert_eq!(pool.restarted_by, format!("supervisor@{node}"));
        }
        let n2_actors: Vec<&str> = tree
            .nodes
            .iter()
            .find(|n| n.name == "n2")
            .unwrap()
            .actors
            .iter()
            .map(|a| a.actor.as_str())
            .collect();
        assert_eq!(n2_actors, ["supervisor", "membership", "pool"]);

        // The hook exists only where HERD_TEST_HOOKS=1.
        let (status, _) = api
            .post_json_with_headers("/v1/test-hooks/stuck-pool", &json!({}), &[])
            .await
            .unwrap();
        assert_eq!(status, 404, "no hook without HERD_TEST_HOOKS=1");

        let (took, tree) = stick_and_await_restart(&cluster.api("n3"), &api, "n3").await;
        println!(
            "stuck pool on n3 restarted by the only monitor after {:.2} s",
            took.as_secs_f64()
        );
        assert!(
            pool_of(&tree, "n3")
                .unwrap()
                .last_failure
                .as_ref()
                .unwrap()
                .reason
                .contains("monitor@n1")
        );
        let n1 = cluster.api("n1");
        eventually(Duration::from_secs(5), "n1 counts its intervention", || {
            let n1 = n1.clone();
            async move { (interventions(&n1, "restart_pool").await? == 1.0).then_some(()) }
        })
        .await;
        let ids = api.submit_batch(&sleep_tasks(60, 10)).await.unwrap();
        let status = wait_finished(&api, ids.len() as u64, Duration::from_secs(60)).await;
        assert_eq!(status.tasks.succeeded, 60, "{:?}", status.tasks);
        cluster.stop().await;
    })
    .await;
}
