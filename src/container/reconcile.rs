//! The container reconciler (at start and periodically): removes what a container left behind when its create or remove
//! was cut short (a crash between steps) — runtime directories and their rootfs mounts,
//! writable layers and container cgroups that no record owns — and logs and counts each.

use std::path::Path;

use super::ContainerService;
use super::create::unmount_rootfs;
use crate::cgroups::CgroupPath;
use crate::monitor::client;
use crate::monitor::protocol::ROOTFS_DIR;

/// What the reconciler removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Runtime directories (with their rootfs mounts and monitors).
    pub runtime_dirs: usize,
    /// Writable layers.
    pub writable_layers: usize,
    /// Container cgroups.
    pub cgroups: usize,
    /// Things that could not be removed (logged; tried again by the next pass).
    pub failed: usize,
}

impl ContainerService {
    /// Removes every container resource no record owns and no create in flight is building;
    /// safe to run while RPCs are served.
    pub fn reconcile(&self) -> ReconcileReport {
        let mut report = ReconcileReport::default();
        // Judged per thing found, after finding it: a create in flight reserved its name
        // before it made anything, and a record exists before the reservation goes, so what a
        // live container owns always has a record or a reservation by the time it is seen.
        // A container whose record is on disk but could not be read (a newer schema, or
        // quarantined) keeps everything: what it owns is unknown, not orphaned.
        let orphan = |id: &str| {
            let candidate = crate::store::is_object_id(id)
                && self.store.containers.get(id).is_none()
                && !self.store.container_names.holds(id);
            if candidate && self.store.containers.has_unreadable(id) {
                tracing::debug!(container = %id, "kept: its record is on disk but unreadable");
                return false;
            }
            candidate
        };

        let containers_dir = self.settings.state_dir.join("containers");
        for entry in std::fs::read_dir(&containers_dir)
            .into_iter()
            .flatten()
            .flatten()
        {
            let id = entry.file_name().to_string_lossy().into_owned();
            if !orphan(&id) {
                continue;
            }
            match remove_runtime_dir(&entry.path()) {
                Ok(()) => {
                    tracing::info!(container = %id, "reconciler removed an orphaned runtime dir");
                    report.runtime_dirs += 1;
                }
                Err(err) => {
                    tracing::warn!(container = %id, error = %err, "reconciler could not remove a runtime dir");
                    report.failed += 1;
                }
            }
        }

        for id in self.snapshots.list_active() {
            if !orphan(&id) {
                continue;
            }
            match self.snapshots.remove_active(&id) {
                Ok(_) => {
                    tracing::info!(container = %id, "reconciler removed an orphaned writable layer");
                    report.writable_layers += 1;
                }
                Err(err) => {
                    tracing::warn!(container = %id, error = %err, "reconciler could not remove a writable layer");
                    report.failed += 1;
                }
            }
        }

        // Container cgroups are named after their container id under their pod's cgroup.
        for pod in self.store.pods.list() {
            let Ok(pod_cgroup) = CgroupPath::parse(&pod.cgroup_path) else {
                continue;
            };
            for name in self.cgroups.children(&pod_cgroup) {
                // A scope's name is not the bare id (systemd driver: `carrack-<id>.scope`).
                let Some(id) = self.cgroups.container_of(&name) else {
                    continue;
                };
                if !orphan(id) {
                    continue;
                }
                let path = self.cgroups.container_cgroup_path(&pod_cgroup, id);
                match self.cgroups.remove_tree(&path) {
                    Ok(()) => {
                        tracing::info!(container = %id, cgroup = %path, "reconciler removed an orphaned cgroup");
                        report.cgroups += 1;
                    }
                    Err(err) => {
                        tracing::warn!(container = %id, error = %err, "reconciler could not remove a cgroup");
                        report.failed += 1;
                    }
                }
            }
        }
        report
    }
}

/// Kills a monitor still running there, unmounts the rootfs and removes the directory.
fn remove_runtime_dir(dir: &Path) -> std::io::Result<()> {
    if let Ok(Some(pid)) = client::read_pid(dir)
        && client::read_exit(dir).ok().flatten().is_none()
    {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let mut args = cmdline.split(|b| *b == 0).skip(1);
        if args.next() == Some(b"monitor".as_slice())
            && args.next() == Some(dir.as_os_str().as_encoded_bytes())
            && let Some(pid) = rustix::process::Pid::from_raw(pid)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
    unmount_rootfs(&dir.join(ROOTFS_DIR))?;
    std::fs::remove_dir_all(dir)
}
