//! Removing cgroups: the directories one `create` made, or a whole leftover subtree.
//!
//! `rmdir` on a cgroup fails with EBUSY while it holds processes or child cgroups, and briefly
//! after its last process died (the kernel finishes exiting tasks asynchronously); so a busy
//! directory gets its processes killed and a few short retries.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::error::CgroupError;
use super::systemd::Unit;
use super::{CgroupManager, CgroupPath, Created};

/// Attempts per directory; with the pauses below, about a second and a half in all.
const RMDIR_ATTEMPTS: u32 = 6;
const FIRST_RMDIR_PAUSE: Duration = Duration::from_millis(20);

impl CgroupManager {
    /// Removes the directories `created` recorded for `path`, deepest first.
    ///
    /// Directories already gone are fine. Each directory must be `path` or one of its ancestors
    /// in some hierarchy, so a corrupted record cannot make us remove anything else. `path`'s
    /// own directories are emptied (processes killed) and must go; an ancestor we created may
    /// meanwhile hold other pods' cgroups, so it gets one plain `rmdir` and is left in place
    /// when busy — never a kill, which would reach those other pods.
    ///
    /// With the systemd driver the unit is stopped first (systemd removes its cgroup; a unit
    /// already gone is fine), then what we made ourselves goes as above.
    pub fn remove(&self, path: &CgroupPath, created: &Created) -> Result<(), CgroupError> {
        self.stop_unit(path)?;
        let allowed: BTreeSet<PathBuf> = path
            .prefixes()
            .iter()
            .flat_map(|prefix| self.dirs(prefix))
            .collect();
        if let Some(foreign) = created.dirs().iter().find(|dir| !allowed.contains(*dir)) {
            return Err(CgroupError::InvalidPath {
                path: foreign.display().to_string(),
                reason: format!("not a directory of cgroup {path}; refusing to remove it"),
            });
        }
        let own: BTreeSet<PathBuf> = self.dirs(path).into_iter().collect();
        let (mut mine, ancestors): (Vec<&Path>, Vec<&Path>) = created
            .dirs()
            .iter()
            .map(PathBuf::as_path)
            .partition(|dir| own.contains(*dir));
        if self.systemd.is_some() {
            // A unit's own cgroup is ours by its name, whoever made each directory (systemd,
            // or we for hierarchies systemd does not manage, maybe unrecorded after a crash
            // between the scope's start and the record's update).
            mine = own.iter().map(PathBuf::as_path).collect();
        }
        // Ancestors in the other hierarchies still go even when one of ours failed.
        let own_result = self.remove_dirs(&mine);
        let mut ancestors = ancestors;
        ancestors.sort_by_key(|dir| std::cmp::Reverse(dir.components().count()));
        for dir in ancestors {
            match std::fs::remove_dir(dir) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) if matches!(err.raw_os_error(), Some(libc::EBUSY | libc::ENOTEMPTY)) => {
                    tracing::debug!(dir = %dir.display(), "shared parent cgroup still in use; kept");
                }
                Err(source) => {
                    return own_result.and(Err(CgroupError::Rmdir {
                        path: dir.to_owned(),
                        source,
                    }));
                }
            }
        }
        own_result
    }

    /// The names of `path`'s child cgroups, in any hierarchy (for the reconciler, which
    /// compares them with its records).
    pub fn children(&self, path: &CgroupPath) -> Vec<String> {
        let mut names = BTreeSet::new();
        for dir in self.dirs(path) {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                    names.insert(entry.file_name().to_string_lossy().into_owned());
                }
            }
        }
        names.into_iter().collect()
    }

    /// Removes `path` and every cgroup below it in every hierarchy, bottom-up, killing any
    /// process left in them. For reconciling leftovers whose [`Created`] record is lost.
    pub fn remove_tree(&self, path: &CgroupPath) -> Result<(), CgroupError> {
        self.stop_unit(path)?;
        let mut dirs = Vec::new();
        for top in self.dirs(path) {
            collect_post_order(&top, &mut dirs)?;
        }
        let dirs: Vec<&Path> = dirs.iter().map(PathBuf::as_path).collect();
        self.remove_dirs(&dirs)
    }

    /// Stops the systemd unit of `path` (systemd driver only). A path that names no unit
    /// (a record from the cgroupfs driver) has none to stop.
    fn stop_unit(&self, path: &CgroupPath) -> Result<(), CgroupError> {
        let Some(bus) = &self.systemd else {
            return Ok(());
        };
        match Unit::for_path(path) {
            Ok(unit) => bus.stop_unit(&unit.name),
            Err(_) => Ok(()),
        }
    }

    /// Removes `dirs` in order (children before parents). After a failure, that directory's
    /// ancestors are skipped: they cannot be empty.
    fn remove_dirs(&self, dirs: &[&Path]) -> Result<(), CgroupError> {
        let mut failed: Vec<&Path> = Vec::new();
        let mut first_error = None;
        for dir in dirs {
            if failed.iter().any(|bad| bad.starts_with(dir)) {
                continue;
            }
            if let Err(err) = self.remove_dir(dir) {
                tracing::warn!(%err, "cgroup removal failed");
                failed.push(dir);
                first_error.get_or_insert(err);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// `rmdir` with kill-and-retry on EBUSY; a missing directory counts as removed.
    fn remove_dir(&self, dir: &Path) -> Result<(), CgroupError> {
        let mut pause = FIRST_RMDIR_PAUSE;
        let mut attempt = 1;
        loop {
            let source = match std::fs::remove_dir(dir) {
                Ok(()) => return Ok(()),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(err) => err,
            };
            if source.raw_os_error() != Some(libc::EBUSY) || attempt >= RMDIR_ATTEMPTS {
                return Err(CgroupError::Rmdir {
                    path: dir.to_owned(),
                    source,
                });
            }
            if let Some(cgroup) = self.locate(dir)
                && let Err(err) = self.kill_all(&cgroup)
            {
                tracing::debug!(%err, "kill before rmdir retry");
            }
            std::thread::sleep(pause);
            pause *= 2;
            attempt += 1;
        }
    }
}

/// Every directory under `dir` (then `dir` itself), children first; nothing when absent.
/// Entries are not followed through symlinks (cgroupfs has none; a fake tree might).
fn collect_post_order(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), CgroupError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(CgroupError::Read {
                path: dir.to_owned(),
                source,
            });
        }
    };
    for entry in entries {
        let entry = entry.map_err(|source| CgroupError::Read {
            path: dir.to_owned(),
            source,
        })?;
        if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            collect_post_order(&entry.path(), out)?;
        }
    }
    out.push(dir.to_owned());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::fixture::{FakeHost, path};
    use crate::error_kind::ErrorKind;

    #[test]
    fn remove_deletes_only_what_create_made() {
        let host = FakeHost::v1();
        host.mkdir("memory/kubepods/burstable");
        let manager = host.manager();
        let pod = path("/kubepods/burstable/pod1");
        let created = manager.create(&pod).expect("create");
        let ctr = manager.container_cgroup_path(&pod, "c1");
        let ctr_created = manager.create(&ctr).expect("create ctr");
        assert_eq!(ctr_created.dirs().len(), host.hierarchies().len());

        manager.remove(&ctr, &ctr_created).expect("remove ctr");
        for hierarchy in host.hierarchies() {
            let base = host.root.join(hierarchy);
            assert!(!base.join("kubepods/burstable/pod1/c1").exists());
            assert!(base.join("kubepods/burstable/pod1").is_dir());
        }
        manager.remove(&pod, &created).expect("remove pod");
        for hierarchy in host.hierarchies() {
            let base = host.root.join(hierarchy);
            assert!(
                !base.join("kubepods/burstable/pod1").exists(),
                "{hierarchy}"
            );
            // kubelet's parent survives where it existed before; ours went elsewhere.
            assert_eq!(
                base.join("kubepods").exists(),
                hierarchy == "memory",
                "{hierarchy}"
            );
        }
        // Removing again finds nothing to do.
        manager.remove(&pod, &created).expect("idempotent");
    }

    #[test]
    fn remove_refuses_dirs_outside_the_path() {
        let host = FakeHost::v1();
        let manager = host.manager();
        let created = manager.create(&path("/a/b")).expect("create");
        let json = serde_json::to_string(&created).expect("json");
        let outside = host.root.join("memory/other");
        std::fs::create_dir(&outside).expect("mkdir");
        let tampered = json.replace(
            &host.root.join("memory/a/b").display().to_string(),
            &outside.display().to_string(),
        );
        let tampered: Created = serde_json::from_str(&tampered).expect("parse");
        let err = manager
            .remove(&path("/a/b"), &tampered)
            .expect_err("foreign");
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        assert!(outside.is_dir());
        assert!(host.root.join("memory/a/b").is_dir(), "nothing removed");
    }

    #[test]
    fn failed_child_keeps_its_ancestors_and_reports() {
        let host = FakeHost::v1();
        let manager = host.manager();
        let created = manager.create(&path("/x/y")).expect("create");
        // A file the kernel would not have: makes rmdir fail (ENOTEMPTY) in one hierarchy.
        host.write("pids/x/y/stray", "");
        let err = manager.remove(&path("/x/y"), &created).expect_err("busy");
        assert!(matches!(err, CgroupError::Rmdir { .. }), "{err}");
        assert!(host.root.join("pids/x/y").is_dir());
        assert!(!host.root.join("memory/x").exists());
    }

    #[test]
    fn remove_tree_removes_children_bottom_up() {
        let host = FakeHost::v2("cpu");
        host.mkdir("carrack/pod1/ctr1");
        host.mkdir("carrack/pod1/ctr2/nested");
        host.mkdir("carrack/pod2");
        host.manager()
            .remove_tree(&path("/carrack/pod1"))
            .expect("remove tree");
        assert!(!host.root.join("carrack/pod1").exists());
        assert!(host.root.join("carrack/pod2").is_dir());
        host.manager()
            .remove_tree(&path("/carrack/pod1"))
            .expect("absent is fine");
    }
}
