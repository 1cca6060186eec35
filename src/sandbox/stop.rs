//! `StopPodSandbox`: detach the pod from the network and release its network namespace.
//! Repeatable; an unknown pod succeeds. A teardown that fails leaves the record saying so, and
//! the next Stop or Remove retries it.

use std::path::Path;

use tracing::Instrument;

use super::{SandboxError, SandboxService};
use super::{namespaces, pid_init};
use crate::events::ContainerEventKind;
use crate::store::{PodRecord, PodState};

impl SandboxService {
    /// Stops the pod `id` names.
    pub async fn stop(&self, id: &str) -> Result<(), SandboxError> {
        let Some(pod) = self.find(id)? else {
            return Ok(());
        };
        let _guard = self.locks.lock(&pod.id).await;
        self.stop_locked(&pod.id).await
    }

    /// Stops a pod whose lock the caller holds.
    pub(super) async fn stop_locked(&self, id: &str) -> Result<(), SandboxError> {
        let Some(pod) = self.store.pods.get(id) else {
            return Ok(());
        };
        let mut record: PodRecord = (*pod).clone();
        if record.network_attached {
            self.cni
                .teardown(&record.id)
                .instrument(tracing::info_span!("pod.network_teardown"))
                .await
                .map_err(|source| SandboxError::Network {
                    id: record.id.clone(),
                    source,
                })?;
            crate::failpoint::hit(crate::failpoint::STOP_POD_AFTER_NETWORK);
            record.network_attached = false;
            record.ip = None;
            record.additional_ips.clear();
            self.store.pods.put(record.clone())?;
        }
        // The pod's PID namespace ends with its init (containers were stopped before).
        if record.pid_init > 0 {
            let _phase = tracing::info_span!("pod.pid_init_kill").entered();
            pid_init::kill(record.pid_init).map_err(|source| SandboxError::Io {
                id: record.id.clone(),
                action: "kill pod init",
                path: record.pidns_path.clone().unwrap_or_default().into(),
                source,
            })?;
            crate::failpoint::hit(crate::failpoint::STOP_POD_AFTER_INIT_KILL);
            record.pid_init = 0;
            record.pidns_path = None;
            self.store.pods.put(record.clone())?;
        }
        // The network namespace is not needed by a stopped pod; freeing it now releases its
        // interfaces and sockets at once (containerd does the same).
        if let Some(netns) = record.netns_path.take() {
            let _phase = tracing::info_span!("pod.netns_unpin").entered();
            namespaces::unpin(Path::new(&netns)).map_err(|source| SandboxError::Namespaces {
                id: record.id.clone(),
                source,
            })?;
        }
        if record.state != PodState::NotReady || pod.netns_path.is_some() || pod.pid_init > 0 {
            record.state = PodState::NotReady;
            let record =
                tracing::info_span!("pod.record").in_scope(|| self.store.pods.put(record))?;
            tracing::info!(pod = %id, "pod sandbox stopped");
            self.publish(ContainerEventKind::Stopped, record);
        }
        Ok(())
    }
}
