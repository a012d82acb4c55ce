//! Two replica groups of the task book founded apart — orchestrator-role
//! nodes started without seeds, each founding its own group — meet when a
//! third node seeds both. Real processes: the older group is kept, the
//! younger group's node exits with code 2 and says what to fix.

use std::path::Path;
use std::time::Duration;

use herd_node::local_cluster::random_cookie;
use herd_protocol::messages::orchestrator::ClusterStatus;
use herd_protocol::{TaskId, TaskState};
use herd_tests::{
    ApiClient, DEADLINE, LocalCluster, NodeSpec, eventually, temp_dir, with_deadline,
};
use serde_json::json;

/// An orchestrator-role node with workers, started alone (no seeds), its
/// replica in `data_dir`.
fn alone(name: &str, data_dir: &Path) -> NodeSpec {
    let mut spec = NodeSpec::new(name, "orchestrator,worker,monitor", 2);
    spec.extra_args = vec!["--data-dir".into(), data_dir.to_string_lossy().into_owned()];
    spec
}

/// Waits until `name`'s `/v1/cluster` shows it leading a one-replica group
/// of its own and running the orchestrator.
async fn leads_a_group_of_its_own(api: &ApiClient, name: &str) -> ClusterStatus {
    eventually(
        Duration::from_secs(30),
        &format!("{name} founds and leads a one-replica group"),
        || {
            let api = api.clone();
            let name = name.to_string();
            async move {
                let status = api.cluster().await.ok()?;
                let replication = status.replication.as_ref()?;
                let alone = replication.leader.as_deref() == Some(name.as_str())
                    && replication.replicas.len() == 1
                    && status.orchestrator.as_str() == name;
                alone.then_some(status)
            }
        },
    )
    .await
}

/// Submits one echo task through `api` and waits until it succeeded.
async fn one_task_succeeds(api: &ApiClient, payload: &str) -> TaskId {
    let id = api.submit("echo", json!(payload)).await.unwrap();
    let view = api.task(id, Some(Duration::from_secs(20))).await.unwrap();
    assert_eq!(view.state, TaskState::Succeeded, "{view:?}");
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_two_groups_founded_apart_meet_the_younger_s_node_exits_two_and_the_older_keeps_the_cluster()
 {
    with_deadline(DEADLINE, async {
        let cookie = random_cookie();
        let data = temp_dir("split-groups").unwrap();
        let (older_dir, younger_dir) = (data.path().join("n1"), data.path().join("n2"));

        // n1 founds its group first; n2, started once n1 leads, founds the
        // younger one. Neither can reach the other.
        let mut n1 = LocalCluster::spawn(vec![alone("n1", &older_dir)], &cookie).unwrap();
        leads_a_group_of_its_own(&n1.api("n1"), "n1").await;
        let older_task = one_task_succeeds(&n1.api("n1"), "accepted by the older group").await;
        let mut n2 = LocalCluster::spawn(vec![alone("n2", &younger_dir)], &cookie).unwrap();
        leads_a_group_of_its_own(&n2.api("n2"), "n2").await;
        one_task_succeeds(&n2.api("n2"), "accepted by the younger group").await;

        // n3 seeds both: the groups meet.
        let mut bridge_spec = NodeSpec::new("n3", "worker,monitor", 2);
        bridge_spec.extra_args = [n1.seed_args(), n2.seed_args()].concat();
        let mut n3 = LocalCluster::spawn(vec![bridge_spec], &cookie).unwrap();

        // The younger group's node leaves with a configuration error that
        // names both groups and what to do with its tasks.
        let code = n2.wait_exit("n2", Duration::from_secs(60)).await;
        assert_eq!(code, Some(2), "n2 exits with code 2:\n{}", n2.log_tails());
        let log = n2.node("n2").log_text();
        for expected in [
            "replica belongs to the task book group founded by n2",
            "but the cluster's group was founded earlier by n1",
            "give every node the same --seed list",
            &format!(
                "tasks accepted by this group are in {}",
                younger_dir.display()
            ),
            "away to join the older group as a new replica",
        ] {
            assert!(log.contains(expected), "{expected:?} in n2's log:\n{log}");
        }
        assert!(
            log.lines()
                .any(|line| line.contains("ERROR") && line.contains("founded earlier by n1")),
            "an ERROR line says it:\n{log}"
        );

        // The older group is untouched: n1 still leads it alone (n2's
        // replica was never taken in) and is the orchestrator everywhere.
        let status = leads_a_group_of_its_own(&n1.api("n1"), "n1").await;
        assert!(
            status.replication.as_ref().unwrap().replicas[0].name == "n1",
            "{status:?}"
        );
        let bridge = n3.api("n3");
        eventually(
            Duration::from_secs(30),
            "n3 names n1 the orchestrator",
            || {
                let bridge = bridge.clone();
                async move {
                    let status = bridge.cluster().await.ok()?;
                    (status.orchestrator.as_str() == "n1").then_some(())
                }
            },
        )
        .await;
        let view = bridge
            .task(older_task, Some(Duration::from_secs(10)))
            .await
            .unwrap();
        assert_eq!(view.state, TaskState::Succeeded);
        // And it takes new work.
        one_task_succeeds(&bridge, "after the groups met").await;
        assert!(n1.nodes[0].pid().is_some(), "n1 keeps running");

        n3.stop().await;
        n1.stop().await;
    })
    .await;
}
