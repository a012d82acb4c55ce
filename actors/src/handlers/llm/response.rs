//! A provider's answer → the task's result, or a classified failure.
//!
//! | answer | call status | task error |
//! |---|---|---|
//! | 2xx with `choices[0].message.content` | `Ok` | — (result) |
//! | 2xx without it, or not JSON | `Rejected` | fatal |
//! | 429 | `RateLimited` | retryable |
//! | 5xx, 408 | `Unavailable` | retryable |
//! | 401, 403 | `AuthRejected` | fatal, naming the key to fix |
//! | other 4xx (and 1xx/3xx) | `Rejected` | fatal, with a body excerpt |
//!
//! Messages here may quote the provider's body; the caller scrubs the API
//! key from every message before it leaves the handler.

use herd_protocol::messages::provider::ProviderCallStatus;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::handlers::{HandlerError, TaskOutput};

/// Characters of a provider's error body quoted in a task error.
const EXCERPT_CHARS: usize = 300;

/// A usable completion.
#[derive(Debug)]
pub(super) struct Completion {
    pub(super) output: TaskOutput,
    pub(super) prompt_tokens: u64,
    pub(super) completion_tokens: u64,
}

/// Tokens the provider says a call used: `usage.prompt_tokens` and
/// `usage.completion_tokens`, 0 when it does not say.
pub(super) fn usage(body: &Value) -> (u64, u64) {
    let count = |name: &str| body["usage"][name].as_u64().unwrap_or(0);
    (count("prompt_tokens"), count("completion_tokens"))
}

/// The result of a 2xx answer: `{"content", "model", "provider",
/// "finish_reason", "usage": {"prompt_tokens", "completion_tokens"}}`.
pub(super) fn completion(
    body: &[u8],
    provider: &str,
    requested_model: &str,
) -> Result<Completion, HandlerError> {
    let body: Value = serde_json::from_slice(body).map_err(|error| {
        HandlerError::Fatal(format!(
            "provider {provider:?} answered with a body that is not JSON ({error}): {}",
            excerpt(body)
        ))
    })?;
    let choice = &body["choices"][0];
    let Some(content) = choice["message"]["content"].as_str() else {
        return Err(HandlerError::Fatal(format!(
            "provider {provider:?} answered without choices[0].message.content (finish_reason {}); the request may have been filtered or the API is not chat-completions compatible",
            choice["finish_reason"]
        )));
    };
    let (prompt_tokens, completion_tokens) = usage(&body);
    let model = body["model"].as_str().unwrap_or(requested_model);
    let output = TaskOutput::json(&json!({
        "content": content,
        "model": model,
        "provider": provider,
        "finish_reason": choice["finish_reason"],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
        },
    }))?;
    Ok(Completion {
        output,
        prompt_tokens,
        completion_tokens,
    })
}

/// How a non-2xx answer counts and what the task is told.
pub(super) fn refusal(
    status: StatusCode,
    body: &[u8],
    provider: &str,
) -> (ProviderCallStatus, HandlerError) {
    let quoted = excerpt(body);
    match status.as_u16() {
        429 => (
            ProviderCallStatus::RateLimited,
            HandlerError::Retryable(format!(
                "provider {provider:?} is rate limiting (429): {quoted}"
            )),
        ),
        408 | 500..=599 => (
            ProviderCallStatus::Unavailable,
            HandlerError::Retryable(format!(
                "provider {provider:?} is unavailable ({status}): {quoted}"
            )),
        ),
        401 | 403 => (
            ProviderCallStatus::AuthRejected,
            HandlerError::Fatal(format!(
                "provider {provider:?} refused the API key ({status}): {quoted}; check providers.{provider}.api_key or providers.{provider}.api_key_file"
            )),
        ),
        _ => (
            ProviderCallStatus::Rejected,
            HandlerError::Fatal(format!(
                "provider {provider:?} rejected the request ({status}): {quoted}"
            )),
        ),
    }
}

fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let mut quoted: String = text.chars().take(EXCERPT_CHARS).collect();
    if quoted.len() < text.len() {
        quoted.push('…');
    }
    quoted
}
