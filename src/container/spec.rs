//! CRI container config → OCI runtime spec, the way kubelet and containerd expect it.
//!
//! [`build_spec`] is pure: the request ([`ContainerSpecInput`], a plain mirror of what the CRI
//! container config carries), the image's config, the pod's record and the few host facts it
//! needs ([`HostInfo`]) come in as values, and the only files it reads are the container's
//! `/etc/passwd` and `/etc/group` (through the [`PasswdSource`] seam) and a `Localhost`
//! seccomp profile. The result is what `executor::launch` consumes.
//!
//! One file per concern:
//! - `process`: argv (entrypoint/cmd rules), environment, working directory;
//! - `user`: the user, primary group and supplemental groups, resolved in the rootfs;
//! - `capabilities`: containerd's default set, add/drop/`ALL`, privileged, capped by the host;
//! - `mounts`: the standard mounts, the pod's files and `/dev/shm`, the CRI mounts, masks;
//! - `devices`: CRI devices, the host's devices for privileged containers, device rules;
//! - `resources`: cgroup limits and `oom_score_adj`;
//! - `seccomp` and `seccomp_default`: profile selection, `Localhost` profile files, and our
//!   own `RuntimeDefault` profile.
//!
//! What the spec leaves to others: pod sysctls are applied to the pod's namespaces when the pod
//! starts (the container joins them, so they are not repeated); the hostname is the pod's UTS
//! namespace's; AppArmor and SELinux are not supported on the hosts carrack targets and are
//! ignored, as CRI allows when the host lacks them.

mod capabilities;
mod devices;
mod error;
mod mounts;
mod process;
mod resources;
mod seccomp;
mod seccomp_default;
mod user;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

use oci_spec::runtime::{Linux, LinuxNamespace, LinuxNamespaceType, Process, Root, Spec, User};

use crate::cgroups::Resources;
use crate::image_service::manifest::{ContainerDefaults, ImageConfig};
use crate::store::{NamespaceMode, PodRecord, UserNamespaceMappings};

pub use capabilities::{ALL_CAPABILITIES, DEFAULT_CAPABILITIES, capability_name, parse_cap_bnd};
pub use devices::{DeviceInfo, DeviceKind, host_devices};
pub use error::SpecError;
pub use mounts::{DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS};
pub use seccomp_default::runtime_default_profile;
pub use user::{PasswdFiles, PasswdSource, RootfsFiles};

/// The OCI runtime spec version the produced specs claim.
pub const OCI_VERSION: &str = "1.2.0";

/// What a `CreateContainer` request asks for, in domain terms (the `cri` layer fills it from the
/// proto; nothing here knows about prost). Empty strings and lists mean "not set", as in CRI.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerSpecInput {
    /// Overrides the image's `Entrypoint` (and then the image's `Cmd` is not used).
    pub command: Vec<String>,
    /// Overrides the image's `Cmd`.
    pub args: Vec<String>,
    /// Working directory; empty takes the image's, else `/`.
    pub working_dir: String,
    /// Environment, applied after the image's (a later key wins).
    pub envs: Vec<(String, String)>,
    /// Volumes (host paths) to mount.
    pub mounts: Vec<MountRequest>,
    /// Host devices to expose.
    pub devices: Vec<DeviceRequest>,
    /// cgroup limits (`None`/0 leave a setting unset, as in CRI).
    pub resources: Resources,
    /// `oom_score_adj` kubelet computed for the container (clamped, see [`HostInfo`]).
    pub oom_score_adj: i64,
    /// The Linux security context.
    pub security: SecurityContext,
    /// Allocate a terminal.
    pub tty: bool,
    /// Keep stdin open (handled by the monitor; recorded here for completeness).
    pub stdin: bool,
}

