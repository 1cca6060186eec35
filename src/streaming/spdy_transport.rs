//! The SPDY/3.1 transport as kubelet's clients use it: after the HTTP upgrade the client
//! opens one stream per remotecommand stream (header `streamType`: `error`, `stdin`,
//! `stdout`, `stderr`, `resize`), or, for port-forward, an `error` and a `data` stream per
//! connection paired by `requestID` and naming the `port`. This file turns those streams into
//! the protocol-neutral sessions; the framing lives in [`super::spdy`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::forward;
use super::negotiate::{self, StdioProtocol};
use super::requests::{PendingRequest, StreamOptions};
use super::server::{self, State};
use super::session::{ForwardSession, ForwardStream, Input, Output, StdioSession};
use super::spdy::{self, ConnectionHandle, Stream};

/// How long a client may take to open the streams of an exec or attach (kubelet's default).
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the client gets to close the connection after an exec or attach ended.
const CLOSE_GRACE: Duration = Duration::from_secs(30);

/// Streams the session code is done with, kept open until the connection ends: dropping a
/// SPDY stream the client has not finished resets it, and a reset can overtake the last data
/// and the FIN on the client's side (Go's clients never finish their half of `stdout`).
type Keep = mpsc::UnboundedSender<Box<dyn Send>>;

/// A stream (or half of one) that goes to the keep list instead of being dropped.
struct Kept<T: Send + 'static> {
    inner: Option<T>,
    keep: Keep,
}

impl<T: Send + 'static> Drop for Kept<T> {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            let _ = self.keep.send(Box::new(inner));
        }
    }
}

impl<T: tokio::io::AsyncRead + Send + Unpin + 'static> tokio::io::AsyncRead for Kept<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.inner.as_mut() {
            Some(inner) => std::pin::Pin::new(inner).poll_read(cx, buf),
            None => std::task::Poll::Ready(Ok(())),
        }
    }
}

impl<T: tokio::io::AsyncWrite + Send + Unpin + 'static> tokio::io::AsyncWrite for Kept<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.inner.as_mut() {
            Some(inner) => std::pin::Pin::new(inner).poll_write(cx, buf),
            None => std::task::Poll::Ready(Ok(0)),
        }
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.inner.as_mut() {
            Some(inner) => std::pin::Pin::new(inner).poll_flush(cx),
            None => std::task::Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.inner.as_mut() {
            Some(inner) => std::pin::Pin::new(inner).poll_shutdown(cx),
            None => std::task::Poll::Ready(Ok(())),
        }
    }
}

fn kept<T: Send + 'static>(inner: T, keep: &Keep) -> Kept<T> {
    Kept {
        inner: Some(inner),
        keep: keep.clone(),
    }
}

/// Serves one upgraded connection.
pub(super) async fn serve<IO>(
    state: Arc<State>,
    io: IO,
    protocol: &'static str,
    pending: PendingRequest,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let config = spdy::ConnectionConfig {
        idle_timeout: Some(state.idle_timeout),
        ..Default::default()
    };
    let (handle, streams) = spdy::serve(io, config);
    let (keep, mut kept_streams) = mpsc::unbounded_channel::<Box<dyn Send>>();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Some(stream) = kept_streams.recv().await {
            held.push(stream);
        }
        held
    });
    match pending {
        PendingRequest::Exec(exec) => {
            let properties = negotiate::stdio_protocol(protocol);
            if let Some(session) =
                stdio_session(&handle, streams, exec.streams, properties, &keep).await
            {
                server::run_exec(&state, &exec.container_id, &exec.cmd, exec.streams, session)
                    .await;
            }
        }
        PendingRequest::Attach(attach) => {
            let properties = negotiate::stdio_protocol(protocol);
            if let Some(session) =
                stdio_session(&handle, streams, attach.streams, properties, &keep).await
            {
                server::run_attach(&state, &attach.container_id, attach.streams, session).await;
            }
        }
        PendingRequest::PortForward(request) => {
            let (tx, pairs) = mpsc::channel(16);
            tokio::spawn(pair_streams(streams, tx, keep.clone()));
            let closed_handle = handle.clone();
            let session = ForwardSession {
                streams: pairs,
                closed: Box::pin(async move { closed_handle.closed().await }),
            };
            forward::serve(Arc::clone(&state.runtime), request.pod_id, session).await;
        }
    }
    drop(keep);
    // The client closes the connection once it has read everything.
    handle.close();
    if tokio::time::timeout(CLOSE_GRACE, handle.closed())
        .await
        .is_err()
    {
        handle.abort();
    }
    drop(holder.await);
}

