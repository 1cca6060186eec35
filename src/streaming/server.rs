//! The HTTP/1.1 server behind the streaming URLs: accepts connections (TLS when configured),
//! takes the token out of `/{exec,attach,portforward}/<token>` (unknown or used → 404), and
//! upgrades the connection to the protocol the client negotiates.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::negotiate::{
    self, SPDY_FORWARD_PROTOCOLS, SPDY_STDIO_PROTOCOLS, WEBSOCKET_FORWARD_PROTOCOLS,
    WEBSOCKET_STDIO_PROTOCOLS,
};
use super::requests::{PendingRequest, StreamOptions};
use super::runtime::{ProcessIo, StreamRuntime};
use super::session::{ForwardSession, ForwardStream, StdioSession};
use super::status::Outcome;
use super::urls::StreamingUrls;
use super::{forward, spdy_transport, stdio, tunnel, websocket};

/// How long a client may take to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// What every connection handler shares.
pub(super) struct State {
    pub urls: StreamingUrls,
    pub runtime: Arc<dyn StreamRuntime>,
    pub idle_timeout: Duration,
}

type Reply = Response<Full<Bytes>>;

/// Accepts connections until the task is aborted.
pub(super) async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    state: Arc<State>,
) {
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of descriptors, usually: back off instead of spinning.
                tracing::warn!(error = %err, "streaming server: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let state = Arc::clone(&state);
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                Some(tls) => match tls.accept(socket).await {
                    Ok(stream) => serve_connection(stream, state).await,
                    Err(err) => {
                        tracing::debug!(%peer, error = %err, "streaming TLS handshake failed")
                    }
                },
                None => serve_connection(socket, state).await,
            }
        });
    }
}

async fn serve_connection<IO>(io: IO, state: Arc<State>)
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let service = hyper::service::service_fn(move |request| {
        let state = Arc::clone(&state);
        async move { Ok::<_, Infallible>(route(state, request)) }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades()
        .await;
    if let Err(err) = served {
        tracing::debug!(error = %err, "streaming connection ended with an error");
    }
}

/// Answers one request.
fn route(state: Arc<State>, request: Request<Incoming>) -> Reply {
    if request.method() != Method::GET && request.method() != Method::POST {
        return reply(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    }
    let mut segments = request.uri().path().trim_start_matches('/').split('/');
    let (Some(kind), Some(token), None) = (segments.next(), segments.next(), segments.next())
    else {
        return reply(StatusCode::NOT_FOUND, "404 page not found");
    };
    let Some(pending) = state
        .urls
        .take(token)
        .filter(|pending| pending.kind() == kind)
    else {
        return reply(StatusCode::NOT_FOUND, "404 page not found");
    };
    if is_websocket(request.headers()) {
        return upgrade_websocket(state, request, pending);
    }
    if is_spdy(request.headers()) {
        return upgrade_spdy(state, request, pending);
    }
    reply(
        StatusCode::BAD_REQUEST,
        "a streaming request must upgrade to SPDY/3.1 or websocket",
    )
}

/// `Upgrade: websocket` with `Connection: upgrade` among the connection options.
fn is_websocket(headers: &HeaderMap) -> bool {
    let upgrade = headers
        .get(header::UPGRADE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.eq_ignore_ascii_case("websocket"));
    upgrade && connection_upgrade(headers)
}

/// `Upgrade: SPDY/3.1` with `Connection: upgrade`.
fn is_spdy(headers: &HeaderMap) -> bool {
    let upgrade = headers
        .get(header::UPGRADE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.eq_ignore_ascii_case("SPDY/3.1"));
    upgrade && connection_upgrade(headers)
}

/// The header kubelet's clients negotiate SPDY stream protocols with.
const STREAM_PROTOCOL_HEADER: &str = "X-Stream-Protocol-Version";

fn upgrade_spdy(
    state: Arc<State>,
    mut request: Request<Incoming>,
    pending: PendingRequest,
) -> Reply {
    let supported: &[&'static str] = match pending {
        PendingRequest::PortForward(_) => &SPDY_FORWARD_PROTOCOLS,
        _ => &SPDY_STDIO_PROTOCOLS,
    };
    let offered = header_values(request.headers(), STREAM_PROTOCOL_HEADER);
    // A client naming no protocol predates negotiation: it speaks the first version.
    let protocol = if offered.is_empty() {
        ""
    } else {
        match negotiate::choose(&offered, supported) {
            Some(protocol) => protocol,
            None => {
                let mut response = reply(
                    StatusCode::FORBIDDEN,
                    &format!(
                        "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server accepts {supported:?}"
                    ),
                );
                if let Ok(value) = header::HeaderValue::from_str(&supported.join(", ")) {
                    response
                        .headers_mut()
                        .insert("X-Accepted-Stream-Protocol-Versions", value);
                }
                return response;
            }
        }
    };
    let upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        match upgrade.await {
            Ok(upgraded) => {
                spdy_transport::serve(state, TokioIo::new(upgraded), protocol, pending).await;
            }
            Err(err) => tracing::debug!(error = %err, "SPDY upgrade failed"),
        }
    });
    let mut response = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::UPGRADE, "SPDY/3.1")
        .header(header::CONNECTION, "Upgrade");
    if !protocol.is_empty() {
        response = response.header(STREAM_PROTOCOL_HEADER, protocol);
    }
    response
        .body(Full::default())
        .unwrap_or_else(|_| reply(StatusCode::INTERNAL_SERVER_ERROR, "response"))
}

