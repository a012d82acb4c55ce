//! Raft replication of the task book (`--replication raft`): the
//! orchestrator survives its node. Real processes, real signals; every test
//! keeps a history of acknowledged submissions and checks each one's final
//! state.

use std::collections::HashSet;
use std::time::Duration;

use herd_protocol::messages::replica::{ReplicaRole, ReplicationStatus};
use herd_protocol::{TaskId, TaskState};
use herd_tests::{
    ApiClient, DEADLINE, LocalCluster, NodeSpec, all_tasks, eventually, start_cluster, temp_dir,
    wait_finished, wait_until_pool_busy, with_deadline,
};
use serde_json::json;

/// The replica group as node `api` reports it, once it has three voters
/// that all hold the leader's log (within the 1,000 entries at which the
/// leader counts a replica caught up: under load, appends are in flight).
async fn three_voters_in_step(api: &ApiClient) -> ReplicationStatus {
    eventually(
        Duration::from_secs(30),
        "the group has three voters in step",
        || {
            let api = api.clone();
            async move {
                let replication = api.cluster().await.ok()?.replication?;
                let voting = replication
                    .replicas
                    .iter()
                    .filter(|r| matches!(r.state, ReplicaRole::Leader | ReplicaRole::Follower))
                    .count();
                let leader_at = replication
                    .replicas
                    .iter()
                    .find(|r| r.state == ReplicaRole::Leader)?
                    .applied_index?;
                let in_step = replication
                    .replicas
                    .iter()
                    .all(|r| r.applied_index.is_some_and(|at| at + 1_000 >= leader_at));
                (voting == 3 && in_step).then_some(replication)
            }
        },
    )
    .await
}

