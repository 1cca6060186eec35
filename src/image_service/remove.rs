//! Removing an image and collecting what no image needs any more.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::ImageService;
use super::error::ImageError;
use crate::snapshot::{LayerInfo, SnapshotError};
use crate::store::ImageRecord;

impl ImageService {
    /// Removes the image `name` refers to, with all its tags. An unknown image succeeds
    /// (removal is idempotent, and five concurrent removals of one image all succeed).
    pub async fn remove(&self, name: &str) -> Result<(), ImageError> {
        let _guard = self.metadata_lock.lock().await;
        let Some(image) = self.status(name)? else {
            return Ok(());
        };
        self.store.images.remove(&image.id)?;
        tracing::info!(id = %image.id, tags = ?image.repo_tags, "image removed");
        crate::failpoint::hit(crate::failpoint::REMOVE_IMAGE_AFTER_RECORD);
        self.collect_garbage()
    }

    /// Deletes layers and documents that no image references and no pull holds. Runs under
    /// the metadata lock (or before the service serves anything), so no record can start
    /// referencing them meanwhile.
    ///
    /// Layers go top-down, children before their parents, because the snapshotter keeps a
    /// parent while a child names it. A layer a container still stacks is skipped, not an
    /// error: the next collection after that container is gone takes it.
    pub(super) fn collect_garbage(&self) -> Result<(), ImageError> {
        let images = self.store.images.list();
        let used_layers: HashSet<&str> = images
            .iter()
            .flat_map(|image| image.chain_ids.iter().map(String::as_str))
            .collect();
        let layers = self.snapshots.list_layers();
        let mut unused: Vec<&LayerInfo> = layers
            .iter()
            .filter(|layer| {
                !used_layers.contains(layer.chain_id.as_str())
                    && !self.leases.is_leased(&layer.chain_id)
            })
            .collect();
        let depths = depths(&layers);
        unused.sort_by_key(|layer| std::cmp::Reverse(depths.get(layer.chain_id.as_str())));
        let mut first_error = None;
        // Crash points only where this collection removed something: the one at start
        // usually finds nothing, and a daemon armed for a removal must get that far.
        let mut removed_any = false;
        for layer in unused {
            match self.snapshots.remove_layer(&layer.chain_id) {
                Ok(removed) => {
                    if removed && !removed_any {
                        crate::failpoint::hit(crate::failpoint::GC_AFTER_FIRST_LAYER);
                    }
                    removed_any |= removed;
                }
                Err(SnapshotError::LayerInUse { chain_id, user }) => {
                    tracing::debug!(%chain_id, %user, "unreferenced layer still in use; kept");
                }
                Err(err) => {
                    tracing::warn!(chain_id = %layer.chain_id, error = %err, "cannot remove layer");
                    first_error.get_or_insert(err);
                }
            }
        }
        if let Some(err) = first_error {
            return Err(err.into());
        }

        if removed_any {
            crate::failpoint::hit(crate::failpoint::GC_AFTER_LAYERS);
        }
        let used_documents = self.used_documents(&images);
        for digest in self.content.list() {
            if !used_documents.contains(&digest.to_string()) {
                self.content.remove(&digest)?;
            }
        }
        Ok(())
    }
}

impl ImageService {
    /// The digests of the documents (and kept layer blobs) `images` own: what collection
    /// keeps and what a verify expects to find nothing beyond.
    pub(super) fn used_documents(&self, images: &[Arc<ImageRecord>]) -> HashSet<String> {
        let mut used: HashSet<String> = HashSet::new();
        for image in images {
            used.insert(image.id.clone());
            used.insert(image.manifest_digest.clone());
            // Layer blobs (kept by pulls and imports, for export): the manifest names them.
            if let Ok(digest) = image.manifest_digest.parse()
                && let Ok(Some(bytes)) = self.content.get(&digest)
                && let Ok(super::manifest::Document::Manifest(manifest)) =
                    super::manifest::parse_document("", &bytes)
            {
                for layer in &manifest.layers {
                    used.insert(layer.digest.to_string());
                }
            }
            for repo_digest in &image.repo_digests {
                if let Some((_, digest)) = repo_digest.split_once('@') {
                    used.insert(digest.to_owned());
                }
            }
        }
        used
    }
}

/// Each layer's depth in its stack (a base layer is 1), by chain id. A layer whose parent
/// is missing counts as a base.
fn depths(layers: &[LayerInfo]) -> HashMap<&str, usize> {
    let parents: HashMap<&str, Option<&str>> = layers
        .iter()
        .map(|layer| (layer.chain_id.as_str(), layer.parent.as_deref()))
        .collect();
    layers
        .iter()
        .map(|layer| {
            let mut depth = 1;
            let mut next = layer.parent.as_deref();
            // Bounded by the number of layers, so a (corrupt) cycle cannot loop forever.
            while let Some(parent) = next
                && depth <= layers.len()
            {
                depth += 1;
                next = parents.get(parent).copied().flatten();
            }
            (layer.chain_id.as_str(), depth)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn layer(chain_id: &str, parent: Option<&str>) -> LayerInfo {
        LayerInfo {
            chain_id: chain_id.to_owned(),
            id: chain_id.to_owned(),
            parent: parent.map(str::to_owned),
            diff_id: String::new(),
            size: 0,
            path: PathBuf::new(),
        }
    }

    #[test]
    fn depths_count_the_stack_below_each_layer() {
        let layers = [
            layer("c", Some("b")),
            layer("a", None),
            layer("b", Some("a")),
            layer("orphan", Some("gone")),
        ];
        let depths = depths(&layers);
        assert_eq!(depths["a"], 1);
        assert_eq!(depths["b"], 2);
        assert_eq!(depths["c"], 3);
        assert_eq!(depths["orphan"], 2);
    }
}
