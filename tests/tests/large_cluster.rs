//! Thirty nodes on one machine: they form one cluster, and once it has
//! settled a killed node and a frozen node are each declared down while every
//! other node stays up, the frozen one rejoins when it thaws, and every task
//! submitted completes.
//!
//! Each node heartbeats only its next few ring neighbours, so this many
//! processes (debug builds, on two cores) stay cheap enough to judge each
//! other reliably. Detection times are printed, not asserted tightly: `herd
//! bench failover` measures them on a release build.

use std::time::{Duration, Instant};

use herd_protocol::messages::orchestrator::MemberState;
use herd_tests::{
    DEADLINE, LocalCluster, NodeSpec, eventually, node_state, wait_finished, wait_until_busy,
    waiting_for, with_deadline,
};
use serde_json::json;

const NODES: usize = 30;
const KILLED: &str = "n17";
const FROZEN: &str = "n23";

fn name(index: usize) -> String {
    format!("n{index:02}")
}

async fn declared_down_within(api: &herd_tests::ApiClient, node: &str, limit: Duration) {
    let what = format!("{node} is declared down");
    eventually(limit, &what, || {
        let api = api.clone();
        async move { (node_state(&api, node).await? == MemberState::Down).then_some(()) }
    })
    .await;
}

/// Waits until every node has been up in the orchestrator's view for three
/// seconds in a row.
async fn settled(api: &herd_tests::ApiClient) {
    let _step = waiting_for("all 30 nodes to stay up for 3 s");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut all_up_since: Option<Instant> = None;
    loop {
        let up = api.cluster().await.ok().map_or(0, |status| {
            status
                .nodes
                .iter()
                .filter(|node| node.state == MemberState::Up)
                .count()
        });
        if up == NODES {
            let since = *all_up_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= Duration::from_secs(3) {
                return;
            }
        } else {
            all_up_since = None;
        }
        assert!(
            Instant::now() < deadline,
            "the 30 nodes did not stay up together for 3 s within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_nodes_form_one_cluster_detect_a_killed_and_a_frozen_node_and_finish_every_task() {
    with_deadline(DEADLINE, async {
        let specs: Vec<NodeSpec> = (1..=NODES)
            .map(|i| {
                let roles = if i == 1 {
                    "orchestrator,worker,monitor"
                } else {
                    "worker"
                };
                NodeSpec::new(&name(i), roles, 1)
            })
            .collect();
        let started = Instant::now();
        let mut cluster = {
            let _step = waiting_for("30 nodes to start and see each other");
            LocalCluster::start(specs, Duration::from_secs(120))
                .await
                .unwrap_or_else(|error| panic!("the 30 nodes did not form a cluster: {error}"))
        };
        println!(
            "{NODES} nodes up in the orchestrator's view after {:?}",
            started.elapsed()
        );
        let api = cluster.api("n01");
        // Thirty processes greeting each other at once on two shared cores
        // can starve one for a couple of seconds, and a node that answers
        // nothing for that long is rightly declared down (it rejoins at
        // once). What must hold is the steady state: once every node has
        // stayed up for a few seconds, nobody but the two victims goes down.
        settled(&api).await;
        let formation_log = cluster.node("n01").log_text();
        let formation_downs = formation_log
            .lines()
            .filter(|line| line.contains("declaring peer down"))
            .count();
        println!(
            "settled after {:?} ({formation_downs} nodes declared down and rejoined while forming)",
            started.elapsed()
        );
        let tasks: Vec<_> = (0..150)
            .map(|_| json!({ "agent_type": "sleep", "payload": { "ms": 1500 } }))
            .collect();
        api.submit_batch(&tasks).await.unwrap();

        wait_until_busy(&api, KILLED, Duration::from_secs(20)).await;
        let killed = Instant::now();
        cluster.kill(KILLED).await;
        declared_down_within(&api, KILLED, Duration::from_secs(10)).await;
        println!(
            "kill -9 of {KILLED}: declared down in the orchestrator's view after {:?}",
            killed.elapsed()
        );

        wait_until_busy(&api, FROZEN, Duration::from_secs(20)).await;
        let frozen = Instant::now();
        cluster.signal(FROZEN, libc::SIGSTOP);
        declared_down_within(&api, FROZEN, Duration::from_secs(10)).await;
        println!(
            "SIGSTOP of {FROZEN}: declared down in the orchestrator's view after {:?}",
            frozen.elapsed()
        );

        let status = wait_finished(&api, 150, Duration::from_secs(90)).await;
        assert_eq!(
            status.tasks.succeeded, 150,
            "every task succeeded, the killed and frozen nodes' on other nodes: {:?}",
            status.tasks
        );

        cluster.signal(FROZEN, libc::SIGCONT);
        eventually(Duration::from_secs(30), "the thawed node rejoins", || {
            let api = api.clone();
            async move { (node_state(&api, FROZEN).await? == MemberState::Up).then_some(()) }
        })
        .await;
        assert!(
            cluster
                .node(FROZEN)
                .log_text()
                .contains("rejoining under a new incarnation"),
            "{}",
            cluster.log_tails()
        );

        // Nobody else was taken for dead once settled, though thirty
        // processes share two cores: the orchestrator's node declared down
        // exactly the two.
        let orchestrator_log = cluster.node("n01").log_text();
        let declared: Vec<&str> = orchestrator_log
            .get(formation_log.len()..)
            .expect("the log only grows")
            .lines()
            .filter(|line| line.contains("declaring peer down"))
            .collect();
        assert!(
            declared
                .iter()
                .all(|line| line.contains(&format!("{KILLED}#"))
                    || line.contains(&format!("{FROZEN}#"))),
            "only {KILLED} and {FROZEN} may be declared down: {declared:#?}"
        );
        // n01 does not watch n23 (its ring successors are n02…n06): it
        // learnt of the frozen node from n23's watchers' reports.
        assert!(
            declared
                .iter()
                .any(|line| line.contains(&format!("{FROZEN}#"))
                    && line.contains("watchers report it unreachable")),
            "{declared:#?}"
        );
        let status = api.cluster().await.unwrap();
        let up = status
            .nodes
            .iter()
            .filter(|node| node.state == MemberState::Up)
            .count();
        assert_eq!(
            up,
            NODES - 1,
            "all but the killed node are up: {:?}",
            status.nodes
        );

        let more: Vec<_> = (0..60)
            .map(|i| json!({ "agent_type": "echo", "payload": i }))
            .collect();
        api.submit_batch(&more).await.unwrap();
        let status = wait_finished(&api, 210, Duration::from_secs(60)).await;
        assert_eq!(status.tasks.succeeded, 210, "no task counted twice");
        cluster.stop().await;
    })
    .await;
}
