//! Container figures: one busybox `sleep` container per pod, its create, start, stop and
//! remove timed one after another, the same with the pod's start counted in, and a burst of
//! pods with one container each started at once; the runtimes take turns as in the pod steps.
//!
//! The container is configured like kubelet configures a plain container of a BestEffort pod:
//! image by ID, the kubelet labels and annotations, a CRI log file under the pod's log
//! directory, CPU shares 2 and oom_score_adj 1000, the default masked and read-only paths,
//! own PID namespace, pod network and IPC. No volume mounts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use carrack::proto;
use tokio::task::JoinSet;

use crate::client::{Runtime, bounded};
use crate::images::BenchImage;
use crate::pods::{self, Settings};
use crate::report::{Writer, median, percentile};

/// The container's name in its pod.
const CONTAINER_NAME: &str = "sleeper";

/// The container's command. As PID 1 of its own PID namespace `sleep` has no handler for
/// SIGTERM, so the kernel drops that signal: stops use [`STOP_TIMEOUT`] 0 (SIGKILL at once).
pub const COMMAND: [&str; 2] = ["sleep", "3600"];

/// `StopContainer` timeout in seconds, the same for both runtimes.
pub const STOP_TIMEOUT: i64 = 0;

/// Paths kubelet masks in a container with the default `procMount`.
const MASKED_PATHS: [&str; 11] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths kubelet makes read-only in a container with the default `procMount`.
const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// What the containers run and where their logs go.
#[derive(Debug, Clone)]
pub struct Workload {
    /// The image's ID (`sha256:` of its config), which kubelet passes to `CreateContainer`.
    pub image_id: String,
    /// The reference it was pulled by.
    pub reference: String,
    /// Pod log directories are `<log_root>/<runtime>/<pod name>`.
    pub log_root: PathBuf,
}

impl Workload {
    /// The workload running `image`, logging under `log_root`.
    pub fn new(image: &BenchImage, log_root: &Path) -> Workload {
        Workload {
            image_id: image.image_id.clone(),
            reference: image.reference.clone(),
            log_root: log_root.to_path_buf(),
        }
    }

    /// The pod config of `pods`, with a log directory, which is created here as kubelet does
    /// before `RunPodSandbox`.
    fn pod_config(
        &self,
        settings: &Settings,
        runtime: &str,
        tag: &str,
    ) -> Result<proto::PodSandboxConfig> {
        let mut config = settings.pod_config(runtime, tag);
        let name = config
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        let dir = self.log_root.join(runtime).join(name);
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        config.log_directory = dir.to_string_lossy().into_owned();
        Ok(config)
    }

