//! Runs each RPC inside its `tracing` span, logs its outcome exactly once, records it in the
//! RPC metrics and on the span (gRPC code, error status for the trace), counts the RPCs in
//! flight so that shutdown waits for them (and not for idle client connections), and signals
//! the end of each lifecycle RPC ([`LIFECYCLE_ENDED`]).

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use tokio::sync::Notify;

use tonic::{Code, Response, Status};
use tracing::{Instrument, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::telemetry::metrics;

/// Awaits `work` inside `span`, logs the result with its duration and gRPC code, and wraps a
/// success in a `Response`. `UNIMPLEMENTED` is logged at debug level: kubelet probes optional
/// RPCs on every sync loop and those answers are expected, not failures.
pub async fn rpc<T>(
    span: Span,
    work: impl Future<Output = Result<T, Status>>,
) -> Result<Response<T>, Status> {
    let _in_flight = IN_FLIGHT.enter();
    let started = Instant::now();
    let result = work.instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let elapsed_ms = elapsed.as_secs_f64() * 1e3;
    let code = result.as_ref().map_or_else(Status::code, |_| Code::Ok);
    if let Some(rpc) = span
        .metadata()
        .and_then(|meta| meta.name().strip_prefix("cri."))
    {
        metrics::global().rpc(rpc, code, elapsed);
        if is_lifecycle(rpc) {
            LIFECYCLE_ENDED.notify_one();
        }
    }
    span.set_attribute("rpc.grpc.status_code", code as i64);
    if let Err(status) = &result
        && code != Code::Unimplemented
    {
        span.set_status(opentelemetry::trace::Status::error(
            status.message().to_owned(),
        ));
    }
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

/// Notified (one stored permit) each time a lifecycle RPC ends: the daemon gives back the
/// memory such bursts leave resident once they are over (`daemon::memory_trim`).
pub static LIFECYCLE_ENDED: Notify = Notify::const_new();

/// Whether `rpc` (a CRI method name) creates, starts, stops or removes something, or pulls:
/// the work that faults in code a node's steady state does not run. The polls kubelet
/// repeats every second (lists, statuses, stats) and exec probes are not.
fn is_lifecycle(rpc: &str) -> bool {
    ["Run", "Create", "Start", "Stop", "Remove", "Pull"]
        .iter()
        .any(|verb| rpc.starts_with(verb))
}

/// The RPCs being served right now.
pub static IN_FLIGHT: InFlight = InFlight {
    count: AtomicUsize::new(0),
    idle: Notify::const_new(),
};

/// A count of running RPCs that can be awaited until it reaches zero.
#[derive(Debug)]
pub struct InFlight {
    count: AtomicUsize,
    idle: Notify,
}

/// Marks one RPC as running until dropped (also when its future is cancelled).
#[derive(Debug)]
pub struct InFlightGuard<'a>(&'a InFlight);

impl InFlight {
    fn enter(&self) -> InFlightGuard<'_> {
        self.count.fetch_add(1, Ordering::SeqCst);
        InFlightGuard(self)
    }

    /// Returns once no RPC is running.
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.count.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// The client's deadline from the `grpc-timeout` header (`<digits><H|M|S|m|u|n>`), as an
/// instant on our clock; `None` without a (valid) header.
pub fn client_deadline(metadata: &tonic::metadata::MetadataMap) -> Option<Instant> {
    let value = metadata.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    let amount: u64 = digits.parse().ok()?;
    let timeout = match unit {
        "H" => std::time::Duration::from_secs(amount.checked_mul(3600)?),
        "M" => std::time::Duration::from_secs(amount.checked_mul(60)?),
        "S" => std::time::Duration::from_secs(amount),
        "m" => std::time::Duration::from_millis(amount),
        "u" => std::time::Duration::from_micros(amount),
        "n" => std::time::Duration::from_nanos(amount),
        _ => return None,
    };
    Instant::now().checked_add(timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_rpcs_are_told_from_polls_and_probes() {
        for rpc in [
            "RunPodSandbox",
            "StopPodSandbox",
            "RemovePodSandbox",
            "CreateContainer",
            "StartContainer",
            "StopContainer",
            "RemoveContainer",
            "PullImage",
            "RemoveImage",
        ] {
            assert!(is_lifecycle(rpc), "{rpc}");
        }
        for rpc in [
            "ListPodSandbox",
            "PodSandboxStatus",
            "ListContainers",
            "ContainerStatus",
            "ListContainerStats",
            "ImageFsInfo",
            "Status",
            "Version",
            "ExecSync",
        ] {
            assert!(!is_lifecycle(rpc), "{rpc}");
        }
    }
}
