//! Rebalancing and autoscaling across real `herd` processes: weights follow
//! load, the pool grows and shrinks within its bounds, allocation follows
//! nodes, operators change weights at run time.

use std::path::Path;
use std::time::Duration;

use herd_protocol::messages::orchestrator::{ClusterStatus, MemberState};
use herd_protocol::messages::scaling::DecisionType;
use herd_tests::{
    ApiClientError, DEADLINE, LocalCluster, eventually, temp_dir, three_node_cluster_with,
    wait_finished, with_deadline, write_config,
};
use serde_json::json;

const SIX_TYPES: &str = r#"
[agents.generation]
weight = 0.30
handler = "sleep"
[agents.reflection]
weight = 0.20
handler = "sleep"
[agents.ranking]
weight = 0.20
handler = "sleep"
[agents.evolution]
weight = 0.15
handler = "sleep"
[agents.proximity]
weight = 0.10
handler = "sleep"
[agents.meta_review]
weight = 0.05
handler = "sleep"
"#;

async fn cluster(dir: &Path, scaling: &str, workers: u32) -> LocalCluster {
    let path = write_config(dir, "herd.toml", &format!("{scaling}\n{SIX_TYPES}"));
    three_node_cluster_with(workers, &path, &[]).await
}

/// Slots on pools that take work.
fn serving_slots(status: &ClusterStatus) -> u32 {
    status
        .nodes
        .iter()
        .filter(|n| n.state == MemberState::Up && !n.draining)
        .map(|n| n.workers)
        .sum()
}