    /// The container config kubelet would send for a plain `sleep` container in `pod`.
    fn container_config(&self, pod: &proto::PodSandboxConfig) -> proto::ContainerConfig {
        let metadata = pod.metadata.clone().unwrap_or_default();
        let strings = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        proto::ContainerConfig {
            metadata: Some(proto::ContainerMetadata {
                name: CONTAINER_NAME.to_owned(),
                attempt: 0,
            }),
            image: Some(proto::ImageSpec {
                image: self.image_id.clone(),
                user_specified_image: self.reference.clone(),
                ..Default::default()
            }),
            command: COMMAND.iter().map(|s| (*s).to_owned()).collect(),
            envs: [
                ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
                ("KUBERNETES_SERVICE_PORT", "443"),
            ]
            .iter()
            .map(|(k, v)| proto::KeyValue {
                key: (*k).to_owned(),
                value: v.as_bytes().to_vec(),
            })
            .collect(),
            labels: strings(&[
                ("io.kubernetes.container.name", CONTAINER_NAME),
                ("io.kubernetes.pod.name", &metadata.name),
                ("io.kubernetes.pod.namespace", &metadata.namespace),
                ("io.kubernetes.pod.uid", &metadata.uid),
            ]),
            annotations: strings(&[
                ("io.kubernetes.container.hash", "5a1b2c3d"),
                ("io.kubernetes.container.restartCount", "0"),
                (
                    "io.kubernetes.container.terminationMessagePath",
                    "/dev/termination-log",
                ),
                ("io.kubernetes.container.terminationMessagePolicy", "File"),
                ("io.kubernetes.pod.terminationGracePeriod", "30"),
            ]),
            log_path: format!("{CONTAINER_NAME}/0.log"),
            linux: Some(proto::LinuxContainerConfig {
                resources: Some(proto::LinuxContainerResources {
                    cpu_period: 100_000,
                    cpu_shares: 2,
                    oom_score_adj: 1000,
                    ..Default::default()
                }),
                security_context: Some(proto::LinuxContainerSecurityContext {
                    namespace_options: Some(proto::NamespaceOption {
                        network: proto::NamespaceMode::Pod as i32,
                        pid: proto::NamespaceMode::Container as i32,
                        ipc: proto::NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                    masked_paths: MASKED_PATHS.iter().map(|s| (*s).to_owned()).collect(),
                    readonly_paths: READONLY_PATHS.iter().map(|s| (*s).to_owned()).collect(),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }
    }
}

/// A running pod with its one container.
#[derive(Debug, Clone)]
pub struct PodWithContainer {
    /// The pod sandbox.
    pub pod_id: String,
    /// Its container.
    pub container_id: String,
}

/// Latencies of starting a pod with its container.
#[derive(Debug, Clone, Copy)]
struct StartTimes {
    run_pod: Duration,
    create: Duration,
    start: Duration,
}

/// Latencies of one container's lifecycle.
#[derive(Debug, Clone, Copy)]
struct Lifecycle {
    started: StartTimes,
    stop: Duration,
    remove: Duration,
}

/// `CreateContainer`; returns the id and the latency.
async fn create_container(
    runtime: &mut Runtime,
    pod_id: &str,
    pod_config: &proto::PodSandboxConfig,
    config: proto::ContainerConfig,
    limit: Duration,
) -> Result<(String, Duration)> {
    let start = Instant::now();
    let reply = bounded(
        "CreateContainer",
        limit,
        runtime
            .runtime
            .create_container(proto::CreateContainerRequest {
                pod_sandbox_id: pod_id.to_owned(),
                config: Some(config),
                sandbox_config: Some(pod_config.clone()),
            }),
    )
    .await?;
    Ok((reply.container_id, start.elapsed()))
}

/// `StartContainer`; returns the latency.
async fn start_container(runtime: &mut Runtime, id: &str, limit: Duration) -> Result<Duration> {
    let start = Instant::now();
    bounded(
        "StartContainer",
        limit,
        runtime
            .runtime
            .start_container(proto::StartContainerRequest {
                container_id: id.to_owned(),
            }),
    )
    .await?;
    Ok(start.elapsed())
}

/// `StopContainer` with [`STOP_TIMEOUT`]; returns the latency.
async fn stop_container(runtime: &mut Runtime, id: &str, limit: Duration) -> Result<Duration> {
    let start = Instant::now();
    bounded(
        "StopContainer",
        limit,
        runtime.runtime.stop_container(proto::StopContainerRequest {
            container_id: id.to_owned(),
            timeout: STOP_TIMEOUT,
        }),
    )
    .await?;
    Ok(start.elapsed())
}

/// `RemoveContainer`; returns the latency.
async fn remove_container(runtime: &mut Runtime, id: &str, limit: Duration) -> Result<Duration> {
    let start = Instant::now();
    bounded(
        "RemoveContainer",
        limit,
        runtime
            .runtime
            .remove_container(proto::RemoveContainerRequest {
                container_id: id.to_owned(),
            }),
    )
    .await?;
    Ok(start.elapsed())
}

/// Checks with `ContainerStatus` that the container is in `wanted`.
async fn expect_state(
    runtime: &mut Runtime,
    id: &str,
    wanted: proto::ContainerState,
    limit: Duration,
) -> Result<()> {
    let reply = bounded(
        "ContainerStatus",
        limit,
        runtime
            .runtime
            .container_status(proto::ContainerStatusRequest {
                container_id: id.to_owned(),
                verbose: false,
            }),
    )
    .await?;
    let Some(status) = reply.status else {
        bail!("ContainerStatus of {id}: no status");
    };
    if status.state != wanted as i32 {
        bail!(
            "container {id} is in state {} ({} {}), expected {}",
            status.state,
            status.reason,
            status.message,
            wanted as i32
        );
    }
    Ok(())
}

/// Runs a pod and creates and starts its container; on a failure whatever was made is
/// removed again.
async fn start_pod_with_container(
    runtime: &mut Runtime,
    settings: &Settings,
    workload: &Workload,
    tag: &str,
) -> Result<(PodWithContainer, StartTimes)> {
    let limit = settings.rpc_timeout;
    let pod_config = workload.pod_config(settings, &runtime.name, tag)?;
    let container_config = workload.container_config(&pod_config);
    let (pod_id, run_pod) = pods::run_pod(runtime, pod_config.clone(), limit).await?;
    let mut container_id = None;
    let result = async {
        let (id, create) =
            create_container(runtime, &pod_id, &pod_config, container_config, limit).await?;
        container_id = Some(id.clone());
        let start = start_container(runtime, &id, limit).await?;
        Ok((
            PodWithContainer {
                pod_id: pod_id.clone(),
                container_id: id,
            },
            StartTimes {
                run_pod,
                create,
                start,
            },
        ))
    }
    .await;
    if result.is_err() {
        if let Some(id) = &container_id {
            let _ = stop_container(runtime, id, limit).await;
            let _ = remove_container(runtime, id, limit).await;
        }
        let _ = pods::stop_remove(runtime, &pod_id, limit).await;
    }
    result
}

/// Stops and removes the container (returning both latencies), then the pod. Goes on after
/// a failed step so that nothing stays behind, and returns the first error.
async fn teardown(
    runtime: &mut Runtime,
    pod: &PodWithContainer,
    limit: Duration,
) -> Result<(Duration, Duration)> {
    let stop = stop_container(runtime, &pod.container_id, limit).await;
    let checked = match &stop {
        Ok(_) => expect_state(
            runtime,
            &pod.container_id,
            proto::ContainerState::ContainerExited,
            limit,
        )
        .await
        .context("after StopContainer"),
        Err(_) => Ok(()),
    };
    let remove = remove_container(runtime, &pod.container_id, limit).await;
    let pod_removed = pods::stop_remove(runtime, &pod.pod_id, limit).await;
    let times = (stop?, remove?);
    checked?;
    pod_removed?;
    Ok(times)
}

/// One lifecycle: pod and container started, container checked running, container stopped
/// and removed, pod stopped and removed.
async fn lifecycle(
    runtime: &mut Runtime,
    settings: &Settings,
    workload: &Workload,
    tag: &str,
) -> Result<Lifecycle> {
    let limit = settings.rpc_timeout;
    let (pod, started) = start_pod_with_container(runtime, settings, workload, tag).await?;
    let running = expect_state(
        runtime,
        &pod.container_id,
        proto::ContainerState::ContainerRunning,
        limit,
    )
    .await;
    let (stop, remove) = teardown(runtime, &pod, limit).await?;
    running?;
    Ok(Lifecycle {
        started,
        stop,
        remove,
    })
}

/// Picks one latency out of a lifecycle.
type Pick = fn(&Lifecycle) -> Duration;

/// `count` containers one after another per runtime, each in a fresh pod (after `warmup`
/// unmeasured ones), the runtimes taking turns; records p50 and p90 of each step.
pub async fn sequential(
    runtimes: &mut [Runtime],
    settings: &Settings,
    workload: &Workload,
    warmup: usize,
    count: usize,
    out: &mut Writer,
) -> Result<()> {
    let mut samples: Vec<Vec<Lifecycle>> = vec![Vec::new(); runtimes.len()];
    let mut failures: Vec<Option<String>> = vec![None; runtimes.len()];
    for round in 0..warmup + count {
        for (index, runtime) in runtimes.iter_mut().enumerate() {
            if failures[index].is_some() {
                continue;
            }
            match lifecycle(runtime, settings, workload, &format!("ctr{round}")).await {
                Ok(times) if round >= warmup => samples[index].push(times),
                Ok(_) => {}
                Err(err) => failures[index] = Some(format!("container {round}: {err:#}")),
            }
        }
    }
    let steps: [(String, Pick); 6] = [
        ("CreateContainer".to_owned(), |l| l.started.create),
        ("StartContainer".to_owned(), |l| l.started.start),
        ("CreateContainer+StartContainer".to_owned(), |l| {
            l.started.create + l.started.start
        }),
        (format!("StopContainer (timeout {STOP_TIMEOUT})"), |l| {
            l.stop
        }),
        ("RemoveContainer".to_owned(), |l| l.remove),
        (
            "RunPodSandbox+CreateContainer+StartContainer".to_owned(),
            |l| l.started.run_pod + l.started.create + l.started.start,
        ),
    ];
    for (index, runtime) in runtimes.iter().enumerate() {
        for (name, pick) in &steps {
            for p in [50.0, 90.0] {
                let step = settings.step(&format!("{name} p{p:.0} ({count} containers)"));
                match &failures[index] {
                    Some(why) => out.failed(&step, &runtime.name, why)?,
                    None => {
                        let values: Vec<Duration> = samples[index].iter().map(pick).collect();
                        out.millis(&step, &runtime.name, percentile(&values, p))?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// Starts `size` pods with one container each at once on one runtime; returns the wall time
/// until every pod's `StartContainer` returned, what started and the errors.
async fn burst_start(
    runtime: &Runtime,
    settings: &Settings,
    workload: &Workload,
    size: usize,
    rep: usize,
) -> (Duration, Vec<PodWithContainer>, Vec<String>) {
    let mut tasks = JoinSet::new();
    let start = Instant::now();
    for index in 0..size {
        let mut runtime = runtime.clone();
        let settings = settings.clone();
        let workload = workload.clone();
        let tag = format!("cburst{rep}x{index}");
        tasks.spawn(async move {
            start_pod_with_container(&mut runtime, &settings, &workload, &tag).await
        });
    }
    let mut started = Vec::new();
    let mut errors = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok((pod, _))) => started.push(pod),
            Ok(Err(err)) => errors.push(format!("{err:#}")),
            Err(err) => errors.push(format!("task: {err}")),
        }
    }
    (start.elapsed(), started, errors)
}

/// Tears `pods` down at once (each: stop and remove the container, then the pod); returns
/// the wall time and any errors.
async fn burst_teardown(
    runtime: &Runtime,
    pods: Vec<PodWithContainer>,
    limit: Duration,
) -> (Duration, Vec<String>) {
    let mut tasks = JoinSet::new();
    let start = Instant::now();
    for pod in pods {
        let mut runtime = runtime.clone();
        tasks.spawn(async move { teardown(&mut runtime, &pod, limit).await });
    }
    let mut errors = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(_)) => {}
            Ok(Err(err)) => errors.push(format!("{err:#}")),
            Err(err) => errors.push(format!("task: {err}")),
        }
    }
    (start.elapsed(), errors)
}

/// How many containers `ListContainers` reports as running.
async fn count_running(runtime: &mut Runtime, limit: Duration) -> Result<usize> {
    let reply = bounded(
        "ListContainers",
        limit,
        runtime
            .runtime
            .list_containers(proto::ListContainersRequest {
                filter: Some(proto::ContainerFilter {
                    state: Some(proto::ContainerStateValue {
                        state: proto::ContainerState::ContainerRunning as i32,
                    }),
                    ..Default::default()
                }),
            }),
    )
    .await?;
    Ok(reply.containers.len())
}

/// `size` pods with one container each started at once, then all torn down at once, `reps`
/// times per runtime (taking turns); records the median wall times.
pub async fn burst(
    runtimes: &mut [Runtime],
    settings: &Settings,
    workload: &Workload,
    size: usize,
    reps: usize,
    out: &mut Writer,
) -> Result<()> {
    let mut starts: Vec<Vec<Duration>> = vec![Vec::new(); runtimes.len()];
    let mut teardowns: Vec<Vec<Duration>> = vec![Vec::new(); runtimes.len()];
    let mut failures: Vec<Option<String>> = vec![None; runtimes.len()];
    for rep in 0..reps {
        for (index, runtime) in runtimes.iter_mut().enumerate() {
            if failures[index].is_some() {
                continue;
            }
            let (wall, started, errors) = burst_start(runtime, settings, workload, size, rep).await;
            let running = count_running(runtime, settings.rpc_timeout).await;
            let (teardown, teardown_errors) =
                burst_teardown(runtime, started, settings.rpc_timeout).await;
            if let Some(error) = errors.first().or(teardown_errors.first()) {
                failures[index] = Some(format!(
                    "burst {rep}: {} of {size} starts and {} teardowns failed, first: {error}",
                    errors.len(),
                    teardown_errors.len()
                ));
                continue;
            }
            match running {
                Ok(running) if running >= size => {}
                Ok(running) => {
                    failures[index] = Some(format!(
                        "burst {rep}: only {running} of {size} containers listed as running"
                    ));
                    continue;
                }
                Err(err) => {
                    failures[index] = Some(format!("burst {rep}: ListContainers: {err:#}"));
                    continue;
                }
            }
            starts[index].push(wall);
            teardowns[index].push(teardown);
        }
    }
    let start_step = settings.step(&format!(
        "{size} pods × 1 container at once: all started (median of {reps})"
    ));
    let teardown_step = settings.step(&format!(
        "{size} pods × 1 container at once: stop+remove all (median of {reps})"
    ));
    for (index, runtime) in runtimes.iter().enumerate() {
        match &failures[index] {
            Some(why) => {
                out.failed(&start_step, &runtime.name, why)?;
                out.failed(&teardown_step, &runtime.name, why)?;
            }
            None => {
                out.seconds(&start_step, &runtime.name, median(&starts[index]))?;
                out.seconds(&teardown_step, &runtime.name, median(&teardowns[index]))?;
            }
        }
    }
    Ok(())
}

/// Starts `count` pods with one container each on one runtime, one after another; on a
/// failure what was started is removed again.
pub async fn start_many(
    runtime: &mut Runtime,
    settings: &Settings,
    workload: &Workload,
    tag: &str,
    count: usize,
) -> Result<Vec<PodWithContainer>> {
    let mut started = Vec::new();
    for index in 0..count {
        match start_pod_with_container(runtime, settings, workload, &format!("{tag}{index}")).await
        {
            Ok((pod, _)) => started.push(pod),
            Err(err) => {
                teardown_all(runtime, &started, settings.rpc_timeout).await;
                return Err(err);
            }
        }
    }
    Ok(started)
}

/// Tears `pods` down one after another, reporting errors on stderr only.
pub async fn teardown_all(runtime: &mut Runtime, pods: &[PodWithContainer], limit: Duration) {
    for pod in pods {
        if let Err(err) = teardown(runtime, pod, limit).await {
            eprintln!(
                "bench: {}: removing container {} and pod {}: {err:#}",
                runtime.name, pod.container_id, pod.pod_id
            );
        }
    }
}

/// Stops and removes every container the runtime lists (the end-of-run cleanup, before the
/// pods are removed).
pub async fn remove_all(runtime: &mut Runtime) {
    let limit = Duration::from_secs(60);
    let listed = bounded(
        "ListContainers",
        limit,
        runtime
            .runtime
            .list_containers(proto::ListContainersRequest { filter: None }),
    )
    .await;
    match listed {
        Ok(reply) => {
            if !reply.containers.is_empty() {
                eprintln!(
                    "bench cleanup: {}: removing {} containers",
                    runtime.name,
                    reply.containers.len()
                );
            }
            for container in reply.containers {
                let stopped = stop_container(runtime, &container.id, limit).await;
                let removed = remove_container(runtime, &container.id, limit).await;
                if let Err(err) = stopped.and(removed) {
                    eprintln!(
                        "bench cleanup: {}: container {}: {err:#}",
                        runtime.name, container.id
                    );
                }
            }
        }
        Err(err) => eprintln!("bench cleanup: {}: {err:#}", runtime.name),
    }
}
