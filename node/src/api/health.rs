//! Probes: `/live` (the process answers), `/startup` (initialisation done),
//! `/ready` (joined the cluster and the orchestrator is reachable) and
//! `/health` (a JSON report of each check).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use herd_protocol::UnixMillis;
use std::time::Duration;

use herd_protocol::messages::membership::Role;
use herd_protocol::messages::orchestrator::MemberState;
use herd_protocol::messages::scaling::OverallHealth;
use serde_json::{Value, json};

use super::ApiState;

/// `GET /live`: 200 while the process serves HTTP. Never depends on peers.
pub async fn live() -> Json<Value> {
    Json(json!({ "status": "alive" }))
}

/// `GET /startup`: 200 once the node finished starting (the API only serves
/// after that, so answering means started).
pub async fn startup(State(state): State<ApiState>) -> Json<Value> {
    Json(json!({ "status": "started", "node": state.node.config().name.as_str() }))
}

/// One probe check.
struct Check {
    name: &'static str,
    /// `healthy`, `degraded` (works, with reduced capacity) or `unhealthy`.
    status: &'static str,
    message: String,
}

impl Check {
    fn new(name: &'static str, healthy: bool, message: String) -> Self {
        Check {
            name,
            status: if healthy { "healthy" } else { "unhealthy" },
            message,
        }
    }

    fn is_unhealthy(&self) -> bool {
        self.status == "unhealthy"
    }
}

/// `GET /ready`: 200 once initial discovery is done and the orchestrator is
/// reachable (on the orchestrator's node: its state is loaded, since it only
/// joins its process group after recovery); 503 otherwise, and while
/// draining.
pub async fn ready(State(state): State<ApiState>) -> (StatusCode, Json<Value>) {
    let mut checks = checks(&state);
    if state.draining.load(std::sync::atomic::Ordering::SeqCst) {
        checks.push(Check::new(
            "draining",
            false,
            "the node is draining and takes no new traffic".to_string(),
        ));
    }
    let ready = !checks.iter().any(Check::is_unhealthy);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(
            json!({ "status": if ready { "ready" } else { "not_ready" }, "checks": as_object(&checks) }),
        ),
    )
}

/// `GET /health`: every check with a message (the deployment guide's
/// format): cluster membership, orchestrator, workers, task processing. 503
/// when a check is unhealthy; `degraded` (200) when the cluster works with
/// reduced capacity.
pub async fn health(State(state): State<ApiState>) -> (StatusCode, Json<Value>) {
    let mut checks = checks(&state);
    if let Some(workers) = worker_check(&state) {
        checks.push(workers);
    }
    checks.push(processing_check(&state).await);
    let overall = if checks.iter().any(Check::is_unhealthy) {
        "unhealthy"
    } else if checks.iter().any(|c| c.status == "degraded") {
        "degraded"
    } else {
        "healthy"
    };
    let status = if overall == "unhealthy" {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let body = json!({
        "status": overall,
        "timestamp": UnixMillis::now().0 / 1000,
        "node": state.node.config().name.as_str(),
        "version": herd_protocol::HERD_VERSION,
        "uptime_seconds": state.started.elapsed().as_secs(),
        "checks": as_object(&checks),
    });
    (status, Json(body))
}

fn checks(state: &ApiState) -> Vec<Check> {
    let view = state.node.view();
    let peers_up = view
        .peers
        .values()
        .filter(|peer| peer.state == MemberState::Up)
        .count();
    let membership = if view.discovery_complete {
        Check::new(
            "cluster_membership",
            true,
            format!("joined; {peers_up} peer(s) up"),
        )
    } else {
        Check::new(
            "cluster_membership",
            false,
            "still contacting seeds".to_string(),
        )
    };
    let orchestrator = match (&view.orchestrator, state.node.orchestrator_reachable()) {
        (Some(member), true) => Check::new(
            "orchestrator",
            true,
            format!("orchestrator {} reachable", member.name),
        ),
        (Some(member), false) => Check::new(
            "orchestrator",
            false,
            format!("orchestrator {} known but not yet reachable", member.name),
        ),
        (None, _) => Check::new(
            "orchestrator",
            false,
            "no orchestrator in the cluster".to_string(),
        ),
    };
    vec![membership, orchestrator]
}

/// On a worker node: its pool actor is running.
fn worker_check(state: &ApiState) -> Option<Check> {
    if !state.node.config().has_role(Role::Worker) {
        return None;
    }
    let running = state.node.pool_running();
    Some(if running {
        Check::new("workers", true, "worker pool running".to_string())
    } else {
        Check::new(
            "workers",
            false,
            "the worker pool is not running (restarting, or stopped after repeated failures; see the log)"
                .to_string(),
        )
    })
}

/// The cluster makes progress: from the orchestrator's health report.
async fn processing_check(state: &ApiState) -> Check {
    let name = "task_processing";
    match tokio::time::timeout(Duration::from_secs(2), state.node.health_report()).await {
        Ok(Ok(report)) => {
            let queue = &report.queue_health;
            let pool = &report.worker_pool_health;
            let message = format!(
                "{} pending (oldest {} s){}; {} of {} worker slots healthy, {:.0} % busy",
                queue.total_pending_tasks,
                queue.oldest_task_age_seconds,
                queue
                    .bottleneck_agent
                    .as_ref()
                    .map_or(String::new(), |t| format!(", bottleneck {t}")),
                pool.healthy_workers,
                pool.total_workers,
                pool.utilization_percentage
            );
            Check {
                name,
                status: match report.overall_health {
                    OverallHealth::Healthy => "healthy",
                    OverallHealth::Degraded => "degraded",
                    OverallHealth::Critical => "unhealthy",
                },
                message,
            }
        }
        Ok(Err(error)) => Check::new(
            name,
            false,
            format!("no report from the orchestrator: {error}"),
        ),
        Err(_) => Check::new(
            name,
            false,
            "the orchestrator did not answer within 2 s".to_string(),
        ),
    }
}

fn as_object(checks: &[Check]) -> Value {
    let now = UnixMillis::now().0 / 1000;
    Value::Object(
        checks
            .iter()
            .map(|check| {
                (
                    check.name.to_string(),
                    json!({ "status": check.status, "message": check.message, "last_check": now }),
                )
            })
            .collect(),
    )
}
