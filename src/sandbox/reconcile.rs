//! The pod reconciler: removes what a `RunPodSandbox` left behind when it was cut short before
//! its pod record existed (a crash between steps) — the pod directory with its pinned
//! namespace and `/dev/shm` mounts, the pod cgroup, the init of a shared PID namespace — and
//! logs and counts each. Pods with a record are left alone: their own stop and remove finish
//! the job (and [`SandboxService::finish_pending_teardowns`] the network).
//!
//! The cgroup is the one resource the pod directory alone does not name (kubelet picks its
//! parent), so the create notes it in `cgroup.json` in the pod directory before making it
//! ([`write_cgroup_intent`]).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{SandboxService, pid_init};
use crate::cgroups::{CgroupPath, Created};

/// The intent file in a pod directory.
const CGROUP_INTENT_FILE: &str = "cgroup.json";

/// What a create is about to make, or made, of the pod's cgroup.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct CgroupIntent {
    /// The pod cgroup's path.
    path: String,
    /// The directories the create made; `None` while it has not finished making them.
    created: Option<Vec<PathBuf>>,
}

/// What one reconciler pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PodReconcileReport {
    /// Pod directories (with their namespace and `/dev/shm` mounts).
    pub pod_dirs: usize,
    /// Pod cgroups.
    pub cgroups: usize,
    /// Inits of shared PID namespaces.
    pub pod_inits: usize,
    /// Things that could not be removed (logged; tried again by the next pass).
    pub failed: usize,
}

/// Records in `pod_dir` that the pod's cgroup is `path` and, once made, which directories the
/// create made (atomically: a crash leaves the old note or the new one).
pub(super) fn write_cgroup_intent(
    pod_dir: &Path,
    path: &CgroupPath,
    created: Option<&Created>,
) -> std::io::Result<()> {
    let intent = CgroupIntent {
        path: path.as_str().to_owned(),
        created: created.map(|created| created.dirs().to_vec()),
    };
    let bytes = serde_json::to_vec(&intent).map_err(std::io::Error::other)?;
    let target = pod_dir.join(CGROUP_INTENT_FILE);
    let temp = pod_dir.join(format!("{CGROUP_INTENT_FILE}.tmp"));
    match std::fs::remove_file(&temp) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(err),
        _ => {}
    }
    crate::store::write_atomically(&temp, &target, &bytes).map_err(|(_, err)| err)
}

impl SandboxService {
    /// Removes every pod resource no record owns and no create in flight is building; safe to
    /// run while RPCs are served.
    pub fn reconcile(&self) -> PodReconcileReport {
        let mut report = PodReconcileReport::default();
        let pods_dir = self.settings.state_dir.join("pods");
        // Judged per thing found, after finding it: a create in flight reserved its name
        // before it made anything, and its record exists before the reservation goes, so
        // what a live pod owns always has a record or a reservation by the time it is seen.
        // A pod whose record was lost (quarantined) while containers of it remain keeps its
        // namespaces, cgroup and init until those are removed: they still run in them.
        // A pod whose record is on disk but could not be read (a newer schema, or
        // quarantined) keeps everything: what it owns is unknown, not orphaned.
        let orphan = |id: &str| {
            let candidate = crate::store::is_object_id(id)
                && self.store.pods.get(id).is_none()
                && !self.store.pod_names.holds(id)
                && !self
                    .store
                    .containers
                    .list()
                    .iter()
                    .any(|container| container.pod_id == id);
            if candidate && self.store.pods.has_unreadable(id) {
                tracing::debug!(pod = %id, "kept: its record is on disk but unreadable");
                return false;
            }
            candidate
        };

        // Inits first: a cgroup cannot go while they are in it.
        for (pid, pod_dir) in pod_inits() {
            let Some(id) = pod_dir
                .strip_prefix(&pods_dir)
                .ok()
                .and_then(|rest| rest.to_str())
                .filter(|rest| !rest.contains('/'))
            else {
                continue;
            };
            if !orphan(id) {
                continue;
            }
            match pid_init::kill(pid) {
                Ok(()) => {
                    tracing::info!(pod = %id, pid, "reconciler killed an orphaned pod init");
                    report.pod_inits += 1;
                }
                Err(err) => {
                    tracing::warn!(pod = %id, pid, error = %err, "reconciler could not kill a pod init");
                    report.failed += 1;
                }
            }
        }

        for entry in std::fs::read_dir(&pods_dir).into_iter().flatten().flatten() {
            let id = entry.file_name().to_string_lossy().into_owned();
            if !orphan(&id) {
                continue;
            }
            let dir = entry.path();
            match self.remove_cgroup_of(&id, &dir) {
                Ok(true) => report.cgroups += 1,
                Ok(false) => {}
                Err(err) => {
                    tracing::warn!(pod = %id, error = %err, "reconciler could not remove a pod cgroup");
                    report.failed += 1;
                    // The note stays, so the next pass tries again.
                    continue;
                }
            }
            match remove_pod_dir(&dir) {
                Ok(()) => {
                    tracing::info!(pod = %id, "reconciler removed an orphaned pod dir");
                    report.pod_dirs += 1;
                }
                Err(err) => {
                    tracing::warn!(pod = %id, error = %err, "reconciler could not remove a pod dir");
                    report.failed += 1;
                }
            }
        }
        report
    }

