//! Reconciler passes: the pod and container reconcilers remove what no record and no create in
//! flight owns. One pass runs at start (before serving); with
//! `[recovery] reconcile_interval_secs` set, more run while RPCs are served. Each pass logs and
//! counts (the `reconciler_removals` metric) what it removed. The leftovers the stores remove
//! when they open (half-written records, blobs and layers) and the CNI DELs owed by a crash
//! that the teardown retries finish are counted in the same metric, each under its own kind.

use std::sync::Arc;
use std::time::Duration;

use crate::container::{ContainerService, ReconcileReport};
use crate::sandbox::{PodReconcileReport, SandboxService};
use crate::telemetry::metrics;

/// Runs the pod reconciler, then logs and counts what it removed.
pub(super) fn pods(sandboxes: &SandboxService) {
    let report = sandboxes.reconcile();
    record_pods(&report);
}

/// Runs the container reconciler, then logs and counts what it removed.
pub(super) fn containers(containers: &ContainerService) {
    let report = containers.reconcile();
    record_containers(&report);
}

/// Runs both reconcilers every `interval`, off the async workers (they read directories and
/// `/proc`). Never returns; the daemon aborts it at shutdown.
pub(super) async fn periodic(
    pod_service: Arc<SandboxService>,
    container_service: Arc<ContainerService>,
    interval: Duration,
) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    // A pass that overran the interval is followed by one pause, not a burst of passes.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let pod_service = Arc::clone(&pod_service);
        let container_service = Arc::clone(&container_service);
        let pass = tokio::task::spawn_blocking(move || {
            let _span = tracing::debug_span!("daemon.reconcile").entered();
            // Pods first, as at start: a pod init must be gone before its cgroup can go.
            pods(&pod_service);
            containers(&container_service);
        });
        if let Err(err) = pass.await {
            tracing::error!(error = %err, "reconciler pass failed");
        }
    }
}

/// Counts `count` leftovers of `kind` removed outside a reconciler pass (by a store as it
/// opened, or a finished CNI DEL).
pub(super) fn leftover_removed(kind: &str, count: usize) {
    metrics::global().reconciler_removed(kind, count as u64);
}

fn record_pods(report: &PodReconcileReport) {
    for (kind, count) in [
        ("pod_dirs", report.pod_dirs),
        ("pod_cgroups", report.cgroups),
        ("pod_inits", report.pod_inits),
    ] {
        metrics::global().reconciler_removed(kind, count as u64);
    }
    if *report != PodReconcileReport::default() {
        tracing::info!(
            pod_dirs = report.pod_dirs,
            cgroups = report.cgroups,
            pod_inits = report.pod_inits,
            failed = report.failed,
            "reconciler removed pod leftovers"
        );
    }
}

fn record_containers(report: &ReconcileReport) {
    for (kind, count) in [
        ("runtime_dirs", report.runtime_dirs),
        ("writable_layers", report.writable_layers),
        ("cgroups", report.cgroups),
    ] {
        metrics::global().reconciler_removed(kind, count as u64);
    }
    if *report != ReconcileReport::default() {
        tracing::info!(
            runtime_dirs = report.runtime_dirs,
            writable_layers = report.writable_layers,
            cgroups = report.cgroups,
            failed = report.failed,
            "reconciler removed leftovers"
        );
    }
}
