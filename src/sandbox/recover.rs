//! Finishing network teardowns that were cut short, so no pod IP leaks.
//!
//! A teardown can be cut short by a crash (between CNI ADD and the record saying the pod is
//! ready, or in the middle of a stop) or fail (a plugin error). The CNI cache remembers every
//! attachment until its DEL succeeded; this pass runs DEL for each cached attachment that no
//! ready pod owns, at start and then periodically, until it succeeds.

use super::SandboxService;
use crate::store::PodState;

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TeardownReport {
    /// Attachments released.
    pub released: usize,
    /// Attachments whose DEL failed again (retried by the next pass).
    pub failed: usize,
}

impl SandboxService {
    /// Undoes the creates the daemon died in (pod records still marked `creating` at start):
    /// stops and removes each pod, so nothing of it leaks and its name is free for the
    /// retry. Returns how many were undone; failures are logged and retried at the next
    /// start.
    pub async fn undo_interrupted_creates(&self) -> usize {
        let mut undone = 0;
        for pod in self.store.pods.list() {
            if !pod.creating {
                continue;
            }
            match self.remove(&pod.id).await {
                Ok(()) => {
                    tracing::info!(pod = %pod.id, name = %pod.name_key, "undid a pod create the daemon died in");
                    undone += 1;
                }
                Err(err) => {
                    tracing::warn!(pod = %pod.id, error = %err, "cannot undo an interrupted pod create");
                }
            }
        }
        undone
    }

    /// Runs DEL for every cached CNI attachment that belongs to no ready, attached pod.
    pub async fn finish_pending_teardowns(&self) -> TeardownReport {
        let mut report = TeardownReport::default();
        for pod_id in self.cni.pending_teardowns() {
            let _guard = self.locks.lock(&pod_id).await;
            let owner = self.store.pods.get(&pod_id);
            if owner
                .as_ref()
                .is_some_and(|pod| pod.state == PodState::Ready && pod.network_attached)
            {
                continue;
            }
            match self.cni.teardown(&pod_id).await {
                Ok(()) => {
                    report.released += 1;
                    tracing::info!(pod = %pod_id, "finished an interrupted network teardown");
                    if let Some(pod) = owner.filter(|pod| pod.network_attached) {
                        let mut record = (*pod).clone();
                        record.network_attached = false;
                        record.ip = None;
                        record.additional_ips.clear();
                        record.state = PodState::NotReady;
                        if let Err(err) = self.store.pods.put(record) {
                            tracing::error!(pod = %pod_id, %err, "cannot record the teardown");
                        }
                    }
                }
                Err(err) => {
                    report.failed += 1;
                    tracing::warn!(pod = %pod_id, %err, "network teardown failed; will retry");
                }
            }
        }
        report
    }
}
