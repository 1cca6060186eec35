//! Pod sandbox events: as containerd does, a pod's own transitions go out as container
//! events whose container id is the pod's id (kubelet's evented PLEG drops its cached pod
//! status on the pod's deleted event, and caches the status of the others).

use std::sync::Arc;

use super::SandboxService;
use crate::events::{ContainerEvent, ContainerEventKind, ContainerSnapshot};
use crate::store::{PodRecord, now_ns};

impl SandboxService {
    /// Publishes `kind` about `pod` (as given: a removed pod shows as it was) with its
    /// containers' records. Their resources are left out: the pod's transitions happen when
    /// it has no containers yet, or only exited or removed ones.
    pub(super) fn publish(&self, kind: ContainerEventKind, pod: Arc<PodRecord>) {
        let mut containers: Vec<ContainerSnapshot> = self
            .store
            .containers
            .list()
            .into_iter()
            .filter(|container| container.pod_id == pod.id)
            .map(|record| ContainerSnapshot {
                record,
                resources: None,
            })
            .collect();
        containers.sort_by(|a, b| {
            (a.record.created_at_ns, &a.record.id).cmp(&(b.record.created_at_ns, &b.record.id))
        });
        self.events.publish(ContainerEvent {
            container_id: pod.id.clone(),
            kind,
            at_ns: now_ns(),
            pod: Some(pod),
            containers,
        });
    }
}
