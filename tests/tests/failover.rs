//! Nothing is lost when a worker node dies, freezes, or the orchestrator
//! restarts: real processes, real signals.

use std::collections::HashSet;
use std::time::Duration;

use herd_protocol::TaskState;
use herd_protocol::messages::orchestrator::MemberState;
use herd_tests::{
    DEADLINE, NodeSpec, all_tasks, eventually, node_state, start_cluster, temp_dir,
    three_node_cluster, wait_finished, wait_until_busy, wait_until_pool_busy, with_deadline,
};
use serde_json::json;

fn sleep_tasks(count: usize, ms: u64) -> Vec<serde_json::Value> {
    (0..count)
        .map(|_| json!({ "agent_type": "sleep", "payload": { "ms": ms } }))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_worker_node_during_5000_tasks_loses_nothing_with_prefetched_attempts() {
    with_deadline(DEADLINE, async {
        let mut cluster = three_node_cluster(8).await;
        let api = cluster.api("n1");
        let mut ids = Vec::new();
        for chunk in sleep_tasks(5_000, 20).chunks(500) {
            ids.extend(api.submit_batch(chunk).await.unwrap());
        }
        eventually(Duration::from_secs(30), "n3 is running tasks", || {
            let api = api.clone();
            async move {
                let status = api.cluster().await.ok()?;
                let n3 = status
                    .nodes
                    .iter()
                    .find(|node| node.name.as_str() == "n3")?;
                (n3.busy > 0 && status.tasks.succeeded > 500).then_some(())
            }
        })
        .await;
        // With the default slot credit, n3 holds more attempts than its 8
        // slots: the rest wait in its backlog and must be re-queued too.
        let held_by_n3 = all_tasks(&api)
            .await
            .iter()
            .filter(|task| {
                task.state == TaskState::Running
                    && task.node.as_ref().is_some_and(|n| n.as_str() == "n3")
            })
            .count();
        assert!(
            held_by_n3 > 8,
            "n3 holds prefetched attempts beyond its 8 slots ({held_by_n3})"
        );
        cluster.kill("n3").await;
        eventually(Duration::from_secs(10), "n3 is declared down", || {
            let api = api.clone();
            async move { (node_state(&api, "n3").await? == MemberState::Down).then_some(()) }
        })
        .await;
        let status = wait_finished(&api, 5_000, Duration::from_secs(120)).await;
        assert_eq!(
            status.tasks.succeeded, 5_000,
            "every task succeeded exactly once: {:?}",
            status.tasks
        );
        assert_eq!(
            status.tasks.dead
                + status.tasks.cancelled
                + status.tasks.pending
                + status.tasks.running,
            0
        );
        let tasks = all_tasks(&api).await;
        let returned: HashSet<_> = tasks.iter().map(|task| task.id).collect();
        assert!(
            ids.iter().all(|id| returned.contains(id)),
            "a submitted task is missing"
        );
        assert!(tasks.iter().all(|task| task.state == TaskState::Succeeded));
        let rerun = tasks.iter().filter(|task| task.attempts > 1).count();
        assert!(
            rerun > 0,
            "some tasks were running on n3 and had to run again"
        );
        assert!(
            tasks.iter().all(|task| task.attempts <= 2),
            "no task ran more than once besides the attempt lost with n3"
        );
        assert!(
            tasks
                .iter()
                .filter(|task| task.attempts > 1)
                .all(|task| task.node.as_ref().is_some_and(|n| n.as_str() != "n3"))
        );
        cluster.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_node_is_detected_its_tasks_finish_elsewhere_and_it_rejoins_fenced() {
    with_deadline(DEADLINE, async {
        let mut cluster = three_node_cluster(4).await;
        let api = cluster.api("n1");
        // Long tasks, and n3's own pool (not the orchestrator's view, which
        // counts assignments n3 may not have started) reporting busy
        // workers: so n3 is frozen with attempts running, whose stale
        // results it reports once thawed.
        let ids = api.submit_batch(&sleep_tasks(24, 4_000)).await.unwrap();
        wait_until_pool_busy(&cluster.api("n3"), "n3").await;
        cluster.signal("n3", libc::SIGSTOP);
        eventually(
            Duration::from_secs(10),
            "the frozen n3 is declared down",
            || {
                let api = api.clone();
                async move { (node_state(&api, "n3").await? == MemberState::Down).then_some(()) }
            },
        )
        .await;
        // Its tasks are re-queued and finish on n1 and n2 while it is frozen.
        let status = wait_finished(&api, 24, Duration::from_secs(60)).await;
        assert_eq!(status.tasks.succeeded, 24);
        cluster.signal("n3", libc::SIGCONT);
        eventually(
            Duration::from_secs(20),
            "n3 rejoins under a new incarnation",
            || {
                let api = api.clone();
                async move { (node_state(&api, "n3").await? == MemberState::Up).then_some(()) }
            },
        )
        .await;
        let log = cluster.node("n3").log_text();
        assert!(log.contains("rejoining under a new incarnation"), "{log}");
        // Its stale results reached the orchestrator and were fenced, not applied.
        eventually(
            Duration::from_secs(20),
            "the orchestrator fenced n3's stale results",
            || {
                let text = cluster.node("n1").log_text();
                async move {
                    text.contains("fenced results of superseded attempts")
                        .then_some(())
                }
            },
        )
        .await;
        let status = api.cluster().await.unwrap();
        assert_eq!(status.tasks.succeeded, 24, "no task counted twice");
        let tasks = all_tasks(&api).await;
        assert_eq!(
            tasks.iter().map(|t| t.id).collect::<HashSet<_>>(),
            ids.into_iter().collect::<HashSet<_>>()
        );
        // n3 gets work again.
        let more = api.submit_batch(&sleep_tasks(30, 200)).await.unwrap();
        assert_eq!(more.len(), 30);
        eventually(
            Duration::from_secs(20),
            "the rejoined n3 runs new tasks",
            || {
                let api = api.clone();
                let more = more.clone();
                async move {
                    let mut on_n3 = false;
                    for id in &more {
                        let view = api.task(*id, None).await.ok()?;
                        on_n3 |= view.node.is_some_and(|n| n.as_str() == "n3")
                            && view.state == TaskState::Succeeded;
                    }
                    on_n3.then_some(())
                }
            },
        )
        .await;
        cluster.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_orchestrator_killed_and_restarted_with_its_journal_completes_every_acknowledged_task()
{
    restart_on_data_dir("single", "orchestrator state recovered from the journal").await;
}

/// The default: n1 is a one-replica raft group, and its replica's log is
/// what survives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_only_replica_killed_and_restarted_with_its_data_dir_completes_every_acknowledged_task()
{
    restart_on_data_dir("raft", "opened the replica store").await;
}

/// Kills n1 (the orchestrator) during 2,000 tasks and restarts it on its
/// data directory under `replication`; every acknowledged task must
/// succeed, and n1's log must say `recovered`.
async fn restart_on_data_dir(replication: &str, recovered: &str) {
    with_deadline(DEADLINE, async {
        let data = temp_dir("journal").unwrap();
        let mut specs = NodeSpec::three_nodes(4);
        specs[0].extra_args = vec![
            "--data-dir".into(),
            data.path().display().to_string(),
            "--replication".into(),
            replication.into(),
        ];
        let mut cluster = start_cluster(specs).await;
        let api = cluster.api("n2");
        let mut ids = Vec::new();
        for chunk in sleep_tasks(2_000, 30).chunks(250) {
            ids.extend(cluster.api("n1").submit_batch(chunk).await.unwrap());
        }
        eventually(Duration::from_secs(30), "some tasks finished", || {
            let api = cluster.api("n1");
            async move { (api.cluster().await.ok()?.tasks.succeeded > 200).then_some(()) }
        })
        .await;
        cluster.kill("n1").await;
        // Without an orchestrator the API says so (and submissions are refused).
        eventually(
            Duration::from_secs(10),
            "n2 notices the orchestrator is gone",
            || {
                let api = api.clone();
                async move {
                    matches!(
                        api.cluster().await,
                        Err(herd_tests::ApiClientError::Api { status: 503, .. })
                    )
                    .then_some(())
                }
            },
        )
        .await;
        cluster.restart("n1").unwrap();
        cluster
            .wait_ready(Duration::from_secs(30))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let status = wait_finished(&cluster.api("n1"), 2_000, Duration::from_secs(120)).await;
        assert_eq!(status.tasks.succeeded, 2_000, "{:?}", status.tasks);
        let tasks = all_tasks(&cluster.api("n1")).await;
        let returned: HashSet<_> = tasks.iter().map(|task| task.id).collect();
        assert!(
            ids.iter().all(|id| returned.contains(id)),
            "an acknowledged task was lost"
        );
        let log = cluster.node("n1").log_text();
        assert!(log.contains(recovered), "{log}");
        cluster.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_weight_and_pool_bounds_survive_a_restart_of_the_orchestrator_on_its_journal() {
    pins_survive_a_restart("single", "orchestrator state recovered from the journal").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_weight_and_pool_bounds_survive_a_restart_of_the_only_replica_on_its_data_dir() {
    pins_survive_a_restart("raft", "opened the replica store").await;
}

/// Pins a weight and sets pool bounds on a one-node cluster under
/// `replication`, kills and restarts it on its data directory, and checks
/// that both are back (and that n1's log says `recovered`).
async fn pins_survive_a_restart(replication: &str, recovered: &str) {
    with_deadline(DEADLINE, async {
        let data = temp_dir("journal-scaling").unwrap();
        let mut spec = NodeSpec::new("n1", "orchestrator,worker,monitor", 2);
        spec.extra_args = vec![
            "--data-dir".into(),
            data.path().display().to_string(),
            "--replication".into(),
            replication.into(),
        ];
        let mut cluster = start_cluster(vec![spec]).await;
        let api = cluster.api("n1");
        let answer = api
            .update_agent("sleep", &json!({ "weight": 0.7 }))
            .await
            .unwrap();
        assert_eq!(answer["pinned"], json!(true), "{answer}");
        api.update_scaling(&json!({ "max_workers": 30, "scale_up_threshold": 0.95 }))
            .await
            .unwrap();
        let before = api.cluster().await.unwrap();

        cluster.kill("n1").await;
        cluster.restart("n1").unwrap();
        cluster
            .wait_ready(Duration::from_secs(30))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let after = eventually(
            Duration::from_secs(10),
            "the restarted orchestrator answers",
            || {
                let api = cluster.api("n1");
                async move { api.cluster().await.ok() }
            },
        )
        .await;
        let sleep = &after.agents[&"sleep".into()];
        assert!(sleep.pinned, "{:?}", after.agents);
        assert!((sleep.weight - 0.7).abs() < 1e-9, "{:?}", after.agents);
        assert!((after.agents[&"echo".into()].weight - 0.3).abs() < 1e-9);
        assert_eq!(after.scaling, before.scaling);
        assert_eq!(
            (after.scaling.max_workers, after.scaling.scale_up_threshold),
            (30, 0.95)
        );
        let log = cluster.node("n1").log_text();
        assert!(log.contains(recovered), "{log}");
        cluster.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_a_worker_node_hands_back_long_tasks_and_it_leaves() {
    with_deadline(DEADLINE, async {
        let mut specs = NodeSpec::three_nodes(2);
        specs[2].extra_args = vec!["--drain-grace".into(), "1".into()];
        let mut cluster = start_cluster(specs).await;
        let api = cluster.api("n1");
        api.submit_batch(&sleep_tasks(12, 4_000)).await.unwrap();
        wait_until_busy(&api, "n3", Duration::from_secs(10)).await;
        let code = cluster.terminate("n3", Duration::from_secs(20)).await;
        assert_eq!(
            code,
            Some(0),
            "a drained node exits cleanly:\n{}",
            cluster.log_tails()
        );
        assert_eq!(node_state(&api, "n3").await, Some(MemberState::Left));
        let log = cluster.node("n1").log_text();
        assert!(
            log.contains("draining pool handed back unfinished attempts"),
            "{log}"
        );
        let status = wait_finished(&api, 12, Duration::from_secs(60)).await;
        assert_eq!(status.tasks.succeeded, 12);
        // Handed-back attempts do not count: every task shows one attempt.
        assert!(all_tasks(&api).await.iter().all(
            |task| task.attempts == 1 && task.node.as_ref().is_some_and(|n| n.as_str() != "n3")
        ));
        cluster.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herd_drain_lets_running_tasks_finish_then_the_node_leaves() {
    with_deadline(DEADLINE, async {
        let mut cluster = three_node_cluster(2).await;
        let api = cluster.api("n2");
        let ids = api.submit_batch(&sleep_tasks(12, 800)).await.unwrap();
        wait_until_busy(&api, "n2", Duration::from_secs(10)).await;
        let herd = herd_node::local_cluster::herd_binary().unwrap();
        let drained = std::process::Command::new(&herd)
            .args(["drain", "--api", cluster.api("n1").base(), "n2"])
            .output()
            .unwrap();
        assert!(
            drained.status.success(),
            "{}",
            String::from_utf8_lossy(&drained.stderr)
        );
        assert!(String::from_utf8_lossy(&drained.stdout).contains("n2 is draining"));
        let code = cluster.wait_exit("n2", Duration::from_secs(40)).await;
        assert_eq!(code, Some(0), "{}", cluster.log_tails());
        let api = cluster.api("n1");
        let status = wait_finished(&api, 12, Duration::from_secs(60)).await;
        assert_eq!(status.tasks.succeeded, 12);
        // The tasks n2 was running finished there (30 s grace): none ran twice.
        for id in ids {
            assert_eq!(api.task(id, None).await.unwrap().attempts, 1);
        }
        assert_eq!(node_state(&api, "n2").await, Some(MemberState::Left));
        match api.drain("nobody").await {
            Err(herd_tests::ApiClientError::Api {
                status: 404, code, ..
            }) => assert_eq!(code, "node_not_found"),
            other => panic!("expected 404, got {other:?}"),
        }
        cluster.stop().await;
    })
    .await;
}
