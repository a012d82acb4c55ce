//! `herd node`: resolve the configuration, start the node, serve the API,
//! stop cleanly on SIGTERM/SIGINT.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;

use herd_actors::HerdNode;
use herd_actors::runtime::NodeEvent;
use herd_config::{Environment, NodeConfig, Overrides};
use tokio::net::TcpListener;
use tracing::{error, info};

use super::NodeArgs;
use crate::api::{ApiState, router};
use crate::telemetry;
use crate::trace_export::TraceExport;

const USAGE_ERROR: u8 = 2;

pub fn run(args: NodeArgs) -> ExitCode {
    let env = Environment::from_process();
    let overrides = Overrides {
        name: args.name,
        listen: args.listen,
        advertise: args.advertise,
        http: args.http,
        seeds: (!args.seeds.is_empty()).then_some(args.seeds),
        roles: args.roles,
        workers: args.workers,
        cookie: args.cookie,
        config: args.config,
        data_dir: args.data_dir,
        drain_grace: args.drain_grace,
        mode: args.mode,
        replication: args.replication,
        api_token: args.api_token,
        insecure_no_auth: args.insecure_no_auth,
        tls: args.tls.into_overrides(),
    };
    let config = match herd_config::resolve(&overrides, &env) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("herd: {errors}");
            return ExitCode::from(USAGE_ERROR);
        }
    };
    let (format, filter) = match telemetry::settings(&|name| env.get(name)) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("herd: {error}");
            return ExitCode::from(USAGE_ERROR);
        }
    };
    let api_tls = match super::tls::load(&config) {
        Ok(api_tls) => api_tls,
        Err(errors) => {
            eprintln!("herd: {errors}");
            return ExitCode::from(USAGE_ERROR);
        }
    };
    if args.check_config {
        print_config(&config);
        return ExitCode::SUCCESS;
    }
    telemetry::init(format, filter, config.name.as_str());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("herd: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve(config, api_tls))
}

async fn serve(config: NodeConfig, api_tls: Option<Arc<rustls::ServerConfig>>) -> ExitCode {
    // Bind the API first: a port clash should stop the node before it joins.
    let listener = match TcpListener::bind(config.http).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!(
                "herd: cannot listen for HTTP on {}: {error}; choose another address with --http / HERD_HTTP",
                config.http
            );
            return ExitCode::FAILURE;
        }
    };
    let http_addr = config.http;
    let metrics = crate::metrics_exporter::install(config.name.as_str());
    let env = Environment::from_process();
    let traces = match TraceExport::from_env(&|name| env.get(name), config.name.as_str()) {
        Ok(traces) => traces,
        Err(error) => {
            eprintln!("herd: {error}");
            return ExitCode::from(USAGE_ERROR);
        }
    };
    if traces.is_some() {
        info!("exporting traces over OTLP");
    }
    let mut node = match HerdNode::start(config, BTreeMap::new()).await {
        Ok(node) => node,
        Err(error) if error.is_configuration() => {
            eprintln!("herd: {error}");
            return ExitCode::from(USAGE_ERROR);
        }
        Err(error) => {
            eprintln!("herd: {error}");
            return ExitCode::FAILURE;
        }
    };
    let api = ApiState::new(node.handle()).with_metrics(metrics);
    let draining = api.draining.clone();
    let app = router(api);
    let http_settings = node.handle().config().http_server.clone();
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let scheme = if api_tls.is_some() { "https" } else { "http" };
    let tls = api_tls.map(tokio_rustls::TlsAcceptor::from);
    let server = tokio::spawn(async move {
        crate::http_server::serve_with_tls(listener, app, &http_settings, tls, async {
            let _ = http_stopped.await;
        })
        .await
    });
    info!(http = %http_addr, %scheme, "api listening");

    let drain_grace = node.handle().config().drain_grace;
    let exit = tokio::select! {
        signal = shutdown_signal() => {
            info!(signal, grace_s = drain_grace.as_secs(), "draining before stopping (send the signal again to stop at once)");
            draining.store(true, std::sync::atomic::Ordering::SeqCst);
            tokio::select! {
                () = node.drain_and_stop(drain_grace) => {}
                signal = shutdown_signal() => info!(signal, "stopping without waiting for the drain"),
            }
            ExitCode::SUCCESS
        }
        event = node.stopped() => match event {
            NodeEvent::Drained => {
                info!("drained on request; leaving the cluster");
                draining.store(true, std::sync::atomic::Ordering::SeqCst);
                node.drain_and_stop(std::time::Duration::ZERO).await;
                ExitCode::SUCCESS
            }
            NodeEvent::Fatal(fatal) => {
                error!(%fatal, "stopping");
                eprintln!("herd: {fatal}");
                node.shutdown().await;
                if fatal.is_configuration() { ExitCode::from(USAGE_ERROR) } else { ExitCode::FAILURE }
            }
        }
    };
    let _ = stop_http.send(());
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), server).await;
    if let Some(traces) = traces {
        // The batch exporter blocks while it flushes.
        let _ = tokio::task::spawn_blocking(move || traces.shutdown()).await;
    }
    exit
}

