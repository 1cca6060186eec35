//! A full verify of the image store: every blob re-hashed, every image record checked against
//! its documents and the layers it names, and nothing on disk that no image owns. The one
//! code path behind `carrack image verify` and the fault tests' "the image store passes a
//! full verify".
//!
//! What is not checked: an unpacked layer's content against its DiffID. A DiffID hashes the
//! layer's tar stream, which cannot be rebuilt byte for byte from the unpacked files; it was
//! verified while unpacking, before the layer was committed, and the layer's recorded DiffID
//! is compared with the image config's here.

use std::collections::HashSet;

use super::ImageService;
use super::digest::Digest;
use super::error::ImageError;
use super::manifest::{self, Document, ImageConfig};
use crate::store::ImageRecord;

/// The outcome of a full verify.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Image records checked.
    pub images: usize,
    /// Blobs re-hashed.
    pub blobs: usize,
    /// Committed layers checked.
    pub layers: usize,
    /// What is wrong, one line each; empty when the store is whole.
    pub problems: Vec<String>,
}

impl ImageService {
    /// Verifies the whole image store (see the module doc). Holds the metadata lock, so no
    /// record changes and no collection runs meanwhile; pulls and imports in flight are
    /// reported as leftovers, so run it on a quiet node. Reads every blob: it takes a while
    /// on a big store.
    pub async fn verify(self: &std::sync::Arc<Self>) -> Result<VerifyReport, ImageError> {
        let _guard = self.metadata_lock.lock().await;
        let service = std::sync::Arc::clone(self);
        tokio::task::spawn_blocking(move || service.verify_blocking())
            .await
            .map_err(|err| ImageError::Task {
                image: "(verify)".to_owned(),
                reason: err.to_string(),
            })
    }

    fn verify_blocking(&self) -> VerifyReport {
        let images = self.store.images.list();
        let mut report = VerifyReport {
            images: images.len(),
            ..VerifyReport::default()
        };
        let problems = &mut report.problems;

        let blobs = self.content.list();
        report.blobs = blobs.len();
        for digest in &blobs {
            if let Err(err) = self.content.verify(digest) {
                problems.push(format!("blob {digest}: {err}"));
            }
        }
        for path in self.content.stray_files() {
            problems.push(format!("content file {} is not a blob", path.display()));
        }
        for path in self.content.ingest_entries() {
            problems.push(format!("content ingest leftover {}", path.display()));
        }
        let used_documents = self.used_documents(&images);
        for digest in &blobs {
            if !used_documents.contains(&digest.to_string()) {
                problems.push(format!("blob {digest} is owned by no image"));
            }
        }

        for image in &images {
            check_image(self, image, problems);
        }

        let layers = self.snapshots.list_layers();
        report.layers = layers.len();
        let used_layers: HashSet<&str> = images
            .iter()
            .flat_map(|image| image.chain_ids.iter().map(String::as_str))
            .collect();
        let active = self.snapshots.active_lowers();
        let stacked: HashSet<&str> = active.values().flatten().map(String::as_str).collect();
        for layer in &layers {
            let chain_id = layer.chain_id.as_str();
            if !used_layers.contains(chain_id)
                && !stacked.contains(chain_id)
                && !self.leases.is_leased(chain_id)
            {
                problems.push(format!(
                    "layer {chain_id} ({}) is owned by no image and stacked by no container",
                    layer.path.display()
                ));
            }
        }
        problems.extend(
            self.snapshots
                .audit()
                .into_iter()
                .map(|finding| finding.to_string()),
        );
        report
    }
}

/// Checks one image record: its manifest and config are stored and agree with it, and every
/// layer it names is committed with the config's DiffID on top of the right parent.
fn check_image(service: &ImageService, image: &ImageRecord, problems: &mut Vec<String>) {
    let mut problem = |what: String| problems.push(format!("image {}: {what}", image.id));
    for repo_digest in &image.repo_digests {
        if let Some((_, digest)) = repo_digest.split_once('@')
            && let Ok(digest) = digest.parse::<Digest>()
            && !matches!(service.content.get(&digest), Ok(Some(_)))
        {
            problem(format!("document {digest} of {repo_digest} is not stored"));
        }
    }
    let document = |digest: &str, what: &str| -> Result<(Digest, Vec<u8>), String> {
        let parsed: Digest = digest
            .parse()
            .map_err(|err| format!("{what} digest {digest:?}: {err}"))?;
        match service.content.get(&parsed) {
            Ok(Some(bytes)) => Ok((parsed, bytes)),
            Ok(None) => Err(format!("{what} {digest} is not stored")),
            Err(err) => Err(format!("{what} {digest}: {err}")),
        }
    };
    let manifest = match document(&image.manifest_digest, "manifest").and_then(|(_, bytes)| {
        match manifest::parse_document("", &bytes) {
            Ok(Document::Manifest(manifest)) => Ok(manifest),
            Ok(Document::Index(_)) => {
                Err(format!("manifest {} is an index", image.manifest_digest))
            }
            Err(err) => Err(format!("manifest {}: {err}", image.manifest_digest)),
        }
    }) {
        Ok(manifest) => manifest,
        Err(err) => return problem(err),
    };
    if manifest.config.digest.to_string() != image.id {
        problem(format!(
            "its manifest names config {}",
            manifest.config.digest
        ));
    }
    let config = match document(&image.id, "config").and_then(|(_, bytes)| {
        ImageConfig::parse(&bytes, &manifest).map_err(|err| format!("config: {err}"))
    }) {
        Ok(config) => config,
        Err(err) => return problem(err),
    };
    let chain_ids: Vec<String> = manifest::chain_ids(&config.rootfs.diff_ids)
        .iter()
        .map(ToString::to_string)
        .collect();
    if chain_ids != image.chain_ids {
        problem(format!(
            "the record's layers {:?} are not its config's {chain_ids:?}",
            image.chain_ids
        ));
    }
    let mut parent: Option<&str> = None;
    for (chain_id, diff_id) in chain_ids.iter().zip(&config.rootfs.diff_ids) {
        match service.snapshots.layer(chain_id) {
            None => problem(format!("layer {chain_id} is not committed")),
            Some(layer) => {
                if layer.diff_id != diff_id.to_string() {
                    problem(format!(
                        "layer {chain_id} was committed with DiffID {}, the config says {diff_id}",
                        layer.diff_id
                    ));
                }
                if layer.parent.as_deref() != parent {
                    problem(format!(
                        "layer {chain_id} sits on {:?}, the config says {parent:?}",
                        layer.parent
                    ));
                }
            }
        }
        parent = Some(chain_id);
    }
}
