//! Container messages ↔ the container service's request, record and usage types.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use tonic::Status;

use super::pod::namespace_modes;
use super::resources;
use crate::cgroups::Resources;
use crate::container::spec::{
    CapabilityChanges, ContainerSpecInput, DeviceRequest, MountPropagation, MountRequest,
    NamespaceOptions, SeccompProfile, SecurityContext, SupplementalGroupsPolicy,
};
use crate::container::{ContainerFilter, ContainerUsage, ContainerView, CreateRequest};
use crate::proto;
use crate::store::{ContainerRecord, ContainerState, ObjectMetadata};

/// Validates a `CreateContainerRequest` and turns it into a [`CreateRequest`].
pub fn create_request(request: proto::CreateContainerRequest) -> Result<CreateRequest, Status> {
    let config = request
        .config
        .ok_or_else(|| Status::invalid_argument("container config is required"))?;
    let metadata = config
        .metadata
        .ok_or_else(|| Status::invalid_argument("container metadata is required"))?;
    let image = config
        .image
        .ok_or_else(|| Status::invalid_argument("container image is required"))?;
    if !config.cdi_devices.is_empty() {
        return Err(Status::unimplemented(
            "CDI devices are not supported by carrack yet",
        ));
    }
    let linux = config.linux.unwrap_or_default();
    let security = linux.security_context.unwrap_or_default();
    let namespaces = security
        .namespace_options
        .as_ref()
        .map(namespace_modes)
        .transpose()?
        .unwrap_or_default();
    let target_id = (namespaces.pid == crate::store::NamespaceMode::Target)
        .then(|| namespaces.target_id.clone());
    let mounts = config
        .mounts
        .iter()
        .map(mount_request)
        .collect::<Result<Vec<_>, Status>>()?;
    let seccomp = match &security.seccomp {
        Some(profile) => security_profile(profile)?,
        #[allow(deprecated)]
        None => SeccompProfile::from_legacy_path(&security.seccomp_profile_path)
            .map_err(|err| Status::invalid_argument(err.to_string()))?,
    };
    let capabilities = security.capabilities.unwrap_or_default();
    let (masked_paths, readonly_paths) = proc_paths(
        security.masked_paths,
        security.readonly_paths,
        namespaces.user.is_some(),
    );
    let envs = config
        .envs
        .into_iter()
        .map(|kv| match String::from_utf8(kv.value) {
            Ok(value) => Ok((kv.key, value)),
            Err(_) => Err(Status::invalid_argument(format!(
                "envs: the value of {:?} is not UTF-8",
                kv.key
            ))),
        })
        .collect::<Result<Vec<_>, Status>>()?;
    let spec = ContainerSpecInput {
        command: config.command,
        args: config.args,
        working_dir: config.working_dir,
        envs,
        mounts,
        devices: config
            .devices
            .into_iter()
            .map(|device| DeviceRequest {
                container_path: device.container_path,
                host_path: device.host_path,
                permissions: device.permissions,
            })
            .collect(),
        resources: linux
            .resources
            .as_ref()
            .map(resources::from_proto)
            .unwrap_or_default(),
        oom_score_adj: linux
            .resources
            .as_ref()
            .map_or(0, |resources| resources.oom_score_adj),
        security: SecurityContext {
            capabilities: CapabilityChanges {
                add: capabilities.add_capabilities,
                drop: capabilities.drop_capabilities,
                add_ambient: capabilities.add_ambient_capabilities,
            },
            privileged: security.privileged,
            namespaces: NamespaceOptions {
                network: namespaces.network,
                pid: namespaces.pid,
                ipc: namespaces.ipc,
                pid_namespace_path: None,
                user: namespaces.user,
            },
            run_as_user: security.run_as_user.map(|value| value.value),
            run_as_group: security.run_as_group.map(|value| value.value),
            run_as_username: security.run_as_username,
            readonly_rootfs: security.readonly_rootfs,
            supplemental_groups: security.supplemental_groups,
            supplemental_groups_policy: if security.supplemental_groups_policy
                == proto::SupplementalGroupsPolicy::Strict as i32
            {
                SupplementalGroupsPolicy::Strict
            } else {
                SupplementalGroupsPolicy::Merge
            },
            no_new_privs: security.no_new_privs,
            masked_paths,
            readonly_paths,
            seccomp,
        },
        tty: config.tty,
        stdin: config.stdin,
    };
    let stop_signal = match proto::Signal::try_from(config.stop_signal) {
        Ok(proto::Signal::RuntimeDefault) | Err(_) => None,
        Ok(signal) => crate::container::parse_signal(signal.as_str_name()),
    };
    Ok(CreateRequest {
        pod_id: request.pod_sandbox_id,
        metadata: ObjectMetadata {
            name: metadata.name,
            uid: String::new(),
            namespace: String::new(),
            attempt: metadata.attempt,
        },
        image: image.image,
        spec,
        log_path: config.log_path,
        stdin: config.stdin,
        stdin_once: config.stdin_once,
        labels: config.labels.into_iter().collect(),
        annotations: config.annotations.into_iter().collect(),
        stop_signal,
        pid_target_id: target_id,
    })
}

