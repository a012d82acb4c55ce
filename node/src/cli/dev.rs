//! `herd dev`: development tools that are no part of a cluster.

use std::io::Write;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use tokio::signal::unix::{SignalKind, signal};

use crate::llm_stub::{LlmStub, StubSettings};

/// Development tools; not for production.
#[derive(Subcommand, Debug)]
pub enum DevCommand {
    /// Run a stand-in OpenAI-compatible LLM provider for development and
    /// tests. Never for production: answers are canned.
    ///
    /// Serves POST /v1/chat/completions (deterministic answers, one token
    /// per whitespace-separated word) and GET /v1/models, plus a control
    /// API: POST/GET/DELETE /stub/faults (inject 429/500/503/slow answers),
    /// GET /stub/stats, POST /stub/reset. Prints `llm-stub listening on
    /// http://ADDR` once bound and serves until SIGINT/SIGTERM.
    LlmStub(LlmStubArgs),
}

/// Flags of `herd dev llm-stub`.
#[derive(Args, Debug)]
pub struct LlmStubArgs {
    /// Address to listen on; port 0 picks a free one (the printed line says which).
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:8199")]
    listen: SocketAddr,
    /// Require `Authorization: Bearer KEY` on /v1/ requests (401 otherwise).
    #[arg(
        long,
        value_name = "KEY",
        env = "HERD_LLM_STUB_API_KEY",
        hide_env_values = true
    )]
    api_key: Option<String>,
    /// Admit at most N chat requests in any trailing 60 s; the rest get 429 with Retry-After.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    requests_per_minute: Option<u32>,
    /// Delay every chat answer (whatever its status) by this many milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    latency_ms: u64,
    /// Add up to this many milliseconds more, derived from the request (the same request always waits as long).
    #[arg(long, value_name = "MS", default_value_t = 0)]
    jitter_ms: u64,
}

/// Runs a `herd dev` command and returns the process exit code.
pub fn run(command: DevCommand) -> ExitCode {
    match command {
        DevCommand::LlmStub(args) => llm_stub(args),
    }
}

fn llm_stub(args: LlmStubArgs) -> ExitCode {
    let settings = StubSettings {
        api_key: args.api_key.filter(|key| !key.is_empty()),
        requests_per_minute: args.requests_per_minute.and_then(NonZeroU32::new),
        latency: Duration::from_millis(args.latency_ms),
        jitter: Duration::from_millis(args.jitter_ms),
    };
    // Two threads: the stub is light, and tests start it next to other
    // processes.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("herd dev llm-stub: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let stub = match LlmStub::spawn(args.listen, settings).await {
            Ok(stub) => stub,
            Err(error) => {
                eprintln!(
                    "herd dev llm-stub: cannot listen on {}: {error}; choose another address \
                     with --listen (--listen 127.0.0.1:0 picks a free port)",
                    args.listen
                );
                return ExitCode::FAILURE;
            }
        };
        // Handlers first: a script may send SIGTERM as soon as it reads the
        // address, and the default action would kill us without exit 0.
        let mut terminate = match signal(SignalKind::terminate()) {
            Ok(stream) => stream,
            Err(error) => return cannot_handle_signals(error),
        };
        let mut interrupt = match signal(SignalKind::interrupt()) {
            Ok(stream) => stream,
            Err(error) => return cannot_handle_signals(error),
        };
        // Exactly one line on stdout, flushed: scripts and tests read the
        // address from it (the real port when --listen asked for port 0).
        let mut stdout = std::io::stdout().lock();
        let printed = writeln!(stdout, "llm-stub listening on http://{}", stub.addr())
            .and_then(|()| stdout.flush());
        drop(stdout);
        if let Err(error) = printed {
            eprintln!("herd dev llm-stub: cannot write the address to stdout: {error}");
            return ExitCode::FAILURE;
        }
        let signal = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        eprintln!("herd dev llm-stub: {signal}, stopping");
        match stub.shutdown().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("herd dev llm-stub: {error}");
                ExitCode::FAILURE
            }
        }
    })
}

fn cannot_handle_signals(error: std::io::Error) -> ExitCode {
    eprintln!("herd dev llm-stub: cannot handle SIGTERM/SIGINT: {error}");
    ExitCode::FAILURE
}
