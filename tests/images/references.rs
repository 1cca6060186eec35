//! What an image is called: pulls by digest and by tag, tags that move to new content, one
//! image under several tags (critest's Image Manager and Image ID consistency specs), and
//! removal of every layer of a multi-layer image.

use std::path::PathBuf;

use tonic::Code;

use crate::support::images;
use crate::support::node::Node;
use crate::support::skip_unless_root;
use crate::{layer_dirs, list, pull, remove, status};

#[tokio::test(flavor = "multi_thread")]
async fn pull_by_digest_has_no_tag_and_exactly_that_repo_digest() {
    if !skip_unless_root() {
        return;
    }
    let node = Node::start();
    let image = images::labelled("by-digest");
    let digest = node.push(&image, "carrack/digest:v1").expect("push");
    let mut cri = node.cri().await;

    let by_digest = format!("carrack.test/carrack/digest@{digest}");
    let id = pull(&mut cri, &by_digest).await.expect("pull by digest");
    assert_eq!(id, image.id());
    let found = status(&mut cri, &by_digest)
        .await
        .expect("status by digest");
    assert_eq!(found.id, id);
    assert!(found.repo_tags.is_empty(), "{:?}", found.repo_tags);
    assert_eq!(found.repo_digests, vec![by_digest.clone()]);
    // The tag was never pulled, so it names nothing yet.
    assert!(
        status(&mut cri, "carrack.test/carrack/digest:v1")
            .await
            .is_none()
    );

    // Pulling the tag of the same content adds the tag, and the digest stays the one.
    let again = pull(&mut cri, "carrack.test/carrack/digest:v1")
        .await
        .expect("pull by tag");
    assert_eq!(again, id);
    let found = status(&mut cri, &id).await.expect("status by id");
    assert_eq!(found.repo_tags, vec!["carrack.test/carrack/digest:v1"]);
    assert_eq!(found.repo_digests, vec![by_digest]);
    assert_eq!(list(&mut cri).await.len(), 1);

    // A digest the registry does not have is NOT_FOUND, naming it.
    let absent = images::sha256_digest(b"no such manifest");
    let err = pull(&mut cri, &format!("carrack.test/carrack/digest@{absent}"))
        .await
        .expect_err("absent digest");
    crate::assert_status(&err, Code::NotFound, &[&absent]);
}

