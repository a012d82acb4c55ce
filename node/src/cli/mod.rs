//! The `herd` command line.

mod certs;
mod client;
mod dev;
mod node;
mod tls;
mod token;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// herd: a distributed actor runtime for multi-agent workloads.
#[derive(Parser, Debug)]
#[command(name = "herd", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a cluster node.
    Node(Box<NodeArgs>),
    /// Submit tasks through a node's HTTP API.
    Submit(client::SubmitArgs),
    /// Show the cluster: nodes, agent types, task counts.
    Status(client::StatusArgs),
    /// Show one task.
    Task(client::TaskArgs),
    /// Dead-letter queue: list dead tasks, retry them (optionally with a new payload).
    #[command(subcommand)]
    Dlq(client::DlqCommand),
    /// Drain a node: no new work, running tasks finish, the rest is handed back, then it leaves.
    Drain(client::DrainArgs),
    /// Probe a node's health (exit 0 healthy, 1 not): a container HEALTHCHECK without curl.
    Health(client::HealthArgs),
    /// Benchmark a local three-node cluster (throughput and latency).
    Bench(BenchArgs),
    /// API tokens: make one and print its SHA-256 digest for [[api.tokens]].
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Development tools (a stand-in LLM provider); never for production.
    #[command(subcommand)]
    Dev(dev::DevCommand),
    /// Make a development CA and node certificates for TLS (--tls-*, --cluster-tls-*).
    Certs(certs::CertsArgs),
}

/// Flags of `herd bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// `throughput` (tasks/s and latency), `failover` (detection and recovery times), `scaling` (decision and reaction times), `llm` (the llm handler's overhead and how closely a provider limit is used) or `idle` (CPU per idle node at several cluster sizes).
    #[arg(default_value = "throughput", value_parser = ["throughput", "failover", "scaling", "llm", "idle"])]
    scenario: String,
    /// Rounds per failover phase (with --replicas 3 also the number of kill -9 rounds and of SIGSTOP rounds of the Raft leader).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// No-op tasks per throughput run.
    #[arg(long, default_value_t = 50_000)]
    tasks: usize,
    /// Tasks per submission.
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Worker slots per node.
    #[arg(long, default_value_t = 64)]
    workers: u32,
    /// Sequential single tasks for the latency percentiles.
    #[arg(long, default_value_t = 2_000)]
    latency_samples: usize,
    /// Concurrent submitters in the throughput runs.
    #[arg(long, default_value_t = 4)]
    submitters: usize,
    /// `throughput`: journal n1's tasks here (measures durable submission); a fresh temporary directory is fine. With --replicas 3, `throughput` journals the single orchestrator into DIR/single and each replica into DIR/n1, DIR/n2, DIR/n3, and `failover` journals its leader rounds' replicas into DIR/n1, DIR/n2, DIR/n3 (a killed leader restarts on its own directory); without it they are in memory.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// `throughput`, `failover`: task book replicas. 1: the single orchestrator (`--replication single`) on n1 only. 3: `throughput` then also measures fresh clusters where n1 alone holds a raft replica (`raft x1`, the default with one orchestrator-role node) and where all three nodes have the orchestrator role (`raft x3`), and prints the three sets of figures and each raft/single throughput ratio (`refused`: requests refused while no orchestrator served, sent again), `failover` adds leader rounds on three `herd node` processes (kill -9 and SIGSTOP of the Raft leader → a survivor shows a new leader, → the first task completed after the signal).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = parse_replicas)]
    replicas: u8,
    /// `throughput`: a fixed number of attempts the orchestrator gives a pool per slot (sets `scaling.slot_credit` and `scaling.max_slot_credit`, 1–128); default: the config's adaptive credit.
    #[arg(long, value_name = "N")]
    slot_credit: Option<u32>,
    /// `llm`: the provider's requests_per_minute in the limit run (a backlog of twice that; takes a minute); 0 skips it.
    #[arg(long, default_value_t = 1_200)]
    requests_per_minute: u32,
    /// `throughput`: also measure n1's API over HTTPS (a `herd certs` development certificate); give with --token.
    #[arg(long, requires = "token")]
    tls: bool,
    /// `throughput`: ... with a bearer token checked on every request; give with --tls.
    #[arg(long, requires = "tls")]
    token: bool,
    /// `idle`: the cluster sizes measured in turn, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "3,10,30")]
    sizes: Vec<usize>,
    /// `idle`: seconds each cluster is measured while idle.
    #[arg(long, default_value_t = 20)]
    idle_seconds: u64,
    /// Print the figures as JSON.
    #[arg(long)]
    json: bool,
}
/// `--replicas`: 1 or 3.
fn parse_replicas(text: &str) -> Result<u8, String> {
    match text {
        "1" => Ok(1),
        "3" => Ok(3),
        _ => Err("give 1 (the single orchestrator) or 3 (also three raft replicas)".to_string()),
    }
}

