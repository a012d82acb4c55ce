//! Every API error is JSON that says what went wrong and what to do.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use herd_actors::ClientError;
use herd_protocol::messages::orchestrator::{RequestFailure, SubmitRejection};
use herd_protocol::messages::scaling::UpdateRejection;
use serde_json::json;

/// An API failure: status, machine-readable code, message for a person.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable, machine-readable code (`unknown_agent_type`, ...).
    pub code: &'static str,
    /// What went wrong and how to fix it.
    pub message: String,
    /// Extra fields merged into the body.
    pub details: Option<serde_json::Value>,
    /// Seconds after which a retry may succeed (429, 503).
    pub retry_after: Option<u32>,
}

impl ApiError {
    /// An error with no details.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    /// 400: the request cannot be understood.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 422: understood but invalid.
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    fn retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.message, "code": self.code });
        if let (Some(serde_json::Value::Object(extra)), Some(object)) =
            (self.details, body.as_object_mut())
        {
            object.extend(extra);
        }
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<ClientError> for ApiError {
    fn from(error: ClientError) -> Self {
        let message = error.to_string();
        match error {
            ClientError::NoOrchestrator => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "no_orchestrator", message)
                    .retry_after(1)
            }
            ClientError::NoQuorum { .. } => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "no_quorum", message).retry_after(1)
            }
            ClientError::Unreachable(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "orchestrator_unreachable",
                message,
            )
            .retry_after(1),
            ClientError::Timeout(_) => {
                ApiError::new(StatusCode::GATEWAY_TIMEOUT, "orchestrator_timeout", message)
            }
            ClientError::NotFound(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "task_not_found", message)
            }
            ClientError::UnexpectedReply => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "unexpected_reply",
                message,
            ),
            ClientError::Failed(RequestFailure::Wire(_)) => {
                ApiError::new(StatusCode::BAD_GATEWAY, "cluster_wire_error", message)
            }
            ClientError::Failed(RequestFailure::Interrupted) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "outcome_unknown", message)
                    .retry_after(1)
            }
            ClientError::Failed(RequestFailure::Starting | RequestFailure::NotOrchestrator) => {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "orchestrator_unavailable",
                    message,
                )
                .retry_after(1)
            }
            ClientError::Rejected(rejection) => match rejection {
                SubmitRejection::UnknownAgentType { known, .. } => {
                    let mut error = ApiError::invalid("unknown_agent_type", message);
                    error.details = Some(json!({ "known_agent_types": known }));
                    error
                }
                SubmitRejection::PayloadTooLarge { .. } => {
                    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
                }
                SubmitRejection::InvalidField { .. } => ApiError::invalid("invalid_field", message),
                SubmitRejection::Overloaded { .. } => {
                    ApiError::new(StatusCode::TOO_MANY_REQUESTS, "overloaded", message)
                        .retry_after(1)
                }
                SubmitRejection::OverByteBudget {
                    held_bytes,
                    batch_bytes,
                    limit,
                } => {
                    let mut error =
                        ApiError::new(StatusCode::TOO_MANY_REQUESTS, "over_byte_budget", message)
                            .retry_after(1);
                    error.details = Some(json!({
                        "held_bytes": held_bytes,
                        "batch_bytes": batch_bytes,
                        "max_held_bytes": limit,
                    }));
                    error
                }
                SubmitRejection::TenantOverLimit {
                    tenant,
                    key,
                    held,
                    adding,
                    limit,
                    ..
                } => {
                    let mut error =
                        ApiError::new(StatusCode::TOO_MANY_REQUESTS, "tenant_over_limit", message)
                            .retry_after(1);
                    error.details = Some(json!({
                        "tenant": tenant.as_str(),
                        "limit_key": key,
                        "held": held,
                        "adding": adding,
                        "limit": limit,
                    }));
                    error
                }
            },
            ClientError::BatchTooLarge(too_large) => {
                let mut error =
                    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "batch_too_large", message);
                error.details = Some(json!({
                    "batch": { "tasks": too_large.tasks, "bytes": too_large.bytes },
                    "limits": {
                        "max_batch_tasks": too_large.max_tasks,
                        "max_batch_bytes": too_large.max_bytes,
                    },
                }));
                error
            }
        }
    }
}

impl From<UpdateRejection> for ApiError {
    fn from(rejection: UpdateRejection) -> Self {
        let message = rejection.to_string();
        match rejection {
            UpdateRejection::UnknownAgentType { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "unknown_agent_type", message)
            }
            UpdateRejection::OutOfRange { .. }
            | UpdateRejection::NoRoomForOthers { .. }
            | UpdateRejection::MinAboveMax { .. }
            | UpdateRejection::ThresholdsCrossed { .. } => {
                ApiError::invalid("invalid_update", message)
            }
        }
    }
}

/// The answer for unknown routes: 404 naming the routes the API serves
/// (`routes` is collected as the router is built, so it is never stale).
pub fn not_found(path: &str, routes: &[&str]) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_such_route",
        format!("no route {path}; the API serves {}", routes.join(", ")),
    )
}
