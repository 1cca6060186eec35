//! The content store: manifests, indexes and configs kept by digest under
//! `<root_dir>/content/blobs/<algorithm>/<hex>`.
//!
//! Every blob is verified against its digest before it is written, and written atomically
//! (temp file, fsync, rename), so a file under `blobs/` is always whole and correct.
//! Layer blobs are not kept: they are unpacked while they stream (see `pull`), which saves
//! writing and re-reading every compressed layer.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::digest::Digest;
use crate::error_kind::ErrorKind;

/// A content store failure.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    /// Reading or writing a blob failed.
    #[error("content store i/o on {path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// The bytes do not hash to the digest they were stored under.
    #[error("content does not match digest {expected} (got {actual})")]
    DigestMismatch {
        /// The digest the caller expected.
        expected: Digest,
        /// The digest of the bytes.
        actual: Digest,
    },
}

impl ContentError {
    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Io { source, .. } if source.raw_os_error() == Some(libc::ENOSPC) => {
                ErrorKind::ResourceExhausted
            }
            Self::Io { .. } => ErrorKind::Internal,
            Self::DigestMismatch { .. } => ErrorKind::FailedPrecondition,
        }
    }
}

/// Digest-addressed blobs on disk.
#[derive(Debug)]
pub struct ContentStore {
    blobs: PathBuf,
    ingest: PathBuf,
    counter: AtomicU64,
    /// Half-written blobs removed by [`ContentStore::open`].
    removed_at_open: usize,
}

impl ContentStore {
    /// Opens `<root_dir>/content`, removing half-written blobs left by a crash.
    pub fn open(root_dir: &Path) -> Result<Self, ContentError> {
        let base = root_dir.join("content");
        let blobs = base.join("blobs");
        let ingest = base.join("ingest");
        for dir in [&blobs, &ingest] {
            fs::create_dir_all(dir).map_err(|source| ContentError::Io {
                path: dir.clone(),
                source,
            })?;
        }
        let leftovers = fs::read_dir(&ingest).map_err(|source| ContentError::Io {
            path: ingest.clone(),
            source,
        })?;
        let mut removed_at_open = 0;
        for entry in leftovers.flatten() {
            let path = entry.path();
            tracing::info!(path = %path.display(), "removing half-written blob");
            if fs::remove_file(&path).is_ok() {
                removed_at_open += 1;
            }
        }
        Ok(Self {
            blobs,
            ingest,
            counter: AtomicU64::new(0),
            removed_at_open,
        })
    }

    /// How many half-written blobs [`ContentStore::open`] removed (for the reconciler metric).
    pub fn removed_at_open(&self) -> usize {
        self.removed_at_open
    }

    /// Stores `bytes` under `digest` after checking they match. Storing again is a no-op.
    pub fn put(&self, digest: &Digest, bytes: &[u8]) -> Result<(), ContentError> {
        let actual = {
            let mut hasher = super::digest::Hasher::new(digest.algorithm());
            hasher.update(bytes);
            hasher.finish()
        };
        if actual != *digest {
            return Err(ContentError::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        let target = self.path(digest);
        if target.exists() {
            return Ok(());
        }
        let dir = target.parent().unwrap_or(&self.blobs).to_owned();
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| ContentError::Io { path, source }
        };
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let temp = self.ingest.join(format!(
            "{}-{}",
            digest.hex(),
            self.counter.fetch_add(1, Ordering::Relaxed)
        ));
        crate::store::write_atomically(&temp, &target, bytes)
            .map_err(|(path, source)| ContentError::Io { path, source })
    }

    /// A fresh path in the ingest directory for a large temporary file (an archive being
    /// imported, a blob being written); whatever is left there is removed at the next open.
    pub fn temp_path(&self, label: &str) -> PathBuf {
        self.ingest.join(format!(
            "{label}-{}-{}",
            std::process::id(),
            self.counter.fetch_add(1, Ordering::Relaxed)
        ))
    }

    /// Stores a blob written to `temp` (a [`ContentStore::temp_path`]) under `digest`, which
    /// the caller computed while writing it: the file is synced and renamed into place.
    pub fn commit_file(&self, digest: &Digest, temp: &Path) -> Result<(), ContentError> {
        let target = self.path(digest);
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| ContentError::Io { path, source }
        };
        if target.exists() {
            return fs::remove_file(temp).map_err(io(temp));
        }
        let dir = target.parent().unwrap_or(&self.blobs).to_owned();
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        fs::File::open(temp)
            .and_then(|file| file.sync_all())
            .map_err(io(temp))?;
        fs::rename(temp, &target).map_err(io(&target))?;
        fs::File::open(&dir)
            .and_then(|dir| dir.sync_all())
            .map_err(io(&dir))
    }

    /// Opens a stored blob for reading, if stored.
    pub fn open_blob(&self, digest: &Digest) -> Result<Option<fs::File>, ContentError> {
        let path = self.path(digest);
        match fs::File::open(&path) {
            Ok(file) => Ok(Some(file)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(ContentError::Io { path, source }),
        }
    }

    /// The blob's bytes, if stored.
    pub fn get(&self, digest: &Digest) -> Result<Option<Vec<u8>>, ContentError> {
        let path = self.path(digest);
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(ContentError::Io { path, source }),
        }
    }

