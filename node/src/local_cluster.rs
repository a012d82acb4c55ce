//! Starts real `herd node` processes on loopback: the sample cluster, the
//! benchmark and the multi-process tests all use it.
//!
//! Each node gets free ports, its own log file, and is stopped (SIGTERM, then
//! SIGKILL) when the [`LocalCluster`] is dropped, so no test leaks processes.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

pub use tempfile::TempDir;
use tokio::process::{Child, Command};

use crate::api_client::ApiClient;

/// One node to start.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    /// Node name.
    pub name: String,
    /// `--roles`.
    pub roles: String,
    /// `--workers`.
    pub workers: u32,
    /// `--config`, if any.
    pub config: Option<PathBuf>,
    /// Extra command-line arguments.
    pub extra_args: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// The IP it listens on (cluster and HTTP); peers dial it there.
    pub host: String,
    /// A command the node runs under, e.g. `ip netns exec herd-n3`.
    pub wrapper: Vec<String>,
    /// Set when the node serves its API over HTTPS (`--tls-cert` among its
    /// arguments or config): the CA its certificate chains to. The launcher
    /// then talks to it over `https://`, trusting only that CA.
    pub api_ca: Option<PathBuf>,
}
impl NodeSpec {
    /// A node with the given roles and worker slots.
    pub fn new(name: &str, roles: &str, workers: u32) -> Self {
        NodeSpec {
            name: name.to_string(),
            roles: roles.to_string(),
            workers,
            config: None,
            extra_args: Vec::new(),
            env: Vec::new(),
            host: "127.0.0.1".to_string(),
            wrapper: Vec::new(),
            api_ca: None,
        }
    }

    /// The sample topology: n1 runs the orchestrator; all three run workers
    /// and monitors.
    pub fn three_nodes(workers: u32) -> Vec<NodeSpec> {
        vec![
            NodeSpec::new("n1", "orchestrator,worker,monitor", workers),
            NodeSpec::new("n2", "worker,monitor", workers),
            NodeSpec::new("n3", "worker,monitor", workers),
        ]
    }

    /// Three nodes, n1–n3, each with every role and `--replication raft`;
    /// with `data_dir`, each keeps its replica in `data_dir/<name>`.
    pub fn three_replicas(workers: u32, data_dir: Option<&Path>) -> Vec<NodeSpec> {
        ["n1", "n2", "n3"]
            .into_iter()
            .map(|name| {
                let mut spec = NodeSpec::new(name, "orchestrator,worker,monitor", workers);
                spec.extra_args = vec!["--replication".into(), "raft".into()];
                if let Some(dir) = data_dir {
                    spec.extra_args.push("--data-dir".into());
                    spec.extra_args
                        .push(dir.join(name).to_string_lossy().into_owned());
                }
                spec
            })
            .collect()
    }
}

/// A running node process.
pub struct NodeProcess {
    /// What it was started with.
    pub spec: NodeSpec,
    /// Its cluster port.
    pub cluster_port: u16,
    /// Its HTTP port.
    pub http_port: u16,
    /// Its log file (stderr and stdout).
    pub log: PathBuf,
    child: Option<Child>,
}

impl NodeProcess {
    /// The OS process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// `host:port` of its cluster listener.
    pub fn cluster_addr(&self) -> String {
        format!("{}:{}", self.spec.host, self.cluster_port)
    }