fn mount_request(mount: &proto::Mount) -> Result<MountRequest, Status> {
    let id_mappings = super::userns::mount_mappings(&mount.uid_mappings, &mount.gid_mappings)?;
    let propagation = match proto::MountPropagation::try_from(mount.propagation) {
        Ok(proto::MountPropagation::PropagationPrivate) => MountPropagation::Private,
        Ok(proto::MountPropagation::PropagationHostToContainer) => {
            MountPropagation::HostToContainer
        }
        Ok(proto::MountPropagation::PropagationBidirectional) => MountPropagation::Bidirectional,
        Err(_) => {
            return Err(Status::invalid_argument(format!(
                "mount {:?}: unknown propagation {}",
                mount.container_path, mount.propagation
            )));
        }
    };
    Ok(MountRequest {
        container_path: mount.container_path.clone(),
        host_path: mount.host_path.clone(),
        readonly: mount.readonly,
        propagation,
        recursive_read_only: mount.recursive_read_only,
        image: mount
            .image
            .as_ref()
            .map(|image| image.image.clone())
            .filter(|image| !image.is_empty()),
        id_mappings,
    })
}

fn security_profile(profile: &proto::SecurityProfile) -> Result<SeccompProfile, Status> {
    use proto::security_profile::ProfileType;
    match ProfileType::try_from(profile.profile_type) {
        Ok(ProfileType::RuntimeDefault) => Ok(SeccompProfile::RuntimeDefault),
        Ok(ProfileType::Unconfined) => Ok(SeccompProfile::Unconfined),
        Ok(ProfileType::Localhost) => {
            let path = PathBuf::from(&profile.localhost_ref);
            if !path.is_absolute() {
                return Err(Status::invalid_argument(format!(
                    "seccomp localhost_ref {:?} is not an absolute path",
                    profile.localhost_ref
                )));
            }
            Ok(SeccompProfile::Localhost(path))
        }
        Err(_) => Err(Status::invalid_argument(format!(
            "unknown seccomp profile type {}",
            profile.profile_type
        ))),
    }
}

fn proto_state(state: ContainerState) -> i32 {
    match state {
        ContainerState::Created => proto::ContainerState::ContainerCreated,
        ContainerState::Running => proto::ContainerState::ContainerRunning,
        ContainerState::Exited => proto::ContainerState::ContainerExited,
        ContainerState::Unknown => proto::ContainerState::ContainerUnknown,
    }
    .into()
}

fn proto_metadata(metadata: &ObjectMetadata) -> proto::ContainerMetadata {
    proto::ContainerMetadata {
        name: metadata.name.clone(),
        attempt: metadata.attempt,
    }
}

