//! The durable record types of pods, containers and images.
//!
//! They hold what must survive a restart; the domain modules fill them. New fields get
//! `#[serde(default)]` so records written by an older binary still load (bump
//! `SCHEMA_VERSION` only for changes a default cannot express).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::record_store::Record;

/// Kubernetes identity of a pod or container, as CRI metadata carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ObjectMetadata {
    /// Object name.
    pub name: String,
    /// Pod UID (empty for containers).
    #[serde(default)]
    pub uid: String,
    /// Kubernetes namespace (empty for containers).
    #[serde(default)]
    pub namespace: String,
    /// Restart attempt.
    #[serde(default)]
    pub attempt: u32,
}

/// Pod lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PodState {
    /// Namespaces and network are up.
    Ready,
    /// Stopped, or failed to come up.
    NotReady,
}

/// DNS settings for a pod's resolv.conf.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DnsConfig {
    /// Name servers.
    #[serde(default)]
    pub servers: Vec<String>,
    /// Search domains.
    #[serde(default)]
    pub searches: Vec<String>,
    /// Resolver options.
    #[serde(default)]
    pub options: Vec<String>,
}

/// A transport protocol of a port mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

/// A pod port published on the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// Protocol.
    pub protocol: Protocol,
    /// Port inside the pod.
    pub container_port: i32,
    /// Port on the node (0: not published).
    pub host_port: i32,
    /// Node address to bind (empty: all).
    #[serde(default)]
    pub host_ip: String,
}

/// Where a namespace of a pod or container comes from, as CRI's `NamespaceMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum NamespaceMode {
    /// Shared by the pod's containers.
    #[default]
    Pod,
    /// One per container.
    Container,
    /// The node's own.
    Node,
    /// Another container's (PID only).
    Target,
}

/// One contiguous range of ids mapped into a user namespace (a line of `uid_map`/`gid_map`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMapping {
    /// First id inside the namespace.
    pub container_id: u32,
    /// The host id that `container_id` maps to.
    pub host_id: u32,
    /// How many consecutive ids are mapped.
    pub length: u32,
}

impl IdMapping {
    /// The mapping as a line of `/proc/<pid>/uid_map` or `gid_map`.
    pub fn map_file_line(&self) -> String {
        format!("{} {} {}\n", self.container_id, self.host_id, self.length)
    }

    /// The host id that `id` (inside the namespace) maps to, if it is in the range.
    pub fn host_id_of(&self, id: u32) -> Option<u32> {
        let offset = id.checked_sub(self.container_id)?;
        (offset < self.length)
            .then(|| self.host_id.checked_add(offset))
            .flatten()
    }
}

/// The id mappings of a pod's own user namespace (`hostUsers: false`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserNamespaceMappings {
    /// The user id mapping.
    pub uid: IdMapping,
    /// The group id mapping.
    pub gid: IdMapping,
}

/// The namespace options of a pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct NamespaceModes {
    /// Network namespace.
    pub network: NamespaceMode,
    /// PID namespace.
    pub pid: NamespaceMode,
    /// IPC namespace.
    pub ipc: NamespaceMode,
    /// Target container for `Target` PID mode.
    #[serde(default)]
    pub target_id: String,
    /// The mappings of the pod's own user namespace (`hostUsers: false`); `None`: the node's.
    #[serde(default)]
    pub user: Option<UserNamespaceMappings>,
}

