//! The slot credit adapts: with three journaled replicas, every assignment
//! and report waits for a quorum commit, so a type of short tasks is given
//! more attempts per slot than `scaling.slot_credit` (up to
//! `scaling.max_slot_credit`), while a type of long tasks keeps the floor.
//! Real processes; the credit is read from `/v1/cluster` and the leader's
//! `/metrics`.

use std::time::Duration;

use herd_protocol::messages::orchestrator::ClusterStatus;
use herd_tests::{
    ApiClient, DEADLINE, NodeSpec, eventually, metric_value, start_cluster, temp_dir, with_deadline,
};
use serde_json::json;

/// The highest figures the samples of `/v1/cluster` showed.
#[derive(Default)]
struct Seen {
    echo_credit: u32,
    sleep_credit: u32,
    /// `agents.echo.busy`: echo attempts assigned to pools, backlogged ones
    /// included.
    echo_held: u32,
}

impl Seen {
    fn sample(&mut self, status: &ClusterStatus) {
        self.echo_credit = self.echo_credit.max(credit_of(status, "echo"));
        self.sleep_credit = self.sleep_credit.max(credit_of(status, "sleep"));
        self.echo_held = self.echo_held.max(status.agents[&"echo".into()].busy);
    }
}

/// Submits `tasks`, sending the batch again while the cluster refuses it
/// (an election under load).
async fn submit_acknowledged(api: &ApiClient, tasks: &[serde_json::Value]) {
    herd_tests::submit_until_acknowledged(api, tasks, Duration::from_secs(30)).await;
}

fn credit_of(status: &ClusterStatus, agent_type: &str) -> u32 {
    status.agents[&agent_type.into()].slot_credit
}

/// `herd_slot_credit{agent_type=...}` on a node.
async fn credit_gauge(api: &ApiClient, agent_type: &str) -> Option<f64> {
    let label = format!("agent_type=\"{agent_type}\"");
    metric_value(api, "herd_slot_credit", &label).await
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

        // Sleep tasks first (they take the `sleep` quota's slot), then
        // no-op echo tasks in batches; between batches and until all have
        // finished, the summary is sampled: the deepest echo backlog and
        // the highest credits seen.
        let sleep: Vec<_> = (0..12)
            .map(|_| json!({ "agent_type": "sleep", "payload": { "ms": 300 } }))
            .collect();
        let echo: Vec<_> = (0..6_000)
            .map(|n| json!({ "agent_type": "echo", "payload": { "n": n } }))
            .collect();
        let mut seen = Seen::default();
        submit_acknowledged(&api, &sleep).await;
        for chunk in echo.chunks(500) {
            submit_acknowledged(&api, chunk).await;
            if let Ok(status) = api.cluster().await {
                seen.sample(&status);
            }
        }
        let sampled = std::cell::RefCell::new(seen);
        let status = eventually(Duration::from_secs(120), "6,012 tasks finish", || {
            let api = api.clone();
            let sampled = &sampled;
            async move {
                let status = api.cluster().await.ok()?;
                sampled.borrow_mut().sample(&status);
                let t = &status.tasks;
                (t.succeeded + t.dead + t.cancelled >= 6_012).then_some(status)
            }
        })
        .await;
        let seen = sampled.into_inner();
        assert_eq!(status.tasks.succeeded, 6_012, "{:?}", status.tasks);
        println!(
            "highest credits seen: echo {}, sleep {}; most echo attempts held by pools at once: {}",
            seen.echo_credit, seen.sleep_credit, seen.echo_held
        );
        assert!(
            (5..=64).contains(&seen.echo_credit),
            "no-op tasks behind journaled quorum commits get more than the floor, at most the ceiling: {}",
            seen.echo_credit
        );
        assert_eq!(
            seen.sleep_credit, 4,
            "300 ms tasks are long against a commit: they keep the floor"
        );
        // Three one-slot pools at the floor hold at most 3 × 4 attempts;
        // deeper backlogs are the larger credit at work in dispatch.
        assert!(
            seen.echo_held > 12,
            "pools held more echo attempts than the floor allows: {}",
            seen.echo_held
        );

        // The leader exports the same figures as its summary.
        eventually(
            Duration::from_secs(30),
            "the leader exports herd_slot_credit as in /v1/cluster",
            || {
                let api = api.clone();
                let cluster = &cluster;
                async move {
                    let status = api.cluster().await.ok()?;
                    let leader = cluster.api(status.orchestrator.as_str());
                    let echo = credit_gauge(&leader, "echo").await?;
                    let sleep = credit_gauge(&leader, "sleep").await?;
                    (echo == f64::from(credit_of(&status, "echo"))
                        && sleep == f64::from(credit_of(&status, "sleep")))
                    .then_some(())
                }
            },
        )
        .await;
        cluster.stop().await;
    })
    .await;
}
