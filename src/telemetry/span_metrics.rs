//! Metrics derived from the phase spans other modules open with plain `tracing` macros, so
//! that leaf modules (CNI, image pull) feed Prometheus without depending on telemetry:
//!
//! - `pull.layer` (fields `compressed_bytes`, `unpacked_bytes`): layers, bytes, throughput;
//! - `cni.plugin` (fields `plugin`, `command`, `error` on failure): plugin duration, failures.

use std::collections::HashMap;
use std::time::Instant;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Metadata, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use super::metrics;

/// The spans this layer turns into metrics.
pub const METERED_SPANS: [&str; 2] = ["pull.layer", "cni.plugin"];

/// Whether the layer wants `metadata`: the metered spans, and the CRI RPC spans (keeping those
/// enabled even when the log filter is quiet lets the RPC wrapper name the RPC it counts).
pub fn wants(metadata: &Metadata<'_>) -> bool {
    metadata.is_span()
        && (METERED_SPANS.contains(&metadata.name()) || metadata.name().starts_with("cri."))
}

/// The layer; add it with a `filter_fn(wants)` filter.
#[derive(Debug, Default)]
pub struct SpanMetrics;

/// What a metered span has recorded so far.
#[derive(Debug)]
struct Timing {
    started: Instant,
    text: HashMap<&'static str, String>,
    numbers: HashMap<&'static str, u64>,
}

impl Visit for Timing {
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.numbers.insert(field.name(), value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.numbers
            .insert(field.name(), u64::try_from(value).unwrap_or(0));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.text.insert(field.name(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.text.insert(field.name(), format!("{value:?}"));
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for SpanMetrics {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if !METERED_SPANS.contains(&attrs.metadata().name()) {
            return;
        }
        let Some(span) = ctx.span(id) else { return };
        let mut timing = Timing {
            started: Instant::now(),
            text: HashMap::new(),
            numbers: HashMap::new(),
        };
        attrs.record(&mut timing);
        span.extensions_mut().insert(timing);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        if let Some(timing) = span.extensions_mut().get_mut::<Timing>() {
            values.record(timing);
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(timing) = span.extensions_mut().remove::<Timing>() else {
            return;
        };
        let elapsed = timing.started.elapsed();
        let ok = !timing.text.contains_key("error");
        let text = |name: &str| timing.text.get(name).map_or("", String::as_str);
        let number = |name: &str| timing.numbers.get(name).copied().unwrap_or(0);
        let metrics = metrics::global();
        match span.name() {
            "pull.layer" if ok && number("unpacked_bytes") > 0 => {
                metrics.layer(
                    number("compressed_bytes"),
                    number("unpacked_bytes"),
                    elapsed,
                );
            }
            "cni.plugin" => metrics.cni_plugin(text("plugin"), text("command"), ok, elapsed),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::filter::filter_fn;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    #[test]
    fn cni_plugin_span_becomes_duration_and_failure() {
        let subscriber =
            tracing_subscriber::registry().with(SpanMetrics.with_filter(filter_fn(wants)));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(
                "cni.plugin",
                plugin = "unit-test-plugin",
                command = "ADD",
                error = tracing::field::Empty
            );
            span.record("error", "exit status 1");
            drop(span);
        });
        let text = metrics::global().render();
        assert!(
            text.contains(
                "carrack_cni_plugin_failures_total{plugin=\"unit-test-plugin\",command=\"ADD\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "carrack_cni_plugin_duration_seconds_count{plugin=\"unit-test-plugin\",command=\"ADD\"} 1"
            ),
            "{text}"
        );
    }
}