/// Waits for the client's remotecommand streams and makes them a session; `None` (the
/// connection is closed) when they do not all come in time.
async fn stdio_session(
    handle: &ConnectionHandle,
    mut streams: mpsc::Receiver<Stream>,
    options: StreamOptions,
    protocol: StdioProtocol,
    keep: &Keep,
) -> Option<StdioSession> {
    let expected = 1
        + usize::from(options.stdin)
        + usize::from(options.stdout)
        + usize::from(options.stderr)
        + usize::from(options.tty && protocol.resize);
    let mut received: HashMap<String, Stream> = HashMap::new();
    let collect = async {
        while received.len() < expected {
            let stream = streams.recv().await?;
            match stream.headers().get("streamType") {
                Some(kind @ ("error" | "stdin" | "stdout" | "stderr" | "resize")) => {
                    received.insert(kind.to_owned(), stream);
                }
                other => {
                    tracing::debug!(stream_type = ?other, "unexpected SPDY stream; resetting");
                    let mut stream = stream;
                    stream.reset();
                }
            }
        }
        Some(())
    };
    if !matches!(
        tokio::time::timeout(STREAM_CREATION_TIMEOUT, collect).await,
        Ok(Some(()))
    ) {
        tracing::debug!("client did not open its streams in time");
        handle.abort();
        return None;
    }
    // Later streams are not expected; keep accepting so the connection is not held up.
    tokio::spawn(async move { while streams.recv().await.is_some() {} });
    let error = received.remove("error")?;
    let input = |stream: Stream| Box::new(kept(stream, keep)) as Input;
    let output = |stream: Stream| Box::new(kept(stream, keep)) as Output;
    let closed_handle = handle.clone();
    Some(StdioSession {
        stdin: received
            .remove("stdin")
            .filter(|_| options.stdin)
            .map(input),
        stdout: received
            .remove("stdout")
            .filter(|_| options.stdout)
            .map(output),
        stderr: received
            .remove("stderr")
            .filter(|_| options.stderr)
            .map(output),
        error: output(error),
        resize: received.remove("resize").filter(|_| options.tty).map(input),
        status: protocol.status,
        closed: Box::pin(async move { closed_handle.closed().await }),
    })
}

/// Pairs port-forward streams by request id and hands out each complete pair.
async fn pair_streams(
    mut streams: mpsc::Receiver<Stream>,
    pairs: mpsc::Sender<ForwardStream>,
    keep: Keep,
) {
    // Half pairs by request id: (error stream, data stream).
    let mut halves: HashMap<String, (Option<Stream>, Option<Stream>)> = HashMap::new();
    while let Some(mut stream) = streams.recv().await {
        let kind = stream.headers().get("streamType").map(str::to_owned);
        let Some(id) = request_id(&stream, kind.as_deref()) else {
            stream.reset();
            continue;
        };
        let half = halves.entry(id.clone()).or_default();
        match kind.as_deref() {
            Some("error") => half.0 = Some(stream),
            Some("data") => half.1 = Some(stream),
            _ => {
                stream.reset();
                continue;
            }
        }
        if half.0.is_none() || half.1.is_none() {
            continue;
        }
        if let Some((Some(error), Some(data))) = halves.remove(&id) {
            let port = port_of(&data);
            let (data_in, data_out) = tokio::io::split(data);
            let stream = ForwardStream {
                port,
                data_in: Box::new(kept(data_in, &keep)),
                data_out: Box::new(kept(data_out, &keep)),
                error: Box::new(kept(error, &keep)),
            };
            if pairs.send(stream).await.is_err() {
                return;
            }
        }
    }
}

/// The pair a port-forward stream belongs to: its `requestID`, or for old clients without
/// one, the error stream's id (the data stream is opened right after, two ids later).
fn request_id(stream: &Stream, kind: Option<&str>) -> Option<String> {
    if let Some(id) = stream.headers().get("requestID") {
        return Some(id.to_owned());
    }
    match kind {
        Some("data") => stream.id().checked_sub(2).map(|id| id.to_string()),
        _ => Some(stream.id().to_string()),
    }
}

/// The port a data stream names.
fn port_of(stream: &Stream) -> Result<u16, String> {
    let value = stream.headers().get("port").unwrap_or_default();
    value
        .parse::<u16>()
        .ok()
        .filter(|port| *port > 0)
        .ok_or_else(|| format!("invalid port header {value:?}"))
}
