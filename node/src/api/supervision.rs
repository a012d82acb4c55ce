//! `GET /v1/supervision`: the supervision tree of the whole cluster, and the
//! test hook that makes this node's pool stuck (routed only when the process
//! runs with `HERD_TEST_HOOKS=1`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use herd_config::ApiRole;
use herd_protocol::messages::supervision::SupervisionTree;
use serde_json::{Value, json};

use super::ApiState;
use super::auth::Caller;
use super::error::ApiError;

/// `GET /v1/supervision`: which actor runs where, who watches and who
/// restarts it, its restarts and last failure, for every up node.
pub async fn tree(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<SupervisionTree>, ApiError> {
    caller.require(ApiRole::Read, "reading the supervision tree")?;
    Ok(Json(state.node.supervision().await))
}

/// `POST /v1/test-hooks/stuck-pool` (test hook; absent from normal
/// deployments): this node's pool blocks its mailbox until it is killed.
pub async fn make_pool_stuck(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(ApiRole::Admin, "using a test hook")?;
    if state.node.test_hook_block_pool() {
        Ok((StatusCode::ACCEPTED, Json(json!({ "pool": "stuck" }))))
    } else {
        Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_worker_pool",
            "this node runs no worker pool (or test hooks are off)".to_string(),
        ))
    }
}

/// `POST /v1/test-hooks/stuck-orchestrator` (test hook; absent from normal
/// deployments): this node's orchestrator blocks its mailbox until killed.
pub async fn make_orchestrator_stuck(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(ApiRole::Admin, "using a test hook")?;
    if state.node.test_hook_block_orchestrator() {
        Ok((
            StatusCode::ACCEPTED,
            Json(json!({ "orchestrator": "stuck" })),
        ))
    } else {
        Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_orchestrator_here",
            "this node runs no orchestrator (or test hooks are off)".to_string(),
        ))
    }
}
