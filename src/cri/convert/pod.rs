//! Pod sandbox messages ↔ the sandbox service's request and record types.

use std::collections::{BTreeMap, HashMap};

use tonic::Status;

use super::{resources, userns};
use crate::proto;
use crate::sandbox::{PodFilter, PodSpec};
use crate::store::{
    DnsConfig, NamespaceMode, NamespaceModes, ObjectMetadata, PodRecord, PodState, PortMapping,
    Protocol,
};

/// Validates a `RunPodSandboxRequest` and turns it into a [`PodSpec`].
pub fn pod_spec(request: proto::RunPodSandboxRequest) -> Result<PodSpec, Status> {
    let config = request
        .config
        .ok_or_else(|| Status::invalid_argument("pod sandbox config is required"))?;
    let metadata = config
        .metadata
        .ok_or_else(|| Status::invalid_argument("pod sandbox metadata is required"))?;
    if metadata.name.is_empty() {
        return Err(Status::invalid_argument(
            "pod sandbox metadata.name is required",
        ));
    }
    for (what, value) in [
        ("name", &metadata.name),
        ("namespace", &metadata.namespace),
        ("uid", &metadata.uid),
    ] {
        // These become part of the registrar key and of log paths: no separators.
        if value.contains(['/', '\0', '\n']) {
            return Err(Status::invalid_argument(format!(
                "pod sandbox metadata.{what} {value:?} contains '/', NUL or newline"
            )));
        }
    }
    let linux = config.linux.unwrap_or_default();
    let security = linux.security_context.unwrap_or_default();
    let namespaces = security
        .namespace_options
        .map(|options| namespace_modes(&options))
        .transpose()?
        .unwrap_or_default();
    let port_mappings = config
        .port_mappings
        .iter()
        .map(port_mapping)
        .collect::<Result<Vec<_>, Status>>()?;
    Ok(PodSpec {
        metadata: ObjectMetadata {
            name: metadata.name,
            uid: metadata.uid,
            namespace: metadata.namespace,
            attempt: metadata.attempt,
        },
        hostname: config.hostname,
        log_directory: config.log_directory,
        dns: config.dns_config.map(|dns| DnsConfig {
            servers: dns.servers,
            searches: dns.searches,
            options: dns.options,
        }),
        port_mappings,
        labels: sorted(config.labels),
        annotations: sorted(config.annotations),
        cgroup_parent: linux.cgroup_parent,
        namespaces,
        sysctls: sorted(linux.sysctls),
        privileged: security.privileged,
        overhead: linux.overhead.as_ref().map(resources::from_proto),
        resources: linux.resources.as_ref().map(resources::from_proto),
        runtime_handler: request.runtime_handler,
    })
}

fn sorted(map: HashMap<String, String>) -> BTreeMap<String, String> {
    map.into_iter().collect()
}

fn namespace_mode(value: i32) -> Result<NamespaceMode, Status> {
    match proto::NamespaceMode::try_from(value) {
        Ok(proto::NamespaceMode::Pod) => Ok(NamespaceMode::Pod),
        Ok(proto::NamespaceMode::Container) => Ok(NamespaceMode::Container),
        Ok(proto::NamespaceMode::Node) => Ok(NamespaceMode::Node),
        Ok(proto::NamespaceMode::Target) => Ok(NamespaceMode::Target),
        Err(_) => Err(Status::invalid_argument(format!(
            "unknown namespace mode {value}"
        ))),
    }
}

/// Namespace options of a pod or container.
pub fn namespace_modes(options: &proto::NamespaceOption) -> Result<NamespaceModes, Status> {
    Ok(NamespaceModes {
        network: namespace_mode(options.network)?,
        pid: namespace_mode(options.pid)?,
        ipc: namespace_mode(options.ipc)?,
        target_id: options.target_id.clone(),
        user: userns::user_namespace(options.userns_options.as_ref())?,
    })
}

fn port_mapping(port: &proto::PortMapping) -> Result<PortMapping, Status> {
    let protocol = match proto::Protocol::try_from(port.protocol) {
        Ok(proto::Protocol::Tcp) => Protocol::Tcp,
        Ok(proto::Protocol::Udp) => Protocol::Udp,
        Ok(proto::Protocol::Sctp) => Protocol::Sctp,
        Err(_) => {
            return Err(Status::invalid_argument(format!(
                "unknown port mapping protocol {}",
                port.protocol
            )));
        }
    };
    let valid = |port: i32| (0..=65535).contains(&port);
    if !valid(port.container_port) || !valid(port.host_port) {
        return Err(Status::invalid_argument(format!(
            "port mapping {}:{} is out of range",
            port.host_port, port.container_port
        )));
    }
    if !port.host_ip.is_empty() && port.host_ip.parse::<std::net::IpAddr>().is_err() {
        return Err(Status::invalid_argument(format!(
            "port mapping host_ip {:?} is not an IP address",
            port.host_ip
        )));
    }
    Ok(PortMapping {
        protocol,
        container_port: port.container_port,
        host_port: port.host_port,
        host_ip: port.host_ip.clone(),
    })
}

fn proto_state(state: PodState) -> proto::PodSandboxState {
    match state {
        PodState::Ready => proto::PodSandboxState::SandboxReady,
        PodState::NotReady => proto::PodSandboxState::SandboxNotready,
    }
}

fn proto_metadata(metadata: &ObjectMetadata) -> proto::PodSandboxMetadata {
    proto::PodSandboxMetadata {
        name: metadata.name.clone(),
        uid: metadata.uid.clone(),
        namespace: metadata.namespace.clone(),
        attempt: metadata.attempt,
    }
}