    /// Its HTTP API base URL (`https://` when [`NodeSpec::api_ca`] is set).
    pub fn api_url(&self) -> String {
        let scheme = if self.spec.api_ca.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}:{}", self.spec.host, self.http_port)
    }

    /// A client of its HTTP API (trusting [`NodeSpec::api_ca`] if set; a CA
    /// file that cannot be read makes every call fail, saying why), with the
    /// admin token the node was given (`HERD_API_TOKEN` in its environment),
    /// if any.
    pub fn api(&self) -> ApiClient {
        let token = self
            .spec
            .env
            .iter()
            .find(|(name, _)| name == "HERD_API_TOKEN")
            .map(|(_, token)| token.as_str());
        let client = match &self.spec.api_ca {
            Some(ca) => {
                ApiClient::with_ca_certificate(&self.api_url(), ca).unwrap_or_else(|error| {
                    eprintln!(
                        "local cluster: {error}; calls to {} will fail",
                        self.spec.name
                    );
                    ApiClient::new(&self.api_url())
                })
            }
            None => ApiClient::new(&self.api_url()),
        };
        client.with_token(token)
    }

    /// The log written so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Why a local cluster could not be started.
#[derive(Debug, thiserror::Error)]
pub enum LocalClusterError {
    /// The `herd` binary was not found and could not be built.
    #[error("cannot find or build the herd binary: {0}")]
    Binary(String),
    /// A process could not be spawned.
    #[error("cannot start node {name}: {reason}")]
    Spawn {
        /// The node.
        name: String,
        /// Why.
        reason: String,
    },
    /// Nodes did not become ready in time.
    #[error("the cluster was not ready within {limit:?}: {detail}")]
    NotReady {
        /// The deadline.
        limit: Duration,
        /// What was missing, with log tails.
        detail: String,
    },
}

/// A set of `herd node` processes on loopback.
pub struct LocalCluster {
    /// The nodes, in start order.
    pub nodes: Vec<NodeProcess>,
    /// The cookie they share.
    pub cookie: String,
    binary: PathBuf,
    /// Holds the nodes' logs.
    dir: TempDir,
}

/// Names a node of a [`LocalCluster`]: its name (`"n2"`) or its index in
/// [`LocalCluster::nodes`] (start order).
pub trait NodeRef: Copy {
    /// The node's index; panics, listing the nodes, if there is none.
    fn index_in(self, cluster: &LocalCluster) -> usize;
}

impl NodeRef for usize {
    fn index_in(self, cluster: &LocalCluster) -> usize {
        assert!(
            self < cluster.nodes.len(),
            "no node {self} in a cluster of {} ({})",
            cluster.nodes.len(),
            cluster.names()
        );
        self
    }
}

impl NodeRef for &str {
    fn index_in(self, cluster: &LocalCluster) -> usize {
        cluster
            .nodes
            .iter()
            .position(|node| node.spec.name == self)
            .unwrap_or_else(|| {
                panic!(
                    "no node named {self:?} in this cluster ({})",
                    cluster.names()
                )
            })
    }
}

/// A fresh directory `herd-{label}-…` under the system's temporary
/// directory, removed with everything in it when dropped, unless
/// `HERD_KEEP_LOGS` is set (to look at a failed run). The launcher keeps its
/// node logs in one; the tests keep their config files and data in one.
pub fn temp_dir(label: &str) -> std::io::Result<TempDir> {
    tempfile::Builder::new()
        .prefix(&format!("herd-{label}-"))
        .disable_cleanup(std::env::var_os("HERD_KEEP_LOGS").is_some())
        .tempdir()
}

/// The launcher's variables a node does not inherit: the launcher says
/// which file and seeds each node has.
const NOT_PASSED_ON: [&str; 2] = ["HERD_CONFIG", "HERD_SEEDS"];

/// Ports that were free a moment ago, `count` distinct ones.
///
/// They are chosen below the kernel's ephemeral range when it can be read:
/// the kernel takes the local ports of outgoing connections from that range,
/// so with dozens of nodes dialing each other at start, one node's dial
/// could otherwise take a port handed to another node before it binds it.
pub fn free_ports(count: usize) -> Vec<u16> {
    const LOWEST: u16 = 10_000;
    let Some(ephemeral_start) = ephemeral_range_start().filter(|start| *start > LOWEST + 1_000)
    else {
        return ephemeral_free_ports(count);
    };
    let mut rng = rand::rng();
    let mut ports: Vec<u16> = Vec::with_capacity(count);
    for _ in 0..count * 100 {
        if ports.len() == count {
            break;
        }
        let port = rand::RngExt::random_range(&mut rng, LOWEST..ephemeral_start);
        if !ports.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            ports.push(port);
        }
    }
    if ports.len() < count {
        return ephemeral_free_ports(count);
    }
    ports
}

