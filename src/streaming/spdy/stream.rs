//! One SPDY stream as the application sees it: a tokio `AsyncRead + AsyncWrite` whose
//! writes become DATA frames, whose shutdown is a half-close (FIN), and whose reads end at the
//! peer's FIN or fail on a reset.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, TryLockError};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::frame::{self, rst};
use super::headers::Headers;
use super::state::{MAX_CHUNK, Shared, State};

/// A stream of a SPDY connection. Dropping it closes our half if still open and, if the peer
/// has not finished, resets the stream (nobody will read it).
pub struct Stream {
    shared: Arc<Shared>,
    id: u32,
    headers: Headers,
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stream")
            .field("id", &self.id)
            .field("headers", &self.headers)
            .finish_non_exhaustive()
    }
}

impl Stream {
    pub(super) fn new(shared: Arc<Shared>, id: u32, headers: Headers) -> Self {
        Self {
            shared,
            id,
            headers,
        }
    }

    /// The stream id (odd: opened by the client, even: by the server).
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The headers of the SYN_STREAM that opened it.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// Resets the stream (RST_STREAM CANCEL): unread data is dropped, and reads and writes
    /// fail from now on.
    pub fn reset(&mut self) {
        let mut st = self.shared.lock();
        self.shared.reset_stream(&mut st, self.id, rst::CANCEL);
    }

    /// Ready when every frame this stream queued has been written to the transport.
    fn poll_written(&self, st: &mut State, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let last_seq = st.streams.get(&self.id).map_or(0, |entry| entry.last_seq);
        if st.written_seq >= last_seq {
            return Poll::Ready(Ok(()));
        }
        if st.ended.is_some() {
            return Poll::Ready(Err(closed()));
        }
        st.space_waiters.push(cx.waker().clone());
        Poll::Pending
    }
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "spdy connection closed")
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let mut guard = this.shared.lock();
        let st = &mut *guard;
        let Some(entry) = st.streams.get_mut(&this.id) else {
            return Poll::Ready(Err(closed()));
        };
        if let Some(error) = entry.reset_error(this.id) {
            return Poll::Ready(Err(error));
        }
        if !entry.inbound.is_empty() {
            let mut read = 0;
            while buf.remaining() > 0 {
                let Some(front) = entry.inbound.front_mut() else {
                    break;
                };
                let n = front.len().min(buf.remaining());
                buf.put_slice(&front.split_to(n));
                read += n;
                if front.is_empty() {
                    entry.inbound.pop_front();
                }
            }
            entry.buffered -= read;
            let drained = entry.buffered <= this.shared.config.stream_window as usize;
            this.shared.credit(st, this.id, read);
            if drained {
                this.shared.unstall(st, this.id);
            }
            return Poll::Ready(Ok(()));
        }
        if entry.remote_fin {
            return Poll::Ready(Ok(()));
        }
        if st.ended.is_some() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                format!("spdy connection ended before stream {} finished", this.id),
            )));
        }
        entry.read_waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let mut guard = this.shared.lock();
        let st = &mut *guard;
        let queue_full = st.queued_bytes >= this.shared.config.write_queue_bytes;
        let flow_control = st.peer_flow_control;
        let session_window = st.session_send_window;
        let ended = st.ended.is_some();
        let Some(entry) = st.streams.get_mut(&this.id) else {
            return Poll::Ready(Err(closed()));
        };
        if let Some(error) = entry.reset_error(this.id) {
            return Poll::Ready(Err(error));
        }
        if ended {
            return Poll::Ready(Err(closed()));
        }
        if entry.local_fin {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                format!("spdy stream {} is closed for writing", this.id),
            )));
        }
        let mut n = buf.len().min(MAX_CHUNK);
        if flow_control {
            let window = entry.send_window.min(session_window);
            if window <= 0 {
                entry.write_waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
            n = n.min(usize::try_from(window).unwrap_or(MAX_CHUNK));
        }
        if queue_full {
            st.space_waiters.push(cx.waker().clone());
            return Poll::Pending;
        }
        let sent = i64::try_from(n).unwrap_or(i64::MAX);
        entry.send_window -= sent;
        st.session_send_window -= sent;
        let seq = this.shared.queue_data(st, this.id, 0, &buf[..n]);
        if let Some(entry) = st.streams.get_mut(&this.id) {
            entry.last_seq = seq;
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let mut st = this.shared.lock();
        this.poll_written(&mut st, cx)
    }

    /// Half-closes the stream: an empty DATA frame with FLAG_FIN, then waits until it is
    /// written. Reading goes on until the peer's FIN.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let mut guard = this.shared.lock();
        let st = &mut *guard;
        let ended = st.ended.is_some();
        let Some(entry) = st.streams.get_mut(&this.id) else {
            return Poll::Ready(Err(closed()));
        };
        if entry.reset.is_some() {
            // Nothing left to close.
            return Poll::Ready(Ok(()));
        }
        if !entry.local_fin {
            if ended {
                return Poll::Ready(Err(closed()));
            }
            entry.local_fin = true;
            let seq = this.shared.queue_data(st, this.id, frame::FLAG_FIN, &[]);
            if let Some(entry) = st.streams.get_mut(&this.id) {
                entry.last_seq = seq;
            }
            this.shared.maybe_finish(st);
        }
        this.poll_written(st, cx)
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        // A stream can be dropped while the connection's lock is held on this thread (the
        // last sender of the accept channel going away with streams still queued in it), so
        // never block on the lock here: if it is busy, the driver releases the stream.
        match self.shared.try_lock() {
            Ok(mut st) => self.shared.release_stream(&mut st, self.id),
            Err(TryLockError::Poisoned(poisoned)) => {
                let mut st = poisoned.into_inner();
                self.shared.release_stream(&mut st, self.id);
            }
            Err(TryLockError::WouldBlock) => self.shared.defer_release(self.id),
        }
    }
}