/// Waits (15 s at most) until `api`'s node names a leader other than `old`;
/// returns it. On timeout, fails with the last answer and the nodes' logs.
async fn new_leader(cluster: &LocalCluster, api: &ApiClient, old: &str) -> String {
    let _step = herd_tests::waiting_for(&format!("a leader other than {old}"));
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let last = match api.cluster().await {
            Ok(status) => {
                let name = status.orchestrator.to_string();
                let leads = status.replication.as_ref().is_some_and(|group| {
                    group
                        .replicas
                        .iter()
                        .any(|r| r.name == name && r.state == ReplicaRole::Leader)
                });
                if name != old && leads {
                    return name;
                }
                format!(
                    "orchestrator {name:?}, replication {:?}",
                    status.replication
                )
            }
            Err(error) => format!("error: {error}"),
        };
        assert!(
            std::time::Instant::now() < deadline,
            "no leader other than {old} within 15 s; last answer: {last}\n{}",
            cluster.log_tails()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn sleep_tasks(count: usize, ms: u64) -> Vec<serde_json::Value> {
    (0..count)
        .map(|_| json!({ "agent_type": "sleep", "payload": { "ms": ms } }))
        .collect()
}

/// Submits through `api` until `total` submissions were acknowledged,
/// resending a batch the cluster refused (during an election) with its
/// idempotency keys — the ids it answered with are the history of
/// acknowledged tasks.
async fn submit_acknowledged(api: &ApiClient, total: usize, ms: u64) -> Vec<TaskId> {
    submit_acknowledged_in_batches(api, total, 500, ms).await
}

/// [`submit_acknowledged`] in batches of `batch`, one after another: each
/// acknowledged batch is at least one log entry of its own.
async fn submit_acknowledged_in_batches(
    api: &ApiClient,
    total: usize,
    batch: usize,
    ms: u64,
) -> Vec<TaskId> {
    let mut acknowledged = Vec::new();
    while acknowledged.len() < total {
        let batch = sleep_tasks(batch.min(total - acknowledged.len()), ms);
        let limit = Duration::from_secs(60);
        acknowledged.extend(herd_tests::submit_until_acknowledged(api, &batch, limit).await);
    }
    acknowledged
}

/// The command line of a curl, inside `net`'s namespace, that POSTs `body`
/// to `url` with `token` within `seconds`; it prints the answer's body, then
/// a line with its status.
fn curl_post_in(
    net: &herd_tests::Partitionable,
    token: &str,
    url: &str,
    body: &str,
    seconds: u32,
) -> Vec<String> {
    let mut curl = net.wrapper();
    curl.extend(
        [
            "curl",
            "-s",
            "-m",
            &seconds.to_string(),
            "-w",
            "\n%{http_code}",
            "-X",
            "POST",
            "-H",
            "content-type: application/json",
            "-H",
            &format!("authorization: Bearer {token}"),
            "-d",
            body,
            url,
        ]
        .map(str::to_string),
    );
    curl
}

/// Runs a [`curl_post_in`] command line: the answer's status and JSON body,
/// or `None` if curl could not run or the answer was not JSON.
async fn curl_answer(curl: Vec<String>) -> Option<(String, serde_json::Value)> {
    let output = tokio::process::Command::new(&curl[0])
        .args(&curl[1..])
        .output()
        .await
        .ok()?;
    let answer = String::from_utf8_lossy(&output.stdout);
    let (body, status) = answer.rsplit_once('\n')?;
    Some((status.to_string(), serde_json::from_str(body).ok()?))
}

/// The history check: every acknowledged task is held and ends succeeded,
/// and the cluster counts each success once (its succeeded count equals the
/// tasks it lists as succeeded). Submissions whose answer was lost in a
/// failover may have been committed too: they are tasks like any other, but
/// not in the history.
async fn check_history(api: &ApiClient, acknowledged: &[TaskId]) {
    let wanted: HashSet<TaskId> = acknowledged.iter().copied().collect();
    let tasks = eventually(
        Duration::from_secs(120),
        "every acknowledged task finishes",
        || {
            let api = api.clone();
            let wanted = wanted.clone();
            async move {
                let tasks = all_tasks(&api).await;
                let done = tasks
                    .iter()
                    .filter(|task| wanted.contains(&task.id) && task.state.is_terminal())
                    .count();
                let everything_done = tasks.iter().all(|task| task.state.is_terminal());
                (done == wanted.len() && everything_done).then_some(tasks)
            }
        },
    )
    .await;
    let held: HashSet<TaskId> = tasks.iter().map(|task| task.id).collect();
    let lost: Vec<&TaskId> = acknowledged
        .iter()
        .filter(|id| !held.contains(id))
        .collect();
    assert!(lost.is_empty(), "acknowledged tasks lost: {lost:?}");
    let failed: Vec<_> = tasks
        .iter()
        .filter(|task| wanted.contains(&task.id) && task.state != TaskState::Succeeded)
        .map(|task| (task.id, task.state))
        .collect();
    assert!(
        failed.is_empty(),
        "acknowledged tasks not succeeded: {failed:?}"
    );
    let status = api.cluster().await.unwrap();
    let succeeded = tasks
        .iter()
        .filter(|task| task.state == TaskState::Succeeded)
        .count() as u64;
    assert_eq!(
        status.tasks.succeeded, succeeded,
        "each task completed exactly once: {:?}",
        status.tasks
    );
}

async fn kill_the_leader_during_tasks(cluster: &mut LocalCluster) -> String {
    let survivor_api = |leader: &str| {
        let name = if leader == "n1" { "n2" } else { "n1" };
        (name.to_string(), cluster.api(name))
    };
    let api = cluster.api("n2");
    let before = three_voters_in_step(&api).await;
    let leader = before.leader.clone().expect("a leader");
    let (_, observer) = survivor_api(&leader);
    let acknowledged = submit_acknowledged(&observer, 20_000, 5).await;
    eventually(Duration::from_secs(30), "tasks are running", || {
        let observer = observer.clone();
        async move {
            let status = observer.cluster().await.ok()?;
            (status.tasks.succeeded > 200 && status.tasks.running > 0).then_some(())
        }
    })
    .await;
    cluster.kill(leader.as_str()).await;
    let elected = new_leader(cluster, &observer, &leader).await;
    assert_ne!(elected, leader);
    // Submissions go on through the survivors.
    let more = submit_acknowledged(&observer, 500, 5).await;
    let history: Vec<TaskId> = acknowledged.into_iter().chain(more).collect();
    check_history(&observer, &history).await;
    leader
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_leader_during_tasks_loses_nothing_in_memory() {
    with_deadline(DEADLINE, async {
        let mut cluster = start_cluster(NodeSpec::three_replicas(8, None)).await;
        let old_leader = kill_the_leader_during_tasks(&mut cluster).await;
        // `herd status` shows the group as the new leader sees it.
        let survivor = if old_leader == "n1" { "n2" } else { "n1" };
        let output = std::process::Command::new(herd_node::local_cluster::herd_binary().unwrap())
            .args(["status", "--api", &cluster.node(survivor).api_url()])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{text}");
        let line = text
            .lines()
            .find(|line| line.starts_with("replication: term "))
            .unwrap_or_else(|| panic!("no replication line:\n{text}"));
        assert!(line.contains(" leader "), "{line}");
        assert!(
            line.contains(&format!("{old_leader} unreachable")),
            "{line}"
        );
        cluster.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_weight_and_pool_bounds_set_at_run_time_survive_kill_9_of_the_leader() {
    with_deadline(DEADLINE, async {
        let mut cluster = start_cluster(NodeSpec::three_replicas(2, None)).await;
        let api = cluster.api("n2");
        let leader = three_voters_in_step(&api).await.leader.expect("a leader");
        // Through a follower: the API forwards to the leader, which answers
        // once the change is committed on a majority.
        let observer = cluster.api(if leader == "n1" { "n2" } else { "n1" });
        let answer = observer
            .update_agent("echo", &json!({ "weight": 0.8 }))
            .await
            .unwrap();
        assert_eq!(answer["pinned"], json!(true), "{answer}");
        let bounds = json!({
            "min_workers": 2,
            "max_workers": 40,
            "scale_up_threshold": 0.9,
            "scale_down_threshold": 0.1,
        });
        let answer = observer.update_scaling(&bounds).await.unwrap();
        assert_eq!(answer["max_workers"], json!(40), "{answer}");
        let before = observer.cluster().await.unwrap();
        assert_eq!(before.orchestrator.as_str(), leader);

        cluster.kill(leader.as_str()).await;
        let elected = new_leader(&cluster, &observer, &leader).await;
        let after = cluster.api(elected.as_str()).cluster().await.unwrap();
        assert_eq!(after.orchestrator.as_str(), elected);
        let echo = &after.agents[&"echo".into()];
        assert!(echo.pinned, "{:?}", after.agents);
        assert!((echo.weight - 0.8).abs() < 1e-9, "{:?}", after.agents);
        let sleep = &after.agents[&"sleep".into()];
        assert!(!sleep.pinned);
        assert!((sleep.weight - 0.2).abs() < 1e-9, "{:?}", after.agents);
        assert_eq!(after.scaling, before.scaling);
        assert_eq!(
            (after.scaling.min_workers, after.scaling.max_workers),
            (2, 40)
        );
        assert_eq!(
            (
                after.scaling.scale_up_threshold,
                after.scaling.scale_down_threshold
            ),
            (0.9, 0.1)
        );
        cluster.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_leader_with_data_directories_loses_nothing_and_it_rejoins_as_itself() {
    with_deadline(DEADLINE, async {
        let data = temp_dir("replication").unwrap();
        let mut cluster = start_cluster(NodeSpec::three_replicas(8, Some(data.path()))).await;
        let old_leader = kill_the_leader_during_tasks(&mut cluster).await;
        // The old leader restarts on its data directory: the same replica,
        // back as a voter that follows, with the whole book.
        cluster.restart(old_leader.as_str()).unwrap();
        let observer = cluster.api(if old_leader == "n1" { "n2" } else { "n1" });
        eventually(
            Duration::from_secs(30),
            "the restarted replica follows again",
            || {
                let observer = observer.clone();
                let old_leader = old_leader.clone();
                async move {
                    let replication = observer.cluster().await.ok()?.replication?;
                    let names: HashSet<&str> = replication
                        .replicas
                        .iter()
                        .map(|r| r.name.as_str())
                        .collect();
                    let back = replication
                        .replicas
                        .iter()
                        .any(|r| r.name == old_leader && r.state == ReplicaRole::Follower);
                    (names.len() == 3 && back).then_some(())
                }
            },
        )
        .await;
        // It is the same replica (its id kept in its data directory): the
        // leader's log reaches it, including what was written after it
        // came back. A replica with a new id would not be sent entries
        // under the old one's name.
        let later = submit_acknowledged(&observer, 100, 5).await;
        wait_finished(&observer, 20_600, Duration::from_secs(60)).await;
        assert_eq!(later.len(), 100);
        three_voters_in_step(&observer).await;
        cluster.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_of_three_replicas_down_the_survivor_says_no_quorum_and_resumes_when_one_returns()
{
    with_deadline(DEADLINE, async {
        let data = temp_dir("replication-quorum").unwrap();
        let mut cluster = start_cluster(NodeSpec::three_replicas(4, Some(data.path()))).await;
        let replication = three_voters_in_step(&cluster.api("n1")).await;
        let leader = replication.leader.expect("a leader");
        // The survivor is a follower: the leader and the other go down.
        let survivor = ["n1", "n2", "n3"]
            .into_iter()
            .find(|name| *name != leader)
            .unwrap();
        let other = ["n1", "n2", "n3"]
            .into_iter()
            .find(|name| *name != leader && name != &survivor)
            .unwrap();
        let api = cluster.api(survivor);
        let acknowledged = submit_acknowledged(&api, 200, 5).await;
        wait_finished(&api, 200, Duration::from_secs(60)).await;

        cluster.kill(leader.as_str()).await;
        cluster.kill(other).await;
        let base = api.base().to_string();
        let task =
            serde_json::to_vec(&json!({"agent_type": "sleep", "payload": {"ms": 5}})).unwrap();
        let (status, body, retry_after) = eventually(
            Duration::from_secs(20),
            "the survivor refuses writes with no_quorum",
            || {
                let base = base.clone();
                let task = task.clone();
                async move {
                    let answer = herd_tests::post_raw(&base, "/v1/tasks", task).await;
                    (answer.1["code"] == "no_quorum").then_some(answer)
                }
            },
        )
        .await;
        assert_eq!(status, 503);
        assert_eq!(retry_after.as_deref(), Some("1"));
        let message = body["error"].as_str().unwrap();
        assert!(
            message.contains(&format!("reachable from here: {survivor}")),
            "{message}"
        );
        assert!(
            message.contains(&leader) && message.contains(other),
            "{message}"
        );
        // Reads that need the orchestrator say the same.
        let answer = herd_tests::send_raw(&base, "GET", "/v1/tasks?limit=1", b"").await;
        assert_eq!(answer.status, 503);
        assert_eq!(answer.body["code"], "no_quorum");

        // One replica comes back on its data directory: a majority again.
        cluster.restart(other).unwrap();
        let resumed = eventually(
            Duration::from_secs(30),
            "the cluster takes writes again",
            || {
                let api = api.clone();
                async move { api.submit_batch(&sleep_tasks(50, 5)).await.ok() }
            },
        )
        .await;
        let history: Vec<TaskId> = acknowledged.into_iter().chain(resumed).collect();
        check_history(&api, &history).await;
        cluster.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_leader_is_deposed_and_once_thawed_stops_leading_and_its_late_results_are_fenced()
{
    with_deadline(DEADLINE, async {
        let mut cluster = start_cluster(NodeSpec::three_replicas(4, None)).await;
        let replication = three_voters_in_step(&cluster.api("n1")).await;
        let leader = replication.leader.expect("a leader");
        let observer_name = if leader == "n1" { "n2" } else { "n1" };
        let observer = cluster.api(observer_name);
        // Long tasks, so the leader's own pool is frozen with attempts
        // running, whose results it reports once thawed.
        let acknowledged = submit_acknowledged(&observer, 36, 4_000).await;
        wait_until_pool_busy(&cluster.api(leader.as_str()), &leader).await;
        cluster.signal(leader.as_str(), libc::SIGSTOP);
        let elected = new_leader(&cluster, &observer, &leader).await;
        assert_ne!(elected, leader);
        let more = submit_acknowledged(&observer, 20, 100).await;
        cluster.signal(leader.as_str(), libc::SIGCONT);
        // Thawed, the old leader learns of the newer term and stops its
        // orchestrator; it never runs two at once with the new leader.
        eventually(
            Duration::from_secs(20),
            "the thawed old leader stops its orchestrator",
            || {
                let text = cluster.node(leader.as_str()).log_text();
                async move {
                    text.contains("the orchestrator stopped with its term")
                        .then_some(())
                }
            },
        )
        .await;
        // Once the old leader is back, the cluster still has an orchestrator
        // (even when the thawed node first declared its peers down and made
        // the new leader's node rejoin under a new incarnation).
        let after_thaw = eventually(
            Duration::from_secs(30),
            "the cluster takes writes after the old leader resumed",
            || {
                let observer = observer.clone();
                async move { observer.submit_batch(&sleep_tasks(20, 10)).await.ok() }
            },
        )
        .await;
        let history: Vec<TaskId> = acknowledged
            .into_iter()
            .chain(more)
            .chain(after_thaw)
            .collect();
        check_history(&observer, &history).await;
        // The attempts the frozen leader's pool was running were given up
        // and re-run; their late results (reported to its own orchestrator,
        // whose term was over, so never committed, or to the new one, which
        // fences superseded attempts) did not count: each task succeeded
        // once.
        let tasks = all_tasks(&observer).await;
        assert!(
            tasks.iter().any(|task| task.attempts > 1),
            "some attempts were running on the frozen leader"
        );
        let status = observer.cluster().await.unwrap();
        assert_eq!(
            status.tasks.succeeded,
            history.len() as u64,
            "no task counted twice"
        );
        cluster.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_that_isolates_the_leader_the_minority_refuses_writes_the_majority_runs_on_and_nothing_is_lost()
 {
    with_deadline(DEADLINE, async {
        let net = match herd_tests::Partitionable::create() {
            Ok(net) => net,
            Err(why) => {
                eprintln!(
                    "SKIPPED a_partition_that_isolates_the_leader_...: {why}; run the tests as root to include it"
                );
                return;
            }
        };
        // n1 founds the group, so it leads: it goes in the namespace.
        let mut specs = NodeSpec::three_replicas(4, None);
        specs[0].host = net.inner_ip.clone();
        specs[0].wrapper = net.wrapper();
        specs[1].host = net.outer_ip.clone();
        specs[2].host = net.outer_ip.clone();
        let token = herd_node::local_cluster::random_cookie();
        for spec in &mut specs {
            spec.env.push(("HERD_API_TOKEN".into(), token.clone()));
        }
        let mut cluster = start_cluster(specs).await;
        let observer = cluster.api("n2");
        let replication = three_voters_in_step(&observer).await;
        assert_eq!(replication.leader.as_deref(), Some("n1"), "the founder leads");
        let acknowledged = submit_acknowledged(&observer, 2_000, 20).await;
        eventually(Duration::from_secs(30), "tasks are running", || {
            let observer = observer.clone();
            async move {
                let status = observer.cluster().await.ok()?;
                (status.tasks.succeeded > 100 && status.tasks.running > 0).then_some(())
            }
        })
        .await;

        net.cut();
        // A submission that reaches the isolated leader just after the cut
        // cannot commit: when its orchestrator stops for want of a quorum
        // (750 ms), the request is answered 503 outcome_unknown, not
        // dropped; resent with its idempotency key to the majority, it is
        // taken once. A client inside n1's namespace sends it.
        let n1_url = format!("{}/v1/tasks", cluster.node("n1").api_url());
        let cut_off_task =
            r#"{"agent_type":"sleep","payload":{"ms":5},"idempotency_key":"sent-to-the-cut-off-leader"}"#;
        // Spawned, so it is sent now, while new_leader is awaited.
        let in_flight = tokio::spawn(curl_answer(curl_post_in(
            &net,
            &token,
            &n1_url,
            cut_off_task,
            20,
        )));
        let elected = new_leader(&cluster, &observer, "n1").await;
        let (status, body) = in_flight
            .await
            .unwrap()
            .expect("curl runs and the answer is JSON");
        assert_eq!(status, "503", "{body}");
        assert_eq!(body["code"], "outcome_unknown", "{body}");
        let resent: serde_json::Value = serde_json::from_str(cut_off_task).unwrap();
        let resent =
            herd_tests::submit_until_acknowledged(&observer, &[resent], Duration::from_secs(30))
                .await[0];
        // The minority side (n1 alone) refuses writes with no_quorum; a
        // client inside its namespace asks it.
        let curl = curl_post_in(
            &net,
            &token,
            &n1_url,
            r#"{"agent_type":"sleep","payload":{"ms":5}}"#,
            5,
        );
        let refusal = eventually(
            Duration::from_secs(20),
            "the isolated old leader refuses writes with no_quorum",
            || {
                let curl = curl.clone();
                async move {
                    let (status, body) = curl_answer(curl).await?;
                    (status == "503" && body["code"] == "no_quorum").then_some(body)
                }
            },
        )
        .await;
        let message = refusal["error"].as_str().unwrap();
        assert!(message.contains("reachable from here: n1"), "{message}");
        // The majority runs on.
        let more = submit_acknowledged(&observer, 300, 5).await;

        net.heal();
        eventually(
            Duration::from_secs(40),
            "n1 is back in the group after the heal",
            || {
                let observer = observer.clone();
                async move {
                    let replication = observer.cluster().await.ok()?.replication?;
                    replication
                        .replicas
                        .iter()
                        .any(|r| r.name == "n1" && r.state == ReplicaRole::Follower)
                        .then_some(())
                }
            },
        )
        .await;
        let history: Vec<TaskId> = acknowledged
            .into_iter()
            .chain(more)
            .chain([resent])
            .collect();
        check_history(&observer, &history).await;
        let keyed: Vec<_> = all_tasks(&observer)
            .await
            .into_iter()
            .filter(|t| t.idempotency_key.as_deref() == Some("sent-to-the-cut-off-leader"))
            .collect();
        assert_eq!(keyed.len(), 1, "the resent submission is one task: {keyed:?}");
        assert_eq!(keyed[0].id, resent);
        assert_ne!(elected, "n1");
        cluster.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_data_directory_was_wiped_rejoins_as_a_new_one_and_catches_up_from_a_snapshot()
 {
    with_deadline(DEADLINE, async {
        let data = temp_dir("replication-wiped").unwrap();
        // Frequent snapshots, so the leader's log is compacted before the
        // wiped replica comes back and it can only catch up by snapshot.
        let config = herd_tests::write_config(
            data.path(),
            "herd.toml",
            "[cluster]\nsnapshot_every_entries = 100\n",
        );
        let specs = NodeSpec::three_replicas(8, Some(data.path()))
            .into_iter()
            .map(|spec| NodeSpec {
                config: Some(config.clone()),
                ..spec
            })
            .collect();
        let mut cluster = start_cluster(specs).await;
        let replication = three_voters_in_step(&cluster.api("n1")).await;
        let leader = replication.leader.expect("a leader");
        let wiped = ["n1", "n2", "n3"]
            .into_iter()
            .find(|name| *name != leader)
            .unwrap();
        let observer_name = ["n1", "n2", "n3"]
            .into_iter()
            .find(|name| *name != leader && name != &wiped)
            .unwrap();
        let observer = cluster.api(observer_name);
        let acknowledged = submit_acknowledged(&observer, 2_000, 1).await;
        wait_finished(&observer, 2_000, Duration::from_secs(60)).await;

        cluster.kill(wiped).await;
        std::fs::remove_dir_all(data.path().join(wiped)).unwrap();
        // Work goes on while it is away (two voters of three are a quorum):
        // a hundred submissions one after another, so at least a hundred
        // log entries — a snapshot (every 100) and the log purged behind it
        // — however large the groups the leader commits.
        let more = submit_acknowledged_in_batches(&observer, 500, 5, 1).await;
        wait_finished(&observer, 2_500, Duration::from_secs(60)).await;
        cluster.restart(wiped).unwrap();
        // A new replica on the same node: taken in as a learner, caught up
        // from the leader's snapshot, then a voter in place of the lost one.
        three_voters_in_step(&observer).await;
        eventually(
            Duration::from_secs(30),
            "the wiped replica installed a snapshot",
            || {
                let text = cluster.node(wiped).log_text();
                async move {
                    text.contains("installed a snapshot of the task book from the leader")
                        .then_some(())
                }
            },
        )
        .await;
        let history: Vec<TaskId> = acknowledged.into_iter().chain(more).collect();
        check_history(&observer, &history).await;
        // Its copy of the book serves: when it leads, nothing is missing.
        cluster.kill(leader.as_str()).await;
        let elected = new_leader(&cluster, &observer, &leader).await;
        let survivor = cluster.api(elected.as_str());
        check_history(&survivor, &history).await;
        cluster.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_every_replica_while_tasks_flow_loses_nothing() {
    with_deadline(DEADLINE, async {
        let data = temp_dir("replication-rolling").unwrap();
        let mut cluster = start_cluster(NodeSpec::three_replicas(4, Some(data.path()))).await;
        three_voters_in_step(&cluster.api("n1")).await;
        let apis: Vec<ApiClient> = ["n1", "n2", "n3"]
            .into_iter()
            .map(|name| cluster.api(name))
            .collect();
        // A client submits all along, to whichever node answers; the ids it
        // got back are the history.
        let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::<TaskId>::new()));
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        let client = {
            let acknowledged = acknowledged.clone();
            tokio::spawn(async move {
                let mut refused = 0u32;
                let mut turn = 0usize;
                while !*stop_rx.borrow_and_update() {
                    let api = &apis[turn % apis.len()];
                    turn += 1;
                    match api.submit_batch(&sleep_tasks(20, 10)).await {
                        Ok(ids) => acknowledged.lock().unwrap().extend(ids),
                        Err(_) => refused += 1,
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                refused
            })
        };
        let taken = || acknowledged.lock().unwrap().len();
        for name in ["n1", "n2", "n3"] {
            cluster.terminate(name, Duration::from_secs(60)).await;
            cluster.restart(name).unwrap();
            // The next replica goes only once this one votes again and
            // holds the log, and the cluster takes writes again.
            let other = cluster.api(if name == "n3" { "n1" } else { "n3" });
            three_voters_in_step(&other).await;
            let before = taken();
            eventually(
                Duration::from_secs(20),
                &format!("submissions are taken again after {name}'s restart"),
                || {
                    let now = taken();
                    async move { (now >= before + 40).then_some(()) }
                },
            )
            .await;
        }
        stop_tx.send(true).unwrap();
        let refused = client.await.unwrap();
        let acknowledged = acknowledged.lock().unwrap().clone();
        eprintln!(
            "rolling restart: {} tasks acknowledged, {refused} submissions refused or failed",
            acknowledged.len()
        );
        check_history(&cluster.api("n1"), &acknowledged).await;
        cluster.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_orchestrator_is_stuck_is_made_to_step_down_by_a_monitor() {
    with_deadline(DEADLINE, async {
        let specs = NodeSpec::three_replicas(4, None)
            .into_iter()
            .map(|mut spec| {
                spec.env.push(("HERD_TEST_HOOKS".into(), "1".into()));
                spec
            })
            .collect();
        let mut cluster = start_cluster(specs).await;
        let replication = three_voters_in_step(&cluster.api("n1")).await;
        let leader = replication.leader.expect("a leader");
        let observer = cluster.api(if leader == "n1" { "n2" } else { "n1" });
        let mut acknowledged = submit_acknowledged(&observer, 200, 5).await;
        wait_finished(&observer, 200, Duration::from_secs(60)).await;
        // A backlog, which the leader's node exports as herd_pending_tasks.
        acknowledged.extend(submit_acknowledged(&observer, 150, 1_000).await);
        let pending_on = |name: &str| {
            let api = cluster.api(name);
            async move {
                let (_, text) = api.get_text("/metrics").await.ok()?;
                text.lines()
                    .find(|line| line.starts_with("herd_pending_tasks{"))?
                    .rsplit(' ')
                    .next()?
                    .parse::<f64>()
                    .ok()
            }
        };
        eventually(
            Duration::from_secs(10),
            "the leader exports its backlog",
            || {
                let pending = pending_on(&leader);
                async move { (pending.await? > 0.0).then_some(()) }
            },
        )
        .await;

        // The leader's node stays alive (it answers heartbeats); only its
        // orchestrator stops answering.
        let hook = herd_tests::send_raw(
            cluster.node(leader.as_str()).api_url().as_str(),
            "POST",
            "/v1/test-hooks/stuck-orchestrator",
            b"",
        )
        .await;
        assert_eq!(hook.status, 202, "{:?}", hook.body);
        let elected = eventually(
            Duration::from_secs(60),
            "another replica leads after the monitor's step-down request",
            || {
                let observer = observer.clone();
                let leader = leader.clone();
                async move {
                    let status = observer.cluster().await.ok()?;
                    let name = status.orchestrator.to_string();
                    (name != leader).then_some(name)
                }
            },
        )
        .await;
        assert_ne!(elected, leader);
        // The old leader's node is still up, now a follower.
        let replication = three_voters_in_step(&observer).await;
        assert!(
            replication
                .replicas
                .iter()
                .any(|r| r.name == leader && r.state == ReplicaRole::Follower),
            "{replication:?}"
        );
        // The old leader no longer exports the backlog the new one holds.
        assert_eq!(pending_on(&leader).await, Some(0.0));
        // The step-down is counted on the monitor's node and recorded in the
        // supervision tree.
        let mut interventions = 0.0;
        for name in ["n1", "n2", "n3"] {
            let (_, text) = cluster.api(name).get_text("/metrics").await.unwrap();
            interventions += text
                .lines()
                .filter(|line| {
                    line.starts_with("herd_monitor_interventions_total{")
                        && line.contains("action=\"step_down\"")
                })
                .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>();
        }
        assert!(interventions >= 1.0, "a step_down intervention is counted");
        let tree = observer.supervision().await.unwrap();
        let text = serde_json::to_string(&tree).unwrap();
        assert!(text.contains("step-down requested by monitor@"), "{text}");
        // Work goes on, nothing lost.
        let more = submit_acknowledged(&observer, 100, 5).await;
        let history: Vec<TaskId> = acknowledged.into_iter().chain(more).collect();
        check_history(&observer, &history).await;
        cluster.stop().await;
    })
    .await;
}
