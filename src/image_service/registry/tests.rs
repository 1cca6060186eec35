//! The registry client against in-process HTTP servers on 127.0.0.1.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::io::AsyncReadExt;

use super::test_server::{Recorded, Reply, TestServer, closed_port_url};
use super::*;
use crate::config::{MirrorConfig, RegistryConfig};
use crate::error_kind::ErrorKind;
use crate::image_service::digest::Digest;
use crate::image_service::reference::Reference;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MANIFEST: &[u8] =
    br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}"#;
/// `bob:secret` in base64.
const BOB_BASIC: &str = "Basic Ym9iOnNlY3JldA==";

fn options() -> ClientOptions {
    ClientOptions {
        connect_timeout: Duration::from_secs(2),
        stall_timeout: Duration::from_secs(5),
        ..ClientOptions::default()
    }
}

fn client(mirrors: &[(&str, Vec<String>, bool)], options: ClientOptions) -> RegistryClient {
    let mut config = RegistryConfig::default();
    for (host, endpoints, use_upstream) in mirrors {
        config.mirrors.insert(
            (*host).to_owned(),
            MirrorConfig {
                endpoints: endpoints.clone(),
                use_upstream: *use_upstream,
            },
        );
    }
    RegistryClient::new(&config, options).unwrap()
}

fn plain_client() -> RegistryClient {
    client(&[], options())
}

fn reference(text: &str) -> Reference {
    Reference::parse(text).unwrap()
}

fn bob() -> Credentials {
    Credentials {
        username: Some("bob".into()),
        password: Some("secret".into()),
        ..Credentials::default()
    }
}

fn manifest_reply(body: &[u8]) -> Reply {
    Reply::ok(body.to_vec())
        .header("Content-Type", OCI_MANIFEST)
        .header(
            "Docker-Content-Digest",
            &Digest::sha256_of(body).to_string(),
        )
}

/// A registry serving `MANIFEST` as `app:latest` (and by digest) and one blob, anonymously.
fn open_registry(blob: &'static [u8]) -> impl Fn(&Recorded) -> Reply + Send + Sync + 'static {
    let manifest_digest = Digest::sha256_of(MANIFEST).to_string();
    let blob_digest = Digest::sha256_of(blob).to_string();
    move |request| {
        let path = request.path.as_str();
        if path == "/v2/app/manifests/latest"
            || path == format!("/v2/app/manifests/{manifest_digest}")
        {
            manifest_reply(MANIFEST)
        } else if path == format!("/v2/app/blobs/{blob_digest}") {
            Reply::ok(blob.to_vec())
        } else {
            Reply::Full {
                status: 404,
                headers: vec![("Content-Type".into(), "application/json".into())],
                body: br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#
                    .to_vec(),
            }
        }
    }
}

fn assert_send<T: Send>(_: &T) {}

#[tokio::test]
async fn anonymous_manifest_fetch() {
    let server = TestServer::start(open_registry(b"blob")).await;
    let client = plain_client();
    let image = reference(&format!("{}/app", server.host()));
    let future = client.fetch_manifest(&image, &[OCI_MANIFEST, "application/x-other"], None);
    assert_send(&future);
    let manifest = future.await.unwrap();
    assert_eq!(manifest.media_type, OCI_MANIFEST);
    assert_eq!(manifest.bytes.as_ref(), MANIFEST);
    assert_eq!(manifest.digest, Digest::sha256_of(MANIFEST));
    assert_eq!(manifest.endpoint, server.url());

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method, "GET");
    assert_eq!(request.path, "/v2/app/manifests/latest");
    assert_eq!(request.query, "", "no ns= for the upstream");
    assert_eq!(
        request.header("accept"),
        Some("application/vnd.oci.image.manifest.v1+json, application/x-other")
    );
    assert!(
        request
            .header("user-agent")
            .unwrap()
            .starts_with("carrack/")
    );
    assert_eq!(request.header("authorization"), None);

    // By digest, with the default Accept list.
    let pinned = image.with_digest(Digest::sha256_of(MANIFEST));
    let manifest = client.fetch_manifest(&pinned, &[], None).await.unwrap();
    assert_eq!(manifest.digest, Digest::sha256_of(MANIFEST));
    let last = server.requests().pop().unwrap();
    assert_eq!(
        last.path,
        format!("/v2/app/manifests/{}", Digest::sha256_of(MANIFEST))
    );
    assert!(
        last.header("accept")
            .unwrap()
            .contains("image.index.v1+json")
    );
}

