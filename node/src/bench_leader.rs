//! `herd bench failover --replicas 3`: leader rounds with raft replication.
//!
//! Three `herd node` processes (n1, n2, n3) with every role, 8 worker slots
//! each and `--replication raft`: in memory, or, with a data directory, each
//! replica journaling into a directory named after its node under it. Each
//! round submits a backlog of 20 ms `sleep` tasks through a node that is not
//! the Raft leader, waits until they run, then `kill -9`s or `SIGSTOP`s the
//! leader's process and measures, from the signal:
//! - until a new leader: the survivor's `GET /v1/cluster` (polled every
//!   10 ms, each poll answered or given up after 500 ms) names another node
//!   as `orchestrator` and its `replication` block shows that node as
//!   leader — the time the answer arrived;
//! - until the first task completed after it: the earliest `finished_at`
//!   (the new leader's clock, in milliseconds) among the round's tasks that
//!   finished after the signal.
//!
//! Between rounds a killed node is restarted (same name and ports; on its
//! own directory with a data directory, else as a new, empty replica) and a
//! stopped one is sent `SIGCONT`; the next round starts once the group has
//! three voters in step again and the backlog has drained.

use std::path::Path;
use std::time::{Duration, Instant};

use herd_protocol::messages::orchestrator::ClusterStatus;
use herd_protocol::messages::replica::{ReplicaRole, ReplicationStatus};
use herd_protocol::{TaskId, TaskState, UnixMillis};
use serde_json::json;

use crate::api_client::{ApiClient, ApiClientError};
use crate::bench_failover::{Phase, phase};
use crate::local_cluster::{LocalCluster, NodeSpec};

/// What the leader rounds measure, for the table's title.
pub const TITLE: &str = "raft leader rounds: n1, n2, n3 as processes, every role, 8 slots each, --replication raft; a backlog of 20 ms tasks; times from the signal";

/// Nodes (and replicas) of the leader rounds' cluster.
const NAMES: [&str; 3] = ["n1", "n2", "n3"];
/// Worker slots per node.
const WORKERS: u32 = 8;
/// Tasks in each round's backlog: about 1.7 s of work for 24 slots, 2.5 s
/// for the 16 that survive, so work is still waiting when a new leader
/// takes over.
const BACKLOG: usize = 2_000;
/// How long each backlog task sleeps.
const TASK_MS: u64 = 20;
/// How often the survivor's `/v1/cluster` is asked during a failover.
const POLL_EVERY: Duration = Duration::from_millis(10);
/// How long one such poll may take before it is given up.
const POLL_LIMIT: Duration = Duration::from_millis(500);

/// The leader of `group` if it has exactly `voters` voters and every
/// replica listed holds the leader's log within 64 entries (a replica that
/// is unreachable, still a learner, or lagging makes it `None`).
pub fn in_step(group: &ReplicationStatus, voters: usize) -> Option<String> {
    let voting = group
        .replicas
        .iter()
        .filter(|r| matches!(r.state, ReplicaRole::Leader | ReplicaRole::Follower))
        .count();
    let leader = group
        .replicas
        .iter()
        .find(|r| r.state == ReplicaRole::Leader)?;
    let leader_at = leader.applied_index?;
    let in_step = group.replicas.iter().all(|r| {
        matches!(r.state, ReplicaRole::Leader | ReplicaRole::Follower)
            && r.applied_index.is_some_and(|at| at + 64 >= leader_at)
    });
    (voting == voters && in_step && group.leader.as_deref() == Some(leader.name.as_str()))
        .then(|| leader.name.clone())
}

/// Whether `status` comes from an orchestrator other than `old` that its
/// replication block shows as the Raft leader.
pub fn new_leader(status: &ClusterStatus, old: &str) -> Option<String> {
    let name = status.orchestrator.to_string();
    let leads = status
        .replication
        .as_ref()?
        .replicas
        .iter()
        .any(|r| r.name == name && r.state == ReplicaRole::Leader);
    (name != old && leads).then_some(name)
}

/// How the leader is taken down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    Kill,
    Stop,
}

