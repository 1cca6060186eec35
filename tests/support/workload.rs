//! CRI steps the root tests share: pull the busybox test image, run a host-network pod, and
//! create, start, inspect, stop and remove busybox containers in it. Each panics with the
//! RPC's name when a step that must succeed fails.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use carrack::proto;

use super::client::CriClient;
use super::images;
use super::node::Node;

/// The name the busybox test image is pulled as.
pub const BUSYBOX: &str = "busybox";

/// Pulls the busybox image (pushed to the node's registry first).
pub async fn pull_busybox(node: &Node, cri: &mut CriClient) {
    node.push(images::busybox(), "library/busybox:latest")
        .expect("push busybox");
    cri.image
        .pull_image(proto::PullImageRequest {
            image: Some(proto::ImageSpec {
                image: BUSYBOX.to_owned(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("PullImage");
}

/// Runs a host-network pod logging to `<node>/pod-logs/<name>`.
pub async fn run_pod(
    node: &Node,
    cri: &mut CriClient,
    name: &str,
) -> (String, proto::PodSandboxConfig) {
    run_pod_with(node, cri, name, proto::NamespaceMode::Container).await
}

/// Like [`run_pod`], with the pod's PID namespace mode.
pub async fn run_pod_with(
    node: &Node,
    cri: &mut CriClient,
    name: &str,
    pid: proto::NamespaceMode,
) -> (String, proto::PodSandboxConfig) {
    let config = pod_config(node, name, pid);
    (run_pod_config(cri, &config).await, config)
}

/// Like [`run_pod`], for a privileged pod (its containers may be privileged).
#[allow(dead_code)]
pub async fn run_privileged_pod(
    node: &Node,
    cri: &mut CriClient,
    name: &str,
) -> (String, proto::PodSandboxConfig) {
    let mut config = pod_config(node, name, proto::NamespaceMode::Container);
    if let Some(security) = config
        .linux
        .as_mut()
        .and_then(|linux| linux.security_context.as_mut())
    {
        security.privileged = true;
    }
    (run_pod_config(cri, &config).await, config)
}

/// The config [`run_pod_with`] runs.
fn pod_config(node: &Node, name: &str, pid: proto::NamespaceMode) -> proto::PodSandboxConfig {
    let log_directory = node.base_dir().join("pod-logs").join(name);
    proto::PodSandboxConfig {
        metadata: Some(proto::PodSandboxMetadata {
            name: name.to_owned(),
            uid: format!("uid-{name}"),
            namespace: "default".to_owned(),
            attempt: 0,
        }),
        hostname: name.to_owned(),
        log_directory: log_directory.to_string_lossy().into_owned(),
        linux: Some(proto::LinuxPodSandboxConfig {
            security_context: Some(proto::LinuxSandboxSecurityContext {
                namespace_options: Some(proto::NamespaceOption {
                    network: proto::NamespaceMode::Node.into(),
                    pid: pid.into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `RunPodSandbox` with `config`; returns the pod's id.
async fn run_pod_config(cri: &mut CriClient, config: &proto::PodSandboxConfig) -> String {
    cri.runtime
        .run_pod_sandbox(proto::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .expect("RunPodSandbox")
        .into_inner()
        .pod_sandbox_id
}

/// A busybox container `name` running `command`, logging to `<name>/0.log` in the pod's
/// log directory, labelled `container=<name>`.
pub fn container_config(name: &str, command: &[&str]) -> proto::ContainerConfig {
    proto::ContainerConfig {
        metadata: Some(proto::ContainerMetadata {
            name: name.to_owned(),
            attempt: 0,
        }),
        image: Some(proto::ImageSpec {
            image: BUSYBOX.to_owned(),
            ..Default::default()
        }),
        command: command.iter().map(|s| (*s).to_owned()).collect(),
        log_path: format!("{name}/0.log"),
        labels: HashMap::from([("container".to_owned(), name.to_owned())]),
        linux: Some(proto::LinuxContainerConfig::default()),
        ..Default::default()
    }
}

/// `CreateContainer` in the pod; the error is the caller's to judge.
pub async fn create(
    cri: &mut CriClient,
    pod_id: &str,
    pod_config: &proto::PodSandboxConfig,
    config: proto::ContainerConfig,
) -> Result<String, tonic::Status> {
    cri.runtime
        .create_container(proto::CreateContainerRequest {
            pod_sandbox_id: pod_id.to_owned(),
            config: Some(config),
            sandbox_config: Some(pod_config.clone()),
        })
        .await
        .map(|reply| reply.into_inner().container_id)
}

/// `StartContainer`; the error is the caller's to judge.
pub async fn start(cri: &mut CriClient, id: &str) -> Result<(), tonic::Status> {
    cri.runtime
        .start_container(proto::StartContainerRequest {
            container_id: id.to_owned(),
        })
        .await
        .map(drop)
}

/// `ContainerStatus` (non-verbose).
pub async fn status(cri: &mut CriClient, id: &str) -> proto::ContainerStatus {
    cri.runtime
        .container_status(proto::ContainerStatusRequest {
            container_id: id.to_owned(),
            verbose: false,
        })
        .await
        .expect("ContainerStatus")
        .into_inner()
        .status
        .expect("status")
}

/// Waits (up to 20 s) until the container has exited and returns its status.
pub async fn wait_exited(cri: &mut CriClient, id: &str) -> proto::ContainerStatus {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = status(cri, id).await;
        if status.state == proto::ContainerState::ContainerExited as i32 {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "container {id} did not exit: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `ExecSync` of `cmd` with `timeout` seconds.
pub async fn exec_sync(
    cri: &mut CriClient,
    id: &str,
    cmd: &[&str],
    timeout: i64,
) -> Result<proto::ExecSyncResponse, tonic::Status> {
    cri.runtime
        .exec_sync(proto::ExecSyncRequest {
            container_id: id.to_owned(),
            cmd: cmd.iter().map(|s| (*s).to_owned()).collect(),
            timeout,
        })
        .await
        .map(tonic::Response::into_inner)
}

/// `StopContainer` with `timeout` seconds of grace.
pub async fn stop(cri: &mut CriClient, id: &str, timeout: i64) {
    cri.runtime
        .stop_container(proto::StopContainerRequest {
            container_id: id.to_owned(),
            timeout,
        })
        .await
        .expect("StopContainer");
}

/// `RemoveContainer`.
pub async fn remove(cri: &mut CriClient, id: &str) {
    cri.runtime
        .remove_container(proto::RemoveContainerRequest {
            container_id: id.to_owned(),
        })
        .await
        .expect("RemoveContainer");
}
