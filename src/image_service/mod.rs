//! Images: pulling, verifying, storing, listing and removing them.
//!
//! `reference` parses image names, `registry` talks to registries, `digest` hashes and
//! verifies, `manifest` parses the image documents, `content` keeps them, `unpack` extracts
//! layers safely into directories that `snapshot` owns, `pull`, `lookup` and `remove` are the
//! verbs. Image records live in the `store`; a record is written only once everything it
//! names is on disk and verified.

pub mod archive;
pub mod content;
pub mod digest;
mod error;
mod export;
mod import;
mod lookup;
pub mod manifest;
mod progress;
mod pull;
pub mod reference;
pub mod registry;
mod remove;
mod tee;
pub mod unpack;
mod verify;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

pub use error::ImageError;
pub use import::ImportedImage;
pub use progress::{LayerProgress, LayerState, PullSnapshot};
pub use verify::VerifyReport;

use content::ContentStore;
use digest::Digest;
use manifest::Platform;
use registry::{ClientOptions, RegistryClient};
use unpack::UnpackOptions;

use crate::config::Config;
use crate::snapshot::Snapshotter;
use crate::store::{ImageRecord, KeyedLocks, Store};

/// Bytes and inodes used by one filesystem role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsUsage {
    /// Where that data lives.
    pub mountpoint: PathBuf,
    /// Bytes used.
    pub used_bytes: u64,
    /// Inodes used.
    pub inodes_used: u64,
}

/// The image service of one node.
#[derive(Debug)]
pub struct ImageService {
    store: Arc<Store>,
    content: ContentStore,
    snapshots: Arc<Snapshotter>,
    registry: RegistryClient,
    platform: Platform,
    unpack_options: UnpackOptions,
    max_concurrent_downloads: usize,
    root_dir: PathBuf,
    layer_locks: KeyedLocks,
    leases: Leases,
    /// Serialises changes to image records and the sweep of unreferenced content.
    metadata_lock: tokio::sync::Mutex<()>,
    /// Layer progress of the pulls in flight.
    progress: progress::PullProgress,
}

impl ImageService {
    /// Builds the service over the node's store and snapshotter, and sweeps what an
    /// interrupted pull left: layers and documents no image record names (a crash between a
    /// layer's commit and the image record's leaves them). Nothing pulls yet, so nothing
    /// in use can be taken.
    pub fn new(
        config: &Config,
        store: Arc<Store>,
        snapshots: Arc<Snapshotter>,
    ) -> Result<Self, ImageError> {
        let service = Self::build(config, store, snapshots)?;
        if let Err(err) = tracing::info_span!("images.gc").in_scope(|| service.collect_garbage()) {
            // Not fatal: the next collection (after a removal) tries again.
            tracing::warn!(error = %err, "collecting unreferenced image content at start failed");
        }
        Ok(service)
    }

    fn build(
        config: &Config,
        store: Arc<Store>,
        snapshots: Arc<Snapshotter>,
    ) -> Result<Self, ImageError> {
        let platform = parse_platform(&config.images.platform);
        let registry = RegistryClient::new(
            &config.registry,
            ClientOptions {
                stall_timeout: Duration::from_secs(config.images.stall_timeout_secs),
                ..ClientOptions::default()
            },
        )?;
        Ok(Self {
            content: ContentStore::open(&config.root_dir)?,
            store,
            snapshots,
            registry,
            platform,
            unpack_options: UnpackOptions {
                allow_device_nodes: config.images.allow_device_nodes,
                max_uncompressed_bytes: config.images.max_layer_bytes,
                ..UnpackOptions::default()
            },
            max_concurrent_downloads: config.images.max_concurrent_downloads,
            root_dir: config.root_dir.clone(),
            layer_locks: KeyedLocks::default(),
            leases: Leases::default(),
            metadata_lock: tokio::sync::Mutex::new(()),
            progress: progress::PullProgress::default(),
        })
    }

    /// The image `name` refers to (id, id prefix, tag or digest reference), or `None`.
    pub fn status(&self, name: &str) -> Result<Option<Arc<ImageRecord>>, ImageError> {
        lookup::find(&self.store.images, name)
    }

    /// How many half-written blobs opening the content store removed (debris of a crash).
    pub fn ingest_leftovers_removed(&self) -> usize {
        self.content.removed_at_open()
    }

    /// The latest pull of `name`, in flight or just finished (`None`: none right now).
    pub fn pull_progress(&self, name: &str) -> Result<Option<PullSnapshot>, ImageError> {
        let image = reference::Reference::parse(name)?.to_string();
        Ok(self.progress.snapshot(&image))
    }

    /// Every image, optionally only those `filter` names.
    pub fn list(&self, filter: Option<&str>) -> Result<Vec<Arc<ImageRecord>>, ImageError> {
        match filter.filter(|name| !name.is_empty()) {
            Some(name) => Ok(self.status(name)?.into_iter().collect()),
            None => {
                let mut images = self.store.images.list();
                images.sort_by(|a, b| a.id.cmp(&b.id));
                Ok(images)
            }
        }
    }

    /// The image's config document (for verbose status and container defaults).
    pub fn config_of(&self, image: &ImageRecord) -> Result<Option<Vec<u8>>, ImageError> {
        let Ok(digest) = image.id.parse::<Digest>() else {
            return Ok(None);
        };
        Ok(self.content.get(&digest)?)
    }

