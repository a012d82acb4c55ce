//! `/v1/dead-letters`: tasks that failed for good, and retrying them.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use herd_protocol::messages::orchestrator::{RetryOutcome, TaskPage, TaskQuery};
use herd_protocol::{JsonText, TaskId, TaskState};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use herd_config::ApiRole;

use super::ApiState;
use super::auth::Caller;
use super::error::ApiError;
use super::extract::ApiPath;

/// Query of `GET /v1/dead-letters`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterQuery {
    agent_type: Option<String>,
    limit: Option<u32>,
    after: Option<String>,
}

/// `GET /v1/dead-letters?agent_type=&limit=&after=`: dead tasks, oldest
/// first, each with the error that killed it.
pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    query: Result<Query<DeadLetterQuery>, QueryRejection>,
) -> Result<Json<TaskPage>, ApiError> {
    caller.require(ApiRole::Read, "listing dead letters")?;
    let Query(query) = query.map_err(|error| {
        ApiError::bad_request(
            "invalid_query",
            format!(
                "{}; accepted parameters: agent_type, limit, after",
                error.body_text()
            ),
        )
    })?;
    let limit = query.limit.unwrap_or(100);
    if limit == 0 || limit > super::tasks::MAX_PAGE {
        return Err(ApiError::bad_request(
            "invalid_limit",
            format!("limit={limit}; give 1 to {}", super::tasks::MAX_PAGE),
        ));
    }
    let after = query
        .after
        .as_deref()
        .map(super::tasks::parse_id)
        .transpose()?;
    let page = state
        .node
        .list(TaskQuery {
            state: Some(TaskState::Dead),
            agent_type: query.agent_type.map(|t| herd_protocol::AgentType::new(&t)),
            limit,
            after,
            tenant: caller.list_scope(),
        })
        .await?;
    Ok(Json(page))
}

/// Body of a retry: optionally a replacement payload.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RetryRequest {
    payload: Option<Box<RawValue>>,
}

/// `POST /v1/dead-letters/{id}/retry`, with an optional body
/// `{"payload": ...}` to retry with a corrected payload (seed 000's "retry
/// with modifications"). The task is pending again with a fresh budget.
pub async fn retry(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require(ApiRole::Submit, "retrying a dead letter")?;
    let id: TaskId = super::tasks::parse_id(&id)?;
    super::tasks::owned_task(&state, &caller, id).await?;
    let body = body.map_err(|error| ApiError::bad_request("unreadable_body", error.body_text()))?;
    let payload = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let request: RetryRequest = serde_json::from_slice(&body).map_err(|error| {
            ApiError::bad_request("malformed_json", format!("the body is not a retry request ({error}); send nothing, or {{\"payload\": ...}} to replace the payload"))
        })?;
        request.payload.map(|raw| JsonText::from_raw(&raw))
    };
    if let Some(payload) = payload
        .as_ref()
        .filter(|p| p.len() > state.max_payload_bytes)
    {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "the new payload is {} bytes, over this cluster's limit of {} bytes",
                payload.len(),
                state.max_payload_bytes
            ),
        ));
    }
    match state.node.retry_dead_letter(id, payload).await? {
        RetryOutcome::Retried => Ok(Json(json!({ "id": id.to_string(), "state": "pending" }))),
        RetryOutcome::NotDead(task_state) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_dead",
            format!(
                "task {id} is {task_state}, not dead; only tasks in the dead-letter queue can be retried"
            ),
        )),
        RetryOutcome::NotFound => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "task_not_found",
            format!("no task {id}"),
        )),
    }
}
