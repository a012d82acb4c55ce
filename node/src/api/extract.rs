//! Extractors whose rejections are [`ApiError`]s, so a request axum cannot
//! take apart still gets the API's JSON error with a code and a fix.
//!
//! axum's own extractors answer their rejections in plain text. Handlers use
//! these instead (queries and bodies already arrive as `Result`s that the
//! handlers map themselves, with messages naming the accepted fields).

use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, Path};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// [`Path`] whose rejection is a 400 `invalid_path` (for example a path
/// segment that is not UTF-8 once percent-decoded, as in `/v1/tasks/%FF`).
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| ApiPath(value))
            .map_err(|rejection| path_error(&rejection))
    }
}

fn path_error(rejection: &PathRejection) -> ApiError {
    match rejection {
        PathRejection::FailedToDeserializePathParams(_) => ApiError::bad_request(
            "invalid_path",
            format!(
                "{}; path segments must be UTF-8 text, percent-encoded where needed (%C3%A9 for é)",
                rejection.body_text()
            ),
        ),
        // Only a handler mounted on a route without the parameters it reads.
        _ => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            format!("the route is misconfigured: {}", rejection.body_text()),
        ),
    }
}
