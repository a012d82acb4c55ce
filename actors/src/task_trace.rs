//! OpenTelemetry spans of a task's life: `herd.submit` where it enters the
//! cluster, `herd.queue` (waiting) and `herd.assign` (sent to a pool) on the
//! orchestrator, `herd.execute` on the worker, `herd.complete` when the
//! orchestrator records the outcome. The W3C `traceparent` travels inside
//! the task (`TaskSpec::trace_context`, `TaskAssignment::trace_context`), so
//! one trace covers a task submitted on one node and run on another.
//!
//! Spans go to whatever tracer provider the process installed globally
//! (`herd node` installs an OTLP exporter when `OTEL_EXPORTER_OTLP_ENDPOINT`
//! is set). Untraced tasks cost nothing: spans are made only for tasks that
//! carry a trace context, and only while [`enabled`] says a provider exists.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue, global};
use opentelemetry_sdk::propagation::TraceContextPropagator;

/// The instrumentation scope of herd's spans.
const SCOPE: &str = "herd";

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Says a tracer provider is installed: spans are worth making.
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Whether spans are being exported.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The context a W3C `traceparent` names (empty if absent or malformed).
pub fn context_from(traceparent: Option<&str>) -> Context {
    let Some(value) = traceparent else {
        return Context::new();
    };
    let carrier = std::collections::HashMap::from([("traceparent".to_string(), value.to_string())]);
    TraceContextPropagator::new().extract(&carrier)
}

/// The `traceparent` of `context`'s span, if it is a valid one.
pub fn traceparent_of(context: &Context) -> Option<String> {
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = std::collections::HashMap::new();
    TraceContextPropagator::new().inject_context(context, &mut carrier);
    carrier.remove("traceparent")
}

/// A started span with the context its children use.
pub struct TaskSpan {
    context: Context,
}

impl TaskSpan {
    /// Starts `name` as a child of `parent` (a root span when there is none),
    /// optionally back-dated to `start`.
    pub fn start(
        name: &'static str,
        kind: SpanKind,
        parent: Option<&str>,
        start: Option<SystemTime>,
        attributes: Vec<KeyValue>,
    ) -> TaskSpan {
        let tracer = global::tracer(SCOPE);
        let mut builder = tracer
            .span_builder(name)
            .with_kind(kind)
            .with_attributes(attributes);
        if let Some(start) = start {
            builder = builder.with_start_time(start);
        }
        let span = builder.start_with_context(&tracer, &context_from(parent));
        TaskSpan {
            context: Context::new().with_span(span),
        }
    }

    /// The `traceparent` children of this span carry.
    pub fn traceparent(&self) -> Option<String> {
        traceparent_of(&self.context)
    }

    /// Adds an attribute.
    pub fn set(&self, attribute: KeyValue) {
        self.context.span().set_attribute(attribute);
    }

    /// Marks the span failed with `message`.
    pub fn fail(&self, message: impl Into<String>) {
        self.context
            .span()
            .set_status(Status::error(message.into()));
    }

    /// Ends the span now.
    pub fn end(self) {
        self.context.span().end();
    }

    /// Ends the span at `at`.
    pub fn end_at(self, at: SystemTime) {
        self.context.span().end_with_timestamp(at);
    }
}

/// A wall-clock instant from Unix milliseconds.
pub fn at(unix_millis: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(unix_millis)
}

/// Records a finished span `start..end` under `parent` in one call.
pub fn record(
    name: &'static str,
    parent: &str,
    start: SystemTime,
    end: SystemTime,
    attributes: Vec<KeyValue>,
) {
    TaskSpan::start(
        name,
        SpanKind::Internal,
        Some(parent),
        Some(start),
        attributes,
    )
    .end_at(end);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparents_round_trip_and_garbage_is_ignored() {
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            traceparent_of(&context_from(Some(parent))).as_deref(),
            Some(parent)
        );
        assert_eq!(
            traceparent_of(&context_from(Some("not a traceparent"))),
            None
        );
        assert_eq!(traceparent_of(&context_from(None)), None);
    }
}
