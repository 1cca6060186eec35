//! Removing an image and collecting what no image needs any more.

use std::collections::HashSet;

use super::ImageService;
use super::error::ImageError;

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
        self.collect_garbage()
    }

    /// Deletes layers and documents that no image references and no pull holds. Runs under
    /// the metadata lock, so no record can start referencing them meanwhile.
    fn collect_garbage(&self) -> Result<(), ImageError> {
        let images = self.store.images.list();
        let used_layers: HashSet<&str> = images
            .iter()
            .flat_map(|image| image.chain_ids.iter().map(String::as_str))
            .collect();
        for layer in self.snapshots.list_layers() {
            if !used_layers.contains(layer.chain_id.as_str())
                && !self.leases.is_leased(&layer.chain_id)
            {
                self.snapshots.remove_layer(&layer.chain_id)?;
            }
        }
        let mut used_documents: HashSet<String> = HashSet::new();
        for image in &images {
            used_documents.insert(image.id.clone());
            used_documents.insert(image.manifest_digest.clone());
            for repo_digest in &image.repo_digests {
                if let Some((_, digest)) = repo_digest.split_once('@') {
                    used_documents.insert(digest.to_owned());
                }
            }
        }
        for digest in self.content.list() {
            if !used_documents.contains(&digest.to_string()) {
                self.content.remove(&digest)?;
            }
        }
        Ok(())
    }
}