fn map(map: &BTreeMap<String, String>) -> HashMap<String, String> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn image_spec(container: &ContainerRecord) -> proto::ImageSpec {
    proto::ImageSpec {
        image: container.image_spec.clone(),
        user_specified_image: container.image_spec.clone(),
        ..Default::default()
    }
}

/// The `ListContainers` item of a record.
pub fn container_item(container: &ContainerRecord) -> proto::Container {
    proto::Container {
        id: container.id.clone(),
        pod_sandbox_id: container.pod_id.clone(),
        metadata: Some(proto_metadata(&container.metadata)),
        image: Some(image_spec(container)),
        image_ref: container.image_ref.clone(),
        state: proto_state(container.state),
        created_at: container.created_at_ns,
        labels: map(&container.labels),
        annotations: map(&container.annotations),
        image_id: container.image_id.clone(),
    }
}

/// The CRI status of a container.
pub fn container_status(view: &ContainerView) -> proto::ContainerStatus {
    let container = &view.record;
    let propagation = |name: &str| match name {
        "rslave" => proto::MountPropagation::PropagationHostToContainer,
        "rshared" => proto::MountPropagation::PropagationBidirectional,
        _ => proto::MountPropagation::PropagationPrivate,
    };
    proto::ContainerStatus {
        id: container.id.clone(),
        metadata: Some(proto_metadata(&container.metadata)),
        state: proto_state(container.state),
        created_at: container.created_at_ns,
        started_at: container.started_at_ns,
        finished_at: container.finished_at_ns,
        exit_code: container.exit_code,
        image: Some(image_spec(container)),
        image_ref: container.image_ref.clone(),
        reason: container.reason.clone(),
        message: container.message.clone(),
        labels: map(&container.labels),
        annotations: map(&container.annotations),
        mounts: container
            .mounts
            .iter()
            .map(|mount| proto::Mount {
                container_path: mount.container_path.clone(),
                host_path: mount.host_path.clone(),
                readonly: mount.readonly,
                propagation: propagation(&mount.propagation).into(),
                ..Default::default()
            })
            .collect(),
        log_path: container.log_path.clone(),
        resources: view
            .resources
            .as_ref()
            .map(|resources| proto::ContainerResources {
                linux: Some(resources_to_proto(resources)),
                windows: None,
            }),
        image_id: container.image_id.clone(),
        user: container.user.as_ref().map(|user| proto::ContainerUser {
            linux: Some(proto::LinuxContainerUser {
                uid: user.uid.into(),
                gid: user.gid.into(),
                supplemental_groups: user.additional_gids.iter().map(|&g| g.into()).collect(),
            }),
        }),
        stop_signal: signal_to_proto(container.stop_signal),
    }
}

/// Verbose `ContainerStatus` info: pid and spec, as JSON under `info`.
pub fn container_info(view: &ContainerView) -> HashMap<String, String> {
    let spec: serde_json::Value = view
        .spec_json
        .as_deref()
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or(serde_json::Value::Null);
    let info = serde_json::json!({
        "pid": view.record.pid,
        "monitorPid": view.record.monitor_pid,
        "sandboxID": view.record.pod_id,
        "cgroupPath": view.record.cgroup_path,
        "runtimeSpec": spec,
    });
    HashMap::from([("info".to_owned(), info.to_string())])
}

fn resources_to_proto(resources: &Resources) -> proto::LinuxContainerResources {
    proto::LinuxContainerResources {
        cpu_period: resources.cpu_period.map_or(0, |v| v as i64),
        cpu_quota: resources.cpu_quota.unwrap_or(0),
        cpu_shares: resources.cpu_shares.map_or(0, |v| v as i64),
        memory_limit_in_bytes: resources.memory_limit.unwrap_or(0),
        cpuset_cpus: resources.cpuset_cpus.clone().unwrap_or_default(),
        cpuset_mems: resources.cpuset_mems.clone().unwrap_or_default(),
        hugepage_limits: resources
            .hugepage_limits
            .iter()
            .map(|(page_size, limit)| proto::HugepageLimit {
                page_size: page_size.clone(),
                limit: *limit,
            })
            .collect(),
        unified: resources
            .unified
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        memory_swap_limit_in_bytes: resources.memory_swap_limit.unwrap_or(0),
        ..Default::default()
    }
}

