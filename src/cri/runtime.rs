//! The RuntimeService adapter: validates requests, calls the domain services, converts back.
//!
//! Built so far: `Version`, `Status`, `RuntimeConfig`. Every other RPC answers `UNIMPLEMENTED`
//! naming itself until the issue that builds it lands.

use std::collections::HashMap;
use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::instrument;
use super::{ResponseStream, not_built};
use crate::config::{CgroupDriver, Config};
use crate::proto;

/// The CRI API version this server speaks.
pub const RUNTIME_API_VERSION: &str = "v1";
/// The runtime name reported by `Version`.
pub const RUNTIME_NAME: &str = "carrack";
/// The kubelet-facing API version field of `Version` (fixed by the CRI).
const KUBELET_API_VERSION: &str = "0.1.0";

/// Serves `runtime.v1.RuntimeService`.
#[derive(Debug, Clone)]
pub struct RuntimeServer {
    config: Arc<Config>,
    config_json: Arc<str>,
}

impl RuntimeServer {
    /// A server reporting `config` as the effective configuration.
    pub fn new(config: Arc<Config>) -> Self {
        // Serialising plain structs of strings and paths cannot fail.
        let config_json = serde_json::to_string(&*config).unwrap_or_default().into();
        Self {
            config,
            config_json,
        }
    }

    fn version_reply(&self) -> proto::VersionResponse {
        proto::VersionResponse {
            version: KUBELET_API_VERSION.to_owned(),
            runtime_name: RUNTIME_NAME.to_owned(),
            runtime_version: env!("CARGO_PKG_VERSION").to_owned(),
            runtime_api_version: RUNTIME_API_VERSION.to_owned(),
        }
    }

    fn status_reply(&self, verbose: bool) -> Result<proto::StatusResponse, Status> {
        let conditions = vec![
            proto::RuntimeCondition {
                r#type: "RuntimeReady".to_owned(),
                status: true,
                reason: String::new(),
                message: String::new(),
            },
            // Pod networking (CNI) is not built yet; saying so keeps kubelet from scheduling
            // pods that need it.
            proto::RuntimeCondition {
                r#type: "NetworkReady".to_owned(),
                status: false,
                reason: "NetworkPluginNotReady".to_owned(),
                message: "carrack has no CNI support yet".to_owned(),
            },
        ];
        let mut info = HashMap::new();
        if verbose {
            info.insert("config".to_owned(), self.config_json.to_string());
        }
        Ok(proto::StatusResponse {
            status: Some(proto::RuntimeStatus { conditions }),
            info,
            runtime_handlers: vec![proto::RuntimeHandler {
                name: String::new(),
                features: Some(proto::RuntimeHandlerFeatures {
                    recursive_read_only_mounts: false,
                    user_namespaces: false,
                }),
            }],
            features: Some(proto::RuntimeFeatures {
                supplemental_groups_policy: false,
                user_namespaces_host_network: false,
            }),
        })
    }

    fn runtime_config_reply(&self) -> proto::RuntimeConfigResponse {
        let cgroup_driver = match self.config.cgroups.driver {
            CgroupDriver::Cgroupfs => proto::CgroupDriver::Cgroupfs,
            CgroupDriver::Systemd => proto::CgroupDriver::Systemd,
        };
        proto::RuntimeConfigResponse {
            linux: Some(proto::LinuxRuntimeConfiguration {
                cgroup_driver: cgroup_driver.into(),
            }),
        }
    }
}

#[tonic::async_trait]
impl proto::runtime_service_server::RuntimeService for RuntimeServer {
    async fn version(
        &self,
        request: Request<proto::VersionRequest>,
    ) -> Result<Response<proto::VersionResponse>, Status> {
        let span = tracing::info_span!("cri.Version", client_version = %request.get_ref().version);
        instrument::rpc(span, async { Ok(self.version_reply()) }).await
    }
    async fn run_pod_sandbox(
        &self,
        _request: Request<proto::RunPodSandboxRequest>,
    ) -> Result<Response<proto::RunPodSandboxResponse>, Status> {
        not_built("RunPodSandbox").await
    }

    async fn stop_pod_sandbox(
        &self,
        _request: Request<proto::StopPodSandboxRequest>,
    ) -> Result<Response<proto::StopPodSandboxResponse>, Status> {
        not_built("StopPodSandbox").await
    }

    async fn remove_pod_sandbox(
        &self,
        _request: Request<proto::RemovePodSandboxRequest>,
    ) -> Result<Response<proto::RemovePodSandboxResponse>, Status> {
        not_built("RemovePodSandbox").await
    }

    async fn pod_sandbox_status(
        &self,
        _request: Request<proto::PodSandboxStatusRequest>,
    ) -> Result<Response<proto::PodSandboxStatusResponse>, Status> {
        not_built("PodSandboxStatus").await
    }

