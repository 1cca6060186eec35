//! Committed layers: their metadata file, lookup, listing and removal.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::io_at;
use super::{Index, Inner, RecoveryReport, SnapshotError, Snapshotter, check_chain_id, remove_any};

/// Name of the content directory inside a layer directory (the overlay lower).
pub(super) const FS_DIR: &str = "fs";
/// Name of the metadata file inside a layer directory.
pub(super) const META_FILE: &str = "meta.json";
/// Schema version of `meta.json` this binary writes.
const META_SCHEMA: u32 = 1;

/// What the caller knows about a layer when committing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerMeta {
    /// The chain id of the layer below, `None` for a base layer.
    pub parent: Option<String>,
    /// The layer's DiffID (`sha256:<hex>`), kept for listing and verification.
    pub diff_id: String,
    /// The layer's size in bytes as the caller measured it (the uncompressed tar size).
    pub size: u64,
}

/// A committed layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerInfo {
    /// The chain id, the layer's key.
    pub chain_id: String,
    /// The short directory name under `layers/` (a decimal counter).
    pub id: String,
    /// The chain id of the layer below, if any.
    pub parent: Option<String>,
    /// The layer's DiffID.
    pub diff_id: String,
    /// The size recorded at commit.
    pub size: u64,
    /// The layer's content directory: the path to use as an overlay lower.
    pub path: PathBuf,
}

/// `meta.json`.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct LayerRecord {
    pub(super) schema_version: u32,
    pub(super) chain_id: String,
    pub(super) parent: Option<String>,
    pub(super) diff_id: String,
    pub(super) size: u64,
}

impl LayerRecord {
    pub(super) fn new(chain_id: &str, meta: &LayerMeta) -> Self {
        Self {
            schema_version: META_SCHEMA,
            chain_id: chain_id.to_owned(),
            parent: meta.parent.clone(),
            diff_id: meta.diff_id.clone(),
            size: meta.size,
        }
    }

    /// The layer as it will be once its directory is at `layer_dir`.
    pub(super) fn info(&self, id: &str, layer_dir: &Path) -> LayerInfo {
        LayerInfo {
            chain_id: self.chain_id.clone(),
            id: id.to_owned(),
            parent: self.parent.clone(),
            diff_id: self.diff_id.clone(),
            size: self.size,
            path: layer_dir.join(FS_DIR),
        }
    }
}

impl Snapshotter {
    /// The committed layer with this chain id.
    pub fn layer(&self, chain_id: &str) -> Option<LayerInfo> {
        self.inner.index().layers.get(chain_id).cloned()
    }

    /// All committed layers, by chain id.
    pub fn list_layers(&self) -> Vec<LayerInfo> {
        let mut layers: Vec<LayerInfo> = self.inner.index().layers.values().cloned().collect();
        layers.sort_by(|a, b| a.chain_id.cmp(&b.chain_id));
        layers
    }

    /// Removes a committed layer. Returns `false` if there was none. Refuses while an active
    /// snapshot stacks it or another layer names it as parent (mounting that child needs it).
    pub fn remove_layer(&self, chain_id: &str) -> Result<bool, SnapshotError> {
        check_chain_id(chain_id)?;
        let mut index = self.inner.index();
        let Some(layer) = index.layers.get(chain_id) else {
            return Ok(false);
        };
        let layer_dir = self.inner.layers_dir.join(&layer.id);
        if let Some(user) = user_of(&index, chain_id) {
            return Err(SnapshotError::LayerInUse {
                chain_id: chain_id.to_owned(),
                user,
            });
        }
        // Unpublish under the lock so no prepare can pick the layer up meanwhile.
        let trash = self.inner.unpublish(&layer_dir, "layer")?;
        index.layers.remove(chain_id);
        drop(index);
        self.inner.finish_removal(&self.inner.layers_dir, &trash)?;
        Ok(true)
    }
}

/// Who keeps `chain_id` alive, if anyone.
fn user_of(index: &Index, chain_id: &str) -> Option<String> {
    let container = index
        .active
        .iter()
        .find(|(_, lowers)| lowers.iter().any(|lower| lower == chain_id))
        .map(|(container, _)| format!("container {container}"));
    container.or_else(|| {
        index
            .layers
            .values()
            .find(|layer| layer.parent.as_deref() == Some(chain_id))
            .map(|child| format!("layer {}", child.chain_id))
    })
}

impl Inner {
    /// Loads `layers/*/meta.json` into `index`, removing layer directories that cannot be
    /// loaded (the commit protocol never publishes one without metadata, so such a directory
    /// is damage, not data).
    pub(super) fn load_layers(
        &self,
        index: &mut Index,
        report: &mut RecoveryReport,
    ) -> Result<(), SnapshotError> {
        let mut highest = 0;
        for entry in fs::read_dir(&self.layers_dir).map_err(io_at(&self.layers_dir))? {
            let entry = entry.map_err(io_at(&self.layers_dir))?;
            let layer_dir = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(number) = name.parse::<u64>() else {
                tracing::warn!(path = %layer_dir.display(), "removing unexpected entry in layers/");
                remove_any(&layer_dir)?;
                report.removed_broken += 1;
                continue;
            };
            highest = highest.max(number);
            match read_record(&layer_dir) {
                Ok(record) if !index.layers.contains_key(&record.chain_id) => {
                    let info = record.info(&name, &layer_dir);
                    index.layers.insert(record.chain_id, info);
                }
                Ok(record) => {
                    tracing::warn!(chain_id = %record.chain_id, path = %layer_dir.display(), "removing duplicate layer");
                    remove_any(&layer_dir)?;
                    report.removed_broken += 1;
                }
                Err(error) => {
                    tracing::warn!(%error, path = %layer_dir.display(), "removing unreadable layer");
                    remove_any(&layer_dir)?;
                    report.removed_broken += 1;
                }
            }
        }
        self.next_layer
            .store(highest + 1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}

fn read_record(layer_dir: &Path) -> Result<LayerRecord, SnapshotError> {
    let path = layer_dir.join(META_FILE);
    let bytes = fs::read(&path).map_err(io_at(&path))?;
    let record: LayerRecord =
        serde_json::from_slice(&bytes).map_err(|source| SnapshotError::Metadata {
            path: path.clone(),
            source,
        })?;
    check_chain_id(&record.chain_id)?;
    let content = layer_dir.join(FS_DIR);
    if !fs::symlink_metadata(&content)
        .map_err(io_at(&content))?
        .is_dir()
    {
        return Err(SnapshotError::Io {
            path: content,
            source: std::io::Error::from(std::io::ErrorKind::NotADirectory),
        });
    }
    Ok(record)
}