fn signal_to_proto(signal: i32) -> i32 {
    let name = match signal {
        libc::SIGTERM => "SIGTERM",
        libc::SIGKILL => "SIGKILL",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGINT => "SIGINT",
        libc::SIGHUP => "SIGHUP",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGWINCH => "SIGWINCH",
        libc::SIGSTOP => "SIGSTOP",
        _ => return proto::Signal::RuntimeDefault.into(),
    };
    proto::Signal::from_str_name(name).map_or(0, Into::into)
}

/// A `ListContainers` filter.
pub fn container_filter(filter: Option<proto::ContainerFilter>) -> ContainerFilter {
    let Some(filter) = filter else {
        return ContainerFilter::default();
    };
    ContainerFilter {
        id: Some(filter.id).filter(|id| !id.is_empty()),
        state: filter
            .state
            .and_then(|value| match proto::ContainerState::try_from(value.state) {
                Ok(proto::ContainerState::ContainerCreated) => Some(ContainerState::Created),
                Ok(proto::ContainerState::ContainerRunning) => Some(ContainerState::Running),
                Ok(proto::ContainerState::ContainerExited) => Some(ContainerState::Exited),
                Ok(proto::ContainerState::ContainerUnknown) => Some(ContainerState::Unknown),
                Err(_) => None,
            }),
        pod_id: Some(filter.pod_sandbox_id).filter(|id| !id.is_empty()),
        labels: filter.label_selector.into_iter().collect(),
    }
}

/// `UpdateContainerResources`' resources.
pub fn update_resources(request: &proto::UpdateContainerResourcesRequest) -> Resources {
    request
        .linux
        .as_ref()
        .map(resources::from_proto)
        .unwrap_or_default()
}

/// The CRI stats of a container.
pub fn container_stats(
    container: &ContainerRecord,
    usage: &ContainerUsage,
    mountpoint: &str,
) -> proto::ContainerStats {
    let ts = usage.timestamp_ns;
    proto::ContainerStats {
        attributes: Some(proto::ContainerAttributes {
            id: container.id.clone(),
            metadata: Some(proto_metadata(&container.metadata)),
            labels: map(&container.labels),
            annotations: map(&container.annotations),
        }),
        cpu: Some(cpu_usage(ts, &usage.cgroup, usage.cpu_nano_cores)),
        memory: Some(memory_usage(ts, &usage.cgroup)),
        writable_layer: Some(proto::FilesystemUsage {
            timestamp: ts,
            fs_id: Some(proto::FilesystemIdentifier {
                mountpoint: mountpoint.to_owned(),
            }),
            used_bytes: Some(proto::UInt64Value {
                value: usage.writable_layer.bytes,
            }),
            inodes_used: Some(proto::UInt64Value {
                value: usage.writable_layer.inodes,
            }),
        }),
        swap: None,
        io: None,
    }
}