/// Whether `Connection` lists `upgrade`.
pub(super) fn connection_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|option| option.trim().eq_ignore_ascii_case("upgrade"))
}

/// Every value of header `name`.
pub(super) fn header_values<'a>(headers: &'a HeaderMap, name: &str) -> Vec<&'a str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .collect()
}

fn upgrade_websocket(
    state: Arc<State>,
    mut request: Request<Incoming>,
    pending: PendingRequest,
) -> Reply {
    let headers = request.headers();
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return reply(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key");
    };
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|version| version.as_bytes() != b"13")
    {
        return reply(StatusCode::BAD_REQUEST, "unsupported websocket version");
    }
    let supported: &[&str] = match pending {
        PendingRequest::PortForward(_) => &WEBSOCKET_FORWARD_PROTOCOLS,
        _ => &WEBSOCKET_STDIO_PROTOCOLS,
    };
    let offered = header_values(headers, header::SEC_WEBSOCKET_PROTOCOL.as_str());
    let Some(protocol) = negotiate::choose(&offered, supported) else {
        return reply(
            StatusCode::FORBIDDEN,
            &format!(
                "requested protocol(s) are not supported: {offered:?}; supports {supported:?}"
            ),
        );
    };
    if let PendingRequest::PortForward(forward) = &pending
        && forward.ports.is_empty()
        && tunnel::tunneled_protocol(protocol).is_none()
    {
        return reply(StatusCode::BAD_REQUEST, "no port to forward");
    }
    let accept = derive_accept_key(key.as_bytes());
    let upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        let upgraded = match upgrade.await {
            Ok(upgraded) => upgraded,
            Err(err) => {
                tracing::debug!(error = %err, "websocket upgrade failed");
                return;
            }
        };
        let socket =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        serve_websocket(state, socket, protocol, pending).await;
    });
    let mut response = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::UPGRADE, "websocket")
        .header(header::CONNECTION, "Upgrade")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept);
    if !protocol.is_empty() {
        response = response.header(header::SEC_WEBSOCKET_PROTOCOL, protocol);
    }
    response
        .body(Full::default())
        .unwrap_or_else(|_| reply(StatusCode::INTERNAL_SERVER_ERROR, "response"))
}

/// Stdio channel numbers of the remotecommand websocket protocol.
const STDIN: usize = 0;
const STDOUT: usize = 1;
const STDERR: usize = 2;
const ERROR: usize = 3;
const RESIZE: usize = 4;

