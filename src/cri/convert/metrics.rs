//! Pod and container usage → the cAdvisor-style metrics of `ListPodSandboxMetrics`, and the
//! descriptors of `ListMetricDescriptors`.
//!
//! kubelet (`PodAndContainerStatsFromCRI`) reads the descriptors once and re-exports every
//! metric on `/metrics/cadvisor` as a Prometheus series of the descriptor with the same
//! name, with the metric's label values matched to the descriptor's label keys by position; a
//! metric without a descriptor, or with a different number of labels, is dropped. So both
//! lists come from one table, [`METRICS`], and every metric is built through its entry.
//!
//! Names, labels and types follow cAdvisor's: the common labels are `container`, `id`,
//! `image`, `namespace` and `pod` (`container` empty for the pod's own cgroup and network, as
//! cAdvisor reports the pod cgroup). Values are integers (CRI's `UInt64Value`), so CPU seconds
//! are whole seconds, as in CRI-O.

use crate::container::ContainerUsage;
use crate::proto;
use crate::sandbox::{InterfaceUsage, PodUsage};
use crate::store::{ContainerRecord, PodRecord};

/// The labels of every metric, in order.
const COMMON_LABELS: [&str; 5] = ["container", "id", "image", "namespace", "pod"];

/// One metric family: the descriptor's content plus the value type.
#[derive(Debug)]
pub struct MetricDef {
    name: &'static str,
    help: &'static str,
    /// Labels after [`COMMON_LABELS`].
    extra_labels: &'static [&'static str],
    kind: proto::MetricType,
}

const fn counter(
    name: &'static str,
    help: &'static str,
    extra_labels: &'static [&'static str],
) -> MetricDef {
    MetricDef {
        name,
        help,
        extra_labels,
        kind: proto::MetricType::Counter,
    }
}

const fn gauge(name: &'static str, help: &'static str) -> MetricDef {
    MetricDef {
        name,
        help,
        extra_labels: &[],
        kind: proto::MetricType::Gauge,
    }
}

const CPU_USAGE: MetricDef = counter(
    "container_cpu_usage_seconds_total",
    "Cumulative CPU time consumed, in seconds.",
    &["cpu"],
);
const MEMORY_USAGE: MetricDef = gauge(
    "container_memory_usage_bytes",
    "Current memory usage in bytes, including all memory regardless of when it was accessed.",
);
const MEMORY_WORKING_SET: MetricDef = gauge(
    "container_memory_working_set_bytes",
    "Current working set in bytes.",
);
const MEMORY_RSS: MetricDef = gauge("container_memory_rss", "Size of RSS in bytes.");
const MEMORY_FAILURES: MetricDef = counter(
    "container_memory_failures_total",
    "Cumulative count of memory allocation failures.",
    &["failure_type", "scope"],
);
const OOM_EVENTS: MetricDef = counter(
    "container_oom_events_total",
    "Count of out of memory events observed for the container.",
    &[],
);
const PROCESSES: MetricDef = gauge(
    "container_processes",
    "Number of processes running inside the container.",
);
const FS_USAGE: MetricDef = gauge(
    "container_fs_usage_bytes",
    "Number of bytes consumed by the container's writable layer.",
);
const FS_INODES_USAGE: MetricDef = gauge(
    "container_fs_inodes_usage",
    "Number of inodes used by the container's writable layer.",
);
const NETWORK_RECEIVE_BYTES: MetricDef = counter(
    "container_network_receive_bytes_total",
    "Cumulative count of bytes received.",
    &["interface"],
);
const NETWORK_RECEIVE_ERRORS: MetricDef = counter(
    "container_network_receive_errors_total",
    "Cumulative count of errors encountered while receiving.",
    &["interface"],
);
const NETWORK_TRANSMIT_BYTES: MetricDef = counter(
    "container_network_transmit_bytes_total",
    "Cumulative count of bytes transmitted.",
    &["interface"],
);
const NETWORK_TRANSMIT_ERRORS: MetricDef = counter(
    "container_network_transmit_errors_total",
    "Cumulative count of errors encountered while transmitting.",
    &["interface"],
);

/// Every metric Carrack reports.
pub const METRICS: [&MetricDef; 13] = [
    &CPU_USAGE,
    &MEMORY_USAGE,
    &MEMORY_WORKING_SET,
    &MEMORY_RSS,
    &MEMORY_FAILURES,
    &OOM_EVENTS,
    &PROCESSES,
    &FS_USAGE,
    &FS_INODES_USAGE,
    &NETWORK_RECEIVE_BYTES,
    &NETWORK_RECEIVE_ERRORS,
    &NETWORK_TRANSMIT_BYTES,
    &NETWORK_TRANSMIT_ERRORS,
];

