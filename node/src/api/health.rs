//! Probes: `/live` (the process answers), `/startup` (initialisation done),
//! `/ready` (joined the cluster and the orchestrator is reachable) and
//! `/health` (a JSON report of each check).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use herd_actors::orchestrator::find_orchestrator;
use herd_protocol::UnixMillis;
use herd_protocol::messages::orchestrator::MemberState;
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

/// `GET /ready`: 200 once initial discovery is done and the orchestrator is
/// reachable; 503 otherwise.
pub async fn ready(State(state): State<ApiState>) -> (StatusCode, Json<Value>) {
    let mut checks = checks(&state);
    if state.draining.load(std::sync::atomic::Ordering::SeqCst) {
        checks.push((
            "draining",
            false,
            "the node is draining and takes no new traffic".to_string(),
        ));
    }
    let ready = checks.iter().all(|(_, healthy, _)| *healthy);
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

/// `GET /health`: every check with a message (deployment guide's format).
pub async fn health(State(state): State<ApiState>) -> (StatusCode, Json<Value>) {
    let checks = checks(&state);
    let healthy = checks.iter().all(|(_, ok, _)| *ok);
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if healthy { "healthy" } else { "unhealthy" },
        "timestamp": UnixMillis::now().0 / 1000,
        "node": state.node.config().name.as_str(),
        "uptime_seconds": state.started.elapsed().as_secs(),
        "checks": as_object(&checks),
    });
    (status, Json(body))
}

fn checks(state: &ApiState) -> Vec<(&'static str, bool, String)> {
    let view = state.node.view();
    let peers_up = view
        .peers
        .values()
        .filter(|peer| peer.state == MemberState::Up)
        .count();
    let membership = if view.discovery_complete {
        (true, format!("joined; {peers_up} peer(s) up"))
    } else {
        (false, "still contacting seeds".to_string())
    };
    let orchestrator = match (&view.orchestrator, find_orchestrator(&view)) {
        (Some(member), Some(_)) => (true, format!("orchestrator {} reachable", member.name)),
        (Some(member), None) => (
            false,
            format!("orchestrator {} known but not yet reachable", member.name),
        ),
        (None, _) => (false, "no orchestrator in the cluster".to_string()),
    };
    vec![
        ("cluster_membership", membership.0, membership.1),
        ("orchestrator", orchestrator.0, orchestrator.1),
    ]
}

fn as_object(checks: &[(&'static str, bool, String)]) -> Value {
    let now = UnixMillis::now().0 / 1000;
    Value::Object(
        checks
            .iter()
            .map(|(name, ok, message)| {
                (name.to_string(), json!({ "status": if *ok { "healthy" } else { "unhealthy" }, "message": message, "last_check": now }))
            })
            .collect(),
    )
}
