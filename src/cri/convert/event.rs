//! Container events → `ContainerEventResponse`.

use super::container::container_status;
use super::pod::pod_status;
use crate::container::ContainerView;
use crate::events::{ContainerEvent, ContainerEventKind, ContainerSnapshot};
use crate::proto;

/// The CRI event type of a transition.
pub fn event_type(kind: ContainerEventKind) -> proto::ContainerEventType {
    match kind {
        ContainerEventKind::Created => proto::ContainerEventType::ContainerCreatedEvent,
        ContainerEventKind::Started => proto::ContainerEventType::ContainerStartedEvent,
        ContainerEventKind::Stopped => proto::ContainerEventType::ContainerStoppedEvent,
        ContainerEventKind::Deleted => proto::ContainerEventType::ContainerDeletedEvent,
    }
}

fn snapshot_status(snapshot: &ContainerSnapshot) -> proto::ContainerStatus {
    container_status(&ContainerView {
        record: std::sync::Arc::clone(&snapshot.record),
        resources: snapshot.resources.clone(),
        spec_json: None,
    })
}

/// The wire form of an event: the pod's status (when the pod still exists) and the statuses
/// of its containers as the event saw them.
pub fn container_event(event: &ContainerEvent) -> proto::ContainerEventResponse {
    proto::ContainerEventResponse {
        container_id: event.container_id.clone(),
        container_event_type: event_type(event.kind).into(),
        created_at: event.at_ns,
        pod_sandbox_status: event.pod.as_deref().map(pod_status),
        containers_statuses: event.containers.iter().map(snapshot_status).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ContainerRecord, ContainerState};
    use std::sync::Arc;

    fn record(id: &str, state: ContainerState) -> Arc<ContainerRecord> {
        let json = serde_json::json!({
            "id": id, "pod_id": "pod", "name_key": id,
            "metadata": {"name": id, "uid": "u", "namespace": "ns", "attempt": 0},
            "image_ref": "img", "image_id": "sha256:1", "state": state,
            "created_at_ns": 5, "labels": {}, "annotations": {}, "image_spec": "busybox",
            "log_path": "", "log_path_relative": "", "cgroup_path": "", "cgroup_created": [],
            "stop_signal": 15, "tty": false, "stdin": false, "stdin_once": false, "mounts": [],
            "user": null, "started_at_ns": 6, "finished_at_ns": 7, "exit_code": 3,
            "reason": "Error", "message": "", "pid": 0, "monitor_pid": 0,
        });
        Arc::new(serde_json::from_value(json).unwrap())
    }

    #[test]
    fn events_carry_their_type_and_the_containers_statuses() {
        let deleted = record("c1", ContainerState::Exited);
        let event = ContainerEvent {
            container_id: "c1".to_owned(),
            kind: ContainerEventKind::Deleted,
            at_ns: 42,
            pod: None,
            containers: vec![ContainerSnapshot {
                record: deleted,
                resources: None,
            }],
        };
        let wire = container_event(&event);
        assert_eq!(wire.container_id, "c1");
        assert_eq!(
            wire.container_event_type,
            i32::from(proto::ContainerEventType::ContainerDeletedEvent)
        );
        assert_eq!(wire.created_at, 42);
        assert!(wire.pod_sandbox_status.is_none());
        let status = &wire.containers_statuses[0];
        assert_eq!(status.id, "c1");
        assert_eq!(
            status.state,
            i32::from(proto::ContainerState::ContainerExited)
        );
        assert_eq!(status.exit_code, 3);
        assert_eq!(status.finished_at, 7);
    }

    #[test]
    fn every_kind_maps_to_its_cri_type() {
        use proto::ContainerEventType as Wire;
        assert_eq!(
            event_type(ContainerEventKind::Created),
            Wire::ContainerCreatedEvent
        );
        assert_eq!(
            event_type(ContainerEventKind::Started),
            Wire::ContainerStartedEvent
        );
        assert_eq!(
            event_type(ContainerEventKind::Stopped),
            Wire::ContainerStoppedEvent
        );
        assert_eq!(
            event_type(ContainerEventKind::Deleted),
            Wire::ContainerDeletedEvent
        );
    }
}
