//! On-disk overlay layers: committed read-only layer directories, one writable upper/work pair
//! per container, and the overlay mounts stacking them.
//!
//! Layout under `<root>/snapshots` (mode 0700, so no unprivileged user can reach the setuid
//! binaries inside layers):
//!
//! ```text
//! layers/<n>/fs          a committed layer's content (what unpack wrote), an overlay lower
//! layers/<n>/meta.json   chain id, parent chain id, diff id, size
//! ingest/<tmp>/          layers being unpacked, active dirs being prepared, trees being removed
//! active/<id>/upper      a container's writable layer
//! active/<id>/work       overlayfs' work dir for it
//! active/<id>/lowers.json the chain ids it stacks, bottom first
//! ```
//!
//! `<n>` is a decimal counter rather than the chain id so that overlay mount options stay
//! short. Every change is prepared inside `ingest/` and published by one `rename` (a layer,
//! an active dir) or unpublished by one `rename` back into `ingest/` (removal), so a crash
//! leaves either the old state or the new one plus debris in `ingest/`, which [`Snapshotter::open`]
//! deletes. The in-memory index is updated only after the rename.
//!
//! This module is a leaf: it knows chain ids and container ids as opaque strings and nothing
//! about registries, images or containers.

mod active;
mod audit;
mod error;
mod ingest;
mod layer;
mod mount;
mod usage;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

pub use active::MountSpec;
pub use audit::SnapshotFinding;
pub use error::SnapshotError;
pub use ingest::LayerIngest;
pub use layer::{LayerInfo, LayerMeta};
pub use mount::{
    mount_overlay, mount_overlay_on_layer_mounts, overlay_on_layer_mounts, unmount_overlay,
};
pub use usage::{FsUsage, Usage};

use error::io_at;

/// Options for [`Snapshotter::open_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotterOptions {
    /// Flush a layer's data to disk (`syncfs`) before committing it. Without it a crash soon
    /// after a pull can leave a committed layer with missing file contents; with it each
    /// commit waits for the disk. On by default.
    pub sync_on_commit: bool,
}

impl Default for SnapshotterOptions {
    fn default() -> Self {
        Self {
            sync_on_commit: true,
        }
    }
}

/// The snapshot store. Cheap to clone; clones share one index.
#[derive(Debug, Clone)]
pub struct Snapshotter {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    layers_dir: PathBuf,
    ingest_dir: PathBuf,
    active_dir: PathBuf,
    options: SnapshotterOptions,
    index: Mutex<Index>,
    /// Next short layer directory number.
    next_layer: AtomicU64,
    /// Next `ingest/` name suffix.
    next_temp: AtomicU64,
}

/// What is committed and active, by key. Changed only after the disk says so.
#[derive(Debug, Default)]
struct Index {
    layers: HashMap<String, LayerInfo>,
    /// Container id → the chain ids it stacks, bottom first.
    active: HashMap<String, Vec<String>>,
}

/// Recovery findings of [`Snapshotter::open`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Committed layers loaded.
    pub layers: usize,
    /// Active snapshots loaded.
    pub active: usize,
    /// Leftovers removed from `ingest/` (interrupted pulls, prepares and removals).
    pub removed_ingest: usize,
    /// Layer or active directories removed because their metadata was unreadable.
    pub removed_broken: usize,
}

impl Snapshotter {
    /// Opens (creating) the snapshot tree under `<root>/snapshots` with default options and
    /// recovers it.
    pub fn open(root: &Path) -> Result<Self, SnapshotError> {
        Self::open_with(root, SnapshotterOptions::default()).map(|(snapshotter, _)| snapshotter)
    }

    /// Opens (creating) the snapshot tree under `<root>/snapshots` and recovers it: leftovers
    /// in `ingest/` are removed, committed layers and active snapshots are loaded, and
    /// directories whose metadata cannot be read are removed.
    pub fn open_with(
        root: &Path,
        options: SnapshotterOptions,
    ) -> Result<(Self, RecoveryReport), SnapshotError> {
        let base = root.join("snapshots");
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&base)
            .map_err(io_at(&base))?;
        // An existing tree may have been created with a laxer mode; layers hold setuid files.
        fs::set_permissions(&base, fs::Permissions::from_mode(0o700)).map_err(io_at(&base))?;
        // Absolute, symlink-free paths: they go into overlay mount options.
        let base = fs::canonicalize(&base).map_err(io_at(&base))?;
        let inner = Inner {
            layers_dir: base.join("layers"),
            ingest_dir: base.join("ingest"),
            active_dir: base.join("active"),
            options,
            index: Mutex::new(Index::default()),
            next_layer: AtomicU64::new(1),
            next_temp: AtomicU64::new(1),
        };
        for dir in [&inner.layers_dir, &inner.ingest_dir, &inner.active_dir] {
            fs::DirBuilder::new()
                .mode(0o700)
                .create(dir)
                .or_else(|error| match error.kind() {
                    io::ErrorKind::AlreadyExists => Ok(()),
                    _ => Err(error),
                })
                .map_err(io_at(dir))?;
        }
        let mut report = RecoveryReport {
            removed_ingest: inner.clear_ingest()?,
            ..RecoveryReport::default()
        };
        let mut index = Index::default();
        inner.load_layers(&mut index, &mut report)?;
        inner.load_active(&mut index, &mut report)?;
        report.layers = index.layers.len();
        report.active = index.active.len();
        *inner.index.lock().unwrap_or_else(PoisonError::into_inner) = index;
        tracing::info!(
            layers = report.layers,
            active = report.active,
            removed_ingest = report.removed_ingest,
            removed_broken = report.removed_broken,
            "snapshot store recovered"
        );
        Ok((
            Self {
                inner: Arc::new(inner),
            },
            report,
        ))
    }
}

