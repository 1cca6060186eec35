//! What ImageStatus tells about an image's config: the verbose info (the config itself,
//! for `crictl inspecti`) and the uid or user name of its `User`.

use crate::support::images;
use crate::support::node::Node;
use crate::support::skip_unless_root;
use crate::{pull, status, status_verbose};

#[tokio::test(flavor = "multi_thread")]
async fn verbose_status_carries_the_image_config_and_history() {
    if !skip_unless_root() {
        return;
    }
    let node = Node::start();
    let image = images::with_user("1002");
    node.push(&image, "carrack/user:1002").expect("push");
    let mut cri = node.cri().await;
    let id = pull(&mut cri, "carrack.test/carrack/user:1002")
        .await
        .expect("pull");

    let (found, info) = status_verbose(&mut cri, &id).await;
    assert_eq!(found.map(|i| i.id), Some(id.clone()));
    let config: serde_json::Value =
        serde_json::from_slice(&image.config.data).expect("the pushed config");
    assert_eq!(info["id"], id);
    assert_eq!(info["imageSpec"], config, "the config exactly as pushed");
    assert_eq!(info["imageSpec"]["config"]["User"], "1002");
    assert_eq!(
        info["imageSpec"]["config"]["Cmd"],
        serde_json::json!(["sh"])
    );
    assert_eq!(
        info["imageSpec"]["rootfs"]["diff_ids"][0],
        images::busybox_layer().diff_id
    );
    assert!(
        info["imageSpec"]["history"][0]["created_by"]
            .as_str()
            .is_some_and(|text| text.contains("busybox")),
        "{info}"
    );
    // Not verbose: no info.
    let plain = cri
        .image
        .image_status(carrack::proto::ImageStatusRequest {
            image: crate::spec(&id),
            verbose: false,
        })
        .await
        .expect("ImageStatus")
        .into_inner();
    assert!(plain.info.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn image_uid_and_username_follow_the_config_user() {
    if !skip_unless_root() {
        return;
    }
    let node = Node::start();
    let mut cri = node.cri().await;
    for (index, (user, uid, username)) in [
        ("1002", Some(1002), ""),
        ("www-data", None, "www-data"),
        ("1003:1004", Some(1003), ""),
        ("www-data:1004", None, "www-data"),
        ("", None, ""),
    ]
    .into_iter()
    .enumerate()
    {
        let image = images::with_user(user);
        let tag = format!("carrack/users:{index}");
        node.push(&image, &tag).expect("push");
        let reference = format!("carrack.test/{tag}");
        pull(&mut cri, &reference).await.expect("pull");
        let found = status(&mut cri, &reference).await.expect("status");
        assert_eq!(found.uid.map(|v| v.value), uid, "User {user:?}");
        assert_eq!(found.username, username, "User {user:?}");
    }
}