    /// Deletes the blob; absent blobs succeed.
    pub fn remove(&self, digest: &Digest) -> Result<(), ContentError> {
        let path = self.path(digest);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(ContentError::Io { path, source }),
        }
    }

    /// Every stored digest.
    pub fn list(&self) -> Vec<Digest> {
        let mut digests = Vec::new();
        let Ok(algorithms) = fs::read_dir(&self.blobs) else {
            return digests;
        };
        for algorithm in algorithms.flatten() {
            let algorithm_name = algorithm.file_name().to_string_lossy().into_owned();
            let Ok(entries) = fs::read_dir(algorithm.path()) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if let Ok(digest) = format!("{algorithm_name}:{name}").parse() {
                    digests.push(digest);
                }
            }
        }
        digests
    }

    /// Re-reads the stored blob and checks it still hashes to `digest` (`Ok(false)`: not
    /// stored).
    pub fn verify(&self, digest: &Digest) -> Result<bool, ContentError> {
        let Some(file) = self.open_blob(digest)? else {
            return Ok(false);
        };
        let mut hashing =
            super::digest::HashingReader::new(std::io::BufReader::new(file), digest.algorithm());
        std::io::copy(&mut hashing, &mut std::io::sink()).map_err(|source| ContentError::Io {
            path: self.path(digest),
            source,
        })?;
        let (actual, _) = hashing.finish();
        if actual == *digest {
            Ok(true)
        } else {
            Err(ContentError::DigestMismatch {
                expected: digest.clone(),
                actual,
            })
        }
    }

    /// What is in the ingest directory: temporary files of imports in flight, or debris a
    /// crash left (the next open removes it).
    pub fn ingest_entries(&self) -> Vec<PathBuf> {
        let mut found: Vec<PathBuf> = fs::read_dir(&self.ingest)
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path())
            .collect();
        found.sort();
        found
    }

    /// Files under `blobs/` that are not named like a digest (nothing the store writes).
    pub fn stray_files(&self) -> Vec<PathBuf> {
        let mut found = Vec::new();
        for algorithm in fs::read_dir(&self.blobs).into_iter().flatten().flatten() {
            let algorithm_name = algorithm.file_name().to_string_lossy().into_owned();
            for entry in fs::read_dir(algorithm.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let name = entry.file_name().to_string_lossy().into_owned();
                if format!("{algorithm_name}:{name}")
                    .parse::<Digest>()
                    .is_err()
                {
                    found.push(entry.path());
                }
            }
        }
        found.sort();
        found
    }

    /// Total bytes of stored blobs.
    pub fn usage_bytes(&self) -> u64 {
        self.list()
            .iter()
            .filter_map(|digest| fs::metadata(self.path(digest)).ok())
            .map(|meta| meta.len())
            .sum()
    }

    fn path(&self, digest: &Digest) -> PathBuf {
        // Digest guarantees a known algorithm and lowercase hex: safe as path components.
        let text = digest.to_string();
        let (algorithm, _) = text.split_once(':').unwrap_or(("sha256", ""));
        self.blobs.join(algorithm).join(digest.hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_remove() {
        let root = tempfile::tempdir().unwrap();
        let store = ContentStore::open(root.path()).unwrap();
        let digest = Digest::sha256_of(b"manifest");
        store.put(&digest, b"manifest").unwrap();
        store.put(&digest, b"manifest").unwrap();
        assert_eq!(store.get(&digest).unwrap().unwrap(), b"manifest");
        assert_eq!(store.list(), vec![digest.clone()]);
        store.remove(&digest).unwrap();
        store.remove(&digest).unwrap();
        assert!(store.get(&digest).unwrap().is_none());
    }

    #[test]
    fn wrong_bytes_are_refused_and_nothing_is_written() {
        let root = tempfile::tempdir().unwrap();
        let store = ContentStore::open(root.path()).unwrap();
        let digest = Digest::sha256_of(b"right");
        let err = store.put(&digest, b"wrong").unwrap_err();
        assert!(matches!(err, ContentError::DigestMismatch { .. }));
        assert!(store.get(&digest).unwrap().is_none());
        assert!(store.list().is_empty());
    }

    #[test]
    fn leftovers_are_removed_at_open() {
        let root = tempfile::tempdir().unwrap();
        drop(ContentStore::open(root.path()).unwrap());
        let leftover = root.path().join("content/ingest/abc-0");
        fs::write(&leftover, b"half").unwrap();
        let store = ContentStore::open(root.path()).unwrap();
        assert!(!leftover.exists());
        assert_eq!(store.removed_at_open(), 1);
    }

    #[test]
    fn verify_rehashes_stored_blobs() {
        let root = tempfile::tempdir().unwrap();
        let store = ContentStore::open(root.path()).unwrap();
        let digest = Digest::sha256_of(b"config");
        assert!(!store.verify(&digest).unwrap());
        store.put(&digest, b"config").unwrap();
        assert!(store.verify(&digest).unwrap());
        fs::write(store.path(&digest), b"tampered").unwrap();
        assert!(matches!(
            store.verify(&digest),
            Err(ContentError::DigestMismatch { .. })
        ));
        fs::write(root.path().join("content/blobs/sha256/not-a-digest"), b"x").unwrap();
        assert_eq!(store.stray_files().len(), 1);
        fs::write(store.temp_path("blob"), b"x").unwrap();
        assert_eq!(store.ingest_entries().len(), 1);
    }
}
