//! The HTTP API every node serves. Requests for the orchestrator are
//! forwarded to it over the cluster, so any node's API works.
//!
//! Handlers are short: parsing and validation live in [`tasks`]' request
//! types, error mapping in [`error::ApiError`]. Every error is JSON: handlers
//! and [`extract`] answer `ApiError`s, and [`json_errors`] rewrites whatever
//! axum answers by itself (405, rejections).

pub mod auth;
mod cluster;
mod dead_letters;
pub mod error;
mod extract;
mod health;
mod json_errors;
mod observability;
mod scaling;
mod supervision;
mod tasks;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{MethodRouter, get, post, put};
use herd_actors::NodeHandle;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};

/// What every handler can reach.
#[derive(Clone)]
pub struct ApiState {
    /// The node's handle to the orchestrator.
    pub node: NodeHandle,
    /// Largest accepted payload, in bytes.
    pub max_payload_bytes: usize,
    /// When the process started.
    pub started: Instant,
    /// Set while the node drains: `/ready` answers 503 so traffic moves away.
    pub draining: Arc<AtomicBool>,
    /// Renders `/metrics` (`None` when another recorder is installed).
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// The tokens the API accepts.
    pub auth: Arc<auth::Authenticator>,
}

impl ApiState {
    /// State for a node's API.
    pub fn new(node: NodeHandle) -> Self {
        let max_payload_bytes = node.config().limits.max_payload_bytes;
        let auth = Arc::new(auth::Authenticator::new(&node.config().api));
        ApiState {
            auth,
            node,
            max_payload_bytes,
            started: Instant::now(),
            draining: Arc::new(AtomicBool::new(false)),
            metrics: None,
        }
    }

    /// Serves `/metrics` from `handle`.
    pub fn with_metrics(
        mut self,
        handle: Option<metrics_exporter_prometheus::PrometheusHandle>,
    ) -> Self {
        self.metrics = handle;
        self
    }
}

/// Largest request body: a batch of tasks may hold many payloads, but no
/// single request may pin unbounded memory.
pub const MAX_REQUEST_BODY_BYTES: usize = 64 * 1024 * 1024;

/// The API routes. Every request is authenticated first ([`auth`]: 401
/// without a token when tokens are configured, 415 for a `POST`/`PUT` that
/// is not JSON). Every request must be answered within the configured
/// request timeout (`[http] request_timeout_s`; `GET /v1/tasks/{id}` gets
/// its longest `?wait=` on top) or it is answered 408 `request_timeout`; a
/// body that sends no data for `body_timeout_s` is answered 408
/// `body_timeout`.
pub fn router(state: ApiState) -> Router {
    let http = state.node.config().http_server.clone();
    let routes = RouteTable::new(http.request_timeout)
        .route("/v1/tasks", post(tasks::submit).get(tasks::list))
        // A long-poll may wait up to its cap before it answers.
        .long_poll("/v1/tasks/{id}", get(tasks::get_one), tasks::MAX_WAIT)
        .route("/v1/tasks/{id}/cancel", post(tasks::cancel))
        .route("/v1/cluster", get(cluster::status))
        .route("/v1/supervision", get(supervision::tree))
        .route("/v1/nodes/{name}/drain", post(cluster::drain))
        .route("/v1/dead-letters", get(dead_letters::list))
        .route("/v1/dead-letters/{id}/retry", post(dead_letters::retry))
        .route("/v1/scaling", put(scaling::update_scaling))
        .route("/v1/scaling/decisions", get(scaling::decisions))
        .route("/v1/agents/{agent_type}", put(scaling::update_agent))
        .route("/v1/health/report", get(scaling::health_report))
        .route("/live", get(health::live))
        .route("/ready", get(health::ready))
        .route("/startup", get(health::startup))
        .route("/health", get(health::health))
        .route("/metrics", get(observability::metrics));
    // Only a process started with HERD_TEST_HOOKS=1 routes the hook; any
    // other answers 404 as for every unknown path.
    let routes = if herd_actors::runtime::test_hooks::enabled() {
        routes
            .route(
                "/v1/test-hooks/stuck-pool",
                post(supervision::make_pool_stuck),
            )
            .route(
                "/v1/test-hooks/stuck-orchestrator",
                post(supervision::make_orchestrator_stuck),
            )
    } else {
        routes
    };
    let paths: Arc<[&'static str]> = routes.paths.into();
    let api = routes
        .router
        .fallback(move |uri: axum::http::Uri| {
            let paths = paths.clone();
            async move { error::not_found(uri.path(), &paths) }
        })
        .layer(axum::middleware::from_fn(auth::require_json))
        .layer(axum::middleware::from_fn_with_state(
            state.auth.clone(),
            auth::authenticate,
        ))
        .layer(axum::middleware::from_fn(observability::track_requests))
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BODY_BYTES))
        .layer(RequestBodyTimeoutLayer::new(http.body_timeout))
        .with_state(state);
    // A router's layers wrap each route, inside the step that adds `Allow`
    // to a 405; wrapping the whole router lets json_errors see it.
    Router::new()
        .fallback_service(api)
        .layer(axum::middleware::from_fn(json_errors::json_errors))
}

/// A router that remembers the paths it serves, so the 404 answer lists
/// exactly the routes that exist, and that gives every route the request
/// timeout.
struct RouteTable {
    router: Router<ApiState>,
    paths: Vec<&'static str>,
    request_timeout: Duration,
}

impl RouteTable {
    fn new(request_timeout: Duration) -> Self {
        RouteTable {
            router: Router::new(),
            paths: Vec::new(),
            request_timeout,
        }
    }

    fn route(self, path: &'static str, handlers: MethodRouter<ApiState>) -> Self {
        self.long_poll(path, handlers, Duration::ZERO)
    }

    /// A route whose handler may wait up to `wait` before it answers: its
    /// timeout is the request timeout plus `wait`.
    fn long_poll(
        mut self,
        path: &'static str,
        handlers: MethodRouter<ApiState>,
        wait: Duration,
    ) -> Self {
        let timeout = TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            self.request_timeout + wait,
        );
        self.router = self.router.route(path, handlers.layer(timeout));
        self.paths.push(path);
        self
    }
}