/// Runs `rounds` kill -9 rounds and `rounds` SIGSTOP rounds of the leader.
pub async fn run(rounds: usize, data_dir: Option<&Path>) -> anyhow::Result<Vec<Phase>> {
    let specs = NodeSpec::three_replicas(WORKERS, data_dir);
    let mut cluster = LocalCluster::start(specs.clone(), Duration::from_secs(60)).await?;
    let mut kill = Samples::default();
    let mut stop = Samples::default();
    let mut measured = Ok(());
    for (fault, samples) in [(Fault::Kill, &mut kill), (Fault::Stop, &mut stop)] {
        for round in 1..=rounds {
            measured = measure_round(&mut cluster, &specs, fault, round, samples).await;
            if measured.is_err() {
                break;
            }
        }
        if measured.is_err() {
            break;
        }
    }
    if measured.is_err() {
        keep_logs_note(&cluster);
    }
    cluster.stop().await;
    measured?;
    Ok(vec![
        kill.phase(
            "raft: kill -9 of the leader → new leader (on a survivor)",
            |s| &s.elected,
        ),
        kill.phase(
            "raft: kill -9 of the leader → first task completed",
            |s| &s.first,
        ),
        stop.phase(
            "raft: SIGSTOP of the leader → new leader (on a survivor)",
            |s| &s.elected,
        ),
        stop.phase(
            "raft: SIGSTOP of the leader → first task completed",
            |s| &s.first,
        ),
    ])
}

/// One kind of round's measurements.
#[derive(Default)]
struct Samples {
    elected: Vec<Duration>,
    first: Vec<Duration>,
    /// Rounds after which the cluster did not recover and was restarted.
    restarts: Vec<usize>,
}

impl Samples {
    fn phase(&self, name: &str, which: fn(&Samples) -> &Vec<Duration>) -> Phase {
        let mut phase = phase(name, which(self).clone());
        if !self.restarts.is_empty() {
            let rounds: Vec<String> = self.restarts.iter().map(usize::to_string).collect();
            phase.note = Some(format!(
                "after round(s) {} of {} the cluster did not recover within {} s and was restarted (see stderr)",
                rounds.join(", "),
                which(self).len(),
                RECOVERY.as_secs()
            ));
        }
        phase
    }
}

/// How long the cluster may take to recover after a round (three voters
/// in step, every node ready, the backlog drained) before it is restarted.
const RECOVERY: Duration = Duration::from_secs(30);

/// Runs one round, then restores the cluster, restarting it all if it does
/// not recover within [`RECOVERY`] (noted on stderr and in the phase).
async fn measure_round(
    cluster: &mut LocalCluster,
    specs: &[NodeSpec],
    fault: Fault,
    round: usize,
    samples: &mut Samples,
) -> anyhow::Result<()> {
    let (elected, first, observer) = leader_round(cluster, fault).await?;
    samples.elected.push(elected);
    samples.first.push(first);
    let recovered = tokio::time::timeout(RECOVERY, recover(cluster, &observer))
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("not within {RECOVERY:?}")));
    if let Err(error) = recovered {
        let error = format!("{error:#}");
        eprintln!(
            "herd bench failover: after {fault:?} round {round} the cluster did not recover within {} s; restarting it. {}",
            RECOVERY.as_secs(),
            error.lines().next().unwrap_or_default()
        );
        keep_logs_note(cluster);
        cluster.stop().await;
        *cluster = LocalCluster::start(specs.to_vec(), Duration::from_secs(60)).await?;
        let api = cluster.api(NAMES[0]);
        wait_in_step(&api, cluster).await?;
        drain(&api).await?;
        samples.restarts.push(round);
    }
    Ok(())
}

fn keep_logs_note(cluster: &LocalCluster) {
    if std::env::var_os("HERD_KEEP_LOGS").is_some() {
        eprintln!(
            "herd bench failover: node logs kept in {}",
            cluster.log_dir().display()
        );
    }
}

/// Every node ready, three voters in step, no task left.
async fn recover(cluster: &mut LocalCluster, observer: &ApiClient) -> anyhow::Result<()> {
    cluster.wait_ready(RECOVERY).await?;
    wait_in_step(observer, cluster).await?;
    drain(observer).await
}

