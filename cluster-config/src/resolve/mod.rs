//! Layering: flag > environment > config file > default, then validation.
//!
//! The `node.*` keys, which every layer can set, are resolved from one table
//! in [`node_keys`]; the other sections are set only in the file and each has
//! its own module.

mod agents;
mod api;
mod cluster;
mod http;
mod limits;
mod node_keys;
mod policy;
mod providers;
mod range_check;
mod scaling;
mod tasks;
mod tls;

use std::path::PathBuf;

use herd_protocol::messages::membership::Role;

use self::agents::resolve_agents;
use self::api::{resolve_api, resolve_tenants};
use self::cluster::{REPLICATION_ENV, REPLICATION_FLAG, resolve_cluster};
use self::http::resolve_http;
use self::limits::resolve_limits;
use self::node_keys::{ADVERTISE, LISTEN, WORKERS, resolve_node_keys};
use self::providers::resolve_providers;
use self::scaling::{MODE_ENV, MODE_FLAG, resolve_scaling};
use self::tasks::resolve_task_defaults;
use self::tls::resolve_tls;
use crate::environment::Environment;
use crate::error::{ConfigError, ConfigErrors};
use crate::file::{LoadedFile, load_file};
use crate::model::NodeConfig;
use crate::origin::Origin;

pub use self::node_keys::{DEFAULT_HTTP, DEFAULT_LISTEN, DEFAULT_WORKERS};

/// Values given on the command line (or by an embedding program through the
/// builder). `None` means "not given", so lower layers apply.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--name`.
    pub name: Option<String>,
    /// `--listen`.
    pub listen: Option<String>,
    /// `--advertise`.
    pub advertise: Option<String>,
    /// `--http`.
    pub http: Option<String>,
    /// `--seed`, repeatable.
    pub seeds: Option<Vec<String>>,
    /// `--roles`, comma-separated.
    pub roles: Option<String>,
    /// `--workers`.
    pub workers: Option<String>,
    /// `--cookie`.
    pub cookie: Option<String>,
    /// `--config`.
    pub config: Option<PathBuf>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--drain-grace` (seconds).
    pub drain_grace: Option<String>,
    /// `--mode`: the deployment-mode preset.
    pub mode: Option<String>,
    /// `--replication`.
    pub replication: Option<String>,
    /// `--api-token`: an admin token for the HTTP API.
    pub api_token: Option<String>,
    /// `--insecure-no-auth`: serve an API without tokens beyond loopback.
    pub insecure_no_auth: bool,
    /// `--tls-*` and `--cluster-tls-*`: certificate and key paths.
    pub tls: crate::TlsOverrides,
}

/// Builds a validated [`NodeConfig`] from command-line overrides, the
/// environment, and the config file they name. Every problem is reported,
/// each with where the value came from and how to fix it.
pub fn resolve(overrides: &Overrides, env: &Environment) -> Result<NodeConfig, ConfigErrors> {
    let file = match config_path(overrides, env) {
        Some((path, origin)) => Some(load_file(&path, origin, env)?),
        None => None,
    };
    resolve_with_file(overrides, env, file)
}

fn config_path(overrides: &Overrides, env: &Environment) -> Option<(PathBuf, Origin)> {
    if let Some(path) = &overrides.config {
        return Some((path.clone(), Origin::Flag("--config")));
    }
    env.get_non_empty("HERD_CONFIG")
        .map(|path| (PathBuf::from(path), Origin::Env("HERD_CONFIG")))
}

/// [`resolve`] with an already-loaded file (or none).
pub fn resolve_with_file(
    overrides: &Overrides,
    env: &Environment,
    file: Option<LoadedFile>,
) -> Result<NodeConfig, ConfigErrors> {
    let mut errors = Vec::new();
    let node = resolve_node_keys(overrides, env, file.as_ref(), &mut errors);

    // A node must say how peers reach it when it listens on every interface.
    let advertise_host = match (&node.listen, node.advertise) {
        (_, Some(host)) => Some(host),
        (Some(addr), None) if !addr.ip().is_unspecified() => Some(addr.ip().to_string()),
        (Some(addr), None) => {
            errors.push(ConfigError::new(
                node.origins.get(LISTEN).cloned().unwrap_or(Origin::Default),
                ADVERTISE,
                format!("is required because the listen address {addr} does not tell peers how to reach this node; set --advertise, HERD_ADVERTISE or node.advertise to a host name or IP they can dial"),
            ));
            None
        }
        (None, None) => None,
    };

    let limits = resolve_limits(file.as_ref(), &mut errors);
    let http_server = resolve_http(file.as_ref(), &mut errors);
    let tasks = resolve_task_defaults(file.as_ref(), &mut errors);
    let replication = overrides
        .replication
        .clone()
        .map(|m| (m, Origin::Flag(REPLICATION_FLAG)))
        .or_else(|| {
            env.get_non_empty(REPLICATION_ENV)
                .map(|m| (m, Origin::Env(REPLICATION_ENV)))
        });
    let cluster = resolve_cluster(file.as_ref(), replication, &mut errors);
    let providers = resolve_providers(file.as_ref(), &tasks, &mut errors);
    let agents = resolve_agents(file.as_ref(), &tasks, &mut errors);
    let mode = overrides
        .mode
        .clone()
        .map(|m| (m, Origin::Flag(MODE_FLAG)))
        .or_else(|| {
            env.get_non_empty(MODE_ENV)
                .map(|m| (m, Origin::Env(MODE_ENV)))
        });
    let scaling = resolve_scaling(file.as_ref(), mode, &mut errors);
    let api = resolve_api(
        overrides.api_token.as_deref(),
        overrides.insecure_no_auth,
        env,
        file.as_ref(),
        node.http.map(|addr| {
            (
                addr,
                node.origins
                    .get("node.http")
                    .cloned()
                    .unwrap_or(Origin::Default),
            )
        }),
        &mut errors,
    );
    let tenants = resolve_tenants(file.as_ref(), &mut errors);
    let tls = resolve_tls(&overrides.tls, env, file.as_ref(), &mut errors);

    let roles = node.roles.unwrap_or_default();
    let workers = match (node.workers, roles.contains(&Role::Worker)) {
        (Some(0), true) => {
            let origin = node
                .origins
                .get(WORKERS)
                .cloned()
                .unwrap_or(Origin::Default);
            errors.push(ConfigError::new(origin, WORKERS, "is 0 but the node has the worker role; give it at least 1 worker slot, or drop `worker` from the roles"));
            0
        }
        (Some(count), true) => count,
        (_, false) => 0,
        (None, true) => 0,
    };

    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    // Every `Option` below is `Some`: a `None` always pushed an error above.
    Ok(NodeConfig {
        name: node.name.expect("name validated"),
        listen: node.listen.expect("listen validated"),
        advertise_host: advertise_host.expect("advertise validated"),
        http: node.http.expect("http validated"),
        seeds: node.seeds.unwrap_or_default(),
        roles,
        workers,
        cookie: node.cookie.expect("cookie validated"),
        data_dir: node.data_dir,
        drain_grace: node.drain_grace.expect("drain grace validated"),
        config_file: file.as_ref().map(|f| f.path().to_path_buf()),
        limits,
        http_server,
        tasks,
        cluster,
        agents,
        scaling,
        providers,
        api,
        tenants,
        tls,
        origins: node.origins,
    })
}
