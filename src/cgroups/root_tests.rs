//! Root-only tests against the host's real cgroup v1 hierarchy.
//!
//! Skipped (with a note on stderr) unless we are root on a v1 or hybrid host. Each test works
//! under its own `/carrack-unit-<pid>-<name>` cgroup, and a drop guard kills its child and
//! removes that tree from every hierarchy even when an assertion fails.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command};

use super::{CgroupManager, CgroupPath, CgroupSettings, Layout, Resources};
use crate::config::CgroupDriver;

const ROOT: &str = "/sys/fs/cgroup";

/// A manager on the real hierarchy, or `None` (test skipped) when this host cannot run it.
fn real_manager(test: &str) -> Option<CgroupManager> {
    if !rustix::process::geteuid().is_root() || !Path::new(ROOT).join("memory").is_dir() {
        eprintln!("{test}: skipped (needs root and a cgroup v1 memory hierarchy)");
        return None;
    }
    let settings = CgroupSettings::new(CgroupDriver::Cgroupfs, ROOT.into());
    let manager = CgroupManager::new(settings).expect("detect real layout");
    if !matches!(manager.layout(), Layout::V1 { .. }) {
        eprintln!("{test}: skipped (not a cgroup v1 host)");
        return None;
    }
    Some(manager)
}

/// Kills the test's child and removes its cgroup tree, whatever happened.
struct Cleanup {
    manager: CgroupManager,
    top: CgroupPath,
    child: Option<Child>,
}

impl Cleanup {
    fn new(manager: &CgroupManager, name: &str) -> Self {
        let top = CgroupPath::parse(&format!("/carrack-unit-{}-{name}", std::process::id()))
            .expect("test cgroup path");
        eprintln!("{name}: working under {ROOT}/*{top}");
        Self {
            manager: manager.clone(),
            top,
            child: None,
        }
    }

    /// Spawns `sleep 30` and remembers it for cleanup.
    fn spawn_sleeper(&mut self) -> i32 {
        let child = Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let pid = i32::try_from(child.id()).expect("pid fits i32");
        self.child = Some(child);
        pid
    }

    /// Reaps the child after it was killed, returning the signal that ended it.
    fn reap(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        child.wait().expect("wait child").signal()
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Err(err) = self.manager.remove_tree(&self.top) {
            eprintln!("cleanup of {} failed: {err}", self.top);
        }
    }
}

/// Each distinct hierarchy mount of the real host.
fn mounts(manager: &CgroupManager) -> Vec<std::path::PathBuf> {
    manager
        .layout()
        .hierarchies()
        .into_iter()
        .map(Path::to_owned)
        .collect()
}

#[test]
fn real_v1_pod_and_container_lifecycle() {
    let Some(manager) = real_manager("real_v1_pod_and_container_lifecycle") else {
        return;
    };
    let mut guard = Cleanup::new(&manager, "lifecycle");
    let pod = CgroupPath::parse(&format!("{}/pod-x", guard.top)).expect("pod path");
    let pod_created = manager.create(&pod).expect("create pod");
    let ctr = manager.container_cgroup_path(&pod, "ctr-y");
    let ctr_created = manager.create(&ctr).expect("create container");
    assert_eq!(ctr_created.dirs().len(), mounts(&manager).len());

    let resources = Resources {
        cpu_shares: Some(512),
        cpu_quota: Some(50_000),
        cpu_period: Some(100_000),
        memory_limit: Some(64 << 20),
        pids_limit: Some(100),
        ..Resources::default()
    };
    manager.apply(&ctr, &resources).expect("apply");
    let Layout::V1 { controllers } = manager.layout() else {
        unreachable!("checked in real_manager");
    };
    let read = |controller: &str, file: &str| {
        let dir = controllers[controller].join(ctr.relative());
        std::fs::read_to_string(dir.join(file))
            .expect(file)
            .trim()
            .to_owned()
    };
    assert_eq!(read("memory", "memory.limit_in_bytes"), "67108864");
    assert_eq!(read("cpu", "cpu.shares"), "512");
    assert_eq!(read("cpu", "cpu.cfs_quota_us"), "50000");
    assert_eq!(read("pids", "pids.max"), "100");
    // The new cpuset levels were given CPUs, or adding a task below would fail (ENOSPC).
    assert!(!read("cpuset", "cpuset.cpus").is_empty());

    let pid = guard.spawn_sleeper();
    manager.add_process(&ctr, pid).expect("add process");
    assert_eq!(manager.pids(&ctr).expect("pids"), [pid]);

    let stats = manager.stats(&ctr).expect("stats");
    assert_eq!(stats.pids_current, Some(1));
    assert!(stats.cpu_usage_ns.is_some(), "{stats:?}");
    assert!(stats.memory_usage_bytes.is_some(), "{stats:?}");
    assert!(stats.memory_working_set_bytes.is_some(), "{stats:?}");
    assert_eq!(manager.oom_kills(&ctr).expect("oom kills"), 0);

    manager.kill_all(&ctr).expect("kill all");
    assert_eq!(guard.reap(), Some(libc::SIGKILL));
    assert!(manager.pids(&ctr).expect("pids").is_empty());

    manager
        .remove(&ctr, &ctr_created)
        .expect("remove container");
    manager.remove(&pod, &pod_created).expect("remove pod");
    for mount in mounts(&manager) {
        let top = mount.join(guard.top.relative());
        assert!(!top.exists(), "{} still exists", top.display());
    }
}

#[test]
fn real_v1_remove_tree_kills_and_removes_leftovers() {
    let Some(manager) = real_manager("real_v1_remove_tree_kills_and_removes_leftovers") else {
        return;
    };
    let mut guard = Cleanup::new(&manager, "tree");
    let leaf = CgroupPath::parse(&format!("{}/a/b", guard.top)).expect("leaf path");
    manager.create(&leaf).expect("create");
    let pid = guard.spawn_sleeper();
    manager.add_process(&leaf, pid).expect("add process");

    // As after a crash: no Created record, a process still inside.
    manager.remove_tree(&guard.top).expect("remove tree");
    assert_eq!(guard.reap(), Some(libc::SIGKILL));
    for mount in mounts(&manager) {
        let top = mount.join(guard.top.relative());
        assert!(!top.exists(), "{} still exists", top.display());
    }
}

/// Regression: removing the first of two pods under a parent that the first one created used
/// to fail with EBUSY on that shared parent — after killing every process under it, the other
/// pod's included.
#[test]
fn removing_one_pod_keeps_a_shared_parent_and_the_other_pod_alive() {
    let Some(manager) = real_manager("shared_parent") else {
        return;
    };
    let mut cleanup = Cleanup::new(&manager, "shared-parent");
    let first = CgroupPath::parse(&format!("{}/pod-a", cleanup.top)).expect("path");
    let second = CgroupPath::parse(&format!("{}/pod-b", cleanup.top)).expect("path");
    let first_created = manager.create(&first).expect("create first");
    let second_created = manager.create(&second).expect("create second");
    assert!(
        first_created.dirs().len() > second_created.dirs().len(),
        "the first pod created the shared parent"
    );
    let pid = cleanup.spawn_sleeper();
    manager
        .add_process(&second, pid)
        .expect("add to second pod");

    manager
        .remove(&first, &first_created)
        .expect("removing the first pod must succeed while the second lives");
    assert_eq!(
        manager.pids(&second).expect("pids"),
        vec![pid],
        "second pod untouched"
    );
    assert!(
        Path::new(ROOT)
            .join(format!("memory{}", cleanup.top))
            .is_dir()
    );
    assert!(!Path::new(ROOT).join(format!("memory{first}")).exists());
}
