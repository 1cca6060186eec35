//! After a daemon restart: re-attach to the monitors of containers that kept running, and
//! record the exits of those that ended while the daemon was away.

use std::sync::Arc;

use super::ContainerService;
use crate::monitor::client;
use crate::monitor::protocol::StartReport;
use crate::store::{ContainerRecord, ContainerState};

/// What recovery found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Containers still running, watched again.
    pub running: usize,
    /// Containers that exited while the daemon was down.
    pub exited: usize,
}

impl ContainerService {
    /// Watches every running container's monitor again; records the exits that happened
    /// meanwhile.
    pub async fn recover(self: &Arc<Self>) -> RecoveryReport {
        let mut report = RecoveryReport::default();
        for container in self.store.containers.list() {
            let container = match container.state {
                ContainerState::Running => container,
                // A start the daemon died in the middle of: the monitor may have started it.
                ContainerState::Created => match self.adopt_start(&container) {
                    Some(started) => started,
                    None => continue,
                },
                _ => continue,
            };
            let dir = self.runtime_dir(&container.id);
            // A pid from the record names our monitor only if the monitor's own pid file
            // agrees and no exit was recorded; otherwise the pid may have been reused.
            let alive = client::read_exit(&dir).ok().flatten().is_none()
                && client::read_pid(&dir).ok().flatten() == Some(container.monitor_pid)
                && is_our_monitor(container.monitor_pid, &dir);
            if alive {
                report.running += 1;
                self.watch_pid(container.id.clone(), container.monitor_pid);
            } else {
                report.exited += 1;
                if let Err(err) = self.record_exit(&container.id).await {
                    tracing::error!(container = %container.id, error = %err, "recording an exit found at start failed");
                }
            }
        }
        report
    }
}

impl ContainerService {
    /// For a container recorded as created: if its monitor recorded a successful start (the
    /// daemon died before it read the report), records it as running and returns the record.
    fn adopt_start(&self, container: &ContainerRecord) -> Option<Arc<ContainerRecord>> {
        let dir = self.runtime_dir(&container.id);
        let Ok(Some(StartReport::Started {
            pid,
            monitor_pid,
            started_at_ns,
            ..
        })) = client::read_start(&dir)
        else {
            return None;
        };
        let mut record = container.clone();
        record.state = ContainerState::Running;
        record.pid = pid;
        record.monitor_pid = monitor_pid;
        record.started_at_ns = started_at_ns;
        match self.store.containers.put(record) {
            Ok(adopted) => {
                tracing::info!(container = %container.id, pid, "adopted a start the daemon did not see finish");
                Some(adopted)
            }
            Err(err) => {
                tracing::error!(container = %container.id, error = %err, "cannot record an adopted start");
                None
            }
        }
    }
}

/// Whether process `pid` is a `carrack monitor` for runtime dir `dir` (its command line says
/// so), so that a reused pid is never mistaken for a monitor.
fn is_our_monitor(pid: i32, dir: &std::path::Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let mut args = cmdline.split(|byte| *byte == 0);
    let _binary = args.next();
    args.next() == Some(b"monitor".as_slice())
        && args.next() == Some(dir.as_os_str().as_encoded_bytes())
}
