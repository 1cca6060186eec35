//! The list RPCs' items, shared by the unary lists and their streamed twins (cri-api v0.36,
//! KEP-5825): the same filters give the same items; the unary reply is refused over the
//! message limit and the streamed one is cut into messages under it (see [`super::batch`]).

use prost::Message;
use tonic::{Response, Status};

use super::runtime::RuntimeServer;
use super::{ResponseStream, batch, convert, instrument};
use crate::proto;

/// A stream of `items` cut into messages under `limit`, each wrapped by `wrap`.
pub(super) fn batched<T, R>(items: Vec<T>, limit: usize, wrap: fn(Vec<T>) -> R) -> ResponseStream<R>
where
    T: Message + Send + 'static,
    R: Send + 'static,
{
    let messages = batch::batches(items, limit);
    tracing::debug!(messages = messages.len(), "streaming list");
    Box::pin(tokio_stream::iter(
        messages.into_iter().map(move |items| Ok(wrap(items))),
    ))
}

impl RuntimeServer {
    /// The `ListPodSandbox` items for `filter`.
    pub(super) fn pod_sandbox_items(
        &self,
        filter: Option<proto::PodSandboxFilter>,
    ) -> Vec<proto::PodSandbox> {
        let filter = convert::pod::pod_filter(filter);
        self.sandboxes()
            .list(&filter)
            .iter()
            .map(|pod| convert::pod::pod_item(pod))
            .collect()
    }

    /// The `ListContainers` items for `filter`.
    pub(super) async fn container_items(
        &self,
        filter: Option<proto::ContainerFilter>,
    ) -> Vec<proto::Container> {
        let filter = convert::container::container_filter(filter);
        self.containers()
            .list(&filter)
            .await
            .iter()
            .map(|container| convert::container::container_item(container))
            .collect()
    }

    /// The `ListContainerStats` items for `filter`.
    pub(super) fn container_stats_items(
        &self,
        filter: Option<proto::ContainerStatsFilter>,
    ) -> Vec<proto::ContainerStats> {
        let filter = filter.unwrap_or_default();
        self.containers()
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
            .map(|(container, usage)| self.container_stats_item(container, usage))
            .collect()
    }

    /// The `ListPodSandboxStats` items for `filter`.
    pub(super) fn pod_stats_items(
        &self,
        filter: Option<proto::PodSandboxStatsFilter>,
    ) -> Vec<proto::PodSandboxStats> {
        let filter = filter.unwrap_or_default();
        let pod_filter = crate::sandbox::PodFilter {
            id: Some(filter.id).filter(|id| !id.is_empty()),
            state: None,
            labels: filter.label_selector.into_iter().collect(),
        };
        self.sandboxes()
            .list(&pod_filter)
            .iter()
            .map(|pod| self.pod_stats(pod))
            .collect()
    }

    /// The `ListPodSandboxMetrics` items: every pod's metrics and its containers'.
    pub(super) fn pod_metrics_items(&self) -> Vec<proto::PodSandboxMetrics> {
        self.sandboxes()
            .list(&crate::sandbox::PodFilter::default())
            .iter()
            .map(|pod| {
                let containers = self
                    .containers()
                    .list_stats(|container| container.pod_id == pod.id);
                let usage = self.sandboxes().usage(&pod.id).ok();
                convert::metrics::pod_metrics(pod, usage.as_ref(), &containers)
            })
            .collect()
    }

    pub(super) async fn stream_pod_sandbox_metrics_rpc(
        &self,
    ) -> Result<Response<ResponseStream<proto::StreamPodSandboxMetricsResponse>>, Status> {
        let span = tracing::info_span!("cri.StreamPodSandboxMetrics");
        instrument::rpc(span, async {
            let items = self.pod_metrics_items();
            Ok(batched(
                items,
                self.max_message_bytes(),
                |pod_sandbox_metrics| proto::StreamPodSandboxMetricsResponse {
                    pod_sandbox_metrics,
                },
            ))
        })
        .await
    }

    pub(super) async fn stream_pod_sandboxes_rpc(
        &self,
        request: proto::StreamPodSandboxesRequest,
    ) -> Result<Response<ResponseStream<proto::StreamPodSandboxesResponse>>, Status> {
        let span = tracing::info_span!("cri.StreamPodSandboxes");
        instrument::rpc(span, async {
            let items = self.pod_sandbox_items(request.filter);
            Ok(batched(items, self.max_message_bytes(), |pod_sandboxes| {
                proto::StreamPodSandboxesResponse { pod_sandboxes }
            }))
        })
        .await
    }

    pub(super) async fn stream_containers_rpc(
        &self,
        request: proto::StreamContainersRequest,
    ) -> Result<Response<ResponseStream<proto::StreamContainersResponse>>, Status> {
        let span = tracing::info_span!("cri.StreamContainers");
        instrument::rpc(span, async {
            let items = self.container_items(request.filter).await;
            Ok(batched(items, self.max_message_bytes(), |containers| {
                proto::StreamContainersResponse { containers }
            }))
        })
        .await
    }

    pub(super) async fn stream_container_stats_rpc(
        &self,
        request: proto::StreamContainerStatsRequest,
    ) -> Result<Response<ResponseStream<proto::StreamContainerStatsResponse>>, Status> {
        let span = tracing::info_span!("cri.StreamContainerStats");
        instrument::rpc(span, async {
            let items = self.container_stats_items(request.filter);
            Ok(batched(
                items,
                self.max_message_bytes(),
                |container_stats| proto::StreamContainerStatsResponse { container_stats },
            ))
        })
        .await
    }

    pub(super) async fn stream_pod_sandbox_stats_rpc(
        &self,
        request: proto::StreamPodSandboxStatsRequest,
    ) -> Result<Response<ResponseStream<proto::StreamPodSandboxStatsResponse>>, Status> {
        let span = tracing::info_span!("cri.StreamPodSandboxStats");
        instrument::rpc(span, async {
            let items = self.pod_stats_items(request.filter);
            Ok(batched(
                items,
                self.max_message_bytes(),
                |pod_sandbox_stats| proto::StreamPodSandboxStatsResponse { pod_sandbox_stats },
            ))
        })
        .await
    }
}
