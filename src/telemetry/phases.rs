//! Spans for work timed outside the daemon (the monitor's and executor's start phases), with
//! the start and end times they report, as children of the current span.

use std::borrow::Cow;
use std::time::SystemTime;

use opentelemetry::global;
use opentelemetry::trace::{Span as _, TraceContextExt, Tracer as _};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// One reported phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phase {
    /// The span name, e.g. `executor.pivot_root`.
    pub name: Cow<'static, str>,
    /// When it began.
    pub start: SystemTime,
    /// When it ended.
    pub end: SystemTime,
}

/// Records `phases` as finished children of the current `tracing` span. A no-op when traces
/// are off or the current span is not sampled.
pub fn record(phases: &[Phase]) {
    let parent = tracing::Span::current().context();
    if !parent.span().span_context().is_sampled() {
        return;
    }
    let tracer = global::tracer("carrack");
    for phase in phases {
        let mut span = tracer
            .span_builder(phase.name.clone())
            .with_start_time(phase.start)
            .start_with_context(&tracer, &parent);
        span.end_with_timestamp(phase.end.max(phase.start));
    }
}
