//! Root integration tests of the streaming server: `Exec`, `Attach` and `PortForward` URLs
//! served over WebSocket (kubelet's `channel.k8s.io` framing) and SPDY to busybox containers
//! of host-network pods, and the one-time tokens behind the URLs. The streaming server listens on the node's
//! loopback, so the client sockets are made inside the node's netns.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use carrack::proto;
use carrack::streaming::spdy;
use futures_util::{SinkExt, StreamExt};
use support::client::CriClient;
use support::images;
use support::node::Node;
use support::skip_unless_root;
use support::workload;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const BUSYBOX: &str = "busybox";

/// A busybox container running `command` in a host-network pod of `node`.
async fn container(node: &Node, command: &[&str]) -> (CriClient, String, String) {
    container_in(node, command, proto::NamespaceMode::Node).await
}

/// A busybox container running `command` in a pod whose network is `network`.
async fn container_in(
    node: &Node,
    command: &[&str],
    network: proto::NamespaceMode,
) -> (CriClient, String, String) {
    container_with(node, command, network, ContainerStdio::default()).await
}

/// How a container's stdio is set up (`ContainerConfig.stdin`, `stdin_once`, `tty`).
#[derive(Debug, Clone, Copy, Default)]
struct ContainerStdio {
    stdin: bool,
    stdin_once: bool,
    tty: bool,
}

