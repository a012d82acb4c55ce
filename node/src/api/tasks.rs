//! `/v1/tasks`: submit, read, list, cancel.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use herd_protocol::defaults::{DEFAULT_RETRY_FACTOR, DEFAULT_RETRY_INITIAL_S, DEFAULT_RETRY_MAX_S};
use herd_protocol::limits::{MAX_CONFIGURABLE_PAYLOAD_BYTES, MIB};
use herd_protocol::messages::orchestrator::{CancelOutcome, TaskPage, TaskQuery};
use herd_protocol::{
    AgentType, JsonText, Priority, RetrySpec, TaskId, TaskSpec, TaskState, TaskView,
};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use herd_config::ApiRole;

use super::ApiState;
use super::auth::Caller;
use super::error::ApiError;
use super::extract::ApiPath;

/// One task in a submission body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskRequest {
    agent_type: String,
    payload: Box<RawValue>,
    priority: Option<i64>,
    timeout_s: Option<i64>,
    max_attempts: Option<i64>,
    idempotency_key: Option<String>,
    retry: Option<RetryRequest>,
}

/// A task's own backoff, as JSON: `{"backoff": "exponential", "initial_s",
/// "factor", "max_s"}` or `{"backoff": "linear", "delay_s"}`.
#[derive(Deserialize)]
#[serde(tag = "backoff", rename_all = "snake_case", deny_unknown_fields)]
enum RetryRequest {
    Exponential {
        #[serde(default = "default_initial_s")]
        initial_s: f64,
        #[serde(default = "default_factor")]
        factor: f64,
        #[serde(default = "default_max_s")]
        max_s: f64,
    },
    Linear {
        delay_s: f64,
    },
}

// serde's `default` takes a function, not a constant.
fn default_initial_s() -> f64 {
    DEFAULT_RETRY_INITIAL_S
}
fn default_factor() -> f64 {
    DEFAULT_RETRY_FACTOR
}
fn default_max_s() -> f64 {
    DEFAULT_RETRY_MAX_S
}

impl TaskRequest {
    /// The task as `tenant` submits it.
    fn into_spec(
        self,
        index: usize,
        max_payload_bytes: usize,
        trace_context: Option<String>,
        tenant: &herd_protocol::Tenant,
    ) -> Result<TaskSpec, ApiError> {
        let at = |field: &str| format!("task {index}: {field}");
        if self.agent_type.trim().is_empty() {
            return Err(ApiError::invalid(
                "invalid_field",
                format!("{} is empty; name the agent type to run", at("agent_type")),
            ));
        }
        let payload_bytes = self.payload.get().len();
        if payload_bytes > max_payload_bytes {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!(
                    "{} is {payload_bytes} bytes, over this cluster's limit of {max_payload_bytes} bytes; send a reference (a URL or key) instead of the data, or raise limits.max_payload_bytes (at most {} MiB)",
                    at("payload"),
                    MAX_CONFIGURABLE_PAYLOAD_BYTES / MIB,
                ),
            ));
        }
        let priority = match self.priority {
            None => Priority::DEFAULT,
            Some(level) => u8::try_from(level)
                .ok()
                .and_then(Priority::new)
                .ok_or_else(|| {
                    ApiError::invalid(
                        "invalid_field",
                        format!(
                            "{} is {level}; give 0 (lowest) to 9 (highest)",
                            at("priority")
                        ),
                    )
                })?,
        };
        let positive = |field: &str, value: Option<i64>| -> Result<Option<u32>, ApiError> {
            match value {
                None => Ok(None),
                Some(v) if v >= 1 && v <= u32::MAX as i64 => Ok(Some(v as u32)),
                Some(v) => Err(ApiError::invalid(
                    "invalid_field",
                    format!("{} is {v}; give a positive whole number", at(field)),
                )),
            }
        };
        Ok(TaskSpec {
            agent_type: AgentType::new(self.agent_type.trim()),
            payload: JsonText::from_raw(&self.payload),
            priority,
            timeout_s: positive("timeout_s", self.timeout_s)?,
            max_attempts: positive("max_attempts", self.max_attempts)?,
            idempotency_key: self.idempotency_key,
            trace_context,
            tenant: tenant.clone(),
            retry: match self.retry {
                None => None,
                Some(request) => {
                    let spec = match request {
                        RetryRequest::Exponential {
                            initial_s,
                            factor,
                            max_s,
                        } => RetrySpec::Exponential {
                            initial_s,
                            factor,
                            max_s,
                        },
                        RetryRequest::Linear { delay_s } => RetrySpec::Linear { delay_s },
                    };
                    spec.validate().map_err(|message| {
                        ApiError::invalid("invalid_field", format!("{}: {message}", at("retry")))
                    })?;
                    Some(spec)
                }
            },
        })
    }
}

