//! A container's writable layer: its upper and work directories over committed lowers.

use std::fs;
use std::path::PathBuf;

use rustix::fs::{RenameFlags, renameat_with};
use rustix::io::Errno;

use super::error::io_at;
use super::{
    Index, Inner, RecoveryReport, SnapshotError, Snapshotter, check_container_id, remove_any,
    sync_dir, write_synced,
};

/// Name of the record of an active snapshot's lowers.
pub(super) const LOWERS_FILE: &str = "lowers.json";
/// Empty lower used when a container's image has no layers (overlayfs needs one).
const EMPTY_LOWER: &str = "empty";

/// The directories of one overlay mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    /// The read-only layers, **topmost first**, the order overlayfs stacks `lowerdir`s in.
    pub lower_dirs: Vec<PathBuf>,
    /// The container's writable layer.
    pub upper_dir: PathBuf,
    /// overlayfs' scratch directory (same filesystem as `upper_dir`).
    pub work_dir: PathBuf,
}

impl Snapshotter {
    /// Creates the writable layer of `container_id` over the committed layers
    /// `lower_chain_ids`, given **bottom first** (the order of an image config's
    /// `rootfs.diff_ids` and of chain id computation). Returns the mount spec, whose
    /// `lower_dirs` are in overlay order (topmost first). Fails if any layer is missing or
    /// the container already has an active snapshot.
    pub fn prepare_active(
        &self,
        container_id: &str,
        lower_chain_ids: &[String],
    ) -> Result<MountSpec, SnapshotError> {
        check_container_id(container_id)?;
        let staging = self.inner.temp_dir("active")?;
        let result = self.prepare_in(container_id, lower_chain_ids, &staging);
        if result.is_err() {
            // Recovery would remove it too, but a failed prepare should leave nothing.
            let _ = remove_any(&staging);
        }
        result
    }

    fn prepare_in(
        &self,
        container_id: &str,
        lower_chain_ids: &[String],
        staging: &std::path::Path,
    ) -> Result<MountSpec, SnapshotError> {
        for name in ["upper", "work"] {
            let dir = staging.join(name);
            fs::create_dir(&dir).map_err(io_at(&dir))?;
        }
        if lower_chain_ids.is_empty() {
            let dir = staging.join(EMPTY_LOWER);
            fs::create_dir(&dir).map_err(io_at(&dir))?;
        }
        let record = staging.join(LOWERS_FILE);
        let bytes =
            serde_json::to_vec(lower_chain_ids).map_err(|source| SnapshotError::Metadata {
                path: record.clone(),
                source,
            })?;
        write_synced(&record, &bytes)?;

        // Check the lowers and publish under one lock, so no layer they name can be removed
        // in between.
        let mut index = self.inner.index();
        if index.active.contains_key(container_id) {
            return Err(SnapshotError::ActiveExists {
                container_id: container_id.to_owned(),
            });
        }
        let spec = self.inner.spec(&index, container_id, lower_chain_ids)?;
        let target = self.inner.active_dir.join(container_id);
        match renameat_with(
            rustix::fs::CWD,
            staging,
            rustix::fs::CWD,
            &target,
            RenameFlags::NOREPLACE,
        ) {
            Ok(()) => {}
            Err(Errno::EXIST | Errno::NOTEMPTY) => {
                return Err(SnapshotError::ActiveExists {
                    container_id: container_id.to_owned(),
                });
            }
            Err(errno) => {
                return Err(SnapshotError::Io {
                    path: target,
                    source: errno.into(),
                });
            }
        }
        index
            .active
            .insert(container_id.to_owned(), lower_chain_ids.to_vec());
        sync_dir(&self.inner.active_dir)?;
        Ok(spec)
    }

    /// The mount spec of an existing active snapshot (e.g. to mount it again after a
    /// restart), or `None`.
    pub fn active_mount_spec(
        &self,
        container_id: &str,
    ) -> Result<Option<MountSpec>, SnapshotError> {
        check_container_id(container_id)?;
        let index = self.inner.index();
        match index.active.get(container_id) {
            None => Ok(None),
            Some(lowers) => self.inner.spec(&index, container_id, lowers).map(Some),
        }
    }

    /// The container ids that have a writable layer.
    pub fn list_active(&self) -> Vec<String> {
        self.inner.index().active.keys().cloned().collect()
    }

    /// Removes the writable layer of `container_id`; `false` if there was none. The caller
    /// unmounts the overlay first: removing the upper of a mounted overlay pulls the
    /// container's files from under it.
    pub fn remove_active(&self, container_id: &str) -> Result<bool, SnapshotError> {
        check_container_id(container_id)?;
        let mut index = self.inner.index();
        if !index.active.contains_key(container_id) {
            return Ok(false);
        }
        let dir = self.inner.active_dir.join(container_id);
        let trash = self.inner.unpublish(&dir, "active")?;
        index.active.remove(container_id);
        drop(index);
        self.inner.finish_removal(&self.inner.active_dir, &trash)?;
        Ok(true)
    }
}

impl Inner {
    /// The mount spec for `container_id` stacking `lower_chain_ids` (bottom first).
    fn spec(
        &self,
        index: &Index,
        container_id: &str,
        lower_chain_ids: &[String],
    ) -> Result<MountSpec, SnapshotError> {
        let dir = self.active_dir.join(container_id);
        let mut lower_dirs = lower_chain_ids
            .iter()
            .rev()
            .map(|chain_id| {
                index
                    .layers
                    .get(chain_id)
                    .map(|layer| layer.path.clone())
                    .ok_or_else(|| SnapshotError::LayerNotFound {
                        chain_id: chain_id.clone(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if lower_dirs.is_empty() {
            lower_dirs.push(dir.join(EMPTY_LOWER));
        }
        Ok(MountSpec {
            lower_dirs,
            upper_dir: dir.join("upper"),
            work_dir: dir.join("work"),
        })
    }

    /// Loads `active/*/lowers.json`, removing active directories without a readable record
    /// (never published that way, so damage) or naming ids that are not valid.
    pub(super) fn load_active(
        &self,
        index: &mut Index,
        report: &mut RecoveryReport,
    ) -> Result<(), SnapshotError> {
        for entry in fs::read_dir(&self.active_dir).map_err(io_at(&self.active_dir))? {
            let entry = entry.map_err(io_at(&self.active_dir))?;
            let dir = entry.path();
            let container_id = entry.file_name().to_string_lossy().into_owned();
            let record = dir.join(LOWERS_FILE);
            let lowers = check_container_id(&container_id).and_then(|()| {
                let bytes = fs::read(&record).map_err(io_at(&record))?;
                serde_json::from_slice::<Vec<String>>(&bytes).map_err(|source| {
                    SnapshotError::Metadata {
                        path: record.clone(),
                        source,
                    }
                })
            });
            match lowers {
                Ok(lowers) => {
                    if let Some(missing) = lowers
                        .iter()
                        .find(|lower| !index.layers.contains_key(*lower))
                    {
                        // Kept: the container's own changes are in upper; mounting will say
                        // which layer is gone.
                        tracing::warn!(%container_id, chain_id = %missing, "active snapshot names a missing layer");
                    }
                    index.active.insert(container_id, lowers);
                }
                Err(error) => {
                    tracing::warn!(%error, path = %dir.display(), "removing unreadable active snapshot");
                    remove_any(&dir)?;
                    report.removed_broken += 1;
                }
            }
        }
        Ok(())
    }
}
