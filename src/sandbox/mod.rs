//! Pod sandboxes: a pod's namespaces, cgroup, network and files, and their rollback.
//!
//! There is no pause process. A pod is its pinned namespaces (`namespaces`), its cgroup, its
//! CNI attachment and its files (`files`), recorded in the store. `run`, `stop`, `remove` and
//! `status` are the verbs; `run` is transactional (`rollback`). `port_forward` connects to a
//! port inside a pod's network. Each transition is published to the [`EventHub`] as a
//! container event about the pod (`publish`).

mod bandwidth;
mod error;
mod files;
mod namespaces;
mod pid_init;
mod port_forward;
mod publish;
mod quantity;
mod reconcile;
mod recover;
mod remove;
mod run;
mod stats;
mod status;
mod stop;
mod sysctl;
mod update;
mod userns;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

pub use error::SandboxError;
pub use reconcile::PodReconcileReport;
pub use recover::TeardownReport;
pub use stats::{InterfaceUsage, PodUsage};
pub use status::PodFilter;

use crate::cgroups::{CgroupManager, Resources};
use crate::cni::CniManager;
use crate::events::EventHub;
use crate::resumable::Resumable;
use crate::store::{
    DnsConfig, KeyedLocks, NamespaceModes, ObjectMetadata, PodRecord, PortMapping, Store,
};

/// A validated `RunPodSandbox` request.
#[derive(Debug, Clone, Default)]
pub struct PodSpec {
    /// Kubernetes identity.
    pub metadata: ObjectMetadata,
    /// Hostname (defaults to the pod name when empty).
    pub hostname: String,
    /// Where kubelet wants container logs.
    pub log_directory: String,
    /// DNS config; `None` copies the node's resolv.conf.
    pub dns: Option<DnsConfig>,
    /// Published ports.
    pub port_mappings: Vec<PortMapping>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
    /// Parent cgroup (cgroupfs path or systemd slice); empty for the configured default.
    pub cgroup_parent: String,
    /// Namespace options.
    pub namespaces: NamespaceModes,
    /// Sysctls.
    pub sysctls: BTreeMap<String, String>,
    /// Whether containers may be privileged.
    pub privileged: bool,
    /// Pod overhead (runtime class).
    pub overhead: Option<Resources>,
    /// Sum of the containers' resources.
    pub resources: Option<Resources>,
    /// Runtime handler; `""` is the default.
    pub runtime_handler: String,
}

/// Where the sandbox service keeps things and what it uses.
#[derive(Debug, Clone)]
pub struct SandboxSettings {
    /// State dir; pods live under `<state_dir>/pods/<id>`.
    pub state_dir: PathBuf,
    /// Parent cgroup for pods that name none.
    pub default_cgroup_parent: String,
    /// The node's resolv.conf, copied for pods without DNS config.
    pub host_resolv_conf: PathBuf,
    /// The node's hosts file, copied for host-network pods.
    pub host_hosts: PathBuf,
    /// The `carrack` binary, which runs the init of shared PID namespaces (`pod-init`).
    pub binary: PathBuf,
    /// Whether pods may have their own user namespace (`hostUsers: false`): the node can
    /// give their containers a rootfs through idmapped layers (probed at start).
    pub user_namespaces: bool,
}

/// Runs and tears down pods.
#[derive(Debug)]
pub struct SandboxService {
    store: Arc<Store>,
    cgroups: Arc<CgroupManager>,
    cni: Arc<CniManager>,
    settings: SandboxSettings,
    locks: KeyedLocks,
    resumable: Resumable,
    events: Arc<EventHub>,
    /// The pod CIDRs kubelet last sent (`UpdateRuntimeConfig`), one per address family: the
    /// `ipRanges` of new pods whose plugins ask for that capability.
    pod_cidrs: std::sync::RwLock<Vec<String>>,
}

impl SandboxService {
    /// A service over the node's store, cgroups and CNI, publishing each pod transition to
    /// `events`.
    pub fn new(
        settings: SandboxSettings,
        store: Arc<Store>,
        cgroups: Arc<CgroupManager>,
        cni: Arc<CniManager>,
        events: Arc<EventHub>,
    ) -> Self {
        Self {
            store,
            cgroups,
            cni,
            settings,
            locks: KeyedLocks::default(),
            resumable: Resumable::default(),
            events,
            pod_cidrs: std::sync::RwLock::default(),
        }
    }

    /// Keeps the node's pod CIDRs (validated `address/prefix` strings) for the `ipRanges` of
    /// pods run from now on; empty clears them.
    pub fn set_pod_cidrs(&self, cidrs: Vec<String>) {
        if let Ok(mut current) = self.pod_cidrs.write() {
            *current = cidrs;
        }
    }

    /// The pod CIDRs last set.
    pub fn pod_cidrs(&self) -> Vec<String> {
        self.pod_cidrs
            .read()
            .map(|cidrs| cidrs.clone())
            .unwrap_or_default()
    }

    /// Whether pods may have their own user namespace (`hostUsers: false`).
    pub fn user_namespaces_supported(&self) -> bool {
        self.settings.user_namespaces
    }

    /// Whether pod networking can work: a CNI config with every plugin present.
    pub fn network_status(&self) -> Result<(), SandboxError> {
        self.cni.status().map_err(|source| SandboxError::Network {
            id: String::new(),
            source,
        })
    }

    /// The pod `id` names: a full id or a unique prefix.
    pub fn find(&self, id: &str) -> Result<Option<Arc<PodRecord>>, SandboxError> {
        if id.is_empty() {
            return Err(SandboxError::InvalidConfig {
                reason: "pod sandbox id is required".to_owned(),
            });
        }
        if let Some(pod) = self.store.pods.get(id) {
            return Ok(Some(pod));
        }
        let mut matches = self
            .store
            .pods
            .list()
            .into_iter()
            .filter(|pod| pod.id.starts_with(id));
        match (matches.next(), matches.next()) {
            (Some(pod), None) => Ok(Some(pod)),
            (None, _) => Ok(None),
            (Some(_), Some(_)) => Err(SandboxError::InvalidConfig {
                reason: format!("pod sandbox id prefix {id:?} is ambiguous"),
            }),
        }
    }

    /// The pod `id` names, or `NotFound`.
    pub fn require(&self, id: &str) -> Result<Arc<PodRecord>, SandboxError> {
        self.find(id)?
            .ok_or_else(|| SandboxError::NotFound { id: id.to_owned() })
    }
}

/// A fresh random 64-hex id.
pub fn new_id() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}