async fn serve_websocket<S>(
    state: Arc<State>,
    socket: WebSocketStream<S>,
    protocol: &'static str,
    pending: PendingRequest,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    match pending {
        PendingRequest::Exec(exec) => {
            let session = websocket_stdio(&state, socket, protocol, exec.streams);
            run_exec(&state, &exec.container_id, &exec.cmd, exec.streams, session).await;
        }
        PendingRequest::Attach(attach) => {
            let session = websocket_stdio(&state, socket, protocol, attach.streams);
            run_attach(&state, &attach.container_id, attach.streams, session).await;
        }
        PendingRequest::PortForward(_) if let Some(spdy) = tunnel::tunneled_protocol(protocol) => {
            spdy_transport::serve(state, tunnel::byte_stream(socket), spdy, pending).await;
        }
        PendingRequest::PortForward(request) => {
            let mut layout = websocket::Layout {
                idle_timeout: state.idle_timeout,
                ..Default::default()
            };
            for (at, port) in request.ports.iter().enumerate() {
                let prefix = Bytes::copy_from_slice(&port.to_le_bytes());
                layout.readable.extend([true, false]);
                for channel in [2 * at, 2 * at + 1] {
                    layout
                        .initial
                        .push((u8::try_from(channel).unwrap_or(u8::MAX), prefix.clone()));
                }
            }
            let mut channels = websocket::open(socket, layout);
            let (tx, streams) = tokio::sync::mpsc::channel(request.ports.len().max(1));
            let mut writers = channels.writers.into_iter();
            for (at, port) in request.ports.iter().enumerate() {
                let (Some(Some(data_in)), Some(data_out), Some(error)) = (
                    channels.readers.get_mut(2 * at).map(Option::take),
                    writers.next(),
                    writers.next(),
                ) else {
                    break;
                };
                let _ = tx
                    .send(ForwardStream {
                        port: Ok(*port),
                        data_in,
                        data_out,
                        error,
                    })
                    .await;
            }
            drop(tx);
            let session = ForwardSession {
                streams,
                closed: channels.closed,
            };
            forward::serve(Arc::clone(&state.runtime), request.pod_id, session).await;
        }
    }
}

/// Opens the remotecommand channels of a websocket and makes them a session.
fn websocket_stdio<S>(
    state: &State,
    socket: WebSocketStream<S>,
    protocol: &str,
    streams: StreamOptions,
) -> StdioSession
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let properties = negotiate::stdio_protocol(protocol);
    // kubelet tells the client the streams are ready with an empty message on the lowest
    // channel it writes.
    let first = if streams.stdout {
        STDOUT
    } else if streams.stderr {
        STDERR
    } else {
        ERROR
    };
    let layout = websocket::Layout {
        readable: vec![streams.stdin, false, false, false, streams.tty],
        initial: vec![(u8::try_from(first).unwrap_or(u8::MAX), Bytes::new())],
        close_signal: properties.close_signal,
        idle_timeout: state.idle_timeout,
    };
    let mut channels = websocket::open(socket, layout);
    let mut writers: Vec<Option<_>> = channels.writers.into_iter().map(Some).collect();
    let mut take_writer = |at: usize| writers.get_mut(at).and_then(Option::take);
    let stdout = take_writer(STDOUT).filter(|_| streams.stdout);
    let stderr = take_writer(STDERR).filter(|_| streams.stderr);
    let error = take_writer(ERROR);
    let mut take_reader = |at: usize| channels.readers.get_mut(at).and_then(Option::take);
    let stdin = take_reader(STDIN);
    let resize = take_reader(RESIZE);
    StdioSession {
        stdin,
        stdout,
        stderr,
        error: error.unwrap_or_else(|| Box::new(tokio::io::sink())),
        resize,
        status: properties.status,
        closed: channels.closed,
    }
}

fn process_io(streams: StreamOptions) -> ProcessIo {
    ProcessIo {
        stdin: streams.stdin,
        stdout: streams.stdout,
        stderr: streams.stderr,
        tty: streams.tty,
    }
}

/// Runs an exec over `session`.
pub(super) async fn run_exec(
    state: &State,
    container_id: &str,
    cmd: &[String],
    streams: StreamOptions,
    session: StdioSession,
) {
    match state.runtime.exec(container_id, cmd, process_io(streams)) {
        Ok(process) => stdio::serve(process, session, Some(cmd)).await,
        Err(err) => {
            tracing::debug!(container_id, error = %err, "streaming exec failed to start");
            fail(session, &err.to_string()).await;
        }
    }
}

/// Runs an attach over `session`.
pub(super) async fn run_attach(
    state: &State,
    container_id: &str,
    streams: StreamOptions,
    session: StdioSession,
) {
    match state.runtime.attach(container_id, process_io(streams)) {
        Ok(process) => stdio::serve(process, session, None).await,
        Err(err) => {
            tracing::debug!(container_id, error = %err, "attach failed");
            fail(session, &err.to_string()).await;
        }
    }
}

async fn fail(mut session: StdioSession, message: &str) {
    use tokio::io::AsyncWriteExt;
    let bytes = Outcome::Internal(message.to_owned()).encode(session.status);
    let _ = session.error.write_all(&bytes).await;
    let _ = session.error.shutdown().await;
}

pub(super) fn reply(status: StatusCode, text: &str) -> Reply {
    let mut response = Response::new(Full::new(Bytes::from(format!("{text}\n"))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
