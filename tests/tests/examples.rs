//! The runnable samples, built and run as a user runs them: `three_node`
//! starts its cluster of three orchestrator replicas (raft replication: one
//! leads, two follow), runs its tasks while the scaling loop moves weights
//! and slots (seen through the API and in its summary) and stops every
//! node; `embedded` runs alone, and joins a cluster the test started, its
//! seeds and ports given by flags and variables.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use herd_node::local_cluster::{cargo_build_binary, free_ports};
use herd_protocol::TaskState;
use herd_protocol::messages::orchestrator::MemberState;
use herd_protocol::messages::replica::ReplicaRole;
use herd_protocol::messages::scaling::DecisionType;
use herd_tests::{
    ApiClient, DEADLINE, LocalCluster, NodeSpec, eventually, start_cluster, temp_dir, waiting_for,
    with_deadline, write_config,
};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The example binary `name`, built by cargo if stale.
fn example(name: &str) -> PathBuf {
    cargo_build_binary("herd-examples", name)
        .unwrap_or_else(|error| panic!("the {name} example did not build: {error}"))
}

/// Runs `command` to its end within `limit`; returns (exit code, stdout, stderr).
async fn run_to_end(command: &mut Command, limit: Duration) -> (Option<i32>, String, String) {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the example starts");
    let output = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("the example did not end within {limit:?}"))
        .expect("the example's output can be read");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).to_string(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

/// What the API showed of the replica group and the scaling loop while the
/// sample ran.
#[derive(Debug, Default)]
struct ScalingSeen {
    /// A decision other than `maintain` (from `GET /v1/scaling/decisions`).
    decision: Option<String>,
    /// A slot total above the 12 the nodes start with (while they join,
    /// the total is below it).
    slots: Option<u32>,
    /// An agent type whose weight left its configured share.
    weight: Option<String>,
    /// The replica group with three voters, its leader running the
    /// orchestrator (absent in single replication).
    replication: Option<String>,
}

impl ScalingSeen {
    fn all(&self) -> bool {
        self.decision.is_some()
            && self.slots.is_some()
            && self.weight.is_some()
            && self.replication.is_some()
    }

    /// Reads the cluster summary and the decisions from `api`; a node that
    /// does not answer (not up yet, or already stopped) shows nothing.
    async fn look(&mut self, api: &ApiClient) {
        if let Ok(status) = api.cluster().await {
            if let Some(group) = &status.replication {
                let voters: Vec<&str> = group
                    .replicas
                    .iter()
                    .filter(|r| matches!(r.state, ReplicaRole::Leader | ReplicaRole::Follower))
                    .map(|r| r.name.as_str())
                    .collect();
                let leader = group.leader.as_deref();
                if voters.len() == 3
                    && group.replicas.len() == 3
                    && leader == Some(status.orchestrator.as_str())
                {
                    self.replication.get_or_insert(format!(
                        "leader {} in term {}, voters {voters:?}",
                        status.orchestrator, group.term
                    ));
                }
            }
            let slots: u32 = status
                .nodes
                .iter()
                .filter(|n| n.state == MemberState::Up)
                .map(|n| n.workers)
                .sum();
            if slots > 12 {
                self.slots.get_or_insert(slots);
            }
            let configured: f64 = status.agents.values().map(|a| a.configured_weight).sum();
            if let Some((agent_type, agent)) = status
                .agents
                .iter()
                .find(|(_, a)| (a.weight - a.configured_weight / configured).abs() > 0.01)
            {
                self.weight.get_or_insert(format!(
                    "{agent_type}: {:.3}, configured {:.3}",
                    agent.weight,
                    agent.configured_weight / configured
                ));
            }
        }
        if let Ok(decisions) = api.scaling_decisions(100).await
            && let Some(decision) = decisions
                .iter()
                .find(|d| d.decision_type != DecisionType::Maintain)
        {
            self.decision.get_or_insert(format!(
                "{} {} -> {}",
                decision.decision_type.as_str(),
                decision.current_workers,
                decision.target_workers
            ));
        }
    }
}

/// The replica group a line of the sample's names after `after`:
/// `n1 leads (term 1); replicas n1 leader, n2 follower, n3 follower` gives
/// the leader and each replica with its role.
fn group_in_line(stdout: &str, prefix: &str, after: &str) -> (String, Vec<(String, String)>) {
    let line = stdout
        .lines()
        .find(|line| line.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting {prefix:?} in:\n{stdout}"));
    let group = line
        .split_once(after)
        .unwrap_or_else(|| panic!("no {after:?} in {line:?}"))
        .1;
    let (leader, rest) = group
        .split_once(" leads (term ")
        .unwrap_or_else(|| panic!("no leader named in {line:?}"));
    let replicas = rest
        .split_once("; replicas ")
        .unwrap_or_else(|| panic!("no replicas listed in {line:?}"))
        .1
        .split(", ")
        .map(|replica| {
            let (name, role) = replica
                .split_once(' ')
                .unwrap_or_else(|| panic!("{replica:?} in {line:?}"));
            (name.to_string(), role.to_string())
        })
        .collect();
    (leader.to_string(), replicas)
}

/// The numbers in the line of `stdout` that starts with `prefix`.
fn numbers_in_line(stdout: &str, prefix: &str) -> Vec<u64> {
    let line = stdout
        .lines()
        .find(|line| line.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting {prefix:?} in:\n{stdout}"));
    line.split(|c: char| !c.is_ascii_digit())
        .filter(|digits| !digits.is_empty())
        .map(|digits| digits.parse().expect("digits"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_three_node_sample_runs_its_thousand_tasks_moving_weights_and_slots_and_stops_every_node()
 {
    let binary = example("three_node");
    with_deadline(DEADLINE, async {
        // Off the sample's fixed ports, which a person may be using.
        let ports = free_ports(7);
        let mut command = Command::new(&binary);
        command.env("HERD_SAMPLE_LLM_PORT", ports[6].to_string());
        for (index, node) in ["N1", "N2", "N3"].iter().enumerate() {
            command
                .env(
                    format!("HERD_SAMPLE_{node}_PORT"),
                    ports[2 * index].to_string(),
                )
                .env(
                    format!("HERD_SAMPLE_{node}_HTTP_PORT"),
                    ports[2 * index + 1].to_string(),
                );
        }
        let started = Instant::now();
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the example starts");
        let run = tokio::spawn(child.wait_with_output());

        // While it runs, n1's API shows the scaling loop at work: a decision,
        // the pool grown past its 12 slots, a weight off its configured share.
        let n1 = ApiClient::new(&format!("http://127.0.0.1:{}", ports[1]));
        let mut seen = ScalingSeen::default();
        {
            let _step = waiting_for(
                "n1's API to show three voting replicas, a scaling decision, slots and weights moving",
            );
            while !seen.all() && !run.is_finished() {
                seen.look(&n1).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }

        let _step = waiting_for("three_node to run its 1,000 tasks and stop its nodes");
        let output = tokio::time::timeout(Duration::from_secs(180), run)
            .await
            .expect("three_node ends within 180 s")
            .expect("the task waiting for three_node ran")
            .expect("three_node's output can be read");
        let stdout = String::from_utf8_lossy(&output.stdout).to_string();
        let stderr = String::from_utf8_lossy(&output.stderr).to_string();
        assert_eq!(
            output.status.code(),
            Some(0),
            "three_node failed:\n{stdout}\n{stderr}"
        );
        assert!(
            seen.all(),
            "three_node ended before its API showed the scaling loop at work and three voting replicas (saw {seen:?}):\n{stdout}"
        );
        for expected in [
            "cluster ready in",
            "scaling mode production: weights follow demand, slots follow load",
            "round 5 of 5: submitted 50 meta_review tasks",
            "all 1000 tasks finished",
            "idle: the pool",
            "llm provider stub:",
            "stopped all nodes in",
        ] {
            assert!(
                stdout.contains(expected),
                "missing {expected:?} in:\n{stdout}"
            );
        }
        // Three replicas, one leading and two following, when the work
        // began and at the end, the leader's node running the orchestrator.
        for (prefix, after) in [
            ("replication: ", "replication: raft, "),
            ("cluster: orchestrator ", "; replication raft, "),
        ] {
            let (leader, replicas) = group_in_line(&stdout, prefix, after);
            let mut roles: Vec<&str> = replicas.iter().map(|(_, role)| role.as_str()).collect();
            roles.sort_unstable();
            assert_eq!(
                roles,
                ["follower", "follower", "leader"],
                "not three voting replicas in:\n{stdout}"
            );
            let names: Vec<&str> = replicas.iter().map(|(name, _)| name.as_str()).collect();
            assert_eq!(names, ["n1", "n2", "n3"], "{stdout}");
            assert!(
                replicas
                    .iter()
                    .any(|(name, role)| *name == leader && role == "leader"),
                "{leader} is said to lead but is not the leader replica:\n{stdout}"
            );
        }
        let (leader, _) = group_in_line(&stdout, "cluster: orchestrator ", "; replication raft, ");
        assert!(
            stdout.contains(&format!("cluster: orchestrator {leader}, 3 nodes up;")),
            "the orchestrator is not on the leader's node, or not 3 nodes up:\n{stdout}"
        );

        // Its own summary agrees: decisions taken, weights and slots moved.
        let decisions = numbers_in_line(&stdout, "scaling decisions: ");
        assert!(decisions[0] >= 1, "no scaling decision in:\n{stdout}");
        let moved = numbers_in_line(&stdout, "weights moved for ");
        let [types_moved, types, start, _fewest, most, _end] = moved[..] else {
            panic!("unexpected summary line {moved:?} in:\n{stdout}");
        };
        assert!(
            types_moved >= 1 && types == 6,
            "no weight moved:\n{stdout}"
        );
        assert!(most > start, "the slots did not grow:\n{stdout}");
        for port in ports {
            assert!(
                std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
                "port {port} is still in use: a node outlived three_node"
            );
        }
        eprintln!(
            "three_node ran in {:.1?}; the API showed {seen:?}",
            started.elapsed()
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_example_runs_alone_with_its_demo() {
    let binary = example("embedded");
    with_deadline(DEADLINE, async {
        let ports = free_ports(2);
        let _step = waiting_for("embedded --demo to answer and exit");
        let (code, stdout, stderr) = run_to_end(
            Command::new(&binary)
                .args(["--demo", "--listen", &format!("127.0.0.1:{}", ports[0])])
                .env("EMBEDDED_HTTP", format!("127.0.0.1:{}", ports[1]))
                .env_remove("HERD_COOKIE"),
            Duration::from_secs(60),
        )
        .await;
        assert_eq!(code, Some(0), "embedded --demo failed:\n{stdout}\n{stderr}");
        assert!(
            stdout.contains(r#""the quick brown fox jumps over the lazy dog" -> "#)
                && stdout.contains(r#""words":9"#),
            "{stdout}"
        );
        assert!(
            stdout.contains("cluster: orchestrator embedded-1, nodes embedded-1"),
            "{stdout}"
        );
    })
    .await;
}

/// A cluster whose orchestrator declares `summarize` (handler `custom`: the
/// embedding service registers it) and runs no tasks; n2 and n3 run the
/// built-in types.
async fn cluster_expecting_summarize(dir: &std::path::Path) -> LocalCluster {
    let config = write_config(
        dir,
        "orchestrator.toml",
        "[agents.echo]\nhandler = \"echo\"\n\n[agents.summarize]\nhandler = \"custom\"\nweight = 0.5\n",
    );
    let mut specs = NodeSpec::three_nodes(2);
    specs[0].roles = "orchestrator,monitor".to_string();
    specs[0].config = Some(config);
    start_cluster(specs).await
}

/// The embedded service, joined to `cluster` through flags and variables.
fn embedded_joining(binary: &PathBuf, cluster: &LocalCluster, http_port: u16) -> Child {
    let listen = format!("127.0.0.1:{}", free_ports(1)[0]);
    let mut command = Command::new(binary);
    command
        .args([
            "--name",
            "api-1",
            "--http",
            &format!("127.0.0.1:{http_port}"),
        ])
        .args(["--seed", &cluster.node("n1").cluster_addr()])
        .args(["--seed", &cluster.node("n2").cluster_addr()])
        .env("HERD_LISTEN", listen)
        .env("HERD_COOKIE", &cluster.cookie)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    command.spawn().expect("the embedded example starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_example_joins_a_running_cluster_and_runs_its_handler_for_it() {
    let binary = example("embedded");
    with_deadline(DEADLINE, async {
        let dir = temp_dir("embedded").expect("a temporary directory");
        let mut cluster = cluster_expecting_summarize(dir.path()).await;
        let http_port = free_ports(1)[0];
        let mut service = embedded_joining(&binary, &cluster, http_port);
        let mut lines = BufReader::new(service.stdout.take().expect("piped")).lines();
        let first = {
            let _step = waiting_for("the embedded service to say it is up");
            lines.next_line().await.expect("stdout readable")
        };
        let first = first.expect("the embedded service printed a line before exiting");
        assert!(first.starts_with("embedded herd node api-1 up"), "{first}");

        // The cluster lists the service's node, with its worker slots.
        let n3 = cluster.api("n3");
        eventually(
            Duration::from_secs(15),
            "the cluster sees api-1 up with workers",
            || {
                let n3 = n3.clone();
                async move {
                    let status = n3.cluster().await.ok()?;
                    status
                        .nodes
                        .iter()
                        .any(|n| {
                            n.name.as_str() == "api-1"
                                && n.state == MemberState::Up
                                && n.workers > 0
                        })
                        .then_some(())
                }
            },
        )
        .await;

        // A summarize task submitted to the cluster runs on the service.
        let id = n3
            .submit(
                "summarize",
                json!({ "text": "herd runs agents on a cluster" }),
            )
            .await
            .expect("the cluster accepts summarize");
        let view = n3
            .task(id, Some(Duration::from_secs(20)))
            .await
            .expect("task readable");
        assert_eq!(view.state, TaskState::Succeeded, "{view:?}");
        assert_eq!(view.node.map(|n| n.to_string()).as_deref(), Some("api-1"));
        let result: serde_json::Value =
            serde_json::from_str(view.result.expect("a result").as_str()).unwrap();
        assert_eq!(result["words"], json!(6), "{result}");

        // The service's own endpoint runs its task through the cluster.
        let service_api = ApiClient::new(&format!("http://127.0.0.1:{http_port}"));
        let (status, answer) = service_api
            .post_json_with_headers("/summarize", &json!("the quick brown fox"), &[])
            .await
            .expect("the service answers");
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["node"], json!("api-1"), "{answer}");
        assert_eq!(answer["result"]["words"], json!(4), "{answer}");
        let (status, members) = service_api.get_json("/cluster").await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(members["orchestrator"], json!("n1"), "{members}");

        // Ctrl-C stops the service cleanly.
        let pid = service.id().expect("running") as i32;
        // SAFETY: kill(2) on the child this test spawned and still owns.
        unsafe {
            libc::kill(pid, libc::SIGINT);
        }
        let _step = waiting_for("the embedded service to exit on SIGINT");
        let exit = tokio::time::timeout(Duration::from_secs(20), service.wait())
            .await
            .expect("the service exits within 20 s of SIGINT")
            .expect("exit status");
        assert!(exit.success(), "{exit}");
        cluster.stop().await;
    })
    .await;
}