    /// The image's layers, base first: each one's DiffID and unpacked size (`None` for a
    /// layer the snapshotter no longer has, which a verified image never lacks).
    pub fn layers_of(&self, image: &ImageRecord) -> Vec<(String, Option<String>, Option<u64>)> {
        image
            .chain_ids
            .iter()
            .map(|chain_id| {
                let layer = self.snapshots.layer(chain_id);
                (
                    chain_id.clone(),
                    layer.as_ref().map(|layer| layer.diff_id.clone()),
                    layer.map(|layer| layer.size),
                )
            })
            .collect()
    }

    /// Usage of the image filesystem (layers + content) and of the containers' writable layers.
    pub fn fs_usage(&self) -> Result<(FsUsage, FsUsage), ImageError> {
        let usage = self.snapshots.usage()?;
        let images = FsUsage {
            mountpoint: self.root_dir.clone(),
            used_bytes: usage.layers.bytes + self.content.usage_bytes(),
            inodes_used: usage.layers.inodes,
        };
        let containers = FsUsage {
            mountpoint: self.root_dir.clone(),
            used_bytes: usage.active.bytes,
            inodes_used: usage.active.inodes,
        };
        Ok((images, containers))
    }

    /// The record of an image whose layers are all committed: its size is theirs, its user
    /// the config's.
    fn new_record(
        &self,
        config_digest: &Digest,
        config: &manifest::ImageConfig,
        manifest_digest: &Digest,
        chain_ids: &[Digest],
        repo_tags: Vec<String>,
        repo_digests: Vec<String>,
    ) -> ImageRecord {
        let size = chain_ids
            .iter()
            .filter_map(|chain_id| self.snapshots.layer(&chain_id.to_string()))
            .map(|layer| layer.size)
            .sum();
        let (uid, username) = manifest::user_of(config.user());
        ImageRecord {
            id: config_digest.to_string(),
            repo_tags,
            repo_digests,
            size,
            manifest_digest: manifest_digest.to_string(),
            chain_ids: chain_ids.iter().map(ToString::to_string).collect(),
            uid,
            username,
            pinned: false,
            created_at_ns: crate::store::now_ns(),
        }
    }

    /// Writes (or merges into) an image record and the documents it names (a tag moves from
    /// whichever image held it to this one), and moves the layer blobs written to the ingest
    /// directory into the content store, under the same lock (so the garbage collection,
    /// which holds it too, never sees a blob before the record naming it).
    async fn commit_record_with_blobs(
        &self,
        mut record: ImageRecord,
        documents: &[(Digest, Bytes)],
        blobs: Vec<import::PendingBlob>,
    ) -> Result<(), ImageError> {
        let _guard = self.metadata_lock.lock().await;
        for blob in &blobs {
            self.content.commit_file(&blob.digest, &blob.temp)?;
        }
        for (digest, bytes) in documents {
            self.content.put(digest, bytes)?;
        }
        for other in self.store.images.list() {
            if other.id == record.id {
                continue;
            }
            let keeps_tag = |tag: &String| !record.repo_tags.contains(tag);
            if other.repo_tags.iter().all(keeps_tag) {
                continue;
            }
            let mut retagged = (*other).clone();
            retagged.repo_tags.retain(keeps_tag);
            self.store.images.put(retagged)?;
        }
        if let Some(existing) = self.store.images.get(&record.id) {
            let mut merged = (*existing).clone();
            for tag in record.repo_tags.drain(..) {
                if !merged.repo_tags.contains(&tag) {
                    merged.repo_tags.push(tag);
                }
            }
            for digest in record.repo_digests.drain(..) {
                if !merged.repo_digests.contains(&digest) {
                    merged.repo_digests.push(digest);
                }
            }
            merged.size = record.size;
            record = merged;
        }
        self.store.images.put(record)?;
        Ok(())
    }
}

/// `os/arch[/variant]` (validated by the config), or this host's platform when empty.
fn parse_platform(text: &str) -> Platform {
    let mut parts = text.split('/');
    match (parts.next(), parts.next()) {
        (Some(os), Some(architecture)) if !os.is_empty() => Platform {
            os: os.to_owned(),
            architecture: architecture.to_owned(),
            variant: parts.next().map(str::to_owned),
        },
        _ => Platform::host(),
    }
}

/// Layers that pulls in progress rely on; garbage collection leaves them alone.
#[derive(Debug, Default)]
struct Leases {
    counts: Arc<Mutex<HashMap<String, usize>>>,
}

/// Releases its layers when dropped.
#[derive(Debug)]
struct LeaseGuard {
    counts: Arc<Mutex<HashMap<String, usize>>>,
    keys: Vec<String>,
}

impl Leases {
    fn acquire(&self, chain_ids: &[Digest]) -> LeaseGuard {
        let keys: Vec<String> = chain_ids.iter().map(ToString::to_string).collect();
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for key in &keys {
            *counts.entry(key.clone()).or_default() += 1;
        }
        LeaseGuard {
            counts: Arc::clone(&self.counts),
            keys,
        }
    }

    fn is_leased(&self, chain_id: &str) -> bool {
        self.counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains_key(chain_id)
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for key in &self.keys {
            if let Some(count) = counts.get_mut(key) {
                *count -= 1;
                if *count == 0 {
                    counts.remove(key);
                }
            }
        }
    }
}
