//! The WebSocket transport: kubelet's `channel.k8s.io` framing, where every binary message
//! starts with a channel byte (exec/attach: 0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize;
//! port-forward: 2n data and 2n+1 error of the n-th port). From `v5.channel.k8s.io` on, a
//! message on channel 255 carrying a channel number closes that channel (stdin EOF).
//!
//! One task owns the socket: it routes incoming messages to per-channel readers, sends what
//! the channel writers queue, and closes the socket when every writer is gone and the queue
//! is drained, or when the connection is idle for the configured time. A reader that does not
//! keep up stops the intake of that connection only (never the output it still sends).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::io::StreamReader;
use tokio_util::sync::PollSender;

use super::session::{Closed, Input, Output};

/// The channel of v5's close signal.
pub const CLOSE_CHANNEL: u8 = 255;
/// Largest payload per message (kubelet's clients read 32 KiB buffers).
const MAX_MESSAGE: usize = 32 * 1024;
/// Messages queued per connection towards the client, and per input channel.
const QUEUE: usize = 16;

/// How a connection's channels are laid out.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    /// For each channel number from 0: whether the client may write to it.
    pub readable: Vec<bool>,
    /// Messages sent before any other (kubelet's "connected" empty message, port prefixes).
    pub initial: Vec<(u8, Bytes)>,
    /// Whether channel 255 closes channels (v5).
    pub close_signal: bool,
    /// Close the connection after this long without a message either way.
    pub idle_timeout: Duration,
}

/// The open channels of a connection.
pub struct Channels {
    /// Readers, by channel number; `None` for channels the client may not write.
    pub readers: Vec<Option<Input>>,
    /// A writer for each channel number.
    pub writers: Vec<Output>,
    /// Resolves when the client is gone (closed, failed or idle).
    pub closed: Closed,
}

impl std::fmt::Debug for Channels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channels")
            .field("channels", &self.writers.len())
            .finish_non_exhaustive()
    }
}

/// Starts serving `socket` with `layout` and returns its channels.
pub fn open<S>(socket: WebSocketStream<S>, layout: Layout) -> Channels
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (out_tx, out_rx) = mpsc::channel::<(u8, Bytes)>(QUEUE);
    let mut readers = Vec::new();
    let mut inputs = Vec::new();
    for readable in &layout.readable {
        if *readable {
            let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(QUEUE);
            readers.push(Some(
                Box::new(StreamReader::new(ReceiverStream::new(rx))) as Input
            ));
            inputs.push(Some(tx));
        } else {
            readers.push(None);
            inputs.push(None);
        }
    }
    let channel_count = u8::try_from(layout.readable.len()).unwrap_or(u8::MAX);
    let writers = (0..channel_count)
        .map(|channel| {
            Box::new(ChannelWriter {
                channel,
                queue: PollSender::new(out_tx.clone()),
            }) as Output
        })
        .collect();
    drop(out_tx);
    let (gone_tx, mut gone_rx) = watch::channel(false);
    tokio::spawn(pump(socket, layout, inputs, out_rx, gone_tx));
    let closed: Closed = Box::pin(async move {
        let _ = gone_rx.wait_for(|gone| *gone).await;
    });
    Channels {
        readers,
        writers,
        closed,
    }
}

async fn pump<S>(
    mut socket: WebSocketStream<S>,
    layout: Layout,
    mut inputs: Vec<Option<mpsc::Sender<io::Result<Bytes>>>>,
    mut outgoing: mpsc::Receiver<(u8, Bytes)>,
    gone: watch::Sender<bool>,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    for (channel, data) in &layout.initial {
        if socket.send(frame(*channel, data)).await.is_err() {
            let _ = gone.send(true);
            return;
        }
    }
    // An input message waiting for room in its channel's queue.
    let mut pending: Option<(usize, Bytes)> = None;
    let idle = tokio::time::sleep(layout.idle_timeout);
    tokio::pin!(idle);
    // `None`: the client is gone; else the close frame to send it.
    let close = loop {
        // The waiting message's channel (cloned: the handlers below change `inputs`).
        let waiting = pending
            .as_ref()
            .map(|(channel, _)| inputs.get(*channel).cloned().flatten());
        let room = async move {
            match waiting {
                Some(Some(tx)) => tx.reserve_owned().await.ok(),
                Some(None) => None,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            permit = room => {
                if let (Some(permit), Some((_, data))) = (permit, pending.take()) {
                    permit.send(Ok(data));
                } else if let Some((channel, _)) = pending.take() {
                    // The reader was dropped: nobody wants that channel any more.
                    if let Some(slot) = inputs.get_mut(channel) {
                        *slot = None;
                    }
                }
            }
            message = socket.next(), if pending.is_none() => {
                idle.as_mut().reset(tokio::time::Instant::now() + layout.idle_timeout);
                match message {
                    Some(Ok(Message::Binary(data))) => {
                        pending = route(&layout, &mut inputs, data);
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break None,
                    // Pings are answered by the library; text is not part of the protocol.
                    Some(Ok(_)) => {}
                }
            }
            queued = outgoing.recv() => {
                idle.as_mut().reset(tokio::time::Instant::now() + layout.idle_timeout);
                match queued {
                    Some((channel, data)) => {
                        if socket.send(frame(channel, &data)).await.is_err() {
                            break None;
                        }
                    }
                    None => break Some(CloseFrame {
                        code: CloseCode::Normal,
                        reason: "".into(),
                    }),
                }
            }
            () = &mut idle => {
                tracing::debug!(timeout_s = layout.idle_timeout.as_secs(), "websocket stream idle; closing");
                // A close handshake rather than a bare reset: the client learns why.
                break Some(CloseFrame {
                    code: CloseCode::Away,
                    reason: "idle timeout".into(),
                });
            }
        }
    };
    // End of input for every channel: the session sees EOF.
    drop(inputs);
    let _ = gone.send(true);
    if let Some(close) = close {
        let _ = socket.send(Message::Close(Some(close))).await;
        // Wait (briefly, bounded by the client) for the client's close reply.
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(Ok(_)) = socket.next().await {}
        })
        .await;
    }
}

