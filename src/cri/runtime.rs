//! The RuntimeService adapter: validates requests, calls the domain services, converts back.
//!
//! Built so far: `Version`, `Status`, `RuntimeConfig`, the pod sandbox RPCs, the container
//! RPCs (whose bodies live in `containers.rs`) and `Exec`/`PortForward` (`streaming.rs`). Every other RPC answers `UNIMPLEMENTED` naming
//! itself until the issue that builds it lands.

use std::collections::HashMap;
use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{ResponseStream, batch, convert, instrument, not_built};
use crate::config::{CgroupDriver, Config};
use crate::container::ContainerService;
use crate::events::EventHub;
use crate::proto;
use crate::sandbox::SandboxService;
use crate::streaming::StreamingUrls;

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
    sandboxes: Arc<SandboxService>,
    containers: Arc<ContainerService>,
    /// Mints the exec/attach/port-forward URLs.
    streaming: StreamingUrls,
    /// The container event hub `GetContainerEvents` subscribes to.
    events: Arc<EventHub>,
}

impl RuntimeServer {
    /// A server reporting `config` as the effective configuration; `events` is the hub the
    /// container service publishes to.
    pub fn new(
        config: Arc<Config>,
        sandboxes: Arc<SandboxService>,
        containers: Arc<ContainerService>,
        streaming: StreamingUrls,
        events: Arc<EventHub>,
    ) -> Self {
        // Serialising plain structs of strings and paths cannot fail. `stateDir` is added
        // under containerd's name: critest probes idmapped mounts on its filesystem.
        let mut config_value = serde_json::to_value(&*config).unwrap_or_default();
        if let Some(object) = config_value.as_object_mut() {
            object.insert(
                "stateDir".to_owned(),
                serde_json::Value::from(config.state_dir.to_string_lossy().into_owned()),
            );
        }
        let config_json = config_value.to_string().into();
        Self {
            config,
            config_json,
            sandboxes,
            containers,
            streaming,
            events,
        }
    }

    /// The container event hub.
    pub(super) fn events(&self) -> &EventHub {
        &self.events
    }

    /// The largest reply message (`grpc.max_message_bytes`).
    pub(super) fn max_message_bytes(&self) -> usize {
        self.config.grpc.max_message_bytes
    }

    /// The container service.
    pub(super) fn containers(&self) -> &Arc<ContainerService> {
        &self.containers
    }

    /// The pod sandbox service.
    pub(super) fn sandboxes(&self) -> &SandboxService {
        &self.sandboxes
    }

