//! A typed client of the HTTP API, used by the CLI, the sample cluster, the
//! benchmark and the tests.

use std::path::Path;
use std::time::Duration;

use herd_protocol::messages::orchestrator::{ClusterStatus, TaskPage};
use herd_protocol::{TaskId, TaskView};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Why an API call failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiClientError {
    /// The node answered with an error.
    #[error("{status}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The `code` field of the error body.
        code: String,
        /// The `error` field of the error body.
        message: String,
    },
    /// The node could not be reached.
    #[error("cannot reach the herd API at {base}: {reason}")]
    Transport {
        /// The API base URL.
        base: String,
        /// Why.
        reason: String,
    },
    /// The answer was not what the API documents.
    #[error("unexpected answer from the herd API: {0}")]
    Decode(String),
    /// The CA certificate to trust cannot be used.
    #[error("cannot use the CA certificate {path}: {reason}")]
    CaCertificate {
        /// The file given.
        path: String,
        /// Why.
        reason: String,
    },
}

/// A client of one node's HTTP API.
#[derive(Clone, Debug)]
pub struct ApiClient {
    base: String,
    http: reqwest::Client,
    token: Option<BearerToken>,
}

/// An API token; `Debug` hides it.
#[derive(Clone)]
struct BearerToken(std::sync::Arc<str>);

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl ApiClient {
    /// A client for the API at `base` (e.g. `http://127.0.0.1:8100`, or
    /// `https://…`, verified against the system's trusted CAs).
    pub fn new(base: &str) -> Self {
        let http = Self::http_client(None).expect("a default reqwest client builds");
        Self::with_http(base, http)
    }

    /// A client for the API at `base` that trusts only the CA
    /// certificate(s) in the PEM file `ca_path` for `https://` (like curl's
    /// `--cacert`): for a node whose certificate comes from a private CA,
    /// such as `herd certs`' development CA.
    pub fn with_ca_certificate(base: &str, ca_path: &Path) -> Result<Self, ApiClientError> {
        let failed = |reason: String| ApiClientError::CaCertificate {
            path: ca_path.display().to_string(),
            reason,
        };
        let pem = std::fs::read(ca_path).map_err(|error| failed(error.to_string()))?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|error| failed(format!("not a PEM certificate: {error}")))?;
        if certificates.is_empty() {
            return Err(failed("it holds no PEM certificate".to_string()));
        }
        let http =
            Self::http_client(Some(certificates)).map_err(|error| failed(error.to_string()))?;
        Ok(Self::with_http(base, http))
    }

    fn with_http(base: &str, http: reqwest::Client) -> Self {
        let base = if base.starts_with("http://") || base.starts_with("https://") {
            base.to_string()
        } else {
            format!("http://{base}")
        };
        ApiClient {
            base: base.trim_end_matches('/').to_string(),
            http,
            token: None,
        }
    }

    /// The same client, sending `token` as `Authorization: Bearer` (an
    /// empty token sends none).
    pub fn with_token(mut self, token: Option<&str>) -> Self {
        self.token = token
            .map(str::trim)
            .filter(|token| !token.is_empty())
            .map(|token| BearerToken(token.into()));
        self
    }

    /// A request to `path` with the token, and for `POST`/`PUT` the JSON
    /// content type the API requires even of an empty body.
    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let sends_body = method == Method::POST || method == Method::PUT;
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(&*token.0);
        }
        if sends_body {
            request = request.header(reqwest::header::CONTENT_TYPE, "application/json");
        }
        request
    }

    fn http_client(
        trust_only: Option<Vec<reqwest::Certificate>>,
    ) -> reqwest::Result<reqwest::Client> {
        let mut builder = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .timeout(Duration::from_secs(330));
        if let Some(certificates) = trust_only {
            builder = builder.tls_certs_only(certificates);
        }
        builder.build()
    }

    /// The API base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends `request` and decodes the JSON answer (or the API's error).
    async fn fetch<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, ApiClientError> {
        let response = request.send().await.map_err(|e| self.transport(e))?;
        self.decode(response).await
    }

    async fn decode<T: DeserializeOwned>(
        &self,
        response: reqwest::Response,
    ) -> Result<T, ApiClientError> {
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|error| self.transport(error))?;
        if !status.is_success() {
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            return Err(ApiClientError::Api {
                status: status.as_u16(),
                code: body["code"].as_str().unwrap_or("unknown").to_string(),
                message: body["error"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| String::from_utf8_lossy(&bytes).to_string()),
            });
        }
        serde_json::from_slice(&bytes).map_err(|error| ApiClientError::Decode(error.to_string()))
    }

    fn transport(&self, error: reqwest::Error) -> ApiClientError {
        ApiClientError::Transport {
            base: self.base.clone(),
            reason: error.to_string(),
        }
    }

    /// `POST /v1/tasks` with any JSON body; returns the JSON answer.
    pub async fn submit_raw(&self, body: &Value) -> Result<Value, ApiClientError> {
        self.fetch(self.request(Method::POST, "/v1/tasks").json(body))
            .await
    }

    /// Submits one task; returns its id.
    pub async fn submit(&self, agent_type: &str, payload: Value) -> Result<TaskId, ApiClientError> {
        let answer = self
            .submit_raw(&serde_json::json!({ "agent_type": agent_type, "payload": payload }))
            .await?;
        parse_id(&answer["id"])
    }

    /// Submits an array of task objects; returns their ids in order.
    pub async fn submit_batch(&self, tasks: &[Value]) -> Result<Vec<TaskId>, ApiClientError> {
        let answer = self.submit_raw(&Value::Array(tasks.to_vec())).await?;
        answer["ids"]
            .as_array()
            .ok_or_else(|| ApiClientError::Decode("no ids in the answer".into()))?
            .iter()
            .map(parse_id)
            .collect()
    }

    /// `GET /v1/tasks/{id}`, waiting up to `wait` for it to finish.
    pub async fn task(
        &self,
        id: TaskId,
        wait: Option<Duration>,
    ) -> Result<TaskView, ApiClientError> {
        let mut path = format!("/v1/tasks/{id}");
        if let Some(wait) = wait {
            path.push_str(&format!("?wait={}ms", wait.as_millis()));
        }
        self.fetch(self.request(Method::GET, &path)).await
    }

    /// `GET /v1/tasks?...`.
    pub async fn list(&self, query: &str) -> Result<TaskPage, ApiClientError> {
        self.fetch(self.request(Method::GET, &format!("/v1/tasks?{query}")))
            .await
    }

    /// `POST /v1/tasks/{id}/cancel`.
    pub async fn cancel(&self, id: TaskId) -> Result<Value, ApiClientError> {
        self.fetch(self.request(Method::POST, &format!("/v1/tasks/{id}/cancel")))
            .await
    }

    /// `GET /v1/cluster`.
    pub async fn cluster(&self) -> Result<ClusterStatus, ApiClientError> {
        self.fetch(self.request(Method::GET, "/v1/cluster")).await
    }

    /// `GET /v1/supervision`.
    pub async fn supervision(
        &self,
    ) -> Result<herd_protocol::messages::supervision::SupervisionTree, ApiClientError> {
        self.fetch(self.request(Method::GET, "/v1/supervision"))
            .await
    }

    /// `GET /v1/dead-letters?...`.
    pub async fn dead_letters(&self, query: &str) -> Result<TaskPage, ApiClientError> {
        self.fetch(self.request(Method::GET, &format!("/v1/dead-letters?{query}")))
            .await
    }

    /// `POST /v1/dead-letters/{id}/retry`, optionally with a new payload.
    pub async fn retry_dead_letter(
        &self,
        id: TaskId,
        payload: Option<Value>,
    ) -> Result<Value, ApiClientError> {
        let mut request = self.request(Method::POST, &format!("/v1/dead-letters/{id}/retry"));
        if let Some(payload) = payload {
            request = request.json(&serde_json::json!({ "payload": payload }));
        }
        self.fetch(request).await
    }

    /// `POST /v1/nodes/{name}/drain`.
    pub async fn drain(&self, node: &str) -> Result<Value, ApiClientError> {
        self.fetch(self.request(Method::POST, &format!("/v1/nodes/{node}/drain")))
            .await
    }

    /// `GET /v1/scaling/decisions?limit=N`: newest first.
    pub async fn scaling_decisions(
        &self,
        limit: u32,
    ) -> Result<Vec<herd_protocol::messages::scaling::ScalingDecision>, ApiClientError> {
        self.fetch(self.request(Method::GET, &format!("/v1/scaling/decisions?limit={limit}")))
            .await
    }

    /// `GET /v1/health/report`.
    pub async fn health_report(
        &self,
    ) -> Result<herd_protocol::messages::scaling::SystemHealthReport, ApiClientError> {
        self.fetch(self.request(Method::GET, "/v1/health/report"))
            .await
    }

    /// `PUT /v1/agents/{agent_type}` with `update` (e.g. `{"weight": 0.5}`).
    pub async fn update_agent(
        &self,
        agent_type: &str,
        update: &Value,
    ) -> Result<Value, ApiClientError> {
        self.fetch(
            self.request(Method::PUT, &format!("/v1/agents/{agent_type}"))
                .json(update),
        )
        .await
    }

    /// `PUT /v1/scaling` with `update` (e.g. `{"max_workers": 20}`).
    pub async fn update_scaling(&self, update: &Value) -> Result<Value, ApiClientError> {
        self.fetch(self.request(Method::PUT, "/v1/scaling").json(update))
            .await
    }

    /// `POST` of a JSON body with extra headers, returning status and JSON.
    pub async fn post_json_with_headers(
        &self,
        path: &str,
        body: &Value,
        headers: &[(&str, &str)],
    ) -> Result<(u16, Value), ApiClientError> {
        let mut request = self.request(Method::POST, path).json(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.status_and_json(request).await
    }

    /// `GET` of any path, returning status and body text (e.g. `/metrics`).
    pub async fn get_text(&self, path: &str) -> Result<(u16, String), ApiClientError> {
        let response = self
            .request(Method::GET, path)
            .send()
            .await
            .map_err(|e| self.transport(e))?;
        let status = response.status().as_u16();
        let text = response.text().await.map_err(|e| self.transport(e))?;
        Ok((status, text))
    }

    /// `GET` of any path, returning status and JSON body (for probes).
    pub async fn get_json(&self, path: &str) -> Result<(u16, Value), ApiClientError> {
        self.status_and_json(self.request(Method::GET, path)).await
    }

    /// Sends `request`; returns the status and the body as JSON (`null` if
    /// it is not JSON), whatever the status.
    async fn status_and_json(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<(u16, Value), ApiClientError> {
        let response = request.send().await.map_err(|e| self.transport(e))?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(|e| self.transport(e))?;
        Ok((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }
}

fn parse_id(value: &Value) -> Result<TaskId, ApiClientError> {
    value
        .as_str()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| ApiClientError::Decode(format!("{value} is not a task id")))
}