/// Delivers one client message: `Some` when it must wait for room in its channel.
fn route(
    layout: &Layout,
    inputs: &mut [Option<mpsc::Sender<io::Result<Bytes>>>],
    data: Bytes,
) -> Option<(usize, Bytes)> {
    let (&channel, _) = data.split_first()?;
    let payload = data.slice(1..);
    if channel == CLOSE_CHANNEL && layout.close_signal {
        if let Some(&closed) = payload.first()
            && let Some(slot) = inputs.get_mut(usize::from(closed))
        {
            *slot = None;
        }
        return None;
    }
    let channel = usize::from(channel);
    match inputs.get(channel) {
        Some(Some(_)) if !payload.is_empty() => Some((channel, payload)),
        // Empty messages, unknown or write-only channels: ignored, as kubelet does.
        _ => None,
    }
}

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut bytes = Vec::with_capacity(data.len() + 1);
    bytes.push(channel);
    bytes.extend_from_slice(data);
    Message::Binary(bytes.into())
}

/// Writes to one channel: each write is one message (at most [`MAX_MESSAGE`] bytes).
struct ChannelWriter {
    channel: u8,
    queue: PollSender<(u8, Bytes)>,
}

impl AsyncWrite for ChannelWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        ready!(self.queue.poll_reserve(cx)).map_err(|_| broken_pipe())?;
        let length = buf.len().min(MAX_MESSAGE);
        let channel = self.channel;
        self.queue
            .send_item((channel, Bytes::copy_from_slice(&buf[..length])))
            .map_err(|_| broken_pipe())?;
        Poll::Ready(Ok(length))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.queue.close();
        Poll::Ready(Ok(()))
    }
}

fn broken_pipe() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "websocket client gone")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_tungstenite::tungstenite::protocol::Role;

    async fn pair(layout: Layout) -> (Channels, WebSocketStream<tokio::io::DuplexStream>) {
        let (server, client) = tokio::io::duplex(1 << 16);
        let server = WebSocketStream::from_raw_socket(server, Role::Server, None).await;
        let client = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
        (open(server, layout), client)
    }

    fn layout(close_signal: bool) -> Layout {
        Layout {
            readable: vec![true, false, false, false, true],
            initial: vec![(1, Bytes::new())],
            close_signal,
            idle_timeout: Duration::from_secs(60),
        }
    }

    #[tokio::test]
    async fn messages_are_prefixed_with_their_channel() {
        let (mut channels, mut client) = pair(layout(true)).await;
        assert_eq!(
            client.next().await.unwrap().unwrap(),
            Message::Binary(vec![1].into()),
            "the connected message"
        );
        channels.writers[1].write_all(b"out").await.unwrap();
        assert_eq!(
            client.next().await.unwrap().unwrap(),
            Message::Binary(b"\x01out".to_vec().into())
        );
        client
            .send(Message::Binary(b"\x00hello".to_vec().into()))
            .await
            .unwrap();
        // A write to a channel the client may not write, and v5's close of stdin.
        client
            .send(Message::Binary(b"\x03nope".to_vec().into()))
            .await
            .unwrap();
        client
            .send(Message::Binary(vec![CLOSE_CHANNEL, 0].into()))
            .await
            .unwrap();
        let mut stdin = channels.readers[0].take().unwrap();
        let mut text = String::new();
        stdin.read_to_string(&mut text).await.unwrap();
        assert_eq!(text, "hello");
        // Every writer gone: the server closes.
        channels.writers.clear();
        assert!(matches!(
            client.next().await.unwrap().unwrap(),
            Message::Close(_)
        ));
    }

    #[tokio::test]
    async fn a_client_that_leaves_is_noticed() {
        let (channels, mut client) = pair(layout(false)).await;
        client.close(None).await.unwrap();
        channels.closed.await;
    }
}