/// A CRI mount.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountRequest {
    /// Where it appears in the container (absolute).
    pub container_path: String,
    /// What is mounted there from the host (absolute).
    pub host_path: String,
    /// Mount read-only.
    pub readonly: bool,
    /// Propagation between host and container.
    pub propagation: MountPropagation,
    /// Make every submount read-only too (needs `readonly` and private propagation).
    pub recursive_read_only: bool,
    /// An image volume (CRI `Mount.image`): not supported, refused with a clear error.
    pub image: Option<String>,
    /// Idmap the mount with these mappings (CRI `uidMappings`/`gidMappings`): only the
    /// pod's own user namespace mappings can be used.
    pub id_mappings: Option<UserNamespaceMappings>,
}

/// CRI's `MountPropagation`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MountPropagation {
    /// No propagation either way (`rprivate`).
    #[default]
    Private,
    /// Host mounts appear in the container (`rslave`).
    HostToContainer,
    /// Both ways (`rshared`).
    Bidirectional,
}

/// A CRI device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceRequest {
    /// Path in the container.
    pub container_path: String,
    /// Device node (or directory of nodes) on the host.
    pub host_path: String,
    /// cgroup access: a combination of `r`, `w` and `m`.
    pub permissions: String,
}

/// The container's Linux security context.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecurityContext {
    /// Capabilities to add and drop.
    pub capabilities: CapabilityChanges,
    /// Privileged: every capability the host has, all devices, writable sysfs, no masks, no
    /// seccomp. Needs a privileged pod.
    pub privileged: bool,
    /// Which namespaces are shared with the pod or the node.
    pub namespaces: NamespaceOptions,
    /// UID to run as (overrides the image's user).
    pub run_as_user: Option<i64>,
    /// GID to run as; needs `run_as_user` or `run_as_username`.
    pub run_as_group: Option<i64>,
    /// User name to run as, resolved in the image's `/etc/passwd` (wins over `run_as_user`).
    pub run_as_username: String,
    /// Mount the rootfs (and the pod's hostname/hosts/resolv.conf files) read-only.
    pub readonly_rootfs: bool,
    /// Extra groups.
    pub supplemental_groups: Vec<i64>,
    /// Whether the image's `/etc/group` memberships are added.
    pub supplemental_groups_policy: SupplementalGroupsPolicy,
    /// Set `no_new_privs`.
    pub no_new_privs: bool,
    /// Paths to mask; `None` takes the defaults ([`DEFAULT_MASKED_PATHS`]), `Some` is used as is
    /// (kubelet's `Unmasked` proc mount sends an empty list). Ignored when privileged.
    pub masked_paths: Option<Vec<String>>,
    /// Paths to make read-only; `None` takes the defaults ([`DEFAULT_READONLY_PATHS`]).
    pub readonly_paths: Option<Vec<String>>,
    /// The seccomp profile (unset in CRI means unconfined). Ignored when privileged.
    pub seccomp: SeccompProfile,
}

/// Capability changes as CRI gives them: names with or without `CAP_`, any case, or `ALL`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapabilityChanges {
    /// Capabilities to add.
    pub add: Vec<String>,
    /// Capabilities to drop.
    pub drop: Vec<String>,
    /// Capabilities to add and raise in the ambient set (so that a non-root process keeps them
    /// across `execve`).
    pub add_ambient: Vec<String>,
}

/// The container's namespace options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamespaceOptions {
    /// `Node` for the host's network (and UTS) namespace; otherwise the pod's.
    pub network: NamespaceMode,
    /// `Node` for the host's PID namespace; `Container` a new one; `Pod` the pod's when
    /// [`pid_namespace_path`](Self::pid_namespace_path) names it (else a new one); `Target` the
    /// target container's, which `pid_namespace_path` must name.
    pub pid: NamespaceMode,
    /// `Node` for the host's IPC namespace (and `/dev/shm`); otherwise the pod's.
    pub ipc: NamespaceMode,
    /// The PID namespace to join for `Pod` and `Target` modes, resolved by the caller (for
    /// `Target`: `/proc/<target's pid>/ns/pid`).
    pub pid_namespace_path: Option<PathBuf>,
    /// The user namespace mappings the container asks for: none (it follows its pod) or
    /// exactly its pod's (a container cannot have a user namespace of its own).
    pub user: Option<UserNamespaceMappings>,
}