/// The `ListMetricDescriptors` reply's descriptors.
pub fn descriptors() -> Vec<proto::MetricDescriptor> {
    METRICS
        .iter()
        .map(|def| proto::MetricDescriptor {
            name: def.name.to_owned(),
            help: def.help.to_owned(),
            label_keys: COMMON_LABELS
                .iter()
                .chain(def.extra_labels)
                .map(|key| (*key).to_owned())
                .collect(),
        })
        .collect()
}

/// Builds the metrics of one cgroup (a pod's or a container's) at one moment.
struct Emitter {
    common: [String; 5],
    timestamp: i64,
    metrics: Vec<proto::Metric>,
}

impl Emitter {
    /// `value` of `def` with `extra` label values (one per `def.extra_labels`); nothing when
    /// the value is unknown.
    fn emit(&mut self, def: &MetricDef, extra: &[&str], value: Option<u64>) {
        let Some(value) = value else {
            return;
        };
        debug_assert_eq!(extra.len(), def.extra_labels.len(), "{}", def.name);
        self.metrics.push(proto::Metric {
            name: def.name.to_owned(),
            timestamp: self.timestamp,
            metric_type: def.kind.into(),
            label_values: self
                .common
                .iter()
                .cloned()
                .chain(extra.iter().map(|value| (*value).to_owned()))
                .collect(),
            value: Some(proto::UInt64Value { value }),
        });
    }

    fn cgroup(&mut self, stats: &crate::cgroups::CgroupStats) {
        const SECOND_NS: u64 = 1_000_000_000;
        self.emit(
            &CPU_USAGE,
            &["total"],
            stats.cpu_usage_ns.map(|ns| ns / SECOND_NS),
        );
        self.emit(&MEMORY_USAGE, &[], stats.memory_usage_bytes);
        self.emit(&MEMORY_WORKING_SET, &[], stats.memory_working_set_bytes);
        self.emit(&MEMORY_RSS, &[], stats.memory_rss_bytes);
        // cAdvisor's `pgfault` counts every fault, `pgmajfault` the major ones.
        self.emit(
            &MEMORY_FAILURES,
            &["pgfault", "container"],
            stats.page_faults,
        );
        self.emit(
            &MEMORY_FAILURES,
            &["pgmajfault", "container"],
            stats.major_page_faults,
        );
        self.emit(&OOM_EVENTS, &[], stats.oom_kills);
        self.emit(&PROCESSES, &[], stats.pids_current);
    }

    fn interface(&mut self, interface: &InterfaceUsage) {
        let name = [interface.name.as_str()];
        self.emit(&NETWORK_RECEIVE_BYTES, &name, Some(interface.rx_bytes));
        self.emit(&NETWORK_RECEIVE_ERRORS, &name, Some(interface.rx_errors));
        self.emit(&NETWORK_TRANSMIT_BYTES, &name, Some(interface.tx_bytes));
        self.emit(&NETWORK_TRANSMIT_ERRORS, &name, Some(interface.tx_errors));
    }
}

