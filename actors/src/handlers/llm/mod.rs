//! The `llm` handler: one OpenAI-compatible chat completion per attempt,
//! through the provider the orchestrator granted the attempt.
//!
//! An attempt: pick the provider (the grant in [`TaskInput::provider`], else
//! the agent type's primary), build the request from the payload
//! ([`request`], rendering templates with [`template`]), wait out a pause the
//! provider asked this node for ([`pause`]), POST it, turn the answer into a
//! result or a classified error ([`response`]), read the rate-limit headers
//! ([`rate_limit_headers`]), and report the call to the orchestrator's
//! budgets through the [`ProviderCallSink`]. The API key is scrubbed from
//! every error message, whatever the provider echoed.

mod pause;
mod rate_limit_headers;
mod request;
mod response;
mod template;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use herd_config::{LlmHandlerConfig, ProviderConfig, Secret};
use herd_protocol::messages::provider::{ProviderCall, ProviderCallStatus, RateLimitHint};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use tokio::time::Instant;

use self::pause::{PauseVerdict, ProviderPauses};
use self::rate_limit_headers::rate_limit_hint;
use self::request::{ChatRequest, chat_request};
use self::response::{completion, refusal, usage};
use self::template::PromptTemplates;
use super::http::without_url;
use super::{HandlerError, TaskHandler, TaskInput, TaskOutput};

/// Where `llm` handlers put the calls they finished, for the orchestrator's
/// provider budgets. Bounded: when full, a call is dropped (and counted)
/// rather than delaying the task.
#[derive(Clone, Debug)]
pub struct ProviderCallSink(tokio::sync::mpsc::Sender<ProviderCall>);

impl ProviderCallSink {
    /// A sink feeding `sender`.
    pub fn new(sender: tokio::sync::mpsc::Sender<ProviderCall>) -> Self {
        ProviderCallSink(sender)
    }

    /// Records a finished call; never waits.
    pub fn record(&self, call: ProviderCall) {
        if self.0.try_send(call).is_err() {
            metrics::counter!("herd_llm_feedback_dropped_total").increment(1);
        }
    }
}

/// Calls an OpenAI-compatible chat-completions API
/// (`POST {base_url}/chat/completions`).
///
/// 429 is retryable (the provider's limit); 5xx, 408, timeouts and
/// connection failures are retryable (the provider is unwell); 401/403 and
/// other 4xx, and 2xx answers without a completion, are fatal.
#[derive(Debug)]
pub struct LlmHandler {
    agent: LlmHandlerConfig,
    providers: BTreeMap<String, ProviderConfig>,
    client: reqwest::Client,
    max_response_bytes: usize,
    templates: PromptTemplates,
    pauses: Arc<ProviderPauses>,
    calls: ProviderCallSink,
}

/// Time kept back from the attempt's limit for the request itself, so the
/// handler's own timeout fires (and the call is recorded) before the worker
/// cancels the attempt.
fn recording_margin(remaining: Duration) -> Duration {
    (remaining / 20).min(Duration::from_secs(1))
}

impl LlmHandler {
    /// A handler for one agent type; `providers` holds at least every
    /// provider of `agent.chain()`. Answers and rendered prompts over
    /// `max_response_bytes` are refused.
    pub fn new(
        agent: LlmHandlerConfig,
        providers: BTreeMap<String, ProviderConfig>,
        max_response_bytes: usize,
        calls: ProviderCallSink,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()?;
        Ok(LlmHandler {
            agent,
            providers,
            client,
            max_response_bytes,
            templates: PromptTemplates::new(max_response_bytes),
            pauses: ProviderPauses::node_wide(),
            calls,
        })
    }

    /// The same handler with its own pause marks instead of the node's
    /// (tests run many "nodes" in one process).
    #[cfg(test)]
    fn with_pauses(mut self, pauses: Arc<ProviderPauses>) -> Self {
        self.pauses = pauses;
        self
    }

