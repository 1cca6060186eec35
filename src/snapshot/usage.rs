//! Disk usage of the snapshot tree, for `ImageFsInfo`.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::error::io_at;
use super::{SnapshotError, Snapshotter};

/// Bytes and inodes used by a part of the tree.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FsUsage {
    /// Bytes of allocated blocks (`du`-style: holes are free, metadata blocks count).
    pub bytes: u64,
    /// Inodes; a hard-linked inode counts once.
    pub inodes: u64,
}

/// Usage of committed layers and of containers' writable layers.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// `layers/`: the images' content.
    pub layers: FsUsage,
    /// `active/`: what containers wrote.
    pub active: FsUsage,
}

impl Snapshotter {
    /// Walks the tree and sums what it uses. Does not hold the index lock, so it may race
    /// with commits and removals; files vanishing mid-walk are skipped.
    pub fn usage(&self) -> Result<Usage, SnapshotError> {
        // Shared across both parts: a hard link cannot cross layer or upper directories,
        // but one set costs nothing and keeps the rule simple.
        let mut seen = HashSet::new();
        Ok(Usage {
            layers: walk(&self.inner.layers_dir, &mut seen)?,
            active: walk(&self.inner.active_dir, &mut seen)?,
        })
    }

    /// What container `container_id` wrote: its writable layer's usage (zero when it has
    /// none).
    pub fn active_usage(&self, container_id: &str) -> Result<FsUsage, SnapshotError> {
        let upper = self.inner.active_dir.join(container_id).join("upper");
        walk(&upper, &mut HashSet::new())
    }
}

/// Sums `root`'s contents (not `root` itself), not following symlinks.
fn walk(root: &Path, seen: &mut HashSet<(u64, u64)>) -> Result<FsUsage, SnapshotError> {
    let mut usage = FsUsage::default();
    let mut pending: Vec<PathBuf> = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(error) if gone(&error) => continue,
            Err(error) => return Err(io_at(&dir)(error)),
        };
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(error) if gone(&error) => continue,
                Err(error) => return Err(io_at(&dir)(error)),
            };
            let path = entry.path();
            let meta = match fs::symlink_metadata(&path) {
                Ok(meta) => meta,
                Err(error) if gone(&error) => continue,
                Err(error) => return Err(io_at(&path)(error)),
            };
            if meta.nlink() > 1 && !meta.is_dir() && !seen.insert((meta.dev(), meta.ino())) {
                continue;
            }
            usage.bytes += meta.blocks() * 512;
            usage.inodes += 1;
            if meta.is_dir() {
                pending.push(path);
            }
        }
    }
    Ok(usage)
}

fn gone(error: &io::Error) -> bool {
    matches!(error.kind(), io::ErrorKind::NotFound)
}
