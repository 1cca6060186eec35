//! Spans for work timed outside the daemon (the monitor's and executor's start steps), with
//! the start and end times they report, as children of a daemon span.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::global;
use opentelemetry::trace::{Span as _, TraceContextExt, Tracer as _};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The trace position of a daemon span, kept so that reported phases can be attached to it
/// after the span itself has ended.
#[derive(Debug, Clone)]
pub struct Parent(opentelemetry::Context);

impl Parent {
    /// The position of `span`.
    pub fn of(span: &tracing::Span) -> Self {
        Self(span.context())
    }

    /// Records `(name, start_ns, end_ns)` phases (ns since the epoch) as finished children.
    /// A no-op when traces are off or the parent is not sampled.
    pub fn record<'a>(&self, phases: impl IntoIterator<Item = (&'a str, i64, i64)>) {
        if !self.0.span().span_context().is_sampled() {
            return;
        }
        let tracer = global::tracer("carrack");
        for (name, start_ns, end_ns) in phases {
            let (start, end) = (at(start_ns), at(end_ns.max(start_ns)));
            let mut span = tracer
                .span_builder(name.to_owned())
                .with_start_time(start)
                .start_with_context(&tracer, &self.0);
            span.end_with_timestamp(end);
        }
    }
}

fn at(ns: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(u64::try_from(ns).unwrap_or(0))
}