    /// The provider this attempt calls: the grant, else the primary.
    fn provider_for<'a>(
        &'a self,
        input: &'a TaskInput,
    ) -> Result<(&'a str, &'a ProviderConfig), HandlerError> {
        let name = input.provider.as_deref().unwrap_or(&self.agent.provider);
        match self.providers.get(name) {
            Some(provider) => Ok((name, provider)),
            None => Err(HandlerError::Fatal(format!(
                "provider {name:?} is not configured on this node; add [providers.{name}] to its config (every node running agent type {} needs the providers of its chain)",
                input.agent_type
            ))),
        }
    }

    async fn attempt(
        &self,
        input: &TaskInput,
        name: &str,
        provider: &ProviderConfig,
    ) -> Result<TaskOutput, HandlerError> {
        let deadline = Instant::now() + input.timeout;
        let payload: serde_json::Value = input.payload_as()?;
        let request = chat_request(
            &payload,
            &self.agent,
            name,
            provider.model.as_deref(),
            &self.templates,
        )?;
        if let PauseVerdict::TooLong(remaining) = self.pauses.wait(name, deadline).await {
            return Err(HandlerError::Retryable(format!(
                "provider {name:?} asked to wait {:.1}s before the next call, longer than this attempt has left",
                remaining.as_secs_f64()
            )));
        }
        self.call(input, name, provider, &request, deadline).await
    }

    async fn call(
        &self,
        input: &TaskInput,
        name: &str,
        provider: &ProviderConfig,
        request: &ChatRequest,
        deadline: Instant,
    ) -> Result<TaskOutput, HandlerError> {
        let url = format!("{}/chat/completions", provider.base_url);
        let remaining = deadline.saturating_duration_since(Instant::now());
        let body = serde_json::to_vec(request)
            .map_err(|error| HandlerError::Fatal(format!("cannot encode the request: {error}")))?;
        let mut builder = self
            .client
            .post(&url)
            .timeout(remaining - recording_margin(remaining))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(key) = &provider.api_key {
            builder = builder.bearer_auth(key.expose());
        }
        if let Some(trace) = &input.trace_context {
            builder = builder.header("traceparent", trace);
        }

        let sent = Instant::now();
        let exchange = self.exchange(builder).await;
        let latency = sent.elapsed();
        let report = |status: ProviderCallStatus, tokens: (u64, u64), hint: RateLimitHint| {
            self.report(input, name, status, tokens, hint, latency);
        };
        let answer = match exchange {
            Ok(answer) => answer,
            Err(error) => {
                report(
                    ProviderCallStatus::Unavailable,
                    (0, 0),
                    RateLimitHint::default(),
                );
                let what = if error.is_timeout() {
                    format!("timed out after {:.1}s", latency.as_secs_f64())
                } else if error.is_connect() {
                    format!("could not connect ({})", without_url(&error))
                } else {
                    format!("failed: {}", without_url(&error))
                };
                return Err(HandlerError::Retryable(format!(
                    "POST {url} (provider {name:?}) {what}"
                )));
            }
        };

        let hint = rate_limit_hint(&answer.headers, SystemTime::now());
        self.remember_pause(name, answer.status, &hint);
        if !answer.status.is_success() {
            let (status, error) = refusal(answer.status, &answer.body, name);
            report(status, (0, 0), hint);
            return Err(error);
        }
        if answer.truncated {
            report(ProviderCallStatus::Rejected, (0, 0), hint);
            return Err(HandlerError::Fatal(format!(
                "provider {name:?} answered with more than {} bytes; results over the payload limit are refused (lower max_tokens)",
                self.max_response_bytes
            )));
        }
        match completion(&answer.body, name, &request.model) {
            Ok(done) => {
                let tokens = (done.prompt_tokens, done.completion_tokens);
                report(ProviderCallStatus::Ok, tokens, hint);
                Ok(done.output)
            }
            Err(error) => {
                let tokens = serde_json::from_slice::<serde_json::Value>(&answer.body)
                    .map(|body| usage(&body))
                    .unwrap_or((0, 0));
                report(ProviderCallStatus::Rejected, tokens, hint);
                Err(error)
            }
        }
    }

    /// Sends the request and reads at most `max_response_bytes` of the body
    /// (the rest of an oversized answer is dropped).
    async fn exchange(&self, builder: reqwest::RequestBuilder) -> Result<Answer, reqwest::Error> {
        let mut response = builder.send().await?;
        let status = response.status();
        let headers = response.headers().clone();
        let mut body = Vec::new();
        let mut truncated = false;
        while let Some(chunk) = response.chunk().await? {
            let room = self.max_response_bytes - body.len();
            if chunk.len() > room {
                body.extend_from_slice(&chunk[..room]);
                truncated = true;
                break;
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Answer {
            status,
            headers,
            body,
            truncated,
        })
    }

    /// A 429 with a delay, or an allowance that is used up until a reset,
    /// pauses this node's calls to the provider.
    fn remember_pause(&self, name: &str, status: StatusCode, hint: &RateLimitHint) {
        let exhausted = |remaining: Option<u64>, reset: Option<u64>| {
            (remaining == Some(0)).then_some(reset).flatten()
        };
        let wait_ms = [
            (status == StatusCode::TOO_MANY_REQUESTS)
                .then_some(hint.retry_after_ms)
                .flatten(),
            exhausted(hint.remaining_requests, hint.reset_requests_ms),
            exhausted(hint.remaining_tokens, hint.reset_tokens_ms),
        ]
        .into_iter()
        .flatten()
        .max();
        if let Some(wait_ms) = wait_ms.filter(|ms| *ms > 0) {
            tracing::info!(provider = %name, wait_ms, "provider asked to pause calls");
            self.pauses
                .pause_until(name, Instant::now() + Duration::from_millis(wait_ms));
        }
    }

    fn report(
        &self,
        input: &TaskInput,
        name: &str,
        status: ProviderCallStatus,
        (prompt_tokens, completion_tokens): (u64, u64),
        hint: RateLimitHint,
        latency: Duration,
    ) {
        let provider = name.to_string();
        metrics::counter!("herd_llm_requests_total", "provider" => provider.clone(), "status" => status.as_str())
            .increment(1);
        metrics::counter!("herd_llm_tokens_total", "provider" => provider.clone(), "kind" => "prompt")
            .increment(prompt_tokens);
        metrics::counter!("herd_llm_tokens_total", "provider" => provider.clone(), "kind" => "completion")
            .increment(completion_tokens);
        metrics::histogram!("herd_llm_request_duration_seconds", "provider" => provider.clone())
            .record(latency.as_secs_f64());
        self.calls.record(ProviderCall {
            provider,
            task_id: input.task_id,
            epoch: input.epoch,
            status,
            prompt_tokens,
            completion_tokens,
            hint,
            latency_ms: u64::try_from(latency.as_millis()).unwrap_or(u64::MAX),
        });
    }
}

/// A provider's answer, its body bounded.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
    truncated: bool,
}

/// `error` with every occurrence of the key replaced: a provider may echo
/// the key it was given, and messages end up in task records and logs.
fn scrubbed(error: HandlerError, key: Option<&Secret>) -> HandlerError {
    let Some(key) = key.map(Secret::expose).filter(|key| !key.is_empty()) else {
        return error;
    };
    match error {
        HandlerError::Retryable(message) => HandlerError::Retryable(message.replace(key, "***")),
        HandlerError::Fatal(message) => HandlerError::Fatal(message.replace(key, "***")),
    }
}

#[async_trait::async_trait]
impl TaskHandler for LlmHandler {
    async fn handle(&self, input: TaskInput) -> Result<TaskOutput, HandlerError> {
        let (name, provider) = self.provider_for(&input)?;
        self.attempt(&input, name, provider)
            .await
            .map_err(|error| scrubbed(error, provider.api_key.as_ref()))
    }
}

#[cfg(test)]
mod tests;
