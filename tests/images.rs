//! Root integration tests of the ImageService, all through the CRI client against a real
//! daemon and the node's local registry: pulls through mirrors, status by every kind of
//! reference, listing, removal and garbage collection; and, in the modules below, the pull
//! semantics critest checks, multi-platform indexes, registry auth, mirror fallback,
//! concurrency, deadlines and stalls, hostile images and daemon restarts.

mod support;

#[path = "images/auth.rs"]
mod auth;
#[path = "images/concurrency.rs"]
mod concurrency;
#[path = "images/config.rs"]
mod config;
#[path = "images/deadlines.rs"]
mod deadlines;
#[path = "images/hostile.rs"]
mod hostile;
#[path = "images/mirrors.rs"]
mod mirrors;
#[path = "images/multi_arch.rs"]
mod multi_arch;
#[path = "images/references.rs"]
mod references;
#[path = "images/restart.rs"]
mod restart;

use std::path::PathBuf;

use carrack::proto;
use support::client::CriClient;
use support::images;
use support::node::Node;
use support::skip_unless_root;
use tonic::Code;

/// An `ImageSpec` naming `image`.
pub(crate) fn spec(image: &str) -> Option<proto::ImageSpec> {
    Some(proto::ImageSpec {
        image: image.to_owned(),
        ..Default::default()
    })
}

/// `PullImage` without credentials; the image ref (id) on success.
pub(crate) async fn pull(cri: &mut CriClient, image: &str) -> Result<String, tonic::Status> {
    pull_with(cri, image, None).await
}

/// `PullImage` with `auth` as the request's credentials.
pub(crate) async fn pull_with(
    cri: &mut CriClient,
    image: &str,
    auth: Option<proto::AuthConfig>,
) -> Result<String, tonic::Status> {
    cri.image
        .pull_image(proto::PullImageRequest {
            image: spec(image),
            auth,
            ..Default::default()
        })
        .await
        .map(|reply| reply.into_inner().image_ref)
}

/// `ImageStatus` (not verbose): the image, or `None` when the daemon has none.
pub(crate) async fn status(cri: &mut CriClient, image: &str) -> Option<proto::Image> {
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

/// `ImageStatus` with `verbose`: the image and the parsed `info["info"]` JSON.
pub(crate) async fn status_verbose(
    cri: &mut CriClient,
    image: &str,
) -> (Option<proto::Image>, serde_json::Value) {
    let reply = cri
        .image
        .image_status(proto::ImageStatusRequest {
            image: spec(image),
            verbose: true,
        })
        .await
        .expect("verbose ImageStatus")
        .into_inner();
    let info = reply
        .info
        .get("info")
        .map(|text| serde_json::from_str(text).expect("info[\"info\"] is JSON"))
        .unwrap_or(serde_json::Value::Null);
    (reply.image, info)
}

/// Every image, as `ListImages` reports them.
pub(crate) async fn list(cri: &mut CriClient) -> Vec<proto::Image> {
    cri.image
        .list_images(proto::ListImagesRequest::default())
        .await
        .expect("ListImages")
        .into_inner()
        .images
}

/// `RemoveImage`, which must succeed.
pub(crate) async fn remove(cri: &mut CriClient, image: &str) {
    cri.image
        .remove_image(proto::RemoveImageRequest { image: spec(image) })
        .await
        .unwrap_or_else(|err| panic!("RemoveImage {image}: {err:?}"));
}

/// The committed layer directories under the daemon's root.
pub(crate) fn layer_dirs(node: &Node) -> Vec<PathBuf> {
    entries(&node.root_dir().join("snapshots").join("layers"))
}

/// What is left in the daemon's ingest directories (layers being unpacked,
/// documents being written): empty whenever no pull runs.
pub(crate) fn ingest_leftovers(node: &Node) -> Vec<PathBuf> {
    let root = node.root_dir();
    let mut left = entries(&root.join("snapshots").join("ingest"));
    left.extend(entries(&root.join("content").join("ingest")));
    left
}

fn entries(dir: &std::path::Path) -> Vec<PathBuf> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries.filter_map(Result::ok).map(|e| e.path()).collect(),
        Err(_) => Vec::new(),
    }
}

/// Asserts that `status` failed with `code` and a message containing every
/// one of `fragments`.
#[track_caller]
pub(crate) fn assert_status(status: &tonic::Status, code: Code, fragments: &[&str]) {
    assert_eq!(status.code(), code, "{status:?}");
    for fragment in fragments {
        assert!(
            status.message().contains(fragment),
            "error message lacks {fragment:?}: {}",
            status.message()
        );
    }
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
    let listed = list(&mut cri).await;
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
        remove(&mut cri, "busybox").await;
    }
    assert!(status(&mut cri, &id).await.is_none());
    assert_eq!(
        layer_dirs(&node),
        Vec::<PathBuf>::new(),
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
    remove(&mut cri, "carrack.test/nothing/here:1").await;
}
