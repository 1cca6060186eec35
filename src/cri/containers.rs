//! The container RPCs of the RuntimeService: each validates, calls the container service and
//! converts back. Split from `runtime.rs` only to keep that file readable; the trait impl
//! there delegates here.

use std::collections::HashMap;
use std::time::Duration;

use tonic::{Response, Status};

use super::batch;
use super::convert;
use super::instrument;
use super::runtime::RuntimeServer;
use crate::proto;

/// The mountpoint reported for writable layers (the image filesystem's).
const WRITABLE_LAYER_MOUNTPOINT: &str = "snapshots";

pub(super) fn required(id: &str, field: &'static str) -> Result<(), Status> {
    if id.is_empty() {
        Err(Status::invalid_argument(format!("{field} is required")))
    } else {
        Ok(())
    }
}

fn seconds(value: i64) -> Duration {
    Duration::from_secs(u64::try_from(value).unwrap_or(0))
}

impl RuntimeServer {
    pub(super) async fn create_container_rpc(
        &self,
        request: proto::CreateContainerRequest,
        deadline: Option<std::time::Instant>,
    ) -> Result<Response<proto::CreateContainerResponse>, Status> {
        let request = convert::container::create_request(request)?;
        let span = tracing::info_span!(
            "cri.CreateContainer",
            pod_id = %request.pod_id,
            name = %request.metadata.name,
            container_id = tracing::field::Empty,
        );
        instrument::rpc(span.clone(), async {
            let container_id = self.containers().create(request, deadline).await?;
            span.record("container_id", container_id.as_str());
            Ok(proto::CreateContainerResponse { container_id })
        })
        .await
    }

    pub(super) async fn start_container_rpc(
        &self,
        request: proto::StartContainerRequest,
    ) -> Result<Response<proto::StartContainerResponse>, Status> {
        let id = request.container_id;
        let span = tracing::info_span!("cri.StartContainer", container_id = %id);
        instrument::rpc(span, async {
            required(&id, "container_id")?;
            self.containers().start(&id).await?;
            Ok(proto::StartContainerResponse {})
        })
        .await
    }

    pub(super) async fn stop_container_rpc(
        &self,
        request: proto::StopContainerRequest,
    ) -> Result<Response<proto::StopContainerResponse>, Status> {
        let id = request.container_id;
        let span =
            tracing::info_span!("cri.StopContainer", container_id = %id, timeout = request.timeout);
        instrument::rpc(span, async {
            required(&id, "container_id")?;
            self.containers()
                .stop(&id, seconds(request.timeout))
                .await?;
            Ok(proto::StopContainerResponse {})
        })
        .await
    }

    pub(super) async fn remove_container_rpc(
        &self,
        request: proto::RemoveContainerRequest,
    ) -> Result<Response<proto::RemoveContainerResponse>, Status> {
        let id = request.container_id;
        let span = tracing::info_span!("cri.RemoveContainer", container_id = %id);
        instrument::rpc(span, async {
            required(&id, "container_id")?;
            self.containers().remove(&id).await?;
            Ok(proto::RemoveContainerResponse {})
        })
        .await
    }

    pub(super) async fn list_containers_rpc(
        &self,
        request: proto::ListContainersRequest,
    ) -> Result<Response<proto::ListContainersResponse>, Status> {
        let span = tracing::info_span!("cri.ListContainers");
        instrument::rpc(span, async {
            let containers = self.container_items(request.filter).await;
            batch::fits(
                proto::ListContainersResponse { containers },
                self.max_message_bytes(),
                "ListContainers",
                "StreamContainers",
            )
        })
        .await
    }

    pub(super) async fn container_status_rpc(
        &self,
        request: proto::ContainerStatusRequest,
    ) -> Result<Response<proto::ContainerStatusResponse>, Status> {
        let id = request.container_id;
        let span = tracing::info_span!("cri.ContainerStatus", container_id = %id);
        instrument::rpc(span, async {
            required(&id, "container_id")?;
            let view = self.containers().status(&id, request.verbose).await?;
            Ok(proto::ContainerStatusResponse {
                status: Some(convert::container::container_status(&view)),
                info: if request.verbose {
                    convert::container::container_info(&view)
                } else {
                    HashMap::new()
                },
            })
        })
        .await
    }

    pub(super) async fn update_container_resources_rpc(
        &self,
        request: proto::UpdateContainerResourcesRequest,
    ) -> Result<Response<proto::UpdateContainerResourcesResponse>, Status> {
        let resources = convert::container::update_resources(&request);
        let id = request.container_id;
        let span = tracing::info_span!("cri.UpdateContainerResources", container_id = %id);
        instrument::rpc(span, async {
            required(&id, "container_id")?;
            self.containers().update_resources(&id, resources).await?;
            Ok(proto::UpdateContainerResourcesResponse {})
        })
        .await
    }

