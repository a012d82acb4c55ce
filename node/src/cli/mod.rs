//! The `herd` command line.

mod client;
mod node;

use std::path::PathBuf;
use std::process::ExitCode;

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
    Node(NodeArgs),
    /// Submit tasks through a node's HTTP API.
    Submit(client::SubmitArgs),
    /// Show the cluster: nodes, agent types, task counts.
    Status(client::StatusArgs),
    /// Show one task.
    Task(client::TaskArgs),
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
    /// Shared cluster secret; required, no default. [env: HERD_COOKIE] [file: node.cookie]
    #[arg(long, value_name = "SECRET")]
    pub cookie: Option<String>,
    /// TOML config file (supports ${VAR} and ${VAR:-default}). [env: HERD_CONFIG]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory for durable state. [env: HERD_DATA_DIR] [file: node.data_dir]
    #[arg(long = "data-dir", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Validate the configuration, print it (secrets hidden) and exit.
    #[arg(long)]
    pub check_config: bool,
}

/// Runs the command line and returns the process exit code: 0 on success,
/// 1 on runtime failure, 2 on a usage or configuration error.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Node(args) => node::run(args),
        Command::Submit(args) => client::run(client::submit(args)),
        Command::Status(args) => client::run(client::status(args)),
        Command::Task(args) => client::run(client::task(args)),
    }
}