/// A pod sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodRecord {
    /// 64-hex id.
    pub id: String,
    /// The registrar key `<name>_<namespace>_<uid>_<attempt>`.
    pub name_key: String,
    /// CRI metadata.
    pub metadata: ObjectMetadata,
    /// Current state.
    pub state: PodState,
    /// Creation time, nanoseconds since the epoch.
    pub created_at_ns: i64,
    /// Labels from the request.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Annotations from the request.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// The runtime handler the pod was created with.
    #[serde(default)]
    pub runtime_handler: String,
    /// Hostname of the pod.
    #[serde(default)]
    pub hostname: String,
    /// Where kubelet wants container logs.
    #[serde(default)]
    pub log_directory: String,
    /// DNS config, when the request gave one.
    #[serde(default)]
    pub dns: Option<DnsConfig>,
    /// Published ports.
    #[serde(default)]
    pub port_mappings: Vec<PortMapping>,
    /// Namespace options.
    #[serde(default)]
    pub namespaces: NamespaceModes,
    /// Sysctls applied in the pod's namespaces.
    #[serde(default)]
    pub sysctls: BTreeMap<String, String>,
    /// Whether the pod asked for privileged containers.
    #[serde(default)]
    pub privileged: bool,
    /// The `cgroup_parent` as requested.
    #[serde(default)]
    pub cgroup_parent: String,
    /// The pod cgroup path (relative to each hierarchy root).
    #[serde(default)]
    pub cgroup_path: String,
    /// Cgroup directories carrack created (and so removes), absolute.
    #[serde(default)]
    pub cgroup_created: Vec<String>,
    /// The pod's directory under the state dir (files, namespace pins, shm).
    #[serde(default)]
    pub pod_dir: String,
    /// Pinned network namespace, when the pod has its own.
    #[serde(default)]
    pub netns_path: Option<String>,
    /// Pinned IPC namespace, when the pod has its own.
    #[serde(default)]
    pub ipcns_path: Option<String>,
    /// Pinned UTS namespace, when the pod has its own.
    #[serde(default)]
    pub utsns_path: Option<String>,
    /// Pinned user namespace, when the pod has its own (`namespaces.user`); it owns the
    /// pod's network, IPC and UTS namespaces.
    #[serde(default)]
    pub userns_path: Option<String>,
    /// The pod's /dev/shm (a tmpfs mount), unless host IPC.
    #[serde(default)]
    pub shm_path: Option<String>,
    /// The pod's primary IP.
    #[serde(default)]
    pub ip: Option<String>,
    /// Further IPs (dual stack).
    #[serde(default)]
    pub additional_ips: Vec<String>,
    /// Whether CNI was set up and not yet torn down.
    #[serde(default)]
    pub network_attached: bool,
    /// Pid (host PID namespace) of the pod's `carrack pod-init`, the init of its shared PID
    /// namespace; 0 when the pod has none.
    #[serde(default)]
    pub pid_init: i32,
    /// The shared PID namespace its containers join (`/proc/<pid_init>/ns/pid`).
    #[serde(default)]
    pub pidns_path: Option<String>,
    /// Written by `RunPodSandbox` before the network is set up and cleared when the pod is
    /// ready: a record still `creating` at start-up belongs to a create the daemon died in,
    /// which recovery undoes so that kubelet's retry gets the name.
    #[serde(default)]
    pub creating: bool,
}

impl Record for PodRecord {
    const KIND: &'static str = "pod";
    const DIR: &'static str = "pods";
    const SCHEMA_VERSION: u32 = 1;
    fn id(&self) -> &str {
        &self.id
    }
    fn reserved_name(&self) -> Option<&str> {
        Some(&self.name_key)
    }
}

/// Container lifecycle state, as CRI defines it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContainerState {
    /// Created, not started.
    Created,
    /// Its process runs.
    Running,
    /// Its process ended.
    Exited,
    /// Its state could not be determined (e.g. an undo failed).
    Unknown,
}

/// A container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// 64-hex id.
    pub id: String,
    /// The pod it belongs to.
    pub pod_id: String,
    /// The registrar key `<name>_<pod name>_<namespace>_<pod uid>_<attempt>`.
    pub name_key: String,
    /// CRI metadata.
    pub metadata: ObjectMetadata,
    /// Image reference as requested.
    pub image_ref: String,
    /// Resolved image id (`sha256:…`).
    pub image_id: String,
    /// Current state.
    pub state: ContainerState,
    /// Creation time, nanoseconds since the epoch.
    pub created_at_ns: i64,
    /// Labels from the request.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Annotations from the request.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// The image as the request named it (`ImageSpec.image`).
    #[serde(default)]
    pub image_spec: String,
    /// The container's log file (the pod's log directory joined with the request's path);
    /// empty when the pod has no log directory.
    #[serde(default)]
    pub log_path: String,
    /// The log path as the request gave it (relative to the pod's log directory).
    #[serde(default)]
    pub log_path_relative: String,
    /// The container's cgroup (cgroupfs form).
    #[serde(default)]
    pub cgroup_path: String,
    /// The cgroup directories this container created (removed with it).
    #[serde(default)]
    pub cgroup_created: Vec<String>,
    /// Signal that stops it (the image's `StopSignal`, default SIGTERM).
    #[serde(default = "default_stop_signal")]
    pub stop_signal: i32,
    /// Allocate a tty.
    #[serde(default)]
    pub tty: bool,
    /// Keep stdin open.
    #[serde(default)]
    pub stdin: bool,
    /// Close stdin after the first attach.
    #[serde(default)]
    pub stdin_once: bool,
    /// The mounts the container got (for status).
    #[serde(default)]
    pub mounts: Vec<ContainerMount>,
    /// The process's uid, gid and supplemental groups (for status).
    #[serde(default)]
    pub user: Option<ContainerUser>,
    /// Start time, nanoseconds since the epoch (0: not started).
    #[serde(default)]
    pub started_at_ns: i64,
    /// End time, nanoseconds since the epoch (0: not ended).
    #[serde(default)]
    pub finished_at_ns: i64,
    /// Exit code (CRI form: 128 + signal when killed).
    #[serde(default)]
    pub exit_code: i32,
    /// `Completed`, `Error`, `OOMKilled` or `ContainerCannotRun`, once exited.
    #[serde(default)]
    pub reason: String,
    /// Human-readable detail for `reason`.
    #[serde(default)]
    pub message: String,
    /// The container's pid while it runs (host PID namespace).
    #[serde(default)]
    pub pid: i32,
    /// Its monitor's pid while it runs.
    #[serde(default)]
    pub monitor_pid: i32,
}