    pub(super) async fn reopen_container_log_rpc(
        &self,
        request: proto::ReopenContainerLogRequest,
    ) -> Result<Response<proto::ReopenContainerLogResponse>, Status> {
        let id = request.container_id;
        let span = tracing::info_span!("cri.ReopenContainerLog", container_id = %id);
        instrument::rpc(span, async {
            required(&id, "container_id")?;
            self.containers().reopen_log(&id).await?;
            Ok(proto::ReopenContainerLogResponse {})
        })
        .await
    }

    pub(super) async fn exec_sync_rpc(
        &self,
        request: proto::ExecSyncRequest,
    ) -> Result<Response<proto::ExecSyncResponse>, Status> {
        let id = request.container_id;
        let span =
            tracing::info_span!("cri.ExecSync", container_id = %id, timeout = request.timeout);
        instrument::rpc(span, async {
            required(&id, "container_id")?;
            let output = self
                .containers()
                .exec_sync(&id, &request.cmd, seconds(request.timeout))
                .await?;
            Ok(proto::ExecSyncResponse {
                stdout: output.stdout,
                stderr: output.stderr,
                exit_code: output.exit_code,
            })
        })
        .await
    }

    pub(super) async fn container_stats_rpc(
        &self,
        request: proto::ContainerStatsRequest,
    ) -> Result<Response<proto::ContainerStatsResponse>, Status> {
        let id = request.container_id;
        let span = tracing::info_span!("cri.ContainerStats", container_id = %id);
        instrument::rpc(span, async {
            required(&id, "container_id")?;
            let (container, usage) = self.containers().stats(&id)?;
            Ok(proto::ContainerStatsResponse {
                stats: Some(self.container_stats_item(&container, &usage)),
            })
        })
        .await
    }

    pub(super) async fn list_container_stats_rpc(
        &self,
        request: proto::ListContainerStatsRequest,
    ) -> Result<Response<proto::ListContainerStatsResponse>, Status> {
        let span = tracing::info_span!("cri.ListContainerStats");
        instrument::rpc(span, async {
            let stats = self.container_stats_items(request.filter);
            batch::fits(
                proto::ListContainerStatsResponse { stats },
                self.max_message_bytes(),
                "ListContainerStats",
                "StreamContainerStats",
            )
        })
        .await
    }

    pub(super) async fn pod_sandbox_stats_rpc(
        &self,
        request: proto::PodSandboxStatsRequest,
    ) -> Result<Response<proto::PodSandboxStatsResponse>, Status> {
        let id = request.pod_sandbox_id;
        let span = tracing::info_span!("cri.PodSandboxStats", pod_id = %id);
        instrument::rpc(span, async {
            required(&id, "pod_sandbox_id")?;
            let pod = self.sandboxes().require(&id)?;
            Ok(proto::PodSandboxStatsResponse {
                stats: Some(self.pod_stats(&pod)),
            })
        })
        .await
    }

    pub(super) async fn list_pod_sandbox_stats_rpc(
        &self,
        request: proto::ListPodSandboxStatsRequest,
    ) -> Result<Response<proto::ListPodSandboxStatsResponse>, Status> {
        let span = tracing::info_span!("cri.ListPodSandboxStats");
        instrument::rpc(span, async {
            let stats = self.pod_stats_items(request.filter);
            batch::fits(
                proto::ListPodSandboxStatsResponse { stats },
                self.max_message_bytes(),
                "ListPodSandboxStats",
                "StreamPodSandboxStats",
            )
        })
        .await
    }

    /// The CRI stats of one container.
    pub(super) fn container_stats_item(
        &self,
        container: &crate::store::ContainerRecord,
        usage: &crate::container::ContainerUsage,
    ) -> proto::ContainerStats {
        convert::container::container_stats(container, usage, WRITABLE_LAYER_MOUNTPOINT)
    }

    /// A pod's stats: its cgroup's figures and each container's.
    pub(super) fn pod_stats(&self, pod: &crate::store::PodRecord) -> proto::PodSandboxStats {
        let containers = self
            .containers()
            .list_stats(|container| container.pod_id == pod.id)
            .iter()
            .map(|(container, usage)| self.container_stats_item(container, usage))
            .collect();
        let usage = self.sandboxes().usage(&pod.id).ok();
        convert::container::pod_stats(pod, usage.as_ref(), containers)
    }
}