/// Resolves on SIGTERM or SIGINT, naming the signal.
async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
    let mut interrupt = signal(SignalKind::interrupt()).expect("SIGINT handler installs");
    tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    }
}

fn print_config(config: &NodeConfig) {
    println!("name       = {}", config.name);
    println!("listen     = {}", config.listen);
    println!("advertise  = {}", config.advertise_addr());
    println!("http       = {}", config.http);
    println!("seeds      = {:?}", config.seeds);
    println!(
        "roles      = {}",
        config
            .roles
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(",")
    );
    println!("workers    = {}", config.workers);
    println!("cookie     = {}", config.cookie);
    println!(
        "data_dir   = {}",
        config
            .data_dir
            .as_ref()
            .map_or("(none: in memory)".to_string(), |p| p.display().to_string())
    );
    let tls = &config.tls;
    match &tls.api {
        Some(files) => println!(
            "tls        = api https: cert {} · key {}",
            files.cert.path.display(),
            files.key.path.display()
        ),
        None => println!("tls        = api plain http"),
    }
    match &tls.cluster {
        Some(files) => println!(
            "             cluster mutual TLS: cert {} · key {} · ca {}",
            files.identity.cert.path.display(),
            files.identity.key.path.display(),
            files.ca.path.display()
        ),
        None => println!("             cluster plain text"),
    }
    for (key, origin) in &config.origins {
        println!("  {key:<15} from {origin}");
    }
    let api = &config.api;
    if api.tokens.is_empty() {
        println!(
            "api        = open, no tokens{}",
            if api.insecure_no_auth {
                " (--insecure-no-auth)"
            } else {
                ""
            }
        );
    } else {
        let tokens: Vec<String> = api
            .tokens
            .iter()
            .map(|t| format!("{} ({}, tenant {})", t.name, t.role.as_str(), t.tenant))
            .collect();
        println!(
            "api        = tokens: {} · /metrics {} · /health {}",
            tokens.join(", "),
            if api.open_metrics {
                "open"
            } else {
                "admin token"
            },
            if api.open_health { "open" } else { "any token" }
        );
    }
    let s = &config.scaling;
    println!(
        "scaling    = mode {} · {}–{} workers · up {} / down {} · interval {} ms · stabilization {} s · rebalance {} · autoscale {} · worker_timeout {} · llm calls/node {} · slot credit {}–{}",
        s.mode.as_str(),
        s.min_workers,
        s.max_workers,
        s.scale_up_threshold,
        s.scale_down_threshold,
        s.interval.as_millis(),
        s.stabilization.as_secs(),
        s.rebalance,
        s.autoscale,
        s.worker_timeout
            .map_or("none".to_string(), |t| format!("{} s", t.as_secs())),
        s.max_concurrent_llm_calls,
        s.slot_credit,
        s.max_slot_credit
    );
    for (agent_type, agent) in &config.agents {
        println!(
            "agent {agent_type}: weight {} handler {}{}",
            agent.weight,
            agent.handler.kind(),
            if agent.llm { " (calls an LLM)" } else { "" }
        );
    }
}
