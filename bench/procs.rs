//! Memory figures: the daemon's resident set idle and with pods, and what the pods' own
//! processes (containerd's shims and pause processes; Carrack has none) add.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::client::Runtime;
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

/// Processes that exist for the runtime's pods: everything in the cgroup subtree of its
/// pods, plus containerd shims serving this daemon's socket (shims stay in the daemon's
/// cgroup, not the pod's).
fn pod_processes(runtime: &Runtime, cgroup_root: &Path, cgroup_base: &str) -> BTreeSet<u32> {
    let mut pids = BTreeSet::new();
    let relative = format!("{}/{}", cgroup_base.trim_start_matches('/'), runtime.name);
    for hierarchy in ["pids", "memory", "unified", ""] {
        let top = cgroup_root.join(hierarchy).join(&relative);
        if top.is_dir() {
            collect_cgroup_pids(&top, &mut pids);
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
                pids.insert(pid);
            }
        }
    }
    if let Some(pid) = runtime.pid {
        pids.remove(&pid);
    }
    pids
}

/// Adds the pids of `dir` and every cgroup below it.
fn collect_cgroup_pids(dir: &Path, pids: &mut BTreeSet<u32>) {
    if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        pids.extend(
            procs
                .lines()
                .filter_map(|line| line.trim().parse::<u32>().ok()),
        );
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                collect_cgroup_pids(&entry.path(), pids);
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
    let total_step = format!("daemon + per-pod processes RSS, {count} pods");
    let pss_step = format!("daemon + per-pod processes PSS, {count} pods");
    for runtime in runtimes.iter_mut() {
        let ids = match pods::start_pods(runtime, settings, "rss", count).await {
            Ok(ids) => ids,
            Err(err) => {
                let why = format!("{err:#}");
                for step in [&daemon_step, &total_step, &pss_step] {
                    out.failed(step, &runtime.name, &why)?;
                }
                continue;
            }
        };
        tokio::time::sleep(SETTLE).await;
        let measured = daemon_rss(runtime).map(|daemon| {
            let others = pod_processes(runtime, cgroup_root, &settings.cgroup_base);
            let rss: u64 = others.iter().filter_map(|pid| rss_kib(*pid)).sum();
            let pss: u64 = others.iter().filter_map(|pid| pss_kib(*pid)).sum();
            let daemon_pss = runtime.pid.and_then(pss_kib).unwrap_or(0);
            (daemon, daemon + rss, daemon_pss + pss, others.len())
        });
        pods::stop_remove_all(runtime, &ids, settings.rpc_timeout).await;
        match measured {
            Ok((daemon, total, pss, processes)) => {
                out.value(&daemon_step, &runtime.name, mib(daemon), "MiB")?;
                out.value(&total_step, &runtime.name, mib(total), "MiB")?;
                out.value(&pss_step, &runtime.name, mib(pss), "MiB")?;
                out.note(
                    &runtime.name,
                    &format!("{processes} per-pod processes with {count} pods running"),
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
