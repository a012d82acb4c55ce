//! `/metrics`: the Prometheus text exposition of everything herd records,
//! rendered by `metrics-exporter-prometheus`.

use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Bucket bounds (seconds) for every `*_seconds` histogram: sub-millisecond
/// scheduling up to five-minute tasks, so p50/p95/p99 can be derived with
/// `histogram_quantile`.
const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0, 300.0,
];

/// Installs the process-wide recorder, labelling every series with `node`.
/// Returns `None` if a recorder is already installed (e.g. an embedding
/// program installed its own).
pub fn install(node: &str) -> Option<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .add_global_label("node", node)
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_string()), SECONDS_BUCKETS)
        .ok()?
        .install_recorder()
        .ok()?;
    herd_actors::telemetry::describe_metrics();
    // Histograms are drained into their buckets on upkeep.
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    Some(handle)
}
