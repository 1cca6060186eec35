//! Memory figures: the daemon's resident set idle, with pods and with pods running a
//! container each, and what the pods' own processes add: containerd's shims and pause
//! processes; Carrack has none for an empty pod and one monitor per container.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::client::Runtime;
use crate::containers::{self, Workload};
use crate::pods::{self, Settings};
use crate::report::Writer;

/// Time given to a daemon to settle before its memory is read.
const SETTLE: Duration = Duration::from_secs(2);

/// Reads a `kB` field (`VmRSS:`, `Pss:`) of a `/proc` file, in KiB.
fn proc_kib(path: &Path, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok())
}

/// Resident set of `pid` in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    proc_kib(&PathBuf::from(format!("/proc/{pid}/status")), "VmRSS:")
}

/// Proportional set of `pid` in KiB (shared pages divided among their users).
fn pss_kib(pid: u32) -> Option<u64> {
    proc_kib(&PathBuf::from(format!("/proc/{pid}/smaps_rollup")), "Pss:")
}

/// `Rss`, `Pss` and `Anonymous` of `pid` in KiB, from `/proc/<pid>/smaps_rollup`.
#[derive(Debug, Clone, Copy, Default)]
struct Rollup {
    rss: u64,
    pss: u64,
    anonymous: u64,
}

fn rollup(pid: u32) -> Option<Rollup> {
    let path = PathBuf::from(format!("/proc/{pid}/smaps_rollup"));
    Some(Rollup {
        rss: proc_kib(&path, "Rss:")?,
        pss: proc_kib(&path, "Pss:")?,
        anonymous: proc_kib(&path, "Anonymous:")?,
    })
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The daemon's resident set in KiB.
fn daemon_rss(runtime: &Runtime) -> Result<u64> {
    let pid = runtime
        .pid
        .with_context(|| format!("no pid given for {}", runtime.name))?;
    rss_kib(pid).with_context(|| format!("read /proc/{pid}/status of {}", runtime.name))
}

/// What a per-pod process is, as the notes name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// In a pod's cgroup but outside its workload containers' cgroups: containerd's pause
    /// container (its `sh` and `sleep`).
    Sandbox,
    /// A `containerd-shim*` serving this daemon's socket.
    Shim,
    /// A `carrack-monitor monitor` child of the daemon.
    Monitor,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Sandbox => "pause/sandbox",
            Kind::Shim => "shim",
            Kind::Monitor => "monitor",
        }
    }
}

/// Processes that exist for the runtime's pods, not for their workloads: everything in the
/// cgroup subtree of its pods except the cgroups named in `workload_cgroups` (the workload
/// containers' cgroups, named by container ID under both runtimes' cgroupfs drivers), plus
/// containerd shims serving this daemon's socket (shims stay in the daemon's cgroup, not the
/// pod's), plus the daemon's children running `monitor` (Carrack's per-container monitors,
/// which stay in the daemon's cgroup too).
fn pod_processes(
    runtime: &Runtime,
    cgroup_root: &Path,
    cgroup_base: &str,
    workload_cgroups: &BTreeSet<String>,
) -> BTreeMap<u32, Kind> {
    let mut pids = BTreeMap::new();
    let relative = format!("{}/{}", cgroup_base.trim_start_matches('/'), runtime.name);
    for hierarchy in ["pids", "memory", "unified", ""] {
        let top = cgroup_root.join(hierarchy).join(&relative);
        if top.is_dir() {
            let mut found = BTreeSet::new();
            collect_cgroup_pids(&top, workload_cgroups, &mut found);
            pids.extend(found.into_iter().map(|pid| (pid, Kind::Sandbox)));
            break;
        }
    }
    let socket = runtime.socket.to_string_lossy().into_owned();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let args: Vec<String> = cmdline
                .split(|byte| *byte == 0)
                .map(|arg| String::from_utf8_lossy(arg).into_owned())
                .collect();
            let is_shim = args
                .first()
                .is_some_and(|arg0| arg0.contains("containerd-shim"));
            if is_shim && args.contains(&socket) {
                pids.insert(pid, Kind::Shim);
            }
            let is_monitor = args.get(1).is_some_and(|arg| arg == "monitor");
            if is_monitor && runtime.pid.is_some() && parent_pid(pid) == runtime.pid {
                pids.insert(pid, Kind::Monitor);
            }
        }
    }
    if let Some(pid) = runtime.pid {
        pids.remove(&pid);
    }
    pids
}