fn slots_of(status: &ClusterStatus, agent_type: &str) -> u32 {
    status.agents[&agent_type.into()].workers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_on_one_type_takes_most_slots_and_the_idle_pool_shrinks_to_min_workers() {
    with_deadline(DEADLINE, async {
        let dir = temp_dir("scaling-load").unwrap();
        let mut cluster = cluster(
            dir.path(),
            r#"
[scaling]
mode = "production"
interval_ms = 200
min_workers = 3
max_workers = 18
stabilization_s = 2
"#,
            4,
        )
        .await;
        let api = cluster.api("n2");
        let before = api.cluster().await.unwrap();
        assert_eq!(serving_slots(&before), 12);
        assert_eq!(before.scaling.mode, "production");

        let tasks: Vec<_> = (0..400)
            .map(|_| json!({ "agent_type": "ranking", "payload": { "ms": 150 } }))
            .collect();
        api.submit_batch(&tasks).await.unwrap();

        // The health report names the bottleneck while the backlog lasts.
        let report = api.health_report().await.unwrap();
        assert_eq!(
            report
                .queue_health
                .bottleneck_agent
                .as_ref()
                .map(|t| t.as_str()),
            Some("ranking"),
            "{report:?}"
        );
        assert!(report.queue_health.total_pending_tasks > 0);

        // Within a few intervals ranking holds most slots; every other type
        // keeps at least one, and the pool grows past its 12 slots.
        let loaded = eventually(
            Duration::from_secs(15),
            "ranking holds most slots and the pool grew",
            || {
                let api = api.clone();
                async move {
                    let status = api.cluster().await.ok()?;
                    let total = serving_slots(&status);
                    let ranking = slots_of(&status, "ranking");
                    (ranking * 2 > total && total > 12).then_some(status)
                }
            },
        )
        .await;
        for (agent_type, agent) in &loaded.agents {
            assert!(
                agent.workers >= 1,
                "{agent_type} lost its last slot: {loaded:?}"
            );
            assert!(agent.weight > 0.0);
        }
        assert!(serving_slots(&loaded) <= 18);
        let decisions = api.scaling_decisions(100).await.unwrap();
        let grew = decisions
            .iter()
            .find(|d| d.decision_type == DecisionType::ScaleUp)
            .expect("a scale_up decision was recorded");
        assert!(grew.target_workers > grew.current_workers);
        let moved = decisions
            .iter()
            .find_map(|d| d.agent_weight_adjustments.get(&"ranking".into()))
            .expect("ranking's weight was adjusted");
        assert!(moved.new_weight > moved.previous_weight);
        assert!(
            moved.new_weight <= moved.previous_weight * 1.5 + 1e-9,
            "{moved:?}"
        );
        assert!(!moved.reason.is_empty());
        // Every slot is listed with the type it serves.
        assert!(
            decisions
                .iter()
                .any(|d| d.resource_allocation.len() as u32 == d.target_workers.min(18)),
            "{decisions:?}"
        );

        // The load stops: after the stabilization window the pool shrinks to
        // min_workers.
        wait_finished(&api, 400, Duration::from_secs(120)).await;
        let idle = eventually(
            Duration::from_secs(30),
            "the pool shrinks to 3 slots",
            || {
                let api = api.clone();
                async move {
                    let status = api.cluster().await.ok()?;
                    (serving_slots(&status) == 3).then_some(status)
                }
            },
        )
        .await;
        let decisions = api.scaling_decisions(100).await.unwrap();
        let shrank = decisions
            .iter()
            .find(|d| d.decision_type == DecisionType::ScaleDown)
            .expect("a scale_down decision was recorded");
        assert_eq!(shrank.target_workers, 3);
        // Spread by capacity: one slot per node.
        for node in &idle.nodes {
            assert_eq!(node.workers, 1, "{:?}", idle.nodes);
        }
        // A smaller pool still runs every type (idle slots are lent).
        let id = api.submit("meta_review", json!({ "ms": 1 })).await.unwrap();
        let view = api.task(id, Some(Duration::from_secs(10))).await.unwrap();
        assert_eq!(view.state, herd_protocol::TaskState::Succeeded);
        cluster.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_weight_takes_effect_and_invalid_updates_are_refused() {
    with_deadline(DEADLINE, async {
        let dir = temp_dir("scaling-put").unwrap();
        // Without prefetch: the test counts the attempts of each type on the
        // slots, which with prefetch would include those waiting in backlogs.
        let mut cluster = cluster(
            dir.path(),
            "[scaling]\nslot_credit = 1\nmax_slot_credit = 1",
            4,
        )
        .await;
        let api = cluster.api("n3");
        let answer = api
            .update_agent("generation", &json!({ "weight": 0.7 }))
            .await
            .unwrap();
        assert_eq!(answer["pinned"], json!(true));
        let status = api.cluster().await.unwrap();
        let generation = &status.agents[&"generation".into()];
        assert!((generation.weight - 0.7).abs() < 1e-6, "{status:?}");
        assert!(generation.pinned);
        // 0.7 of 12 slots, less one slot kept for each of the five other types.
        assert_eq!(generation.workers, 7, "{status:?}");
        let total: f64 = status.agents.values().map(|a| a.weight).sum();
        assert!((total - 1.0).abs() < 1e-6);

        // The new weight binds under contention: generation runs on most slots.
        let tasks: Vec<_> = ["generation", "ranking", "evolution"]
            .iter()
            .flat_map(|t| {
                (0..30).map(move |_| json!({ "agent_type": t, "payload": { "ms": 1500 } }))
            })
            .collect();
        api.submit_batch(&tasks).await.unwrap();
        eventually(
            Duration::from_secs(10),
            "generation runs on 7 slots, the others on one each",
            || {
                let api = api.clone();
                async move {
                    let status = api.cluster().await.ok()?;
                    let busy = |t: &str| status.agents[&t.into()].busy;
                    (busy("generation") == 7 && busy("ranking") == 1 && busy("evolution") == 1)
                        .then_some(())
                }
            },
        )
        .await;

        let bounds_before = api.cluster().await.unwrap().scaling;
        let refused = |result: Result<serde_json::Value, ApiClientError>| match result {
            Err(ApiClientError::Api {
                status,
                code,
                message,
            }) => (status, code, message),
            other => panic!("expected a refusal, got {other:?}"),
        };
        let (status, code, message) = refused(
            api.update_agent("generation", &json!({ "weight": 1.5 }))
                .await,
        );
        assert_eq!(
            (status, code.as_str()),
            (422, "invalid_update"),
            "{message}"
        );
        assert!(message.contains("0.0 to 1.0"), "{message}");
        let (status, code, message) = refused(
            api.update_agent("nonsense", &json!({ "weight": 0.2 }))
                .await,
        );
        assert_eq!(
            (status, code.as_str()),
            (404, "unknown_agent_type"),
            "{message}"
        );
        assert!(
            message.contains("generation"),
            "the known types are listed: {message}"
        );
        let (status, code, _) =
            refused(api.update_agent("ranking", &json!({ "wieght": 0.2 })).await);
        assert_eq!((status, code.as_str()), (400, "malformed_json"));
        let (status, code, _) = refused(api.update_agent("ranking", &json!({})).await);
        assert_eq!((status, code.as_str()), (422, "empty_update"));
        let (status, code, message) = refused(
            api.update_scaling(&json!({ "min_workers": 50, "max_workers": 10 }))
                .await,
        );
        assert_eq!(
            (status, code.as_str()),
            (422, "invalid_update"),
            "{message}"
        );
        assert!(message.contains("min_workers"), "{message}");
        // Nothing changed by the refused requests.
        let after = api.cluster().await.unwrap();
        assert!((after.agents[&"generation".into()].weight - 0.7).abs() < 1e-6);
        assert_eq!(after.scaling, bounds_before);

        // Releasing the pin hands the type back to the (here: disabled) rebalancer.
        let answer = api
            .update_agent("generation", &json!({ "pinned": false }))
            .await
            .unwrap();
        assert_eq!(answer["pinned"], json!(false));
        let answer = api
            .update_scaling(&json!({ "max_workers": 20 }))
            .await
            .unwrap();
        assert_eq!(answer["max_workers"], json!(20));
        cluster.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocation_follows_a_node_leaving_and_joining() {
    with_deadline(DEADLINE, async {
        let dir = temp_dir("scaling-join").unwrap();
        let mut cluster = cluster(
            dir.path(),
            r#"
[scaling]
mode = "production"
interval_ms = 200
min_workers = 6
max_workers = 30
stabilization_s = 2
"#,
            2,
        )
        .await;
        let api = cluster.api("n1");
        // Six slots over three nodes; each type has one. (A pool that registers
        // first may be grown to min_workers before the others arrive; the
        // surplus is retired after the window.)
        eventually(
            Duration::from_secs(15),
            "six slots over three nodes",
            || {
                let api = api.clone();
                async move {
                    let status = api.cluster().await.ok()?;
                    let three = status.nodes.iter().filter(|n| n.workers > 0).count() == 3;
                    (three && serving_slots(&status) == 6).then_some(())
                }
            },
        )
        .await;

        // n3 leaves (SIGTERM drains it): the autoscaler keeps min_workers on the
        // two nodes left, and every slot is allotted to a type.
        assert_eq!(
            cluster.terminate("n3", Duration::from_secs(20)).await,
            Some(0)
        );
        let after_leave = eventually(
            Duration::from_secs(15),
            "n1 and n2 hold the six slots",
            || {
                let api = api.clone();
                async move {
                    let status = api.cluster().await.ok()?;
                    let n3_gone = status
                        .nodes
                        .iter()
                        .all(|n| n.name.as_str() != "n3" || n.state != MemberState::Up);
                    (n3_gone && serving_slots(&status) == 6).then_some(status)
                }
            },
        )
        .await;
        let allotted: u32 = after_leave.agents.values().map(|a| a.workers).sum();
        assert_eq!(allotted, 6, "{after_leave:?}");
        for node in after_leave.nodes.iter().filter(|n| n.name.as_str() != "n3") {
            assert_eq!(node.workers, 3, "{:?}", after_leave.nodes);
            assert_eq!(node.slots_by_type.values().sum::<u32>(), 3);
        }

        // n3 comes back: it gets slots and quotas again, and once the surplus
        // has been idle for the window the pool is back at min_workers.
        cluster.restart("n3").unwrap();
        let rejoined = eventually(
            Duration::from_secs(30),
            "n3 rejoins with slots and the pool settles at 6",
            || {
                let api = api.clone();
                async move {
                    let status = api.cluster().await.ok()?;
                    let n3 = status.nodes.iter().find(|n| n.name.as_str() == "n3")?;
                    let settled = n3.state == MemberState::Up
                        && n3.workers > 0
                        && n3.slots_by_type.values().sum::<u32>() == n3.workers
                        && serving_slots(&status) == 6;
                    settled.then_some(status)
                }
            },
        )
        .await;
        let allotted: u32 = rejoined.agents.values().map(|a| a.workers).sum();
        assert_eq!(allotted, 6);
        // Tasks run on the rejoined node too.
        let tasks: Vec<_> = (0..60)
            .map(|_| json!({ "agent_type": "generation", "payload": { "ms": 50 } }))
            .collect();
        api.submit_batch(&tasks).await.unwrap();
        let status = wait_finished(&api, 60, Duration::from_secs(60)).await;
        assert_eq!(status.tasks.succeeded, 60);
        cluster.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shrinking_the_pool_under_load_never_interrupts_a_running_task() {
    with_deadline(DEADLINE, async {
        let dir = temp_dir("scaling-shrink").unwrap();
        let mut cluster = cluster(
            dir.path(),
            r#"
[scaling]
mode = "production"
interval_ms = 200
min_workers = 3
max_workers = 12
stabilization_s = 60
slot_credit = 1                  # "three wait" in the orchestrator's queue
max_slot_credit = 1
"#,
            4,
        )
        .await;
        let api = cluster.api("n1");
        // Twelve tasks, two of each type, that each hold a slot for 3 s: every
        // slot is busy (no type is quiet, so none keeps a slot in reserve).
        let types = [
            "generation",
            "reflection",
            "ranking",
            "evolution",
            "proximity",
            "meta_review",
        ];
        let tasks: Vec<_> = (0..12)
            .map(|i| json!({ "agent_type": types[i % 6], "payload": { "ms": 3000 } }))
            .collect();
        let ids = api.submit_batch(&tasks).await.unwrap();
        eventually(Duration::from_secs(10), "all 12 slots busy", || {
            let api = api.clone();
            async move {
                let status = api.cluster().await.ok()?;
                (status.nodes.iter().map(|n| n.busy).sum::<u32>() == 12).then_some(())
            }
        })
        .await;
        // The operator lowers the ceiling: the pool must shrink to 3 slots, but
        // only as the running tasks end.
        api.update_scaling(&json!({ "max_workers": 3 }))
            .await
            .unwrap();
        eventually(Duration::from_secs(5), "the pool is told to shrink", || {
            let api = api.clone();
            async move {
                let status = api.cluster().await.ok()?;
                (serving_slots(&status) == 3).then_some(())
            }
        })
        .await;
        for id in ids {
            let view = api.task(id, Some(Duration::from_secs(20))).await.unwrap();
            assert_eq!(view.state, herd_protocol::TaskState::Succeeded, "{view:?}");
            assert_eq!(view.attempts, 1, "a running task was interrupted: {view:?}");
        }
        let decisions = api.scaling_decisions(20).await.unwrap();
        assert!(
            decisions
                .iter()
                .any(|d| d.decision_type == DecisionType::ScaleDown && d.target_workers == 3),
            "{decisions:?}"
        );
        // Afterwards three slots take work: two tasks each of the three types
        // that hold them saturate the pool and three wait.
        let tasks: Vec<_> = (0..6)
            .map(|i| json!({ "agent_type": types[i % 3], "payload": { "ms": 2000 } }))
            .collect();
        api.submit_batch(&tasks).await.unwrap();
        let status = eventually(Duration::from_secs(10), "three run and three wait", || {
            let api = api.clone();
            async move {
                let status = api.cluster().await.ok()?;
                let busy: u32 = status.nodes.iter().map(|n| n.busy).sum();
                (busy == 3 && status.tasks.pending == 3).then_some(status)
            }
        })
        .await;
        assert_eq!(serving_slots(&status), 3);
        cluster.stop().await;
    })
    .await;
}