/// The first port of the kernel's ephemeral range, on Linux.
fn ephemeral_range_start() -> Option<u16> {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Ports the kernel hands out as free, from its ephemeral range.
fn ephemeral_free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("loopback has free ports"))
        .collect();
    listeners
        .iter()
        .map(|listener| listener.local_addr().expect("bound").port())
        .collect()
}

/// A random cookie for one run.
pub fn random_cookie() -> String {
    format!(
        "herd-{}",
        herd_protocol::TaskId::new_v7().as_uuid().simple()
    )
}

/// Finds the `herd` binary, once per process: `$HERD_BIN` if set; the
/// running executable if it is `herd` (the benchmark); otherwise `cargo
/// build -p herd-node --bin herd` in the profile of the running executable,
/// which is a no-op when the binary is fresh. Building rather than searching
/// matters: `cargo test -p herd-tests` alone does not rebuild `herd`, and a
/// stale binary would silently test old code.
pub fn herd_binary() -> Result<PathBuf, LocalClusterError> {
    static BINARY: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    BINARY
        .get_or_init(|| locate_herd().map_err(|error| error.to_string()))
        .clone()
        .map_err(LocalClusterError::Binary)
}

fn locate_herd() -> Result<PathBuf, LocalClusterError> {
    if let Some(path) = std::env::var_os("HERD_BIN") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().map_err(|e| LocalClusterError::Binary(e.to_string()))?;
    if exe.file_stem().is_some_and(|stem| stem == "herd") {
        return Ok(exe);
    }
    cargo_build_binary("herd-node", "herd")
        .map_err(|error| LocalClusterError::Binary(format!("{error}; or set HERD_BIN")))
}

/// Runs `cargo build -p PACKAGE --bin BIN` in the profile (debug or release)
/// and target directory of the running executable, and returns the binary's
/// path; a no-op for cargo when the binary is fresh.
pub fn cargo_build_binary(package: &str, bin: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let profile_dir = exe
        .ancestors()
        .find(|dir| {
            dir.file_name()
                .is_some_and(|name| name == "debug" || name == "release")
        })
        .map(Path::to_path_buf)
        .ok_or_else(|| format!("cannot tell the cargo profile of {}", exe.display()))?;
    let release = profile_dir
        .file_name()
        .is_some_and(|name| name == "release");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = std::process::Command::new(cargo);
    command.args(["build", "--quiet", "-p", package, "--bin", bin]);
    if release {
        command.arg("--release");
    }
    if let Some(target_dir) = profile_dir.parent() {
        command.env("CARGO_TARGET_DIR", target_dir);
    }
    let status = command
        .status()
        .map_err(|e| format!("cannot run cargo to build {bin}: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build -p {package} --bin {bin} failed"));
    }
    Ok(profile_dir.join(bin))
}

impl LocalCluster {
    /// Starts the nodes, every node seeding from every other, and waits until
    /// each serves `/ready` and sees all the others.
    pub async fn start(
        specs: Vec<NodeSpec>,
        ready_within: Duration,
    ) -> Result<LocalCluster, LocalClusterError> {
        let mut cluster = LocalCluster::spawn(specs, &random_cookie())?;
        cluster.wait_ready(ready_within).await?;
        Ok(cluster)
    }

