use axum::Json;
use axum::extract::State;
use herd_protocol::messages::orchestrator::ClusterStatus;

use super::ApiState;
use super::error::ApiError;

/// `GET /v1/cluster`.
pub async fn status(State(state): State<ApiState>) -> Result<Json<ClusterStatus>, ApiError> {
    Ok(Json(state.node.cluster().await?))
}
