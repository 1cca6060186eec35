//! Runs each RPC inside its `tracing` span and logs its outcome exactly once.

use std::future::Future;
use std::time::Instant;

use tonic::{Code, Response, Status};
use tracing::{Instrument, Span};

/// Awaits `work` inside `span`, logs the result with its duration and gRPC code, and wraps a
/// success in a `Response`. `UNIMPLEMENTED` is logged at debug level: kubelet probes optional
/// RPCs on every sync loop and those answers are expected, not failures.
pub async fn rpc<T>(
    span: Span,
    work: impl Future<Output = Result<T, Status>>,
) -> Result<Response<T>, Status> {
    let started = Instant::now();
    let result = work.instrument(span.clone()).await;
    let elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
    span.in_scope(|| match &result {
        Ok(_) => tracing::debug!(elapsed_ms, "ok"),
        Err(status) if status.code() == Code::Unimplemented => {
            tracing::debug!(elapsed_ms, message = status.message(), "unimplemented");
        }
        Err(status) => tracing::warn!(
            elapsed_ms,
            code = ?status.code(),
            message = status.message(),
            "failed"
        ),
    });
    result.map(Response::new)
}