    /// Removes the cgroup noted in `dir`; true when there was one to remove.
    fn remove_cgroup_of(&self, id: &str, dir: &Path) -> Result<bool, String> {
        let bytes = match std::fs::read(dir.join(CGROUP_INTENT_FILE)) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(err) => return Err(err.to_string()),
        };
        let intent: CgroupIntent = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
        let path = CgroupPath::parse(&intent.path).map_err(|e| e.to_string())?;
        match intent.created {
            Some(created) => self
                .cgroups
                .remove(&path, &Created::from_dirs(created))
                .map_err(|e| e.to_string())?,
            // Cut short while making it: only a cgroup named after this pod is surely ours.
            None if path.as_str().contains(id) => {
                self.cgroups.remove_tree(&path).map_err(|e| e.to_string())?
            }
            None => return Ok(false),
        }
        tracing::info!(pod = %id, cgroup = %path, "reconciler removed an orphaned pod cgroup");
        Ok(true)
    }
}

/// Every running pod init, with the pod directory its command line names.
fn pod_inits() -> Vec<(i32, PathBuf)> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            Some((pid, pid_init::owner_of(&cmdline)?))
        })
        .collect()
}

/// Detaches every mount at or below `dir` (namespace pins, `/dev/shm`), deepest first, then
/// removes the directory.
fn remove_pod_dir(dir: &Path) -> std::io::Result<()> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    let mut mounts = mounts_below(&mountinfo, dir);
    mounts.sort_by_key(|mount| std::cmp::Reverse(mount.components().count()));
    for mount in mounts {
        use rustix::mount::{UnmountFlags, unmount};
        match unmount(&mount, UnmountFlags::DETACH | UnmountFlags::NOFOLLOW) {
            Ok(()) | Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOENT) => {}
            Err(errno) => return Err(errno.into()),
        }
    }
    match std::fs::remove_dir_all(dir) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

/// The mount points in `mountinfo` (the `/proc/self/mountinfo` format) at or below `dir`.
fn mounts_below(mountinfo: &str, dir: &Path) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape_mountinfo(field)))
        .filter(|mount| mount.starts_with(dir))
        .collect()
}

/// Undoes mountinfo's octal escapes (`\040` for a space, `\011`, `\012`, `\134`).
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = bytes
            .get(i + 1..i + 4)
            .filter(|_| bytes[i] == b'\\')
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .and_then(|digits| u8::from_str_radix(digits, 8).ok());
        if let Some(value) = escaped {
            out.push(value);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_below_a_dir_are_found_with_escapes_undone() {
        let mountinfo = "\
22 1 8:1 / / rw - ext4 /dev/vda rw
40 22 0:4 net:[4026532] /run/c/pods/ab/net rw - nsfs nsfs rw
41 22 0:50 / /run/c/pods/ab/shm rw - tmpfs shm rw
42 22 0:51 / /run/c/pods/ab\\040x/shm rw - tmpfs shm rw
43 22 0:52 / /run/c/pods/abc/net rw - nsfs nsfs rw
";
        let found = mounts_below(mountinfo, Path::new("/run/c/pods/ab"));
        assert_eq!(
            found,
            vec![
                PathBuf::from("/run/c/pods/ab/net"),
                PathBuf::from("/run/c/pods/ab/shm")
            ]
        );
        let spaced = mounts_below(mountinfo, Path::new("/run/c/pods/ab x"));
        assert_eq!(spaced, vec![PathBuf::from("/run/c/pods/ab x/shm")]);
    }

    #[test]
    fn pod_init_command_lines_name_their_pod_dir() {
        assert_eq!(
            pid_init::owner_of(b"/usr/bin/carrack\0pod-init\0/run/c/pods/ab\0"),
            Some(PathBuf::from("/run/c/pods/ab"))
        );
        assert_eq!(pid_init::owner_of(b"/usr/bin/carrack\0pod-init\0"), None);
        assert_eq!(
            pid_init::owner_of(b"/usr/bin/carrack\0monitor\0/run/c/pods/ab\0"),
            None
        );
    }

    #[test]
    fn the_cgroup_intent_round_trips_through_the_pod_dir() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = CgroupPath::parse("/kubepods/podx").expect("path");
        write_cgroup_intent(dir.path(), &path, None).expect("write");
        write_cgroup_intent(
            dir.path(),
            &path,
            Some(&Created::from_dirs([PathBuf::from("/sys/fs/cgroup/x")])),
        )
        .expect("rewrite");
        let bytes = std::fs::read(dir.path().join(CGROUP_INTENT_FILE)).expect("read");
        let intent: CgroupIntent = serde_json::from_slice(&bytes).expect("parse");
        assert_eq!(intent.path, "/kubepods/podx");
        assert_eq!(
            intent.created,
            Some(vec![PathBuf::from("/sys/fs/cgroup/x")])
        );
    }
}
