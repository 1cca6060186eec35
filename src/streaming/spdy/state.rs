//! The state one connection shares between its driver (reader and writer) and the handles
//! and streams the application holds, and the transitions on it.
//!
//! Everything lives behind one `std` mutex, held only for short, non-blocking sections.
//! Outbound frames go into one ordered queue that only the writer drains: a frame is encoded
//! (and its header block compressed) at the moment it is queued, so the order of the
//! connection's zlib stream and the order on the wire are the same, and a stream's SYN_REPLY,
//! DATA, FIN and RST_STREAM reach the peer in the order they were produced. (Go's spdystream
//! drops DATA that arrives before the SYN_REPLY of its stream.)
//!
//! # Flow control
//!
//! SPDY/3.1 has per-stream and per-session windows, but Go's `moby/spdystream` (kubectl,
//! client-go, critest, kubelet) neither sends WINDOW_UPDATE nor honours it, and ignores
//! SETTINGS. Enforcing our send windows against it would stall every stream after 64 KiB.
//! So windows are advisory until the peer proves it does flow control, by sending a
//! WINDOW_UPDATE or a SETTINGS with INITIAL_WINDOW_SIZE (our own side sends that SETTINGS
//! first thing): from then on our sending respects its windows. Likewise we only send
//! WINDOW_UPDATE to a peer that proved it: spdystream queues every frame it does not handle
//! behind the stream workers, where a flood of ignored updates could hold up its reading.
//!
//! Receiving, a peer that respects our window never overflows a stream's buffer (it is as
//! large as the window). One that does not (spdystream) can: then the reader pauses the whole
//! connection's reading, which is the only backpressure such a peer understands (TCP), for at
//! most `stall_timeout`; if that stream's reader has not drained its buffer by then, the
//! stream is reset (FLOW_CONTROL_ERROR) so that the other streams go on. A slow reader thus
//! delays other streams' inbound data for a bounded time and never blocks outbound data.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockResult};
use std::task::Waker;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use tokio::sync::{Notify, mpsc, oneshot, watch};

use super::config::ConnectionConfig;
use super::error::SpdyError;
use super::frame::{self, Frame, FrameEncoder, goaway, rst};
use super::headers::Headers;
use super::stream::Stream;

/// The SPDY/3.1 default initial window, before any SETTINGS.
pub(super) const DEFAULT_WINDOW: i64 = 64 << 10;
/// The largest window (31 bits).
pub(super) const MAX_WINDOW: i64 = 0x7fff_ffff;
/// Largest DATA payload this side sends in one frame.
pub(super) const MAX_CHUNK: usize = 32 << 10;

/// Which end of the connection this side is: it decides the parity of stream and ping ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    /// Accepts the HTTP upgrade: opens even streams, the peer odd ones.
    Server,
    /// Opened the connection: opens odd streams, the peer even ones.
    Client,
}

impl Role {
    fn first_stream_id(self) -> u32 {
        match self {
            Self::Client => 1,
            Self::Server => 2,
        }
    }

    /// True when `id` (a stream or ping id) was chosen by this side.
    pub(super) fn is_ours(self, id: u32) -> bool {
        (id % 2 == 1) == (self == Self::Client)
    }
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum EndReason {
    /// Closed by this side, after its streams were done.
    Closed,
    /// The peer closed the transport or went away.
    PeerClosed,
    /// No frame for `idle_timeout`.
    Idle,
    /// Aborted by this side.
    Aborted,
    /// The peer broke the protocol.
    Protocol,
    /// The transport failed.
    Io,
}

/// Who reset a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reset {
    /// This side (`Stream::reset`, or a stall).
    Local,
    /// The peer, with its RST_STREAM status.
    Peer(u32),
}

/// One frame waiting for the writer.
#[derive(Debug)]
pub(super) struct Queued {
    pub(super) bytes: Bytes,
    pub(super) seq: u64,
}

