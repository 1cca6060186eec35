//! The bounded queue between finished spans and the OTLP exporter.
//!
//! A span ends on the thread that served the RPC; it is only put on a bounded channel there
//! (never waiting: when the channel is full the span is dropped and counted). A tokio task
//! batches the queue and exports, with a timeout per request, so an unreachable or slow
//! collector costs spans, never RPC latency. We use this instead of the SDK's batch
//! processor because that one runs exports on a thread outside the tokio runtime (which the
//! tonic and reqwest clients need) and does not expose its drop count.

use std::time::Duration;

use opentelemetry::Context;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::metrics;

/// How the export queue batches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSettings {
    /// Spans waiting at most; more are dropped.
    pub capacity: usize,
    /// Spans per export request at most.
    pub max_batch: usize,
    /// How long a span may wait for a batch to fill.
    pub interval: Duration,
    /// How long one export request may take.
    pub timeout: Duration,
}

enum Message {
    Span(Box<SpanData>),
    /// Export what is queued, then answer.
    Flush(oneshot::Sender<()>),
}

/// The span processor feeding the export task.
#[derive(Debug)]
pub struct ExportQueue {
    sender: mpsc::Sender<Message>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Span(_) => "Span",
            Self::Flush(_) => "Flush",
        })
    }
}

impl ExportQueue {
    /// Spawns the export task on the current tokio runtime.
    pub fn start<E: SpanExporter + 'static>(exporter: E, settings: QueueSettings) -> Self {
        let (sender, receiver) = mpsc::channel(settings.capacity);
        tokio::spawn(run(exporter, receiver, settings));
        Self { sender }
    }

    /// A flush handle for this queue.
    pub fn flusher(&self) -> Flusher {
        Flusher(self.sender.clone())
    }
}

/// A handle that can flush the queue from async code (at shutdown).
#[derive(Debug, Clone)]
pub struct Flusher(mpsc::Sender<Message>);

impl Flusher {
    /// Exports everything queued so far; gives up after `timeout`.
    pub async fn flush(&self, timeout: Duration) {
        let (done, answered) = oneshot::channel();
        if self.0.send(Message::Flush(done)).await.is_ok() {
            let _ = tokio::time::timeout(timeout, answered).await;
        }
    }
}

impl SpanProcessor for ExportQueue {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        if self.sender.try_send(Message::Span(Box::new(span))).is_err() {
            metrics::global().span_dropped("queue_full", 1);
        }
    }

    /// Flushing is asynchronous here (see [`Flusher`]): this is called from the tracer
    /// provider on runtime threads, where blocking on the export task could deadlock.
    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Err(OTelSdkError::InternalFailure(
            "the export queue stops with the runtime; flush it with Flusher".to_owned(),
        ))
    }
}

async fn run<E: SpanExporter>(
    exporter: E,
    mut receiver: mpsc::Receiver<Message>,
    settings: QueueSettings,
) {
    let mut batch = Vec::with_capacity(settings.max_batch);
    let mut waiting = Vec::new();
    while let Some(first) = receiver.recv().await {
        let deadline = Instant::now() + settings.interval;
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Span(span) => batch.push(*span),
                Message::Flush(done) => {
                    waiting.push(done);
                    break;
                }
            }
            if batch.len() >= settings.max_batch {
                break;
            }
            next = tokio::time::timeout_at(deadline, receiver.recv())
                .await
                .ok()
                .flatten();
        }
        if !batch.is_empty() {
            let spans = std::mem::replace(&mut batch, Vec::with_capacity(settings.max_batch));
            let count = spans.len() as u64;
            match tokio::time::timeout(settings.timeout, exporter.export(spans)).await {
                Ok(Ok(())) => metrics::global().spans_exported(count),
                Ok(Err(err)) => {
                    metrics::global().span_dropped("export_failed", count);
                    tracing::debug!(error = %err, spans = count, "span export failed");
                }
                Err(_) => {
                    metrics::global().span_dropped("export_timeout", count);
                    tracing::debug!(spans = count, "span export timed out");
                }
            }
        }
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
}