fn proto_mode(mode: NamespaceMode) -> i32 {
    match mode {
        NamespaceMode::Pod => proto::NamespaceMode::Pod,
        NamespaceMode::Container => proto::NamespaceMode::Container,
        NamespaceMode::Node => proto::NamespaceMode::Node,
        NamespaceMode::Target => proto::NamespaceMode::Target,
    }
    .into()
}

fn labels(map: &BTreeMap<String, String>) -> HashMap<String, String> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// The CRI status of a pod record.
pub fn pod_status(pod: &PodRecord) -> proto::PodSandboxStatus {
    proto::PodSandboxStatus {
        id: pod.id.clone(),
        metadata: Some(proto_metadata(&pod.metadata)),
        state: proto_state(pod.state).into(),
        created_at: pod.created_at_ns,
        network: Some(proto::PodSandboxNetworkStatus {
            ip: pod.ip.clone().unwrap_or_default(),
            additional_ips: pod
                .additional_ips
                .iter()
                .map(|ip| proto::PodIp { ip: ip.clone() })
                .collect(),
        }),
        linux: Some(proto::LinuxPodSandboxStatus {
            namespaces: Some(proto::Namespace {
                options: Some(proto::NamespaceOption {
                    network: proto_mode(pod.namespaces.network),
                    pid: proto_mode(pod.namespaces.pid),
                    ipc: proto_mode(pod.namespaces.ipc),
                    target_id: pod.namespaces.target_id.clone(),
                    userns_options: Some(userns::to_proto(pod.namespaces.user.as_ref())),
                }),
            }),
        }),
        labels: labels(&pod.labels),
        annotations: labels(&pod.annotations),
        runtime_handler: pod.runtime_handler.clone(),
    }
}

/// The verbose `info` of `PodSandboxStatus`: where the pod's resources are.
pub fn pod_info(pod: &PodRecord) -> HashMap<String, String> {
    let info = serde_json::json!({
        "id": pod.id,
        "podDir": pod.pod_dir,
        "netns": pod.netns_path,
        "ipcns": pod.ipcns_path,
        "utsns": pod.utsns_path,
        "userns": pod.userns_path,
        "shm": pod.shm_path,
        "cgroupParent": pod.cgroup_parent,
        "cgroupPath": pod.cgroup_path,
        "hostname": pod.hostname,
        "networkAttached": pod.network_attached,
        "sysctls": pod.sysctls,
    });
    HashMap::from([("info".to_owned(), info.to_string())])
}

/// A `ListPodSandbox` item.
pub fn pod_item(pod: &PodRecord) -> proto::PodSandbox {
    proto::PodSandbox {
        id: pod.id.clone(),
        metadata: Some(proto_metadata(&pod.metadata)),
        state: proto_state(pod.state).into(),
        created_at: pod.created_at_ns,
        labels: labels(&pod.labels),
        annotations: labels(&pod.annotations),
        runtime_handler: pod.runtime_handler.clone(),
    }
}

/// The sandbox filter of a `ListPodSandbox` request.
pub fn pod_filter(filter: Option<proto::PodSandboxFilter>) -> PodFilter {
    let Some(filter) = filter else {
        return PodFilter::default();
    };
    PodFilter {
        id: (!filter.id.is_empty()).then_some(filter.id),
        state: filter.state.map(|state| {
            if state.state == proto::PodSandboxState::SandboxReady as i32 {
                PodState::Ready
            } else {
                PodState::NotReady
            }
        }),
        labels: sorted(filter.label_selector),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> proto::RunPodSandboxRequest {
        proto::RunPodSandboxRequest {
            config: Some(proto::PodSandboxConfig {
                metadata: Some(proto::PodSandboxMetadata {
                    name: "web".into(),
                    uid: "u1".into(),
                    namespace: "default".into(),
                    attempt: 2,
                }),
                port_mappings: vec![proto::PortMapping {
                    protocol: proto::Protocol::Udp.into(),
                    container_port: 53,
                    host_port: 5353,
                    host_ip: "127.0.0.1".into(),
                }],
                ..Default::default()
            }),
            runtime_handler: String::new(),
        }
    }

    #[test]
    fn converts_a_minimal_request() {
        let spec = pod_spec(request()).unwrap();
        assert_eq!(spec.metadata.attempt, 2);
        assert_eq!(spec.port_mappings[0].protocol, Protocol::Udp);
        assert_eq!(spec.namespaces.network, NamespaceMode::Pod);
    }

    #[test]
    fn refuses_missing_metadata_and_bad_ports() {
        let mut bad = request();
        bad.config.as_mut().unwrap().metadata = None;
        assert_eq!(
            pod_spec(bad).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        let mut bad = request();
        bad.config.as_mut().unwrap().port_mappings[0].host_port = 70000;
        assert_eq!(
            pod_spec(bad).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        let mut bad = request();
        bad.config.as_mut().unwrap().metadata.as_mut().unwrap().name = "a/b".into();
        assert_eq!(
            pod_spec(bad).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }

    #[test]
    fn pod_user_namespaces_are_passed_on() {
        let mapping = proto::IdMapping {
            host_id: 1000,
            container_id: 0,
            length: 100_000,
        };
        let mut req = request();
        req.config.as_mut().unwrap().linux = Some(proto::LinuxPodSandboxConfig {
            security_context: Some(proto::LinuxSandboxSecurityContext {
                namespace_options: Some(proto::NamespaceOption {
                    userns_options: Some(proto::UserNamespace {
                        mode: proto::NamespaceMode::Pod.into(),
                        uids: vec![mapping],
                        gids: vec![mapping],
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        let user = pod_spec(req).unwrap().namespaces.user.unwrap();
        assert_eq!((user.uid.host_id, user.gid.length), (1000, 100_000));
    }
}