/// Flags of `herd node`. Each also has an environment variable and a config
/// file key; precedence is flag > environment > file > default.
#[derive(Args, Debug, Default)]
pub struct NodeArgs {
    /// Node name: 2-64 lowercase letters, digits and hyphens. [env: HERD_NAME] [file: node.name]
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Cluster listen address. [env: HERD_LISTEN] [file: node.listen] [default: 127.0.0.1:7100]
    #[arg(long, value_name = "IP:PORT")]
    pub listen: Option<String>,
    /// Host name or IP peers dial to reach this node (required when listening on 0.0.0.0). [env: HERD_ADVERTISE] [file: node.advertise]
    #[arg(long, value_name = "HOST")]
    pub advertise: Option<String>,
    /// HTTP API listen address. [env: HERD_HTTP] [file: node.http] [default: 127.0.0.1:8100]
    #[arg(long, value_name = "IP:PORT")]
    pub http: Option<String>,
    /// A node to join through; repeat for several. [env: HERD_SEEDS, comma-separated] [file: node.seeds]
    #[arg(long = "seed", value_name = "HOST:PORT")]
    pub seeds: Vec<String>,
    /// Comma-separated roles: orchestrator, worker, monitor. [env: HERD_ROLES] [file: node.roles] [default: all three]
    #[arg(long, value_name = "ROLES")]
    pub roles: Option<String>,
    /// Worker slots on this node. [env: HERD_WORKERS] [file: node.workers] [default: 4]
    #[arg(long, value_name = "N")]
    pub workers: Option<String>,
    /// Shared cluster secret; required, no default. Prefer HERD_COOKIE: a flag's value is visible to every user of the machine in `ps`. [env: HERD_COOKIE] [file: node.cookie]
    #[arg(long, value_name = "SECRET")]
    pub cookie: Option<String>,
    /// TOML config file (supports ${VAR} and ${VAR:-default}). [env: HERD_CONFIG]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory for durable state; the orchestrator journals its tasks here. [env: HERD_DATA_DIR] [file: node.data_dir]
    #[arg(long = "data-dir", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Seconds a draining node (SIGTERM, herd drain) lets running tasks finish. [env: HERD_DRAIN_GRACE] [file: node.drain_grace_s] [default: 30]
    #[arg(long = "drain-grace", value_name = "SECONDS")]
    pub drain_grace: Option<String>,
    /// Deployment mode preset: static (fixed slots), development (2–5 workers), trusted-tester (5–50), production (10–1000). [env: HERD_MODE] [file: scaling.mode] [default: static]
    #[arg(long, value_name = "MODE")]
    pub mode: Option<String>,
    /// How the task book survives its node: single (one orchestrator, journaled with --data-dir) or raft (every orchestrator-role node holds a replica; a follower takes over). [env: HERD_REPLICATION] [file: cluster.replication] [default: single]
    #[arg(long, value_name = "MODE")]
    pub replication: Option<String>,
    /// An admin token for the HTTP API (more tokens, with roles and tenants: [[api.tokens]] in the config file). Prefer HERD_API_TOKEN: a flag's value shows in `ps`. [env: HERD_API_TOKEN]
    #[arg(long = "api-token", value_name = "TOKEN")]
    pub api_token: Option<String>,
    /// Serve the HTTP API without tokens on a non-loopback address (refused otherwise). [env: HERD_INSECURE_NO_AUTH=1]
    #[arg(long = "insecure-no-auth")]
    pub insecure_no_auth: bool,
    /// Validate the configuration, print it (secrets hidden) and exit.
    #[arg(long)]
    pub check_config: bool,
    #[command(flatten)]
    pub tls: tls::TlsArgs,
}

