//! Concurrent pulls of one image: both succeed with one id, and every layer is
//! downloaded once (the registry's access log counts the GETs).

use crate::support::images;
use crate::support::node::Node;
use crate::support::skip_unless_root;
use crate::{ingest_leftovers, layer_dirs, list, pull};

/// How many times the registry served `GET /v2/<repository>/blobs/<digest>`.
fn blob_gets(log: &str, repository: &str, digest: &str) -> usize {
    let request = format!("\"GET /v2/{repository}/blobs/{digest}");
    log.lines().filter(|line| line.contains(&request)).count()
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_pulls_of_one_image_share_one_download_per_layer() {
    if !skip_unless_root() {
        return;
    }
    let node = Node::start();
    let image = images::layers();
    node.push(image, "carrack/concurrent:1").expect("push");
    let cri = node.cri().await;
    let reference = "carrack.test/carrack/concurrent:1";

    let (mut first, mut second) = (cri.clone(), cri.clone());
    let (a, b) = tokio::join!(pull(&mut first, reference), pull(&mut second, reference));
    let (a, b) = (a.expect("first pull"), b.expect("second pull"));
    assert_eq!(a, b);
    assert_eq!(a, image.id());
    let mut cri = cri;
    let listed = list(&mut cri).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].repo_tags, vec![reference]);
    assert_eq!(layer_dirs(&node).len(), image.layers.len());
    assert!(ingest_leftovers(&node).is_empty());

    // The registry logs each request once it is answered; give it a moment.
    let log = wait_for_log(&node, image);
    for layer in &image.layers {
        assert_eq!(
            blob_gets(&log, "carrack/concurrent", &layer.digest),
            1,
            "layer {} fetched once",
            layer.digest
        );
    }
}

/// The registry log once it shows a GET for every layer (or after 5 s).
fn wait_for_log(node: &Node, image: &images::TestImage) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let log = node.registry().log();
        let all = image
            .layers
            .iter()
            .all(|layer| blob_gets(&log, "carrack/concurrent", &layer.digest) > 0);
        if all || std::time::Instant::now() >= deadline {
            return log;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
