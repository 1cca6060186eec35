//! The census behind the pod, container and monitor gauges, taken at each metrics scrape.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::store::{ContainerState, PodState, Store};
use crate::telemetry::metrics::Census;
use crate::telemetry::process;

/// A census source over `store`; monitor memory is read under `proc_root`.
pub fn census(store: Arc<Store>, proc_root: PathBuf) -> impl Fn() -> Census + Send + Sync {
    move || {
        let mut pods = BTreeMap::<String, i64>::new();
        for pod in store.pods.list() {
            let state = match pod.state {
                PodState::Ready => "ready",
                PodState::NotReady => "notready",
            };
            *pods.entry(state.to_owned()).or_default() += 1;
        }
        let mut containers = BTreeMap::<String, i64>::new();
        let mut census = Census::default();
        // A monitor can serve several containers: count each process once.
        let mut monitor_pids = std::collections::BTreeSet::new();
        for container in store.containers.list() {
            let state = match container.state {
                ContainerState::Created => "created",
                ContainerState::Running => "running",
                ContainerState::Exited => "exited",
                ContainerState::Unknown => "unknown",
            };
            *containers.entry(state.to_owned()).or_default() += 1;
            if container.state == ContainerState::Running
                && container.monitor_pid > 0
                && monitor_pids.insert(container.monitor_pid)
                && let Some(rss) = process::resident_bytes(&proc_root, container.monitor_pid)
            {
                census.monitors += 1;
                census.monitor_rss_bytes += i64::try_from(rss).unwrap_or(i64::MAX);
            }
        }
        census.pods = pods.into_iter().collect();
        census.containers = containers.into_iter().collect();
        census
    }
}
