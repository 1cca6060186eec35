//! CRI steps the root tests share: pull the busybox test image, run a host-network pod, and
//! create, start, inspect, stop and remove busybox containers in it. Each panics with the
//! RPC's name when a step that must succeed fails; the `try_` variants (and the pod and image
//! steps) return the RPC's error for tests that judge it.

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
    pull(cri, BUSYBOX).await.expect("PullImage");
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
    let id = run_pod_config(cri, &config).await.expect("RunPodSandbox");
    (id, config)
}

/// Like [`run_pod`], for a privileged pod (its containers may be privileged).
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
    let id = run_pod_config(cri, &config).await.expect("RunPodSandbox");
    (id, config)
}

/// A pod named `name` in the CRI namespace `namespace`: metadata, hostname and a log
/// directory `<node>/pod-logs/<name>`; nothing else set, so the runtime's defaults apply.
pub fn named_pod_config(node: &Node, namespace: &str, name: &str) -> proto::PodSandboxConfig {
    let log_directory = node.base_dir().join("pod-logs").join(name);
    proto::PodSandboxConfig {
        metadata: Some(proto::PodSandboxMetadata {
            name: name.to_owned(),
            uid: format!("uid-{name}"),
            namespace: namespace.to_owned(),
            attempt: 0,
        }),
        hostname: name.to_owned(),
        log_directory: log_directory.to_string_lossy().into_owned(),
        ..Default::default()
    }
}

/// The config [`run_pod_with`] runs: a host-network pod logging to `<node>/pod-logs/<name>`.
pub fn pod_config(node: &Node, name: &str, pid: proto::NamespaceMode) -> proto::PodSandboxConfig {
    proto::PodSandboxConfig {
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
        ..named_pod_config(node, "default", name)
    }
}

/// `RunPodSandbox` of `config`; the error is the caller's to judge.
pub async fn run_pod_config(
    cri: &mut CriClient,
    config: &proto::PodSandboxConfig,
) -> Result<String, tonic::Status> {
    cri.runtime
        .run_pod_sandbox(proto::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .map(|reply| reply.into_inner().pod_sandbox_id)
}

/// The pods (`ListPodSandbox`) whose metadata name is `name`.
pub async fn pods_named(cri: &mut CriClient, name: &str) -> Vec<proto::PodSandbox> {
    cri.runtime
        .list_pod_sandbox(proto::ListPodSandboxRequest::default())
        .await
        .expect("ListPodSandbox")
        .into_inner()
        .items
        .into_iter()
        .filter(|pod| pod.metadata.as_ref().is_some_and(|m| m.name == name))
        .collect()
}

/// The containers (`ListContainers`) of pod `pod_id`.
pub async fn pod_containers(cri: &mut CriClient, pod_id: &str) -> Vec<proto::Container> {
    cri.runtime
        .list_containers(proto::ListContainersRequest {
            filter: Some(proto::ContainerFilter {
                pod_sandbox_id: pod_id.to_owned(),
                ..Default::default()
            }),
        })
        .await
        .expect("ListContainers")
        .into_inner()
        .containers
}

/// `PodSandboxStatus` (non-verbose); the error is the caller's to judge.
pub async fn pod_status(
    cri: &mut CriClient,
    id: &str,
) -> Result<proto::PodSandboxStatus, tonic::Status> {
    cri.runtime
        .pod_sandbox_status(proto::PodSandboxStatusRequest {
            pod_sandbox_id: id.to_owned(),
            verbose: false,
        })
        .await?
        .into_inner()
        .status
        .ok_or_else(|| tonic::Status::internal("PodSandboxStatus without a status"))
}

/// `StopPodSandbox`; the error is the caller's to judge.
pub async fn stop_pod(cri: &mut CriClient, id: &str) -> Result<(), tonic::Status> {
    cri.runtime
        .stop_pod_sandbox(proto::StopPodSandboxRequest {
            pod_sandbox_id: id.to_owned(),
        })
        .await
        .map(drop)
}

/// `RemovePodSandbox`; the error is the caller's to judge.
pub async fn remove_pod(cri: &mut CriClient, id: &str) -> Result<(), tonic::Status> {
    cri.runtime
        .remove_pod_sandbox(proto::RemovePodSandboxRequest {
            pod_sandbox_id: id.to_owned(),
        })
        .await
        .map(drop)
}

/// `PullImage` of `image` (no auth); the error is the caller's to judge.
pub async fn pull(cri: &mut CriClient, image: &str) -> Result<String, tonic::Status> {
    cri.image
        .pull_image(proto::PullImageRequest {
            image: Some(proto::ImageSpec {
                image: image.to_owned(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .map(|reply| reply.into_inner().image_ref)
}

/// `RemoveImage` of `image`; the error is the caller's to judge.
pub async fn remove_image(cri: &mut CriClient, image: &str) -> Result<(), tonic::Status> {
    cri.image
        .remove_image(proto::RemoveImageRequest {
            image: Some(proto::ImageSpec {
                image: image.to_owned(),
                ..Default::default()
            }),
        })
        .await
        .map(drop)
}

/// `ImageStatus` of `image`: the image, or `None` when the daemon does not have it.
pub async fn image_status(cri: &mut CriClient, image: &str) -> Option<proto::Image> {
    cri.image
        .image_status(proto::ImageStatusRequest {
            image: Some(proto::ImageSpec {
                image: image.to_owned(),
                ..Default::default()
            }),
            verbose: false,
        })
        .await
        .expect("ImageStatus")
        .into_inner()
        .image
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
    try_status(cri, id).await.expect("ContainerStatus")
}

/// `ContainerStatus` (non-verbose); the error is the caller's to judge.
pub async fn try_status(
    cri: &mut CriClient,
    id: &str,
) -> Result<proto::ContainerStatus, tonic::Status> {
    cri.runtime
        .container_status(proto::ContainerStatusRequest {
            container_id: id.to_owned(),
            verbose: false,
        })
        .await?
        .into_inner()
        .status
        .ok_or_else(|| tonic::Status::internal("ContainerStatus without a status"))
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
    try_stop(cri, id, timeout).await.expect("StopContainer");
}

/// `StopContainer` with `timeout` seconds of grace; the error is the caller's to judge.
pub async fn try_stop(cri: &mut CriClient, id: &str, timeout: i64) -> Result<(), tonic::Status> {
    cri.runtime
        .stop_container(proto::StopContainerRequest {
            container_id: id.to_owned(),
            timeout,
        })
        .await
        .map(drop)
}

/// `RemoveContainer`.
pub async fn remove(cri: &mut CriClient, id: &str) {
    try_remove(cri, id).await.expect("RemoveContainer");
}

/// `RemoveContainer`; the error is the caller's to judge.
pub async fn try_remove(cri: &mut CriClient, id: &str) -> Result<(), tonic::Status> {
    cri.runtime
        .remove_container(proto::RemoveContainerRequest {
            container_id: id.to_owned(),
        })
        .await
        .map(drop)
}
