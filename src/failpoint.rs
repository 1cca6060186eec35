//! Crash points for the fault-injection tests: named places in the lifecycle code where a
//! test build of the daemon kills itself with SIGKILL, so the tests can prove that a crash at
//! any step leaks nothing and loses nothing once the daemon is restarted.
//!
//! Only a build with the `failpoints` cargo feature has them (the test command enables it);
//! in any other build [`hit`] is an empty inline function. A test arms points by starting
//! the daemon with `CARRACK_FAILPOINTS=<name>[,<name>...]`; the first armed point reached
//! kills the daemon. `<name>=pause:<ms>` instead holds the operation there for that long
//! (each time it passes), so a test can act while a create is half-way: retry it after the
//! client gave up, or run the reconciler over it. Every name is listed in [`ALL`], which the
//! tests walk.

/// Every crash point, in lifecycle order.
pub const ALL: &[&str] = &[
    RUN_POD_AFTER_NAMESPACES,
    RUN_POD_AFTER_CGROUP,
    RUN_POD_AFTER_RECORD,
    RUN_POD_MID_NETWORK,
    RUN_POD_AFTER_NETWORK,
    CREATE_CONTAINER_AFTER_SNAPSHOT,
    CREATE_CONTAINER_AFTER_CGROUP,
    START_CONTAINER_AFTER_SPAWN,
    STOP_CONTAINER_AFTER_SIGNAL,
    REMOVE_CONTAINER_MID_TEARDOWN,
    REMOVE_CONTAINER_AFTER_TEARDOWN,
    STOP_POD_AFTER_NETWORK,
    STOP_POD_AFTER_INIT_KILL,
    REMOVE_POD_AFTER_TEARDOWN,
    PULL_AFTER_FIRST_LAYER,
    PULL_AFTER_LAYERS,
    REMOVE_IMAGE_AFTER_RECORD,
    GC_AFTER_FIRST_LAYER,
    GC_AFTER_LAYERS,
];

/// `RunPodSandbox`: namespaces pinned and `/dev/shm` mounted, no cgroup or record yet.
pub const RUN_POD_AFTER_NAMESPACES: &str = "run-pod.after-namespaces";
/// `RunPodSandbox`: pod cgroup created (and pod init started), no record yet.
pub const RUN_POD_AFTER_CGROUP: &str = "run-pod.after-cgroup";
/// `RunPodSandbox`: not-ready record written, CNI ADD not run.
pub const RUN_POD_AFTER_RECORD: &str = "run-pod.after-record";
/// `RunPodSandbox`: the first plugin of the network's chain added the pod, the others not
/// yet (only reached with a chain of two plugins or more).
pub const RUN_POD_MID_NETWORK: &str = "run-pod.mid-network";
/// `RunPodSandbox`: CNI ADD done, record not yet ready.
pub const RUN_POD_AFTER_NETWORK: &str = "run-pod.after-network";
/// `CreateContainer`: writable layer prepared and rootfs mounted, no record yet.
pub const CREATE_CONTAINER_AFTER_SNAPSHOT: &str = "create-container.after-snapshot";
/// `CreateContainer`: container cgroup created, no record yet.
pub const CREATE_CONTAINER_AFTER_CGROUP: &str = "create-container.after-cgroup";
/// `StartContainer`: monitor spawned and container running, record still says created.
pub const START_CONTAINER_AFTER_SPAWN: &str = "start-container.after-spawn";
/// `StopContainer`: stop signal sent, exit not yet recorded.
pub const STOP_CONTAINER_AFTER_SIGNAL: &str = "stop-container.after-signal";
/// `RemoveContainer`: rootfs unmounted and writable layer removed; cgroup, runtime dir and
/// record still there.
pub const REMOVE_CONTAINER_MID_TEARDOWN: &str = "remove-container.mid-teardown";
/// `RemoveContainer`: rootfs, writable layer and cgroup removed, record still there.
pub const REMOVE_CONTAINER_AFTER_TEARDOWN: &str = "remove-container.after-teardown";
/// `StopPodSandbox`: CNI DEL done, record still says ready.
pub const STOP_POD_AFTER_NETWORK: &str = "stop-pod.after-network";
/// `StopPodSandbox`: CNI DEL done and the pod init killed; the record still names the init
/// and the network namespace is still pinned.
pub const STOP_POD_AFTER_INIT_KILL: &str = "stop-pod.after-init-kill";
/// `RemovePodSandbox`: namespaces, cgroup and pod dir released, record still there.
pub const REMOVE_POD_AFTER_TEARDOWN: &str = "remove-pod.after-teardown";
/// `PullImage`: one layer committed, the others in flight or not started, no image record.
pub const PULL_AFTER_FIRST_LAYER: &str = "pull.after-first-layer";
/// `PullImage`: every layer fetched and unpacked, image record not written.
pub const PULL_AFTER_LAYERS: &str = "pull.after-layers";
/// `RemoveImage`: image record removed, content and layers not yet collected.
pub const REMOVE_IMAGE_AFTER_RECORD: &str = "remove-image.after-record";