/// The parent pid of `pid`, from `/proc/<pid>/stat` (the field after the state, which
/// follows the parenthesised command name).
fn parent_pid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// `3 monitor (each: Rss 1.20 MiB, 0.40 MiB of it anonymous; Pss 0.50 MiB)`: how many
/// processes of each kind were counted and their mean memory.
fn breakdown(rollups: &BTreeMap<u32, (Kind, Rollup)>) -> String {
    let mut kinds: BTreeMap<Kind, (u64, Rollup)> = BTreeMap::new();
    for (kind, rollup) in rollups.values() {
        let (count, sum) = kinds.entry(*kind).or_default();
        *count += 1;
        sum.rss += rollup.rss;
        sum.pss += rollup.pss;
        sum.anonymous += rollup.anonymous;
    }
    if kinds.is_empty() {
        return "none".to_owned();
    }
    kinds
        .iter()
        .map(|(kind, (count, sum))| {
            let mean = |kib: u64| mib(kib) / *count as f64;
            format!(
                "{count} {} (each: Rss {:.2} MiB, {:.2} MiB of it anonymous; Pss {:.2} MiB)",
                kind.name(),
                mean(sum.rss),
                mean(sum.anonymous),
                mean(sum.pss)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `3 shim, 6 pause/sandbox`: how many processes of each kind.
fn describe(processes: &BTreeMap<u32, Kind>) -> String {
    let mut counts: BTreeMap<Kind, usize> = BTreeMap::new();
    for kind in processes.values() {
        *counts.entry(*kind).or_default() += 1;
    }
    if counts.is_empty() {
        return "none".to_owned();
    }
    counts
        .iter()
        .map(|(kind, count)| format!("{count} {}", kind.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Adds the pids of `dir` and every cgroup below it, skipping the cgroups named in `skip`
/// (and what is below them).
fn collect_cgroup_pids(dir: &Path, skip: &BTreeSet<String>, pids: &mut BTreeSet<u32>) {
    if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        pids.extend(
            procs
                .lines()
                .filter_map(|line| line.trim().parse::<u32>().ok()),
        );
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let skipped = entry
                .file_name()
                .to_str()
                .is_some_and(|name| skip.contains(name));
            if entry.file_type().is_ok_and(|kind| kind.is_dir()) && !skipped {
                collect_cgroup_pids(&entry.path(), skip, pids);
            }
        }
    }
}

/// Idle daemon RSS (after one warm-up pod), then daemon RSS and the pods' processes with
/// `count` pods running, per runtime.
pub async fn measure(
    runtimes: &mut [Runtime],
    settings: &Settings,
    cgroup_root: &Path,
    count: usize,
    out: &mut Writer,
) -> Result<()> {
    // One pod lifecycle first, so both daemons have loaded what a pod needs.
    for runtime in runtimes.iter_mut() {
        match pods::start_pods(runtime, settings, "rsswarm", 1).await {
            Ok(ids) => pods::stop_remove_all(runtime, &ids, settings.rpc_timeout).await,
            Err(err) => eprintln!("bench: {}: warm-up pod: {err:#}", runtime.name),
        }
    }
    tokio::time::sleep(SETTLE).await;
    let idle_step = "daemon RSS, idle";
    for runtime in runtimes.iter() {
        match daemon_rss(runtime) {
            Ok(kib) => out.value(idle_step, &runtime.name, mib(kib), "MiB")?,
            Err(err) => out.failed(idle_step, &runtime.name, &format!("{err:#}"))?,
        }
    }

    let daemon_step = format!("daemon RSS, {count} pods");
    let polled_step = format!("daemon RSS, {count} pods, after a kubelet-like poll round");
    let total_step = format!("daemon + per-pod processes RSS, {count} pods");
    let pss_step = format!("daemon + per-pod processes PSS, {count} pods");
    for runtime in runtimes.iter_mut() {
        let ids = match pods::start_pods(runtime, settings, "rss", count).await {
            Ok(ids) => ids,
            Err(err) => {
                let why = format!("{err:#}");
                for step in [&daemon_step, &polled_step, &total_step, &pss_step] {
                    out.failed(step, &runtime.name, &why)?;
                }
                continue;
            }
        };
        tokio::time::sleep(SETTLE).await;
        let measured = daemon_rss(runtime).map(|daemon| {
            let others = pod_processes(
                runtime,
                cgroup_root,
                &settings.cgroup_base,
                &BTreeSet::new(),
            );
            let rss: u64 = others.keys().filter_map(|pid| rss_kib(*pid)).sum();
            let pss: u64 = others.keys().filter_map(|pid| pss_kib(*pid)).sum();
            let daemon_pss = runtime.pid.and_then(pss_kib).unwrap_or(0);
            (daemon, daemon + rss, daemon_pss + pss, describe(&others))
        });
        let polled = match poll_round(runtime, &ids, &[]).await {
            Ok(()) => daemon_rss(runtime),
            Err(err) => Err(err),
        };
        pods::stop_remove_all(runtime, &ids, settings.rpc_timeout).await;
        match polled {
            Ok(kib) => out.value(&polled_step, &runtime.name, mib(kib), "MiB")?,
            Err(err) => out.failed(&polled_step, &runtime.name, &format!("{err:#}"))?,
        }
        match measured {
            Ok((daemon, total, pss, processes)) => {
                out.value(&daemon_step, &runtime.name, mib(daemon), "MiB")?;
                out.value(&total_step, &runtime.name, mib(total), "MiB")?;
                out.value(&pss_step, &runtime.name, mib(pss), "MiB")?;
                out.note(
                    &runtime.name,
                    &format!("per-pod processes with {count} pods running: {processes}"),
                )?;
            }
            Err(err) => {
                let why = format!("{err:#}");
                for step in [&daemon_step, &total_step, &pss_step] {
                    out.failed(step, &runtime.name, &why)?;
                }
            }
        }
    }
    Ok(())
}

/// One round of the calls kubelet repeats every second or so on a node at rest (PLEG's
/// relists, the status of each pod and container, stats, the runtime's and the image
/// filesystem's status).
async fn poll_round(
    runtime: &mut Runtime,
    pod_ids: &[String],
    container_ids: &[String],
) -> Result<()> {
    use carrack::proto;
    let client = &mut runtime.runtime;
    client
        .list_pod_sandbox(proto::ListPodSandboxRequest::default())
        .await
        .context("ListPodSandbox")?;
    client
        .list_containers(proto::ListContainersRequest::default())
        .await
        .context("ListContainers")?;
    for pod_id in pod_ids {
        client
            .pod_sandbox_status(proto::PodSandboxStatusRequest {
                pod_sandbox_id: pod_id.clone(),
                verbose: false,
            })
            .await
            .context("PodSandboxStatus")?;
    }
    for container_id in container_ids {
        client
            .container_status(proto::ContainerStatusRequest {
                container_id: container_id.clone(),
                verbose: false,
            })
            .await
            .context("ContainerStatus")?;
    }
    client
        .list_container_stats(proto::ListContainerStatsRequest::default())
        .await
        .context("ListContainerStats")?;
    client
        .list_pod_sandbox_stats(proto::ListPodSandboxStatsRequest::default())
        .await
        .context("ListPodSandboxStats")?;
    client
        .status(proto::StatusRequest::default())
        .await
        .context("Status")?;
    runtime
        .image
        .image_fs_info(proto::ImageFsInfoRequest::default())
        .await
        .context("ImageFsInfo")?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(())
}

/// Daemon memory and per-pod overhead with `count` pods running one `sleep` container each,
/// per runtime: the daemon's RSS, and the processes that exist for the pods but are not their
/// workloads (Carrack's monitors; containerd's shims and pause processes), summed and divided
/// by the number of pods. Records the figures and which processes were counted.
pub async fn measure_containers(
    runtimes: &mut [Runtime],
    settings: &Settings,
    workload: &Workload,
    cgroup_root: &Path,
    count: usize,
    out: &mut Writer,
) -> Result<()> {
    // One pod with a container first, so both daemons have loaded what a container needs.
    for runtime in runtimes.iter_mut() {
        match containers::start_many(runtime, settings, workload, "memwarm", 1).await {
            Ok(pods) => containers::teardown_all(runtime, &pods, settings.rpc_timeout).await,
            Err(err) => eprintln!("bench: {}: warm-up container: {err:#}", runtime.name),
        }
    }
    let label = format!("{count} pods × 1 container");
    let daemon_step = format!("daemon RSS, {label}");
    let polled_step = format!("daemon RSS, {label}, after a kubelet-like poll round");
    let per_pod_rss = format!("per-pod overhead RSS (per pod), {label}");
    let per_pod_pss = format!("per-pod overhead PSS (per pod), {label}");
    let total_rss = format!("daemon + per-pod processes RSS, {label}");
    let total_pss = format!("daemon + per-pod processes PSS, {label}");
    let steps = [
        &daemon_step,
        &polled_step,
        &per_pod_rss,
        &per_pod_pss,
        &total_rss,
        &total_pss,
    ];
    for runtime in runtimes.iter_mut() {
        let pods = match containers::start_many(runtime, settings, workload, "mem", count).await {
            Ok(pods) => pods,
            Err(err) => {
                let why = format!("{err:#}");
                for step in steps {
                    out.failed(step, &runtime.name, &why)?;
                }
                continue;
            }
        };
        tokio::time::sleep(SETTLE).await;
        let workloads: BTreeSet<String> = pods.iter().map(|p| p.container_id.clone()).collect();
        let measured = daemon_rss(runtime).map(|daemon| {
            let others = pod_processes(runtime, cgroup_root, &settings.cgroup_base, &workloads);
            let rollups: BTreeMap<u32, (Kind, Rollup)> = others
                .iter()
                .filter_map(|(pid, kind)| Some((*pid, (*kind, rollup(*pid)?))))
                .collect();
            let rss: u64 = rollups.values().map(|(_, r)| r.rss).sum();
            let pss: u64 = rollups.values().map(|(_, r)| r.pss).sum();
            let daemon_pss = runtime.pid.and_then(pss_kib).unwrap_or(0);
            (daemon, daemon_pss, rss, pss, breakdown(&rollups))
        });
        // What kubelet's steady state brings back: its relists and status polls.
        let pod_ids: Vec<String> = pods.iter().map(|p| p.pod_id.clone()).collect();
        let container_ids: Vec<String> = pods.iter().map(|p| p.container_id.clone()).collect();
        let polled = match poll_round(runtime, &pod_ids, &container_ids).await {
            Ok(()) => daemon_rss(runtime),
            Err(err) => Err(err),
        };
        containers::teardown_all(runtime, &pods, settings.rpc_timeout).await;
        match polled {
            Ok(kib) => out.value(&polled_step, &runtime.name, mib(kib), "MiB")?,
            Err(err) => out.failed(&polled_step, &runtime.name, &format!("{err:#}"))?,
        }
        match measured {
            Ok((daemon, daemon_pss, rss, pss, processes)) => {
                let pods = count.max(1) as f64;
                out.value(&daemon_step, &runtime.name, mib(daemon), "MiB")?;
                out.value(&per_pod_rss, &runtime.name, mib(rss) / pods, "MiB")?;
                out.value(&per_pod_pss, &runtime.name, mib(pss) / pods, "MiB")?;
                out.value(&total_rss, &runtime.name, mib(daemon + rss), "MiB")?;
                out.value(&total_pss, &runtime.name, mib(daemon_pss + pss), "MiB")?;
                out.note(
                    &runtime.name,
                    &format!(
                        "per-pod processes with {label} running (workload processes not \
                         counted): {processes}"
                    ),
                )?;
            }
            Err(err) => {
                let why = format!("{err:#}");
                for step in steps {
                    out.failed(step, &runtime.name, &why)?;
                }
            }
        }
    }
    Ok(())
}