/// CRI's `SupplementalGroupsPolicy`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SupplementalGroupsPolicy {
    /// Add the groups the image's `/etc/group` lists the user in.
    #[default]
    Merge,
    /// Only the primary group and the requested supplemental groups.
    Strict,
}

/// Which seccomp filter the container gets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SeccompProfile {
    /// No filter.
    #[default]
    Unconfined,
    /// Carrack's default profile ([`runtime_default_profile`]).
    RuntimeDefault,
    /// A JSON profile file on the node (OCI or Docker format), by absolute path.
    Localhost(PathBuf),
}

impl SeccompProfile {
    /// The profile named by CRI's deprecated `seccomp_profile_path` string: empty or
    /// `unconfined`, `runtime/default` (or `docker/default`), or `localhost/<absolute path>`.
    pub fn from_legacy_path(value: &str) -> Result<SeccompProfile, SpecError> {
        match value {
            "" | "unconfined" => Ok(SeccompProfile::Unconfined),
            "runtime/default" | "docker/default" => Ok(SeccompProfile::RuntimeDefault),
            other => match other.strip_prefix("localhost/") {
                Some(path) if path.starts_with('/') => {
                    Ok(SeccompProfile::Localhost(PathBuf::from(path)))
                }
                Some(path) => Err(SpecError::RelativePath {
                    field: "security_context.seccomp_profile_path".to_owned(),
                    path: path.to_owned(),
                }),
                None => Err(SpecError::invalid(
                    "security_context.seccomp_profile_path",
                    format!("{other:?} is not unconfined, runtime/default or localhost/<path>"),
                )),
            },
        }
    }
}

/// Facts about the node that the spec depends on, gathered by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostInfo {
    /// The capabilities this runtime can hand out: its bounding set (bit n = capability n), as
    /// `/proc/self/status` `CapBnd` shows it ([`parse_cap_bnd`]). Nothing outside it is asked for.
    pub bounding_caps: u64,
    /// The container's cgroup path (recorded in `linux.cgroupsPath`).
    pub cgroup_path: String,
    /// The host's device nodes ([`host_devices`]): exposed to privileged containers, and where
    /// CRI devices are looked up.
    pub devices: Vec<DeviceInfo>,
    /// The node's hostname, for `HOSTNAME` when the pod has none.
    pub hostname: String,
    /// The lowest `oom_score_adj` the runtime may give: -1000 with `CAP_SYS_RESOURCE`, else its
    /// own current value (lowering it needs the capability).
    pub min_oom_score_adj: i32,
    /// The node's `/dev/shm`, bound into host-IPC containers as containerd and CRI-O do; `None`
    /// gives them a private tmpfs instead.
    pub host_shm: Option<PathBuf>,
}

impl Default for HostInfo {
    fn default() -> Self {
        HostInfo {
            bounding_caps: ALL_CAPABILITIES,
            cgroup_path: String::new(),
            devices: Vec::new(),
            hostname: String::new(),
            min_oom_score_adj: -1000,
            host_shm: None,
        }
    }
}

