use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use herd_protocol::NodeName;
use herd_protocol::messages::orchestrator::{ClusterStatus, DrainOutcome};
use serde_json::{Value, json};

use herd_config::ApiRole;

use super::ApiState;
use super::auth::Caller;
use super::error::ApiError;
use super::extract::ApiPath;

/// `GET /v1/cluster`; per-tenant figures (`tenants`) for admins only.
pub async fn status(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<ClusterStatus>, ApiError> {
    caller.require(ApiRole::Read, "reading the cluster summary")?;
    let mut status = state.node.cluster().await?;
    if !caller.is_admin() {
        status.tenants.clear();
    }
    Ok(Json(status))
}

/// `POST /v1/nodes/{name}/drain`: the node takes no new work, lets running
/// tasks finish within its grace period, hands back the rest, and leaves.
pub async fn drain(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(ApiRole::Admin, "draining a node")?;
    let name = NodeName::parse(&name).map_err(|error| {
        ApiError::bad_request(
            "invalid_node_name",
            format!("{name:?} is not a node name: {error}"),
        )
    })?;
    match state.node.drain_node(name.clone()).await? {
        DrainOutcome::Draining => Ok((
            StatusCode::ACCEPTED,
            Json(json!({ "node": name.as_str(), "state": "draining" })),
        )),
        DrainOutcome::UnknownNode => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "node_not_found",
            format!("no node {name} is up in the cluster; see GET /v1/cluster"),
        )),
        DrainOutcome::NoPool => Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_worker_pool",
            format!(
                "node {name} runs no worker pool, so there is nothing to drain; stop it with SIGTERM"
            ),
        )),
    }
}
