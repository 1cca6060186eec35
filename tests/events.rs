//! Root integration tests of container events and streamed lists: `GetContainerEvents` over
//! a real lifecycle (two subscribers, exits by stop and on their own, an exit that happened
//! while the daemon was down), the `Stream*` lists cut into messages under a lowered message
//! limit, `RESOURCE_EXHAUSTED` on unary lists over it, and pod metrics matching their
//! descriptors.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use carrack::proto;
use prost::Message;
use support::client::CriClient;
use support::node::Node;
use support::skip_unless_root;
use support::workload::{
    container_config, create, pull, pull_busybox, remove, run_pod, start, stop,
};
use tonic::{Code, Streaming};

/// A hang guard for reading one event (never an assertion about speed).
const EVENT_WAIT: Duration = Duration::from_secs(60);

async fn subscribe(cri: &mut CriClient) -> Streaming<proto::ContainerEventResponse> {
    cri.runtime
        .get_container_events(proto::GetEventsRequest {})
        .await
        .expect("GetContainerEvents")
        .into_inner()
}

async fn remove_pod(cri: &mut CriClient, id: &str) {
    cri.runtime
        .remove_pod_sandbox(proto::RemovePodSandboxRequest {
            pod_sandbox_id: id.to_owned(),
        })
        .await
        .expect("RemovePodSandbox");
}

/// A started node with the busybox image pulled, and a client.
async fn node_with_busybox(builder: support::node::NodeBuilder) -> (Node, CriClient) {
    let node = builder.start();
    let mut cri = node.cri().await;
    pull_busybox(&node, &mut cri).await;
    (node, cri)
}

/// Creates a busybox container `name` running `command` in the pod.
async fn create_in(
    cri: &mut CriClient,
    pod: &(String, proto::PodSandboxConfig),
    name: &str,
    command: &[&str],
) -> String {
    create(cri, &pod.0, &pod.1, container_config(name, command))
        .await
        .expect("CreateContainer")
}

/// The next event of `events` (panics when the stream ends or fails).
async fn next_event(
    events: &mut Streaming<proto::ContainerEventResponse>,
) -> proto::ContainerEventResponse {
    tokio::time::timeout(EVENT_WAIT, events.message())
        .await
        .expect("no event within the hang guard")
        .expect("event stream failed")
        .expect("event stream ended")
}

fn kind(event: &proto::ContainerEventResponse) -> proto::ContainerEventType {
    proto::ContainerEventType::try_from(event.container_event_type).expect("known event type")
}