/// Builds the OCI runtime spec of a container.
///
/// `image` is the image's config (its `config` section gives the defaults), `pod` the record of
/// the pod it runs in, `rootfs_files` reads the container rootfs's `/etc/passwd` and
/// `/etc/group`, and `host` the node facts. The spec's `root.path` is `rootfs`: the executor
/// is handed the real rootfs path beside the spec.
pub fn build_spec(
    input: &ContainerSpecInput,
    image: &ImageConfig,
    pod: &PodRecord,
    rootfs_files: &dyn PasswdSource,
    host: &HostInfo,
) -> Result<Spec, SpecError> {
    let security = &input.security;
    if security.privileged && !pod.privileged {
        return Err(SpecError::PrivilegedNotAllowed {
            pod_id: pod.id.clone(),
        });
    }
    if security.privileged && pod.namespaces.user.is_some() {
        // The host's devices and a writable /sys are the host's root's to hand out, not a
        // user namespace's (Kubernetes refuses privileged with hostUsers: false too).
        return Err(SpecError::invalid(
            "security_context.privileged",
            "a privileged container cannot run in a pod user namespace",
        ));
    }
    let defaults = image.config.clone().unwrap_or_default();

    let args = process::argv(&input.command, &input.args, &defaults)?;
    let hostname = if pod.hostname.is_empty() {
        host.hostname.as_str()
    } else {
        pod.hostname.as_str()
    };
    let env = process::environment(&defaults, &input.envs, hostname, input.tty)?;
    let cwd = process::working_dir(&input.working_dir, &defaults)?;
    let user = resolve_user(security, &defaults, rootfs_files)?;
    let caps = capabilities::effective_set(security, host.bounding_caps)?;
    let seccomp = if security.privileged {
        None
    } else {
        seccomp::select(&security.seccomp, caps.granted)?
    };
    let mount_plan = mounts::build(input, pod, host)?;
    let (devices, device_rules) = devices::build(input, host)?;

    let mut process = Process::default();
    process
        .set_terminal(Some(input.tty))
        .set_console_size(None)
        .set_user(user)
        .set_args(Some(args))
        .set_command_line(None)
        .set_env(Some(env))
        .set_cwd(cwd)
        .set_capabilities(Some(caps.to_oci()))
        .set_rlimits(None)
        .set_no_new_privileges(Some(security.no_new_privs))
        .set_apparmor_profile(None)
        .set_oom_score_adj(Some(resources::oom_score_adj(
            input.oom_score_adj,
            host.min_oom_score_adj,
        )))
        .set_selinux_label(None)
        .set_io_priority(None)
        .set_scheduler(None)
        .set_exec_cpu_affinity(None);

    let mut root = Root::default();
    root.set_path(PathBuf::from("rootfs"))
        .set_readonly(Some(security.readonly_rootfs));

    let (uid_mappings, gid_mappings) = match &pod.namespaces.user {
        Some(mappings) => (
            Some(vec![oci_id_mapping(&mappings.uid)]),
            Some(vec![oci_id_mapping(&mappings.gid)]),
        ),
        None => (None, None),
    };
    let mut linux = Linux::default();
    linux
        .set_net_devices(None)
        .set_uid_mappings(uid_mappings)
        .set_gid_mappings(gid_mappings)
        .set_sysctl(None)
        .set_resources(Some(resources::linux_resources(
            &input.resources,
            device_rules,
        )))
        .set_cgroups_path((!host.cgroup_path.is_empty()).then(|| PathBuf::from(&host.cgroup_path)))
        .set_namespaces(Some(namespaces(&security.namespaces, pod)?))
        .set_devices((!devices.is_empty()).then_some(devices))
        .set_seccomp(seccomp)
        .set_rootfs_propagation(mount_plan.rootfs_propagation)
        .set_masked_paths(Some(mount_plan.masked_paths))
        .set_readonly_paths(Some(mount_plan.readonly_paths))
        .set_mount_label(None)
        .set_intel_rdt(None)
        .set_memory_policy(None)
        .set_personality(None)
        .set_time_offsets(None);

    let mut spec = Spec::default();
    spec.set_version(OCI_VERSION.to_owned())
        .set_root(Some(root))
        .set_mounts(Some(mount_plan.mounts))
        .set_process(Some(process))
        .set_hostname(None)
        .set_domainname(None)
        .set_hooks(None)
        .set_annotations(None)
        .set_linux(Some(linux))
        .set_solaris(None)
        .set_windows(None)
        .set_vm(None)
        .set_zos(None)
        .set_uid_mappings(None)
        .set_gid_mappings(None);
    Ok(spec)
}

/// One id range as the OCI spec writes it.
pub(super) fn oci_id_mapping(
    mapping: &crate::store::IdMapping,
) -> oci_spec::runtime::LinuxIdMapping {
    oci_spec::runtime::LinuxIdMappingBuilder::default()
        .container_id(mapping.container_id)
        .host_id(mapping.host_id)
        .size(mapping.length)
        .build()
        // Every field is set above; the builder cannot refuse.
        .unwrap_or_default()
}