/// A busybox container running `command` with `stdio` in a pod whose network is `network`.
async fn container_with(
    node: &Node,
    command: &[&str],
    network: proto::NamespaceMode,
    stdio: ContainerStdio,
) -> (CriClient, String, String) {
    let mut cri = node.cri().await;
    node.push(images::busybox(), "library/busybox:latest")
        .expect("push busybox");
    cri.image
        .pull_image(proto::PullImageRequest {
            image: Some(proto::ImageSpec {
                image: BUSYBOX.to_owned(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("PullImage");
    let pod_config = proto::PodSandboxConfig {
        metadata: Some(proto::PodSandboxMetadata {
            name: "stream".to_owned(),
            uid: "uid-stream".to_owned(),
            namespace: "default".to_owned(),
            attempt: 0,
        }),
        hostname: "stream".to_owned(),
        log_directory: node
            .base_dir()
            .join("pod-logs")
            .to_string_lossy()
            .into_owned(),
        linux: Some(proto::LinuxPodSandboxConfig {
            security_context: Some(proto::LinuxSandboxSecurityContext {
                namespace_options: Some(proto::NamespaceOption {
                    network: network.into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let pod_id = cri
        .runtime
        .run_pod_sandbox(proto::RunPodSandboxRequest {
            config: Some(pod_config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .expect("RunPodSandbox")
        .into_inner()
        .pod_sandbox_id;
    let config = proto::ContainerConfig {
        metadata: Some(proto::ContainerMetadata {
            name: "main".to_owned(),
            attempt: 0,
        }),
        image: Some(proto::ImageSpec {
            image: BUSYBOX.to_owned(),
            ..Default::default()
        }),
        command: command.iter().map(|s| (*s).to_owned()).collect(),
        log_path: "main/0.log".to_owned(),
        labels: HashMap::new(),
        linux: Some(proto::LinuxContainerConfig::default()),
        stdin: stdio.stdin,
        stdin_once: stdio.stdin_once,
        tty: stdio.tty,
        ..Default::default()
    };
    let id = cri
        .runtime
        .create_container(proto::CreateContainerRequest {
            pod_sandbox_id: pod_id.clone(),
            config: Some(config),
            sandbox_config: Some(pod_config),
        })
        .await
        .expect("CreateContainer")
        .into_inner()
        .container_id;
    cri.runtime
        .start_container(proto::StartContainerRequest {
            container_id: id.clone(),
        })
        .await
        .expect("StartContainer");
    (cri, pod_id, id)
}

/// Stops and removes the pod (and its containers).
async fn remove_pod(cri: &mut CriClient, pod_id: &str) {
    cri.runtime
        .stop_pod_sandbox(proto::StopPodSandboxRequest {
            pod_sandbox_id: pod_id.to_owned(),
        })
        .await
        .expect("StopPodSandbox");
    cri.runtime
        .remove_pod_sandbox(proto::RemovePodSandboxRequest {
            pod_sandbox_id: pod_id.to_owned(),
        })
        .await
        .expect("RemovePodSandbox");
}

fn exec_request(id: &str, cmd: &[&str], tty: bool) -> proto::ExecRequest {
    proto::ExecRequest {
        container_id: id.to_owned(),
        cmd: cmd.iter().map(|s| (*s).to_owned()).collect(),
        tty,
        stdin: true,
        stdout: true,
        stderr: !tty,
    }
}

async fn exec_url(cri: &mut CriClient, request: proto::ExecRequest) -> String {
    cri.runtime
        .exec(request)
        .await
        .expect("Exec")
        .into_inner()
        .url
}

/// `host:port` and path of an `http://` or `https://` URL.
fn split_url(url: &str) -> (String, String) {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .expect("an http(s) URL");
    let (host, path) = rest.split_once('/').expect("a path");
    (host.to_owned(), format!("/{path}"))
}

/// A TCP connection to `host` made inside the node's netns.
fn tcp(node: &Node, host: &str) -> TcpStream {
    let host = host.to_owned();
    let socket = node
        .run_in_netns(move || std::net::TcpStream::connect(host))
        .expect("enter netns")
        .expect("connect to the streaming server");
    socket.set_nonblocking(true).expect("nonblocking");
    TcpStream::from_std(socket).expect("tokio socket")
}

/// Opens `url` as a websocket offering `protocol`.
async fn websocket(node: &Node, url: &str, protocol: &str) -> WebSocketStream<TcpStream> {
    let (host, _) = split_url(url);
    websocket_over(tcp(node, &host), url, protocol).await
}

/// Opens `url` as a websocket offering `protocol` over `stream` (TCP or TLS).
async fn websocket_over<S>(stream: S, url: &str, protocol: &str) -> WebSocketStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (host, path) = split_url(url);
    let mut request = format!("ws://{host}{path}")
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        protocol.parse().expect("header value"),
    );
    let (socket, response) = tokio_tungstenite::client_async(request, stream)
        .await
        .expect("websocket handshake");
    assert_eq!(
        response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .map(|v| v.to_str().unwrap_or_default()),
        Some(protocol)
    );
    socket
}

/// The HTTP status of a plain GET of `url`.
async fn get_status(node: &Node, url: &str) -> u16 {
    let (host, path) = split_url(url);
    let mut socket = tcp(node, &host);
    socket
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .expect("send request");
    let mut reply = String::new();
    socket.read_to_string(&mut reply).await.expect("read reply");
    reply
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP reply: {reply:?}"))
}

/// Everything received per channel until the server closes.
async fn drain<S>(socket: &mut WebSocketStream<S>) -> HashMap<u8, Vec<u8>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut channels: HashMap<u8, Vec<u8>> = HashMap::new();
    while let Some(message) = socket.next().await {
        match message.expect("websocket message") {
            Message::Binary(data) => {
                if let Some((&channel, payload)) = data.split_first() {
                    channels
                        .entry(channel)
                        .or_default()
                        .extend_from_slice(payload);
                }
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    channels
}

fn text(channels: &HashMap<u8, Vec<u8>>, channel: u8) -> String {
    String::from_utf8_lossy(channels.get(&channel).map_or(&[][..], Vec::as_slice)).into_owned()
}

async fn send<S>(socket: &mut WebSocketStream<S>, channel: u8, data: &[u8])
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut frame = vec![channel];
    frame.extend_from_slice(data);
    socket
        .send(Message::Binary(frame.into()))
        .await
        .expect("send");
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_over_websocket_streams_stdio_and_the_exit_code() {
    if !skip_unless_root() {
        return;
    }
    let node = Node::start();
    let (mut cri, pod_id, id) = container(&node, &["sleep", "3600"]).await;

    let script = "read line; echo out:$line; echo err >&2; exit 3";
    let url = exec_url(&mut cri, exec_request(&id, &["sh", "-c", script], false)).await;
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let mut socket = websocket(&node, &url, "v5.channel.k8s.io").await;
    send(&mut socket, 0, b"hello\n").await;
    // v5: close stdin.
    send(&mut socket, 255, &[0]).await;
    let channels = drain(&mut socket).await;
    assert_eq!(text(&channels, 1), "out:hello\n");
    assert_eq!(text(&channels, 2), "err\n");
    let status: serde_json::Value = serde_json::from_slice(&channels[&3]).expect("a Status object");
    assert_eq!(status["status"], "Failure");
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(status["details"]["causes"][0]["reason"], "ExitCode");
    assert_eq!(status["details"]["causes"][0]["message"], "3");

    // Success, over v4.
    let mut request = exec_request(&id, &["cat", "/etc/hostname"], false);
    request.stdin = false;
    let url = exec_url(&mut cri, request).await;
    let mut socket = websocket(&node, &url, "v4.channel.k8s.io").await;
    let channels = drain(&mut socket).await;
    assert_eq!(text(&channels, 1), "stream\n");
    assert_eq!(text(&channels, 3), r#"{"metadata":{},"status":"Success"}"#);

    // A command that does not exist: the helper's 127.
    let mut request = exec_request(&id, &["/no/such/program"], false);
    request.stdin = false;
    let url = exec_url(&mut cri, request).await;
    let mut socket = websocket(&node, &url, "v4.channel.k8s.io").await;
    let channels = drain(&mut socket).await;
    let status: serde_json::Value = serde_json::from_slice(&channels[&3]).expect("status");
    assert_eq!(status["details"]["causes"][0]["message"], "127");

    remove_pod(&mut cri, &pod_id).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_with_a_tty_applies_resizes() {
    if !skip_unless_root() {
        return;
    }
    let node = Node::start();
    let (mut cri, pod_id, id) = container(&node, &["sleep", "3600"]).await;

    let url = exec_url(&mut cri, exec_request(&id, &["sh"], true)).await;
    let mut socket = websocket(&node, &url, "v4.channel.k8s.io").await;
    send(&mut socket, 4, br#"{"Width":100,"Height":40}"#).await;
    // The resize and the input travel separately: the shell waits until it sees the size.
    send(
        &mut socket,
        0,
        b"while [ \"$(stty size)\" != '40 100' ]; do :; done; echo got $(stty size); [ -t 0 ] && exit 5\n",
    )
    .await;
    let channels = drain(&mut socket).await;
    assert!(text(&channels, 1).contains("got 40 100"), "{channels:?}");
    assert!(!channels.contains_key(&2), "a terminal has no stderr");
    let status: serde_json::Value = serde_json::from_slice(&channels[&3]).expect("status");
    assert_eq!(status["details"]["causes"][0]["message"], "5");

    remove_pod(&mut cri, &pod_id).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_are_single_use_and_expire() {
    if !skip_unless_root() {
        return;
    }
    let node = Node::builder()
        .config("[streaming]\ntoken_ttl_secs = 1\n")
        .start();
    let (mut cri, pod_id, id) = container(&node, &["sleep", "3600"]).await;

    let url = exec_url(&mut cri, exec_request(&id, &["true"], false)).await;
    let mut socket = websocket(&node, &url, "v4.channel.k8s.io").await;
    drain(&mut socket).await;
    assert_eq!(get_status(&node, &url).await, 404, "reused");
    let unknown = format!("{}0000", url.rsplit_once('/').expect("token").0);
    assert_eq!(get_status(&node, &unknown).await, 404, "unknown");

    let url = exec_url(&mut cri, exec_request(&id, &["true"], false)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(get_status(&node, &url).await, 404, "expired");

    // Refused requests get no URL.
    let bad = cri
        .runtime
        .exec(proto::ExecRequest {
            stderr: true,
            ..exec_request(&id, &["true"], true)
        })
        .await
        .expect_err("tty with stderr");
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    let missing = cri
        .runtime
        .exec(exec_request("nope", &["true"], false))
        .await
        .expect_err("no such container");
    assert_eq!(missing.code(), tonic::Code::NotFound);

    remove_pod(&mut cri, &pod_id).await;
}

/// A busybox `httpd` serving `text` as `/index.html` on `127.0.0.1:port` in a host-network
/// pod, answering.
async fn http_container(node: &Node, text: &str, port: u16) -> (CriClient, String, String) {
    let script = format!(
        "mkdir -p /www && echo {text} > /www/index.html && exec httpd -f -p 127.0.0.1:{port} -h /www"
    );
    let (mut cri, pod_id, id) = container(node, &["sh", "-c", &script]).await;
    wait_for_http(&mut cri, &id, port).await;
    (cri, pod_id, id)
}

/// A port-forward URL for `port` of pod `pod_id`.
async fn forward_url(cri: &mut CriClient, pod_id: &str, port: u16) -> String {
    cri.runtime
        .port_forward(proto::PortForwardRequest {
            pod_sandbox_id: pod_id.to_owned(),
            port: vec![i32::from(port)],
        })
        .await
        .expect("PortForward")
        .into_inner()
        .url
}

/// Port-forwards one connection to `port` over a websocket: the client's request, then
/// everything back (data, error).
async fn forward_once(
    node: &Node,
    cri: &mut CriClient,
    pod_id: &str,
    port: u16,
    request: &[u8],
) -> (String, String) {
    let url = forward_url(cri, pod_id, port).await;
    let mut socket = websocket(node, &url, "v4.channel.k8s.io").await;
    send(&mut socket, 0, request).await;
    let channels = drain(&mut socket).await;
    // Each channel starts with its port, little-endian.
    for channel in [0u8, 1] {
        assert_eq!(
            channels.get(&channel).map(|data| &data[..2]),
            Some(&port.to_le_bytes()[..]),
            "channel {channel}"
        );
    }
    (
        String::from_utf8_lossy(&channels[&0][2..]).into_owned(),
        String::from_utf8_lossy(&channels[&1][2..]).into_owned(),
    )
}

/// Writes a bridge + host-local conflist for the node (IPAM state in the node's dir).
fn write_bridge_conflist(node: &Node) {
    let conflist = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "carrack-stream",
        "plugins": [{
            "type": "bridge",
            "bridge": "cs0",
            "isGateway": true,
            "ipam": {
                "type": "host-local",
                "dataDir": node.base_dir().join("cni").join("ipam"),
                "ranges": [[{"subnet": "10.98.0.0/24"}]]
            }
        }]
    });
    std::fs::create_dir_all(node.cni_conf_dir()).expect("cni conf dir");
    std::fs::write(
        node.cni_conf_dir().join("10-carrack-stream.conflist"),
        serde_json::to_vec_pretty(&conflist).expect("json"),
    )
    .expect("write conflist");
}

/// Waits until an HTTP server answers on `port` inside container `id`.
async fn wait_for_http(cri: &mut CriClient, id: &str, port: u16) {
    loop {
        let probe = cri
            .runtime
            .exec_sync(proto::ExecSyncRequest {
                container_id: id.to_owned(),
                cmd: vec![
                    "wget".to_owned(),
                    "-q".to_owned(),
                    "-O".to_owned(),
                    "-".to_owned(),
                    format!("http://127.0.0.1:{port}/"),
                ],
                timeout: 5,
            })
            .await
            .expect("ExecSync")
            .into_inner();
        if probe.exit_code == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn port_forward_reaches_loopback_inside_a_pod_network() {
    if !skip_unless_root() {
        return;
    }
    let node = Node::start();
    write_bridge_conflist(&node);
    let (mut cri, pod_id, id) = container_in(
        &node,
        &[
            "sh",
            "-c",
            "mkdir -p /www && echo in-pod-netns > /www/index.html && exec httpd -f -p 127.0.0.1:18070 -h /www",
        ],
        proto::NamespaceMode::Pod,
    )
    .await;
    wait_for_http(&mut cri, &id, 18070).await;
    // The server listens on the pod's own loopback: only a connection made in its netns
    // reaches it.
    let (data, error) = forward_once(
        &node,
        &mut cri,
        &pod_id,
        18070,
        b"GET /index.html HTTP/1.0\r\n\r\n",
    )
    .await;
    assert!(data.contains("in-pod-netns"), "{data}");
    assert!(error.is_empty(), "{error}");
    remove_pod(&mut cri, &pod_id).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn port_forward_reaches_a_server_in_a_host_network_pod() {
    if !skip_unless_root() {
        return;
    }
    let node = Node::start();
    let (mut cri, pod_id, _) = http_container(&node, "hello-from-pod", 18080).await;

    let request = b"GET /index.html HTTP/1.0\r\n\r\n";
    let (mut cri1, mut cri2) = (node.cri().await, node.cri().await);
    let (first, second) = tokio::join!(
        forward_once(&node, &mut cri1, &pod_id, 18080, request),
        forward_once(&node, &mut cri2, &pod_id, 18080, request),
    );
    for (data, error) in [first, second] {
        assert!(
            data.starts_with("HTTP/1.") && data.contains("hello-from-pod"),
            "{data}"
        );
        assert!(error.is_empty(), "{error}");
    }

    let (data, error) = forward_once(&node, &mut cri, &pod_id, 18081, request).await;
    assert!(data.is_empty(), "{data}");
    assert!(
        error.starts_with(&format!("error forwarding port 18081 to pod {pod_id}")),
        "{error}"
    );

    remove_pod(&mut cri, &pod_id).await;
}

/// Upgrades `url` to SPDY/3.1 offering `protocol`; the connection's handle.
async fn spdy_connect(node: &Node, url: &str, protocol: &str) -> spdy::ConnectionHandle {
    let (host, _) = split_url(url);
    let socket = tcp(node, &host);
    socket.set_nodelay(true).expect("nodelay");
    spdy_connect_over(socket, url, protocol).await
}

/// Upgrades `url` to SPDY/3.1 offering `protocol` over `socket` (TCP or TLS).
async fn spdy_connect_over<S>(mut socket: S, url: &str, protocol: &str) -> spdy::ConnectionHandle
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (host, path) = split_url(url);
    socket
        .write_all(
            format!(
                "POST {path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: {protocol}\r\nContent-Length: 0\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .expect("send upgrade");
    // Read the reply head byte by byte: what follows it is SPDY.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(socket.read_u8().await.expect("reply head"));
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(
        head.contains(&format!("x-stream-protocol-version: {protocol}")),
        "{head}"
    );
    spdy::connect(socket, spdy::ConnectionConfig::default()).0
}

async fn open(handle: &spdy::ConnectionHandle, headers: &[(&str, &str)]) -> spdy::Stream {
    let mut block = spdy::Headers::new();
    for (name, value) in headers {
        block.insert(name, value);
    }
    handle.open_stream(block).await.expect("open stream")
}

async fn read_all(mut stream: spdy::Stream) -> String {
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text).await;
    text
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_and_port_forward_over_spdy() {
    if !skip_unless_root() {
        return;
    }
    let node = Node::start();
    let (mut cri, pod_id, id) = container(
        &node,
        &[
            "sh",
            "-c",
            "mkdir -p /www && echo spdy-pod > /www/index.html && exec httpd -f -p 127.0.0.1:18090 -h /www",
        ],
    )
    .await;

    let script = "read line; echo out:$line; echo err >&2; exit 4";
    let url = exec_url(&mut cri, exec_request(&id, &["sh", "-c", script], false)).await;
    let handle = spdy_connect(&node, &url, "v4.channel.k8s.io").await;
    let error = open(&handle, &[("streamType", "error")]).await;
    let mut stdin = open(&handle, &[("streamType", "stdin")]).await;
    let stdout = open(&handle, &[("streamType", "stdout")]).await;
    let stderr = open(&handle, &[("streamType", "stderr")]).await;
    stdin.write_all(b"spdy\n").await.expect("stdin");
    stdin.shutdown().await.expect("close stdin");
    let (out, err, status) = tokio::join!(read_all(stdout), read_all(stderr), read_all(error));
    assert_eq!(out, "out:spdy\n", "stderr {err:?} status {status:?}");
    assert_eq!(err, "err\n");
    let status: serde_json::Value = serde_json::from_str(&status).expect("status");
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(status["details"]["causes"][0]["message"], "4");
    drop(stdin);
    // As kubelet's clients do: close once the status is read.
    handle.close();
    handle.closed().await;

    // Port-forward: two connections on one SPDY connection at once, and a closed port.
    wait_for_http(&mut cri, &id, 18090).await;
    let url = forward_url(&mut cri, &pod_id, 18090).await;
    let handle = spdy_connect(&node, &url, "portforward.k8s.io").await;
    let forward = |request_id: &'static str, port: &'static str| {
        let handle = handle.clone();
        async move {
            let error = open(
                &handle,
                &[
                    ("streamType", "error"),
                    ("port", port),
                    ("requestID", request_id),
                ],
            )
            .await;
            let mut data = open(
                &handle,
                &[
                    ("streamType", "data"),
                    ("port", port),
                    ("requestID", request_id),
                ],
            )
            .await;
            data.write_all(b"GET /index.html HTTP/1.0\r\n\r\n")
                .await
                .expect("request");
            let (reply, error) = tokio::join!(read_all(data), read_all(error));
            (reply, error)
        }
    };
    let (first, second) = tokio::join!(forward("1", "18090"), forward("2", "18090"));
    for (reply, error) in [first, second] {
        assert!(reply.contains("spdy-pod"), "{reply}");
        assert!(error.is_empty(), "{error}");
    }
    let (reply, error) = forward("3", "18091").await;
    assert!(reply.is_empty(), "{reply}");
    assert!(
        error.starts_with(&format!("error forwarding port 18091 to pod {pod_id}")),
        "{error}"
    );
    handle.close();

    remove_pod(&mut cri, &pod_id).await;
}

fn attach_request(id: &str, stdin: bool, stderr: bool, tty: bool) -> proto::AttachRequest {
    proto::AttachRequest {
        container_id: id.to_owned(),
        stdin,
        tty,
        stdout: true,
        stderr,
    }
}

async fn attach_url(cri: &mut CriClient, request: proto::AttachRequest) -> String {
    cri.runtime
        .attach(request)
        .await
        .expect("Attach")
        .into_inner()
        .url
}

/// Reads a websocket until channel `channel` has received text containing `wanted`.
async fn read_until(
    socket: &mut WebSocketStream<TcpStream>,
    channels: &mut HashMap<u8, Vec<u8>>,
    channel: u8,
    wanted: &str,
) {
    while !text(channels, channel).contains(wanted) {
        match socket.next().await {
            Some(Ok(Message::Binary(data))) => {
                if let Some((&at, payload)) = data.split_first() {
                    channels.entry(at).or_default().extend_from_slice(payload);
                }
            }
            Some(Ok(Message::Close(_))) | None => {
                panic!("closed before {wanted:?} on channel {channel}: {channels:?}")
            }
            Some(Ok(_)) => {}
            Some(Err(err)) => panic!("websocket: {err}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn attach_passes_live_output_and_stdin_to_several_clients() {
    if !skip_unless_root() {
        return;
    }
    let node = Node::start();
    let script = "while read line; do echo out:$line; echo err:$line >&2; done; echo stdin-ended";
    let (mut cri, pod_id, id) = container_with(
        &node,
        &["sh", "-c", script],
        proto::NamespaceMode::Node,
        ContainerStdio {
            stdin: true,
            ..Default::default()
        },
    )
    .await;

    // B: output only, over SPDY, reading into a shared buffer.
    let url = attach_url(&mut cri, attach_request(&id, false, false, false)).await;
    let spdy_b = spdy_connect(&node, &url, "v4.channel.k8s.io").await;
    let error_b = open(&spdy_b, &[("streamType", "error")]).await;
    let mut stdout_b = open(&spdy_b, &[("streamType", "stdout")]).await;
    let seen_b = Arc::new(std::sync::Mutex::new(String::new()));
    let reader_b = {
        let seen_b = Arc::clone(&seen_b);
        tokio::spawn(async move {
            let mut chunk = [0u8; 1024];
            loop {
                match stdout_b.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(len) => seen_b
                        .lock()
                        .expect("lock")
                        .push_str(&String::from_utf8_lossy(&chunk[..len])),
                }
            }
        })
    };
    let status_b = tokio::spawn(read_all(error_b));

    // A: stdin, stdout and stderr over websocket v5. Input waits in the container's stdin, but
    // B sees only what comes after its attach reached the monitor: ping until it does.
    let url = attach_url(&mut cri, attach_request(&id, true, true, false)).await;
    let mut socket_a = websocket(&node, &url, "v5.channel.k8s.io").await;
    let mut channels_a = HashMap::new();
    while !seen_b.lock().expect("lock").contains("out:ping") {
        send(&mut socket_a, 0, b"ping\n").await;
        read_until(&mut socket_a, &mut channels_a, 1, "out:ping").await;
        channels_a.clear();
    }
    send(&mut socket_a, 0, b"hello\n").await;
    read_until(&mut socket_a, &mut channels_a, 1, "out:hello\n").await;
    read_until(&mut socket_a, &mut channels_a, 2, "err:hello\n").await;
    // A ends its input and goes: without stdin_once the container's stdin stays open.
    send(&mut socket_a, 255, &[0]).await;
    socket_a.close(None).await.expect("close A");
    drop(socket_a);

    // C: a later attach still writes to the same stdin.
    let url = attach_url(&mut cri, attach_request(&id, true, true, false)).await;
    let mut socket_c = websocket(&node, &url, "v4.channel.k8s.io").await;
    let mut channels_c = HashMap::new();
    send(&mut socket_c, 0, b"again\n").await;
    read_until(&mut socket_c, &mut channels_c, 1, "out:again\n").await;
    assert_eq!(
        workload::status(&mut cri, &id).await.state,
        proto::ContainerState::ContainerRunning as i32
    );

    // The container ends: every attach ends with success.
    workload::stop(&mut cri, &id, 10).await;
    let rest_c = drain(&mut socket_c).await;
    assert_eq!(
        text(&rest_c, 3),
        r#"{"metadata":{},"status":"Success"}"#,
        "{rest_c:?}"
    );
    reader_b.await.expect("reader B");
    let seen_b = seen_b.lock().expect("lock").clone();
    assert!(
        seen_b.contains("out:hello\n") && seen_b.contains("out:again\n"),
        "{seen_b}"
    );
    assert!(
        !seen_b.contains("err:"),
        "B did not ask for stderr: {seen_b}"
    );
    assert_eq!(
        status_b.await.expect("status B"),
        r#"{"metadata":{},"status":"Success"}"#
    );
    spdy_b.close();

    // The log got everything, whoever was attached.
    let log = std::fs::read_to_string(node.base_dir().join("pod-logs").join("main").join("0.log"))
        .expect("container log");
    assert!(log.contains(" stdout F out:hello"), "{log}");
    assert!(log.contains(" stderr F err:hello"), "{log}");
    assert!(log.contains(" stdout F out:again"), "{log}");

    remove_pod(&mut cri, &pod_id).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn attach_with_stdin_once_closes_stdin_after_the_first_session_over_spdy() {
    if !skip_unless_root() {
        return;
    }
    let mut node = Node::start();
    let (cri, pod_id, id) = container_with(
        &node,
        &["sh"],
        proto::NamespaceMode::Node,
        ContainerStdio {
            stdin: true,
            stdin_once: true,
            tty: false,
        },
    )
    .await;
    // The monitor holds the container's stdio: attach works after a daemon restart.
    drop(cri);
    node.restart_daemon().expect("restart daemon");
    let mut cri = node.cri().await;

    // As critest does: stdin, stdout and stderr over SPDY; "echo hello", then end the input.
    let url = attach_url(&mut cri, attach_request(&id, true, true, false)).await;
    let handle = spdy_connect(&node, &url, "v4.channel.k8s.io").await;
    let error = open(&handle, &[("streamType", "error")]).await;
    let mut stdin = open(&handle, &[("streamType", "stdin")]).await;
    let mut stdout = open(&handle, &[("streamType", "stdout")]).await;
    let stderr = open(&handle, &[("streamType", "stderr")]).await;
    stdin.write_all(b"echo hello\n").await.expect("stdin");
    let mut out = Vec::new();
    let mut chunk = [0u8; 64];
    while out != b"hello\n" {
        let len = stdout.read(&mut chunk).await.expect("stdout");
        assert!(len > 0, "stdout ended early: {out:?}");
        out.extend_from_slice(&chunk[..len]);
    }
    // The end of this input closes the shell's stdin: it exits, and so does the attach.
    stdin.shutdown().await.expect("close stdin");
    let (rest, err, status) = tokio::join!(read_all(stdout), read_all(stderr), read_all(error));
    assert_eq!(rest, "");
    assert_eq!(err, "");
    assert_eq!(status, r#"{"metadata":{},"status":"Success"}"#);
    handle.close();
    assert_eq!(workload::wait_exited(&mut cri, &id).await.exit_code, 0);

    // Attaching to an exited container is refused.
    let refused = cri
        .runtime
        .attach(attach_request(&id, true, true, false))
        .await
        .expect_err("exited");
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    remove_pod(&mut cri, &pod_id).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn attach_to_a_terminal_applies_resizes() {
    if !skip_unless_root() {
        return;
    }
    let node = Node::start();
    let (mut cri, pod_id, id) = container_with(
        &node,
        &["sh"],
        proto::NamespaceMode::Node,
        ContainerStdio {
            stdin: true,
            stdin_once: false,
            tty: true,
        },
    )
    .await;

    // Refused as kubelet refuses: a terminal has no stderr; some stream is needed.
    let bad = cri
        .runtime
        .attach(attach_request(&id, true, true, true))
        .await
        .expect_err("tty with stderr");
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    let none = cri
        .runtime
        .attach(proto::AttachRequest {
            container_id: id.clone(),
            ..Default::default()
        })
        .await
        .expect_err("no stream");
    assert_eq!(none.code(), tonic::Code::InvalidArgument);

    let url = attach_url(&mut cri, attach_request(&id, true, false, true)).await;
    let mut socket = websocket(&node, &url, "v4.channel.k8s.io").await;
    send(&mut socket, 4, br#"{"Width":120,"Height":33}"#).await;
    send(
        &mut socket,
        0,
        b"while [ \"$(stty size)\" != '33 120' ]; do :; done; echo got $(stty size); [ -t 0 ] && exit 0\n",
    )
    .await;
    let channels = drain(&mut socket).await;
    assert!(text(&channels, 1).contains("got 33 120"), "{channels:?}");
    assert!(!channels.contains_key(&2), "a terminal has no stderr");
    assert_eq!(text(&channels, 3), r#"{"metadata":{},"status":"Success"}"#);

    remove_pod(&mut cri, &pod_id).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_with_a_tty_over_spdy_applies_resizes() {
    if !skip_unless_root() {
        return;
    }
    let node = Node::start();
    let (mut cri, pod_id, id) = container(&node, &["sleep", "3600"]).await;

    let url = exec_url(&mut cri, exec_request(&id, &["sh"], true)).await;
    let handle = spdy_connect(&node, &url, "v4.channel.k8s.io").await;
    let error = open(&handle, &[("streamType", "error")]).await;
    let mut stdin = open(&handle, &[("streamType", "stdin")]).await;
    let stdout = open(&handle, &[("streamType", "stdout")]).await;
    let mut resize = open(&handle, &[("streamType", "resize")]).await;
    resize
        .write_all(br#"{"Width":90,"Height":30}"#)
        .await
        .expect("resize");
    stdin
        .write_all(
            b"while [ \"$(stty size)\" != '30 90' ]; do :; done; echo got $(stty size); [ -t 0 ] && exit 6\n",
        )
        .await
        .expect("stdin");
    let (out, status) = tokio::join!(read_all(stdout), read_all(error));
    assert!(out.contains("got 30 90"), "{out}");
    let status: serde_json::Value = serde_json::from_str(&status).expect("status");
    assert_eq!(status["details"]["causes"][0]["message"], "6");
    drop((stdin, resize));
    handle.close();

    remove_pod(&mut cri, &pod_id).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn port_forward_over_spdy_tunneled_in_a_websocket() {
    if !skip_unless_root() {
        return;
    }
    let node = Node::start();
    let (mut cri, pod_id, _) = http_container(&node, "tunneled", 18100).await;
    let url = forward_url(&mut cri, &pod_id, 18100).await;
    // As kubectl's websocket port-forward does: SPDY inside binary websocket messages.
    let socket = websocket(&node, &url, "SPDY/3.1+portforward.k8s.io").await;
    let tunnel = carrack::streaming::tunnel::byte_stream(socket);
    let (handle, _) = spdy::connect(tunnel, spdy::ConnectionConfig::default());
    let headers =
        |kind: &'static str| [("streamType", kind), ("port", "18100"), ("requestID", "0")];
    let error = open(&handle, &headers("error")).await;
    let mut data = open(&handle, &headers("data")).await;
    data.write_all(b"GET /index.html HTTP/1.0\r\n\r\n")
        .await
        .expect("request");
    let (reply, error) = tokio::join!(read_all(data), read_all(error));
    assert!(reply.contains("tunneled"), "{reply}");
    assert!(error.is_empty(), "{error}");
    handle.close();

    remove_pod(&mut cri, &pod_id).await;
}

/// Accepts any server certificate (the daemon's is self-signed and generated at start) while
/// still checking the handshake signatures: the session is real TLS.
#[derive(Debug)]
struct AcceptSelfSigned(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptSelfSigned {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A TLS connection to the `https` URL's server, made inside the node's netns.
async fn tls(node: &Node, url: &str) -> tokio_rustls::client::TlsStream<TcpStream> {
    let (host, _) = split_url(url);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptSelfSigned(provider)))
        .with_no_client_auth();
    let ip = host.rsplit_once(':').expect("host:port").0.to_owned();
    let name = rustls::pki_types::ServerName::try_from(ip).expect("server name");
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp(node, &host))
        .await
        .expect("TLS handshake with the streaming server")
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_over_https_with_the_self_signed_certificate() {
    if !skip_unless_root() {
        return;
    }
    let node = Node::builder()
        .config("[streaming]\ntls = \"self-signed\"\n")
        .start();
    let (mut cri, pod_id, id) = container(&node, &["sleep", "3600"]).await;
    let script = "read line; echo out:$line; exit 6";

    // WebSocket.
    let url = exec_url(&mut cri, exec_request(&id, &["sh", "-c", script], false)).await;
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let mut socket = websocket_over(tls(&node, &url).await, &url, "v5.channel.k8s.io").await;
    send(&mut socket, 0, b"wss\n").await;
    send(&mut socket, 255, &[0]).await;
    let channels = drain(&mut socket).await;
    assert_eq!(text(&channels, 1), "out:wss\n");
    let status: serde_json::Value = serde_json::from_slice(&channels[&3]).expect("status");
    assert_eq!(status["details"]["causes"][0]["message"], "6");

    // SPDY.
    let url = exec_url(&mut cri, exec_request(&id, &["sh", "-c", script], false)).await;
    let handle = spdy_connect_over(tls(&node, &url).await, &url, "v4.channel.k8s.io").await;
    let error = open(&handle, &[("streamType", "error")]).await;
    let mut stdin = open(&handle, &[("streamType", "stdin")]).await;
    let stdout = open(&handle, &[("streamType", "stdout")]).await;
    let stderr = open(&handle, &[("streamType", "stderr")]).await;
    stdin.write_all(b"spdy-tls\n").await.expect("stdin");
    stdin.shutdown().await.expect("close stdin");
    let (out, _, status) = tokio::join!(read_all(stdout), read_all(stderr), read_all(error));
    assert_eq!(out, "out:spdy-tls\n", "status {status:?}");
    let status: serde_json::Value = serde_json::from_str(&status).expect("status");
    assert_eq!(status["details"]["causes"][0]["message"], "6");
    drop(stdin);
    handle.close();

    // Plain HTTP is not served on the TLS port.
    let (host, path) = split_url(&url);
    let mut plain = tcp(&node, &host);
    plain
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .await
        .expect("send");
    let mut reply = Vec::new();
    let _ = plain.read_to_end(&mut reply).await;
    assert!(!reply.starts_with(b"HTTP/1.1 "), "{reply:?}");

    remove_pod(&mut cri, &pod_id).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_websocket_exec_is_closed_after_the_idle_timeout() {
    if !skip_unless_root() {
        return;
    }
    let node = Node::builder()
        .config("[streaming]\nidle_timeout_secs = 2\n")
        .start();
    let (mut cri, pod_id, id) = container(&node, &["sleep", "3600"]).await;
    let mut request = exec_request(&id, &["sleep", "3600"], false);
    request.stdin = false;
    let url = exec_url(&mut cri, request).await;
    let mut socket = websocket(&node, &url, "v5.channel.k8s.io").await;
    // Nothing flows either way: the server closes the stream, saying why. (The bound is a
    // hang guard far above the timeout, not a measurement.)
    let close = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(message) = socket.next().await {
            match message.expect("websocket message") {
                Message::Close(frame) => return frame,
                // The empty frame each channel gets when the stream opens.
                Message::Binary(data) if data.len() == 1 => {}
                other => panic!("nothing was due: {other:?}"),
            }
        }
        None
    })
    .await
    .expect("the idle stream is closed by the server")
    .expect("a close frame");
    assert_eq!(close.reason.as_str(), "idle timeout", "{close:?}");
    remove_pod(&mut cri, &pod_id).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_over_the_older_spdy_protocol_versions() {
    if !skip_unless_root() {
        return;
    }
    let node = Node::start();
    let (mut cri, pod_id, id) = container(&node, &["sleep", "3600"]).await;
    let script = "read line; echo out:$line; echo err:$line >&2; exit 3";
    for protocol in ["v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"] {
        let url = exec_url(&mut cri, exec_request(&id, &["sh", "-c", script], false)).await;
        let handle = spdy_connect(&node, &url, protocol).await;
        let error = open(&handle, &[("streamType", "error")]).await;
        let mut stdin = open(&handle, &[("streamType", "stdin")]).await;
        let stdout = open(&handle, &[("streamType", "stdout")]).await;
        let stderr = open(&handle, &[("streamType", "stderr")]).await;
        stdin.write_all(protocol.as_bytes()).await.expect("stdin");
        stdin.write_all(b"\n").await.expect("stdin");
        stdin.shutdown().await.expect("close stdin");
        let (out, err, status) = tokio::join!(read_all(stdout), read_all(stderr), read_all(error));
        assert_eq!(
            out,
            format!("out:{protocol}\n"),
            "{protocol}: status {status:?}"
        );
        assert_eq!(err, format!("err:{protocol}\n"), "{protocol}");
        // Before v4 the error stream carries the message as text, not a Status object.
        assert!(
            status.starts_with("command terminated with non-zero exit code")
                && status.ends_with("exit code 3"),
            "{protocol}: {status:?}"
        );
        drop(stdin);
        handle.close();
        handle.closed().await;
    }
    remove_pod(&mut cri, &pod_id).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_bound_to_any_address_advertises_a_dialable_host() {
    if !skip_unless_root() {
        return;
    }
    for (extra, host) in [
        // The node's netns has no default route: loopback, with a warning.
        ("", "127.0.0.1"),
        ("advertise_address = \"localhost\"\n", "localhost"),
    ] {
        let node = Node::builder()
            .config(&format!("[streaming]\naddress = \"0.0.0.0:0\"\n{extra}"))
            .start();
        let mut cri = node.cri().await;
        let (pod_id, _) = workload::run_pod(&node, &mut cri, "advertised").await;
        let url = forward_url(&mut cri, &pod_id, 80).await;
        assert!(url.starts_with(&format!("http://{host}:")), "{url}");
        // Dialable: the server answers there (the token is good for one upgrade, so a plain
        // GET of an unknown one is the probe).
        let (authority, _) = split_url(&url);
        let port = authority.rsplit_once(':').expect("port").1;
        let probe = format!("http://127.0.0.1:{port}/portforward/no-such-token");
        assert_eq!(get_status(&node, &probe).await, 404);
        remove_pod(&mut cri, &pod_id).await;
    }
}
