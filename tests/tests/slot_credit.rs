//! The slot credit adapts: with three journaled replicas, every assignment
//! and report waits for a quorum commit, so a type of short tasks is given
//! more attempts per slot than `scaling.slot_credit` (up to
//! `scaling.max_slot_credit`), while a type of long tasks keeps the floor.
//! Real processes; the credit is read from `/v1/cluster` and the leader's
//! `/metrics`.

use std::time::Duration;

use herd_protocol::messages::orchestrator::ClusterStatus;
use herd_tests::{
    ApiClient, DEADLINE, NodeSpec, eventually, start_cluster, temp_dir, wait_finished,
    with_deadline,
};
use serde_json::json;

fn credit_of(status: &ClusterStatus, agent_type: &str) -> u32 {
    status.agents[&agent_type.into()].slot_credit
}

/// `herd_slot_credit{agent_type=...}` on a node.
async fn credit_gauge(api: &ApiClient, agent_type: &str) -> Option<f64> {
    let (status, text) = api.get_text("/metrics").await.ok()?;
    if status != 200 {
        return None;
    }
    let label = format!("agent_type=\"{agent_type}\"");
    text.lines()
        .find(|line| line.starts_with("herd_slot_credit{") && line.contains(&label))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_tasks_behind_quorum_commits_get_more_credit_and_long_ones_keep_the_floor() {
    with_deadline(DEADLINE, async {
        let data = temp_dir("slot-credit").unwrap();
        let mut cluster = start_cluster(NodeSpec::three_replicas(1, Some(data.path()))).await;
        let api = cluster.api("n1");
        let before = eventually(Duration::from_secs(30), "a leader serves", || {
            let api = api.clone();
            async move { api.cluster().await.ok() }
        })
        .await;
        // Nothing has run yet: every type has the floor (the default 4).
        assert_eq!(credit_of(&before, "echo"), 4);
        assert_eq!(credit_of(&before, "sleep"), 4);

        let echo: Vec<_> = (0..3_000)
            .map(|n| json!({ "agent_type": "echo", "payload": { "n": n } }))
            .collect();
        let sleep: Vec<_> = (0..12)
            .map(|_| json!({ "agent_type": "sleep", "payload": { "ms": 300 } }))
            .collect();
        for chunk in echo.chunks(500) {
            api.submit_batch(chunk).await.unwrap();
        }
        api.submit_batch(&sleep).await.unwrap();
        let status = wait_finished(&api, 3_012, Duration::from_secs(120)).await;
        assert_eq!(status.tasks.succeeded, 3_012, "{:?}", status.tasks);

        let echo_credit = credit_of(&status, "echo");
        println!(
            "slot credit: echo {echo_credit}, sleep {}",
            credit_of(&status, "sleep")
        );
        assert!(
            (5..=64).contains(&echo_credit),
            "no-op tasks behind journaled quorum commits get more than the floor, at most the ceiling: {echo_credit}"
        );
        assert_eq!(
            credit_of(&status, "sleep"),
            4,
            "300 ms tasks are long against a commit: they keep the floor"
        );

        // The leader exports the same figure.
        let leader = cluster.api(status.orchestrator.as_str());
        eventually(
            Duration::from_secs(30),
            "the leader exports herd_slot_credit",
            || {
                let leader = leader.clone();
                async move {
                    let echo = credit_gauge(&leader, "echo").await?;
                    let sleep = credit_gauge(&leader, "sleep").await?;
                    (echo > 4.0 && sleep == 4.0).then_some(())
                }
            },
        )
        .await;
        cluster.stop().await;
    })
    .await;
}