impl Inner {
    fn index(&self) -> MutexGuard<'_, Index> {
        // Index updates happen after their disk change and cannot be left half done by a
        // panic, so a poisoned lock still guards a consistent index.
        self.index.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Removes everything in `ingest/`. Only called at open, when no pull is running.
    fn clear_ingest(&self) -> Result<usize, SnapshotError> {
        let mut removed = 0;
        for entry in fs::read_dir(&self.ingest_dir).map_err(io_at(&self.ingest_dir))? {
            let path = entry.map_err(io_at(&self.ingest_dir))?.path();
            remove_any(&path)?;
            removed += 1;
        }
        Ok(removed)
    }

    /// Creates a fresh, uniquely named directory under `ingest/`.
    fn temp_dir(&self, kind: &str) -> Result<PathBuf, SnapshotError> {
        loop {
            let number = self.next_temp.fetch_add(1, Ordering::Relaxed);
            let path = self.ingest_dir.join(format!("{kind}-{number}"));
            match fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(path),
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(error) => {
                    return Err(SnapshotError::Io {
                        path,
                        source: error,
                    });
                }
            }
        }
    }

    /// Moves a published directory back into `ingest/`, so a crash mid-removal leaves debris
    /// that recovery deletes, never a half-removed layer. Returns where it went; the caller
    /// deletes it after releasing the index lock (deleting a big tree takes a while).
    fn unpublish(&self, path: &Path, kind: &str) -> Result<PathBuf, SnapshotError> {
        let number = self.next_temp.fetch_add(1, Ordering::Relaxed);
        let trash = self.ingest_dir.join(format!("remove-{kind}-{number}"));
        fs::rename(path, &trash).map_err(io_at(path))?;
        Ok(trash)
    }

    /// Makes an unpublish durable, then deletes the moved tree.
    fn finish_removal(&self, published_in: &Path, trash: &Path) -> Result<(), SnapshotError> {
        sync_dir(published_in)?;
        remove_any(trash)
    }
}

/// Removes a file or a directory tree, not following symlinks; absent is fine.
fn remove_any(path: &Path) -> Result<(), SnapshotError> {
    let result = match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(error) => Err(error),
    };
    match result {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(SnapshotError::Io {
            path: path.to_path_buf(),
            source: error,
        }),
        _ => Ok(()),
    }
}

/// Makes a directory's entries (a rename into it) durable.
fn sync_dir(dir: &Path) -> Result<(), SnapshotError> {
    fs::File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(io_at(dir))
}

/// Writes `bytes` to a new file and flushes it. Used only inside unpublished directories,
/// whose rename into place is what makes the file visible.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), SnapshotError> {
    use std::io::Write;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io_at(path))?;
    file.write_all(bytes).map_err(io_at(path))?;
    file.sync_all().map_err(io_at(path))
}

/// Checks a container id before it names a directory.
fn check_container_id(container_id: &str) -> Result<(), SnapshotError> {
    let valid = !container_id.is_empty()
        && container_id.len() <= 128
        && !container_id.starts_with('.')
        && container_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(SnapshotError::InvalidContainerId {
            container_id: container_id.chars().take(300).collect(),
        })
    }
}

/// Checks a chain id. It is only a key (directory names are counters), so any printable
/// text of sensible length will do.
fn check_chain_id(chain_id: &str) -> Result<(), SnapshotError> {
    let reason = if chain_id.is_empty() {
        Some("empty")
    } else if chain_id.len() > 255 {
        Some("longer than 255 bytes")
    } else if chain_id.chars().any(char::is_control) {
        Some("contains control characters")
    } else {
        None
    };
    match reason {
        None => Ok(()),
        Some(reason) => Err(SnapshotError::InvalidChainId {
            chain_id: chain_id.chars().take(300).collect(),
            reason,
        }),
    }
}