fn body_error(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request_too_large",
            format!(
                "the request body is over {} bytes; split the batch into smaller requests",
                super::MAX_REQUEST_BODY_BYTES
            ),
        )
    } else if is_body_timeout(&rejection) {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            "the request body stopped arriving before it was complete; send the whole body without pausing",
        )
    } else {
        ApiError::bad_request(
            "unreadable_body",
            format!(
                "the request body could not be read: {}",
                rejection.body_text()
            ),
        )
    }
}

/// True when the body failed because the router's body timeout fired.
fn is_body_timeout(rejection: &BytesRejection) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(rejection);
    while let Some(error) = source {
        if error.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        source = error.source();
    }
    false
}

fn parse_error(error: serde_json::Error) -> ApiError {
    ApiError::bad_request(
        "malformed_json",
        format!(
            "the body is not a valid task or array of tasks ({error}); send {{\"agent_type\": \"...\", \"payload\": ...}} or an array of such objects"
        ),
    )
}

/// `POST /v1/tasks`: one task object or an array; 202 with `{"id"}` or
/// `{"ids"}` in the same order. A batch is accepted whole or not at all.
pub async fn submit(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(ApiRole::Submit, "submitting tasks")?;
    let body = body.map_err(body_error)?;
    let trace_context = headers
        .get("traceparent")
        .and_then(|value| value.to_str().ok())
        .map(str::to_string);
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_request("malformed_json", "the body is not UTF-8 JSON"))?;
    let is_batch = text.trim_start().starts_with('[');
    let requests: Vec<TaskRequest> = if is_batch {
        serde_json::from_str(text).map_err(parse_error)?
    } else {
        vec![serde_json::from_str(text).map_err(parse_error)?]
    };
    if requests.is_empty() {
        return Err(ApiError::bad_request(
            "empty_batch",
            "the array holds no tasks; send at least one",
        ));
    }
    let specs = requests
        .into_iter()
        .enumerate()
        .map(|(index, request)| {
            request.into_spec(
                index,
                state.max_payload_bytes,
                trace_context.clone(),
                &caller.tenant,
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let acks = state.node.submit_batch(specs).await?;
    let body = if is_batch {
        json!({ "ids": acks.iter().map(|ack| ack.id.to_string()).collect::<Vec<_>>() })
    } else {
        json!({ "id": acks[0].id.to_string() })
    };
    Ok((StatusCode::ACCEPTED, Json(body)))
}

pub(super) fn parse_id(text: &str) -> Result<TaskId, ApiError> {
    text.parse().map_err(|_| {
        ApiError::bad_request(
            "invalid_task_id",
            format!("{text:?} is not a task id; ids are UUIDs as returned by POST /v1/tasks"),
        )
    })
}

/// Query of `GET /v1/tasks/{id}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetQuery {
    /// Wait up to this long for the task to finish (`30`, `30s`, `500ms`).
    wait: Option<String>,
}

/// Longest `?wait=` accepted.
pub const MAX_WAIT: Duration = Duration::from_secs(300);

fn parse_wait(text: &str) -> Result<Duration, ApiError> {
    let wait = text
        .parse::<u64>()
        .map(Duration::from_secs)
        .or_else(|_| humantime::parse_duration(text))
        .map_err(|_| {
            ApiError::bad_request(
                "invalid_wait",
                format!(
                    "wait={text:?} is not a duration; give seconds (30) or a duration (500ms, 2m)"
                ),
            )
        })?;
    if wait > MAX_WAIT {
        return Err(ApiError::bad_request(
            "invalid_wait",
            format!(
                "wait={text} is longer than the maximum of {} s; poll again instead",
                MAX_WAIT.as_secs()
            ),
        ));
    }
    Ok(wait)
}

/// `GET /v1/tasks/{id}`, optionally `?wait=30s` to wait for a terminal state.
pub async fn get_one(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    query: Result<Query<GetQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<TaskView>, ApiError> {
    caller.require(ApiRole::Read, "reading a task")?;
    let id = parse_id(&id)?;
    let Query(query) =
        query.map_err(|error| ApiError::bad_request("invalid_query", error.body_text()))?;
    let wait = query.wait.as_deref().map(parse_wait).transpose()?;
    // The tenant is checked before any wait, so a wait reveals nothing.
    let view = owned_task(&state, &caller, id).await?;
    let view = match wait {
        Some(wait) if !wait.is_zero() && !view.state.is_terminal() => {
            match state.node.wait_for(id, wait).await {
                Ok(view) => Some(view),
                // Not finished in time: answer with its current state.
                Err(herd_actors::ClientError::Timeout(_)) => state.node.task(id).await?,
                Err(error) => return Err(error.into()),
            }
        }
        _ => Some(view),
    };
    view.map(Json).ok_or_else(|| task_not_found(id))
}

fn task_not_found(id: TaskId) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "task_not_found",
        format!(
            "no task {id}; it never existed, or it finished long ago and was forgotten (see tasks.retain_finished)"
        ),
    )
}