/// The process user: the CRI user, else the image's, resolved in the rootfs.
fn resolve_user(
    security: &SecurityContext,
    defaults: &ContainerDefaults,
    rootfs_files: &dyn PasswdSource,
) -> Result<User, SpecError> {
    let request = user::UserRequest::new(security, defaults.user.as_deref().unwrap_or(""))?;
    let supplemental = security
        .supplemental_groups
        .iter()
        .enumerate()
        .map(|(at, gid)| user::id(*gid, &format!("security_context.supplemental_groups[{at}]")))
        .collect::<Result<Vec<_>, _>>()?;
    let resolved = user::resolve(
        &request,
        &supplemental,
        security.supplemental_groups_policy,
        rootfs_files,
    )?;
    let mut oci = User::default();
    oci.set_uid(resolved.uid)
        .set_gid(resolved.gid)
        .set_umask(None)
        .set_additional_gids(Some(resolved.additional_gids))
        .set_username(None);
    Ok(oci)
}

/// The namespaces, in the order containerd lists them: PID, network, IPC, UTS, mount, cgroup.
/// A namespace not listed is the host's.
fn namespaces(
    options: &NamespaceOptions,
    pod: &PodRecord,
) -> Result<Vec<LinuxNamespace>, SpecError> {
    let entry = |typ: LinuxNamespaceType, path: Option<PathBuf>| {
        let mut ns = LinuxNamespace::default();
        ns.set_typ(typ).set_path(path);
        ns
    };
    let pin = |path: &Option<String>, namespace: &'static str| {
        path.as_ref()
            .filter(|path| !path.is_empty())
            .map(PathBuf::from)
            .ok_or_else(|| SpecError::PodNamespaceMissing {
                pod_id: pod.id.clone(),
                namespace,
            })
    };
    if options.user.is_some() && options.user != pod.namespaces.user {
        return Err(SpecError::invalid(
            "security_context.namespace_options.userns_options",
            "a container can only be in its pod's user namespace, with its pod's mappings",
        ));
    }
    let mut list = Vec::new();
    // Joined by path: the pod's, which owns the pod's network, IPC and UTS namespaces.
    if pod.namespaces.user.is_some() {
        list.push(entry(
            LinuxNamespaceType::User,
            Some(pin(&pod.userns_path, "user")?),
        ));
    }
    match options.pid {
        NamespaceMode::Node => {}
        NamespaceMode::Container => list.push(entry(LinuxNamespaceType::Pid, None)),
        NamespaceMode::Pod => list.push(entry(
            LinuxNamespaceType::Pid,
            options.pid_namespace_path.clone(),
        )),
        NamespaceMode::Target => {
            let path = options.pid_namespace_path.clone().ok_or_else(|| {
                SpecError::invalid(
                    "security_context.namespace_options.target_id",
                    "the target container's PID namespace is not known",
                )
            })?;
            list.push(entry(LinuxNamespaceType::Pid, Some(path)));
        }
    }
    // The UTS namespace follows the network one, as in kubelet's model: host network means
    // the host's hostname.
    if options.network != NamespaceMode::Node {
        list.push(entry(
            LinuxNamespaceType::Network,
            Some(pin(&pod.netns_path, "network")?),
        ));
    }
    if options.ipc != NamespaceMode::Node {
        list.push(entry(
            LinuxNamespaceType::Ipc,
            Some(pin(&pod.ipcns_path, "ipc")?),
        ));
    }
    if options.network != NamespaceMode::Node {
        list.push(entry(
            LinuxNamespaceType::Uts,
            Some(pin(&pod.utsns_path, "uts")?),
        ));
    }
    list.push(entry(LinuxNamespaceType::Mount, None));
    list.push(entry(LinuxNamespaceType::Cgroup, None));
    Ok(list)
}
