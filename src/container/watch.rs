//! Noticing that a container ended: each running container's monitor is watched through a
//! pidfd (readable once the monitor has exited, whether or not anyone reaped it); then the
//! exit record the monitor wrote becomes the container's final state.

use rustix::process::{Pid, PidfdFlags, pidfd_open};
use std::os::fd::OwnedFd;
use std::sync::Arc;

pub(super) use super::pidfd::wait_for_exit;
use super::{ContainerError, ContainerService};
use crate::cgroups::CgroupPath;
use crate::events::ContainerEventKind;
use crate::monitor::client;
use crate::store::{ContainerRecord, ContainerState, now_ns};

/// Exit code recorded when the monitor died without recording one.
const UNKNOWN_EXIT_CODE: i32 = 255;

impl ContainerService {
    /// Watches the monitor behind `pidfd` and records the container's exit when it ends.
    pub(super) fn watch(self: &Arc<Self>, id: String, pidfd: OwnedFd) {
        let service = Arc::clone(self);
        tokio::spawn(async move {
            if let Err(err) = wait_for_exit(pidfd, None).await {
                tracing::warn!(container = %id, error = %err, "cannot watch the monitor; polling its exit");
            }
            if let Err(err) = service.record_exit(&id).await {
                tracing::error!(container = %id, error = %err, "recording the container's exit failed");
            }
        });
    }

    /// Like [`Self::watch`] for a monitor known only by pid (after a daemon restart).
    pub(super) fn watch_pid(self: &Arc<Self>, id: String, monitor_pid: i32) {
        match open_pidfd(monitor_pid) {
            Some(pidfd) => self.watch(id, pidfd),
            None => {
                let service = Arc::clone(self);
                tokio::spawn(async move {
                    if let Err(err) = service.record_exit(&id).await {
                        tracing::error!(container = %id, error = %err, "recording the container's exit failed");
                    }
                });
            }
        }
    }

    /// Records how a running container ended, from its monitor's exit record. Called once the
    /// monitor is gone; does nothing for a container that is not running any more.
    pub(super) async fn record_exit(&self, id: &str) -> Result<(), ContainerError> {
        let _guard = self.locks.lock(id).await;
        let Some(container) = self.store.containers.get(id) else {
            return Ok(());
        };
        if container.state != ContainerState::Running {
            return Ok(());
        }
        let dir = self.runtime_dir(id);
        let mut record: ContainerRecord = (*container).clone();
        match client::read_exit(&dir) {
            Ok(Some(exit)) => {
                record.exit_code = exit.exit_code;
                record.finished_at_ns = exit.finished_at_ns;
                (record.reason, record.message) = if exit.oom_killed {
                    ("OOMKilled".to_owned(), String::new())
                } else if exit.exit_code == 0 {
                    ("Completed".to_owned(), String::new())
                } else {
                    ("Error".to_owned(), String::new())
                };
            }
            other => {
                if let Err(err) = other {
                    tracing::warn!(container = %id, error = %err, "unreadable exit record");
                }
                // The monitor died without writing one (killed, or crashed): the container's
                // processes lost their parent; kill them rather than let them run unwatched.
                if let Ok(path) = CgroupPath::parse(&record.cgroup_path) {
                    let cgroups = Arc::clone(&self.cgroups);
                    let _ = tokio::task::spawn_blocking(move || cgroups.kill_all(&path)).await;
                }
                record.exit_code = UNKNOWN_EXIT_CODE;
                record.finished_at_ns = now_ns();
                record.reason = "Error".to_owned();
                record.message =
                    "the container's monitor exited without recording the container's exit; its processes were killed"
                        .to_owned();
            }
        }
        record.state = ContainerState::Exited;
        tracing::info!(container = %id, exit_code = record.exit_code, reason = %record.reason, "container exited");
        self.store.containers.put(record)?;
        self.publish_current(ContainerEventKind::Stopped, id);
        Ok(())
    }

    /// For a container the record says runs: whether its monitor already exited. Lets status
    /// calls see an exit before the watcher task got to it.
    pub(super) fn exit_pending(&self, record: &ContainerRecord) -> bool {
        record.state == ContainerState::Running
            && (client::read_exit(&self.runtime_dir(&record.id))
                .ok()
                .flatten()
                .is_some()
                || open_pidfd(record.monitor_pid).is_none())
    }
}

/// A pidfd for `pid`, or `None` when no such process exists.
pub(super) fn open_pidfd(pid: i32) -> Option<OwnedFd> {
    let pid = Pid::from_raw(pid)?;
    pidfd_open(pid, PidfdFlags::empty()).ok()
}