/// A pod's CRI stats from its usage and its containers' stats.
pub fn pod_stats(
    pod: &crate::store::PodRecord,
    usage: Option<&crate::sandbox::PodUsage>,
    containers: Vec<proto::ContainerStats>,
) -> proto::PodSandboxStats {
    let value = uint64;
    let attributes = proto::PodSandboxAttributes {
        id: pod.id.clone(),
        metadata: Some(proto::PodSandboxMetadata {
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
            namespace: pod.metadata.namespace.clone(),
            attempt: pod.metadata.attempt,
        }),
        labels: map(&pod.labels),
        annotations: map(&pod.annotations),
    };
    let linux = usage.map(|usage| {
        let ts = usage.timestamp_ns;
        let interfaces: Vec<proto::NetworkInterfaceUsage> = usage
            .interfaces
            .iter()
            .map(|interface| proto::NetworkInterfaceUsage {
                name: interface.name.clone(),
                rx_bytes: value(Some(interface.rx_bytes)),
                rx_errors: value(Some(interface.rx_errors)),
                tx_bytes: value(Some(interface.tx_bytes)),
                tx_errors: value(Some(interface.tx_errors)),
            })
            .collect();
        let default_interface = interfaces
            .iter()
            .find(|interface| interface.name == "eth0")
            .or(interfaces.first())
            .cloned();
        proto::LinuxPodSandboxStats {
            cpu: Some(cpu_usage(ts, &usage.cgroup, None)),
            memory: Some(memory_usage(ts, &usage.cgroup)),
            network: Some(proto::NetworkUsage {
                timestamp: ts,
                default_interface,
                interfaces,
            }),
            process: Some(proto::ProcessUsage {
                timestamp: ts,
                process_count: value(usage.cgroup.pids_current),
            }),
            containers,
            io: None,
        }
    });
    proto::PodSandboxStats {
        attributes: Some(attributes),
        linux,
        windows: None,
    }
}

fn uint64(value: Option<u64>) -> Option<proto::UInt64Value> {
    value.map(|value| proto::UInt64Value { value })
}

/// CPU figures of a cgroup, for container and pod stats.
fn cpu_usage(
    timestamp: i64,
    cgroup: &crate::cgroups::CgroupStats,
    nano_cores: Option<u64>,
) -> proto::CpuUsage {
    proto::CpuUsage {
        timestamp,
        usage_core_nano_seconds: uint64(cgroup.cpu_usage_ns),
        usage_nano_cores: uint64(nano_cores),
        psi: None,
    }
}

/// Memory figures of a cgroup, for container and pod stats.
fn memory_usage(timestamp: i64, cgroup: &crate::cgroups::CgroupStats) -> proto::MemoryUsage {
    proto::MemoryUsage {
        timestamp,
        working_set_bytes: uint64(cgroup.memory_working_set_bytes),
        available_bytes: None,
        usage_bytes: uint64(cgroup.memory_usage_bytes),
        rss_bytes: uint64(cgroup.memory_rss_bytes),
        page_faults: uint64(cgroup.page_faults),
        major_page_faults: uint64(cgroup.major_page_faults),
        psi: None,
    }
}

/// The masked and read-only paths to use: `None` takes the defaults.
///
/// kubelet sends the default lists itself for the `Default` proc mount, and empty lists for
/// `Unmasked`, which it allows only in a pod with its own user namespace. So: lists sent are
/// used as sent; empty lists in a user-namespaced container are `Unmasked`; a client that
/// sends nothing otherwise (crictl, critest) gets the defaults, as with containerd.
fn proc_paths(
    masked: Vec<String>,
    readonly: Vec<String>,
    user_namespaced: bool,
) -> (Option<Vec<String>>, Option<Vec<String>>) {
    let as_sent = user_namespaced || !masked.is_empty() || !readonly.is_empty();
    (as_sent.then_some(masked), as_sent.then_some(readonly))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_proc_paths_are_unmasked_only_in_a_user_namespace() {
        assert_eq!(proc_paths(Vec::new(), Vec::new(), false), (None, None));
        assert_eq!(
            proc_paths(Vec::new(), Vec::new(), true),
            (Some(Vec::new()), Some(Vec::new()))
        );
        let masked = vec!["/proc/kcore".to_owned()];
        assert_eq!(
            proc_paths(masked.clone(), Vec::new(), false),
            (Some(masked), Some(Vec::new()))
        );
    }
}
