//! OTLP trace export, configured by the standard OpenTelemetry variables:
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`)
//! turns it on; `OTEL_EXPORTER_OTLP_PROTOCOL` picks `grpc` or
//! `http/protobuf` (the default, as the specification says);
//! `OTEL_SERVICE_NAME` (default `herd`) and `OTEL_RESOURCE_ATTRIBUTES` name
//! the service; `OTEL_TRACES_EXPORTER=none` turns it off; `OTEL_BSP_*` tune
//! batching. Off unless configured.
//!
//! `https://` endpoints work with either protocol (rustls, the system's
//! trusted CAs); `OTEL_EXPORTER_OTLP_CERTIFICATE` (or its `_TRACES_` form)
//! adds a CA certificate (PEM) to trust, for a collector with a private CA.

use opentelemetry::KeyValue;
use std::time::Duration;

use opentelemetry_otlp::{
    Protocol, SpanExporter, WithExportConfig, WithHttpConfig, WithTonicConfig,
};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;

/// Why trace export could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TraceExportError {
    /// An unsupported protocol.
    #[error("{var}={value:?} is not supported; use grpc (port 4317) or http/protobuf (port 4318)")]
    Protocol {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
    },
    /// The CA certificate to trust cannot be used.
    #[error(
        "{var}={path}: {reason}; give the PEM file of the CA that signed the collector's certificate"
    )]
    Certificate {
        /// The variable.
        var: &'static str,
        /// Its value.
        path: String,
        /// Why.
        reason: String,
    },
    /// The exporter could not be built (e.g. a malformed endpoint).
    #[error(
        "OTLP trace export cannot start: {0}; check OTEL_EXPORTER_OTLP_ENDPOINT (e.g. http://collector:4317 for grpc)"
    )]
    Build(String),
}

/// The installed exporter; flush it with [`TraceExport::shutdown`].
pub struct TraceExport {
    provider: SdkTracerProvider,
}

impl TraceExport {
    /// Sets up export from `env` if configured. Must run inside the tokio
    /// runtime (the gRPC client lives on it).
    pub fn from_env(
        env: &dyn Fn(&str) -> Option<String>,
        node: &str,
    ) -> Result<Option<TraceExport>, TraceExportError> {
        let set = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        if set("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim() == "none") {
            return Ok(None);
        }
        let endpoint = set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .or_else(|| set("OTEL_EXPORTER_OTLP_ENDPOINT"));
        if endpoint.is_none() {
            return Ok(None);
        }
        let (var, protocol) = match set("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") {
            Some(value) => ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", value),
            None => (
                "OTEL_EXPORTER_OTLP_PROTOCOL",
                set("OTEL_EXPORTER_OTLP_PROTOCOL").unwrap_or_else(|| "http/protobuf".to_string()),
            ),
        };
        herd_actors::tls::install_default_crypto_provider();
        let certificate = certificate(&set)?;
        let https = endpoint
            .as_deref()
            .is_some_and(|e| e.trim().starts_with("https://"));
        // The builders read the endpoint, headers and timeout from the
        // environment themselves.
        let exporter = match protocol.trim() {
            "grpc" => {
                let mut builder = SpanExporter::builder().with_tonic();
                if let (Some(pem), true) = (&certificate, https) {
                    let tls = tonic::transport::ClientTlsConfig::new()
                        .with_enabled_roots()
                        .ca_certificate(tonic::transport::Certificate::from_pem(pem));
                    builder = builder.with_tls_config(tls);
                }
                builder.build()
            }
            "http/protobuf" => {
                let mut builder = SpanExporter::builder()
                    .with_http()
                    .with_protocol(Protocol::HttpBinary);
                if let Some(pem) = certificate {
                    builder = builder.with_http_client(http_client_trusting(pem, timeout(&set))?);
                }
                builder.build()
            }
            other => {
                return Err(TraceExportError::Protocol {
                    var,
                    value: other.to_string(),
                });
            }
        }
        .map_err(|error| TraceExportError::Build(error.to_string()))?;
        let mut resource = Resource::builder()
            .with_attribute(KeyValue::new("service.instance.id", node.to_string()));
        if set("OTEL_SERVICE_NAME").is_none() {
            resource = resource.with_service_name("herd");
        }
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build();
        opentelemetry::global::set_tracer_provider(provider.clone());
        herd_actors::telemetry::enable_task_traces();
        Ok(Some(TraceExport { provider }))
    }

    /// Exports what is buffered and stops.
    pub fn shutdown(self) {
        if let Err(error) = self.provider.shutdown() {
            tracing::warn!(%error, "could not flush the last spans");
        }
    }
}

/// The PEM of `OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE` or
/// `OTEL_EXPORTER_OTLP_CERTIFICATE`, if set.
fn certificate(set: &dyn Fn(&str) -> Option<String>) -> Result<Option<Vec<u8>>, TraceExportError> {
    let Some((var, path)) = [
        "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
        "OTEL_EXPORTER_OTLP_CERTIFICATE",
    ]
    .into_iter()
    .find_map(|var| set(var).map(|path| (var, path))) else {
        return Ok(None);
    };
    let failed = |reason: String| TraceExportError::Certificate {
        var,
        path: path.clone(),
        reason,
    };
    let pem = std::fs::read(path.trim()).map_err(|error| failed(error.to_string()))?;
    // Parsed here only to refuse a wrong file at startup.
    let parsed = reqwest_otlp::Certificate::from_pem_bundle(&pem)
        .map_err(|error| failed(format!("not a PEM certificate: {error}")))?;
    if parsed.is_empty() {
        return Err(failed("it holds no PEM certificate".to_string()));
    }
    Ok(Some(pem))
}

/// The export timeout (`OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`,
/// `OTEL_EXPORTER_OTLP_TIMEOUT`, in milliseconds; 10 s by default), which
/// the exporter applies only to a client it builds itself.
fn timeout(set: &dyn Fn(&str) -> Option<String>) -> Duration {
    [
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
        "OTEL_EXPORTER_OTLP_TIMEOUT",
    ]
    .into_iter()
    .find_map(|var| set(var).and_then(|ms| ms.trim().parse::<u64>().ok()))
    .map_or(Duration::from_secs(10), Duration::from_millis)
}

/// The OTLP/HTTP client, trusting `pem`'s CA certificates besides the
/// system's. Built on a thread of its own, like the exporter's default: a
/// blocking client may not be built or dropped on the async runtime.
fn http_client_trusting(
    pem: Vec<u8>,
    timeout: Duration,
) -> Result<reqwest_otlp::blocking::Client, TraceExportError> {
    std::thread::spawn(move || {
        let mut builder = reqwest_otlp::blocking::Client::builder().timeout(timeout);
        for certificate in reqwest_otlp::Certificate::from_pem_bundle(&pem)? {
            builder = builder.add_root_certificate(certificate);
        }
        builder.build()
    })
    .join()
    .map_err(|_| TraceExportError::Build("the HTTP client could not be built".to_string()))?
    .map_err(|error| TraceExportError::Build(error.to_string()))
}
