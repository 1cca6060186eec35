//! Registry mirrors from the config: ordered endpoints with fallback to the next one on
//! any failure, and a clear UNAVAILABLE naming every endpoint when all fail.

use tonic::Code;

use crate::support::http::HttpServer;
use crate::support::images;
use crate::support::node::Node;
use crate::support::skip_unless_root;
use crate::{assert_status, ingest_leftovers, layer_dirs, pull, status};

/// A mirror that answers 404 to everything, on the node's loopback.
const EMPTY_MIRROR: &str = "127.0.0.1:5003";

#[tokio::test(flavor = "multi_thread")]
async fn mirror_fallback_skips_dead_and_empty_endpoints() {
    if !skip_unless_root() {
        return;
    }
    // Port 1: nothing listens, so connecting is refused at once.
    let node = Node::builder()
        .config(&format!(
            "[registry.mirrors.\"carrack.test\"]\n\
             endpoints = [\"http://127.0.0.1:1\", \"http://{EMPTY_MIRROR}\", \"http://127.0.0.1:5000\"]\n\
             use_upstream = false\n"
        ))
        .start();
    let empty = HttpServer::start(&node.netns_path(), EMPTY_MIRROR, |exchange| {
        exchange.json(
            404,
            &serde_json::json!({"errors": [{"code": "MANIFEST_UNKNOWN", "message": "not here"}]}),
        )
    })
    .expect("start the empty mirror");
    let image = images::labelled("mirror-fallback");
    node.push(&image, "carrack/fallback:1").expect("push");
    let mut cri = node.cri().await;

    let id = pull(&mut cri, "carrack.test/carrack/fallback:1")
        .await
        .expect("pull through the third endpoint");
    assert_eq!(id, image.id());
    // The empty mirror was asked (with the namespace the mirror stands in for) and
    // answered 404; the pull went on to the next endpoint.
    let asked = empty.requests();
    assert!(
        asked.iter().any(
            |request| request.path() == "/v2/carrack/fallback/manifests/1"
                && request.query_all("ns") == ["carrack.test"]
        ),
        "{asked:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn all_mirrors_dead_without_upstream_is_unavailable_naming_each_endpoint() {
    if !skip_unless_root() {
        return;
    }
    let node = Node::builder()
        .config(
            "[registry.mirrors.\"carrack.test\"]\n\
             endpoints = [\"http://127.0.0.1:1\", \"http://127.0.0.1:2\"]\n\
             use_upstream = false\n",
        )
        .start();
    node.push(images::busybox(), "carrack/dead:1")
        .expect("push");
    let mut cri = node.cri().await;
    let reference = "carrack.test/carrack/dead:1";
    let err = pull(&mut cri, reference)
        .await
        .expect_err("every mirror dead");
    assert_status(
        &err,
        Code::Unavailable,
        &[
            "carrack.test/carrack/dead",
            "http://127.0.0.1:1",
            "http://127.0.0.1:2",
            "all 2 endpoints failed",
        ],
    );
    assert!(status(&mut cri, reference).await.is_none());
    assert!(layer_dirs(&node).is_empty());
    assert!(ingest_leftovers(&node).is_empty());
}
