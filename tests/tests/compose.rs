//! The Compose stack on a real Docker engine: build the image without a
//! registry, bring up three nodes holding three task book replicas (raft
//! replication), and lose nothing when a container is killed, a node is cut
//! off the network and comes back, and every node, the leader's included, is
//! restarted in turn while tasks flow. Skipped, saying so, where no Docker
//! engine answers.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use herd_node::local_cluster::{free_ports, herd_binary, random_cookie};
use herd_protocol::TaskState;
use herd_protocol::messages::orchestrator::MemberState;
use herd_protocol::messages::replica::{ReplicaRole, ReplicationStatus};
use herd_tests::{ApiClient, all_tasks, eventually, submit_until_acknowledged, with_deadline};
use serde_json::json;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `docker compose` (v2) or `docker-compose` (v1), whichever works.
fn compose_program() -> Option<Vec<String>> {
    let works = |program: &[&str]| {
        Command::new(program[0])
            .args(&program[1..])
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if works(&["docker", "compose"]) {
        Some(vec!["docker".into(), "compose".into()])
    } else if works(&["docker-compose"]) {
        Some(vec!["docker-compose".into()])
    } else {
        None
    }
}

fn docker_answers() -> bool {
    Command::new("docker")
        .arg("info")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A running stack, taken down (with its volumes) when dropped.
struct Stack {
    compose: Vec<String>,
    project: String,
    env: Vec<(String, String)>,
    api: ApiClient,
}

impl Stack {
    /// `compose -p PROJECT -f deploy/compose.yaml ARGS` with the stack's
    /// environment.
    fn compose_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.compose[0]);
        command
            .args(&self.compose[1..])
            .args(["-p", &self.project, "-f"])
            .arg(repo().join("deploy/compose.yaml"))
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        command
    }

    fn run(&self, args: &[&str]) -> String {
        let output = self.compose_command(args).output().expect("compose runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(output.status.success(), "compose {args:?} failed:\n{text}");
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    fn container(&self, service: &str) -> String {
        self.run(&["ps", "-q", service])
    }

    fn network(&self) -> String {
        format!("{}_herd", self.project)
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // What the nodes logged last is what explains a failure.
            let logs = self
                .compose_command(&["logs", "--no-color", "--tail", "150"])
                .output();
            if let Ok(logs) = logs {
                eprintln!(
                    "the stack's last log lines:\n{}{}",
                    String::from_utf8_lossy(&logs.stdout),
                    String::from_utf8_lossy(&logs.stderr)
                );
            }
        }
        let _ = self
            .compose_command(&["down", "-v", "--timeout", "5"])
            .output();
    }
}

fn docker(args: &[&str]) {
    let output = Command::new("docker").args(args).output().unwrap();
    assert!(
        output.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

async fn node_state(api: &ApiClient, name: &str) -> Option<MemberState> {
    let status = api.cluster().await.ok()?;
    status
        .nodes
        .iter()
        .find(|n| n.name.as_str() == name)
        .map(|n| n.state)
}

/// Waits (90 s at most) until the cluster sees all three nodes up.
async fn all_three_up(api: &ApiClient, what: &str) {
    eventually(Duration::from_secs(90), what, || async {
        let status = api.cluster().await.ok()?;
        let up = status.nodes.iter().filter(|n| n.state == MemberState::Up);
        (up.count() == 3).then_some(())
    })
    .await;
}

/// Waits (90 s at most) until the replica group has three voters, one of
/// them leading, and the orchestrator runs on the leader's node; returns the
/// group.
async fn three_voters(api: &ApiClient, what: &str) -> ReplicationStatus {
    eventually(Duration::from_secs(90), what, || async {
        let status = api.cluster().await.ok()?;
        let group = status.replication?;
        let voting = group
            .replicas
            .iter()
            .filter(|r| matches!(r.state, ReplicaRole::Leader | ReplicaRole::Follower))
            .count();
        let leader = group.leader.as_deref()?;
        (voting == 3 && leader == status.orchestrator.as_str()).then_some(group)
    })
    .await
}

/// Submits `count` sleep tasks, resent with their idempotency keys while
/// the cluster answers 503 (an election, or a leader that lost its quorum
/// for a moment on a loaded machine) — as a client of a real stack would.
async fn submit(api: &ApiClient, count: usize, ms: u64) -> Vec<herd_protocol::TaskId> {
    let tasks: Vec<_> = (0..count)
        .map(|_| json!({ "agent_type": "sleep", "payload": { "ms": ms } }))
        .collect();
    submit_until_acknowledged(api, &tasks, Duration::from_secs(60)).await
}

/// Waits until every task in `ids` succeeded; fails on any dead one.
async fn all_succeed(api: &ApiClient, ids: &BTreeSet<herd_protocol::TaskId>, limit: Duration) {
    eventually(limit, &format!("{} tasks succeed", ids.len()), || async {
        let tasks = all_tasks_or_none(api).await?;
        let mine: Vec<_> = tasks.iter().filter(|t| ids.contains(&t.id)).collect();
        for task in &mine {
            assert_ne!(task.state, TaskState::Dead, "task died: {task:?}");
        }
        (mine.len() == ids.len() && mine.iter().all(|t| t.state == TaskState::Succeeded))
            .then_some(())
    })
    .await;
}

async fn all_tasks_or_none(api: &ApiClient) -> Option<Vec<herd_protocol::TaskView>> {
    // The orchestrator may be restarting: treat an unreachable API as "not yet".
    api.cluster().await.ok()?;
    Some(all_tasks(api).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compose_stack_survives_a_kill_a_partition_and_a_rolling_restart() {
    with_deadline(Duration::from_secs(900), async {
        let Some(compose) = compose_program().filter(|_| docker_answers()) else {
            eprintln!(
                "SKIPPED: no Docker engine with Compose answers here \
                 (docker info / docker compose version); the compose stack was not tested"
            );
            return;
        };
        let tag = format!("herd:test-{}", std::process::id());
        let binary = herd_binary().unwrap();
        let build = Command::new(repo().join("deploy/build-image.sh"))
            .arg(&tag)
            .env("HERD_BIN", &binary)
            .output()
            .unwrap();
        assert!(
            build.status.success(),
            "build-image.sh failed: {}",
            String::from_utf8_lossy(&build.stderr)
        );
        eprintln!("{}", String::from_utf8_lossy(&build.stdout).trim());

        let ports = free_ports(3);
        let port = ports[0];
        let token = random_cookie();
        let stack = Stack {
            compose,
            project: format!("herdtest{}", std::process::id()),
            env: vec![
                ("HERD_COOKIE".into(), random_cookie()),
                ("HERD_API_TOKEN".into(), token.clone()),
                ("HERD_IMAGE".into(), tag.clone()),
                ("HERD_API_PORT".into(), port.to_string()),
                ("HERD_API_PORT_N2".into(), ports[1].to_string()),
                ("HERD_API_PORT_N3".into(), ports[2].to_string()),
                ("HERD_WORKERS".into(), "2".into()),
            ],
            api: ApiClient::new(&format!("http://127.0.0.1:{port}")).with_token(Some(&token)),
        };
        stack.run(&["up", "-d", "n1", "n2", "n3"]);
        let api = stack.api.clone();
        all_three_up(&api, "three nodes up").await;
        let group = three_voters(
            &api,
            "three voting replicas, the leader's node orchestrating",
        )
        .await;
        let names: BTreeSet<&str> = group.replicas.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, BTreeSet::from(["n1", "n2", "n3"]), "{group:?}");
        // n2 and n3 publish their APIs too, and answer with the same group.
        for other in &ports[1..] {
            let other =
                ApiClient::new(&format!("http://127.0.0.1:{other}")).with_token(Some(&token));
            let seen = three_voters(&other, "n2's and n3's APIs show the replica group").await;
            assert_eq!(seen.leader, group.leader, "{seen:?}");
        }
        let mut submitted: BTreeSet<_> = BTreeSet::new();

        // 1. docker kill a worker container mid-run: every task completes.
        submitted.extend(submit(&api, 120, 200).await);
        eventually(Duration::from_secs(20), "n3 runs tasks", || async {
            let status = api.cluster().await.ok()?;
            status
                .nodes
                .iter()
                .any(|n| n.name.as_str() == "n3" && n.busy > 0)
                .then_some(())
        })
        .await;
        docker(&["kill", &stack.container("n3")]);
        all_succeed(&api, &submitted, Duration::from_secs(90)).await;
        stack.run(&["up", "-d", "n3"]);

        // 2. Cut n2 off the network: declared down, its work done elsewhere;
        //    reconnected, it rejoins.
        eventually(Duration::from_secs(60), "n3 back up", || async {
            (node_state(&api, "n3").await == Some(MemberState::Up)).then_some(())
        })
        .await;
        let n2 = stack.container("n2");
        docker(&["network", "disconnect", &stack.network(), &n2]);
        eventually(Duration::from_secs(20), "n2 declared down", || async {
            matches!(node_state(&api, "n2").await, Some(MemberState::Down)).then_some(())
        })
        .await;
        let during: BTreeSet<_> = submit(&api, 40, 20).await.into_iter().collect();
        all_succeed(&api, &during, Duration::from_secs(60)).await;
        let tasks = all_tasks(&api).await;
        assert!(
            tasks
                .iter()
                .filter(|t| during.contains(&t.id))
                .all(|t| t.node.as_ref().is_some_and(|n| n.as_str() != "n2")),
            "no task ran on the cut-off node"
        );
        submitted.extend(during);
        docker(&["network", "connect", "--alias", "n2", &stack.network(), &n2]);
        eventually(Duration::from_secs(60), "n2 rejoins", || async {
            (node_state(&api, "n2").await == Some(MemberState::Up)).then_some(())
        })
        .await;

        // 3. Restart every node in turn (SIGTERM drains it) while tasks flow,
        //    the leader's last: each replica's log is on a named volume of its
        //    own, so each comes back as itself; the leader's restart hands the
        //    orchestrator to a follower. n1's API (the one published on
        //    HERD_API_PORT) is away while n1 restarts.
        let leader = three_voters(&api, "three voting replicas before the restarts")
            .await
            .leader
            .expect("a leader");
        let mut order: Vec<&str> = ["n1", "n2", "n3"]
            .into_iter()
            .filter(|name| *name != leader)
            .collect();
        order.push(leader.as_str());
        submitted.extend(submit(&api, 200, 50).await);
        for service in order {
            stack.run(&["restart", "--timeout", "40", service]);
            all_three_up(&api, &format!("{service} up again after restart")).await;
            three_voters(
                &api,
                &format!("three voting replicas after {service} restarted"),
            )
            .await;
            if service != "n1" {
                let more = submit(&api, 30, 20).await;
                submitted.extend(more);
            }
        }
        let after = three_voters(&api, "three voting replicas after the restarts").await;
        assert!(
            after.term > group.term,
            "restarting the leader {leader} made no new term: {group:?} then {after:?}"
        );
        all_succeed(&api, &submitted, Duration::from_secs(120)).await;
        drop(stack);
        let _ = Command::new("docker").args(["image", "rm", &tag]).output();
    })
    .await;
}
