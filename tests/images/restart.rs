//! Images across daemon restarts: a clean restart changes nothing that clients see, and
//! a daemon killed in the middle of a pull comes back with neither the image nor debris.

use std::time::{Duration, Instant};

use crate::support::images;
use crate::support::node::Node;
use crate::support::skip_unless_root;
use crate::{ingest_leftovers, layer_dirs, list, pull, status, status_verbose};

#[tokio::test(flavor = "multi_thread")]
async fn images_survive_a_daemon_restart_unchanged() {
    if !skip_unless_root() {
        return;
    }
    let mut node = Node::start();
    node.push(images::busybox(), "library/busybox:latest")
        .expect("push busybox");
    node.push(images::layers(), "carrack/layers:1")
        .expect("push layers");
    let mut cri = node.cri().await;
    pull(&mut cri, "busybox").await.expect("pull busybox");
    pull(&mut cri, "carrack.test/carrack/layers:1")
        .await
        .expect("pull layers");
    let before = list(&mut cri).await;
    let (busybox_before, info_before) = status_verbose(&mut cri, "busybox").await;
    let layers_before = layer_dirs(&node);
    drop(cri);

    node.restart_daemon().expect("restart the daemon");
    let mut cri = node.cri().await;
    assert_eq!(list(&mut cri).await, before);
    let (busybox_after, info_after) = status_verbose(&mut cri, "busybox").await;
    assert_eq!(busybox_after, busybox_before);
    assert_eq!(info_after, info_before);
    for image in &before {
        for name in image.repo_tags.iter().chain(&image.repo_digests) {
            assert_eq!(status(&mut cri, name).await.as_ref(), Some(image), "{name}");
        }
    }
    let mut layers_after = layer_dirs(&node);
    let mut layers_before = layers_before;
    layers_after.sort();
    layers_before.sort();
    assert_eq!(layers_after, layers_before);
    // Pulling again is a no-op that changes nothing either.
    pull(&mut cri, "busybox").await.expect("pull again");
    assert_eq!(list(&mut cri).await, before);
}

/// A daemon killed mid-pull left the layers it had committed behind, referenced by no
/// image: they were never collected (only a later RemoveImage swept them), so the
/// image filesystem grew with every interrupted pull. Recovery now collects them.
#[tokio::test(flavor = "multi_thread")]
async fn daemon_killed_during_a_pull_comes_back_without_the_image_or_debris() {
    if !skip_unless_root() {
        return;
    }
    let mut node = Node::start();
    // About 50 MB in 5 layers: long enough to be caught in the middle.
    let image = images::big(5, 10 << 20, 8).expect("build the big image");
    node.push(&image, "carrack/big:1")
        .expect("push the big image");
    let reference = "carrack.test/carrack/big:1";
    let cri = node.cri().await;

    let mut puller = cri.clone();
    let pulling = tokio::spawn(async move { pull(&mut puller, reference).await });
    // Kill once a layer is committed and another is being unpacked, before the image is.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let committed = !layer_dirs(&node).is_empty();
        let unpacking = !ingest_leftovers(&node).is_empty();
        assert!(
            !pulling.is_finished(),
            "the pull finished before it could be interrupted"
        );
        if committed && unpacking {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no layer was committed within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    node.kill_daemon().expect("kill -9 the daemon");
    let outcome = pulling.await.expect("the pull task");
    assert!(outcome.is_err(), "the pull cannot succeed: {outcome:?}");
    drop(cri);

    node.start_daemon().expect("start the daemon again");
    let mut cri = node.cri().await;
    assert!(status(&mut cri, reference).await.is_none());
    assert!(list(&mut cri).await.is_empty());
    assert!(
        ingest_leftovers(&node).is_empty(),
        "{:?}",
        ingest_leftovers(&node)
    );
    assert!(
        layer_dirs(&node).is_empty(),
        "orphan layers: {:?}",
        layer_dirs(&node)
    );

    let id = pull(&mut cri, reference)
        .await
        .expect("pull after the crash");
    assert_eq!(id, image.id());
    assert_eq!(layer_dirs(&node).len(), image.layers.len());
    assert!(ingest_leftovers(&node).is_empty());
}
