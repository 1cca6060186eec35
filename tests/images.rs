//! Root integration tests of the ImageService: pulls through a mirror to the node's local
//! registry, status by every kind of reference, listing, removal and garbage collection.

mod support;

use carrack::proto;
use support::images;
use support::node::Node;
use support::skip_unless_root;
use tonic::Code;

fn spec(image: &str) -> Option<proto::ImageSpec> {
    Some(proto::ImageSpec {
        image: image.to_owned(),
        ..Default::default()
    })
}

async fn pull(cri: &mut support::client::CriClient, image: &str) -> Result<String, tonic::Status> {
    cri.image
        .pull_image(proto::PullImageRequest {
            image: spec(image),
            ..Default::default()
        })
        .await
        .map(|reply| reply.into_inner().image_ref)
}

async fn status(cri: &mut support::client::CriClient, image: &str) -> Option<proto::Image> {
    cri.image
        .image_status(proto::ImageStatusRequest {
            image: spec(image),
            verbose: false,
        })
        .await
        .expect("ImageStatus")
        .into_inner()
        .image
}

#[tokio::test(flavor = "multi_thread")]
async fn pull_status_list_and_remove_through_a_mirror() {
    if !skip_unless_root() {
        return;
    }
    let node = Node::start();
    let image = images::busybox();
    let manifest_digest = node
        .push(image, "library/busybox:latest")
        .expect("push busybox");
    node.push(image, "e2e-test-images/busybox:1.29-2")
        .expect("push second name");
    let mut cri = node.cri().await;

    // docker.io normalisation and the mirror to the local registry.
    let id = pull(&mut cri, "busybox").await.expect("PullImage busybox");
    assert_eq!(id, image.config.digest, "image id is the config digest");

    let by_tag = status(&mut cri, "busybox")
        .await
        .expect("status by short name");
    assert_eq!(by_tag.id, id);
    assert_eq!(by_tag.repo_tags, vec!["docker.io/library/busybox:latest"]);
    let repo_digest = format!("docker.io/library/busybox@{manifest_digest}");
    assert_eq!(by_tag.repo_digests, vec![repo_digest.clone()]);
    assert!(by_tag.size > 0);
    for name in [
        id.as_str(),
        &id["sha256:".len()..],
        &id["sha256:".len().."sha256:".len() + 12],
        repo_digest.as_str(),
        "docker.io/library/busybox:latest",
    ] {
        let found = status(&mut cri, name).await;
        assert_eq!(found.map(|i| i.id), Some(id.clone()), "status by {name}");
    }
    assert!(status(&mut cri, "busybox:absent").await.is_none());

    // The same content under a second registry name is one image with two tags.
    let second = pull(&mut cri, "registry.k8s.io/e2e-test-images/busybox:1.29-2")
        .await
        .expect("PullImage second name");
    assert_eq!(second, id);
    let listed = cri
        .image
        .list_images(proto::ListImagesRequest::default())
        .await
        .expect("ListImages")
        .into_inner()
        .images;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].repo_tags.len(), 2, "{:?}", listed[0].repo_tags);

    let fs_info = cri
        .image
        .image_fs_info(proto::ImageFsInfoRequest::default())
        .await
        .expect("ImageFsInfo")
        .into_inner();
    let used = fs_info.image_filesystems[0]
        .used_bytes
        .as_ref()
        .expect("used bytes")
        .value;
    assert!(
        used > 1_000_000,
        "busybox layers use more than 1 MB: {used}"
    );

    // Removing by one name removes every tag; removal is idempotent.
    for _ in 0..2 {
        cri.image
            .remove_image(proto::RemoveImageRequest {
                image: spec("busybox"),
            })
            .await
            .expect("RemoveImage");
    }
    assert!(status(&mut cri, &id).await.is_none());
    let snapshots = node.root_dir().join("snapshots").join("layers");
    let layers_left = std::fs::read_dir(&snapshots)
        .map(|entries| entries.count())
        .unwrap_or(0);
    assert_eq!(
        layers_left, 0,
        "layers left after the last image was removed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn layers_image_unpacks_whiteouts_and_opaque_dirs() {
    if !skip_unless_root() {
        return;
    }
    let node = Node::start();
    node.push(images::layers(), "carrack/layers:1")
        .expect("push layers");
    let mut cri = node.cri().await;
    let id = pull(&mut cri, "carrack.test/carrack/layers:1")
        .await
        .expect("PullImage layers");
    assert_eq!(id, images::layers().config.digest);
    let image = status(&mut cri, &id).await.expect("status");
    assert_eq!(image.repo_tags, vec!["carrack.test/carrack/layers:1"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_images_and_bad_names_get_clear_errors() {
    if !skip_unless_root() {
        return;
    }
    let node = Node::start();
    let mut cri = node.cri().await;
    let missing = pull(&mut cri, "carrack.test/nothing/here:1")
        .await
        .expect_err("absent image");
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
    assert!(
        missing.message().contains("127.0.0.1:5000"),
        "{}",
        missing.message()
    );
    let bad = pull(&mut cri, "UPPER/Case::bad")
        .await
        .expect_err("bad name");
    assert_eq!(bad.code(), Code::InvalidArgument, "{bad:?}");
    let empty = pull(&mut cri, "").await.expect_err("empty name");
    assert_eq!(empty.code(), Code::InvalidArgument);
    // Removing what is not there succeeds.
    cri.image
        .remove_image(proto::RemoveImageRequest {
            image: spec("carrack.test/nothing/here:1"),
        })
        .await
        .expect("RemoveImage of an absent image");
}
