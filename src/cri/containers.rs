//! The container RPCs of the RuntimeService: each validates, calls the container service and
//! converts back. Split from `runtime.rs` only to keep that file readable; the trait impl
//! there delegates here.

use std::collections::HashMap;
use std::time::Duration;

use tonic::{Response, Status};

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
        let filter = convert::container::container_filter(request.filter);
        let span = tracing::info_span!("cri.ListContainers");
        instrument::rpc(span, async {
            let containers = self
                .containers()
                .list(&filter)
                .await
                .iter()
                .map(|container| convert::container::container_item(container))
                .collect();
            Ok(proto::ListContainersResponse { containers })
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
                stats: Some(convert::container::container_stats(
                    &container,
                    &usage,
                    WRITABLE_LAYER_MOUNTPOINT,
                )),
            })
        })
        .await
    }

    pub(super) async fn list_container_stats_rpc(
        &self,
        request: proto::ListContainerStatsRequest,
    ) -> Result<Response<proto::ListContainerStatsResponse>, Status> {
        let filter = request.filter.unwrap_or_default();
        let span = tracing::info_span!("cri.ListContainerStats");
        instrument::rpc(span, async {
            let stats = self
                .containers()
                .list_stats(|container| {
                    (filter.id.is_empty() || container.id.starts_with(&filter.id))
                        && (filter.pod_sandbox_id.is_empty()
                            || container.pod_id.starts_with(&filter.pod_sandbox_id))
                        && filter
                            .label_selector
                            .iter()
                            .all(|(key, value)| container.labels.get(key) == Some(value))
                })
                .iter()
                .map(|(container, usage)| {
                    convert::container::container_stats(container, usage, WRITABLE_LAYER_MOUNTPOINT)
                })
                .collect();
            Ok(proto::ListContainerStatsResponse { stats })
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
        let filter = request.filter.unwrap_or_default();
        let span = tracing::info_span!("cri.ListPodSandboxStats");
        instrument::rpc(span, async {
            let pod_filter = crate::sandbox::PodFilter {
                id: Some(filter.id).filter(|id| !id.is_empty()),
                state: None,
                labels: filter.label_selector.into_iter().collect(),
            };
            let stats = self
                .sandboxes()
                .list(&pod_filter)
                .iter()
                .map(|pod| self.pod_stats(pod))
                .collect();
            Ok(proto::ListPodSandboxStatsResponse { stats })
        })
        .await
    }

    /// A pod's stats: its cgroup's figures and each container's.
    fn pod_stats(&self, pod: &crate::store::PodRecord) -> proto::PodSandboxStats {
        let containers = self
            .containers()
            .list_stats(|container| container.pod_id == pod.id)
            .iter()
            .map(|(container, usage)| {
                convert::container::container_stats(container, usage, WRITABLE_LAYER_MOUNTPOINT)
            })
            .collect();
        let usage = self.sandboxes().usage(&pod.id).ok();
        convert::container::pod_stats(pod, usage.as_ref(), containers)
    }
}