/// What the connection knows about one stream.
#[derive(Debug)]
pub(super) struct StreamEntry {
    /// Payload received and not yet read.
    pub(super) inbound: VecDeque<Bytes>,
    /// Bytes in `inbound`.
    pub(super) buffered: usize,
    /// The peer's half is closed (FIN seen).
    pub(super) remote_fin: bool,
    /// Our half is closed (FIN queued, or the stream is unidirectional).
    pub(super) local_fin: bool,
    /// Reset, by whom.
    pub(super) reset: Option<Reset>,
    /// Waits for the SYN_REPLY of a stream this side opened.
    pub(super) reply: Option<oneshot::Sender<Result<(), SpdyError>>>,
    /// What the peer lets us send (advisory unless it does flow control).
    pub(super) send_window: i64,
    /// Bytes read by the application and not yet credited to the peer.
    pub(super) recv_unacked: i64,
    pub(super) read_waker: Option<Waker>,
    pub(super) write_waker: Option<Waker>,
    /// Sequence number of this stream's last queued frame, for flush.
    pub(super) last_seq: u64,
}

impl StreamEntry {
    fn new(send_window: i64) -> Self {
        Self {
            inbound: VecDeque::new(),
            buffered: 0,
            remote_fin: false,
            local_fin: false,
            reset: None,
            reply: None,
            send_window,
            recv_unacked: 0,
            read_waker: None,
            write_waker: None,
            last_seq: 0,
        }
    }

    /// The peer may still send on it, so credit matters.
    fn wants_credit(&self) -> bool {
        !self.remote_fin && self.reset.is_none()
    }

    /// Neither side will send more on it.
    fn is_done(&self) -> bool {
        self.reset.is_some() || (self.local_fin && self.remote_fin)
    }

    fn wake(&mut self) {
        if let Some(waker) = self.read_waker.take() {
            waker.wake();
        }
        if let Some(waker) = self.write_waker.take() {
            waker.wake();
        }
    }

    /// The error a read or write gets once the stream is reset.
    pub(super) fn reset_error(&self, id: u32) -> Option<io::Error> {
        self.reset.map(|reset| {
            let message = match reset {
                Reset::Local => format!("spdy stream {id} was reset"),
                Reset::Peer(status) => {
                    format!("spdy stream {id} was reset by the peer (status {status})")
                }
            };
            io::Error::new(io::ErrorKind::ConnectionReset, message)
        })
    }
}

/// The mutable part of a connection.
#[derive(Debug)]
pub(super) struct State {
    pub(super) role: Role,
    encoder: FrameEncoder,
    pub(super) queue: VecDeque<Queued>,
    /// Bytes queued or being written.
    pub(super) queued_bytes: usize,
    next_seq: u64,
    /// Every frame up to this sequence number has been written to the transport.
    pub(super) written_seq: u64,
    /// Writers waiting for queue space, and flushes waiting for the writer.
    pub(super) space_waiters: Vec<Waker>,
    pub(super) streams: HashMap<u32, StreamEntry>,
    next_stream_id: u32,
    /// The highest stream id the peer opened (for validation and GOAWAY).
    pub(super) last_peer_stream_id: u32,
    /// Where peer-opened streams go; `None` once closing.
    pub(super) incoming: Option<mpsc::Sender<Stream>>,
    /// `close()` was called: no new streams.
    pub(super) closing: bool,
    /// The peer sent GOAWAY.
    pub(super) peer_gone_away: bool,
    /// Our GOAWAY is queued; the writer shuts the transport once the queue is empty.
    pub(super) finishing: bool,
    pub(super) ended: Option<EndReason>,
    /// The peer proved it does flow control (see the module docs).
    pub(super) peer_flow_control: bool,
    pub(super) initial_send_window: i64,
    pub(super) session_send_window: i64,
    pub(super) session_recv_unacked: i64,
    pub(super) last_activity: Instant,
    /// The stream whose full buffer has paused reading, and since when.
    pub(super) stalled_on: Option<(u32, Instant)>,
}

/// What the driver tasks and the application's handles share.
#[derive(Debug)]
pub(super) struct Shared {
    state: Mutex<State>,
    pub(super) config: ConnectionConfig,
    /// Wakes the writer: frames were queued, or the connection is finishing or ended.
    pub(super) writer_wake: Notify,
    /// Wakes a paused reader: a stalled stream drained, or the writer made room.
    pub(super) reader_wake: Notify,
    /// Turns true when the connection ends (the reader stops, the writer flushes and stops).
    pub(super) ended: watch::Sender<bool>,
    /// Turns true when both driver halves have stopped.
    pub(super) closed: watch::Sender<bool>,
    /// Streams dropped while the lock was busy, for the driver to release.
    releases: mpsc::UnboundedSender<u32>,
}

