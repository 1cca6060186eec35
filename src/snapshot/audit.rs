//! Checking the snapshot tree against its index: what a full verify of the image store asks
//! of the snapshotter. Read-only; it reports, never repairs (recovery at open does that).

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use super::Snapshotter;
use super::active::LOWERS_FILE;
use super::layer::{FS_DIR, META_FILE};

/// One inconsistency of the snapshot tree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotFinding {
    /// An entry in `ingest/`: work in flight, or debris a crash left (the next open removes it).
    #[error("snapshot ingest leftover {path}")]
    IngestLeftover {
        /// The entry.
        path: PathBuf,
    },
    /// A directory under `layers/` or `active/` the index does not know.
    #[error("snapshot directory {path} is not in the index")]
    Unindexed {
        /// The directory.
        path: PathBuf,
    },
    /// A committed layer whose directory lacks its content or metadata.
    #[error("layer {chain_id}: {path} is missing")]
    LayerIncomplete {
        /// The layer's chain id.
        chain_id: String,
        /// What is missing.
        path: PathBuf,
    },
    /// A committed layer whose parent is not committed.
    #[error("layer {chain_id}: parent layer {parent} is missing")]
    ParentMissing {
        /// The layer's chain id.
        chain_id: String,
        /// The parent's chain id.
        parent: String,
    },
    /// A writable layer stacking a layer that is not committed, or lacking its files.
    #[error("writable layer of {container_id}: {what}")]
    ActiveBroken {
        /// The container id.
        container_id: String,
        /// What is wrong.
        what: String,
    },
}

impl Snapshotter {
    /// Every active snapshot with the chain ids it stacks, bottom first.
    pub fn active_lowers(&self) -> HashMap<String, Vec<String>> {
        self.inner.index().active.clone()
    }

    /// Compares the tree on disk with the index: leftovers in `ingest/`, directories the index
    /// does not know, layers missing their files or their parent, writable layers missing
    /// their files or a layer they stack. Meant for a node with no pull or create in flight
    /// (those legitimately have entries in `ingest/`).
    pub fn audit(&self) -> Vec<SnapshotFinding> {
        let mut findings: Vec<SnapshotFinding> = entries(&self.inner.ingest_dir)
            .into_iter()
            .map(|path| SnapshotFinding::IngestLeftover { path })
            .collect();
        let index = self.inner.index();
        let layer_dirs: HashSet<PathBuf> = index
            .layers
            .values()
            .map(|layer| self.inner.layers_dir.join(&layer.id))
            .collect();
        for path in entries(&self.inner.layers_dir) {
            if !layer_dirs.contains(&path) {
                findings.push(SnapshotFinding::Unindexed { path });
            }
        }
        for path in entries(&self.inner.active_dir) {
            let known = path
                .file_name()
                .is_some_and(|name| index.active.contains_key(&*name.to_string_lossy()));
            if !known {
                findings.push(SnapshotFinding::Unindexed { path });
            }
        }
        let mut layers: Vec<_> = index.layers.values().collect();
        layers.sort_by(|a, b| a.chain_id.cmp(&b.chain_id));
        for layer in layers {
            let dir = self.inner.layers_dir.join(&layer.id);
            for path in [dir.join(FS_DIR), dir.join(META_FILE)] {
                if fs::symlink_metadata(&path).is_err() {
                    findings.push(SnapshotFinding::LayerIncomplete {
                        chain_id: layer.chain_id.clone(),
                        path,
                    });
                }
            }
            if let Some(parent) = &layer.parent
                && !index.layers.contains_key(parent)
            {
                findings.push(SnapshotFinding::ParentMissing {
                    chain_id: layer.chain_id.clone(),
                    parent: parent.clone(),
                });
            }
        }
        let mut active: Vec<_> = index.active.iter().collect();
        active.sort();
        for (container_id, lowers) in active {
            let dir = self.inner.active_dir.join(container_id);
            for name in ["upper", "work", LOWERS_FILE] {
                if fs::symlink_metadata(dir.join(name)).is_err() {
                    findings.push(SnapshotFinding::ActiveBroken {
                        container_id: container_id.clone(),
                        what: format!("{name} is missing"),
                    });
                }
            }
            for lower in lowers.iter().filter(|l| !index.layers.contains_key(*l)) {
                findings.push(SnapshotFinding::ActiveBroken {
                    container_id: container_id.clone(),
                    what: format!("it stacks layer {lower}, which is not committed"),
                });
            }
        }
        findings
    }
}

/// The entries of `dir`, sorted (none if it cannot be read).
fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .collect();
    found.sort();
    found
}