/// Runs the command line and returns the process exit code: 0 on success,
/// 1 on runtime failure, 2 on a usage or configuration error.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Before any TLS client or server is built (see install_default_crypto_provider).
    herd_actors::tls::install_default_crypto_provider();
    match cli.command {
        Command::Node(args) => node::run(*args),
        Command::Submit(args) => client::run(client::submit(args)),
        Command::Status(args) => client::run(client::status(args)),
        Command::Task(args) => client::run(client::task(args)),
        Command::Dlq(command) => client::run(client::dlq(command)),
        Command::Drain(args) => client::run(client::drain(args)),
        Command::Health(args) => client::run(client::health(args)),
        Command::Bench(args) => run_bench(args),
        Command::Token(command) => token::run(command),
        Command::Dev(command) => dev::run(command),
        Command::Certs(args) => certs::run(args),
    }
}

fn run_bench(args: BenchArgs) -> ExitCode {
    // A node embedded in the bench (n1) logs to stderr only when asked
    // (LOG_LEVEL or RUST_LOG), so that the figures stay readable.
    if (std::env::var_os("LOG_LEVEL").is_some() || std::env::var_os("RUST_LOG").is_some())
        && let Ok((format, filter)) = crate::telemetry::settings(&|name| std::env::var(name).ok())
    {
        crate::telemetry::init(format, filter, "bench");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime builds");
    match args.scenario.as_str() {
        "llm" => {
            let settings = crate::bench_llm::LlmBenchSettings {
                tasks: args.tasks.max(1),
                latency_samples: args.latency_samples.max(1),
                requests_per_minute: args.requests_per_minute,
                workers: args.workers.max(1),
            };
            report(
                &args,
                runtime.block_on(crate::bench_llm::run(settings)),
                crate::bench_llm::print,
            )
        }
        "failover" => report(
            &args,
            runtime.block_on(crate::bench_failover::run(
                args.rounds.max(1),
                usize::from(args.replicas),
                args.data_dir.as_deref(),
            )),
            |phases| {
                let title = if args.replicas == 3 {
                    format!(
                        "{}\n{}",
                        crate::bench_failover::TITLE,
                        crate::bench_leader::TITLE
                    )
                } else {
                    crate::bench_failover::TITLE.to_string()
                };
                crate::bench_failover::print_rounds(&title, phases, args.replicas == 3)
            },
        ),
        "idle" => report(
            &args,
            runtime.block_on(crate::bench_idle::run(
                &args.sizes,
                Duration::from_secs(args.idle_seconds.max(1)),
            )),
            |costs| crate::bench_idle::print(costs),
        ),
        "scaling" => report(
            &args,
            runtime.block_on(crate::bench_scaling::run(args.rounds.max(1))),
            |phases| crate::bench_failover::print(crate::bench_scaling::TITLE, phases),
        ),
        _ => {
            let settings = crate::bench::BenchSettings {
                tasks: args.tasks.max(1),
                batch: args.batch.max(1),
                workers: args.workers.max(1),
                latency_samples: args.latency_samples.max(1),
                submitters: args.submitters.max(1),
                data_dir: args.data_dir.clone(),
                replicas: usize::from(args.replicas),
                slot_credit: args.slot_credit,
                secure: args.tls && args.token,
            };
            report(
                &args,
                runtime.block_on(crate::bench::run(settings.clone())),
                |figures| crate::bench::print(&settings, figures),
            )
        }
    }
}

/// Prints a bench's figures (as JSON with `--json`) or its error.
fn report<T: serde::Serialize>(
    args: &BenchArgs,
    figures: anyhow::Result<T>,
    print: impl FnOnce(&T),
) -> ExitCode {
    match figures {
        Ok(figures) if args.json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&figures).expect("figures serialise")
            );
            ExitCode::SUCCESS
        }
        Ok(figures) => {
            print(&figures);
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("herd bench {}: {error:#}", args.scenario);
            ExitCode::FAILURE
        }
    }
}