    /// The streaming server's URL minting.
    pub(super) fn streaming(&self) -> &StreamingUrls {
        &self.streaming
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
            network_condition(self.sandboxes.network_status()),
        ];
        let mut info = HashMap::new();
        if verbose {
            info.insert("config".to_owned(), self.config_json.to_string());
            info.insert("podCIDR".to_owned(), self.sandboxes.pod_cidrs().join(","));
        }
        Ok(proto::StatusResponse {
            status: Some(proto::RuntimeStatus { conditions }),
            info,
            runtime_handlers: vec![proto::RuntimeHandler {
                name: String::new(),
                features: Some(proto::RuntimeHandlerFeatures {
                    // `rro` binds: `mount_setattr(MOUNT_ATTR_RDONLY, AT_RECURSIVE)`.
                    recursive_read_only_mounts: true,
                    // A pod's own user namespace owning its network, IPC and UTS ones;
                    // containers join it, their rootfs stacked on idmapped layers (probed).
                    user_namespaces: self.sandboxes.user_namespaces_supported(),
                }),
            }],
            features: Some(proto::RuntimeFeatures {
                // Merge adds the image's groups of the user, Strict only the requested ones;
                // the effective groups are reported in `ContainerStatus.user`.
                supplemental_groups_policy: true,
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

/// `NetworkReady`: true when a CNI config with all its plugins is present; otherwise false
/// with kubelet's reason `NetworkPluginNotReady` and what is missing.
fn network_condition(status: Result<(), crate::sandbox::SandboxError>) -> proto::RuntimeCondition {
    let (ready, reason, message) = match status {
        Ok(()) => (true, String::new(), String::new()),
        Err(err) => (false, "NetworkPluginNotReady".to_owned(), err.to_string()),
    };
    proto::RuntimeCondition {
        r#type: "NetworkReady".to_owned(),
        status: ready,
        reason,
        message,
    }
}

/// An `address/prefix` pair, checked only for shape.
struct CidrCheck;

impl std::str::FromStr for CidrCheck {
    type Err = ();

    fn from_str(text: &str) -> Result<Self, ()> {
        for cidr in text.split(',') {
            let (address, prefix) = cidr.trim().split_once('/').ok_or(())?;
            let address: std::net::IpAddr = address.parse().map_err(drop)?;
            let prefix: u8 = prefix.parse().map_err(drop)?;
            if prefix > if address.is_ipv4() { 32 } else { 128 } {
                return Err(());
            }
        }
        Ok(CidrCheck)
    }
}

/// A required id field must be present.
fn required_id(id: &str, field: &'static str) -> Result<(), Status> {
    if id.is_empty() {
        Err(Status::invalid_argument(format!("{field} is required")))
    } else {
        Ok(())
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
        request: Request<proto::RunPodSandboxRequest>,
    ) -> Result<Response<proto::RunPodSandboxResponse>, Status> {
        let deadline = instrument::client_deadline(request.metadata());
        let spec = convert::pod::pod_spec(request.into_inner())?;
        let span = tracing::info_span!(
            "cri.RunPodSandbox",
            pod_name = %spec.metadata.name,
            pod_namespace = %spec.metadata.namespace,
            pod_id = tracing::field::Empty,
        );
        instrument::rpc(span.clone(), async {
            let pod_sandbox_id = self.sandboxes.run(spec, deadline).await?;
            span.record("pod_id", pod_sandbox_id.as_str());
            Ok(proto::RunPodSandboxResponse { pod_sandbox_id })
        })
        .await
    }

    async fn stop_pod_sandbox(
        &self,
        request: Request<proto::StopPodSandboxRequest>,
    ) -> Result<Response<proto::StopPodSandboxResponse>, Status> {
        let id = request.into_inner().pod_sandbox_id;
        let span = tracing::info_span!("cri.StopPodSandbox", pod_id = %id);
        instrument::rpc(span, async {
            required_id(&id, "pod_sandbox_id")?;
            if let Some(pod) = self.sandboxes.find(&id)? {
                self.containers.stop_pod_containers(&pod.id).await?;
            }
            self.sandboxes.stop(&id).await?;
            Ok(proto::StopPodSandboxResponse {})
        })
        .await
    }

    async fn remove_pod_sandbox(
        &self,
        request: Request<proto::RemovePodSandboxRequest>,
    ) -> Result<Response<proto::RemovePodSandboxResponse>, Status> {
        let id = request.into_inner().pod_sandbox_id;
        let span = tracing::info_span!("cri.RemovePodSandbox", pod_id = %id);
        instrument::rpc(span, async {
            required_id(&id, "pod_sandbox_id")?;
            if let Some(pod) = self.sandboxes.find(&id)? {
                self.containers.stop_pod_containers(&pod.id).await?;
                self.containers.remove_pod_containers(&pod.id).await?;
            }
            self.sandboxes.remove(&id).await?;
            Ok(proto::RemovePodSandboxResponse {})
        })
        .await
    }

    async fn pod_sandbox_status(
        &self,
        request: Request<proto::PodSandboxStatusRequest>,
    ) -> Result<Response<proto::PodSandboxStatusResponse>, Status> {
        let request = request.into_inner();
        let span = tracing::info_span!("cri.PodSandboxStatus", pod_id = %request.pod_sandbox_id);
        instrument::rpc(span, async {
            required_id(&request.pod_sandbox_id, "pod_sandbox_id")?;
            let pod = self.sandboxes.status(&request.pod_sandbox_id)?;
            // With a timestamp set, kubelet's evented PLEG takes these as all of the pod's
            // containers (as it does the statuses in container events).
            let mut containers_statuses = Vec::new();
            for container in self.containers.of_pod(&pod.id) {
                match self.containers.status(&container.id, false).await {
                    Ok(view) => {
                        containers_statuses.push(convert::container::container_status(&view))
                    }
                    // Removed meanwhile.
                    Err(err) if err.kind() == crate::error_kind::ErrorKind::NotFound => {}
                    Err(err) => return Err(err.into()),
                }
            }
            Ok(proto::PodSandboxStatusResponse {
                status: Some(convert::pod::pod_status(&pod)),
                info: if request.verbose {
                    convert::pod::pod_info(&pod)
                } else {
                    HashMap::new()
                },
                containers_statuses,
                timestamp: crate::store::now_ns(),
            })
        })
        .await
    }

    async fn list_pod_sandbox(
        &self,
        request: Request<proto::ListPodSandboxRequest>,
    ) -> Result<Response<proto::ListPodSandboxResponse>, Status> {
        let filter = request.into_inner().filter;
        let span = tracing::info_span!("cri.ListPodSandbox");
        instrument::rpc(span, async {
            let items = self.pod_sandbox_items(filter);
            batch::fits(
                proto::ListPodSandboxResponse { items },
                self.max_message_bytes(),
                "ListPodSandbox",
                "StreamPodSandboxes",
            )
        })
        .await
    }

    type StreamPodSandboxesStream = ResponseStream<proto::StreamPodSandboxesResponse>;

    async fn stream_pod_sandboxes(
        &self,
        request: Request<proto::StreamPodSandboxesRequest>,
    ) -> Result<Response<Self::StreamPodSandboxesStream>, Status> {
        self.stream_pod_sandboxes_rpc(request.into_inner()).await
    }

    async fn create_container(
        &self,
        request: Request<proto::CreateContainerRequest>,
    ) -> Result<Response<proto::CreateContainerResponse>, Status> {
        let deadline = instrument::client_deadline(request.metadata());
        self.create_container_rpc(request.into_inner(), deadline)
            .await
    }

    async fn start_container(
        &self,
        request: Request<proto::StartContainerRequest>,
    ) -> Result<Response<proto::StartContainerResponse>, Status> {
        self.start_container_rpc(request.into_inner()).await
    }

    async fn stop_container(
        &self,
        request: Request<proto::StopContainerRequest>,
    ) -> Result<Response<proto::StopContainerResponse>, Status> {
        self.stop_container_rpc(request.into_inner()).await
    }

    async fn remove_container(
        &self,
        request: Request<proto::RemoveContainerRequest>,
    ) -> Result<Response<proto::RemoveContainerResponse>, Status> {
        self.remove_container_rpc(request.into_inner()).await
    }

    async fn list_containers(
        &self,
        request: Request<proto::ListContainersRequest>,
    ) -> Result<Response<proto::ListContainersResponse>, Status> {
        self.list_containers_rpc(request.into_inner()).await
    }

    type StreamContainersStream = ResponseStream<proto::StreamContainersResponse>;

    async fn stream_containers(
        &self,
        request: Request<proto::StreamContainersRequest>,
    ) -> Result<Response<Self::StreamContainersStream>, Status> {
        self.stream_containers_rpc(request.into_inner()).await
    }

    async fn container_status(
        &self,
        request: Request<proto::ContainerStatusRequest>,
    ) -> Result<Response<proto::ContainerStatusResponse>, Status> {
        self.container_status_rpc(request.into_inner()).await
    }

    async fn update_container_resources(
        &self,
        request: Request<proto::UpdateContainerResourcesRequest>,
    ) -> Result<Response<proto::UpdateContainerResourcesResponse>, Status> {
        self.update_container_resources_rpc(request.into_inner())
            .await
    }

    async fn reopen_container_log(
        &self,
        request: Request<proto::ReopenContainerLogRequest>,
    ) -> Result<Response<proto::ReopenContainerLogResponse>, Status> {
        self.reopen_container_log_rpc(request.into_inner()).await
    }

    async fn exec_sync(
        &self,
        request: Request<proto::ExecSyncRequest>,
    ) -> Result<Response<proto::ExecSyncResponse>, Status> {
        self.exec_sync_rpc(request.into_inner()).await
    }

    async fn exec(
        &self,
        request: Request<proto::ExecRequest>,
    ) -> Result<Response<proto::ExecResponse>, Status> {
        self.exec_rpc(request.into_inner()).await
    }

    async fn attach(
        &self,
        request: Request<proto::AttachRequest>,
    ) -> Result<Response<proto::AttachResponse>, Status> {
        self.attach_rpc(request.into_inner()).await
    }

    async fn port_forward(
        &self,
        request: Request<proto::PortForwardRequest>,
    ) -> Result<Response<proto::PortForwardResponse>, Status> {
        self.port_forward_rpc(request.into_inner()).await
    }

    async fn container_stats(
        &self,
        request: Request<proto::ContainerStatsRequest>,
    ) -> Result<Response<proto::ContainerStatsResponse>, Status> {
        self.container_stats_rpc(request.into_inner()).await
    }

    async fn list_container_stats(
        &self,
        request: Request<proto::ListContainerStatsRequest>,
    ) -> Result<Response<proto::ListContainerStatsResponse>, Status> {
        self.list_container_stats_rpc(request.into_inner()).await
    }

    type StreamContainerStatsStream = ResponseStream<proto::StreamContainerStatsResponse>;

    async fn stream_container_stats(
        &self,
        request: Request<proto::StreamContainerStatsRequest>,
    ) -> Result<Response<Self::StreamContainerStatsStream>, Status> {
        self.stream_container_stats_rpc(request.into_inner()).await
    }

    async fn pod_sandbox_stats(
        &self,
        request: Request<proto::PodSandboxStatsRequest>,
    ) -> Result<Response<proto::PodSandboxStatsResponse>, Status> {
        self.pod_sandbox_stats_rpc(request.into_inner()).await
    }

    async fn list_pod_sandbox_stats(
        &self,
        request: Request<proto::ListPodSandboxStatsRequest>,
    ) -> Result<Response<proto::ListPodSandboxStatsResponse>, Status> {
        self.list_pod_sandbox_stats_rpc(request.into_inner()).await
    }

    type StreamPodSandboxStatsStream = ResponseStream<proto::StreamPodSandboxStatsResponse>;

    async fn stream_pod_sandbox_stats(
        &self,
        request: Request<proto::StreamPodSandboxStatsRequest>,
    ) -> Result<Response<Self::StreamPodSandboxStatsStream>, Status> {
        self.stream_pod_sandbox_stats_rpc(request.into_inner())
            .await
    }

    async fn update_runtime_config(
        &self,
        request: Request<proto::UpdateRuntimeConfigRequest>,
    ) -> Result<Response<proto::UpdateRuntimeConfigResponse>, Status> {
        let pod_cidr = request
            .into_inner()
            .runtime_config
            .and_then(|config| config.network_config)
            .map(|network| network.pod_cidr)
            .unwrap_or_default();
        let span = tracing::info_span!("cri.UpdateRuntimeConfig", pod_cidr = %pod_cidr);
        instrument::rpc(span, async {
            // The CIDRs kubelet assigned become the `ipRanges` of new pods whose plugins declare
            // that capability (host-local then allocates from them); otherwise the CNI config
            // on disk decides. Shown in verbose Status.
            if !pod_cidr.is_empty() && pod_cidr.parse::<CidrCheck>().is_err() {
                return Err(Status::invalid_argument(format!(
                    "pod_cidr {pod_cidr:?} is not an address/prefix"
                )));
            }
            let cidrs = pod_cidr
                .split(',')
                .map(str::trim)
                .filter(|cidr| !cidr.is_empty())
                .map(str::to_owned)
                .collect();
            self.sandboxes.set_pod_cidrs(cidrs);
            Ok(proto::UpdateRuntimeConfigResponse {})
        })
        .await
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
        not_built!("CheckpointContainer")
    }

    type GetContainerEventsStream = ResponseStream<proto::ContainerEventResponse>;

    async fn get_container_events(
        &self,
        _request: Request<proto::GetEventsRequest>,
    ) -> Result<Response<Self::GetContainerEventsStream>, Status> {
        self.get_container_events_rpc().await
    }

    async fn list_metric_descriptors(
        &self,
        _request: Request<proto::ListMetricDescriptorsRequest>,
    ) -> Result<Response<proto::ListMetricDescriptorsResponse>, Status> {
        let span = tracing::info_span!("cri.ListMetricDescriptors");
        instrument::rpc(span, async {
            Ok(proto::ListMetricDescriptorsResponse {
                descriptors: convert::metrics::descriptors(),
            })
        })
        .await
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _request: Request<proto::ListPodSandboxMetricsRequest>,
    ) -> Result<Response<proto::ListPodSandboxMetricsResponse>, Status> {
        let span = tracing::info_span!("cri.ListPodSandboxMetrics");
        instrument::rpc(span, async {
            let pod_metrics = self.pod_metrics_items();
            batch::fits(
                proto::ListPodSandboxMetricsResponse { pod_metrics },
                self.max_message_bytes(),
                "ListPodSandboxMetrics",
                "StreamPodSandboxMetrics",
            )
        })
        .await
    }

    type StreamPodSandboxMetricsStream = ResponseStream<proto::StreamPodSandboxMetricsResponse>;

    async fn stream_pod_sandbox_metrics(
        &self,
        _request: Request<proto::StreamPodSandboxMetricsRequest>,
    ) -> Result<Response<Self::StreamPodSandboxMetricsStream>, Status> {
        self.stream_pod_sandbox_metrics_rpc().await
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
        request: Request<proto::UpdatePodSandboxResourcesRequest>,
    ) -> Result<Response<proto::UpdatePodSandboxResourcesResponse>, Status> {
        let request = request.into_inner();
        let span =
            tracing::info_span!("cri.UpdatePodSandboxResources", pod_id = %request.pod_sandbox_id);
        instrument::rpc(span, async {
            required_id(&request.pod_sandbox_id, "pod_sandbox_id")?;
            let overhead = request
                .overhead
                .as_ref()
                .map(convert::resources::from_proto);
            let resources = request
                .resources
                .as_ref()
                .map(convert::resources::from_proto);
            self.sandboxes
                .update_resources(&request.pod_sandbox_id, overhead, resources)
                .await?;
            Ok(proto::UpdatePodSandboxResourcesResponse {})
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::runtime_service_server::RuntimeService;

    use crate::cgroups::{CgroupManager, CgroupSettings};
    use crate::cni::{CniManager, CniSettings};
    use crate::sandbox::SandboxSettings;
    use crate::store::Store;

    /// A server over a fake cgroup v2 root and an empty CNI config dir in a tempdir.
    fn server() -> RuntimeServer {
        // Leaked on purpose: the tempdir must outlive the server within the test.
        let dir = Box::leak(Box::new(tempfile::tempdir().unwrap())).path();
        let cgroup_root = dir.join("cgroup");
        std::fs::create_dir_all(&cgroup_root).unwrap();
        std::fs::write(cgroup_root.join("cgroup.controllers"), "cpu memory pids\n").unwrap();
        let mountinfo = dir.join("mountinfo");
        std::fs::write(
            &mountinfo,
            format!(
                "30 1 0:26 / {} rw - cgroup2 cgroup2 rw\n",
                cgroup_root.display()
            ),
        )
        .unwrap();
        let mut config = Config {
            root_dir: dir.join("root"),
            state_dir: dir.join("state"),
            ..Config::default()
        };
        config.cgroups.driver = CgroupDriver::Cgroupfs;
        config.cni.conf_dir = dir.join("net.d");
        config.cni.bin_dirs = vec![dir.join("bin")];
        let cgroups = CgroupManager::new(CgroupSettings {
            driver: CgroupDriver::Cgroupfs,
            root: cgroup_root,
            mountinfo,
            systemd_bus: crate::cgroups::DEFAULT_SYSTEM_BUS.to_owned(),
        })
        .unwrap();
        let cni = CniManager::new(CniSettings::new(&config.cni, dir.join("cni-cache")));
        let (store, _) = Store::open(&config.root_dir).unwrap();
        let store = Arc::new(store);
        let cgroups = Arc::new(cgroups);
        let snapshots = Arc::new(crate::snapshot::Snapshotter::open(&config.root_dir).unwrap());
        let images = Arc::new(
            crate::image_service::ImageService::new(
                &config,
                Arc::clone(&store),
                Arc::clone(&snapshots),
            )
            .unwrap(),
        );
        let events = Arc::new(EventHub::default());
        let containers = ContainerService::new(
            crate::container::ContainerSettings {
                state_dir: config.state_dir.clone(),
                binary: dir.join("carrack"),
                host: crate::container::spec::HostInfo::default(),
            },
            Arc::clone(&store),
            Arc::clone(&cgroups),
            snapshots,
            images,
            Arc::clone(&events),
        );
        let sandboxes = SandboxService::new(
            SandboxSettings {
                state_dir: config.state_dir.clone(),
                default_cgroup_parent: "/carrack".to_owned(),
                host_resolv_conf: dir.join("resolv.conf"),
                host_hosts: dir.join("hosts"),
                binary: dir.join("carrack"),
                user_namespaces: false,
            },
            store,
            cgroups,
            Arc::new(cni),
            Arc::clone(&events),
        );
        let urls = StreamingUrls::new(
            "127.0.0.1",
            10250,
            false,
            std::time::Duration::from_secs(60),
        );
        RuntimeServer::new(
            Arc::new(config),
            Arc::new(sandboxes),
            containers,
            urls,
            events,
        )
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
        assert!(network.message.contains("net.d"), "{}", network.message);
        let config: serde_json::Value = serde_json::from_str(&reply.info["config"]).unwrap();
        assert!(config["root_dir"].as_str().unwrap().ends_with("/root"));
    }

    #[tokio::test]
    async fn status_reports_the_features_built() {
        let reply = server()
            .status(Request::new(proto::StatusRequest { verbose: false }))
            .await
            .unwrap()
            .into_inner();
        let features = reply.features.unwrap();
        assert!(features.supplemental_groups_policy);
        let [handler] = reply.runtime_handlers.as_slice() else {
            panic!("one handler expected: {:?}", reply.runtime_handlers);
        };
        assert_eq!(
            handler.name, "",
            "critest looks up the default handler by an empty name"
        );
        assert!(handler.features.unwrap().recursive_read_only_mounts);
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
            .checkpoint_container(Request::new(proto::CheckpointContainerRequest::default()))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unimplemented);
        assert!(err.message().contains("CheckpointContainer"));
    }

    #[tokio::test]
    async fn container_rpcs_on_unknown_ids_answer_as_cri_expects() {
        let server = server();
        let err = server
            .container_status(Request::new(proto::ContainerStatusRequest {
                container_id: "nope".to_owned(),
                verbose: false,
            }))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::NotFound);
        // Stop and remove are idempotent.
        server
            .stop_container(Request::new(proto::StopContainerRequest {
                container_id: "nope".to_owned(),
                timeout: 1,
            }))
            .await
            .unwrap();
        server
            .remove_container(Request::new(proto::RemoveContainerRequest {
                container_id: "nope".to_owned(),
            }))
            .await
            .unwrap();
        let err = server
            .create_container(Request::new(proto::CreateContainerRequest::default()))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
    }

    #[tokio::test]
    async fn container_events_stream_converted_events_in_order() {
        use crate::events::{ContainerEvent, ContainerEventKind};
        use tokio_stream::StreamExt;
        let server = server();
        let mut stream = server
            .get_container_events(Request::new(proto::GetEventsRequest {}))
            .await
            .unwrap()
            .into_inner();
        for (id, kind) in [
            ("a", ContainerEventKind::Created),
            ("a", ContainerEventKind::Started),
            ("b", ContainerEventKind::Deleted),
        ] {
            server.events().publish(ContainerEvent {
                container_id: id.to_owned(),
                kind,
                at_ns: 1,
                pod: None,
                containers: Vec::new(),
            });
        }
        let mut seen = Vec::new();
        for _ in 0..3 {
            let event = stream.next().await.unwrap().unwrap();
            seen.push((event.container_id, event.container_event_type));
        }
        use proto::ContainerEventType::*;
        assert_eq!(
            seen,
            [
                ("a".to_owned(), ContainerCreatedEvent as i32),
                ("a".to_owned(), ContainerStartedEvent as i32),
                ("b".to_owned(), ContainerDeletedEvent as i32),
            ]
        );
    }

    #[tokio::test]
    async fn update_runtime_config_keeps_a_valid_pod_cidr() {
        let server = server();
        let request = |cidr: &str| {
            Request::new(proto::UpdateRuntimeConfigRequest {
                runtime_config: Some(proto::RuntimeConfig {
                    network_config: Some(proto::NetworkConfig {
                        pod_cidr: cidr.to_owned(),
                    }),
                }),
            })
        };
        server
            .update_runtime_config(request("10.244.1.0/24,fd00::/64"))
            .await
            .unwrap();
        let err = server
            .update_runtime_config(request("10.244.1.0/40"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        let reply = server
            .status(Request::new(proto::StatusRequest { verbose: true }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(reply.info["podCIDR"], "10.244.1.0/24,fd00::/64");
        // Kept per family for the `ipRanges` of new pods.
        assert_eq!(
            server.sandboxes().pod_cidrs(),
            ["10.244.1.0/24", "fd00::/64"]
        );
    }
}
