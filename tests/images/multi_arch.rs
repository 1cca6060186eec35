//! Multi-platform images: an OCI index and a Docker manifest list, each with this host's
//! platform and a fake foreign one; an index without the host's platform.

use tonic::Code;

use crate::support::images::{self, ImageConfig, ManifestFormat, TestImage};
use crate::support::node::Node;
use crate::support::skip_unless_root;
use crate::{assert_status, ingest_leftovers, layer_dirs, pull, status, status_verbose};

/// Go architectures other than this host's, for fake index entries.
fn foreign_archs() -> Vec<&'static str> {
    ["arm64", "amd64", "s390x", "ppc64le"]
        .into_iter()
        .filter(|arch| *arch != images::go_arch())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn multi_arch_index_and_manifest_list_pick_the_host_platform() {
    if !skip_unless_root() {
        return;
    }
    let node = Node::start();
    let mut cri = node.cri().await;
    let foreign = foreign_archs()[0];
    for (format, repo) in [
        (ManifestFormat::Oci, "carrack/multi-oci"),
        (ManifestFormat::Docker, "carrack/multi-docker"),
    ] {
        let mut config = ImageConfig::with_cmd(&["sh"]);
        config.labels = vec![("carrack.test/format".to_owned(), format!("{format:?}"))];
        let host = TestImage::new(vec![images::busybox_layer()], &config, format);
        let other = images::fake_for_arch(foreign, format).expect("build the foreign image");
        // The foreign entry first, so that "take the first entry" would fail.
        let index = images::index(format, &[(&other, foreign), (&host, images::go_arch())]);
        let index_digest =
            images::push_index(node.registry(), repo, "v1", &[&other, &host], &index)
                .expect("push the index");

        let reference = format!("carrack.test/{repo}:v1");
        let id = pull(&mut cri, &reference).await.expect("pull the index");
        assert_eq!(id, host.id(), "{format:?}: the host's entry is chosen");
        let (image, info) = status_verbose(&mut cri, &reference).await;
        let image = image.expect("status");
        assert_eq!(image.repo_tags, vec![reference.clone()]);
        // The repo digest is what the tag resolves to: the index, as `docker pull` shows.
        assert_eq!(
            image.repo_digests,
            vec![format!("carrack.test/{repo}@{index_digest}")]
        );
        assert_eq!(info["imageSpec"]["architecture"], images::go_arch());
        assert_eq!(info["manifestDigest"], host.digest());
        // Pulling the index by digest finds the same image.
        let by_digest = format!("carrack.test/{repo}@{index_digest}");
        assert_eq!(pull(&mut cri, &by_digest).await.expect("by digest"), id);
        assert_eq!(status(&mut cri, &by_digest).await.map(|i| i.id), Some(id));
    }
    // Only the busybox layer: nothing of the foreign images was fetched.
    assert_eq!(layer_dirs(&node).len(), 1, "{:?}", layer_dirs(&node));
}

#[tokio::test(flavor = "multi_thread")]
async fn index_without_the_host_platform_is_refused_naming_the_platforms() {
    if !skip_unless_root() {
        return;
    }
    let node = Node::start();
    let mut cri = node.cri().await;
    let archs = foreign_archs();
    let entries: Vec<TestImage> = archs[..2]
        .iter()
        .map(|arch| images::fake_for_arch(arch, ManifestFormat::Oci).expect("fake image"))
        .collect();
    let index = images::index(
        ManifestFormat::Oci,
        &[(&entries[0], archs[0]), (&entries[1], archs[1])],
    );
    images::push_index(
        node.registry(),
        "carrack/foreign",
        "v1",
        &entries.iter().collect::<Vec<_>>(),
        &index,
    )
    .expect("push the index");
    let reference = "carrack.test/carrack/foreign:v1";
    let err = pull(&mut cri, reference).await.expect_err("no host entry");
    let wanted = format!("linux/{}", images::go_arch());
    let first = format!("linux/{}", archs[0]);
    let second = format!("linux/{}", archs[1]);
    assert_status(
        &err,
        Code::FailedPrecondition,
        &[reference, wanted.as_str(), first.as_str(), second.as_str()],
    );
    assert!(status(&mut cri, reference).await.is_none());
    assert!(layer_dirs(&node).is_empty());
    assert!(ingest_leftovers(&node).is_empty());
}