    /// No nodes yet: the binary found and a directory for the logs made.
    fn empty(cookie: &str) -> Result<LocalCluster, LocalClusterError> {
        let binary = herd_binary()?;
        let dir = temp_dir("cluster").map_err(|e| LocalClusterError::Spawn {
            name: "-".into(),
            reason: format!("cannot make a directory for the logs: {e}"),
        })?;
        Ok(LocalCluster {
            nodes: Vec::new(),
            cookie: cookie.to_string(),
            binary,
            dir,
        })
    }

    /// Starts the nodes without waiting.
    pub fn spawn(specs: Vec<NodeSpec>, cookie: &str) -> Result<LocalCluster, LocalClusterError> {
        let mut cluster = LocalCluster::empty(cookie)?;
        let ports = free_ports(specs.len() * 2);
        let cluster_ports: Vec<u16> = (0..specs.len()).map(|i| ports[2 * i]).collect();
        let hosts: Vec<String> = specs.iter().map(|spec| spec.host.clone()).collect();
        for (index, spec) in specs.into_iter().enumerate() {
            let seeds: Vec<String> = (0..hosts.len())
                .filter(|i| *i != index)
                .map(|i| format!("{}:{}", hosts[i], cluster_ports[i]))
                .collect();
            let node = cluster.launch(spec, cluster_ports[index], ports[2 * index + 1], &seeds)?;
            cluster.nodes.push(node);
        }
        Ok(cluster)
    }

    fn launch(
        &self,
        spec: NodeSpec,
        cluster_port: u16,
        http_port: u16,
        seeds: &[String],
    ) -> Result<NodeProcess, LocalClusterError> {
        let mut args: Vec<String> = vec![
            "--name".into(),
            spec.name.clone(),
            "--listen".into(),
            format!("{}:{cluster_port}", spec.host),
            "--http".into(),
            format!("{}:{http_port}", spec.host),
            "--roles".into(),
            spec.roles.clone(),
            "--workers".into(),
            spec.workers.to_string(),
        ];
        for seed in seeds {
            args.extend(["--seed".to_string(), seed.clone()]);
        }
        self.spawn_node(spec, args, cluster_port, http_port)
    }

