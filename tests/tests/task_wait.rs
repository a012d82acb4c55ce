//! `GET /v1/tasks/{id}?wait=` answers the same through every node: when the
//! wait runs out first, 200 with the task as it is now — never an error that
//! depends on whether the orchestrator happens to run behind that node.

use std::time::{Duration, Instant};

use herd_protocol::TaskState;
use herd_tests::{DEADLINE, three_node_cluster, with_deadline};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_that_runs_out_answers_the_current_view_through_every_node() {
    with_deadline(DEADLINE, async {
        let mut cluster = three_node_cluster(2).await;
        let id = cluster
            .api("n1")
            .submit("sleep", json!({ "ms": 60_000 }))
            .await
            .unwrap();
        // n1 runs the orchestrator; n2 and n3 forward to it over the cluster.
        for node in ["n1", "n2", "n3"] {
            for (wait, wanted) in [
                ("2s", Duration::from_secs(2)),
                ("1500ms", Duration::from_millis(1500)),
            ] {
                let api = cluster.api(node);
                let asked = Instant::now();
                let (status, body) = api
                    .get_json(&format!("/v1/tasks/{id}?wait={wait}"))
                    .await
                    .unwrap();
                let took = asked.elapsed();
                assert_eq!(status, 200, "?wait={wait} through {node}: {body}");
                assert_eq!(body["id"], id.to_string(), "through {node}: {body}");
                let state: TaskState = serde_json::from_value(body["state"].clone()).unwrap();
                assert!(
                    matches!(state, TaskState::Pending | TaskState::Running),
                    "through {node}: {body}"
                );
                assert!(
                    took >= wanted,
                    "?wait={wait} through {node} answered after {took:?}, before the wait ran out"
                );
            }
        }
        cluster.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_finishes_during_the_wait_is_answered_at_once_through_every_node() {
    with_deadline(DEADLINE, async {
        let mut cluster = three_node_cluster(2).await;
        for node in ["n1", "n2", "n3"] {
            let api = cluster.api(node);
            let id = api.submit("sleep", json!({ "ms": 300 })).await.unwrap();
            let asked = Instant::now();
            let view = api.task(id, Some(Duration::from_secs(30))).await.unwrap();
            assert_eq!(view.state, TaskState::Succeeded, "through {node}");
            assert!(
                asked.elapsed() < Duration::from_secs(20),
                "through {node} the answer waited for the whole wait"
            );
        }
        cluster.stop().await;
    })
    .await;
}
