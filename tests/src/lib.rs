//! Helpers shared by the multi-process tests.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use herd_node::api_client::{ApiClient, ApiClientError};
pub use herd_node::local_cluster::{LocalCluster, NodeRef, NodeSpec, TempDir, temp_dir};
pub use link_cut::LinkCut;

mod link_cut;

/// The deadline of a multi-process test, from [`with_deadline`]: well over
/// what the slowest takes on a loaded two-core machine, far under CI's limit.
pub const DEADLINE: Duration = Duration::from_secs(240);

/// What the running test waits for, for the message of a missed deadline.
#[derive(Debug)]
struct Wait {
    what: String,
    since: Instant,
    done: bool,
}

tokio::task_local! {
    static WAITING: Arc<Mutex<Wait>>;
}

/// Runs a test's body and fails it if it has not finished within `limit`,
/// saying what it was waiting for, so a hang fails one test instead of
/// stalling the run. Every multi-process test runs inside one:
///
/// ```ignore
/// #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
/// async fn something_happens() {
///     with_deadline(DEADLINE, async {
///         let cluster = three_node_cluster(2).await;
///         // …
///     })
///     .await;
/// }
/// ```
///
/// The clock starts once the `herd` binary is found or built (the first test
/// of a run may build it). The waits of these helpers ([`eventually`], the
/// cluster starters, [`wait_finished`]) and [`waiting_for`] name the step.
/// The deadline ends an await that never completes; it cannot interrupt a
/// thread blocked in a synchronous call.
pub async fn with_deadline<T>(limit: Duration, test: impl Future<Output = T>) -> T {
    herd_node::local_cluster::herd_binary()
        .unwrap_or_else(|error| panic!("the herd binary is needed: {error}"));
    within(limit, test).await
}

/// [`with_deadline`] without the binary.
async fn within<T>(limit: Duration, test: impl Future<Output = T>) -> T {
    let waiting = Arc::new(Mutex::new(Wait {
        what: "the test's first step".to_string(),
        since: Instant::now(),
        done: false,
    }));
    let test = WAITING.scope(waiting.clone(), test);
    tokio::pin!(test);
    tokio::select! {
        biased;
        value = &mut test => value,
        // Read while the test still runs: dropping it ends its waits.
        () = tokio::time::sleep(limit) => {
            let wait = waiting.lock().unwrap_or_else(|e| e.into_inner());
            let ago = wait.since.elapsed().as_secs();
            if wait.done {
                panic!(
                    "the test did not finish within its deadline of {limit:?}: \
                     it had been stuck {ago} s in its own code after {:?}",
                    wait.what
                )
            } else {
                panic!(
                    "the test did not finish within its deadline of {limit:?}: \
                     it had been waiting {ago} s for {:?}",
                    wait.what
                )
            }
        }
    }
}

/// Names the step the test now waits for, for [`with_deadline`]'s message
/// (a no-op outside it), until the returned [`WaitStep`] is dropped.
pub fn waiting_for(what: &str) -> WaitStep {
    let _ = WAITING.try_with(|waiting| {
        *waiting.lock().unwrap_or_else(|e| e.into_inner()) = Wait {
            what: what.to_string(),
            since: Instant::now(),
            done: false,
        };
    });
    WaitStep
}

/// A step named by [`waiting_for`]; marks it done when dropped.
#[must_use = "the step is done when this is dropped"]
pub struct WaitStep;

impl Drop for WaitStep {
    fn drop(&mut self) {
        let _ = WAITING.try_with(|waiting| {
            let mut wait = waiting.lock().unwrap_or_else(|e| e.into_inner());
            wait.done = true;
            wait.since = Instant::now();
        });
    }
}

/// Polls `check` until it returns `Some`, or panics with `what` after `limit`.
/// Tests await observable effects this way instead of sleeping.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let _step = waiting_for(what);
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A three-node cluster (n1 orchestrator; all workers), ready.
pub async fn three_node_cluster(workers: u32) -> LocalCluster {
    start_cluster(NodeSpec::three_nodes(workers)).await
}

/// Starts `specs` (every node seeding from the others) and waits, 30 s at
/// most, until all are up.
pub async fn start_cluster(specs: Vec<NodeSpec>) -> LocalCluster {
    let names: Vec<&str> = specs.iter().map(|spec| spec.name.as_str()).collect();
    let _step = waiting_for(&format!(
        "nodes {} to start and see each other",
        names.join(", ")
    ));
    LocalCluster::start(specs, Duration::from_secs(30))
        .await
        .unwrap_or_else(|error| panic!("cluster did not start: {error}"))
}

