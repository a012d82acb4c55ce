//! `herd bench`: end-to-end throughput and latency of a local three-node
//! cluster, through the library API and through HTTP.
//!
//! The bench process embeds node n1 (orchestrator and workers) and starts n2
//! and n3 as `herd node` processes, so the library figures are what a program
//! embedding herd sees, and every task may run on any of three processes.
//! With `--replicas 3` the same measurement then runs again on two fresh
//! clusters with raft replication: one where n1 alone has the orchestrator
//! role (a one-replica group, what a cluster with one orchestrator-role node
//! runs by default), and one whose three nodes all have it (n1 still
//! embedded; the Raft leader's node runs the orchestrator), so the three
//! sets of figures are printed side by side.
//! Figures are printed, never asserted: machines are shared and noisy.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use herd_actors::{HerdNode, NodeHandle};
use herd_config::Overrides;
use herd_protocol::defaults::{DEFAULT_MAX_UNFINISHED_TASKS, DEFAULT_RETAIN_FINISHED};
use herd_protocol::{JsonText, TaskId, TaskSpec, TaskState};
use serde_json::{Value, json};

use crate::api::{ApiState, router};
use crate::api_client::ApiClient;
use crate::local_cluster::{LocalCluster, NodeSpec, free_ports, random_cookie};

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchSettings {
    /// No-op tasks per throughput run.
    pub tasks: usize,
    /// Tasks per submission.
    pub batch: usize,
    /// Worker slots per node.
    pub workers: u32,
    /// Sequential single tasks for the latency figures.
    pub latency_samples: usize,
    /// Concurrent submitters in the throughput runs.
    pub submitters: usize,
    /// Journal n1's task book here (durable submissions). With
    /// `replicas` 3, the single orchestrator journals into `single/` under
    /// it, the one-replica group into `raft1/`, and each of the three
    /// replicas into a directory named after its node.
    pub data_dir: Option<std::path::PathBuf>,
    /// 1: the single orchestrator only; 3: also a one-replica raft group on
    /// n1 and three raft replicas of the task book (every node with the
    /// orchestrator role).
    pub replicas: usize,
    /// A fixed number of attempts per slot the orchestrator may hand a pool
    /// (`scaling.slot_credit` and `scaling.max_slot_credit` both); `None`:
    /// the config defaults (a credit that adapts between them).
    pub slot_credit: Option<u32>,
    /// Also measure n1's API over HTTPS with a bearer token, beside plain
    /// HTTP to n1 alone (`--tls --token`).
    pub secure: bool,
}
/// One measured figure set.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Figures {
    /// The cluster measured: `single` (one orchestrator, on n1), `raft x1`
    /// (a one-replica group on n1) or `raft x3` (three replicas; the
    /// leader's node named in `leader`).
    pub setup: String,
    /// The Raft leader's node during the run (raft replication only).
    pub leader: Option<String>,
    /// Which path was measured.
    pub path: String,
    /// Tasks per second, submit to completion.
    pub throughput_per_s: f64,
    /// Median single-task submit→complete latency, µs.
    pub p50_us: f64,
    /// 99th percentile, µs.
    pub p99_us: f64,
    /// Where single tasks ran (node → count).
    pub ran_on: BTreeMap<String, usize>,
    /// Requests (batches, task waits, status reads) refused while no
    /// orchestrator served (no quorum, an election, the orchestrator
    /// stopping) and sent again; their waits are in the figures.
    pub refused: u64,
}

/// Runs the benchmark and returns its figures: the single orchestrator's,
/// then, with `replicas` 3, those of one and of three raft replicas.
pub async fn run(settings: BenchSettings) -> anyhow::Result<Vec<Figures>> {
    anyhow::ensure!(
        matches!(settings.replicas, 1 | 3),
        "--replicas {}: give 1 (a single orchestrator) or 3 (also three raft replicas)",
        settings.replicas
    );
    let replicated = settings.replicas > 1;
    let single_dir = settings.data_dir.as_ref().map(|dir| {
        if replicated {
            dir.join("single")
        } else {
            dir.clone()
        }
    });
    let mut figures = measure(&settings, Setup::Single, single_dir.as_deref()).await?;
    if replicated {
        let one_dir = settings.data_dir.as_ref().map(|dir| dir.join("raft1"));
        figures.extend(measure(&settings, Setup::RaftOne, one_dir.as_deref()).await?);
        figures.extend(measure(&settings, Setup::Raft, settings.data_dir.as_deref()).await?);
    }
    Ok(figures)
}

