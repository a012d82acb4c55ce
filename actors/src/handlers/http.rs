use std::time::Duration;

use herd_config::HttpHandlerConfig;
use herd_protocol::JsonText;

use super::{HandlerError, TaskHandler, TaskInput, TaskOutput};

/// POSTs the payload to a configured URL; a 2xx JSON body is the result.
/// 408, 429 and 5xx answers and connection errors are retryable (the
/// dependency is busy or down); other 4xx answers are fatal (the request
/// itself is wrong). The attempt's time limit bounds the whole exchange.
#[derive(Debug, Clone)]
pub struct HttpHandler {
    config: HttpHandlerConfig,
    client: reqwest::Client,
    max_response_bytes: usize,
}

impl HttpHandler {
    /// A handler for `config.url`, accepting responses up to
    /// `max_response_bytes`.
    pub fn new(
        config: HttpHandlerConfig,
        max_response_bytes: usize,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()?;
        Ok(HttpHandler {
            config,
            client,
            max_response_bytes,
        })
    }
}

#[async_trait::async_trait]
impl TaskHandler for HttpHandler {
    async fn handle(&self, input: TaskInput) -> Result<TaskOutput, HandlerError> {
        let mut request = self
            .client
            .post(&self.config.url)
            .timeout(input.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("x-herd-task-id", input.task_id.to_string())
            .header("x-herd-attempt", input.attempt.to_string())
            .body(input.payload.as_bytes().to_vec());
        for (name, value) in &self.config.headers {
            request = request.header(name.as_str(), value.expose());
        }
        if let Some(trace) = &input.trace_context {
            request = request.header("traceparent", trace);
        }
        let url = &self.config.url;
        let mut response = request.send().await.map_err(|error| {
            // reqwest errors never include header values, so secrets stay out.
            HandlerError::Retryable(format!("POST {url} failed: {}", without_url(&error)))
        })?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|error| {
            HandlerError::Retryable(format!(
                "reading the response of {url} failed: {}",
                without_url(&error)
            ))
        })? {
            if body.len() + chunk.len() > self.max_response_bytes {
                return Err(HandlerError::Fatal(format!(
                    "the response of {url} is larger than {} bytes; results over the payload limit are refused",
                    self.max_response_bytes
                )));
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            let excerpt: String = String::from_utf8_lossy(&body).chars().take(500).collect();
            let message = format!("POST {url} answered {status}: {excerpt}");
            let retryable = status.is_server_error()
                || status == reqwest::StatusCode::TOO_MANY_REQUESTS
                || status == reqwest::StatusCode::REQUEST_TIMEOUT;
            return Err(if retryable {
                HandlerError::Retryable(message)
            } else {
                HandlerError::Fatal(message)
            });
        }
        let result = JsonText::parse(body).map_err(|error| {
            HandlerError::Fatal(format!("the response of {url} is not JSON: {error}"))
        })?;
        Ok(TaskOutput::raw(result))
    }
}

/// A reqwest error's text without the URL it names (the caller states the URL).
pub(super) fn without_url(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    if let Some(url) = error.url() {
        text = text.replace(url.as_str(), "").replace(" ()", "");
    }
    text.trim().to_string()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use herd_config::Secret;
    use herd_protocol::{AgentType, TaskId};
    use serde_json::json;

    use super::*;
    use crate::handlers::stand_in::{Log, Reply, reply};

    /// The stand-in's URL for the handler to POST to.
    async fn stand_in(replies: Vec<Reply>) -> (String, Log) {
        let (address, log) = crate::handlers::stand_in::stand_in(replies).await;
        (format!("{address}/run"), log)
    }

    fn handler(url: String) -> HttpHandler {
        HttpHandler::new(
            HttpHandlerConfig {
                url,
                headers: BTreeMap::from([(
                    "authorization".to_string(),
                    Secret::new("Bearer t0ken"),
                )]),
            },
            1024,
        )
        .unwrap()
    }

    fn input() -> TaskInput {
        TaskInput {
            task_id: TaskId::new_v7(),
            agent_type: AgentType::new("llm"),
            attempt: 2,
            payload: JsonText::parse("{\"prompt\":\"hi\"}").unwrap(),
            timeout: Duration::from_secs(5),
            trace_context: None,
            epoch: herd_protocol::AssignmentEpoch(1),
            provider: None,
        }
    }

    #[tokio::test]
    async fn posts_the_payload_and_returns_the_json_body() {
        let (url, received) = stand_in(vec![reply(200, "{\"text\":\"hello\"}")]).await;
        let output = handler(url).handle(input()).await.unwrap();
        assert_eq!(output.result.as_str(), "{\"text\":\"hello\"}");
        let request = received.lock().await[0].clone();
        assert!(request.head.starts_with("POST /run"), "{request:?}");
        assert_eq!(request.body, json!({"prompt": "hi"}), "{request:?}");
        let head = request.head.to_ascii_lowercase();
        assert!(head.contains("authorization: bearer t0ken"), "{request:?}");
        assert!(head.contains("x-herd-attempt: 2"), "{request:?}");
    }

    #[tokio::test]
    async fn rate_limits_and_server_errors_are_retryable_client_errors_fatal() {
        let (url, _) = stand_in(vec![
            reply(429, "{\"error\":\"slow down\"}"),
            reply(503, "{}"),
            reply(400, "{\"error\":\"bad prompt\"}"),
            reply(200, "not json"),
        ])
        .await;
        let handler = handler(url);
        assert!(
            matches!(handler.handle(input()).await, Err(HandlerError::Retryable(m)) if m.contains("429"))
        );
        assert!(
            matches!(handler.handle(input()).await, Err(HandlerError::Retryable(m)) if m.contains("503"))
        );
        assert!(
            matches!(handler.handle(input()).await, Err(HandlerError::Fatal(m)) if m.contains("bad prompt"))
        );
        assert!(
            matches!(handler.handle(input()).await, Err(HandlerError::Fatal(m)) if m.contains("not JSON"))
        );
    }

    #[tokio::test]
    async fn an_unreachable_endpoint_is_retryable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/run", listener.local_addr().unwrap());
        drop(listener);
        assert!(matches!(
            handler(url).handle(input()).await,
            Err(HandlerError::Retryable(_))
        ));
    }
}
