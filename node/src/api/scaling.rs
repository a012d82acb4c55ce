//! Rebalancing and autoscaling: decisions, the health report, and run-time
//! changes to weights and pool bounds (seed 004, "Outputs").

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use herd_protocol::AgentType;
use herd_protocol::messages::scaling::{
    AgentUpdate, ScalingDecision, ScalingUpdate, SystemHealthReport,
};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use herd_config::ApiRole;

use super::ApiState;
use super::auth::Caller;
use super::error::ApiError;
use super::extract::ApiPath;

/// Most decisions one request returns (the orchestrator keeps 100).
const MAX_DECISIONS: u32 = 100;

/// Query of `GET /v1/scaling/decisions`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionQuery {
    limit: Option<u32>,
}

/// `GET /v1/scaling/decisions?limit=N`: the most recent scaling decisions,
/// newest first (default 20). A run of "maintain" decisions shows once.
pub async fn decisions(
    State(state): State<ApiState>,
    caller: Caller,
    query: Result<Query<DecisionQuery>, QueryRejection>,
) -> Result<Json<Vec<ScalingDecision>>, ApiError> {
    caller.require(ApiRole::Read, "reading scaling decisions")?;
    let Query(query) = query.map_err(|error| {
        ApiError::bad_request(
            "invalid_query",
            format!("{}; accepted parameter: limit", error.body_text()),
        )
    })?;
    let limit = query.limit.unwrap_or(20);
    if limit == 0 || limit > MAX_DECISIONS {
        return Err(ApiError::bad_request(
            "invalid_limit",
            format!("limit={limit}; give 1 to {MAX_DECISIONS}"),
        ));
    }
    Ok(Json(state.node.scaling_decisions(limit).await?))
}

/// `GET /v1/health/report`: seed 004's SystemHealthReport.
pub async fn health_report(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<SystemHealthReport>, ApiError> {
    caller.require(ApiRole::Read, "reading the health report")?;
    Ok(Json(state.node.health_report().await?))
}

fn parse_body<T: DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    expected: &str,
) -> Result<T, ApiError> {
    let body = body.map_err(|error| ApiError::bad_request("unreadable_body", error.body_text()))?;
    serde_json::from_slice(&body).map_err(|error| {
        ApiError::bad_request(
            "malformed_json",
            format!("the body is not {expected} ({error})"),
        )
    })
}

/// `PUT /v1/agents/{type}` with `{"weight": 0.4, "pinned": true}` (both
/// optional). A new weight pins the type (the rebalancer leaves it alone)
/// unless `"pinned": false` is given; `{"pinned": false}` releases it.
/// Answered once the change is recorded in the task book (journaled, or
/// committed on a majority of replicas), so a failover or a restart keeps it.
pub async fn update_agent(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(agent_type): ApiPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require(ApiRole::Admin, "changing an agent type's weight")?;
    let update: AgentUpdate = parse_body(
        body,
        "an agent update; send {\"weight\": 0.0–1.0, \"pinned\": true|false}",
    )?;
    if update.weight.is_none() && update.pinned.is_none() {
        return Err(ApiError::invalid(
            "empty_update",
            "nothing to change; send {\"weight\": 0.0–1.0} and/or {\"pinned\": true|false}",
        ));
    }
    let agent_type = AgentType::new(&agent_type);
    match state.node.update_agent(agent_type.clone(), update).await? {
        Ok(()) => {
            let status = state.node.cluster().await?;
            let agent = status.agents.get(&agent_type);
            Ok(Json(json!({
                "agent_type": agent_type.as_str(),
                "weight": agent.map(|a| a.weight),
                "pinned": agent.map(|a| a.pinned),
                "workers": agent.map(|a| a.workers),
            })))
        }
        Err(rejection) => Err(ApiError::from(rejection)),
    }
}

/// `PUT /v1/scaling` with any of `min_workers`, `max_workers`,
/// `scale_up_threshold`, `scale_down_threshold`. Answered once recorded in
/// the task book, as `PUT /v1/agents/{type}`.
pub async fn update_scaling(
    State(state): State<ApiState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require(ApiRole::Admin, "changing the pool bounds")?;
    let update: ScalingUpdate = parse_body(
        body,
        "a scaling update; send any of min_workers, max_workers, scale_up_threshold, scale_down_threshold",
    )?;
    match state.node.update_scaling(update).await? {
        Ok(()) => Ok(Json(json!(state.node.cluster().await?.scaling))),
        Err(rejection) => Err(ApiError::from(rejection)),
    }
}
