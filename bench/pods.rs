//! Pod sandbox figures: sequential lifecycles (run, status, stop, remove) and a burst of pods
//! started at once, alternating between the runtimes.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use carrack::proto;
use tokio::task::JoinSet;

use crate::client::{Runtime, bounded};
use crate::report::{Writer, median, percentile};

/// What every pod step needs to know.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Pods of runtime R get the cgroup parent `<cgroup_base>/<R>/<pod name>`.
    pub cgroup_base: String,
    /// Label of the CNI variant, appended to step names (`ipMasq on`).
    pub variant: String,
    /// Limit for one pod RPC.
    pub rpc_timeout: Duration,
}

impl Settings {
    /// `step [variant]`, or just `step` without a variant.
    pub fn step(&self, step: &str) -> String {
        if self.variant.is_empty() {
            step.to_owned()
        } else {
            format!("{step} [{}]", self.variant)
        }
    }

    /// A pod config like kubelet's for a pod without special options: metadata, hostname,
    /// cluster DNS, labels and annotations, the pod cgroup as cgroup parent, own network and
    /// IPC namespaces and a PID namespace per container.
    pub fn pod_config(&self, runtime: &str, tag: &str) -> proto::PodSandboxConfig {
        let slug: String = self
            .variant
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect::<String>()
            .to_ascii_lowercase();
        let name = format!("bench-{tag}-{slug}-{}", std::process::id());
        proto::PodSandboxConfig {
            metadata: Some(proto::PodSandboxMetadata {
                name: name.clone(),
                uid: format!("uid-{runtime}-{name}"),
                namespace: "bench".to_owned(),
                attempt: 0,
            }),
            hostname: name.clone(),
            log_directory: String::new(),
            dns_config: Some(proto::DnsConfig {
                servers: vec!["10.96.0.10".to_owned()],
                searches: vec![
                    "bench.svc.cluster.local".to_owned(),
                    "svc.cluster.local".to_owned(),
                    "cluster.local".to_owned(),
                ],
                options: vec!["ndots:5".to_owned()],
            }),
            port_mappings: Vec::new(),
            labels: HashMap::from([
                ("io.kubernetes.pod.name".to_owned(), name.clone()),
                ("io.kubernetes.pod.namespace".to_owned(), "bench".to_owned()),
                ("carrack-bench".to_owned(), "1".to_owned()),
            ]),
            annotations: HashMap::from([(
                "kubernetes.io/config.source".to_owned(),
                "api".to_owned(),
            )]),
            linux: Some(proto::LinuxPodSandboxConfig {
                cgroup_parent: format!("{}/{runtime}/{name}", self.cgroup_base),
                security_context: Some(proto::LinuxSandboxSecurityContext {
                    namespace_options: Some(proto::NamespaceOption {
                        network: proto::NamespaceMode::Pod as i32,
                        pid: proto::NamespaceMode::Container as i32,
                        ipc: proto::NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            windows: None,
        }
    }
}

/// Latencies of one pod's lifecycle.
#[derive(Debug, Clone, Copy)]
struct Lifecycle {
    run: Duration,
    status: Duration,
    stop: Duration,
    remove: Duration,
}

/// Starts a pod and returns its id and the time `RunPodSandbox` took.
pub async fn run_pod(
    runtime: &mut Runtime,
    config: proto::PodSandboxConfig,
    limit: Duration,
) -> Result<(String, Duration)> {
    let start = Instant::now();
    let reply = bounded(
        "RunPodSandbox",
        limit,
        runtime
            .runtime
            .run_pod_sandbox(proto::RunPodSandboxRequest {
                config: Some(config),
                runtime_handler: String::new(),
            }),
    )
    .await?;
    Ok((reply.pod_sandbox_id, start.elapsed()))
}

/// Stops then removes a pod; returns both latencies.
pub async fn stop_remove(
    runtime: &mut Runtime,
    id: &str,
    limit: Duration,
) -> Result<(Duration, Duration)> {
    let start = Instant::now();
    bounded(
        "StopPodSandbox",
        limit,
        runtime
            .runtime
            .stop_pod_sandbox(proto::StopPodSandboxRequest {
                pod_sandbox_id: id.to_owned(),
            }),
    )
    .await?;
    let stop = start.elapsed();
    let start = Instant::now();
    bounded(
        "RemovePodSandbox",
        limit,
        runtime
            .runtime
            .remove_pod_sandbox(proto::RemovePodSandboxRequest {
                pod_sandbox_id: id.to_owned(),
            }),
    )
    .await?;
    Ok((stop, start.elapsed()))
}

/// `PodSandboxStatus` of a pod that must be ready and have an IP; returns its latency.
async fn check_status(runtime: &mut Runtime, id: &str, limit: Duration) -> Result<Duration> {
    let start = Instant::now();
    let reply = bounded(
        "PodSandboxStatus",
        limit,
        runtime
            .runtime
            .pod_sandbox_status(proto::PodSandboxStatusRequest {
                pod_sandbox_id: id.to_owned(),
                verbose: false,
            }),
    )
    .await?;
    let elapsed = start.elapsed();
    let Some(status) = reply.status else {
        bail!("PodSandboxStatus of {id}: no status");
    };
    if status.state != proto::PodSandboxState::SandboxReady as i32 {
        bail!("pod {id} is not ready: state {}", status.state);
    }
    let ip = status.network.map(|network| network.ip).unwrap_or_default();
    if ip.is_empty() {
        bail!("pod {id} has no IP: is the CNI config in place?");
    }
    Ok(elapsed)
}

/// One full lifecycle; a pod left behind by a failed step is stopped and removed.
async fn lifecycle(runtime: &mut Runtime, settings: &Settings, tag: &str) -> Result<Lifecycle> {
    let limit = settings.rpc_timeout;
    let config = settings.pod_config(&runtime.name, tag);
    let (id, run) = run_pod(runtime, config, limit).await?;
    let result = async {
        let status = check_status(runtime, &id, limit).await?;
        let (stop, remove) = stop_remove(runtime, &id, limit).await?;
        Ok(Lifecycle {
            run,
            status,
            stop,
            remove,
        })
    }
    .await;
    if result.is_err() {
        let _ = stop_remove(runtime, &id, limit).await;
    }
    result
}

/// Picks one latency out of a lifecycle.
type Pick = fn(&Lifecycle) -> Duration;

/// `count` pods one after another per runtime (after `warmup` unmeasured ones), the
/// runtimes taking turns pod by pod; records p50 and p90 of each RPC.
pub async fn sequential(
    runtimes: &mut [Runtime],
    settings: &Settings,
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
            match lifecycle(runtime, settings, &format!("seq{round}")).await {
                Ok(times) if round >= warmup => samples[index].push(times),
                Ok(_) => {}
                Err(err) => failures[index] = Some(format!("pod {round}: {err:#}")),
            }
        }
    }
    let steps: [(&str, Pick); 5] = [
        ("RunPodSandbox", |l| l.run),
        ("PodSandboxStatus", |l| l.status),
        ("StopPodSandbox", |l| l.stop),
        ("RemovePodSandbox", |l| l.remove),
        ("Stop+RemovePodSandbox", |l| l.stop + l.remove),
    ];
    for (index, runtime) in runtimes.iter().enumerate() {
        for (name, pick) in steps {
            for p in [50.0, 90.0] {
                let step = settings.step(&format!("{name} p{p:.0} ({count} pods)"));
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

/// Starts `size` pods at once on one runtime; returns the wall time until every
/// `RunPodSandbox` returned, and the ids of the pods that started.
async fn burst_run(
    runtime: &Runtime,
    settings: &Settings,
    size: usize,
    rep: usize,
) -> (Duration, Vec<String>, Vec<String>) {
    let mut tasks = JoinSet::new();
    let start = Instant::now();
    for index in 0..size {
        let mut runtime = runtime.clone();
        let config = settings.pod_config(&runtime.name, &format!("burst{rep}x{index}"));
        let limit = settings.rpc_timeout;
        tasks.spawn(async move { run_pod(&mut runtime, config, limit).await });
    }
    let mut ids = Vec::new();
    let mut errors = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok((id, _))) => ids.push(id),
            Ok(Err(err)) => errors.push(format!("{err:#}")),
            Err(err) => errors.push(format!("task: {err}")),
        }
    }
    (start.elapsed(), ids, errors)
}

/// Stops and removes `ids` at once on one runtime; returns the wall time and any errors.
async fn burst_teardown(
    runtime: &Runtime,
    ids: Vec<String>,
    limit: Duration,
) -> (Duration, Vec<String>) {
    let mut tasks = JoinSet::new();
    let start = Instant::now();
    for id in ids {
        let mut runtime = runtime.clone();
        tasks.spawn(async move { stop_remove(&mut runtime, &id, limit).await });
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

/// `size` pods started at once, then all stopped and removed at once, `reps` times per
/// runtime (taking turns); records the median wall times.
pub async fn burst(
    runtimes: &mut [Runtime],
    settings: &Settings,
    size: usize,
    reps: usize,
    out: &mut Writer,
) -> Result<()> {
    let mut runs: Vec<Vec<Duration>> = vec![Vec::new(); runtimes.len()];
    let mut teardowns: Vec<Vec<Duration>> = vec![Vec::new(); runtimes.len()];
    let mut failures: Vec<Option<String>> = vec![None; runtimes.len()];
    for rep in 0..reps {
        for (index, runtime) in runtimes.iter_mut().enumerate() {
            if failures[index].is_some() {
                continue;
            }
            let (wall, ids, errors) = burst_run(runtime, settings, size, rep).await;
            let ready = count_ready(runtime, settings.rpc_timeout).await;
            let (teardown, teardown_errors) =
                burst_teardown(runtime, ids, settings.rpc_timeout).await;
            if let Some(error) = errors.first().or(teardown_errors.first()) {
                failures[index] = Some(format!(
                    "burst {rep}: {} of {size} runs and {} teardowns failed, first: {error}",
                    errors.len(),
                    teardown_errors.len()
                ));
                continue;
            }
            match ready {
                Ok(ready) if ready >= size => {}
                Ok(ready) => {
                    failures[index] = Some(format!(
                        "burst {rep}: only {ready} of {size} pods listed as ready"
                    ));
                    continue;
                }
                Err(err) => {
                    failures[index] = Some(format!("burst {rep}: ListPodSandbox: {err:#}"));
                    continue;
                }
            }
            runs[index].push(wall);
            teardowns[index].push(teardown);
        }
    }
    let run_step = settings.step(&format!(
        "{size} pods at once: run, all ready (median of {reps})"
    ));
    let teardown_step = settings.step(&format!(
        "{size} pods at once: stop+remove all (median of {reps})"
    ));
    for (index, runtime) in runtimes.iter().enumerate() {
        match &failures[index] {
            Some(why) => {
                out.failed(&run_step, &runtime.name, why)?;
                out.failed(&teardown_step, &runtime.name, why)?;
            }
            None => {
                out.seconds(&run_step, &runtime.name, median(&runs[index]))?;
                out.seconds(&teardown_step, &runtime.name, median(&teardowns[index]))?;
            }
        }
    }
    Ok(())
}

/// How many pods `ListPodSandbox` reports as ready.
async fn count_ready(runtime: &mut Runtime, limit: Duration) -> Result<usize> {
    let reply = bounded(
        "ListPodSandbox",
        limit,
        runtime
            .runtime
            .list_pod_sandbox(proto::ListPodSandboxRequest {
                filter: Some(proto::PodSandboxFilter {
                    state: Some(proto::PodSandboxStateValue {
                        state: proto::PodSandboxState::SandboxReady as i32,
                    }),
                    ..Default::default()
                }),
            }),
    )
    .await?;
    Ok(reply.items.len())
}

/// Starts `count` pods on one runtime (one after another) and returns their ids; on a
/// failure the pods already started are removed again.
pub async fn start_pods(
    runtime: &mut Runtime,
    settings: &Settings,
    tag: &str,
    count: usize,
) -> Result<Vec<String>> {
    let mut ids = Vec::new();
    for index in 0..count {
        let config = settings.pod_config(&runtime.name, &format!("{tag}{index}"));
        match run_pod(runtime, config, settings.rpc_timeout).await {
            Ok((id, _)) => ids.push(id),
            Err(err) => {
                stop_remove_all(runtime, &ids, settings.rpc_timeout).await;
                return Err(err);
            }
        }
    }
    Ok(ids)
}

/// Stops and removes `ids` one after another, reporting errors on stderr only.
pub async fn stop_remove_all(runtime: &mut Runtime, ids: &[String], limit: Duration) {
    for id in ids {
        if let Err(err) = stop_remove(runtime, id, limit).await {
            eprintln!("bench: {}: removing pod {id}: {err:#}", runtime.name);
        }
    }
}

/// Stops and removes every pod the runtime lists (the end-of-run cleanup).
pub async fn remove_all(runtime: &mut Runtime) {
    let limit = Duration::from_secs(60);
    let listed = bounded(
        "ListPodSandbox",
        limit,
        runtime
            .runtime
            .list_pod_sandbox(proto::ListPodSandboxRequest { filter: None }),
    )
    .await;
    match listed {
        Ok(reply) => {
            let ids: Vec<String> = reply.items.into_iter().map(|pod| pod.id).collect();
            if !ids.is_empty() {
                eprintln!(
                    "bench cleanup: {}: removing {} pods",
                    runtime.name,
                    ids.len()
                );
            }
            stop_remove_all(runtime, &ids, limit).await;
        }
        Err(err) => eprintln!("bench cleanup: {}: {err:#}", runtime.name),
    }
}
