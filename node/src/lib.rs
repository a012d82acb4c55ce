//! The `herd` binary as a library: the command line ([`cli`]), the HTTP API
//! ([`api`]), telemetry setup ([`telemetry`]), a launcher for local
//! multi-process clusters ([`local_cluster`]) used by the sample, the
//! benchmark and the integration tests, and a stand-in LLM provider for
//! development and tests ([`llm_stub`]).

pub mod api;
pub mod api_client;
pub mod bench;
pub mod bench_failover;
pub mod bench_idle;
pub mod bench_leader;
pub mod bench_llm;
pub mod bench_scaling;
pub mod cli;
pub mod http_server;
pub mod json_log;
pub mod llm_stub;
pub mod llm_stub_process;
pub mod local_cluster;
pub mod metrics_exporter;
pub mod telemetry;
pub mod trace_export;