    /// Spawns `herd node ARGS` with the spec's config, extra arguments and
    /// environment, logging to a file. The child gets its own process group,
    /// so a Ctrl-C at the terminal reaches only this launcher, which then stops
    /// the nodes in order; and, on Linux, it is sent SIGTERM if the launcher
    /// dies, so no node outlives it.
    fn spawn_node(
        &self,
        spec: NodeSpec,
        args: Vec<String>,
        cluster_port: u16,
        http_port: u16,
    ) -> Result<NodeProcess, LocalClusterError> {
        let failed = |reason: String| LocalClusterError::Spawn {
            name: spec.name.clone(),
            reason,
        };
        let log = self.dir.path().join(format!("{}.log", spec.name));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| failed(e.to_string()))?;
        let file_err = file.try_clone().map_err(|e| failed(e.to_string()))?;
        let mut command = match spec.wrapper.split_first() {
            Some((program, arguments)) => {
                let mut command = Command::new(program);
                command.args(arguments).arg(&self.binary);
                command
            }
            None => Command::new(&self.binary),
        };
        command
            .arg("node")
            .args(&args)
            .env("HERD_COOKIE", &self.cookie)
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(file_err)
            .process_group(0)
            .kill_on_drop(true);
        // Linux only: elsewhere a node outlives a launcher that dies without
        // running its Drop (SIGKILL), and is stopped by hand.
        #[cfg(target_os = "linux")]
        // SAFETY: prctl is async-signal-safe and touches no memory of ours.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        for variable in NOT_PASSED_ON {
            command.env_remove(variable);
        }
        if let Some(config) = &spec.config {
            command.arg("--config").arg(config);
        }
        command.args(&spec.extra_args);
        for (key, value) in &spec.env {
            command.env(key, value);
        }
        let child = command.spawn().map_err(|e| failed(e.to_string()))?;
        Ok(NodeProcess {
            spec,
            cluster_port,
            http_port,
            log,
            child: Some(child),
        })
    }

    /// Starts one node per config file. The files name the nodes, their
    /// addresses and seeds; only the cookie comes from here (`HERD_COOKIE`).
    pub fn spawn_from_configs(
        configs: &[PathBuf],
        cookie: &str,
    ) -> Result<LocalCluster, LocalClusterError> {
        let mut cluster = LocalCluster::empty(cookie)?;
        // Resolved in the environment the nodes get (see `spawn_node`), so a
        // file's `${VAR}`s name the same ports here as in the node.
        let env = herd_config::Environment::from_pairs(
            std::env::vars()
                .filter(|(key, _)| !NOT_PASSED_ON.contains(&key.as_str()))
                .chain([("HERD_COOKIE".to_string(), cookie.to_string())]),
        );
        for path in configs {
            let overrides = herd_config::Overrides {
                config: Some(path.clone()),
                ..herd_config::Overrides::default()
            };
            let config = herd_config::resolve(&overrides, &env).map_err(|error| {
                LocalClusterError::Spawn {
                    name: path.display().to_string(),
                    reason: error.to_string(),
                }
            })?;
            let roles = config
                .roles
                .iter()
                .map(|role| role.as_str())
                .collect::<Vec<_>>()
                .join(",");
            let mut spec = NodeSpec::new(config.name.as_str(), &roles, config.workers);
            spec.config = Some(path.clone());
            let node =
                cluster.spawn_node(spec, Vec::new(), config.listen.port(), config.http.port())?;
            cluster.nodes.push(node);
        }
        Ok(cluster)
    }

    /// Restarts a node with the same ports and seeds (a new incarnation).
    pub fn restart(&mut self, node: impl NodeRef) -> Result<(), LocalClusterError> {
        let index = node.index_in(self);
        let seeds: Vec<String> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != index)
            .map(|(_, node)| node.cluster_addr())
            .collect();
        let old = &self.nodes[index];
        let node = self.launch(old.spec.clone(), old.cluster_port, old.http_port, &seeds)?;
        self.nodes[index] = node;
        Ok(())
    }

    /// A node, by name (`"n2"`) or index.
    pub fn node(&self, node: impl NodeRef) -> &NodeProcess {
        &self.nodes[node.index_in(self)]
    }

    /// A client of a node's API.
    pub fn api(&self, node: impl NodeRef) -> ApiClient {
        self.node(node).api()
    }

    /// The nodes' names, for messages.
    /// `--seed ADDR` for every node of the cluster: the arguments that
    /// point another node at it.
    pub fn seed_args(&self) -> Vec<String> {
        self.nodes
            .iter()
            .flat_map(|node| ["--seed".to_string(), node.cluster_addr()])
            .collect()
    }

    fn names(&self) -> String {
        self.nodes
            .iter()
            .map(|node| node.spec.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Waits until every running node answers `/ready` and the orchestrator
    /// lists every running node as up.
    pub async fn wait_ready(&mut self, limit: Duration) -> Result<(), LocalClusterError> {
        let deadline = Instant::now() + limit;
        let running: Vec<usize> = (0..self.nodes.len())
            .filter(|i| self.nodes[*i].child.is_some())
            .collect();
        let mut last = String::new();
        while Instant::now() < deadline {
            for index in &running {
                if let Some(child) = self.nodes[*index].child.as_mut()
                    && let Ok(Some(status)) = child.try_wait()
                {
                    return Err(LocalClusterError::NotReady {
                        limit,
                        detail: format!(
                            "node {} exited with {status}:\n{}",
                            self.nodes[*index].spec.name,
                            self.log_tails()
                        ),
                    });
                }
            }
            match self.readiness(&running).await {
                Ok(()) => return Ok(()),
                Err(detail) => last = detail,
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(LocalClusterError::NotReady {
            limit,
            detail: format!("{last}\n{}", self.log_tails()),
        })
    }

    async fn readiness(&self, running: &[usize]) -> Result<(), String> {
        for index in running {
            match self.api(*index).get_json("/ready").await {
                Ok((200, _)) => {}
                Ok((status, body)) => {
                    return Err(format!(
                        "{} /ready answered {status}: {body}",
                        self.nodes[*index].spec.name
                    ));
                }
                Err(error) => return Err(format!("{}: {error}", self.nodes[*index].spec.name)),
            }
        }
        let first = *running.first().ok_or("no running node")?;
        let status = self.api(first).cluster().await.map_err(|e| e.to_string())?;
        for index in running {
            let name = &self.nodes[*index].spec.name;
            let up = status.nodes.iter().any(|node| {
                node.name.as_str() == name
                    && node.state == herd_protocol::messages::orchestrator::MemberState::Up
            });
            let has_pool = !self.nodes[*index].spec.roles.contains("worker")
                || status
                    .nodes
                    .iter()
                    .any(|node| node.name.as_str() == name && node.workers > 0);
            if !up || !has_pool {
                return Err(format!(
                    "the orchestrator does not see {name} up with its workers yet"
                ));
            }
        }
        Ok(())
    }

    /// Sends a signal to a node (e.g. `libc::SIGSTOP`).
    pub fn signal(&self, node: impl NodeRef, signal: i32) {
        if let Some(pid) = self.node(node).pid() {
            // SAFETY: kill(2) with a pid this cluster spawned and still owns.
            unsafe {
                libc::kill(pid as i32, signal);
            }
        }
    }

    /// SIGKILLs a node and reaps it.
    pub async fn kill(&mut self, node: impl NodeRef) {
        let index = node.index_in(self);
        if let Some(mut child) = self.nodes[index].child.take() {
            let _ = child.kill().await;
        }
    }

    /// SIGTERMs a node and waits up to `limit` for it to exit; returns its
    /// exit code.
    pub async fn terminate(&mut self, node: impl NodeRef, limit: Duration) -> Option<i32> {
        let index = node.index_in(self);
        self.signal(index, libc::SIGTERM);
        let mut child = self.nodes[index].child.take()?;
        match tokio::time::timeout(limit, child.wait()).await {
            Ok(Ok(status)) => status.code(),
            _ => {
                let _ = child.kill().await;
                None
            }
        }
    }

    /// Waits for a node to exit on its own; returns its exit code.
    pub async fn wait_exit(&mut self, node: impl NodeRef, limit: Duration) -> Option<i32> {
        let index = node.index_in(self);
        let child = self.nodes[index].child.as_mut()?;
        let status = tokio::time::timeout(limit, child.wait()).await.ok()?.ok()?;
        self.nodes[index].child = None;
        status.code()
    }

    /// Stops every node gracefully (SIGTERM, 10 s grace, then SIGKILL).
    pub async fn stop(&mut self) {
        for index in 0..self.nodes.len() {
            self.signal(index, libc::SIGCONT);
            self.signal(index, libc::SIGTERM);
        }
        for index in 0..self.nodes.len() {
            if let Some(mut child) = self.nodes[index].child.take()
                && tokio::time::timeout(Duration::from_secs(10), child.wait())
                    .await
                    .is_err()
            {
                let _ = child.kill().await;
            }
        }
    }

    /// The last lines of every node's log, for failure messages.
    pub fn log_tails(&self) -> String {
        self.nodes
            .iter()
            .map(|node| {
                let text = node.log_text();
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(30)..].join("\n");
                format!(
                    "--- {} ({}) ---\n{tail}",
                    node.spec.name,
                    node.log.display()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Where the logs are kept (kept after the run if `HERD_KEEP_LOGS` is set).
    pub fn log_dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(child) = node.child.as_mut() {
                let _ = child.start_kill();
            }
        }
    }
}
