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
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use herd_config::Secret;
    use herd_protocol::{AgentType, TaskId};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A stand-in endpoint: answers each request with the next canned
    /// response and records what it received.
    async fn stand_in(
        responses: Vec<(u16, &'static str)>,
    ) -> (String, Arc<tokio::sync::Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let received = Arc::new(tokio::sync::Mutex::new(Vec::new()));
        let log = received.clone();
        let next = Arc::new(AtomicUsize::new(0));
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                let (status, body) =
                    responses[next.fetch_add(1, Ordering::SeqCst).min(responses.len() - 1)];
                let mut request = vec![0u8; 65536];
                let mut read = 0;
                // Read until the headers and the declared body have arrived.
                loop {
                    let n = socket.read(&mut request[read..]).await.unwrap();
                    read += n;
                    let text = String::from_utf8_lossy(&request[..read]).to_string();
                    if let Some(split) = text.find("\r\n\r\n") {
                        let length = text
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length: ")
                                    .map(|v| v.trim().parse::<usize>().unwrap())
                            })
                            .unwrap_or(0);
                        if read >= split + 4 + length || n == 0 {
                            log.lock().await.push(text);
                            break;
                        }
                    }
                }
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                socket.write_all(reply.as_bytes()).await.unwrap();
            }
        });
        (format!("http://{address}/run"), received)
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
        let (url, received) = stand_in(vec![(200, "{\"text\":\"hello\"}")]).await;
        let output = handler(url).handle(input()).await.unwrap();
        assert_eq!(output.result.as_str(), "{\"text\":\"hello\"}");
        let request = received.lock().await[0].clone();
        assert!(request.starts_with("POST /run"), "{request}");
        assert!(request.contains("{\"prompt\":\"hi\"}"), "{request}");
        assert!(
            request
                .to_ascii_lowercase()
                .contains("authorization: bearer t0ken"),
            "{request}"
        );
        assert!(request.contains("x-herd-attempt: 2"), "{request}");
    }

    #[tokio::test]
    async fn rate_limits_and_server_errors_are_retryable_client_errors_fatal() {
        let (url, _) = stand_in(vec![
            (429, "{\"error\":\"slow down\"}"),
            (503, "{}"),
            (400, "{\"error\":\"bad prompt\"}"),
            (200, "not json"),
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