/// Image garbage collection: the image record is gone and one unreferenced layer removed,
/// the other layers and the documents not yet.
pub const GC_AFTER_FIRST_LAYER: &str = "gc.after-first-layer";
/// Image garbage collection: every unreferenced layer removed, the documents not yet.
pub const GC_AFTER_LAYERS: &str = "gc.after-layers";

/// The environment variable that arms crash points (test builds only).
pub const ENV: &str = "CARRACK_FAILPOINTS";

/// What an armed point does.
#[cfg(feature = "failpoints")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// SIGKILL the daemon.
    Kill,
    /// Hold the calling thread this long.
    Pause(std::time::Duration),
}

/// Parses `CARRACK_FAILPOINTS`: `<name>` or `<name>=pause:<ms>`, comma-separated. Entries
/// that do not parse are skipped with a warning (a test build only).
#[cfg(feature = "failpoints")]
fn parse(value: &str) -> Vec<(String, Action)> {
    value
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .filter_map(|entry| match entry.split_once('=') {
            None => Some((entry.to_owned(), Action::Kill)),
            Some((name, action)) => match action
                .strip_prefix("pause:")
                .and_then(|ms| ms.parse::<u64>().ok())
            {
                Some(ms) => Some((
                    name.trim().to_owned(),
                    Action::Pause(std::time::Duration::from_millis(ms)),
                )),
                None => {
                    tracing::warn!(entry, "unknown failpoint action; ignored");
                    None
                }
            },
        })
        .collect()
}

/// Kills the process with SIGKILL, or pauses, if `name` is armed (test builds only).
#[cfg(feature = "failpoints")]
pub fn hit(name: &'static str) {
    use std::sync::OnceLock;
    static ARMED: OnceLock<Vec<(String, Action)>> = OnceLock::new();
    let armed = ARMED.get_or_init(|| std::env::var(ENV).map(|v| parse(&v)).unwrap_or_default());
    match armed
        .iter()
        .find(|(armed, _)| armed == name)
        .map(|(_, action)| *action)
    {
        Some(Action::Kill) => {
            tracing::warn!(failpoint = name, "failpoint hit: killing the daemon");
            let _ = rustix::process::kill_process(
                rustix::process::getpid(),
                rustix::process::Signal::KILL,
            );
            // SIGKILL to ourselves is delivered before `kill` returns; never go on regardless.
            std::process::abort();
        }
        Some(Action::Pause(duration)) => {
            tracing::warn!(failpoint = name, ?duration, "failpoint hit: pausing");
            // Blocks one runtime worker, which only a test build can afford.
            std::thread::sleep(duration);
        }
        None => {}
    }
}

#[cfg(all(test, feature = "failpoints"))]
mod tests {
    use super::*;

    #[test]
    fn armed_points_kill_or_pause() {
        assert_eq!(
            parse("a, b=pause:250,c=explode,,d=pause:x"),
            vec![
                ("a".to_owned(), Action::Kill),
                (
                    "b".to_owned(),
                    Action::Pause(std::time::Duration::from_millis(250))
                ),
            ]
        );
    }
}

/// Does nothing: this build has no crash points.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_name: &'static str) {}