/// One round: backlog, fault, measure, then the killed node restarted or
/// the stopped one continued. Returns (new leader seen, first task
/// completed), both from the signal, and the survivor observed.
async fn leader_round(
    cluster: &mut LocalCluster,
    fault: Fault,
) -> anyhow::Result<(Duration, Duration, ApiClient)> {
    let leader = wait_in_step(&cluster.api(NAMES[0]), cluster).await?;
    let survivor = NAMES
        .into_iter()
        .find(|name| *name != leader)
        .expect("three names");
    let observer = cluster.api(survivor);
    // The round's tasks are those created after the marker.
    let marker = retrying(|| observer.submit("sleep", json!({ "ms": 0 })))
        .await
        .map_err(|e| anyhow::anyhow!("submitting through {survivor}: {e:#}"))?;
    let before = retrying(|| observer.cluster()).await?.tasks.succeeded;
    for chunk in (0..BACKLOG).collect::<Vec<_>>().chunks(500) {
        let batch: Vec<_> = chunk
            .iter()
            .map(|_| json!({ "agent_type": "sleep", "payload": { "ms": TASK_MS } }))
            .collect();
        retrying(|| observer.submit_batch(&batch)).await?;
    }
    // Work flows (and runs on the leader's node too) before the fault.
    let flowing = Instant::now();
    loop {
        let status = retrying(|| observer.cluster()).await?;
        if status.tasks.succeeded >= before + 100 {
            break;
        }
        anyhow::ensure!(
            flowing.elapsed() < Duration::from_secs(30),
            "the backlog does not run: {:?}",
            status.tasks
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let signalled_at = UnixMillis::now();
    let signalled = Instant::now();
    match fault {
        Fault::Kill => cluster.kill(leader.as_str()).await,
        Fault::Stop => cluster.signal(leader.as_str(), libc::SIGSTOP),
    }
    let outcome = observe_failover(&observer, &leader, marker, signalled, signalled_at).await;
    // Restore before reporting, so that a failed round leaves no node frozen.
    match fault {
        Fault::Kill => cluster.restart(leader.as_str())?,
        Fault::Stop => cluster.signal(leader.as_str(), libc::SIGCONT),
    }
    let (elected, first) = outcome.map_err(|error| {
        anyhow::anyhow!(
            "{fault:?} of leader {leader}: {error:#}\n{}",
            cluster.log_tails()
        )
    })?;
    Ok((elected, first, observer))
}

/// Runs an API call until it succeeds, sending it again (for up to 60 s)
/// while the node answers that no orchestrator serves (502–504) or cannot
/// be reached. Outside the measured failover, a raft leader may stop its
/// orchestrator for a moment (it then answers 503) and start it again.
async fn retrying<T, F, Fut>(mut call: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ApiClientError>>,
{
    let started = Instant::now();
    loop {
        match call().await {
            Ok(value) => return Ok(value),
            Err(
                ApiClientError::Api {
                    status: 502..=504, ..
                }
                | ApiClientError::Transport { .. },
            ) if started.elapsed() < Duration::from_secs(60) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// The time until `observer` shows a new leader, and until the first task
/// after `marker` that finished after the signal.
async fn observe_failover(
    observer: &ApiClient,
    old: &str,
    marker: TaskId,
    signalled: Instant,
    signalled_at: UnixMillis,
) -> anyhow::Result<(Duration, Duration)> {
    let (answers, mut answered) = tokio::sync::mpsc::unbounded_channel();
    let poller = {
        let observer = observer.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(POLL_EVERY);
            loop {
                tick.tick().await;
                let observer = observer.clone();
                let answers = answers.clone();
                tokio::spawn(async move {
                    if let Ok(Ok(status)) =
                        tokio::time::timeout(POLL_LIMIT, observer.cluster()).await
                    {
                        let _ = answers.send((Instant::now(), status));
                    }
                });
            }
        })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let elected = loop {
        match tokio::time::timeout_at(deadline, answered.recv()).await {
            Ok(Some((at, status))) => {
                if new_leader(&status, old).is_some() {
                    break Ok(at.saturating_duration_since(signalled));
                }
            }
            _ => break Err(anyhow::anyhow!("no new leader within 60 s")),
        }
    };
    poller.abort();
    let elected = elected?;
    loop {
        if let Some(finished) = first_finished_after(observer, marker, signalled_at).await? {
            let first = Duration::from_millis(finished.0.saturating_sub(signalled_at.0));
            return Ok((elected, first));
        }
        anyhow::ensure!(
            signalled.elapsed() < Duration::from_secs(60),
            "no task completed within 60 s of the fault"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The earliest `finished_at` later than `after` among the succeeded tasks
/// created after `marker`.
async fn first_finished_after(
    api: &ApiClient,
    marker: TaskId,
    after: UnixMillis,
) -> anyhow::Result<Option<UnixMillis>> {
    let mut earliest: Option<UnixMillis> = None;
    let mut from = marker;
    loop {
        let page = match api
            .list(&format!("state=succeeded&limit=1000&after={from}"))
            .await
        {
            Ok(page) => page,
            // The new leader's orchestrator may not answer every read yet.
            Err(_) => return Ok(None),
        };
        for task in &page.tasks {
            if task.state == TaskState::Succeeded
                && let Some(finished) = task.finished_at
                && finished > after
                && earliest.is_none_or(|e| finished < e)
            {
                earliest = Some(finished);
            }
        }
        match page.next_after {
            Some(next) => from = next,
            None => return Ok(earliest),
        }
    }
}

/// Waits until the group, as `api`'s node reports it, has three voters in
/// step; returns the leader.
async fn wait_in_step(api: &ApiClient, cluster: &LocalCluster) -> anyhow::Result<String> {
    let started = Instant::now();
    let mut last = None;
    loop {
        if let Ok(status) = api.cluster().await {
            if let Some(leader) = status
                .replication
                .as_ref()
                .and_then(|group| in_step(group, NAMES.len()))
            {
                return Ok(leader);
            }
            last = status.replication;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(60),
            "the replica group never had three voters in step: {last:?}\n{}",
            cluster.log_tails()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until no task is pending or running.
async fn drain(api: &ApiClient) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        if let Ok(status) = api.cluster().await {
            let tasks = &status.tasks;
            if tasks.pending + tasks.running + tasks.failed == 0 {
                return Ok(());
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(120),
                "tasks did not finish: {tasks:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_protocol::messages::replica::ReplicaView;

    fn group(
        leader: Option<&str>,
        replicas: &[(&str, ReplicaRole, Option<u64>)],
    ) -> ReplicationStatus {
        ReplicationStatus {
            term: 3,
            leader: leader.map(str::to_string),
            replicas: replicas
                .iter()
                .map(|(name, state, at)| ReplicaView {
                    name: name.to_string(),
                    state: *state,
                    applied_index: *at,
                })
                .collect(),
        }
    }

    #[test]
    fn three_voters_holding_the_leaders_log_are_in_step() {
        use ReplicaRole::*;
        let ok = group(
            Some("n2"),
            &[
                ("n1", Follower, Some(1_000)),
                ("n2", Leader, Some(1_010)),
                ("n3", Follower, Some(950)),
            ],
        );
        assert_eq!(in_step(&ok, 3).as_deref(), Some("n2"));
        assert_eq!(in_step(&ok, 2), None, "three voters, not two");
    }

    #[test]
    fn a_lagging_unreachable_or_learning_replica_is_not_in_step() {
        use ReplicaRole::*;
        let lagging = group(
            Some("n1"),
            &[
                ("n1", Leader, Some(1_000)),
                ("n2", Follower, Some(1_000)),
                ("n3", Follower, Some(900)),
            ],
        );
        assert_eq!(in_step(&lagging, 3), None);
        let replaced = group(
            Some("n1"),
            &[
                ("n1", Leader, Some(1_000)),
                ("n2", Follower, Some(1_000)),
                ("n3", Follower, Some(1_000)),
                ("n3", Unreachable, Some(400)),
            ],
        );
        assert_eq!(in_step(&replaced, 3), None);
        let learning = group(
            Some("n1"),
            &[
                ("n1", Leader, Some(1_000)),
                ("n2", Follower, Some(1_000)),
                ("n3", Learner, Some(1_000)),
            ],
        );
        assert_eq!(in_step(&learning, 3), None);
        let no_leader = group(
            None,
            &[("n1", Follower, Some(1)), ("n2", Follower, Some(1))],
        );
        assert_eq!(in_step(&no_leader, 2), None);
    }
}