    async fn list_pod_sandbox(
        &self,
        _request: Request<proto::ListPodSandboxRequest>,
    ) -> Result<Response<proto::ListPodSandboxResponse>, Status> {
        not_built("ListPodSandbox").await
    }

    type StreamPodSandboxesStream = ResponseStream<proto::StreamPodSandboxesResponse>;

    async fn stream_pod_sandboxes(
        &self,
        _request: Request<proto::StreamPodSandboxesRequest>,
    ) -> Result<Response<Self::StreamPodSandboxesStream>, Status> {
        not_built("StreamPodSandboxes").await
    }

    async fn create_container(
        &self,
        _request: Request<proto::CreateContainerRequest>,
    ) -> Result<Response<proto::CreateContainerResponse>, Status> {
        not_built("CreateContainer").await
    }

    async fn start_container(
        &self,
        _request: Request<proto::StartContainerRequest>,
    ) -> Result<Response<proto::StartContainerResponse>, Status> {
        not_built("StartContainer").await
    }

    async fn stop_container(
        &self,
        _request: Request<proto::StopContainerRequest>,
    ) -> Result<Response<proto::StopContainerResponse>, Status> {
        not_built("StopContainer").await
    }

    async fn remove_container(
        &self,
        _request: Request<proto::RemoveContainerRequest>,
    ) -> Result<Response<proto::RemoveContainerResponse>, Status> {
        not_built("RemoveContainer").await
    }

    async fn list_containers(
        &self,
        _request: Request<proto::ListContainersRequest>,
    ) -> Result<Response<proto::ListContainersResponse>, Status> {
        not_built("ListContainers").await
    }

    type StreamContainersStream = ResponseStream<proto::StreamContainersResponse>;

    async fn stream_containers(
        &self,
        _request: Request<proto::StreamContainersRequest>,
    ) -> Result<Response<Self::StreamContainersStream>, Status> {
        not_built("StreamContainers").await
    }

    async fn container_status(
        &self,
        _request: Request<proto::ContainerStatusRequest>,
    ) -> Result<Response<proto::ContainerStatusResponse>, Status> {
        not_built("ContainerStatus").await
    }

    async fn update_container_resources(
        &self,
        _request: Request<proto::UpdateContainerResourcesRequest>,
    ) -> Result<Response<proto::UpdateContainerResourcesResponse>, Status> {
        not_built("UpdateContainerResources").await
    }

    async fn reopen_container_log(
        &self,
        _request: Request<proto::ReopenContainerLogRequest>,
    ) -> Result<Response<proto::ReopenContainerLogResponse>, Status> {
        not_built("ReopenContainerLog").await
    }

    async fn exec_sync(
        &self,
        _request: Request<proto::ExecSyncRequest>,
    ) -> Result<Response<proto::ExecSyncResponse>, Status> {
        not_built("ExecSync").await
    }

    async fn exec(
        &self,
        _request: Request<proto::ExecRequest>,
    ) -> Result<Response<proto::ExecResponse>, Status> {
        not_built("Exec").await
    }

    async fn attach(
        &self,
        _request: Request<proto::AttachRequest>,
    ) -> Result<Response<proto::AttachResponse>, Status> {
        not_built("Attach").await
    }

    async fn port_forward(
        &self,
        _request: Request<proto::PortForwardRequest>,
    ) -> Result<Response<proto::PortForwardResponse>, Status> {
        not_built("PortForward").await
    }

    async fn container_stats(
        &self,
        _request: Request<proto::ContainerStatsRequest>,
    ) -> Result<Response<proto::ContainerStatsResponse>, Status> {
        not_built("ContainerStats").await
    }

    async fn list_container_stats(
        &self,
        _request: Request<proto::ListContainerStatsRequest>,
    ) -> Result<Response<proto::ListContainerStatsResponse>, Status> {
        not_built("ListContainerStats").await
    }

    type StreamContainerStatsStream = ResponseStream<proto::StreamContainerStatsResponse>;

    async fn stream_container_stats(
        &self,
        _request: Request<proto::StreamContainerStatsRequest>,
    ) -> Result<Response<Self::StreamContainerStatsStream>, Status> {
        not_built("StreamContainerStats").await
    }

    async fn pod_sandbox_stats(
        &self,
        _request: Request<proto::PodSandboxStatsRequest>,
    ) -> Result<Response<proto::PodSandboxStatsResponse>, Status> {
        not_built("PodSandboxStats").await
    }

    async fn list_pod_sandbox_stats(
        &self,
        _request: Request<proto::ListPodSandboxStatsRequest>,
    ) -> Result<Response<proto::ListPodSandboxStatsResponse>, Status> {
        not_built("ListPodSandboxStats").await
    }

    type StreamPodSandboxStatsStream = ResponseStream<proto::StreamPodSandboxStatsResponse>;

    async fn stream_pod_sandbox_stats(
        &self,
        _request: Request<proto::StreamPodSandboxStatsRequest>,
    ) -> Result<Response<Self::StreamPodSandboxStatsStream>, Status> {
        not_built("StreamPodSandboxStats").await
    }

