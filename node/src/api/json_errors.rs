//! The guarantee that every error the API answers is JSON.
//!
//! Handlers and [`super::extract`] answer with [`ApiError`]s and precise
//! codes. What axum answers by itself never passes through them: a method a
//! route does not serve (405, with `Allow`) and any rejection of an extractor
//! a handler takes unwrapped. This layer gives those the API's shape too, so
//! a client can always parse `{"error", "code"}` whatever went wrong.

use axum::extract::Request;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

/// Longest plain-text error body kept as the message (axum's are one line).
const MAX_TEXT_BYTES: usize = 4096;

/// Middleware: rewrites a non-JSON error response as an [`ApiError`],
/// keeping its status and headers (`Allow`, `Retry-After`).
pub async fn json_errors(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(response.headers()) {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_TEXT_BYTES)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_string())
        .unwrap_or_default();
    let error = if status == StatusCode::METHOD_NOT_ALLOWED {
        method_not_allowed(&method, &path, &parts.headers)
    } else {
        let message = if text.is_empty() {
            status.canonical_reason().unwrap_or("error").to_string()
        } else {
            text
        };
        ApiError::new(status, code_for(status), message)
    };
    let mut rewritten = error.into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rewritten.headers_mut().append(name, value.clone());
        }
    }
    rewritten
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"))
}

/// 405 naming the methods the route serves (from axum's `Allow` header).
fn method_not_allowed(method: &Method, path: &str, headers: &HeaderMap) -> ApiError {
    let allowed = headers
        .get(header::ALLOW)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .replace(',', ", ");
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {path}; use {allowed}"),
    )
}

/// A stable code for an error axum answered without one.
fn code_for(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::PAYLOAD_TOO_LARGE => "request_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid_request",
        // tower-http's request timeout answers an empty 408.
        StatusCode::REQUEST_TIMEOUT => "request_timeout",
        status if status.is_client_error() => "client_error",
        _ => "internal_error",
    }
}
