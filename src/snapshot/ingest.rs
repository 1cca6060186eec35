//! Adding a layer: an empty directory to unpack into, then an atomic commit.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use rustix::fs::{RenameFlags, renameat_with};
use rustix::io::Errno;

use super::error::io_at;
use super::layer::{FS_DIR, LayerRecord, META_FILE};
use super::{
    Inner, LayerInfo, LayerMeta, SnapshotError, Snapshotter, check_chain_id, remove_any, sync_dir,
    write_synced,
};

/// A layer being unpacked. Unpack into [`LayerIngest::path`], then [`LayerIngest::commit`];
/// dropping it uncommitted removes the directory.
#[derive(Debug)]
pub struct LayerIngest {
    inner: Arc<Inner>,
    chain_id: String,
    /// `ingest/<tmp>`, which becomes `layers/<n>`.
    dir: PathBuf,
    /// `ingest/<tmp>/fs`, the empty directory handed out.
    content: PathBuf,
    committed: bool,
}

impl Snapshotter {
    /// Starts adding the layer `chain_id`: returns a fresh empty directory to unpack into.
    /// Two pulls may ingest the same chain id at once; the second to commit gets the first's
    /// layer. Callers should check [`Snapshotter::layer`] first to avoid the wasted work.
    pub fn begin_layer(&self, chain_id: &str) -> Result<LayerIngest, SnapshotError> {
        check_chain_id(chain_id)?;
        let dir = self.inner.temp_dir("layer")?;
        let content = dir.join(FS_DIR);
        // Build the guard before creating `fs`, so a failure there still removes `dir`.
        let made = fs::create_dir(&content).map_err(io_at(&content));
        let ingest = LayerIngest {
            inner: Arc::clone(&self.inner),
            chain_id: chain_id.to_owned(),
            dir,
            content,
            committed: false,
        };
        made.map(|()| ingest)
    }
}

impl LayerIngest {
    /// The empty directory to unpack the layer into.
    pub fn path(&self) -> &Path {
        &self.content
    }

    /// The chain id being ingested.
    pub fn chain_id(&self) -> &str {
        &self.chain_id
    }

    /// Publishes the layer: flushes it (if configured), writes its metadata, and renames the
    /// directory into `layers/` in one step. If the same chain id was committed meanwhile,
    /// this ingest is discarded and the existing layer returned.
    pub fn commit(mut self, meta: LayerMeta) -> Result<LayerInfo, SnapshotError> {
        if let Some(existing) = self.inner.index().layers.get(&self.chain_id) {
            return Ok(existing.clone());
        }
        if self.inner.options.sync_on_commit {
            // One syncfs flushes every file of the layer; fsyncing each would cost a
            // syscall and a journal commit per file.
            let dir = fs::File::open(&self.content).map_err(io_at(&self.content))?;
            rustix::fs::syncfs(&dir).map_err(|errno| SnapshotError::Io {
                path: self.content.clone(),
                source: errno.into(),
            })?;
        }
        let record = LayerRecord::new(&self.chain_id, &meta);
        let meta_path = self.dir.join(META_FILE);
        let bytes =
            serde_json::to_vec_pretty(&record).map_err(|source| SnapshotError::Metadata {
                path: meta_path.clone(),
                source,
            })?;
        write_synced(&meta_path, &bytes)?;

        let inner = Arc::clone(&self.inner);
        let mut index = inner.index();
        if let Some(existing) = index.layers.get(&self.chain_id) {
            // Another pull won the race; ours is dropped (and removed) on return.
            return Ok(existing.clone());
        }
        let (id, layer_dir) = loop {
            let number = inner.next_layer.fetch_add(1, Ordering::Relaxed);
            let id = number.to_string();
            let layer_dir = inner.layers_dir.join(&id);
            // NOREPLACE: never clobber a layer whose number recovery did not see.
            match renameat_with(
                rustix::fs::CWD,
                &self.dir,
                rustix::fs::CWD,
                &layer_dir,
                RenameFlags::NOREPLACE,
            ) {
                Ok(()) => break (id, layer_dir),
                Err(Errno::EXIST | Errno::NOTEMPTY) => continue,
                Err(errno) => {
                    return Err(SnapshotError::Io {
                        path: layer_dir,
                        source: errno.into(),
                    });
                }
            }
        };
        self.committed = true;
        let info = record.info(&id, &layer_dir);
        // The rename is done: the index must match the disk even if the flush below fails.
        index.layers.insert(self.chain_id.clone(), info.clone());
        sync_dir(&inner.layers_dir)?;
        Ok(info)
    }
}

impl Drop for LayerIngest {
    fn drop(&mut self) {
        if !self.committed
            && let Err(error) = remove_any(&self.dir)
        {
            // Recovery at the next open removes it.
            tracing::warn!(%error, path = %self.dir.display(), "cannot remove abandoned layer ingest");
        }
    }
}
