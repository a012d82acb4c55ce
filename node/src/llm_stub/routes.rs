//! The stub's HTTP routes: the OpenAI-compatible ones under `/v1/` and the
//! development control API under `/stub/`. Handlers only sequence the
//! pure pieces (auth, fault rules, rate limit, answer) and shape responses.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use super::completion::{ChatRequest, complete, fingerprint};
use super::faults::FaultRule;
use super::rate_limit::{Admission, openai_duration, retry_after_seconds};
use super::{MAX_REQUEST_BODY_BYTES, MODEL_ID, StubState, lock};

type Shared = Arc<StubState>;

/// The stub's routes; anything else is a 404 in OpenAI's shape.
pub(super) fn router(state: Shared) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/models", get(models))
        .route(
            "/stub/faults",
            post(add_fault).delete(clear_faults).get(list_faults),
        )
        .route("/stub/stats", get(stats))
        .route("/stub/reset", post(reset))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BODY_BYTES))
        .with_state(state)
}

/// `POST /v1/chat/completions`. Order: authentication, then a queued fault
/// rule, then the stub's own rate limit, then the request itself — so a
/// fault rule answers "the next N requests" whatever their body, and
/// refused requests never use a rate-limit slot. An injected `delay_ms`
/// and the base latency (plus jitter) add up.
async fn chat(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    lock(&state.stats).arrive(state.clock.now_ms());
    // Departs however the handler ends, including a client hanging up
    // during a delay (the future is then dropped).
    let _in_flight = InFlight(&state);
    // The base latency delays every answer, whatever its status, by the
    // same amount for the same request bytes.
    let settings = &state.settings;
    let jitter_ms = u64::try_from(settings.jitter.as_millis()).unwrap_or(u64::MAX);
    let seed = body.as_deref().map(fingerprint).unwrap_or_default();
    let delay = settings.latency + Duration::from_millis(seed % jitter_ms.saturating_add(1));
    let (response, usage) = answer(&state, &headers, body).await;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    lock(&state.stats).answered(response.status().as_u16(), state.clock.now_ms(), usage);
    response
}

struct InFlight<'a>(&'a StubState);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        lock(&self.0.stats).depart();
    }
}

/// The chat answer and, for a 200, the `(prompt, completion)` tokens billed.
async fn answer(
    state: &StubState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> (Response, Option<(u32, u32)>) {
    if let Some(refused) = refusal(state, headers) {
        return (refused, None);
    }
    // Taken before any await so the lock is never held across one.
    let fault = lock(&state.faults).take();
    if let Some(rule) = fault {
        if let Some(delay) = rule.delay_ms {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if rule.status != 200 {
            return (injected(&rule), None);
        }
    }
    let mut limit_headers = None;
    if let Some(limiter) = &state.limiter {
        let admission = lock(limiter).admit(state.clock.now_ms());
        match admission {
            Admission::Limited {
                limit,
                retry_after_ms,
            } => return (rate_limited(limit, retry_after_ms), None),
            Admission::Admitted {
                limit,
                remaining,
                reset_ms,
            } => limit_headers = Some((limit, remaining, reset_ms)),
        }
    }
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            let message = format!(
                "The request body is larger than the {} MiB the stub accepts.",
                MAX_REQUEST_BODY_BYTES / (1024 * 1024)
            );
            return (
                error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "invalid_request_error",
                    None,
                    message,
                ),
                None,
            );
        }
        Err(rejection) => {
            return (
                error(
                    rejection.status(),
                    "invalid_request_error",
                    None,
                    rejection.body_text(),
                ),
                None,
            );
        }
    };
    let request = match ChatRequest::parse(&body) {
        Ok(request) => request,
        Err(invalid) => {
            return (
                error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    None,
                    invalid.0,
                ),
                None,
            );
        }
    };
    let completion = complete(&request);
    let id = state.next_id.fetch_add(1, Ordering::Relaxed);
    let body = json!({
        "id": format!("chatcmpl-stub-{id}"),
        "object": "chat.completion",
        "created": state.clock.now_ms() / 1000,
        "model": request.model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": completion.content},
            "finish_reason": completion.finish_reason.as_str(),
        }],
        "usage": {
            "prompt_tokens": completion.prompt_tokens,
            "completion_tokens": completion.completion_tokens,
            "total_tokens": completion.prompt_tokens + completion.completion_tokens,
        },
    });
    let mut response = (StatusCode::OK, axum::Json(body)).into_response();
    if let Some((limit, remaining, reset_ms)) = limit_headers {
        let headers = response.headers_mut();
        set(headers, "x-ratelimit-limit-requests", limit.to_string());
        set(
            headers,
            "x-ratelimit-remaining-requests",
            remaining.to_string(),
        );
        set(
            headers,
            "x-ratelimit-reset-requests",
            openai_duration(reset_ms),
        );
    }
    (
        response,
        Some((completion.prompt_tokens, completion.completion_tokens)),
    )
}

/// `GET /v1/models`: the one model the stub names.
async fn models(State(state): State<Shared>, headers: HeaderMap) -> Response {
    if let Some(refused) = refusal(&state, &headers) {
        return refused;
    }
    axum::Json(json!({
        "object": "list",
        "data": [{"id": MODEL_ID, "object": "model", "owned_by": "herd-llm-stub"}],
    }))
    .into_response()
}

