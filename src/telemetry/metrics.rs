//! The Prometheus metrics registry: every metric Carrack exports, recorded from the RPC
//! wrapper, from finished spans ([`super::span_metrics`]) and, at scrape time, from the daemon's
//! census of pods and containers and from `/proc/self`.

use std::fmt::Write as _;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use super::process::ProcessCollector;

/// Latency buckets (seconds): sub-second steps for the quick RPCs, then exactly kubelet's
/// pod-start SLI buckets (`kubelet_pod_start_sli_duration_seconds`), so a runtime histogram
/// and kubelet's can be read against the same boundaries.
pub const LATENCY_BUCKETS: [f64; 32] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, // runtime-only, below kubelet's first bucket
    0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 20.0, 30.0, 45.0, 60.0, 120.0, 180.0, 240.0,
    300.0, 360.0, 480.0, 600.0, 900.0, 1200.0, 1800.0, 2700.0, 3600.0,
];

/// Layer unpack throughput buckets, bytes per second (1 MiB/s to 4 GiB/s).
const THROUGHPUT_BUCKETS: [f64; 8] = [
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
    67_108_864.0,
    134_217_728.0,
    268_435_456.0,
    1_073_741_824.0,
    4_294_967_296.0,
];

/// Labels of an RPC sample.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    /// The CRI method, e.g. `RunPodSandbox`.
    pub rpc: String,
    /// The gRPC status code name, e.g. `OK`, `NotFound`.
    pub code: String,
}

/// Labels of a CNI plugin run.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginLabels {
    /// The plugin `type`, e.g. `bridge`.
    pub plugin: String,
    /// `ADD`, `DEL`, `CHECK`, `STATUS`.
    pub command: String,
}

/// A single-label set.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    /// The state, result or reason.
    pub state: String,
}

/// Counts taken by the daemon at scrape time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Census {
    /// Pods per state (`ready`, `notready`).
    pub pods: Vec<(String, i64)>,
    /// Containers per state (`created`, `running`, `exited`, `unknown`).
    pub containers: Vec<(String, i64)>,
    /// Running monitor processes.
    pub monitors: i64,
    /// Their summed resident memory.
    pub monitor_rss_bytes: i64,
}

type CensusSource = Box<dyn Fn() -> Census + Send + Sync>;

