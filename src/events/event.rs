//! The domain event: which container changed how, with the pod's and its containers' state.

use std::sync::Arc;

use crate::cgroups::Resources;
use crate::store::{ContainerRecord, PodRecord};

/// The transition a [`ContainerEvent`] reports (CRI's `ContainerEventType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerEventKind {
    /// The container was created.
    Created,
    /// The container's process started.
    Started,
    /// The container exited: stopped, ended on its own, failed to start, or found exited at a
    /// daemon restart.
    Stopped,
    /// The container was removed.
    Deleted,
}

/// A container's state as an event reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerSnapshot {
    /// The container's record.
    pub record: Arc<ContainerRecord>,
    /// The cgroup resources last applied to it, when known.
    pub resources: Option<Resources>,
}

/// One container transition, with the state kubelet's evented PLEG caches from it.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerEvent {
    /// The container the event is about.
    pub container_id: String,
    /// What happened.
    pub kind: ContainerEventKind,
    /// When it was published, in nanoseconds since the epoch.
    pub at_ns: i64,
    /// The container's pod, when its record still exists.
    pub pod: Option<Arc<PodRecord>>,
    /// The pod's containers at that moment; for a deletion this includes the deleted container
    /// as it was just before it was removed.
    pub containers: Vec<ContainerSnapshot>,
}
