//! Time limits of a pull: the request's own deadline, and the stall timeout that aborts a
//! transfer making no progress (a fake registry that sends half a blob, then nothing).

use std::io::Write;
use std::time::{Duration, Instant};

use carrack::proto;
use tonic::Code;

use crate::support::http::{Exchange, HttpServer};
use crate::support::images::{self, TestImage, media_type};
use crate::support::node::Node;
use crate::support::skip_unless_root;
use crate::{assert_status, ingest_leftovers, layer_dirs, list, pull, spec, status};

/// Where the stalling registry listens, on the node's loopback.
const STALLING_REGISTRY: &str = "127.0.0.1:5002";

#[tokio::test(flavor = "multi_thread")]
async fn pull_past_its_deadline_is_deadline_exceeded_and_the_daemon_stays_healthy() {
    if !skip_unless_root() {
        return;
    }
    let node = Node::start();
    node.push(images::layers(), "carrack/deadline:1")
        .expect("push");
    let mut cri = node.cri().await;
    let reference = "carrack.test/carrack/deadline:1";

    let mut request = tonic::Request::new(proto::PullImageRequest {
        image: spec(reference),
        ..Default::default()
    });
    request.set_timeout(Duration::from_millis(1));
    let err = cri
        .image
        .pull_image(request)
        .await
        .expect_err("a 1 ms deadline");
    // A grpc-go client (kubelet, crictl) reports DEADLINE_EXCEEDED from its own expired
    // context. A tonic client only has the server's answer, and tonic's server answers
    // an expired `grpc-timeout` with CANCELLED "Timeout expired" before the handler can.
    let server_timeout = err.code() == Code::Cancelled && err.message() == "Timeout expired";
    assert!(
        err.code() == Code::DeadlineExceeded || server_timeout,
        "{err:?}"
    );

    // The daemon still answers, and a pull with time to spare succeeds (it may reuse
    // layers the abandoned pull finished).
    assert!(list(&mut cri).await.len() <= 1);
    let id = pull(&mut cri, reference)
        .await
        .expect("pull with no deadline");
    assert_eq!(id, images::layers().id());
    assert_eq!(status(&mut cri, reference).await.map(|i| i.id), Some(id));
    assert_eq!(layer_dirs(&node).len(), images::layers().layers.len());
    assert!(ingest_leftovers(&node).is_empty());
}

/// Serves `image` as `carrack/stall:1`, except that the body of its last layer stops
/// after half its bytes while the connection stays open.
fn stalling_registry(exchange: &mut Exchange<'_>, image: &TestImage) -> std::io::Result<()> {
    let path = exchange.request.path().to_owned();
    let stalled = image.layers.last().map(|layer| layer.digest.clone());
    if path == "/v2/" {
        return exchange.json(200, &serde_json::json!({}));
    }
    if path == "/v2/carrack/stall/manifests/1"
        || path == format!("/v2/carrack/stall/manifests/{}", image.digest())
    {
        return exchange.respond(
            200,
            &[
                ("Content-Type", image.manifest.media_type),
                ("Docker-Content-Digest", image.digest()),
            ],
            &image.manifest.data,
        );
    }
    if path == format!("/v2/carrack/stall/blobs/{}", image.config.digest) {
        return exchange.respond(
            200,
            &[("Content-Type", "application/octet-stream")],
            &image.config.data,
        );
    }
    for layer in &image.layers {
        if path != format!("/v2/carrack/stall/blobs/{}", layer.digest) {
            continue;
        }
        if Some(&layer.digest) != stalled.as_ref() {
            return exchange.respond(
                200,
                &[("Content-Type", media_type::OCI_LAYER_GZIP)],
                &layer.gzip,
            );
        }
        exchange.head(
            200,
            &[("Content-Type", "application/octet-stream")],
            Some(layer.gzip.len() as u64),
        )?;
        exchange
            .stream
            .write_all(&layer.gzip[..layer.gzip.len() / 2])?;
        exchange.stream.flush()?;
        exchange.hold(Duration::from_secs(60));
        return Ok(());
    }
    exchange.json(
        404,
        &serde_json::json!({"errors": [{"code": "NOT_FOUND", "message": path}]}),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn stalled_blob_transfer_is_aborted_and_leaves_nothing_behind() {
    if !skip_unless_root() {
        return;
    }
    let node = Node::builder()
        .config(&format!(
            "[images]\nstall_timeout_secs = 1\n\
             [registry.mirrors.\"stall.test\"]\n\
             endpoints = [\"http://{STALLING_REGISTRY}\"]\nuse_upstream = false\n"
        ))
        .start();
    // One layer, so that nothing at all may be committed.
    let image = images::labelled("stall");
    let serving = image.clone();
    let registry = HttpServer::start(&node.netns_path(), STALLING_REGISTRY, move |exchange| {
        stalling_registry(exchange, &serving)
    })
    .expect("start the stalling registry");
    let mut cri = node.cri().await;
    let reference = "stall.test/carrack/stall:1";

    let started = Instant::now();
    let mut puller = cri.clone();
    let pulling = tokio::spawn(async move { pull(&mut puller, reference).await });
    // While the transfer hangs, the other image RPCs answer at once.
    let stalled_blob = format!("/v2/carrack/stall/blobs/{}", image.layers[0].digest);
    while !registry
        .requests()
        .iter()
        .any(|request| request.path() == stalled_blob)
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the blob was never asked for"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut quick = tonic::Request::new(proto::ListImagesRequest::default());
    quick.set_timeout(Duration::from_millis(500));
    cri.image
        .list_images(quick)
        .await
        .expect("ListImages during a stalled pull");
    let mut quick = tonic::Request::new(proto::ImageStatusRequest {
        image: spec(reference),
        verbose: false,
    });
    quick.set_timeout(Duration::from_millis(500));
    cri.image
        .image_status(quick)
        .await
        .expect("ImageStatus during a stalled pull");

    let err = pulling
        .await
        .expect("the pull task")
        .expect_err("stalled transfer");
    let took = started.elapsed();
    let stalled_layer = &image.layers.last().expect("a layer").digest;
    assert_status(
        &err,
        Code::DeadlineExceeded,
        &["stalled", stalled_layer.as_str(), STALLING_REGISTRY],
    );
    assert!(
        took < Duration::from_secs(15),
        "the stall was noticed after {took:?}"
    );

    // No half layer, no image, no debris; and the daemon still answers.
    assert!(status(&mut cri, reference).await.is_none());
    assert!(list(&mut cri).await.is_empty());
    assert!(layer_dirs(&node).is_empty(), "{:?}", layer_dirs(&node));
    assert!(
        ingest_leftovers(&node).is_empty(),
        "{:?}",
        ingest_leftovers(&node)
    );
}