/// Every metric, and the registry that renders them.
pub struct Metrics {
    registry: Registry,
    rpc_requests: Family<RpcLabels, Counter>,
    rpc_duration: Family<RpcLabels, Histogram, fn() -> Histogram>,
    pods: Family<StateLabel, Gauge>,
    containers: Family<StateLabel, Gauge>,
    monitors: Gauge,
    monitor_rss: Gauge,
    pulls: Family<StateLabel, Counter>,
    pull_duration: Histogram,
    pull_bytes: Counter,
    pull_layers: Counter,
    unpack_throughput: Histogram,
    cni_duration: Family<PluginLabels, Histogram, fn() -> Histogram>,
    cni_failures: Family<PluginLabels, Counter>,
    reconciler_removals: Family<StateLabel, Counter>,
    spans_exported: Counter,
    spans_dropped: Family<StateLabel, Counter>,
    census: Mutex<Option<CensusSource>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

static GLOBAL: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process-wide metrics (recorded whether or not the endpoint is served: a few atomic
/// increments per RPC).
pub fn global() -> &'static Metrics {
    &GLOBAL
}

impl Metrics {
    /// A registry with every metric at zero.
    pub fn new() -> Self {
        let mut root = Registry::default();
        // Process metrics carry the conventional unprefixed `process_` names.
        root.register_collector(Box::new(ProcessCollector));
        let registry = root.sub_registry_with_prefix("carrack");
        let rpc_requests = Family::<RpcLabels, Counter>::default();
        let rpc_duration: Family<RpcLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        let pods = Family::<StateLabel, Gauge>::default();
        let containers = Family::<StateLabel, Gauge>::default();
        let monitors = Gauge::default();
        let monitor_rss = Gauge::default();
        let pulls = Family::<StateLabel, Counter>::default();
        let pull_duration = latency_histogram();
        let pull_bytes = Counter::default();
        let pull_layers = Counter::default();
        let unpack_throughput = Histogram::new(THROUGHPUT_BUCKETS);
        let cni_duration: Family<PluginLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        let cni_failures = Family::<PluginLabels, Counter>::default();
        let reconciler_removals = Family::<StateLabel, Counter>::default();
        let spans_exported = Counter::default();
        let spans_dropped = Family::<StateLabel, Counter>::default();

        let cri = registry.sub_registry_with_prefix("cri");
        cri.register(
            "requests",
            "CRI RPCs served, by method and gRPC code",
            rpc_requests.clone(),
        );
        cri.register_with_unit(
            "request_duration",
            "CRI RPC latency, by method and gRPC code",
            Unit::Seconds,
            rpc_duration.clone(),
        );
        registry.register("pods", "Pod sandboxes by state", pods.clone());
        registry.register("containers", "Containers by state", containers.clone());
        registry.register("monitors", "Running monitor processes", monitors.clone());
        registry.register_with_unit(
            "monitor_resident_memory",
            "Resident memory of all monitor processes",
            Unit::Bytes,
            monitor_rss.clone(),
        );
        let image = registry.sub_registry_with_prefix("image");
        image.register("pulls", "Image pulls by result (ok, error)", pulls.clone());
        image.register_with_unit(
            "pull_duration",
            "Image pull duration",
            Unit::Seconds,
            pull_duration.clone(),
        );
        image.register_with_unit(
            "pull",
            "Compressed layer bytes downloaded",
            Unit::Bytes,
            pull_bytes.clone(),
        );
        image.register(
            "pull_layers",
            "Layers downloaded and unpacked",
            pull_layers.clone(),
        );
        image.register(
            "unpack_bytes_per_second",
            "Layer unpack throughput (uncompressed bytes written per second of fetch+unpack)",
            unpack_throughput.clone(),
        );
        let cni = registry.sub_registry_with_prefix("cni");
        cni.register_with_unit(
            "plugin_duration",
            "CNI plugin run time, by plugin type and command",
            Unit::Seconds,
            cni_duration.clone(),
        );
        cni.register(
            "plugin_failures",
            "CNI plugin runs that failed, by plugin type and command",
            cni_failures.clone(),
        );
        registry.register(
            "reconciler_removals",
            "Leftovers removed by the reconcilers (at start and periodically) and by the stores as they open, and CNI DELs owed after a crash that a retry finished, by kind",
            reconciler_removals.clone(),
        );
        let traces = registry.sub_registry_with_prefix("trace");
        traces.register(
            "spans_exported",
            "Spans accepted by the OTLP collector",
            spans_exported.clone(),
        );
        traces.register(
            "spans_dropped",
            "Spans lost, by reason (queue_full, export_failed, export_timeout)",
            spans_dropped.clone(),
        );
        Self {
            registry: root,
            rpc_requests,
            rpc_duration,
            pods,
            containers,
            monitors,
            monitor_rss,
            pulls,
            pull_duration,
            pull_bytes,
            pull_layers,
            unpack_throughput,
            cni_duration,
            cni_failures,
            reconciler_removals,
            spans_exported,
            spans_dropped,
            census: Mutex::new(None),
        }
    }

