//! OTLP traces from real `herd` processes reach a collector started in the
//! test — one built on `opentelemetry-proto`'s generated gRPC service, one
//! accepting OTLP/HTTP protobuf — and a task submitted on one node and run on
//! another is one trace with correct parent/child links.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use herd_node::local_cluster::free_ports;
use herd_tests::{
    DEADLINE, NodeSpec, dev_certs, eventually, start_cluster, temp_dir, with_deadline,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;
use serde_json::json;

/// One received span, flattened.
#[derive(Clone, Debug)]
struct Received {
    name: String,
    node: String,
    service: String,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent_span_id: Vec<u8>,
    attributes: BTreeMap<String, String>,
}

#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Received>>>,
}

impl Collector {
    fn take(&self, request: ExportTraceServiceRequest) {
        let mut spans = self.spans.lock().unwrap();
        for resource_spans in request.resource_spans {
            let resource: BTreeMap<String, String> = resource_spans
                .resource
                .map(|r| r.attributes)
                .unwrap_or_default()
                .into_iter()
                .map(|kv| (kv.key, text(kv.value.and_then(|v| v.value))))
                .collect();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    spans.push(Received {
                        name: span.name,
                        node: resource
                            .get("service.instance.id")
                            .cloned()
                            .unwrap_or_default(),
                        service: resource.get("service.name").cloned().unwrap_or_default(),
                        trace_id: span.trace_id,
                        span_id: span.span_id,
                        parent_span_id: span.parent_span_id,
                        attributes: span
                            .attributes
                            .into_iter()
                            .map(|kv| (kv.key, text(kv.value.and_then(|v| v.value))))
                            .collect(),
                    });
                }
            }
        }
    }

    fn spans(&self) -> Vec<Received> {
        self.spans.lock().unwrap().clone()
    }
}

fn text(value: Option<AnyValue>) -> String {
    match value {
        Some(AnyValue::StringValue(s)) => s,
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.take(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

fn start_grpc_collector() -> (Collector, SocketAddr) {
    let collector = Collector::default();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_ports(1)[0]).parse().unwrap();
    let service = TraceServiceServer::new(collector.clone());
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve(addr)
            .await
            .expect("collector serves");
    });
    (collector, addr)
}

async fn start_http_collector() -> (Collector, SocketAddr) {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = http_collector_routes(&collector);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (collector, addr)
}

/// `POST /v1/traces` (OTLP/HTTP protobuf) into `collector`.
fn http_collector_routes(collector: &Collector) -> axum::Router {
    let sink = collector.clone();
    axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: Bytes| {
            let sink = sink.clone();
            async move {
                let request = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                sink.take(request);
                ExportTraceServiceResponse {
                    partial_success: None,
                }
                .encode_to_vec()
            }
        }),
    )
}

/// The OTLP/HTTP collector over TLS, with `herd certs`' certificate for
/// `collector` (it names 127.0.0.1), served by herd's own HTTPS server.
async fn start_https_collector(certs: &Path) -> (Collector, SocketAddr) {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = http_collector_routes(&collector);
    let tls = tokio_rustls::TlsAcceptor::from(Arc::new(tls_server_config(certs)));
    tokio::spawn(async move {
        herd_node::http_server::serve_with_tls(
            listener,
            app,
            &herd_config::HttpServerSettings::default(),
            Some(tls),
            std::future::pending(),
        )
        .await
        .unwrap()
    });
    (collector, addr)
}

/// The gRPC collector over TLS, with the same certificate.
fn start_grpcs_collector(certs: &Path) -> (Collector, SocketAddr) {
    let collector = Collector::default();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_ports(1)[0]).parse().unwrap();
    let service = TraceServiceServer::new(collector.clone());
    let identity = tonic::transport::Identity::from_pem(
        std::fs::read(certs.join("collector.pem")).unwrap(),
        std::fs::read(certs.join("collector.key")).unwrap(),
    );
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
            .expect("tls config")
            .add_service(service)
            .serve(addr)
            .await
            .expect("collector serves");
    });
    (collector, addr)
}