/// The task, if it exists and the caller may see it (404, 403 otherwise).
pub(super) async fn owned_task(
    state: &ApiState,
    caller: &Caller,
    id: TaskId,
) -> Result<TaskView, ApiError> {
    let view = state
        .node
        .task(id)
        .await?
        .ok_or_else(|| task_not_found(id))?;
    caller.require_tenant(&view.tenant, &format!("task {id}"))?;
    Ok(view)
}

/// Query of `GET /v1/tasks`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    state: Option<String>,
    agent_type: Option<String>,
    limit: Option<u32>,
    after: Option<String>,
}

/// Largest page.
pub const MAX_PAGE: u32 = 1000;

/// `GET /v1/tasks?state=&agent_type=&limit=&after=`: a page, oldest first.
pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<TaskPage>, ApiError> {
    caller.require(ApiRole::Read, "listing tasks")?;
    let Query(query) = query.map_err(|error| {
        ApiError::bad_request(
            "invalid_query",
            format!(
                "{}; accepted parameters: state, agent_type, limit, after",
                error.body_text()
            ),
        )
    })?;
    let state_filter = query
        .state
        .as_deref()
        .map(|text| {
            text.parse::<TaskState>()
                .map_err(|error| ApiError::bad_request("invalid_state", error.to_string()))
        })
        .transpose()?;
    let limit = query.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::bad_request(
            "invalid_limit",
            format!("limit={limit}; give 1 to {MAX_PAGE}"),
        ));
    }
    let after = query.after.as_deref().map(parse_id).transpose()?;
    let page = state
        .node
        .list(TaskQuery {
            state: state_filter,
            agent_type: query.agent_type.map(|t| AgentType::new(&t)),
            limit,
            after,
            tenant: caller.list_scope(),
        })
        .await?;
    Ok(Json(page))
}

/// `POST /v1/tasks/{id}/cancel`.
pub async fn cancel(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(ApiRole::Submit, "cancelling a task")?;
    let id = parse_id(&id)?;
    owned_task(&state, &caller, id).await?;
    match state.node.cancel(id).await? {
        CancelOutcome::Cancelled => Ok(Json(json!({ "id": id.to_string(), "state": "cancelled" }))),
        CancelOutcome::AlreadyFinished(task_state) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_finished",
            format!(
                "task {id} already finished as {task_state}; only pending, running or failed tasks can be cancelled"
            ),
        )),
        CancelOutcome::NotFound => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "task_not_found",
            format!("no task {id}"),
        )),
    }
}
