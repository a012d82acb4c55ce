//! `/metrics` and the per-request API metrics.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use herd_config::ApiRole;

use super::ApiState;
use super::auth::Caller;

/// `GET /metrics`: Prometheus text exposition format 0.0.4.
/// Unless `[api] open_metrics`, only admins read it: it shows every
/// tenant's figures.
pub async fn metrics(State(state): State<ApiState>, caller: Option<Caller>) -> Response {
    if !state.auth.metrics_open()
        && let Err(error) = caller
            .ok_or_else(super::auth::unauthorized)
            .and_then(|caller| caller.require(ApiRole::Admin, "reading /metrics"))
    {
        return error.into_response();
    }
    match &state.metrics {
        Some(handle) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            handle.render(),
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({
                "error": "this process serves no metrics: the program embedding herd installed its own metrics recorder",
                "code": "metrics_disabled",
            })),
        )
            .into_response(),
    }
}

/// Counts and times every request by route template (never the raw path, so
/// task ids do not explode the label set), method and status.
pub async fn track_requests(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |path| path.as_str().to_string());
    let method = request.method().as_str().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("herd_api_requests_total", "route" => route.clone(), "method" => method.clone(), "status" => status).increment(1);
    metrics::histogram!("herd_api_request_seconds", "route" => route, "method" => method)
        .record(started.elapsed().as_secs_f64());
    response
}
