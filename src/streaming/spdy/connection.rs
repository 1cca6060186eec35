//! Starting a SPDY connection over an upgraded transport, in the server or client role, and
//! the [`ConnectionHandle`] the application keeps to open streams and close it.

use std::fmt;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};

use super::config::ConnectionConfig;
use super::driver;
use super::error::SpdyError;
use super::headers::Headers;
use super::state::{EndReason, Role, Shared};
use super::stream::Stream;

/// Serves a SPDY/3.1 connection on `io` (the byte stream after the HTTP upgrade) as the
/// server: spawns the driver task, answers every SYN_STREAM from the peer with a SYN_REPLY
/// (empty headers) and delivers the stream on the receiver. The receiver ends when the
/// connection ends or is closing. Must be called within a tokio runtime.
///
/// On a TCP transport, set `TCP_NODELAY`: window updates and other small frames otherwise
/// wait on Nagle's algorithm and delayed ACKs (a 10x throughput loss between two of our ends).
pub fn serve<IO>(io: IO, config: ConnectionConfig) -> (ConnectionHandle, mpsc::Receiver<Stream>)
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    start(Role::Server, io, config)
}

/// Runs a SPDY/3.1 connection on `io` as the client, which opens odd stream ids. Streams
/// the server opens arrive on the receiver. Must be called within a tokio runtime; on TCP,
/// set `TCP_NODELAY` as for [`serve`].
pub fn connect<IO>(io: IO, config: ConnectionConfig) -> (ConnectionHandle, mpsc::Receiver<Stream>)
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    start(Role::Client, io, config)
}

fn start<IO>(
    role: Role,
    io: IO,
    config: ConnectionConfig,
) -> (ConnectionHandle, mpsc::Receiver<Stream>)
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (incoming, accepted) = mpsc::channel(config.accept_backlog.max(1));
    let (shared, released) = Shared::new(role, config, incoming);
    {
        let mut st = shared.lock();
        shared.start(&mut st);
    }
    tokio::spawn(driver::run(Arc::clone(&shared), released, io));
    (ConnectionHandle { shared }, accepted)
}

/// The application's handle on a connection; clones share it.
#[derive(Clone)]
pub struct ConnectionHandle {
    shared: Arc<Shared>,
}

impl fmt::Debug for ConnectionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.shared.lock();
        f.debug_struct("ConnectionHandle")
            .field("role", &st.role)
            .field("streams", &st.streams.len())
            .field("closing", &st.closing)
            .field("ended", &st.ended)
            .finish()
    }
}

impl ConnectionHandle {
    /// Opens a stream (SYN_STREAM with `headers`) and waits for the peer's SYN_REPLY.
    pub async fn open_stream(&self, headers: Headers) -> Result<Stream, SpdyError> {
        let (reply, replied) = oneshot::channel();
        let id = {
            let mut guard = self.shared.lock();
            let st = &mut *guard;
            if st.ended.is_some() {
                return Err(SpdyError::ConnectionClosed);
            }
            if st.closing || st.peer_gone_away {
                return Err(SpdyError::GoingAway);
            }
            if st.streams.len() >= self.shared.config.max_streams {
                return Err(SpdyError::TooManyStreams {
                    max: self.shared.config.max_streams,
                });
            }
            let id = self.shared.next_stream_id(st)?;
            self.shared
                .queue(st, &Shared::syn_stream(id, headers.clone()))?;
            self.shared.add_stream(st, id).reply = Some(reply);
            id
        };
        // Built before waiting, so that a cancelled open still releases the stream.
        let stream = Stream::new(Arc::clone(&self.shared), id, headers);
        match replied.await {
            Ok(Ok(())) => Ok(stream),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(SpdyError::ConnectionClosed),
        }
    }

    /// Closes the connection gracefully: no new streams from now on; once every open stream
    /// is done (both halves closed or reset, or its handle dropped) a GOAWAY is sent and the
    /// transport shut.
    pub fn close(&self) {
        let mut st = self.shared.lock();
        self.shared.close(&mut st);
    }

    /// Ends the connection now, without waiting for its streams: each open stream is reset
    /// (its reader and writer fail), the peer gets a GOAWAY, and the transport is shut.
    pub fn abort(&self) {
        let mut st = self.shared.lock();
        self.shared.abort(&mut st, EndReason::Aborted);
    }

    /// Resolves when the connection has ended: the peer went away or failed, the idle
    /// timeout struck, or [`Self::close`] finished.
    pub async fn closed(&self) {
        let mut closed = self.shared.closed.subscribe();
        let _ = closed.wait_for(|closed| *closed).await;
    }

    /// True once the connection has ended or is ending.
    pub fn is_closed(&self) -> bool {
        self.shared.lock().ended.is_some()
    }
}
