//! Telemetry switches for the program that runs a node. herd records metrics
//! through the `metrics` facade and logs through `tracing`; the program
//! installs the recorder, subscriber and trace exporter it wants.

/// Gives every herd metric its description and unit in the installed
/// recorder (call once, after installing it).
pub fn describe_metrics() {
    crate::metrics_catalog::describe();
}

/// Makes herd emit task spans (`herd.submit`, `herd.queue`, `herd.assign`,
/// `herd.execute`, `herd.complete`) through the global OpenTelemetry tracer
/// provider; call after installing one. Only tasks that carry a trace context
/// get spans.
pub fn enable_task_traces() {
    crate::task_trace::enable();
}