/// The 401 for a request without `Authorization: Bearer <key>` when a key
/// is configured; `None` lets the request through. The 401 echoes the key
/// presented — deliberately, as real providers partly do — so that herd's
/// tests can prove herd never passes it on.
fn refusal(state: &StubState, headers: &HeaderMap) -> Option<Response> {
    let expected = state.settings.api_key.as_ref()?;
    let presented = headers
        .get(header::AUTHORIZATION)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
        .unwrap_or_default();
    let presented = presented
        .strip_prefix("Bearer ")
        .unwrap_or(&presented)
        .trim();
    if presented == expected {
        return None;
    }
    Some(error(
        StatusCode::UNAUTHORIZED,
        "invalid_request_error",
        Some("invalid_api_key"),
        format!("Incorrect API key provided: {presented}"),
    ))
}

/// The answer a fault rule asks for, in the words a real provider uses for
/// that status, marked as injected so that logs do not mislead.
fn injected(rule: &FaultRule) -> Response {
    let status = StatusCode::from_u16(rule.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let (kind, code, message) = match rule.status {
        429 => (
            "requests",
            Some("rate_limit_exceeded"),
            "Rate limit reached for requests (injected by the herd llm stub).",
        ),
        500 => (
            "server_error",
            None,
            "The server had an error while processing your request (injected by the herd llm stub).",
        ),
        503 => (
            "server_error",
            None,
            "The engine is currently overloaded, please try again later (injected by the herd llm stub).",
        ),
        status if status >= 500 => (
            "server_error",
            None,
            "Injected server error (herd llm stub).",
        ),
        _ => (
            "invalid_request_error",
            None,
            "Injected client error (herd llm stub).",
        ),
    };
    let mut response = error(status, kind, code, message.to_string());
    if let Some(seconds) = rule.retry_after_s {
        set(response.headers_mut(), "retry-after", seconds.to_string());
    }
    response
}

/// The 429 of the stub's own limit, worded and headed like OpenAI's.
fn rate_limited(limit: u32, retry_after_ms: u64) -> Response {
    let mut response = error(
        StatusCode::TOO_MANY_REQUESTS,
        "requests",
        Some("rate_limit_exceeded"),
        format!(
            "Rate limit reached for requests per min (RPM): Limit {limit}, Used {limit}, \
             Requested 1. Please try again in {}.",
            openai_duration(retry_after_ms)
        ),
    );
    let headers = response.headers_mut();
    set(
        headers,
        "retry-after",
        retry_after_seconds(retry_after_ms).to_string(),
    );
    set(headers, "x-ratelimit-limit-requests", limit.to_string());
    set(headers, "x-ratelimit-remaining-requests", "0".into());
    set(
        headers,
        "x-ratelimit-reset-requests",
        openai_duration(retry_after_ms),
    );
    response
}

/// `POST /stub/faults`: queues a rule; answers with the rules now queued.
async fn add_fault(State(state): State<Shared>, body: Bytes) -> Response {
    let rule: FaultRule = match serde_json::from_slice(&body) {
        Ok(rule) => rule,
        Err(parse) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                None,
                format!(
                    "not a fault rule: {parse}; expected {{\"status\": 429, \"count\": 3, \
                     \"retry_after_s\": 2, \"delay_ms\": 0}} (count null = until cleared)"
                ),
            );
        }
    };
    let mut faults = lock(&state.faults);
    match faults.push(rule) {
        Ok(()) => axum::Json(json!({ "queued": faults.pending() })).into_response(),
        Err(refused) => error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            None,
            refused.to_string(),
        ),
    }
}

/// `GET /stub/faults`: the rules still queued, with their remaining counts.
async fn list_faults(State(state): State<Shared>) -> Response {
    axum::Json(json!({ "queued": lock(&state.faults).pending() })).into_response()
}

/// `DELETE /stub/faults`: drops every rule.
async fn clear_faults(State(state): State<Shared>) -> Response {
    lock(&state.faults).clear();
    axum::Json(json!({ "queued": [] })).into_response()
}

/// `GET /stub/stats`.
async fn stats(State(state): State<Shared>) -> Response {
    axum::Json(state.stats_snapshot()).into_response()
}

/// `POST /stub/reset`: zeroes the stats; answers with them.
async fn reset(State(state): State<Shared>) -> Response {
    state.reset_stats();
    axum::Json(state.stats_snapshot()).into_response()
}

/// Unknown paths, worded as OpenAI words them.
async fn not_found(method: Method, uri: Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        None,
        format!(
            "Invalid URL ({method} {}); the stub serves POST /v1/chat/completions, GET /v1/models \
             and /stub/faults, /stub/stats, /stub/reset",
            uri.path()
        ),
    )
}

/// An OpenAI-style error: `{"error": {"message", "type", "param", "code"}}`
/// (`param` and, unless given, `code` null, as OpenAI sends them).
fn error(status: StatusCode, kind: &str, code: Option<&str>, message: String) -> Response {
    let body = json!({
        "error": { "message": message, "type": kind, "param": null, "code": code },
    });
    (status, axum::Json(body)).into_response()
}

fn set(headers: &mut HeaderMap, name: &'static str, value: String) {
    if let Ok(value) = HeaderValue::from_str(&value) {
        headers.insert(HeaderName::from_static(name), value);
    }
}