impl Shared {
    pub(super) fn new(
        role: Role,
        config: ConnectionConfig,
        incoming: mpsc::Sender<Stream>,
    ) -> (Arc<Self>, mpsc::UnboundedReceiver<u32>) {
        let (releases, released) = mpsc::unbounded_channel();
        let state = State {
            role,
            encoder: FrameEncoder::new(),
            queue: VecDeque::new(),
            queued_bytes: 0,
            next_seq: 1,
            written_seq: 0,
            space_waiters: Vec::new(),
            streams: HashMap::new(),
            next_stream_id: role.first_stream_id(),
            last_peer_stream_id: 0,
            incoming: Some(incoming),
            closing: false,
            peer_gone_away: false,
            finishing: false,
            ended: None,
            peer_flow_control: false,
            initial_send_window: DEFAULT_WINDOW,
            session_send_window: DEFAULT_WINDOW,
            session_recv_unacked: 0,
            last_activity: Instant::now(),
            stalled_on: None,
        };
        let shared = Arc::new(Self {
            state: Mutex::new(state),
            config,
            writer_wake: Notify::new(),
            reader_wake: Notify::new(),
            ended: watch::channel(false).0,
            closed: watch::channel(false).0,
            releases,
        });
        (shared, released)
    }

    /// The state if nobody holds it (see `Stream`'s `Drop`).
    pub(super) fn try_lock(&self) -> TryLockResult<MutexGuard<'_, State>> {
        self.state.try_lock()
    }

    /// Hands the release of a dropped stream to the driver.
    pub(super) fn defer_release(&self, id: u32) {
        // Fails only once the driver is gone, when releasing no longer matters.
        let _ = self.releases.send(id);
    }

    /// The state, whatever a panicking holder left (every section keeps it consistent).
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Encodes `frame` onto the outbound queue. Only header-block frames can fail (their
    /// size is checked before the zlib context is touched), and then nothing is queued.
    pub(super) fn queue(&self, st: &mut State, frame: &Frame) -> Result<u64, SpdyError> {
        let mut out = BytesMut::new();
        st.encoder.encode(frame, &mut out)?;
        Ok(self.push(st, out.freeze()))
    }

    /// Queues one DATA frame of `data` for stream `id`.
    pub(super) fn queue_data(&self, st: &mut State, id: u32, flags: u8, data: &[u8]) -> u64 {
        let mut out = BytesMut::new();
        // `data` is at most MAX_CHUNK bytes, far below the 24-bit limit.
        if frame::encode_data_header(&mut out, id, flags, data.len()).is_err() {
            return st.next_seq.saturating_sub(1);
        }
        out.extend_from_slice(data);
        self.push(st, out.freeze())
    }

    fn push(&self, st: &mut State, bytes: Bytes) -> u64 {
        let seq = st.next_seq;
        st.next_seq += 1;
        st.queued_bytes += bytes.len();
        st.queue.push_back(Queued { bytes, seq });
        self.writer_wake.notify_one();
        seq
    }

    /// Allocates the next id for a stream this side opens.
    pub(super) fn next_stream_id(&self, st: &mut State) -> Result<u32, SpdyError> {
        let id = st.next_stream_id;
        if id > frame::MAX_STREAM_ID {
            return Err(SpdyError::StreamIdsExhausted);
        }
        st.next_stream_id += 2;
        Ok(id)
    }

    /// Registers a new stream entry.
    pub(super) fn add_stream<'a>(&self, st: &'a mut State, id: u32) -> &'a mut StreamEntry {
        let window = st.initial_send_window;
        st.streams
            .entry(id)
            .or_insert_with(|| StreamEntry::new(window))
    }

    /// Resets stream `id` on this side's initiative (sending RST_STREAM `status` unless the
    /// stream is already done), dropping its unread data.
    pub(super) fn reset_stream(&self, st: &mut State, id: u32, status: u32) {
        let Some(entry) = st.streams.get_mut(&id) else {
            return;
        };
        if entry.is_done() {
            return;
        }
        entry.reset = Some(Reset::Local);
        let reply = entry.reply.take();
        entry.inbound.clear();
        entry.buffered = 0;
        entry.wake();
        if let Some(reply) = reply {
            let _ = reply.send(Err(SpdyError::StreamReset {
                stream_id: id,
                status,
            }));
        }
        if st.ended.is_none() {
            let _ = self.queue(
                st,
                &Frame::RstStream {
                    stream_id: id,
                    status,
                },
            );
        }
        self.unstall(st, id);
        self.maybe_finish(st);
    }

    /// The peer reset stream `id` (or refused it by GOAWAY).
    pub(super) fn peer_reset(&self, st: &mut State, id: u32, status: u32) {
        let Some(entry) = st.streams.get_mut(&id) else {
            return;
        };
        if entry.reset.is_some() {
            return;
        }
        entry.reset = Some(Reset::Peer(status));
        entry.inbound.clear();
        entry.buffered = 0;
        entry.wake();
        if let Some(reply) = entry.reply.take() {
            let _ = reply.send(Err(SpdyError::StreamReset {
                stream_id: id,
                status,
            }));
        }
        self.unstall(st, id);
        self.maybe_finish(st);
    }

    /// The application dropped its handle of stream `id`: close our half if still open, tell
    /// the peer to stop sending if it has not finished (nobody will read), and forget it.
    pub(super) fn release_stream(&self, st: &mut State, id: u32) {
        let Some(entry) = st.streams.remove(&id) else {
            return;
        };
        if entry.reset.is_none() && st.ended.is_none() {
            if !entry.local_fin {
                self.queue_data(st, id, frame::FLAG_FIN, &[]);
            }
            if !entry.remote_fin {
                let _ = self.queue(
                    st,
                    &Frame::RstStream {
                        stream_id: id,
                        status: rst::CANCEL,
                    },
                );
            }
        }
        self.unstall(st, id);
        self.maybe_finish(st);
    }

    /// Clears a stall on `id` and wakes the reader.
    pub(super) fn unstall(&self, st: &mut State, id: u32) {
        if st.stalled_on.is_some_and(|(stalled, _)| stalled == id) {
            st.stalled_on = None;
            self.reader_wake.notify_one();
        }
    }

    /// Credits `n` bytes the application read on stream `id`, sending WINDOW_UPDATEs in
    /// batches of half a window to peers that do flow control. For other peers the credit
    /// accumulates, to be sent at once should they prove to do flow control after all.
    pub(super) fn credit(&self, st: &mut State, id: u32, n: usize) {
        let n = i64::try_from(n).unwrap_or(MAX_WINDOW);
        let batch = i64::from(self.config.stream_window) / 2;
        let sending = st.peer_flow_control && st.ended.is_none();
        st.session_recv_unacked = (st.session_recv_unacked + n).min(MAX_WINDOW);
        let mut stream_delta = None;
        if let Some(entry) = st.streams.get_mut(&id) {
            entry.recv_unacked = (entry.recv_unacked + n).min(MAX_WINDOW);
            if sending && entry.recv_unacked >= batch && entry.wants_credit() {
                stream_delta = Some(std::mem::take(&mut entry.recv_unacked));
            }
        }
        if !sending {
            return;
        }
        if let Some(delta) = stream_delta {
            self.window_update(st, id, delta);
        }
        if st.session_recv_unacked >= batch {
            let delta = std::mem::take(&mut st.session_recv_unacked);
            self.window_update(st, 0, delta);
        }
    }

    fn window_update(&self, st: &mut State, stream_id: u32, delta: i64) {
        let delta = u32::try_from(delta.clamp(1, MAX_WINDOW)).unwrap_or(1);
        let _ = self.queue(st, &Frame::WindowUpdate { stream_id, delta });
    }

    /// The peer proved it does flow control: from now on our windows bind, and it gets
    /// WINDOW_UPDATEs; open its view of our session window fully, as per-stream windows
    /// already bound what we buffer.
    pub(super) fn peer_does_flow_control(&self, st: &mut State) {
        if st.peer_flow_control {
            return;
        }
        st.peer_flow_control = true;
        if st.ended.is_some() {
            return;
        }
        self.window_update(st, 0, MAX_WINDOW - DEFAULT_WINDOW);
        // What was read before the proof: the peer may be waiting for exactly that credit.
        let owed: Vec<(u32, i64)> = st
            .streams
            .iter_mut()
            .filter(|(_, entry)| entry.recv_unacked > 0 && entry.wants_credit())
            .map(|(id, entry)| (*id, std::mem::take(&mut entry.recv_unacked)))
            .collect();
        for (id, delta) in owed {
            self.window_update(st, id, delta);
        }
        st.session_recv_unacked = 0;
    }

    /// Streams neither done nor reset.
    fn active_streams(st: &State) -> usize {
        st.streams.values().filter(|entry| !entry.is_done()).count()
    }

    /// When closing (or the peer went away) and no stream is active any more, queues our
    /// GOAWAY and lets the writer shut the transport once everything queued is written.
    ///
    /// GOAWAY goes out only after the streams are done, not when `close()` is called: Go's
    /// spdystream stops reading the connection as soon as it receives a GOAWAY, so frames
    /// sent after it would be lost. New streams are refused meanwhile.
    pub(super) fn maybe_finish(&self, st: &mut State) {
        if !(st.closing || st.peer_gone_away) || st.finishing || st.ended.is_some() {
            return;
        }
        if Self::active_streams(st) > 0 {
            return;
        }
        self.queue_goaway(st, goaway::OK);
        st.finishing = true;
        st.incoming = None;
        self.writer_wake.notify_one();
    }

    /// Queues our GOAWAY, naming the last stream the peer opened as the last one accepted.
    pub(super) fn queue_goaway(&self, st: &mut State, status: u32) {
        let last_good_stream_id = st.last_peer_stream_id;
        let _ = self.queue(
            st,
            &Frame::GoAway {
                last_good_stream_id,
                status,
            },
        );
    }

    /// `close()`: refuse new streams, finish once the open ones are done.
    pub(super) fn close(&self, st: &mut State) {
        st.closing = true;
        st.incoming = None;
        self.maybe_finish(st);
    }

    /// Ends the connection: streams the peer had not finished fail their readers, writers
    /// fail, pending opens fail, the receiver of new streams ends, and the driver stops (the
    /// writer still flushes what is queued, for a bounded time).
    pub(super) fn end(&self, st: &mut State, reason: EndReason) {
        if st.ended.is_some() {
            return;
        }
        tracing::debug!(?reason, "spdy connection ended");
        st.ended = Some(reason);
        st.incoming = None;
        st.stalled_on = None;
        for entry in st.streams.values_mut() {
            if let Some(reply) = entry.reply.take() {
                let _ = reply.send(Err(SpdyError::ConnectionClosed));
            }
            entry.wake();
        }
        for waker in st.space_waiters.drain(..) {
            waker.wake();
        }
        self.ended.send_replace(true);
        self.writer_wake.notify_one();
        self.reader_wake.notify_one();
    }

    /// Ends the connection now (idle timeout, `abort()`): every open stream gets RST_STREAM
    /// CANCEL, then the peer a GOAWAY.
    pub(super) fn abort(&self, st: &mut State, reason: EndReason) {
        if st.ended.is_some() {
            return;
        }
        let ids: Vec<u32> = st.streams.keys().copied().collect();
        for id in ids {
            self.reset_stream(st, id, rst::CANCEL);
        }
        if !st.finishing {
            self.queue_goaway(st, goaway::OK);
        }
        self.end(st, reason);
    }

    /// Queues the first frames of a connection: our SETTINGS (INITIAL_WINDOW_SIZE, which
    /// also tells a flow-control-aware peer that we are one).
    pub(super) fn start(&self, st: &mut State) {
        let settings = Frame::Settings {
            flags: 0,
            entries: vec![frame::Setting {
                flags: 0,
                id: frame::settings::INITIAL_WINDOW_SIZE,
                value: self.config.stream_window,
            }],
        };
        let _ = self.queue(st, &settings);
    }

    /// Builds the SYN_STREAM of a stream this side opens.
    pub(super) fn syn_stream(id: u32, headers: Headers) -> Frame {
        Frame::SynStream {
            stream_id: id,
            associated_to: 0,
            priority: 0,
            slot: 0,
            flags: 0,
            headers,
        }
    }
}