/// The cluster a measurement runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Setup {
    /// n1 has the orchestrator role with `--replication single`, n2 and n3
    /// workers and monitors.
    Single,
    /// As `Single`, but n1's orchestrator role makes a one-replica raft
    /// group (the default replication).
    RaftOne,
    /// All three have every role and `--replication raft`.
    Raft,
}

impl Setup {
    fn label(self) -> &'static str {
        match self {
            Setup::Single => "single",
            Setup::RaftOne => "raft x1",
            Setup::Raft => "raft x3",
        }
    }

    /// The replica group's voters, with raft replication.
    fn voters(self) -> Option<usize> {
        match self {
            Setup::Single => None,
            Setup::RaftOne => Some(1),
            Setup::Raft => Some(3),
        }
    }
}

/// Settings n2 and n3 need when they may run the orchestrator (raft): the
/// same book limits and slot credit as n1.
fn peer_config(
    settings: &BenchSettings,
    dir: &std::path::Path,
) -> anyhow::Result<std::path::PathBuf> {
    let (retain, max_unfinished) = book_limits(settings);
    let mut text = format!(
        "[tasks]\nretain_finished = {retain}\n\n[limits]\nmax_unfinished_tasks = {max_unfinished}\n"
    );
    if let Some(credit) = settings.slot_credit {
        text.push_str(&format!(
            "\n[scaling]\nslot_credit = {credit}\nmax_slot_credit = {credit}\n"
        ));
    }
    let path = dir.join("peer.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

/// `tasks.retain_finished` and `limits.max_unfinished_tasks` for a run:
/// room for every task of two runs.
fn book_limits(settings: &BenchSettings) -> (usize, u64) {
    (
        (settings.tasks * 2).max(DEFAULT_RETAIN_FINISHED),
        (settings.tasks as u64 * 2).max(DEFAULT_MAX_UNFINISHED_TASKS),
    )
}

/// Starts a cluster of the given setup, measures it and stops it.
/// `data_dir`: n1's journal (single), or the directory under which each
/// replica journals into one named after its node (raft).
async fn measure(
    settings: &BenchSettings,
    setup: Setup,
    data_dir: Option<&std::path::Path>,
) -> anyhow::Result<Vec<Figures>> {
    if let Some(credit) = settings.slot_credit {
        anyhow::ensure!(
            herd_protocol::limits::SLOT_CREDIT_RANGE.contains(&credit),
            "--slot-credit {credit} is outside {:?}",
            herd_protocol::limits::SLOT_CREDIT_RANGE
        );
    }
    let cookie = random_cookie();
    let ports = free_ports(4);
    let (n1_cluster, n1_http) = (ports[0], ports[1]);
    let n1_seed = vec!["--seed".to_string(), format!("127.0.0.1:{n1_cluster}")];
    let config_dir = crate::local_cluster::temp_dir("bench-config")?;
    let raft_args = match setup {
        Setup::Single | Setup::RaftOne => Vec::new(),
        Setup::Raft => vec![
            "--replication".to_string(),
            "raft".to_string(),
            "--config".to_string(),
            peer_config(settings, config_dir.path())?
                .to_string_lossy()
                .into_owned(),
        ],
    };
    let peer_specs: Vec<NodeSpec> = ["n2", "n3"]
        .into_iter()
        .map(|name| {
            let mut extra_args = n1_seed.clone();
            extra_args.extend(raft_args.iter().cloned());
            let roles = match setup {
                Setup::Single | Setup::RaftOne => "worker,monitor",
                Setup::Raft => {
                    if let Some(dir) = data_dir {
                        extra_args.push("--data-dir".into());
                        extra_args.push(dir.join(name).to_string_lossy().into_owned());
                    }
                    "orchestrator,worker,monitor"
                }
            };
            NodeSpec {
                extra_args,
                ..NodeSpec::new(name, roles, settings.workers)
            }
        })
        .collect();
    let mut peers = LocalCluster::spawn(peer_specs, &cookie)?;
    let overrides = Overrides {
        name: Some("n1".into()),
        cookie: Some(cookie.clone()),
        listen: Some(format!("127.0.0.1:{n1_cluster}")),
        http: Some(format!("127.0.0.1:{n1_http}")),
        workers: Some(settings.workers.to_string()),
        seeds: Some(peers.nodes.iter().map(|node| node.cluster_addr()).collect()),
        replication: Some(
            match setup {
                Setup::Single => "single",
                Setup::RaftOne | Setup::Raft => "raft",
            }
            .to_string(),
        ),
        ..Overrides::default()
    };
    let mut config = herd_config::resolve(&overrides, &herd_config::Environment::default())?;
    let (retain, max_unfinished) = book_limits(settings);
    config.tasks.retain_finished = retain;
    config.limits.max_unfinished_tasks = max_unfinished;
    config.data_dir = match setup {
        Setup::Single | Setup::RaftOne => data_dir.map(std::path::Path::to_path_buf),
        Setup::Raft => data_dir.map(|dir| dir.join("n1")),
    };
    if let Some(credit) = settings.slot_credit {
        config.scaling.slot_credit = credit;
        config.scaling.max_slot_credit = credit;
    }
    let node = HerdNode::start(config, BTreeMap::new()).await?;
    let handle = node.handle();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", n1_http)).await?;
    let server =
        tokio::spawn(axum::serve(listener, router(ApiState::new(handle.clone()))).into_future());
    handle.wait_until_ready(Duration::from_secs(20)).await?;
    wait_for_peers(&peers, Duration::from_secs(20)).await?;
    wait_for_pools(&handle, 3).await?;
    let leader = match setup.voters() {
        None => None,
        Some(voters) => Some(wait_for_replicas(&handle, voters).await?),
    };
    let figure =
        |path: &str, throughput_per_s, p50_us, p99_us, ran_on, refusals: Refusals| Figures {
            setup: setup.label().to_string(),
            leader: leader.clone(),
            path: path.into(),
            throughput_per_s,
            p50_us,
            p99_us,
            ran_on,
            refused: refusals.count(),
        };

    let mut figures = Vec::new();
    // Warm up connections and allocators.
    let stage = |what: &str| format!("{}: {what}", setup.label());
    let refusals = Refusals::default();
    library_throughput(&handle, settings, 2_000.min(settings.tasks), &refusals)
        .await
        .with_context(|| stage("library API warm-up"))?;
    let refusals = Refusals::default();
    let (throughput, _) = library_throughput(&handle, settings, settings.tasks, &refusals)
        .await
        .with_context(|| stage("library API throughput"))?;
    let (p50, p99, ran_on) = library_latency(&handle, settings.latency_samples, &refusals)
        .await
        .with_context(|| stage("library API latency"))?;
    figures.push(figure(
        "library API",
        throughput,
        p50,
        p99,
        ran_on,
        refusals,
    ));

    let apis: Vec<ApiClient> = std::iter::once(ApiClient::new(&format!("127.0.0.1:{n1_http}")))
        .chain(
            peers
                .nodes
                .iter()
                .map(|node| ApiClient::new(&node.api_url())),
        )
        .collect();
    let refusals = Refusals::default();
    let throughput = http_throughput(&handle, &apis, settings, &refusals)
        .await
        .with_context(|| stage("HTTP API throughput"))?;
    let (p50, p99, ran_on) = http_latency(&apis[0], settings.latency_samples, &refusals)
        .await
        .with_context(|| stage("HTTP API latency"))?;
    figures.push(figure("HTTP API", throughput, p50, p99, ran_on, refusals));

    if settings.secure && setup == Setup::Single {
        figures.extend(secure_figures(&handle, n1_http, settings).await?);
    }
    if let Some(first) = &leader {
        // A change of leader during the run shows in the figures' label
        // rather than being hidden.
        let voters = setup.voters().expect("a leader is only named with raft");
        let now = wait_for_replicas(&handle, voters).await?;
        if &now != first {
            eprintln!("herd bench: the Raft leader moved from {first} to {now} during the run");
            for figure in &mut figures {
                figure.leader = Some(format!("{first}, then {now}"));
            }
        }
    }

    server.abort();
    node.shutdown().await;
    peers.stop().await;
    Ok(figures)
}

/// Waits until the replica group has `voters` voters holding the leader's
/// log (see [`crate::bench_leader::in_step`]); returns the leader's node.
async fn wait_for_replicas(handle: &NodeHandle, voters: usize) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let group = handle.cluster().await.map(|status| status.replication);
        if let Ok(Some(group)) = &group
            && let Some(leader) = crate::bench_leader::in_step(group, voters)
        {
            return Ok(leader);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the replica group never had {voters} voters in step: {group:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `--tls --token`: n1's API over plain HTTP without a token, then over
/// HTTPS (a `herd certs` development certificate) with a bearer token every
/// request is checked against, both through n1 alone so that only TLS and
/// authentication differ.
async fn secure_figures(
    handle: &NodeHandle,
    n1_http: u16,
    settings: &BenchSettings,
) -> anyhow::Result<Vec<Figures>> {
    let certs = tempfile::tempdir()?;
    let made = std::process::Command::new(crate::local_cluster::herd_binary()?)
        .args(["certs", "--node", "n1", "--out"])
        .arg(certs.path())
        .output()?;
    anyhow::ensure!(
        made.status.success(),
        "herd certs failed: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    let file = |name: &str, key: &'static str| herd_config::TlsFile {
        path: certs.path().join(name),
        key,
        origin: herd_config::Origin::Default,
    };
    let tls = herd_actors::tls::api_server_config(&herd_config::TlsIdentityFiles {
        cert: file("n1.pem", "tls.cert"),
        key: file("n1.key", "tls.key"),
    })?;
    let token = random_cookie();
    let mut state = ApiState::new(handle.clone());
    state.auth = std::sync::Arc::new(crate::api::auth::Authenticator::new(
        &herd_config::ApiSettings {
            tokens: vec![herd_config::ApiToken {
                name: "bench".into(),
                secret: herd_config::TokenSecret::Plain(herd_config::Secret::new(token.clone())),
                role: herd_config::ApiRole::Admin,
                tenant: herd_protocol::Tenant::default(),
            }],
            ..herd_config::ApiSettings::default()
        },
    ));
    let https_port = free_ports(1)[0];
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", https_port)).await?;
    let http_settings = handle.config().http_server.clone();
    let app = router(state);
    let server = tokio::spawn(async move {
        crate::http_server::serve_with_tls(
            listener,
            app,
            &http_settings,
            Some(tokio_rustls::TlsAcceptor::from(tls)),
            std::future::pending(),
        )
        .await
    });
    let plain = vec![ApiClient::new(&format!("127.0.0.1:{n1_http}")); 3];
    let secure = vec![
        ApiClient::with_ca_certificate(
            &format!("https://localhost:{https_port}"),
            &certs.path().join("ca.pem"),
        )?
        .with_token(Some(&token));
        3
    ];
    let mut figures = Vec::new();
    for (path, apis) in [("HTTP n1", plain), ("HTTPS+token n1", secure)] {
        let refusals = Refusals::default();
        let throughput = http_throughput(handle, &apis, settings, &refusals).await?;
        let (p50, p99, ran_on) =
            http_latency(&apis[0], settings.latency_samples, &refusals).await?;
        figures.push(Figures {
            refused: refusals.count(),
            setup: Setup::Single.label().to_string(),
            leader: None,
            path: path.into(),
            throughput_per_s: throughput,
            p50_us: p50,
            p99_us: p99,
            ran_on,
        });
    }
    server.abort();
    Ok(figures)
}

/// Waits until every peer answers `/ready`. The cluster view is then
/// checked through n1's handle ([`wait_for_pools`]) rather than with
/// [`LocalCluster::wait_ready`], which asks n2 for `/v1/cluster`: n2 must
/// fetch that from n1's orchestrator over the cluster wire, and with a
/// single orchestrator that reply currently fails to decode on n2 (502,
/// `UnexpectedEnd`: `ClusterStatus.replication` is skipped when `None`,
/// which the wire's bincode cannot read back).
async fn wait_for_peers(peers: &LocalCluster, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    for node in &peers.nodes {
        loop {
            match node.api().get_json("/ready").await {
                Ok((200, _)) => break,
                answer => anyhow::ensure!(
                    Instant::now() < deadline,
                    "{} was not ready within {limit:?}: {answer:?}\n{}",
                    node.spec.name,
                    peers.log_tails()
                ),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

async fn wait_for_pools(handle: &NodeHandle, count: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // With raft replication the orchestrator answers once the group
        // has a leader: until then every request is refused (no_quorum).
        let registered = handle
            .cluster()
            .await
            .map(|status| status.nodes.iter().filter(|node| node.workers > 0).count());
        if matches!(registered, Ok(pools) if pools >= count) {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "not {count} pools registered within 30 s: {registered:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn noop(index: usize) -> TaskSpec {
    TaskSpec::new(
        "echo",
        JsonText::from_value(&json!(index)).expect("a number serialises"),
    )
}

/// How long a refused request is retried before the run gives up.
const RETRY_FOR: Duration = Duration::from_secs(60);

/// Requests refused because the orchestrator was gone for a moment (no
/// quorum, an election, the orchestrator stopping) and sent again, each
/// counted once however often it was refused; with a single orchestrator
/// there are none.
#[derive(Default)]
struct Refusals(std::sync::atomic::AtomicU64);

impl Refusals {
    fn count(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Runs `attempt` until it succeeds, retrying refusals `retryable` says
    /// may pass (and counting the request if there was one); any other
    /// error, or refusals for longer than [`RETRY_FOR`], end the run.
    async fn retry<T, E, F, Fut>(
        &self,
        retryable: fn(&E) -> bool,
        mut attempt: F,
    ) -> anyhow::Result<T>
    where
        E: std::error::Error + Send + Sync + 'static,
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        let started = Instant::now();
        let mut refused = false;
        loop {
            match attempt().await {
                Ok(value) => return Ok(value),
                Err(error) if retryable(&error) && started.elapsed() < RETRY_FOR => {
                    if !refused {
                        refused = true;
                        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(error) => return Err(error.into()),
            }
        }
    }
}

/// A library call refused while no orchestrator serves (see [`Refusals`]).
fn orchestrator_gone(error: &herd_actors::ClientError) -> bool {
    error.is_failover() || matches!(error, herd_actors::ClientError::Timeout(_))
}

/// An HTTP call refused while no orchestrator serves (see [`Refusals`]).
fn api_orchestrator_gone(error: &crate::api_client::ApiClientError) -> bool {
    matches!(
        error,
        crate::api_client::ApiClientError::Api {
            status: 502..=504,
            ..
        } | crate::api_client::ApiClientError::Transport { .. }
    )
}

async fn library_throughput(
    handle: &NodeHandle,
    settings: &BenchSettings,
    tasks: usize,
    refusals: &Refusals,
) -> anyhow::Result<(f64, Duration)> {
    let started = Instant::now();
    let batches: Vec<Vec<TaskSpec>> = (0..tasks)
        .collect::<Vec<_>>()
        .chunks(settings.batch)
        .map(|chunk| chunk.iter().map(|i| noop(*i)).collect())
        .collect();
    let ids: Vec<TaskId> = futures::stream::iter(batches)
        .map(|batch| async move {
            refusals
                .retry(orchestrator_gone, || handle.submit_batch(batch.clone()))
                .await
        })
        .buffer_unordered(settings.submitters)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .flatten()
        .map(|ack| ack.id)
        .collect();
    let finished = futures::stream::iter(ids)
        .map(|id| async move {
            refusals
                .retry(orchestrator_gone, || {
                    handle.wait_for(id, Duration::from_secs(300))
                })
                .await
        })
        .buffer_unordered(4096)
        .collect::<Vec<_>>()
        .await;
    for view in finished {
        anyhow::ensure!(view?.state == TaskState::Succeeded, "a no-op task failed");
    }
    let elapsed = started.elapsed();
    Ok((tasks as f64 / elapsed.as_secs_f64(), elapsed))
}

async fn library_latency(
    handle: &NodeHandle,
    samples: usize,
    refusals: &Refusals,
) -> anyhow::Result<(f64, f64, BTreeMap<String, usize>)> {
    let mut latencies = Vec::with_capacity(samples);
    let mut ran_on = BTreeMap::new();
    for index in 0..samples {
        let started = Instant::now();
        let ack = refusals
            .retry(orchestrator_gone, || handle.submit(noop(index)))
            .await?;
        let view = refusals
            .retry(orchestrator_gone, || {
                handle.wait_for(ack.id, Duration::from_secs(10))
            })
            .await?;
        latencies.push(started.elapsed());
        *ran_on
            .entry(view.node.map_or("-".to_string(), |n| n.to_string()))
            .or_default() += 1;
    }
    let (p50, p99) = percentiles(&mut latencies);
    Ok((p50, p99, ran_on))
}

/// Tasks per second through `apis`, counted by the cluster's succeeded
/// tasks. A batch refused and sent again (see [`Refusals`]) may have been
/// taken the first time: the run then ends once as many tasks as were sent
/// succeeded, a little early.
async fn http_throughput(
    handle: &NodeHandle,
    apis: &[ApiClient],
    settings: &BenchSettings,
    refusals: &Refusals,
) -> anyhow::Result<f64> {
    let succeeded = || async {
        refusals
            .retry(orchestrator_gone, || handle.cluster())
            .await
            .map(|status| status.tasks)
    };
    let before = succeeded().await?.succeeded;
    let started = Instant::now();
    let batches: Vec<Vec<Value>> = (0..settings.tasks)
        .collect::<Vec<_>>()
        .chunks(settings.batch)
        .map(|chunk| {
            chunk
                .iter()
                .map(|i| json!({ "agent_type": "echo", "payload": i }))
                .collect()
        })
        .collect();
    let submitted: Vec<anyhow::Result<Vec<TaskId>>> =
        futures::stream::iter(batches.into_iter().enumerate())
            .map(|(index, batch)| {
                let api = apis[index % apis.len()].clone();
                async move {
                    refusals
                        .retry(api_orchestrator_gone, || api.submit_batch(&batch))
                        .await
                }
            })
            .buffer_unordered(settings.submitters)
            .collect()
            .await;
    for result in submitted {
        result?;
    }
    let target = before + settings.tasks as u64;
    loop {
        let tasks = succeeded().await?;
        if tasks.succeeded >= target {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(300),
            "HTTP run did not finish: {tasks:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(settings.tasks as f64 / started.elapsed().as_secs_f64())
}

async fn http_latency(
    api: &ApiClient,
    samples: usize,
    refusals: &Refusals,
) -> anyhow::Result<(f64, f64, BTreeMap<String, usize>)> {
    let mut latencies = Vec::with_capacity(samples);
    let mut ran_on = BTreeMap::new();
    for index in 0..samples {
        let started = Instant::now();
        let id = refusals
            .retry(api_orchestrator_gone, || api.submit("echo", json!(index)))
            .await?;
        let view = refusals
            .retry(api_orchestrator_gone, || {
                api.task(id, Some(Duration::from_secs(10)))
            })
            .await?;
        latencies.push(started.elapsed());
        anyhow::ensure!(
            view.state == TaskState::Succeeded,
            "task {id} did not succeed"
        );
        *ran_on
            .entry(view.node.map_or("-".to_string(), |n| n.to_string()))
            .or_default() += 1;
    }
    let (p50, p99) = percentiles(&mut latencies);
    Ok((p50, p99, ran_on))
}

/// Median and 99th percentile in microseconds.
fn percentiles(samples: &mut [Duration]) -> (f64, f64) {
    samples.sort();
    let at = |q: f64| {
        samples
            .get(((samples.len() as f64 - 1.0) * q).round() as usize)
            .map_or(0.0, |d| d.as_secs_f64() * 1e6)
    };
    (at(0.5), at(0.99))
}

/// Prints figures as a table; with raft figures, also each path's ratio of
/// raft to single throughput.
pub fn print(settings: &BenchSettings, figures: &[Figures]) {
    println!(
        "herd bench: 3 nodes on loopback (n1 embedded in this process, n2 and n3 as processes), {} workers/node, {} no-op tasks per run, batches of {}, {} single-task samples",
        settings.workers, settings.tasks, settings.batch, settings.latency_samples
    );
    match settings.slot_credit {
        Some(credit) => println!("slot credit: fixed, {credit} attempts per slot"),
        None => println!(
            "slot credit: adaptive, {}–{} attempts per slot (following commit latency and run time)",
            herd_protocol::defaults::DEFAULT_SLOT_CREDIT,
            herd_protocol::defaults::DEFAULT_MAX_SLOT_CREDIT
        ),
    }
    let replicated = settings.replicas > 1;
    match &settings.data_dir {
        Some(dir) if replicated => println!(
            "journals: single orchestrator in {}, the one replica (raft x1) in {}, each of three replicas in {} (every 202 and every result is on disk first)",
            dir.join("single").display(),
            dir.join("raft1").display(),
            dir.join("<node>").display()
        ),
        Some(dir) => println!(
            "orchestrator journal: {} (every 202 and every result is on disk first)",
            dir.display()
        ),
        None => println!("orchestrator journal: off (in memory)"),
    }
    if replicated {
        println!(
            "single: n1 runs the only orchestrator (--replication single); raft x1: n1 alone holds the task book's replica (the default with one orchestrator-role node); raft x3: n1, n2 and n3 each hold a replica of the task book (--replication raft), the leader's node runs the orchestrator"
        );
    }
    println!(
        "{:<8} {:<26} {:>10} {:>10} {:>10} {:>8}   single tasks ran on",
        "setup", "path", "tasks/s", "p50 µs", "p99 µs", "refused"
    );
    for figure in figures {
        let ran: Vec<String> = figure
            .ran_on
            .iter()
            .map(|(node, n)| format!("{node}:{n}"))
            .collect();
        let path = match &figure.leader {
            Some(leader) => format!("{} (leader {leader})", figure.path),
            None => figure.path.clone(),
        };
        println!(
            "{:<8} {:<26} {:>10.0} {:>10.0} {:>10.0} {:>8}   {}",
            figure.setup,
            path,
            figure.throughput_per_s,
            figure.p50_us,
            figure.p99_us,
            figure.refused,
            ran.join(" ")
        );
    }
    if figures.iter().any(|figure| figure.refused > 0) {
        println!(
            "refused: requests (batches, task waits, status reads) refused at least once while no orchestrator served (no quorum, an election, the orchestrator stopping) and sent again; their waits are in the figures"
        );
    }
    for (setup, path, ratio) in throughput_ratios(figures) {
        println!("{setup} / single, {path}: {ratio:.2} of the throughput");
    }
}

/// For each raft setup and path also measured single: the raft setup's
/// label, the path, and raft throughput / single.
pub fn throughput_ratios(figures: &[Figures]) -> Vec<(String, String, f64)> {
    figures
        .iter()
        .filter(|figure| figure.setup != Setup::Single.label())
        .filter_map(|raft| {
            let single = figures
                .iter()
                .find(|figure| figure.setup == Setup::Single.label() && figure.path == raft.path)?;
            Some((
                raft.setup.clone(),
                raft.path.clone(),
                raft.throughput_per_s / single.throughput_per_s,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figure(setup: Setup, path: &str, throughput_per_s: f64) -> Figures {
        Figures {
            setup: setup.label().to_string(),
            leader: None,
            path: path.to_string(),
            throughput_per_s,
            p50_us: 0.0,
            p99_us: 0.0,
            ran_on: BTreeMap::new(),
            refused: 0,
        }
    }

    #[test]
    fn ratios_pair_each_raft_path_with_the_single_one() {
        let figures = [
            figure(Setup::Single, "library API", 100.0),
            figure(Setup::Single, "HTTP API", 200.0),
            figure(Setup::Single, "HTTP n1", 50.0),
            figure(Setup::RaftOne, "HTTP API", 180.0),
            figure(Setup::Raft, "library API", 60.0),
            figure(Setup::Raft, "HTTP API", 90.0),
        ];
        let ratio = |setup: &str, path: &str, r: f64| (setup.to_string(), path.to_string(), r);
        assert_eq!(
            throughput_ratios(&figures),
            vec![
                ratio("raft x1", "HTTP API", 0.9),
                ratio("raft x3", "library API", 0.6),
                ratio("raft x3", "HTTP API", 0.45)
            ]
        );
        assert!(throughput_ratios(&figures[..3]).is_empty());
    }

    #[tokio::test]
    async fn a_refused_request_is_sent_again_and_counted_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("{0}")]
        struct Refused(bool);
        let refusals = Refusals::default();
        let mut left = 3;
        let answer = refusals
            .retry(
                |error: &Refused| error.0,
                || {
                    left -= 1;
                    let outcome = if left > 0 { Err(Refused(true)) } else { Ok(7) };
                    async move { outcome }
                },
            )
            .await
            .unwrap();
        assert_eq!((answer, refusals.count()), (7, 1));
        let fatal = refusals
            .retry(
                |error: &Refused| error.0,
                || async { Err::<(), _>(Refused(false)) },
            )
            .await;
        assert!(fatal.is_err());
        assert_eq!(refusals.count(), 1);
    }
}