    async fn update_runtime_config(
        &self,
        _request: Request<proto::UpdateRuntimeConfigRequest>,
    ) -> Result<Response<proto::UpdateRuntimeConfigResponse>, Status> {
        not_built("UpdateRuntimeConfig").await
    }

    async fn status(
        &self,
        request: Request<proto::StatusRequest>,
    ) -> Result<Response<proto::StatusResponse>, Status> {
        let verbose = request.get_ref().verbose;
        let span = tracing::info_span!("cri.Status", verbose);
        instrument::rpc(span, async { self.status_reply(verbose) }).await
    }
    async fn checkpoint_container(
        &self,
        _request: Request<proto::CheckpointContainerRequest>,
    ) -> Result<Response<proto::CheckpointContainerResponse>, Status> {
        not_built("CheckpointContainer").await
    }

    type GetContainerEventsStream = ResponseStream<proto::ContainerEventResponse>;

    async fn get_container_events(
        &self,
        _request: Request<proto::GetEventsRequest>,
    ) -> Result<Response<Self::GetContainerEventsStream>, Status> {
        not_built("GetContainerEvents").await
    }

    async fn list_metric_descriptors(
        &self,
        _request: Request<proto::ListMetricDescriptorsRequest>,
    ) -> Result<Response<proto::ListMetricDescriptorsResponse>, Status> {
        not_built("ListMetricDescriptors").await
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _request: Request<proto::ListPodSandboxMetricsRequest>,
    ) -> Result<Response<proto::ListPodSandboxMetricsResponse>, Status> {
        not_built("ListPodSandboxMetrics").await
    }

    type StreamPodSandboxMetricsStream = ResponseStream<proto::StreamPodSandboxMetricsResponse>;

    async fn stream_pod_sandbox_metrics(
        &self,
        _request: Request<proto::StreamPodSandboxMetricsRequest>,
    ) -> Result<Response<Self::StreamPodSandboxMetricsStream>, Status> {
        not_built("StreamPodSandboxMetrics").await
    }

    async fn runtime_config(
        &self,
        _request: Request<proto::RuntimeConfigRequest>,
    ) -> Result<Response<proto::RuntimeConfigResponse>, Status> {
        let span = tracing::info_span!("cri.RuntimeConfig");
        instrument::rpc(span, async { Ok(self.runtime_config_reply()) }).await
    }
    async fn update_pod_sandbox_resources(
        &self,
        _request: Request<proto::UpdatePodSandboxResourcesRequest>,
    ) -> Result<Response<proto::UpdatePodSandboxResourcesResponse>, Status> {
        not_built("UpdatePodSandboxResources").await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::runtime_service_server::RuntimeService;

    fn server() -> RuntimeServer {
        let mut config = Config::default();
        config.cgroups.driver = CgroupDriver::Cgroupfs;
        RuntimeServer::new(Arc::new(config))
    }

    #[tokio::test]
    async fn version_names_carrack_v1() {
        let reply = server()
            .version(Request::new(proto::VersionRequest::default()))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(reply.runtime_name, "carrack");
        assert_eq!(reply.runtime_api_version, "v1");
        assert_eq!(reply.runtime_version, env!("CARGO_PKG_VERSION"));
    }

    #[tokio::test]
    async fn status_reports_runtime_ready_and_network_not_ready() {
        let reply = server()
            .status(Request::new(proto::StatusRequest { verbose: true }))
            .await
            .unwrap()
            .into_inner();
        let conditions = reply.status.unwrap().conditions;
        let runtime = conditions
            .iter()
            .find(|c| c.r#type == "RuntimeReady")
            .unwrap();
        assert!(runtime.status);
        let network = conditions
            .iter()
            .find(|c| c.r#type == "NetworkReady")
            .unwrap();
        assert!(!network.status);
        assert_eq!(network.reason, "NetworkPluginNotReady");
        let config: serde_json::Value = serde_json::from_str(&reply.info["config"]).unwrap();
        assert_eq!(config["root_dir"], "/var/lib/carrack");
    }

    #[tokio::test]
    async fn status_without_verbose_has_no_info() {
        let reply = server()
            .status(Request::new(proto::StatusRequest { verbose: false }))
            .await
            .unwrap()
            .into_inner();
        assert!(reply.info.is_empty());
    }

    #[tokio::test]
    async fn runtime_config_reports_driver() {
        let reply = server()
            .runtime_config(Request::new(proto::RuntimeConfigRequest::default()))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            reply.linux.unwrap().cgroup_driver,
            i32::from(proto::CgroupDriver::Cgroupfs)
        );
    }

    #[tokio::test]
    async fn unbuilt_rpcs_are_unimplemented() {
        let err = server()
            .run_pod_sandbox(Request::new(proto::RunPodSandboxRequest::default()))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unimplemented);
        assert!(err.message().contains("RunPodSandbox"));
    }
}
