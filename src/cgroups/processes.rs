//! Moving processes into a cgroup, listing them, and killing them all.
//!
//! Killing goes through pidfds: a pid read from `cgroup.procs` may belong to an unrelated
//! process by the time we signal it (the original exited and the number was reused), so each
//! pid is pinned with `pidfd_open` and only signalled if it is still listed in the cgroup
//! after pinning. On v2, `cgroup.kill` does the whole job atomically in the kernel.

use std::collections::BTreeSet;
use std::time::Duration;

use rustix::process::{Pid, PidfdFlags, Signal};

use super::error::CgroupError;
use super::interface;
use super::{CgroupManager, CgroupPath};

/// Kill rounds before giving up on survivors (a task stuck in uninterruptible sleep).
const KILL_ROUNDS: u32 = 40;
/// Longest pause between rounds; the first pauses are shorter so quick exits return quickly.
const MAX_ROUND_PAUSE: Duration = Duration::from_millis(50);

impl CgroupManager {
    /// Moves process `pid` into `path` in every hierarchy.
    pub fn add_process(&self, path: &CgroupPath, pid: i32) -> Result<(), CgroupError> {
        if pid <= 0 {
            return Err(CgroupError::InvalidValue {
                controller: "cgroup".to_owned(),
                file: "cgroup.procs".to_owned(),
                value: pid.to_string(),
                reason: "not a process id".to_owned(),
            });
        }
        for dir in self.dirs(path) {
            interface::write(&dir.join("cgroup.procs"), "cgroup", &pid.to_string())?;
        }
        Ok(())
    }

    /// The file of `path` in every hierarchy that a new process is put into the cgroup with
    /// (by the executor, before the process runs anything): on v1 the `tasks` files, which
    /// the new process writes itself; that move of a single thread skips the RCU grace
    /// period a write to `cgroup.procs` waits for (see `executor::LaunchRequest`). On v2
    /// `cgroup.procs`, written by the executor with the new pid.
    pub fn procs_files(&self, path: &CgroupPath) -> Vec<std::path::PathBuf> {
        let file = if self.is_v2() {
            "cgroup.procs"
        } else {
            "tasks"
        };
        self.dirs(path)
            .into_iter()
            .map(|dir| dir.join(file))
            .collect()
    }

    /// The processes in `path` (not its children), from every hierarchy, sorted.
    ///
    /// On v1 a process is listed in each hierarchy it was added to; the union also catches one
    /// that was moved out of some hierarchies only.
    pub fn pids(&self, path: &CgroupPath) -> Result<Vec<i32>, CgroupError> {
        match self.pids_if_exists(path)? {
            Some(pids) => Ok(pids.into_iter().collect()),
            None => Err(CgroupError::NotFound {
                path: path.to_string(),
            }),
        }
    }

    /// The union of `cgroup.procs`, or `None` when the cgroup exists in no hierarchy.
    fn pids_if_exists(&self, path: &CgroupPath) -> Result<Option<BTreeSet<i32>>, CgroupError> {
        let mut found = false;
        let mut pids = BTreeSet::new();
        for dir in self.dirs(path) {
            if let Some(listed) = interface::read_pids(&dir.join("cgroup.procs"))? {
                found = true;
                pids.extend(listed);
            }
        }
        Ok(found.then_some(pids))
    }

    /// SIGKILLs every process in `path` until none is left (or the rounds run out).
    ///
    /// Children cgroups are not visited; the caller kills containers before their pod. A
    /// cgroup that does not exist has nothing to kill. Blocks for up to about two seconds.
    pub fn kill_all(&self, path: &CgroupPath) -> Result<(), CgroupError> {
        if self.is_v2() {
            let kill = self
                .dirs(path)
                .into_iter()
                .map(|dir| dir.join("cgroup.kill"));
            for file in kill.filter(|file| file.exists()) {
                // The kernel signals the whole subtree, and new forks, at once.
                interface::write(&file, "cgroup", "1")?;
            }
        }
        let own_pid = rustix::process::getpid().as_raw_nonzero().get();
        let mut pause = Duration::from_millis(1);
        for _ in 0..KILL_ROUNDS {
            let targets = self.kill_targets(path, own_pid)?;
            if targets.is_empty() {
                return Ok(());
            }
            let pinned: Vec<(i32, Pinned)> = targets
                .iter()
                .filter_map(|pid| Some((*pid, Pinned::new(*pid)?)))
                .collect();
            // Pinned first, checked second: a pid still listed now is the pinned process (or
            // one forked inside the cgroup, which is ours to kill anyway).
            let still = self.kill_targets(path, own_pid)?;
            for (pid, process) in &pinned {
                if still.contains(pid) {
                    process.kill(*pid);
                }
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(MAX_ROUND_PAUSE);
        }
        let left = self.kill_targets(path, own_pid)?;
        if left.is_empty() {
            return Ok(());
        }
        Err(CgroupError::ProcessesRemain {
            path: path.to_string(),
            pids: left.into_iter().collect(),
        })
    }

    /// The processes of `path` that `kill_all` may signal: all but the daemon itself.
    fn kill_targets(&self, path: &CgroupPath, own_pid: i32) -> Result<BTreeSet<i32>, CgroupError> {
        let mut pids = self.pids_if_exists(path)?.unwrap_or_default();
        // Killing ourselves would take every pod down with this one; it can only happen when
        // the daemon was started inside a pod cgroup by mistake.
        if pids.remove(&own_pid) {
            tracing::warn!(cgroup = %path, "the daemon itself is in this cgroup; not killing it");
        }
        Ok(pids)
    }
}

/// A process pinned for signalling: a pidfd, or (kernels without pidfds) the bare pid.
enum Pinned {
    Fd(rustix::fd::OwnedFd),
    Pid(Pid),
}

impl Pinned {
    /// Pins `pid`; `None` when it has already gone.
    fn new(pid: i32) -> Option<Self> {
        let raw = Pid::from_raw(pid)?;
        match rustix::process::pidfd_open(raw, PidfdFlags::empty()) {
            Ok(fd) => Some(Self::Fd(fd)),
            Err(rustix::io::Errno::SRCH) => None,
            Err(_) => Some(Self::Pid(raw)),
        }
    }