fn tls_server_config(certs: &Path) -> rustls::ServerConfig {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(certs.join("collector.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(certs.join("collector.key")).unwrap();
    rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap()
}

fn otel_env(endpoint: &str, protocol: &str) -> Vec<(String, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT".into(), endpoint.into()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL".into(), protocol.into()),
        ("OTEL_SERVICE_NAME".into(), "herd-under-test".into()),
        (
            "OTEL_RESOURCE_ATTRIBUTES".into(),
            "deployment.environment=test".into(),
        ),
        ("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into()),
    ]
}

fn find<'a>(spans: &'a [Received], name: &str, trace: &[u8]) -> Option<&'a Received> {
    spans.iter().find(|s| s.name == name && s.trace_id == trace)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_submitted_on_one_node_and_run_on_another_is_one_trace_over_grpc() {
    with_deadline(DEADLINE, async {
        let (collector, addr) = start_grpc_collector();
        let env = otel_env(&format!("http://{addr}"), "grpc");
        // n1 orchestrates and takes submissions but runs no tasks: every task
        // runs on n2.
        let specs = vec![
            NodeSpec {
                env: env.clone(),
                ..NodeSpec::new("n1", "orchestrator,monitor", 0)
            },
            NodeSpec {
                env,
                ..NodeSpec::new("n2", "worker,monitor", 2)
            },
        ];
        let mut cluster = start_cluster(specs).await;
        let api = cluster.api("n1");
        let id = api.submit("echo", json!({ "traced": true })).await.unwrap();
        let view = api.task(id, Some(Duration::from_secs(10))).await.unwrap();
        assert_eq!(view.node.as_ref().map(|n| n.as_str()), Some("n2"));

        let task_id = id.to_string();
        let spans = eventually(
            Duration::from_secs(20),
            "the task's spans reach the collector",
            || {
                let collector = collector.clone();
                let task_id = task_id.clone();
                async move {
                    let spans = collector.spans();
                    let execute = spans.iter().find(|s| {
                        s.name == "herd.execute"
                            && s.attributes.get("herd.task_id") == Some(&task_id)
                    })?;
                    let complete = find(&spans, "herd.complete", &execute.trace_id)?;
                    let _ = complete;
                    Some(spans)
                }
            },
        )
        .await;
        let execute = spans
            .iter()
            .find(|s| {
                s.name == "herd.execute" && s.attributes.get("herd.task_id") == Some(&task_id)
            })
            .unwrap();
        let trace = execute.trace_id.clone();
        let submit = find(&spans, "herd.submit", &trace).expect("the submit span shares the trace");
        assert_eq!(submit.node, "n1");
        assert_eq!(execute.node, "n2", "{execute:?}");
        assert_eq!(submit.service, "herd-under-test");
        assert!(
            submit.parent_span_id.is_empty(),
            "submit is the root: {submit:?}"
        );
        assert_eq!(
            execute.parent_span_id, submit.span_id,
            "execute is a child of submit"
        );
        for name in ["herd.queue", "herd.assign", "herd.complete"] {
            let span = find(&spans, name, &trace)
                .unwrap_or_else(|| panic!("no {name} span in {spans:#?}"));
            assert_eq!(span.node, "n1", "{name} is recorded by the orchestrator");
            assert_eq!(
                span.parent_span_id, submit.span_id,
                "{name} is a child of submit"
            );
        }
        assert_eq!(
            find(&spans, "herd.assign", &trace)
                .unwrap()
                .attributes
                .get("herd.assigned_to")
                .map(String::as_str),
            Some("n2")
        );
        cluster.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_also_go_over_otlp_http_and_continue_the_callers_trace() {
    with_deadline(DEADLINE, async {
        let (collector, addr) = start_http_collector().await;
        let env = otel_env(&format!("http://{addr}"), "http/protobuf");
        let specs = vec![NodeSpec {
            env,
            ..NodeSpec::new("n1", "orchestrator,worker,monitor", 2)
        }];
        let mut cluster = start_cluster(specs).await;
        // A caller's trace context, as a W3C header.
        let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        let caller_span = "00f067aa0ba902b7";
        let api = cluster.api("n1");
        let (status, body) = api
            .post_json_with_headers(
                "/v1/tasks",
                &json!({ "agent_type": "sleep", "payload": { "ms": 10 } }),
                &[(
                    "traceparent",
                    &format!("00-{caller_trace}-{caller_span}-01"),
                )],
            )
            .await
            .unwrap();
        assert_eq!(status, 202, "{body}");
        let trace = hex(caller_trace);
        let spans = eventually(
            Duration::from_secs(20),
            "the spans arrive over HTTP",
            || {
                let collector = collector.clone();
                let trace = trace.clone();
                async move {
                    let spans = collector.spans();
                    (find(&spans, "herd.execute", &trace).is_some()
                        && find(&spans, "herd.complete", &trace).is_some())
                    .then_some(spans)
                }
            },
        )
        .await;
        let submit = find(&spans, "herd.submit", &trace).unwrap();
        assert_eq!(
            submit.parent_span_id,
            hex(caller_span),
            "submit continues the caller's span"
        );
        let execute = find(&spans, "herd.execute", &trace).unwrap();
        assert_eq!(execute.parent_span_id, submit.span_id);
        cluster.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_reach_https_collectors_over_grpc_and_http_trusting_a_private_ca() {
    with_deadline(DEADLINE, async {
        let dir = temp_dir("otlp-tls").unwrap();
        let certs = dev_certs(dir.path(), &["collector"]);
        let ca = certs.join("ca.pem").display().to_string();
        let (grpc, grpc_addr) = start_grpcs_collector(&certs);
        let (http, http_addr) = start_https_collector(&certs).await;
        for (collector, endpoint, protocol) in [
            (grpc, format!("https://{grpc_addr}"), "grpc"),
            (http, format!("https://{http_addr}"), "http/protobuf"),
        ] {
            let mut env = otel_env(&endpoint, protocol);
            env.push(("OTEL_EXPORTER_OTLP_CERTIFICATE".into(), ca.clone()));
            let specs = vec![NodeSpec {
                env,
                ..NodeSpec::new("n1", "orchestrator,worker,monitor", 1)
            }];
            let mut cluster = start_cluster(specs).await;
            let api = cluster.api("n1");
            let id = api
                .submit("echo", json!({ "over": protocol }))
                .await
                .unwrap();
            let task_id = id.to_string();
            eventually(
                Duration::from_secs(20),
                &format!("the task's spans reach the {protocol} collector over TLS"),
                || {
                    let spans = collector.spans();
                    let task_id = task_id.clone();
                    async move {
                        spans
                            .iter()
                            .any(|s| {
                                s.name == "herd.execute"
                                    && s.attributes.get("herd.task_id") == Some(&task_id)
                            })
                            .then_some(())
                    }
                },
            )
            .await;
            cluster.stop().await;
        }
    })
    .await;
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}