#[tokio::test]
async fn missing_manifest_is_not_found_with_registry_detail() {
    let server = TestServer::start(open_registry(b"blob")).await;
    let image = reference(&format!("{}/app:nope", server.host()));
    let err = plain_client()
        .fetch_manifest(&image, &[], None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    let text = err.to_string();
    assert!(text.contains(&server.url()), "{text}");
    assert!(text.contains("MANIFEST_UNKNOWN"), "{text}");
}

#[tokio::test]
async fn bearer_token_flow_with_cache() {
    let auth = TestServer::start(|request| {
        let service_and_scope = request.query.contains("service=test-registry")
            && request.query.contains("scope=repository%3Aapp%3Apull");
        if request.path == "/token"
            && service_and_scope
            && request.header("authorization") == Some(BOB_BASIC)
        {
            Reply::ok(r#"{"token":"good-token","expires_in":300}"#)
        } else {
            Reply::status(401)
        }
    })
    .await;
    let realm = format!("{}/token", auth.url());
    let registry = TestServer::start(move |request| {
        if request.header("authorization") == Some("Bearer good-token") {
            open_registry(b"layer")(request)
        } else {
            Reply::status(401).header(
                "WWW-Authenticate",
                &format!(
                    r#"Bearer realm="{realm}",service="test-registry",scope="repository:app:pull""#
                ),
            )
        }
    })
    .await;
    let client = plain_client();
    let image = reference(&format!("{}/app", registry.host()));
    let credentials = bob();

    let manifest = client
        .fetch_manifest(&image, &[], Some(&credentials))
        .await
        .unwrap();
    assert_eq!(manifest.bytes.as_ref(), MANIFEST);
    let blob = client
        .fetch_blob_bytes(
            &image,
            &Digest::sha256_of(b"layer"),
            Some(&credentials),
            100,
        )
        .await
        .unwrap();
    assert_eq!(blob.as_ref(), b"layer");

    // One token for both requests; the first request was anonymous, the rest carried it.
    assert_eq!(auth.hits("/token"), 1);
    let seen: Vec<Option<String>> = registry
        .requests()
        .iter()
        .map(|r| r.header("authorization").map(str::to_owned))
        .collect();
    assert_eq!(
        seen,
        [
            None,
            Some("Bearer good-token".into()),
            Some("Bearer good-token".into())
        ]
    );

    // Another pull without credentials must not ride on bob's token.
    let err = client.fetch_manifest(&image, &[], None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert!(matches!(err, RegistryError::Token { .. }), "{err}");
    assert!(err.to_string().contains(&auth.url()), "{err}");
    assert_eq!(auth.hits("/token"), 2);
}

#[tokio::test]
async fn anonymous_bearer_token() {
    let auth = TestServer::start(|request| {
        assert_eq!(request.header("authorization"), None);
        Reply::ok(r#"{"access_token":"anon"}"#)
    })
    .await;
    let realm = format!("{}/token", auth.url());
    let registry = TestServer::start(move |request| {
        if request.header("authorization") == Some("Bearer anon") {
            open_registry(b"layer")(request)
        } else {
            Reply::status(401).header("WWW-Authenticate", &format!(r#"Bearer realm="{realm}""#))
        }
    })
    .await;
    let image = reference(&format!("{}/app", registry.host()));
    let manifest = plain_client()
        .fetch_manifest(&image, &[], None)
        .await
        .unwrap();
    assert_eq!(manifest.bytes.as_ref(), MANIFEST);
    let token_request = &auth.requests()[0];
    assert!(
        token_request
            .query
            .contains("scope=repository%3Aapp%3Apull")
    );
}

#[tokio::test]
async fn identity_token_is_exchanged_with_a_post() {
    let auth = TestServer::start(|request| {
        let body = String::from_utf8_lossy(&request.body);
        if request.method == "POST"
            && request.header("content-type") == Some("application/x-www-form-urlencoded")
            && body.contains("grant_type=refresh_token")
            && body.contains("refresh_token=refresh-me")
            && body.contains("service=svc")
        {
            Reply::ok(r#"{"access_token":"from-refresh","expires_in":60}"#)
        } else {
            Reply::status(401)
        }
    })
    .await;
    let realm = format!("{}/token", auth.url());
    let registry = TestServer::start(move |request| {
        if request.header("authorization") == Some("Bearer from-refresh") {
            open_registry(b"layer")(request)
        } else {
            Reply::status(401).header(
                "WWW-Authenticate",
                &format!(r#"Bearer realm="{realm}",service="svc""#),
            )
        }
    })
    .await;
    let credentials = Credentials {
        identity_token: Some("refresh-me".into()),
        ..Credentials::default()
    };
    let image = reference(&format!("{}/app", registry.host()));
    let manifest = plain_client()
        .fetch_manifest(&image, &[], Some(&credentials))
        .await
        .unwrap();
    assert_eq!(manifest.bytes.as_ref(), MANIFEST);
    assert!(
        auth.requests()[0].query.is_empty(),
        "the refresh token is in the body"
    );
}

#[tokio::test]
async fn registry_token_is_sent_directly() {
    let nowhere = closed_port_url().await;
    let registry = TestServer::start(move |request| {
        if request.header("authorization") == Some("Bearer direct") {
            open_registry(b"layer")(request)
        } else {
            Reply::status(401).header(
                "WWW-Authenticate",
                &format!(r#"Bearer realm="{nowhere}/token""#),
            )
        }
    })
    .await;
    let credentials = Credentials {
        registry_token: Some("direct".into()),
        ..Credentials::default()
    };
    let image = reference(&format!("{}/app", registry.host()));
    let manifest = plain_client()
        .fetch_manifest(&image, &[], Some(&credentials))
        .await
        .unwrap();
    assert_eq!(manifest.bytes.as_ref(), MANIFEST);
}

#[tokio::test]
async fn basic_auth() {
    let registry = TestServer::start(|request| {
        if request.header("authorization") == Some(BOB_BASIC) {
            open_registry(b"layer")(request)
        } else {
            Reply::status(401).header("WWW-Authenticate", r#"Basic realm="registry""#)
        }
    })
    .await;
    let client = plain_client();
    let image = reference(&format!("{}/app", registry.host()));

    let err = client.fetch_manifest(&image, &[], None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    assert!(
        matches!(
            err,
            RegistryError::Denied {
                authenticated: false,
                status: 401,
                ..
            }
        ),
        "{err}"
    );

    let credentials = bob();
    client
        .fetch_manifest(&image, &[], Some(&credentials))
        .await
        .unwrap();
    let before = registry.requests().len();
    // The host is now known to want Basic: sent at once.
    client
        .fetch_manifest(&image, &[], Some(&credentials))
        .await
        .unwrap();
    assert_eq!(registry.requests().len(), before + 1);

    let wrong = Credentials {
        password: Some("wrong".into()),
        ..bob()
    };
    let err = client
        .fetch_manifest(&image, &[], Some(&wrong))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            RegistryError::Denied {
                authenticated: true,
                ..
            }
        ),
        "{err}"
    );
    // The password never shows in an error.
    assert!(!err.to_string().contains("wrong"), "{err}");
}

#[tokio::test]
async fn forbidden_is_permission_denied() {
    let registry = TestServer::start(|_| Reply::status(403)).await;
    let image = reference(&format!("{}/app", registry.host()));
    let err = plain_client()
        .fetch_manifest(&image, &[], None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
}

#[tokio::test]
async fn mirror_fallback_to_second_mirror() {
    let broken = TestServer::start(|_| Reply::status(500)).await;
    let unreachable = closed_port_url().await;
    let good = TestServer::start(|request| {
        assert_eq!(request.query, "ns=registry.test");
        open_registry(b"layer")(request)
    })
    .await;
    let client = client(
        &[(
            "registry.test",
            vec![broken.url(), unreachable, format!("{}/", good.url())],
            false,
        )],
        options(),
    );
    let image = reference("registry.test/app");
    let manifest = client.fetch_manifest(&image, &[], None).await.unwrap();
    assert_eq!(manifest.endpoint, good.url());
    assert_eq!(broken.hits("/manifests/latest"), 1);

    let blob = client
        .fetch_blob_bytes(&image, &Digest::sha256_of(b"layer"), None, 100)
        .await
        .unwrap();
    assert_eq!(blob.as_ref(), b"layer");
}

#[tokio::test]
async fn mirror_404_falls_back_to_upstream() {
    let mirror = TestServer::start(|_| Reply::status(404)).await;
    let upstream = TestServer::start(open_registry(b"layer")).await;
    let client = client(&[(&upstream.host(), vec![mirror.url()], true)], options());
    let image = reference(&format!("{}/app", upstream.host()));
    let manifest = client.fetch_manifest(&image, &[], None).await.unwrap();
    assert_eq!(manifest.endpoint, upstream.url());
    assert_eq!(mirror.hits("/manifests/latest"), 1);
    assert_eq!(
        client.endpoints(&upstream.host()).unwrap().len(),
        2,
        "mirror, then upstream"
    );
}

#[tokio::test]
async fn hanging_mirror_times_out_then_falls_back() {
    let hanging = TestServer::start(|_| Reply::Hang).await;
    let good = TestServer::start(open_registry(b"layer")).await;
    let options = ClientOptions {
        connect_timeout: Duration::from_millis(300),
        stall_timeout: Duration::from_millis(300),
        ..ClientOptions::default()
    };
    let client = client(
        &[("registry.test", vec![hanging.url(), good.url()], false)],
        options,
    );
    let started = Instant::now();
    let manifest = client
        .fetch_manifest(&reference("registry.test/app"), &[], None)
        .await
        .unwrap();
    assert_eq!(manifest.endpoint, good.url());
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn every_endpoint_failing_names_them_all() {
    let broken = TestServer::start(|_| Reply::status(503)).await;
    let unreachable = closed_port_url().await;
    let client = client(
        &[(
            "registry.test",
            vec![broken.url(), unreachable.clone()],
            false,
        )],
        options(),
    );
    let err = client
        .fetch_manifest(&reference("registry.test/app"), &[], None)
        .await
        .unwrap_err();
    let RegistryError::AllEndpointsFailed { attempts, .. } = &err else {
        panic!("{err}");
    };
    assert_eq!(attempts.len(), 2);
    assert!(matches!(
        attempts[0],
        RegistryError::Status { status: 503, .. }
    ));
    assert!(matches!(attempts[1], RegistryError::Transport { .. }));
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    let text = err.to_string();
    assert!(text.contains(&broken.url()), "{text}");
    assert!(text.contains(&unreachable), "{text}");

    // A mirror failing and the upstream saying 404: not found.
    let upstream = TestServer::start(|_| Reply::status(404)).await;
    let client = self::client(&[(&upstream.host(), vec![broken.url()], true)], options());
    let err = client
        .fetch_manifest(&reference(&format!("{}/app", upstream.host())), &[], None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
}

#[tokio::test]
async fn credentials_are_not_sent_to_mirrors() {
    let mirror = TestServer::start(|_| {
        Reply::status(401).header("WWW-Authenticate", r#"Basic realm="mirror""#)
    })
    .await;
    let upstream = TestServer::start(|request| {
        if request.header("authorization") == Some(BOB_BASIC) {
            open_registry(b"layer")(request)
        } else {
            Reply::status(401).header("WWW-Authenticate", r#"Basic realm="upstream""#)
        }
    })
    .await;
    let client = client(&[(&upstream.host(), vec![mirror.url()], true)], options());
    let image = reference(&format!("{}/app", upstream.host()));
    let manifest = client
        .fetch_manifest(&image, &[], Some(&bob()))
        .await
        .unwrap();
    assert_eq!(manifest.endpoint, upstream.url());
    assert!(
        mirror
            .requests()
            .iter()
            .all(|r| r.header("authorization").is_none())
    );

    // Unless the credentials name the mirror.
    let for_mirror = Credentials {
        server_address: Some(mirror.url()),
        ..bob()
    };
    let _ = client
        .fetch_manifest(&image, &[], Some(&for_mirror))
        .await
        .unwrap_err();
    assert!(
        mirror
            .requests()
            .iter()
            .any(|r| r.header("authorization") == Some(BOB_BASIC))
    );
}

#[tokio::test]
async fn digest_mismatch_is_refused() {
    let server = TestServer::start(|request| {
        if request.path.contains("/manifests/sha256:") {
            // Whatever was asked for, other bytes come back.
            Reply::ok(MANIFEST.to_vec()).header("Content-Type", OCI_MANIFEST)
        } else {
            // A tag whose announced digest does not match the bytes.
            Reply::ok(MANIFEST.to_vec())
                .header("Content-Type", OCI_MANIFEST)
                .header(
                    "Docker-Content-Digest",
                    &Digest::sha256_of(b"x").to_string(),
                )
        }
    })
    .await;
    let client = plain_client();
    let wanted = Digest::sha256_of(b"something else");
    let image = reference(&format!("{}/app@{wanted}", server.host()));
    let err = client.fetch_manifest(&image, &[], None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::FailedPrecondition);
    let RegistryError::DigestMismatch {
        expected, actual, ..
    } = &err
    else {
        panic!("{err}");
    };
    assert_eq!(*expected, wanted);
    assert_eq!(*actual, Digest::sha256_of(MANIFEST));

    let tagged = reference(&format!("{}/app:v1", server.host()));
    let err = client.fetch_manifest(&tagged, &[], None).await.unwrap_err();
    assert!(matches!(err, RegistryError::DigestMismatch { .. }), "{err}");
}

#[tokio::test]
async fn oversized_manifest_is_refused() {
    let server = TestServer::start(|request| {
        let body = vec![b' '; MAX_MANIFEST_SIZE + 1];
        if request.path.ends_with("/announced") {
            Reply::ok(body).header("Content-Type", OCI_MANIFEST)
        } else {
            // No Content-Length: only counting while reading can catch it.
            Reply::Unframed {
                status: 200,
                body: vec![b' '; 2 * MAX_MANIFEST_SIZE],
            }
        }
    })
    .await;
    let client = plain_client();
    for tag in ["announced", "unframed"] {
        let image = reference(&format!("{}/app:{tag}", server.host()));
        let err = client.fetch_manifest(&image, &[], None).await.unwrap_err();
        assert!(
            matches!(err, RegistryError::TooLarge { limit, .. } if limit == MAX_MANIFEST_SIZE as u64),
            "{err}"
        );
        assert_eq!(err.kind(), ErrorKind::ResourceExhausted);
    }
}

#[tokio::test]
async fn stalled_blob_is_aborted() {
    let server = TestServer::start(|_| Reply::Stall {
        length: 1000,
        first: vec![7; 10],
    })
    .await;
    let options = ClientOptions {
        stall_timeout: Duration::from_millis(300),
        ..options()
    };
    let client = client(&[], options);
    let image = reference(&format!("{}/app", server.host()));
    let digest = Digest::sha256_of(b"never");
    let future = client.fetch_blob(&image, &digest, None);
    assert_send(&future);
    let mut blob = future.await.unwrap();
    assert_eq!(blob.content_length(), Some(1000));
    assert_eq!(blob.endpoint(), server.url());
    let started = Instant::now();
    let first = blob.next().await.unwrap().unwrap();
    assert_eq!(first.len(), 10);
    let err = blob.next().await.unwrap().unwrap_err();
    assert!(matches!(err, RegistryError::Stalled { .. }), "{err}");
    assert_eq!(err.kind(), ErrorKind::DeadlineExceeded);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        blob.next().await.is_none(),
        "the stream ends after the error"
    );
}

#[tokio::test]
async fn blob_streams_and_reads() {
    let data: &'static [u8] = b"layer bytes, a few of them";
    let server = TestServer::start(open_registry(data)).await;
    let client = plain_client();
    let image = reference(&format!("{}/app", server.host()));
    let digest = Digest::sha256_of(data);

    let blob = client.fetch_blob(&image, &digest, None).await.unwrap();
    assert_eq!(blob.content_length(), Some(data.len() as u64));
    let mut reader = blob.into_async_read();
    let mut out = Vec::new();
    reader.read_to_end(&mut out).await.unwrap();
    assert!(digest.matches(&out));

    let err = client
        .fetch_blob(&image, &Digest::sha256_of(b"absent"), None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
}

#[tokio::test]
async fn small_blob_limits_and_verification() {
    let server = TestServer::start(|request| {
        if request
            .path
            .ends_with(&Digest::sha256_of(b"twelve bytes").to_string())
        {
            Reply::ok(b"twelve bytes".to_vec())
        } else {
            Reply::ok(b"tampered".to_vec())
        }
    })
    .await;
    let client = plain_client();
    let image = reference(&format!("{}/app", server.host()));
    let digest = Digest::sha256_of(b"twelve bytes");

    let bytes = client
        .fetch_blob_bytes(&image, &digest, None, 12)
        .await
        .unwrap();
    assert_eq!(bytes.as_ref(), b"twelve bytes");
    let err = client
        .fetch_blob_bytes(&image, &digest, None, 11)
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::TooLarge { limit: 11, .. }),
        "{err}"
    );
    let other = Digest::sha256_of(b"expected");
    let err = client
        .fetch_blob_bytes(&image, &other, None, 100)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::DigestMismatch { .. }), "{err}");
}

#[tokio::test]
async fn redirect_to_another_host_drops_authorization() {
    let data: &'static [u8] = b"stored elsewhere";
    let storage = TestServer::start(move |_| Reply::ok(data.to_vec())).await;
    let storage_url = format!("{}/storage/blob?sig=abc", storage.url());
    let registry = TestServer::start(move |request| {
        if request.header("authorization") != Some(BOB_BASIC) {
            Reply::status(401).header("WWW-Authenticate", r#"Basic realm="r""#)
        } else if request.path.contains("/blobs/") {
            Reply::status(307).header("Location", &storage_url)
        } else {
            Reply::status(404)
        }
    })
    .await;
    let client = plain_client();
    let image = reference(&format!("{}/app", registry.host()));
    let digest = Digest::sha256_of(data);
    let bytes = client
        .fetch_blob_bytes(&image, &digest, Some(&bob()), 100)
        .await
        .unwrap();
    assert_eq!(bytes.as_ref(), data);

    let stored = storage.requests();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].path, "/storage/blob");
    assert_eq!(stored[0].header("authorization"), None);
    assert_eq!(stored[0].header("referer"), None);
    assert!(
        registry
            .requests()
            .iter()
            .any(|r| r.header("authorization") == Some(BOB_BASIC))
    );
}

#[tokio::test]
async fn bad_redirects_are_refused() {
    let registry = TestServer::start(|request| {
        if request.path.ends_with("/manifests/ftp") {
            Reply::status(302).header("Location", "ftp://127.0.0.1/x")
        } else {
            // Always somewhere new on the same server: a loop.
            let hop = request.query.len();
            Reply::status(302).header(
                "Location",
                &format!("{}?{}", request.path, "h".repeat(hop + 1)),
            )
        }
    })
    .await;
    let client = plain_client();
    for tag in ["ftp", "loop"] {
        let image = reference(&format!("{}/app:{tag}", registry.host()));
        let err = client.fetch_manifest(&image, &[], None).await.unwrap_err();
        assert!(matches!(err, RegistryError::Transport { .. }), "{err}");
    }
    assert!(registry.requests().len() <= 1 + MAX_REDIRECTS + 1 + 1);
}

#[tokio::test]
async fn hand_built_reference_is_validated() {
    let client = plain_client();
    let mut image = reference("registry.test/app");
    image.repository = "../../admin".into();
    let err = client.fetch_manifest(&image, &[], None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
}

#[test]
fn bad_mirror_config_fails_at_construction() {
    let mut config = RegistryConfig::default();
    config.mirrors.insert(
        "docker.io".into(),
        MirrorConfig {
            endpoints: vec!["gopher://x".into()],
            use_upstream: true,
        },
    );
    let err = RegistryClient::new(&config, ClientOptions::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::FailedPrecondition);
}