#[tokio::test(flavor = "multi_thread")]
async fn pulling_a_moved_tag_retags_and_the_old_image_keeps_its_id() {
    if !skip_unless_root() {
        return;
    }
    let node = Node::start();
    let old = images::labelled("retag-old");
    let new = images::labelled("retag-new");
    let tag = "carrack.test/carrack/retag:v1";
    let old_digest = node.push(&old, "carrack/retag:v1").expect("push old");
    let mut cri = node.cri().await;
    let old_id = pull(&mut cri, tag).await.expect("pull old");
    assert_eq!(old_id, old.id());

    let new_digest = node.push(&new, "carrack/retag:v1").expect("move the tag");
    let new_id = pull(&mut cri, tag).await.expect("pull the moved tag");
    assert_eq!(new_id, new.id());
    assert_ne!(new_id, old_id);

    let current = status(&mut cri, tag).await.expect("status by tag");
    assert_eq!(current.id, new_id);
    assert_eq!(current.repo_tags, vec![tag]);
    assert_eq!(
        current.repo_digests,
        vec![format!("carrack.test/carrack/retag@{new_digest}")]
    );
    let previous = status(&mut cri, &old_id)
        .await
        .expect("old image still there");
    assert_eq!(previous.id, old_id);
    assert!(previous.repo_tags.is_empty(), "{:?}", previous.repo_tags);
    assert_eq!(
        previous.repo_digests,
        vec![format!("carrack.test/carrack/retag@{old_digest}")]
    );
    assert_eq!(list(&mut cri).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn one_image_under_two_tags_of_a_repository_has_one_id_and_both_tags() {
    if !skip_unless_root() {
        return;
    }
    let node = Node::start();
    let image = images::labelled("two-tags");
    let digest = node.push(&image, "carrack/twotags:a").expect("push a");
    node.push(&image, "carrack/twotags:b").expect("push b");
    let mut cri = node.cri().await;
    let a = pull(&mut cri, "carrack.test/carrack/twotags:a")
        .await
        .expect("pull a");
    let b = pull(&mut cri, "carrack.test/carrack/twotags:b")
        .await
        .expect("pull b");
    assert_eq!(a, b);
    assert_eq!(a, image.id());
    let listed = list(&mut cri).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        listed[0].repo_tags,
        vec![
            "carrack.test/carrack/twotags:a",
            "carrack.test/carrack/twotags:b"
        ]
    );
    assert_eq!(
        listed[0].repo_digests,
        vec![format!("carrack.test/carrack/twotags@{digest}")]
    );
    for name in [
        "carrack.test/carrack/twotags:a",
        "carrack.test/carrack/twotags:b",
    ] {
        assert_eq!(status(&mut cri, name).await.map(|i| i.id), Some(a.clone()));
    }

    // Removing by one tag removes the image with both.
    remove(&mut cri, "carrack.test/carrack/twotags:a").await;
    assert!(
        status(&mut cri, "carrack.test/carrack/twotags:b")
            .await
            .is_none()
    );
    assert!(list(&mut cri).await.is_empty());
}

/// Garbage collection visited layers in chain-id (hash) order and stopped at the first
/// parent it met before its child ("layer in use by layer …"): RemoveImage of a
/// multi-layer image failed, after the record was gone, and left the layers on disk.
#[tokio::test(flavor = "multi_thread")]
async fn removing_a_multi_layer_image_collects_every_layer() {
    if !skip_unless_root() {
        return;
    }
    let node = Node::start();
    node.push(images::layers(), "carrack/layers:1")
        .expect("push layers");
    node.push(images::busybox(), "carrack/busybox:1")
        .expect("push busybox");
    let mut cri = node.cri().await;
    pull(&mut cri, "carrack.test/carrack/layers:1")
        .await
        .expect("pull layers");
    pull(&mut cri, "carrack.test/carrack/busybox:1")
        .await
        .expect("pull busybox");
    assert_eq!(layer_dirs(&node).len(), 4, "busybox layer shared, 3 on top");

    // The shared base layer stays while busybox needs it.
    remove(&mut cri, "carrack.test/carrack/layers:1").await;
    assert!(
        status(&mut cri, "carrack.test/carrack/layers:1")
            .await
            .is_none()
    );
    assert_eq!(layer_dirs(&node).len(), 1, "{:?}", layer_dirs(&node));
    remove(&mut cri, "carrack.test/carrack/busybox:1").await;
    assert_eq!(layer_dirs(&node), Vec::<PathBuf>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn five_concurrent_removals_of_one_image_all_succeed() {
    if !skip_unless_root() {
        return;
    }
    let node = Node::start();
    node.push(images::layers(), "carrack/layers:1")
        .expect("push layers");
    let mut cri = node.cri().await;
    let id = pull(&mut cri, "carrack.test/carrack/layers:1")
        .await
        .expect("pull layers");
    let names = [
        id.clone(),
        "carrack.test/carrack/layers:1".to_owned(),
        id["sha256:".len().."sha256:".len() + 12].to_owned(),
        id.clone(),
        "carrack.test/carrack/layers:1".to_owned(),
    ];
    let removals = names.into_iter().map(|name| {
        let mut client = cri.clone();
        tokio::spawn(async move { remove(&mut client, &name).await })
    });
    for removal in removals.collect::<Vec<_>>() {
        removal.await.expect("a removal task");
    }
    assert!(list(&mut cri).await.is_empty());
    assert_eq!(layer_dirs(&node), Vec::<PathBuf>::new());
}
