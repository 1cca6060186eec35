//! Containers: a container's life inside its pod, from the CRI container config to a running
//! process and back to nothing.
//!
//! [`spec`] turns the CRI container config, the image config and the pod's record into the
//! OCI runtime spec the executor runs (pure: the few host facts it needs come in as values).
//! The lifecycle verbs are one file each: `create` (snapshot, rootfs mount, cgroup, spec,
//! record — transactional), `start` (runs `carrack monitor`, which launches the process and
//! stays its parent), `watch` (notices a monitor's exit and records how the container
//! ended), `stop`, `remove`, `status` (status and list), `update` (resources, log reopen),
//! `exec_sync`, `exec` (streaming, with a terminal when asked) and `stats`; `publish` turns
//! each transition into a container event for the [`EventHub`] the service is given.
//! `recover` re-attaches to the monitors that outlived a daemon restart; `reconcile` removes
//! what no record owns after a create or remove was cut short.
//!
//! A container's runtime files live in `<state_dir>/containers/<id>/` (see
//! [`crate::monitor::protocol`]); its durable record in the store.

mod attach;
mod create;
mod error;
mod exec;
mod exec_sync;
mod host;
#[allow(unsafe_code)]
mod pidfd;
mod publish;
mod reconcile;
mod recover;
mod remove;
pub mod spec;
mod start;
mod stats;
mod status;
mod stop;
mod update;
pub mod userns_rootfs;
mod watch;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

pub use attach::{AttachResizer, Attached};
pub use create::parse_signal;
pub use error::ContainerError;
pub use exec::{ExecIo, ExecProcess, ExecStreams, Terminal, TerminalControl};
pub use exec_sync::ExecOutput;
pub use host::detect_host;
pub use reconcile::ReconcileReport;
pub use recover::RecoveryReport;
pub use stats::ContainerUsage;
pub use status::{ContainerFilter, ContainerView};

use crate::cgroups::CgroupManager;
use crate::events::EventHub;
use crate::image_service::ImageService;
use crate::resumable::Resumable;
use crate::snapshot::Snapshotter;
use crate::store::{ContainerRecord, KeyedLocks, ObjectMetadata, Store};
use spec::{ContainerSpecInput, HostInfo};

/// A validated `CreateContainer` request.
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    /// The pod to create it in.
    pub pod_id: String,
    /// Kubernetes identity (name and attempt; the rest comes from the pod).
    pub metadata: ObjectMetadata,
    /// The image as named (a reference or an id).
    pub image: String,
    /// Everything the OCI spec is built from.
    pub spec: ContainerSpecInput,
    /// Log path relative to the pod's log directory.
    pub log_path: String,
    /// Keep stdin open.
    pub stdin: bool,
    /// Close stdin after the first attach.
    pub stdin_once: bool,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
    /// Overrides the image's `StopSignal`.
    pub stop_signal: Option<i32>,
    /// For the `TARGET` PID namespace mode: the container whose PID namespace to join.
    pub pid_target_id: Option<String>,
}

/// Where the container service keeps things and what it runs.
#[derive(Debug, Clone)]
pub struct ContainerSettings {
    /// State dir; runtime files under `<state_dir>/containers/<id>`.
    pub state_dir: PathBuf,
    /// The `carrack` binary that runs monitors and exec helpers.
    pub binary: PathBuf,
    /// Facts about the node for spec building.
    pub host: HostInfo,
}

/// Creates, runs and removes containers.
#[derive(Debug)]
pub struct ContainerService {
    store: Arc<Store>,
    cgroups: Arc<CgroupManager>,
    snapshots: Arc<Snapshotter>,
    images: Arc<ImageService>,
    settings: ContainerSettings,
    locks: KeyedLocks,
    cpu_samples: stats::CpuSamples,
    resumable: Resumable,
    events: Arc<EventHub>,
}

impl ContainerService {
    /// A service over the node's store, cgroups, snapshots and images, publishing every
    /// container transition to `events`.
    pub fn new(
        settings: ContainerSettings,
        store: Arc<Store>,
        cgroups: Arc<CgroupManager>,
        snapshots: Arc<Snapshotter>,
        images: Arc<ImageService>,
        events: Arc<EventHub>,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            cgroups,
            snapshots,
            images,
            settings,
            locks: KeyedLocks::default(),
            cpu_samples: stats::CpuSamples::default(),
            resumable: Resumable::default(),
            events,
        })
    }

    /// The runtime directory of container `id`.
    fn runtime_dir(&self, id: &str) -> PathBuf {
        self.settings.state_dir.join("containers").join(id)
    }

    /// The container `id` names: a full id or a unique prefix.
    pub fn find(&self, id: &str) -> Result<Option<Arc<ContainerRecord>>, ContainerError> {
        if id.is_empty() {
            return Err(ContainerError::InvalidConfig {
                reason: "container id is required".to_owned(),
            });
        }
        if let Some(container) = self.store.containers.get(id) {
            return Ok(Some(container));
        }
        let mut matches = self
            .store
            .containers
            .list()
            .into_iter()
            .filter(|container| container.id.starts_with(id));
        match (matches.next(), matches.next()) {
            (Some(container), None) => Ok(Some(container)),
            (None, _) => Ok(None),
            (Some(_), Some(_)) => Err(ContainerError::InvalidConfig {
                reason: format!("container id prefix {id:?} is ambiguous"),
            }),
        }
    }

    /// The container `id` names, or `NotFound`.
    pub fn require(&self, id: &str) -> Result<Arc<ContainerRecord>, ContainerError> {
        self.find(id)?
            .ok_or_else(|| ContainerError::NotFound { id: id.to_owned() })
    }

    /// The containers of pod `pod_id`.
    pub fn of_pod(&self, pod_id: &str) -> Vec<Arc<ContainerRecord>> {
        self.store
            .containers
            .list()
            .into_iter()
            .filter(|container| container.pod_id == pod_id)
            .collect()
    }
}
