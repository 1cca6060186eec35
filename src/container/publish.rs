//! Container events: after each committed transition the service publishes what changed,
//! with the pod's record and its containers' states, to the event hub (kubelet's evented
//! PLEG caches pod status from these). Called with the container's lock held, so one
//! container's events go out in the order its transitions happened.

use std::sync::Arc;

use super::ContainerService;
use crate::events::{ContainerEvent, ContainerEventKind, ContainerSnapshot};
use crate::store::{ContainerRecord, now_ns};

impl ContainerService {
    /// Publishes `kind` for container `id` as its record now stands (nothing when it has no
    /// record).
    pub(super) fn publish_current(&self, kind: ContainerEventKind, id: &str) {
        if let Some(record) = self.store.containers.get(id) {
            self.publish(kind, self.snapshot(record));
        }
    }

    /// Publishes `kind` about `subject` with the state of its pod and of the pod's other
    /// containers; `subject` is given (not looked up) so that a deleted container still shows
    /// as it was.
    pub(super) fn publish(&self, kind: ContainerEventKind, subject: ContainerSnapshot) {
        let pod_id = subject.record.pod_id.clone();
        let mut containers: Vec<ContainerSnapshot> = self
            .of_pod(&pod_id)
            .into_iter()
            .filter(|record| record.id != subject.record.id)
            .map(|record| self.snapshot(record))
            .collect();
        containers.push(subject.clone());
        containers.sort_by(|a, b| {
            (a.record.created_at_ns, &a.record.id).cmp(&(b.record.created_at_ns, &b.record.id))
        });
        self.events.publish(ContainerEvent {
            container_id: subject.record.id.clone(),
            kind,
            at_ns: now_ns(),
            pod: self.store.pods.get(&pod_id),
            containers,
        });
    }

    /// A container's record with the resources last applied to it.
    pub(super) fn snapshot(&self, record: Arc<ContainerRecord>) -> ContainerSnapshot {
        let resources = self.applied_resources(&record.id);
        ContainerSnapshot { record, resources }
    }
}
