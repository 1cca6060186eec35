//! Progress of the pulls in flight, layer by layer, for clients that want to show it
//! (`carrack pull`'s progress bars through the `carrack.images.v1` extension: CRI's
//! `PullImage` reports nothing until it is done).
//!
//! A pull registers its layers once it knows them (after the manifest) and counts the bytes
//! each layer's download has received. When the pull ends its entry is marked finished and
//! kept for [`FINISHED_KEEP`] (a reader polling every 100 ms must not miss a pull that took
//! less), or until the next pull of the image replaces it. Each pull has its own number, so a
//! reader can tell a new pull from an earlier one's leftover. Readers take snapshots by image
//! name; nothing here slows a pull beyond an atomic add per chunk.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a finished pull's last snapshot stays readable.
pub const FINISHED_KEEP: Duration = Duration::from_secs(30);

/// Where a layer of a pull is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerState {
    /// Waiting for a download slot or for another pull of the same layer.
    Waiting,
    /// Being downloaded and unpacked.
    Downloading,
    /// Unpacked and committed (or already present).
    Done,
}

impl LayerState {
    fn from_u8(value: u8) -> Self {
        match value {
            1 => Self::Downloading,
            2 => Self::Done,
            _ => Self::Waiting,
        }
    }
}

/// One layer as a snapshot reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerProgress {
    /// The layer blob's digest.
    pub digest: String,
    /// Its compressed size, from the manifest.
    pub total_bytes: u64,
    /// Compressed bytes received so far.
    pub received_bytes: u64,
    /// Where it is.
    pub state: LayerState,
}

/// The counters of one layer, shared with its download task.
#[derive(Debug)]
pub struct LayerCounter {
    digest: String,
    total: u64,
    received: AtomicU64,
    state: AtomicU8,
}

impl LayerCounter {
    /// Adds `bytes` received.
    pub fn received(&self, bytes: u64) {
        self.received.fetch_add(bytes, Ordering::Relaxed);
        self.state.store(1, Ordering::Relaxed);
    }

    /// The layer is in the store.
    pub fn done(&self) {
        self.received.store(self.total, Ordering::Relaxed);
        self.state.store(2, Ordering::Relaxed);
    }

    fn snapshot(&self) -> LayerProgress {
        LayerProgress {
            digest: self.digest.clone(),
            total_bytes: self.total,
            received_bytes: self.received.load(Ordering::Relaxed),
            state: LayerState::from_u8(self.state.load(Ordering::Relaxed)),
        }
    }
}

type Layers = Vec<Arc<LayerCounter>>;

/// One pull's entry.
#[derive(Debug)]
struct Entry {
    pull: u64,
    layers: Arc<Layers>,
    finished: Option<Instant>,
}

/// A pull as a snapshot reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullSnapshot {
    /// The pull's number (distinct for every pull since the daemon started, never 0).
    pub pull: u64,
    /// Whether it has ended (successfully or not).
    pub finished: bool,
    /// Its layers in manifest order.
    pub layers: Vec<LayerProgress>,
}

/// The pulls in flight, by normalized image name (several pulls of one name share nothing:
/// the latest registered is reported).
#[derive(Debug, Default)]
pub struct PullProgress {
    pulls: Mutex<HashMap<String, Entry>>,
    next: AtomicU64,
}

/// Keeps a pull's entry until dropped.
#[derive(Debug)]
pub struct Registration<'a> {
    progress: &'a PullProgress,
    image: String,
    pull: u64,
    layers: Arc<Layers>,
}

impl Registration<'_> {
    /// The counter of layer `index` (as listed in the manifest).
    pub fn layer(&self, index: usize) -> Option<Arc<LayerCounter>> {
        self.layers.get(index).cloned()
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        if let Some(entry) = self.progress.lock().get_mut(&self.image)
            && entry.pull == self.pull
        {
            entry.finished = Some(Instant::now());
        }
    }
}

impl PullProgress {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.pulls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a pull of `image` with its layers' `(digest, compressed size)`.
    pub fn register(
        &self,
        image: &str,
        layers: impl IntoIterator<Item = (String, u64)>,
    ) -> Registration<'_> {
        let layers: Arc<Layers> = Arc::new(
            layers
                .into_iter()
                .map(|(digest, total)| {
                    Arc::new(LayerCounter {
                        digest,
                        total,
                        received: AtomicU64::new(0),
                        state: AtomicU8::new(0),
                    })
                })
                .collect(),
        );
        let pull = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let mut pulls = self.lock();
        pulls.retain(|_, entry| {
            entry
                .finished
                .is_none_or(|finished| finished.elapsed() < FINISHED_KEEP)
        });
        pulls.insert(
            image.to_owned(),
            Entry {
                pull,
                layers: Arc::clone(&layers),
                finished: None,
            },
        );
        Registration {
            progress: self,
            image: image.to_owned(),
            pull,
            layers,
        }
    }

    /// The latest pull of `image`: in flight, or finished less than [`FINISHED_KEEP`] ago;
    /// `None` when there is none (not started, or still resolving its manifest).
    pub fn snapshot(&self, image: &str) -> Option<PullSnapshot> {
        let pulls = self.lock();
        let entry = pulls.get(image)?;
        if entry
            .finished
            .is_some_and(|finished| finished.elapsed() >= FINISHED_KEEP)
        {
            return None;
        }
        Some(PullSnapshot {
            pull: entry.pull,
            finished: entry.finished.is_some(),
            layers: entry.layers.iter().map(|layer| layer.snapshot()).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_follow_counters_and_outlive_the_pull() {
        let progress = PullProgress::default();
        assert_eq!(progress.snapshot("busybox"), None);
        let pull = progress.register(
            "busybox",
            [("sha256:a".to_owned(), 100), ("sha256:b".to_owned(), 50)],
        );
        let first = pull.layer(0).unwrap();
        first.received(40);
        pull.layer(1).unwrap().done();
        let snapshot = progress.snapshot("busybox").unwrap();
        assert!(!snapshot.finished);
        assert_eq!(snapshot.layers[0].received_bytes, 40);
        assert_eq!(snapshot.layers[0].state, LayerState::Downloading);
        assert_eq!(snapshot.layers[1].received_bytes, 50);
        assert_eq!(snapshot.layers[1].state, LayerState::Done);
        assert!(pull.layer(2).is_none());
        drop(pull);
        let last = progress.snapshot("busybox").unwrap();
        assert!(last.finished);
        assert_eq!(last.pull, snapshot.pull);
    }

    #[test]
    fn a_new_pull_replaces_the_last_and_an_older_one_ending_keeps_it() {
        let progress = PullProgress::default();
        let older = progress.register("busybox", [("sha256:a".to_owned(), 1)]);
        let newer = progress.register("busybox", [("sha256:b".to_owned(), 2)]);
        drop(older);
        let snapshot = progress.snapshot("busybox").unwrap();
        assert_eq!(snapshot.layers[0].digest, "sha256:b");
        assert!(!snapshot.finished);
        drop(newer);
        let again = progress.register("busybox", [("sha256:b".to_owned(), 2)]);
        assert!(progress.snapshot("busybox").unwrap().pull > snapshot.pull);
        drop(again);
    }
}