    /// Records one served RPC (a `PullImage` also as an image pull).
    pub fn rpc(&self, rpc: &str, code: tonic::Code, elapsed: Duration) {
        if rpc == "PullImage" {
            self.pull(code == tonic::Code::Ok, elapsed);
        }
        let labels = RpcLabels {
            rpc: rpc.to_owned(),
            code: code_name(code).to_owned(),
        };
        self.rpc_requests.get_or_create(&labels).inc();
        self.rpc_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// Records one image pull.
    fn pull(&self, ok: bool, elapsed: Duration) {
        let state = if ok { "ok" } else { "error" };
        self.pulls
            .get_or_create(&StateLabel {
                state: state.to_owned(),
            })
            .inc();
        self.pull_duration.observe(elapsed.as_secs_f64());
    }

    /// Records one downloaded and unpacked layer.
    pub fn layer(&self, compressed_bytes: u64, unpacked_bytes: u64, elapsed: Duration) {
        self.pull_layers.inc();
        self.pull_bytes.inc_by(compressed_bytes);
        let seconds = elapsed.as_secs_f64();
        if seconds > 0.0 {
            self.unpack_throughput
                .observe(unpacked_bytes as f64 / seconds);
        }
    }

    /// Records one CNI plugin run.
    pub fn cni_plugin(&self, plugin: &str, command: &str, ok: bool, elapsed: Duration) {
        let labels = PluginLabels {
            plugin: plugin.to_owned(),
            command: command.to_owned(),
        };
        self.cni_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        if !ok {
            self.cni_failures.get_or_create(&labels).inc();
        }
    }

    /// Records what the reconciler removed, by kind.
    pub fn reconciler_removed(&self, kind: &str, count: u64) {
        self.reconciler_removals
            .get_or_create(&StateLabel {
                state: kind.to_owned(),
            })
            .inc_by(count);
    }

    pub(super) fn spans_exported(&self, count: u64) {
        self.spans_exported.inc_by(count);
    }

    pub(super) fn span_dropped(&self, reason: &str, count: u64) {
        self.spans_dropped
            .get_or_create(&StateLabel {
                state: reason.to_owned(),
            })
            .inc_by(count);
    }

    /// Installs the function that counts pods, containers and monitors at each scrape.
    pub fn set_census(&self, source: impl Fn() -> Census + Send + Sync + 'static) {
        *self
            .census
            .lock()
            .unwrap_or_else(|poison| poison.into_inner()) = Some(Box::new(source));
    }

    /// The Prometheus text exposition of every metric, with the census taken now.
    pub fn render(&self) -> String {
        let census = self
            .census
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .as_ref()
            .map(|source| source());
        if let Some(census) = census {
            set_states(&self.pods, &census.pods);
            set_states(&self.containers, &census.containers);
            self.monitors.set(census.monitors);
            self.monitor_rss.set(census.monitor_rss_bytes);
        }
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            // Encoding into a String only fails on a metric's own formatting bug.
            let _ = writeln!(text, "# encoding the metrics failed");
        }
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn set_states(family: &Family<StateLabel, Gauge>, counts: &[(String, i64)]) {
    family.clear();
    for (state, count) in counts {
        family
            .get_or_create(&StateLabel {
                state: state.clone(),
            })
            .set(*count);
    }
}

/// The canonical gRPC code names (`OK`, `NotFound`, ...), as kubelet and grpc-go print them.
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_contain_kubelets_pod_start_sli_buckets() {
        let kubelet = [
            0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 20.0, 30.0, 45.0, 60.0, 120.0, 180.0,
            240.0, 300.0, 360.0, 480.0, 600.0, 900.0, 1200.0, 1800.0, 2700.0, 3600.0,
        ];
        assert!(kubelet.iter().all(|bound| LATENCY_BUCKETS.contains(bound)));
        assert!(LATENCY_BUCKETS.windows(2).all(|pair| pair[0] < pair[1]));
    }

    #[test]
    fn render_shows_rpc_counter_histogram_and_census() {
        let metrics = Metrics::new();
        metrics.rpc("RunPodSandbox", tonic::Code::Ok, Duration::from_millis(700));
        metrics.rpc("RunPodSandbox", tonic::Code::Ok, Duration::from_millis(30));
        metrics.rpc("StopPodSandbox", tonic::Code::NotFound, Duration::ZERO);
        metrics.cni_plugin("bridge", "ADD", false, Duration::from_millis(5));
        metrics.set_census(|| Census {
            pods: vec![("ready".to_owned(), 2)],
            containers: vec![("running".to_owned(), 3), ("exited".to_owned(), 1)],
            monitors: 3,
            monitor_rss_bytes: 3 << 20,
        });
        let text = metrics.render();
        for expected in [
            "carrack_cri_requests_total{rpc=\"RunPodSandbox\",code=\"OK\"} 2",
            "carrack_cri_requests_total{rpc=\"StopPodSandbox\",code=\"NotFound\"} 1",
            "carrack_cri_request_duration_seconds_bucket{le=\"0.05\",rpc=\"RunPodSandbox\",code=\"OK\"} 1",
            "carrack_cri_request_duration_seconds_bucket{le=\"1.0\",rpc=\"RunPodSandbox\",code=\"OK\"} 2",
            "carrack_cri_request_duration_seconds_count{rpc=\"RunPodSandbox\",code=\"OK\"} 2",
            "carrack_cni_plugin_failures_total{plugin=\"bridge\",command=\"ADD\"} 1",
            "carrack_pods{state=\"ready\"} 2",
            "carrack_containers{state=\"running\"} 3",
            "carrack_monitors 3",
            "carrack_monitor_resident_memory_bytes 3145728",
            "# TYPE process_resident_memory_bytes gauge",
            "# TYPE process_cpu_seconds counter",
            "process_cpu_seconds_total ",
        ] {
            assert!(text.contains(expected), "missing `{expected}` in:\n{text}");
        }
    }
}