    fn kill(&self, pid: i32) {
        let result = match self {
            Self::Fd(fd) => rustix::process::pidfd_send_signal(fd, Signal::KILL),
            Self::Pid(raw) => rustix::process::kill_process(*raw, Signal::KILL),
        };
        match result {
            Ok(()) | Err(rustix::io::Errno::SRCH) => {}
            Err(err) => tracing::warn!(pid, %err, "cannot SIGKILL cgroup member"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::fixture::{FakeHost, path};
    use crate::error_kind::ErrorKind;

    #[test]
    fn add_process_writes_every_hierarchy() {
        let host = FakeHost::v1();
        host.make_cgroup("p", &[]);
        host.manager().add_process(&path("/p"), 4242).expect("add");
        for hierarchy in host.hierarchies() {
            assert_eq!(host.read(&format!("{hierarchy}/p/cgroup.procs")), "4242");
        }
        let err = host
            .manager()
            .add_process(&path("/p"), 0)
            .expect_err("pid 0");
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    }

    #[test]
    fn new_processes_join_through_tasks_on_v1_and_cgroup_procs_on_v2() {
        let v1 = FakeHost::v1();
        let files = v1.manager().procs_files(&path("/p/c"));
        assert_eq!(files.len(), v1.hierarchies().len());
        for (file, hierarchy) in files.iter().zip(v1.hierarchies()) {
            assert!(file.ends_with(format!("{hierarchy}/p/c/tasks")), "{file:?}");
        }
        let v2 = FakeHost::v2("cpu memory pids");
        let files = v2.manager().procs_files(&path("/p/c"));
        assert_eq!(files.len(), 1);
        assert!(files[0].ends_with("p/c/cgroup.procs"), "{files:?}");
    }

    #[test]
    fn pids_are_the_union_over_hierarchies() {
        let host = FakeHost::v1();
        host.make_cgroup("p", &[]);
        host.write("memory/p/cgroup.procs", "30\n10\n");
        host.write("pids/p/cgroup.procs", "20\n10\n");
        assert_eq!(
            host.manager().pids(&path("/p")).expect("pids"),
            [10, 20, 30]
        );
        let err = host.manager().pids(&path("/absent")).expect_err("absent");
        assert_eq!(err.kind(), ErrorKind::NotFound);
    }

    #[test]
    fn kill_all_on_empty_or_absent_cgroup_returns_at_once() {
        let host = FakeHost::v1();
        host.make_cgroup("p", &[]);
        host.manager().kill_all(&path("/p")).expect("empty");
        host.manager().kill_all(&path("/absent")).expect("absent");
    }

    #[test]
    fn kill_all_uses_cgroup_kill_on_v2() {
        let host = FakeHost::v2("cpu");
        host.make_cgroup("p", &["cgroup.kill"]);
        host.manager().kill_all(&path("/p")).expect("kill");
        assert_eq!(host.read("p/cgroup.kill"), "1");
    }

    #[test]
    fn kill_all_never_signals_the_daemon_itself() {
        let host = FakeHost::v1();
        host.make_cgroup("p", &[]);
        let me = std::process::id().to_string();
        host.write("memory/p/cgroup.procs", &me);
        // Returns (we are still alive to assert it) without error.
        host.manager().kill_all(&path("/p")).expect("self only");
    }

    #[test]
    fn pinned_gone_pid_is_none() {
        // A child that has been reaped no longer has a pid to pin.
        let mut child = std::process::Command::new("true").spawn().expect("spawn");
        let pid = i32::try_from(child.id()).expect("pid");
        child.wait().expect("wait");
        assert!(Pinned::new(pid).is_none());
    }
}