/// The status of container `id` in `event`.
fn status_in<'a>(event: &'a proto::ContainerEventResponse, id: &str) -> &'a proto::ContainerStatus {
    event
        .containers_statuses
        .iter()
        .find(|status| status.id == id)
        .unwrap_or_else(|| panic!("event {event:?} has no status of {id}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn events_follow_a_full_lifecycle_in_order_for_two_subscribers() {
    if !skip_unless_root() {
        return;
    }
    let (node, mut cri) = node_with_busybox(Node::builder()).await;
    let mut first = subscribe(&mut cri).await;
    let mut second = subscribe(&mut cri).await;
    let pod = run_pod(&node, &mut cri, "lifecycle").await;

    // Stopped by StopContainer.
    let stopped = create_in(&mut cri, &pod, "stopped", &["sleep", "600"]).await;
    start(&mut cri, &stopped).await.expect("StartContainer");
    stop(&mut cri, &stopped, 1).await;
    // Ends on its own with code 3.
    let exits = create_in(&mut cri, &pod, "exits", &["sh", "-c", "exit 3"]).await;
    start(&mut cri, &exits).await.expect("StartContainer");
    let mut seen = Vec::new();
    // Wait for its exit through the events themselves: the pod's created and started, then
    // created, started and stopped of each container.
    while seen.len() < 8 {
        seen.push(next_event(&mut first).await);
    }
    // PodSandboxStatus lists the pod's containers too (evented PLEG relies on it).
    let pod_status = cri
        .runtime
        .pod_sandbox_status(proto::PodSandboxStatusRequest {
            pod_sandbox_id: pod.0.clone(),
            verbose: false,
        })
        .await
        .expect("PodSandboxStatus")
        .into_inner();
    assert!(pod_status.timestamp > 0);
    let listed: BTreeSet<String> = pod_status
        .containers_statuses
        .iter()
        .map(|status| status.id.clone())
        .collect();
    assert_eq!(listed, BTreeSet::from([stopped.clone(), exits.clone()]));
    remove(&mut cri, &stopped).await;
    remove(&mut cri, &exits).await;
    remove_pod(&mut cri, &pod.0).await;
    // Two container deletions, the pod's stop and deletion.
    while seen.len() < 12 {
        seen.push(next_event(&mut first).await);
    }

    use proto::ContainerEventType::*;
    let lifecycle = [
        ContainerCreatedEvent,
        ContainerStartedEvent,
        ContainerStoppedEvent,
        ContainerDeletedEvent,
    ];
    // `sleep` is PID 1 of its own PID namespace: it ignores SIGTERM and is killed.
    for (id, code) in [(&stopped, 137), (&exits, 3)] {
        let mine: Vec<_> = seen.iter().filter(|e| &e.container_id == id).collect();
        let kinds: Vec<_> = mine.iter().map(|e| kind(e)).collect();
        assert_eq!(kinds, lifecycle, "events of {id}");
        for event in &mine {
            let pod_status = event.pod_sandbox_status.as_ref().expect("pod status");
            assert_eq!(pod_status.id, pod.0);
            assert!(event.created_at > 0);
        }
        let states: Vec<i32> = mine.iter().map(|e| status_in(e, id).state).collect();
        use proto::ContainerState::*;
        assert_eq!(
            states,
            [
                ContainerCreated as i32,
                ContainerRunning as i32,
                ContainerExited as i32,
                // Deleted events show the container as it was.
                ContainerExited as i32
            ]
        );
        assert_eq!(status_in(mine[2], id).exit_code, code, "{:?}", mine[2]);
        assert_eq!(status_in(mine[3], id).exit_code, code);
    }
    // The pod's own transitions are events about the pod's id (as containerd sends them),
    // first and last.
    let pod_events: Vec<_> = seen.iter().filter(|e| e.container_id == pod.0).collect();
    assert_eq!(
        pod_events.iter().map(|e| kind(e)).collect::<Vec<_>>(),
        lifecycle
    );
    assert_eq!(seen[0].container_id, pod.0);
    assert_eq!(seen[11].container_id, pod.0);
    let last_pod_status = seen[11].pod_sandbox_status.as_ref().expect("pod status");
    assert_eq!(
        last_pod_status.state,
        proto::PodSandboxState::SandboxNotready as i32
    );
    assert!(seen[11].containers_statuses.is_empty());
    // While both containers existed, every event listed both.
    let both = seen
        .iter()
        .filter(|e| e.containers_statuses.len() == 2)
        .count();
    assert!(both >= 3, "{seen:?}");
    // Timestamps never go back.
    assert!(seen.windows(2).all(|w| w[0].created_at <= w[1].created_at));

    // The second subscriber saw the very same events in the same order.
    let mut also_seen = Vec::new();
    while also_seen.len() < seen.len() {
        also_seen.push(next_event(&mut second).await);
    }
    let key = |e: &proto::ContainerEventResponse| (e.container_id.clone(), e.container_event_type);
    assert_eq!(
        seen.iter().map(key).collect::<Vec<_>>(),
        also_seen.iter().map(key).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exit_while_the_daemon_was_down_is_an_event_after_the_restart() {
    if !skip_unless_root() {
        return;
    }
    let (mut node, mut cri) = node_with_busybox(Node::builder()).await;
    let pod = run_pod(&node, &mut cri, "downtime").await;
    let id = create_in(&mut cri, &pod, "short", &["sh", "-c", "sleep 2; exit 42"]).await;
    start(&mut cri, &id).await.expect("StartContainer");
    node.kill_daemon().expect("kill daemon");
    // Let the container exit while nobody watches (the monitor records it).
    std::thread::sleep(Duration::from_secs(3));
    node.start_daemon().expect("start daemon");
    let mut cri = node.cri().await;
    let mut events = subscribe(&mut cri).await;
    let event = next_event(&mut events).await;
    assert_eq!(event.container_id, id);
    assert_eq!(
        kind(&event),
        proto::ContainerEventType::ContainerStoppedEvent
    );
    let status = status_in(&event, &id);
    assert_eq!(status.exit_code, 42);
    assert_eq!(status.state, proto::ContainerState::ContainerExited as i32);
    remove(&mut cri, &id).await;
    assert_eq!(
        kind(&next_event(&mut events).await),
        proto::ContainerEventType::ContainerDeletedEvent
    );
    remove_pod(&mut cri, &pod.0).await;
}

/// The lowered message limit of the list tests: a few containers' items exceed it.
const SMALL_LIMIT: usize = 1024;

/// Reads every message of a streamed list, checks each is under the limit, returns the items.
async fn collect<M: Message + Default, T>(
    stream: tonic::Response<Streaming<M>>,
    items: impl Fn(M) -> Vec<T>,
) -> (usize, Vec<T>) {
    let mut stream = stream.into_inner();
    let mut messages = 0;
    let mut all = Vec::new();
    while let Some(message) = stream.message().await.expect("stream message") {
        assert!(
            message.encoded_len() <= SMALL_LIMIT,
            "a message of {} bytes",
            message.encoded_len()
        );
        messages += 1;
        all.extend(items(message));
    }
    (messages, all)
}

#[tokio::test(flavor = "multi_thread")]
async fn streamed_lists_stay_under_the_limit_and_unary_lists_over_it_are_refused() {
    if !skip_unless_root() {
        return;
    }
    let (node, mut cri) = node_with_busybox(
        Node::builder().config(&format!("[grpc]\nmax_message_bytes = {SMALL_LIMIT}")),
    )
    .await;
    let pod = run_pod(&node, &mut cri, "lists").await;
    let mut created = BTreeSet::new();
    for n in 0..8 {
        created.insert(create_in(&mut cri, &pod, &format!("c{n}"), &["true"]).await);
    }

    // Unary: over the limit → RESOURCE_EXHAUSTED naming the streamed RPC.
    let err = cri
        .runtime
        .list_containers(proto::ListContainersRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("StreamContainers"), "{err:?}");
    let err = cri
        .runtime
        .list_container_stats(proto::ListContainerStatsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("StreamContainerStats"), "{err:?}");
    // One pod whose eight containers' stats exceed the limit.
    let err = cri
        .runtime
        .list_pod_sandbox_stats(proto::ListPodSandboxStatsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("StreamPodSandboxStats"), "{err:?}");
    // A filter that makes the reply small passes.
    let one = created.first().unwrap().clone();
    let listed = cri
        .runtime
        .list_containers(proto::ListContainersRequest {
            filter: Some(proto::ContainerFilter {
                id: one.clone(),
                ..Default::default()
            }),
        })
        .await
        .expect("ListContainers with a filter")
        .into_inner();
    assert_eq!(listed.containers.len(), 1);

    // Streamed: several messages, each under the limit, every container exactly once.
    let reply = cri
        .runtime
        .stream_containers(proto::StreamContainersRequest::default())
        .await
        .expect("StreamContainers");
    let (messages, containers) =
        collect(reply, |m: proto::StreamContainersResponse| m.containers).await;
    assert!(messages > 1, "{messages} messages");
    let ids: Vec<String> = containers.into_iter().map(|c| c.id).collect();
    assert_eq!(ids.len(), created.len(), "each once: {ids:?}");
    assert_eq!(ids.into_iter().collect::<BTreeSet<_>>(), created);
    // The same filters as the unary twin.
    let reply = cri
        .runtime
        .stream_containers(proto::StreamContainersRequest {
            filter: Some(proto::ContainerFilter {
                id: one.clone(),
                ..Default::default()
            }),
        })
        .await
        .expect("StreamContainers with a filter");
    let (_, containers) = collect(reply, |m: proto::StreamContainersResponse| m.containers).await;
    assert_eq!(containers.len(), 1);
    assert_eq!(containers[0].id, one);

    let reply = cri
        .runtime
        .stream_container_stats(proto::StreamContainerStatsRequest::default())
        .await
        .expect("StreamContainerStats");
    let (messages, stats) = collect(reply, |m: proto::StreamContainerStatsResponse| {
        m.container_stats
    })
    .await;
    assert!(messages > 1, "{messages} messages");
    let ids: Vec<String> = stats
        .into_iter()
        .map(|s| s.attributes.expect("attributes").id)
        .collect();
    assert_eq!(ids.len(), created.len());
    assert_eq!(ids.into_iter().collect::<BTreeSet<_>>(), created);

    let reply = cri
        .runtime
        .stream_pod_sandboxes(proto::StreamPodSandboxesRequest::default())
        .await
        .expect("StreamPodSandboxes");
    let (_, pods) = collect(reply, |m: proto::StreamPodSandboxesResponse| {
        m.pod_sandboxes
    })
    .await;
    let pod_ids: Vec<String> = pods.into_iter().map(|p| p.id).collect();
    assert_eq!(pod_ids, std::slice::from_ref(&pod.0));
    let reply = cri
        .image
        .stream_images(proto::StreamImagesRequest::default())
        .await
        .expect("StreamImages");
    let (_, images) = collect(reply, |m: proto::StreamImagesResponse| m.images).await;
    assert_eq!(images.len(), 1, "{images:?}");

    // Pod stats: with two containers left a pod's item fits the limit.
    for id in created.iter().skip(2) {
        remove(&mut cri, id).await;
    }
    let reply = cri
        .runtime
        .stream_pod_sandbox_stats(proto::StreamPodSandboxStatsRequest::default())
        .await
        .expect("StreamPodSandboxStats");
    let (_, stats) = collect(reply, |m: proto::StreamPodSandboxStatsResponse| {
        m.pod_sandbox_stats
    })
    .await;
    assert_eq!(stats.len(), 1);
    assert_eq!(stats[0].linux.as_ref().expect("linux").containers.len(), 2);

    // Enough pods, and enough tags of the one image, to go over the limit too.
    let mut extra = Vec::new();
    for n in 0..10 {
        extra.push(run_pod(&node, &mut cri, &format!("extra-{n}")).await.0);
    }
    let err = cri
        .runtime
        .list_pod_sandbox(proto::ListPodSandboxRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("StreamPodSandboxes"), "{err:?}");
    for id in extra {
        remove_pod(&mut cri, &id).await;
    }
    for n in 0..40 {
        node.push(support::images::busybox(), &format!("library/busybox:t{n}"))
            .expect("push busybox");
        pull(&mut cri, &format!("busybox:t{n}"))
            .await
            .expect("PullImage");
    }
    let err = cri
        .image
        .list_images(proto::ListImagesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("StreamImages"), "{err:?}");
    remove_pod(&mut cri, &pod.0).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pod_metrics_match_their_descriptors_for_a_running_pod() {
    if !skip_unless_root() {
        return;
    }
    let (node, mut cri) = node_with_busybox(Node::builder()).await;
    let pod = run_pod(&node, &mut cri, "metrics").await;
    let id = create_in(&mut cri, &pod, "app", &["sleep", "600"]).await;
    start(&mut cri, &id).await.expect("StartContainer");

    let descriptors: HashMap<String, proto::MetricDescriptor> = cri
        .runtime
        .list_metric_descriptors(proto::ListMetricDescriptorsRequest {})
        .await
        .expect("ListMetricDescriptors")
        .into_inner()
        .descriptors
        .into_iter()
        .map(|descriptor| (descriptor.name.clone(), descriptor))
        .collect();
    let pods = cri
        .runtime
        .list_pod_sandbox_metrics(proto::ListPodSandboxMetricsRequest {})
        .await
        .expect("ListPodSandboxMetrics")
        .into_inner()
        .pod_metrics;
    let mine = pods
        .iter()
        .find(|metrics| metrics.pod_sandbox_id == pod.0)
        .expect("the pod's metrics");
    // Every metric has a descriptor of its name with one label key per label value.
    let all: Vec<&proto::Metric> = mine
        .metrics
        .iter()
        .chain(mine.container_metrics.iter().flat_map(|c| &c.metrics))
        .collect();
    for metric in &all {
        let descriptor = descriptors
            .get(&metric.name)
            .unwrap_or_else(|| panic!("no descriptor for {}", metric.name));
        assert_eq!(
            metric.label_values.len(),
            descriptor.label_keys.len(),
            "{metric:?} vs {descriptor:?}"
        );
        assert!(metric.timestamp > 0);
    }
    // The running container reports what kubelet's cAdvisor endpoint needs.
    let container = mine
        .container_metrics
        .iter()
        .find(|c| c.container_id == id)
        .expect("the container's metrics");
    let value_of = |name: &str| {
        container
            .metrics
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("no {name} in {container:?}"))
            .value
            .expect("value")
            .value
    };
    assert!(value_of("container_memory_working_set_bytes") > 0);
    assert!(value_of("container_memory_usage_bytes") > 0);
    assert!(value_of("container_processes") >= 1);
    let _ = value_of("container_cpu_usage_seconds_total");
    let _ = value_of("container_fs_usage_bytes");
    let keys = &descriptors["container_processes"].label_keys;
    let labels: HashMap<&str, &str> = keys
        .iter()
        .map(String::as_str)
        .zip(
            container
                .metrics
                .iter()
                .find(|m| m.name == "container_processes")
                .expect("processes")
                .label_values
                .iter()
                .map(String::as_str),
        )
        .collect();
    assert_eq!(labels["container"], "app");
    assert_eq!(labels["pod"], "metrics");
    assert_eq!(labels["namespace"], "default");
    assert_eq!(labels["id"], id);

    // The streamed twin lists the same pods.
    let mut stream = cri
        .runtime
        .stream_pod_sandbox_metrics(proto::StreamPodSandboxMetricsRequest {})
        .await
        .expect("StreamPodSandboxMetrics")
        .into_inner();
    let mut streamed = Vec::new();
    while let Some(message) = stream.message().await.expect("stream message") {
        streamed.extend(
            message
                .pod_sandbox_metrics
                .into_iter()
                .map(|m| m.pod_sandbox_id),
        );
    }
    assert_eq!(streamed, std::slice::from_ref(&pod.0));

    stop(&mut cri, &id, 1).await;
    remove(&mut cri, &id).await;
    remove_pod(&mut cri, &pod.0).await;
}

/// A connection to `node` whose HTTP/2 stream window is small, so a stream the test does not
/// read stops taking events after a few kilobytes (tonic's default window is megabytes).
async fn small_window_client(node: &Node) -> CriClient {
    let socket = node.socket_path();
    let channel = tonic::transport::Endpoint::from_static("http://[::]:50051")
        .initial_stream_window_size(Some(4096))
        .connect_with_connector(tower::service_fn(move |_uri| {
            let socket = socket.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(socket).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        }))
        .await
        .expect("connect with a small window");
    CriClient {
        runtime: proto::runtime_service_client::RuntimeServiceClient::new(channel.clone()),
        image: proto::image_service_client::ImageServiceClient::new(channel),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_subscriber_that_does_not_read_is_dropped_without_blocking_the_runtime() {
    if !skip_unless_root() {
        return;
    }
    let node = Node::start();
    let mut cri = node.cri().await;
    let mut slow = small_window_client(&node).await;
    let mut unread = subscribe(&mut slow).await;
    // A subscriber that keeps reading, counting.
    let mut fast = subscribe(&mut cri).await;
    let (count_tx, mut count_rx) = tokio::sync::watch::channel(0_usize);
    let reader = tokio::spawn(async move {
        let mut seen = 0;
        while let Ok(Some(_)) = fast.message().await {
            seen += 1;
            let _ = count_tx.send(seen);
        }
    });

    // Pod churn (four events a cycle) until the daemon gives up on the unread subscriber:
    // its queue (1024 events) and the transport's buffers fill; the runtime never waits.
    let dropped = "container event subscriber is not reading; dropping it";
    let mut cycles = 0;
    while !node.daemon_log().contains(dropped) {
        assert!(cycles < 1000, "the unread subscriber was never dropped");
        for _ in 0..20 {
            let (id, _) = run_pod(&node, &mut cri, &format!("churn-{cycles}")).await;
            stop_pod(&mut cri, &id).await;
            remove_pod(&mut cri, &id).await;
            cycles += 1;
        }
    }
    // The reading subscriber got every event.
    let expected = cycles * 4;
    tokio::time::timeout(EVENT_WAIT, count_rx.wait_for(|seen| *seen >= expected))
        .await
        .expect("hang guard: the reading subscriber's events")
        .expect("reader alive");
    // The unread one gets what was queued, then the end of its stream saying why.
    let mut delivered = 0;
    let err = loop {
        match tokio::time::timeout(EVENT_WAIT, unread.message())
            .await
            .expect("hang guard: the dropped stream ends")
        {
            Ok(Some(_)) => delivered += 1,
            Ok(None) => panic!("the dropped stream ended without a status"),
            Err(status) => break status,
        }
    };
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(delivered < expected, "{delivered} of {expected}");
    reader.abort();
}

async fn stop_pod(cri: &mut CriClient, id: &str) {
    cri.runtime
        .stop_pod_sandbox(proto::StopPodSandboxRequest {
            pod_sandbox_id: id.to_owned(),
        })
        .await
        .expect("StopPodSandbox");
}