/// SIGTERM.
fn default_stop_signal() -> i32 {
    15
}

/// A mount as `ContainerStatus` reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerMount {
    /// Path in the container.
    pub container_path: String,
    /// Path on the host.
    pub host_path: String,
    /// Read-only.
    pub readonly: bool,
    /// `private`, `rslave` or `rshared`.
    pub propagation: String,
}

/// The identity a container's process runs with.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerUser {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplemental group ids.
    pub additional_gids: Vec<u32>,
}

impl Record for ContainerRecord {
    const KIND: &'static str = "container";
    const DIR: &'static str = "containers";
    const SCHEMA_VERSION: u32 = 1;
    fn id(&self) -> &str {
        &self.id
    }
    fn reserved_name(&self) -> Option<&str> {
        Some(&self.name_key)
    }
}

/// An image known to the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// Config digest, `sha256:<hex>`: the image id.
    pub id: String,
    /// `repo:tag` references pointing at it.
    #[serde(default)]
    pub repo_tags: Vec<String>,
    /// `repo@sha256:…` references pointing at it.
    #[serde(default)]
    pub repo_digests: Vec<String>,
    /// Unpacked size in bytes.
    #[serde(default)]
    pub size: u64,
    /// Digest of the platform manifest the layers came from.
    #[serde(default)]
    pub manifest_digest: String,
    /// Chain ids of the layers, bottom first: the snapshot directories it needs.
    #[serde(default)]
    pub chain_ids: Vec<String>,
    /// Numeric user of the config's `User`, when numeric.
    #[serde(default)]
    pub uid: Option<i64>,
    /// User name of the config's `User`, when not numeric.
    #[serde(default)]
    pub username: String,
    /// Pinned images are never garbage-collected by kubelet.
    #[serde(default)]
    pub pinned: bool,
    /// When the image was first pulled, nanoseconds since the epoch.
    #[serde(default)]
    pub created_at_ns: i64,
}

impl Record for ImageRecord {
    const KIND: &'static str = "image";
    const DIR: &'static str = "images";
    const SCHEMA_VERSION: u32 = 1;
    fn id(&self) -> &str {
        &self.id
    }
}

#[cfg(test)]
mod tests {
    use super::IdMapping;

    #[test]
    fn id_mapping_renders_a_map_line_and_translates_ids() {
        let mapping = IdMapping {
            container_id: 0,
            host_id: 1000,
            length: 100_000,
        };
        assert_eq!(mapping.map_file_line(), "0 1000 100000\n");
        assert_eq!(mapping.host_id_of(0), Some(1000));
        assert_eq!(mapping.host_id_of(99_999), Some(100_999));
        assert_eq!(mapping.host_id_of(100_000), None);
        let shifted = IdMapping {
            container_id: 10,
            host_id: u32::MAX - 1,
            length: 5,
        };
        assert_eq!(shifted.host_id_of(9), None);
        assert_eq!(shifted.host_id_of(11), Some(u32::MAX));
        assert_eq!(shifted.host_id_of(12), None, "overflow is not a mapping");
    }
}
