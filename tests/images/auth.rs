//! Registry authentication with the credentials of `PullImageRequest.auth`: the
//! registry's own htpasswd (basic) auth, and Docker's token flow with a token service of
//! our own (anonymous for public content, basic credentials for private).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use carrack::proto;
use tonic::Code;

use crate::support::images;
use crate::support::node::Node;
use crate::support::registry::{RegistryAuth, RegistryOptions};
use crate::support::skip_unless_root;
use crate::support::token::{TOKEN_ADDR, TokenPolicy};
use crate::{assert_status, ingest_leftovers, layer_dirs, list, pull, pull_with, status};

const USER: &str = "carrack-puller";
const PASSWORD: &str = "correct horse battery staple";

fn user_password(password: &str) -> Option<proto::AuthConfig> {
    Some(proto::AuthConfig {
        username: USER.to_owned(),
        password: password.to_owned(),
        ..Default::default()
    })
}

fn auth_field(password: &str) -> Option<proto::AuthConfig> {
    Some(proto::AuthConfig {
        auth: STANDARD.encode(format!("{USER}:{password}")),
        ..Default::default()
    })
}

fn node_with(auth: RegistryAuth) -> Node {
    Node::builder().registry(RegistryOptions { auth }).start()
}

fn basic() -> RegistryAuth {
    RegistryAuth::Basic {
        username: USER.to_owned(),
        password: PASSWORD.to_owned(),
    }
}

fn token(anonymous: bool) -> RegistryAuth {
    RegistryAuth::Token(TokenPolicy {
        username: USER.to_owned(),
        password: PASSWORD.to_owned(),
        anonymous,
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn basic_auth_pulls_with_username_and_password_or_the_auth_field() {
    if !skip_unless_root() {
        return;
    }
    let node = node_with(basic());
    let first = images::labelled("basic-user-password");
    let second = images::labelled("basic-auth-field");
    node.push(&first, "private/first:1").expect("push first");
    node.push(&second, "private/second:1").expect("push second");
    let mut cri = node.cri().await;

    // The registry named directly: credentials without a server address go to it.
    let id = pull_with(
        &mut cri,
        "127.0.0.1:5000/private/first:1",
        user_password(PASSWORD),
    )
    .await
    .expect("pull with username and password");
    assert_eq!(id, first.id());
    let id = pull_with(
        &mut cri,
        "127.0.0.1:5000/private/second:1",
        auth_field(PASSWORD),
    )
    .await
    .expect("pull with the auth field");
    assert_eq!(id, second.id());

    // Through a mirror, credentials go only where their server address says.
    let mut for_mirror = user_password(PASSWORD);
    if let Some(auth) = for_mirror.as_mut() {
        auth.server_address = node.registry_addr().to_owned();
    }
    let third = images::labelled("basic-through-mirror");
    node.push(&third, "private/third:1").expect("push third");
    let id = pull_with(&mut cri, "carrack.test/private/third:1", for_mirror)
        .await
        .expect("pull through the mirror with its server address");
    assert_eq!(id, third.id());
    assert_eq!(list(&mut cri).await.len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn basic_auth_refuses_wrong_or_missing_credentials_with_permission_denied() {
    if !skip_unless_root() {
        return;
    }
    let node = node_with(basic());
    node.push(images::busybox(), "private/busybox:1")
        .expect("push");
    let mut cri = node.cri().await;
    let reference = "127.0.0.1:5000/private/busybox:1";

    let err = pull_with(&mut cri, reference, user_password("wrong password"))
        .await
        .expect_err("wrong password");
    assert_status(
        &err,
        Code::PermissionDenied,
        &["127.0.0.1:5000", "denied", "with credentials"],
    );
    let err = pull_with(&mut cri, reference, auth_field("wrong password"))
        .await
        .expect_err("wrong auth field");
    assert_status(&err, Code::PermissionDenied, &["with credentials"]);
    let err = pull(&mut cri, reference).await.expect_err("no credentials");
    assert_status(
        &err,
        Code::PermissionDenied,
        &["127.0.0.1:5000", "denied", "anonymously"],
    );
    // Credentials for another registry are not sent, so this is anonymous too.
    let mut elsewhere = user_password(PASSWORD);
    if let Some(auth) = elsewhere.as_mut() {
        auth.server_address = "registry.example.com".to_owned();
    }
    let err = pull_with(&mut cri, reference, elsewhere)
        .await
        .expect_err("credentials of another registry");
    assert_status(&err, Code::PermissionDenied, &["anonymously"]);

    assert!(status(&mut cri, reference).await.is_none());
    assert!(layer_dirs(&node).is_empty());
    assert!(ingest_leftovers(&node).is_empty());
    // The right credentials still work afterwards (no refusal was cached).
    pull_with(&mut cri, reference, user_password(PASSWORD))
        .await
        .expect("pull with the right password");
}

#[tokio::test(flavor = "multi_thread")]
async fn token_auth_gets_a_pull_token_with_the_credentials() {
    if !skip_unless_root() {
        return;
    }
    let node = node_with(token(false));
    let image = images::labelled("token-private");
    node.push(&image, "private/token:1")
        .expect("push with a harness token");
    let mut cri = node.cri().await;
    let reference = "127.0.0.1:5000/private/token:1";

    let err = pull(&mut cri, reference).await.expect_err("no credentials");
    assert_status(
        &err,
        Code::PermissionDenied,
        &["getting a token", TOKEN_ADDR, "anonymously"],
    );
    let err = pull_with(&mut cri, reference, user_password("wrong password"))
        .await
        .expect_err("wrong password");
    assert_status(
        &err,
        Code::PermissionDenied,
        &["getting a token", TOKEN_ADDR, "with credentials"],
    );
    assert!(layer_dirs(&node).is_empty());

    let id = pull_with(&mut cri, reference, user_password(PASSWORD))
        .await
        .expect("pull with a token");
    assert_eq!(id, image.id());

    let server = node.registry().token_server().expect("token server");
    let granted: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|request| request.header("authorization").is_some())
        .collect();
    let request = granted.last().expect("a token request with credentials");
    assert_eq!(request.query_all("service"), ["carrack-test-registry"]);
    assert!(
        request
            .query_all("scope")
            .contains(&"repository:private/token:pull".to_owned()),
        "{request:?}"
    );
    assert_eq!(request.query_all("account"), [USER]);
    // The manifest, config and layer requests of the pull share one token.
    assert_eq!(server.issued(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn token_auth_pulls_public_images_anonymously_through_a_mirror() {
    if !skip_unless_root() {
        return;
    }
    let node = node_with(token(true));
    node.push(images::busybox(), "library/busybox:latest")
        .expect("push");
    let mut cri = node.cri().await;
    let id = pull(&mut cri, "busybox")
        .await
        .expect("anonymous token pull");
    assert_eq!(id, images::busybox().id());
    let server = node.registry().token_server().expect("token server");
    assert!(server.issued() >= 1);
    assert!(
        server
            .requests()
            .iter()
            .all(|request| request.header("authorization").is_none()),
        "no credentials were given, none may be sent"
    );
}