/// A pod's metrics: its cgroup and interfaces (`container` label empty), then each
/// container's cgroup and writable layer.
pub fn pod_metrics(
    pod: &PodRecord,
    usage: Option<&PodUsage>,
    containers: &[(std::sync::Arc<ContainerRecord>, ContainerUsage)],
) -> proto::PodSandboxMetrics {
    let mut metrics = Vec::new();
    if let Some(usage) = usage {
        let mut pod_level = Emitter {
            common: [
                String::new(),
                pod.id.clone(),
                String::new(),
                pod.metadata.namespace.clone(),
                pod.metadata.name.clone(),
            ],
            timestamp: usage.timestamp_ns,
            metrics: Vec::new(),
        };
        pod_level.cgroup(&usage.cgroup);
        for interface in &usage.interfaces {
            pod_level.interface(interface);
        }
        metrics = pod_level.metrics;
    }
    let container_metrics = containers
        .iter()
        .map(|(container, usage)| {
            let mut emitter = Emitter {
                common: [
                    container.metadata.name.clone(),
                    container.id.clone(),
                    container.image_ref.clone(),
                    pod.metadata.namespace.clone(),
                    pod.metadata.name.clone(),
                ],
                timestamp: usage.timestamp_ns,
                metrics: Vec::new(),
            };
            emitter.cgroup(&usage.cgroup);
            emitter.emit(&FS_USAGE, &[], Some(usage.writable_layer.bytes));
            emitter.emit(&FS_INODES_USAGE, &[], Some(usage.writable_layer.inodes));
            proto::ContainerMetrics {
                container_id: container.id.clone(),
                metrics: emitter.metrics,
            }
        })
        .collect();
    proto::PodSandboxMetrics {
        pod_sandbox_id: pod.id.clone(),
        metrics,
        container_metrics,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::CgroupStats;
    use std::collections::HashMap;
    use std::sync::Arc;

    fn full_stats() -> CgroupStats {
        CgroupStats {
            cpu_usage_ns: Some(3_500_000_000),
            memory_usage_bytes: Some(10),
            memory_working_set_bytes: Some(8),
            memory_rss_bytes: Some(4),
            page_faults: Some(100),
            major_page_faults: Some(1),
            pids_current: Some(2),
            oom_kills: Some(0),
        }
    }

    fn records() -> (PodRecord, Arc<ContainerRecord>) {
        let pod: PodRecord = serde_json::from_value(serde_json::json!({
            "id": "pod1", "name_key": "k",
            "metadata": {"name": "web", "uid": "u", "namespace": "prod", "attempt": 0},
            "state": "ready", "created_at_ns": 1, "labels": {}, "annotations": {},
            "runtime_handler": "", "hostname": "", "log_directory": "", "dns": null,
            "port_mappings": [], "namespaces": crate::store::NamespaceModes::default(), "sysctls": {}, "privileged": false,
            "cgroup_parent": "", "cgroup_path": "", "cgroup_created": [], "pod_dir": "",
            "netns_path": null, "ipcns_path": null, "utsns_path": null, "shm_path": null,
            "ip": null, "additional_ips": [], "network_attached": false,
        }))
        .unwrap();
        let container: ContainerRecord = serde_json::from_value(serde_json::json!({
            "id": "c1", "pod_id": "pod1", "name_key": "c",
            "metadata": {"name": "app", "uid": "u", "namespace": "prod", "attempt": 0},
            "image_ref": "docker.io/library/busybox@sha256:1", "image_id": "sha256:1",
            "state": "running", "created_at_ns": 5, "labels": {}, "annotations": {},
            "image_spec": "busybox", "log_path": "", "log_path_relative": "",
            "cgroup_path": "", "cgroup_created": [], "stop_signal": 15, "tty": false,
            "stdin": false, "stdin_once": false, "mounts": [], "user": null,
            "started_at_ns": 6, "finished_at_ns": 0, "exit_code": 0, "reason": "",
            "message": "", "pid": 0, "monitor_pid": 0,
        }))
        .unwrap();
        (pod, Arc::new(container))
    }

    #[test]
    fn every_metric_has_its_descriptor_and_every_descriptor_is_used() {
        let (pod, container) = records();
        let usage = PodUsage {
            timestamp_ns: 7,
            cgroup: full_stats(),
            interfaces: vec![InterfaceUsage {
                name: "eth0".to_owned(),
                rx_bytes: 1,
                rx_errors: 0,
                tx_bytes: 2,
                tx_errors: 0,
            }],
        };
        let container_usage = ContainerUsage {
            timestamp_ns: 7,
            cgroup: full_stats(),
            ..ContainerUsage::default()
        };
        let metrics = pod_metrics(&pod, Some(&usage), &[(container, container_usage)]);
        let descriptors: HashMap<String, proto::MetricDescriptor> = descriptors()
            .into_iter()
            .map(|descriptor| (descriptor.name.clone(), descriptor))
            .collect();
        assert_eq!(descriptors.len(), METRICS.len(), "names are unique");
        let all: Vec<&proto::Metric> = metrics
            .metrics
            .iter()
            .chain(metrics.container_metrics.iter().flat_map(|c| &c.metrics))
            .collect();
        for metric in &all {
            let descriptor = &descriptors[&metric.name];
            assert_eq!(
                metric.label_values.len(),
                descriptor.label_keys.len(),
                "{}",
                metric.name
            );
        }
        let used: std::collections::HashSet<&str> =
            all.iter().map(|metric| metric.name.as_str()).collect();
        assert_eq!(used.len(), descriptors.len(), "unused: {used:?}");
        let cpu = all
            .iter()
            .find(|m| m.name == "container_cpu_usage_seconds_total" && m.label_values[0] == "app")
            .unwrap();
        assert_eq!(cpu.value.as_ref().unwrap().value, 3);
        assert_eq!(
            cpu.label_values,
            [
                "app",
                "c1",
                "docker.io/library/busybox@sha256:1",
                "prod",
                "web",
                "total"
            ]
        );
        assert_eq!(cpu.metric_type, i32::from(proto::MetricType::Counter));
    }

    #[test]
    fn unknown_figures_are_left_out() {
        let (pod, container) = records();
        let metrics = pod_metrics(&pod, None, &[(container, ContainerUsage::default())]);
        assert!(metrics.metrics.is_empty());
        let names: Vec<&str> = metrics.container_metrics[0]
            .metrics
            .iter()
            .map(|m| m.name.as_str())
            .collect();
        assert_eq!(
            names,
            ["container_fs_usage_bytes", "container_fs_inodes_usage"]
        );
    }
}
