//! Per-pod serialisation of network operations.
//!
//! `setup`, `teardown` and `check` of one pod must not interleave (a `DEL` racing an `ADD`
//! would leave an address or a veth behind), while different pods must never wait for each
//! other: plugin runs take tens of milliseconds. The map entry of a pod is removed by the last
//! guard holding it, so the map only holds pods with an operation in flight.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// One async mutex per pod id, created on demand.
#[derive(Debug, Default)]
pub(crate) struct PodLocks {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Holds a pod's lock; dropping it releases the lock and forgets an unused entry.
#[derive(Debug)]
pub(crate) struct PodLockGuard {
    locks: Arc<PodLocks>,
    pod_id: String,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl PodLocks {
    /// Waits for and takes the lock of `pod_id`.
    pub async fn lock(self: &Arc<Self>, pod_id: &str) -> PodLockGuard {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(locks.entry(pod_id.to_owned()).or_default())
        };
        let guard = lock.lock_owned().await;
        PodLockGuard {
            locks: Arc::clone(self),
            pod_id: pod_id.to_owned(),
            guard: Some(guard),
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl Drop for PodLockGuard {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut locks = self
            .locks
            .locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Only the map holds it: nobody holds or waits (waiters clone the Arc under this lock).
        if locks
            .get(&self.pod_id)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            locks.remove(&self.pod_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn cni_locks_same_pod_waits_other_pod_does_not() {
        let locks = Arc::new(PodLocks::default());
        let held = locks.lock("a").await;
        let other = tokio::time::timeout(Duration::from_millis(50), locks.lock("b")).await;
        assert!(other.is_ok(), "another pod must not wait");
        drop(other);
        let same = tokio::time::timeout(Duration::from_millis(50), locks.lock("a")).await;
        assert!(same.is_err(), "the same pod must wait");
        drop(held);
        assert_eq!(locks.len(), 0, "unused entries are forgotten");
        let again = tokio::time::timeout(Duration::from_millis(50), locks.lock("a")).await;
        assert!(again.is_ok());
    }
}