/// A three-node cluster like [`three_node_cluster`], every node reading the
/// config file `config` and given the extra environment `env`.
pub async fn three_node_cluster_with(
    workers: u32,
    config: &std::path::Path,
    env: &[(&str, &str)],
) -> LocalCluster {
    let specs = NodeSpec::three_nodes(workers)
        .into_iter()
        .map(|spec| NodeSpec {
            config: Some(config.to_path_buf()),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..spec
        })
        .collect();
    start_cluster(specs).await
}

use herd_protocol::{TaskId, TaskView};

/// Every task the orchestrator holds, oldest first (pages through the API).
pub async fn all_tasks(api: &ApiClient) -> Vec<TaskView> {
    let mut tasks = Vec::new();
    let mut after: Option<TaskId> = None;
    loop {
        let query = match after {
            Some(id) => format!("limit=1000&after={id}"),
            None => "limit=1000".to_string(),
        };
        let page = api.list(&query).await.expect("tasks can be listed");
        tasks.extend(page.tasks);
        match page.next_after {
            Some(next) => after = Some(next),
            None => return tasks,
        }
    }
}

/// Submits `tasks` as one batch the way a careful client does across a
/// failover: each task without an `idempotency_key` gets a fresh one, and a
/// batch refused with a 503 (an election, no quorum, an orchestrator that
/// stopped before answering: `outcome_unknown`), a 504 (the orchestrator
/// did not answer in time, e.g. stopping on another node) or not answered
/// at all is sent again as it is, until acknowledged or `limit` runs out.
/// The keys make a resend of a batch that did commit return the first
/// tasks' ids, so nothing is submitted twice. Any other error fails the
/// test. (Not [`eventually`]: its failure names the last refusal.)
pub async fn submit_until_acknowledged(
    api: &ApiClient,
    tasks: &[serde_json::Value],
    limit: Duration,
) -> Vec<TaskId> {
    let run = std::process::id();
    let tasks: Vec<serde_json::Value> = tasks
        .iter()
        .map(|task| {
            let mut task = task.clone();
            if task.get("idempotency_key").is_none() {
                let n = NEXT_KEY.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                task["idempotency_key"] = serde_json::json!(format!("herd-tests-{run}-{n}"));
            }
            task
        })
        .collect();
    let _step = waiting_for(&format!("a batch of {} tasks acknowledged", tasks.len()));
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let refusal = match api.submit_batch(&tasks).await {
            Ok(ids) => return ids,
            Err(ApiClientError::Api {
                status: status @ (503 | 504),
                code,
                message,
            }) => format!("{status} {code}: {message}"),
            Err(error @ ApiClientError::Transport { .. }) => error.to_string(),
            Err(error) => panic!("a batch of {} tasks was refused: {error}", tasks.len()),
        };
        assert!(
            tokio::time::Instant::now() < deadline,
            "a batch of {} tasks not acknowledged within {limit:?}; last refusal: {refusal}",
            tasks.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

static NEXT_KEY: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Waits until the cluster has finished `count` tasks (succeeded, dead or
/// cancelled) and returns the cluster summary.
pub async fn wait_finished(
    api: &ApiClient,
    count: u64,
    limit: Duration,
) -> herd_protocol::messages::orchestrator::ClusterStatus {
    eventually(limit, &format!("{count} tasks finish"), || {
        let api = api.clone();
        async move {
            let status = api.cluster().await.ok()?;
            let finished = status.tasks.succeeded + status.tasks.dead + status.tasks.cancelled;
            (finished >= count).then_some(status)
        }
    })
    .await
}

/// Waits until node `name` runs at least one task (its `busy` slots in the
/// cluster summary), or panics after `limit`.
pub async fn wait_until_busy(api: &ApiClient, name: &str, limit: Duration) {
    let what = format!("{name} is running tasks");
    eventually(limit, &what, || {
        let api = api.clone();
        async move {
            let status = api.cluster().await.ok()?;
            let node = status.nodes.iter().find(|n| n.name.as_str() == name)?;
            (node.busy > 0).then_some(())
        }
    })
    .await
}

/// The value of the first series of `metric` on `api`'s `/metrics` whose
/// labels include `label` (e.g. `action="restart_pool"`); `None` if the
/// node does not answer or exports no such series.
pub async fn metric_value(api: &ApiClient, metric: &str, label: &str) -> Option<f64> {
    let (status, text) = api.get_text("/metrics").await.ok()?;
    if status != 200 {
        return None;
    }
    let prefix = format!("{metric}{{");
    text.lines()
        .find(|line| line.starts_with(&prefix) && line.contains(label))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
}

/// Waits until the node behind `node_api` (called `name` in the message)
/// has workers running attempts, by its own `herd_pool_workers{state="busy"}`
/// gauge (set every second) rather than the orchestrator's view, which counts
/// assignments the pool may not have started yet.
pub async fn wait_until_pool_busy(node_api: &ApiClient, name: &str) {
    let what = format!("{name}'s workers are running attempts");
    eventually(Duration::from_secs(20), &what, || {
        let node_api = node_api.clone();
        async move {
            let (status, text) = node_api.get_text("/metrics").await.ok()?;
            (status == 200).then_some(())?;
            text.lines()
                .filter(|line| {
                    line.starts_with("herd_pool_workers{") && line.contains("state=\"busy\"")
                })
                .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
                .any(|busy| busy > 0.0)
                .then_some(())
        }
    })
    .await;
}

/// One HTTP answer read off a raw socket.
pub struct RawAnswer {
    /// The status code.
    pub status: u16,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body's JSON object (`null` if there is none).
    pub body: serde_json::Value,
}

impl RawAnswer {
    /// The first header called `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Sends `method path` with `body` over a raw socket, so tests can send what
/// an HTTP client library would refuse or normalise (bytes like `%FF`).
pub async fn send_raw(base: &str, method: &str, path: &str, body: &[u8]) -> RawAnswer {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = base.trim_start_matches("http://");
    let mut socket = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let _ = socket.write_all(body).await;
    let mut answer = Vec::new();
    let _ = socket.read_to_end(&mut answer).await;
    let text = String::from_utf8_lossy(&answer).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines.next().unwrap().split_whitespace().nth(1).unwrap();
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    // Bodies may be chunked; take the JSON object inside.
    let json_text = body
        .find('{')
        .map(|start| &body[start..body.rfind('}').unwrap() + 1])
        .unwrap_or("null");
    RawAnswer {
        status: status.parse().unwrap(),
        headers,
        body: serde_json::from_str(json_text).unwrap_or(serde_json::Value::Null),
    }
}

/// `POST` of raw bytes (so payloads keep their exact size); returns status,
/// JSON body and `Retry-After`.
pub async fn post_raw(
    base: &str,
    path: &str,
    body: Vec<u8>,
) -> (u16, serde_json::Value, Option<String>) {
    let answer = send_raw(base, "POST", path, &body).await;
    let retry_after = answer.header("retry-after").map(str::to_string);
    (answer.status, answer.body, retry_after)
}

/// Writes a config file into `dir` and returns its path.
pub fn write_config(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("config written");
    path
}

/// The state of node `name` in the cluster summary, if listed.
pub async fn node_state(
    api: &ApiClient,
    name: &str,
) -> Option<herd_protocol::messages::orchestrator::MemberState> {
    let status = api.cluster().await.ok()?;
    status
        .nodes
        .iter()
        .find(|node| node.name.as_str() == name)
        .map(|node| node.state)
}

/// A network namespace joined to the host by a veth pair, for partition
/// tests: a node started under [`Partitionable::wrapper`] listens on
/// [`Partitionable::inner_ip`] and reaches the host at
/// [`Partitionable::outer_ip`]. [`Partitionable::cut`] takes the link down (a
/// silent partition: no resets, packets just vanish); [`Partitionable::heal`]
/// brings it back. Everything is removed on drop. Needs root.
pub struct Partitionable {
    namespace: String,
    outer_link: String,
    /// The host side's address.
    pub outer_ip: String,
    /// The namespace side's address.
    pub inner_ip: String,
}

impl Partitionable {
    /// Creates the namespace, or says why it cannot (not root, no `ip`).
    pub fn create() -> Result<Partitionable, String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("network-namespace partitions need root".into());
        }
        let id = std::process::id();
        let subnet = 1 + id % 250;
        let net = Partitionable {
            namespace: format!("herd-t{id}"),
            outer_link: format!("hv{id}a"),
            outer_ip: format!("10.213.{subnet}.1"),
            inner_ip: format!("10.213.{subnet}.2"),
        };
        let inner_link = format!("hv{id}b");
        let steps: Vec<Vec<String>> = vec![
            vec!["netns".into(), "add".into(), net.namespace.clone()],
            vec![
                "link".into(),
                "add".into(),
                net.outer_link.clone(),
                "type".into(),
                "veth".into(),
                "peer".into(),
                "name".into(),
                inner_link.clone(),
            ],
            vec![
                "link".into(),
                "set".into(),
                inner_link.clone(),
                "netns".into(),
                net.namespace.clone(),
            ],
            vec![
                "addr".into(),
                "add".into(),
                format!("{}/30", net.outer_ip),
                "dev".into(),
                net.outer_link.clone(),
            ],
            vec![
                "link".into(),
                "set".into(),
                net.outer_link.clone(),
                "up".into(),
            ],
            vec![
                "-n".into(),
                net.namespace.clone(),
                "addr".into(),
                "add".into(),
                format!("{}/30", net.inner_ip),
                "dev".into(),
                inner_link.clone(),
            ],
            vec![
                "-n".into(),
                net.namespace.clone(),
                "link".into(),
                "set".into(),
                inner_link,
                "up".into(),
            ],
            vec![
                "-n".into(),
                net.namespace.clone(),
                "link".into(),
                "set".into(),
                "lo".into(),
                "up".into(),
            ],
        ];
        for step in steps {
            ip(&step)?;
        }
        Ok(net)
    }

    /// Runs a node inside the namespace.
    pub fn wrapper(&self) -> Vec<String> {
        vec![
            "ip".into(),
            "netns".into(),
            "exec".into(),
            self.namespace.clone(),
        ]
    }

    /// Cuts the link: nothing passes either way.
    pub fn cut(&self) {
        ip(&[
            "link".into(),
            "set".into(),
            self.outer_link.clone(),
            "down".into(),
        ])
        .expect("link goes down");
    }

    /// Restores the link.
    pub fn heal(&self) {
        ip(&[
            "link".into(),
            "set".into(),
            self.outer_link.clone(),
            "up".into(),
        ])
        .expect("link comes up");
    }
}

impl Drop for Partitionable {
    fn drop(&mut self) {
        let _ = ip(&["link".into(), "del".into(), self.outer_link.clone()]);
        let _ = ip(&["netns".into(), "del".into(), self.namespace.clone()]);
    }
}

fn ip(arguments: &[String]) -> Result<(), String> {
    let output = std::process::Command::new("ip")
        .args(arguments)
        .output()
        .map_err(|error| format!("cannot run ip: {error}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            arguments.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Runs `herd certs --out DIR --node NAME…` (a development CA and one
/// certificate per node, for both HTTPS and cluster TLS) and returns `DIR`.
pub fn dev_certs(dir: &std::path::Path, nodes: &[&str]) -> std::path::PathBuf {
    let binary = herd_node::local_cluster::herd_binary().expect("the herd binary");
    let mut command = std::process::Command::new(binary);
    command.arg("certs").arg("--out").arg(dir);
    for node in nodes {
        command.args(["--node", node]);
    }
    let output = command.output().expect("herd certs runs");
    assert!(
        output.status.success(),
        "herd certs failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    dir.to_path_buf()
}

/// `spec` with HTTPS and cluster TLS from a [`dev_certs`] directory (the
/// node's own `NAME.pem`/`NAME.key`, and `ca.pem`), the launcher trusting
/// that CA for the API.
pub fn with_tls(spec: NodeSpec, certs: &std::path::Path) -> NodeSpec {
    let file = |name: String| certs.join(name).display().to_string();
    let (cert, key) = (
        file(format!("{}.pem", spec.name)),
        file(format!("{}.key", spec.name)),
    );
    let mut extra_args = spec.extra_args.clone();
    extra_args.extend([
        "--tls-cert".to_string(),
        cert.clone(),
        "--tls-key".to_string(),
        key.clone(),
        "--cluster-tls-cert".to_string(),
        cert,
        "--cluster-tls-key".to_string(),
        key,
        "--cluster-tls-ca".to_string(),
        file("ca.pem".to_string()),
    ]);
    NodeSpec {
        extra_args,
        api_ca: Some(certs.join("ca.pem")),
        ..spec
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    #[should_panic(expected = "the test did not finish within its deadline of 200ms: \
                               it had been waiting 0 s for \"a thing that never happens\"")]
    async fn a_hang_in_a_wait_fails_naming_the_wait() {
        within(Duration::from_millis(200), async {
            eventually(
                Duration::from_secs(60),
                "a thing that never happens",
                || async { None::<()> },
            )
            .await;
        })
        .await;
    }

    #[tokio::test]
    #[should_panic(expected = "it had been stuck 0 s in its own code after \"the first answer\"")]
    async fn a_hang_after_a_wait_names_the_last_step() {
        within(Duration::from_millis(200), async {
            eventually(Duration::from_secs(1), "the first answer", || async {
                Some(())
            })
            .await;
            std::future::pending::<()>().await;
        })
        .await;
    }
}
