//! OTLP trace export, configured by the standard OpenTelemetry variables:
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`)
//! turns it on; `OTEL_EXPORTER_OTLP_PROTOCOL` picks `grpc` or
//! `http/protobuf` (the default, as the specification says);
//! `OTEL_SERVICE_NAME` (default `herd`) and `OTEL_RESOURCE_ATTRIBUTES` name
//! the service; `OTEL_TRACES_EXPORTER=none` turns it off; `OTEL_BSP_*` tune
//! batching. Off unless configured.

use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig};
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
        // The builders read the endpoint, headers and timeout from the
        // environment themselves.
        let exporter = match protocol.trim() {
            "grpc" => SpanExporter::builder().with_tonic().build(),
            "http/protobuf" => SpanExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .build(),
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
