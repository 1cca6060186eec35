//! The connection's driver task: a reader that decodes the peer's frames and applies them
//! to the shared state, and a writer that drains the outbound queue onto the transport. They
//! run concurrently in one task, so that a peer that stops reading never stops us from
//! reading (and answering pings), and a slow stream reader never stops outbound data.

use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc::{OwnedPermit, UnboundedReceiver};

use super::error::SpdyError;
use super::frame::{self, Frame, FrameDecoder, goaway, rst, settings};
use super::state::{EndReason, Shared, State};
use super::stream::Stream;

/// Smallest read into the buffer.
const READ_CHUNK: usize = 16 << 10;
/// Largest single reservation of read buffer (a large frame grows it step by step).
const READ_CHUNK_MAX: usize = 256 << 10;

/// Runs the connection until it ends, then marks it closed.
pub(super) async fn run<IO>(shared: Arc<Shared>, released: UnboundedReceiver<u32>, io: IO)
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (reader, writer) = tokio::io::split(io);
    tokio::join!(
        read_loop(&shared, released, reader),
        write_loop(&shared, writer)
    );
    shared.closed.send_replace(true);
}

/// Why the reader is not reading right now.
enum Pause {
    /// A stream's buffer is full; give up on it at this instant.
    Stalled(u32, Instant),
    /// The outbound queue is far over its budget (the peer does not read what we answer).
    Backlog,
}

async fn read_loop<R: AsyncRead + Unpin>(
    shared: &Arc<Shared>,
    mut released: UnboundedReceiver<u32>,
    mut reader: R,
) {
    let mut ended = shared.ended.subscribe();
    let mut decoder = FrameDecoder::new(shared.config.limits);
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    loop {
        let (pause, idle_at) = {
            let mut st = shared.lock();
            if st.ended.is_some() {
                return;
            }
            (pause_of(shared, &mut st), idle_deadline(shared, &st))
        };
        if let Some(pause) = pause {
            let until = match pause {
                Pause::Stalled(_, at) => Some(at),
                Pause::Backlog => None,
            };
            tokio::select! {
                () = shared.reader_wake.notified() => {}
                () = sleep_until(until) => {
                    if let Pause::Stalled(id, _) = pause {
                        let mut st = shared.lock();
                        tracing::debug!(stream = id, "spdy stream reader stalled; resetting it");
                        st.stalled_on = None;
                        shared.reset_stream(&mut st, id, rst::FLOW_CONTROL_ERROR);
                    }
                }
                Some(id) = released.recv() => release(shared, id),
                () = sleep_until(idle_at) => end_if_idle(shared),
                _ = ended.wait_for(|ended| *ended) => return,
            }
            continue;
        }
        match decoder.decode(&mut buf) {
            Ok(Some(frame)) => {
                // A new stream goes to the application after the lock is released.
                if let Some((permit, stream)) = on_frame(shared, frame) {
                    permit.send(stream);
                }
                continue;
            }
            Ok(None) => {}
            Err(error) => {
                tracing::debug!(%error, "spdy protocol error from peer");
                let mut st = shared.lock();
                let status = match error {
                    SpdyError::Compression { .. } => goaway::INTERNAL_ERROR,
                    _ => goaway::PROTOCOL_ERROR,
                };
                shared.queue_goaway(&mut st, status);
                shared.end(&mut st, EndReason::Protocol);
                return;
            }
        }
        let missing = FrameDecoder::wanted(&buf).saturating_sub(buf.len());
        buf.reserve(missing.clamp(READ_CHUNK, READ_CHUNK_MAX));
        tokio::select! {
            read = reader.read_buf(&mut buf) => {
                let mut st = shared.lock();
                match read {
                    Ok(0) => shared.end(&mut st, EndReason::PeerClosed),
                    Ok(_) => st.last_activity = Instant::now(),
                    Err(error) => {
                        tracing::debug!(%error, "spdy transport read failed");
                        shared.end(&mut st, EndReason::Io);
                    }
                }
            }
            Some(id) = released.recv() => release(shared, id),
            () = sleep_until(idle_at) => end_if_idle(shared),
            _ = ended.wait_for(|ended| *ended) => return,
        }
    }
}

/// Ends the connection if nothing was read or written for `idle_timeout` (the deadline may
/// have moved since the timer was set), resetting its streams as spdystream does.
fn end_if_idle(shared: &Shared) {
    let mut st = shared.lock();
    if idle_deadline(shared, &st).is_some_and(|deadline| deadline <= Instant::now()) {
        shared.abort(&mut st, EndReason::Idle);
    }
}

fn release(shared: &Shared, id: u32) {
    let mut st = shared.lock();
    shared.release_stream(&mut st, id);
}

fn idle_deadline(shared: &Shared, st: &State) -> Option<Instant> {
    shared
        .config
        .idle_timeout
        .and_then(|timeout| st.last_activity.checked_add(timeout))
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

fn pause_of(shared: &Shared, st: &mut State) -> Option<Pause> {
    if let Some((id, since)) = st.stalled_on {
        let limit = shared.config.stream_window as usize;
        let still_full = st
            .streams
            .get(&id)
            .is_some_and(|entry| entry.reset.is_none() && entry.buffered > limit);
        if still_full {
            return Some(Pause::Stalled(id, since + shared.config.stall_timeout));
        }
        st.stalled_on = None;
    }
    // Our answers to the peer (pings, replies, resets) pile up only if it does not read; stop
    // reading its requests until it does.
    if st.queued_bytes > shared.config.write_queue_bytes.saturating_mul(4) {
        return Some(Pause::Backlog);
    }
    None
}

/// A peer-opened stream and the accept channel's slot reserved for it.
type Accepted = (OwnedPermit<Stream>, Stream);

/// Applies one frame from the peer; returns the stream a SYN_STREAM opened.
fn on_frame(shared: &Arc<Shared>, frame: Frame) -> Option<Accepted> {
    let mut guard = shared.lock();
    let st = &mut *guard;
    st.last_activity = Instant::now();
    match frame {
        Frame::SynStream {
            stream_id,
            flags,
            headers,
            ..
        } => return on_syn_stream(shared, st, stream_id, flags, headers),
        Frame::SynReply {
            stream_id, flags, ..
        } => {
            if let Some(reply) = st
                .streams
                .get_mut(&stream_id)
                .and_then(|entry| entry.reply.take())
            {
                let _ = reply.send(Ok(()));
            }
            remote_fin(shared, st, stream_id, flags);
        }
        Frame::Headers {
            stream_id, flags, ..
        } => remote_fin(shared, st, stream_id, flags),
        Frame::RstStream { stream_id, status } => shared.peer_reset(st, stream_id, status),
        Frame::Settings { entries, .. } => {
            for entry in entries {
                if entry.id == settings::INITIAL_WINDOW_SIZE {
                    let new = i64::from(entry.value.min(0x7fff_ffff));
                    let delta = new - st.initial_send_window;
                    st.initial_send_window = new;
                    for stream in st.streams.values_mut() {
                        stream.send_window += delta;
                        if let Some(waker) = stream.write_waker.take() {
                            waker.wake();
                        }
                    }
                    shared.peer_does_flow_control(st);
                }
            }
        }
        Frame::Ping { id } => {
            // Our own pings' echoes carry our parity; we send none, so only echo theirs.
            if !st.role.is_ours(id) {
                let _ = shared.queue(st, &Frame::Ping { id });
            }
        }
        Frame::GoAway {
            last_good_stream_id,
            ..
        } => {
            st.peer_gone_away = true;
            st.incoming = None;
            let role = st.role;
            let unprocessed: Vec<u32> = st
                .streams
                .keys()
                .copied()
                .filter(|id| role.is_ours(*id) && *id > last_good_stream_id)
                .collect();
            for id in unprocessed {
                shared.peer_reset(st, id, rst::REFUSED_STREAM);
            }
            shared.maybe_finish(st);
        }
        Frame::WindowUpdate { stream_id, delta } => {
            shared.peer_does_flow_control(st);
            let delta = i64::from(delta);
            if stream_id == 0 {
                st.session_send_window = (st.session_send_window + delta).min(i64::MAX / 2);
                for stream in st.streams.values_mut() {
                    if let Some(waker) = stream.write_waker.take() {
                        waker.wake();
                    }
                }
            } else if let Some(entry) = st.streams.get_mut(&stream_id) {
                entry.send_window = (entry.send_window + delta).min(i64::MAX / 2);
                if let Some(waker) = entry.write_waker.take() {
                    waker.wake();
                }
            }
        }
        Frame::Data {
            stream_id,
            flags,
            data,
        } => {
            let limit = shared.config.stream_window as usize;
            // Data for a stream we do not know (released, or never opened) is dropped, as
            // spdystream does; so is data after a reset or after the peer's FIN.
            if let Some(entry) = st.streams.get_mut(&stream_id)
                && entry.reset.is_none()
                && !entry.remote_fin
            {
                if !data.is_empty() {
                    entry.buffered += data.len();
                    entry.inbound.push_back(data);
                    if let Some(waker) = entry.read_waker.take() {
                        waker.wake();
                    }
                }
                if entry.buffered > limit && st.stalled_on.is_none() {
                    st.stalled_on = Some((stream_id, Instant::now()));
                }
            }
            remote_fin(shared, st, stream_id, flags);
        }
        Frame::Unknown { .. } => {}
    }
    None
}

fn on_syn_stream(
    shared: &Arc<Shared>,
    st: &mut State,
    id: u32,
    flags: u8,
    headers: super::headers::Headers,
) -> Option<Accepted> {
    // Ids the peer opens have its parity and only go up.
    if st.role.is_ours(id) || id <= st.last_peer_stream_id {
        let _ = shared.queue(
            st,
            &Frame::RstStream {
                stream_id: id,
                status: rst::PROTOCOL_ERROR,
            },
        );
        return None;
    }
    st.last_peer_stream_id = id;
    let refuse = |shared: &Shared, st: &mut State| {
        let _ = shared.queue(
            st,
            &Frame::RstStream {
                stream_id: id,
                status: rst::REFUSED_STREAM,
            },
        );
    };
    if st.closing || st.ended.is_some() || st.streams.len() >= shared.config.max_streams {
        refuse(shared, st);
        return None;
    }
    let Some(incoming) = st.incoming.clone() else {
        refuse(shared, st);
        return None;
    };
    // Reserve the receiver's slot first: a stream is either delivered or refused, and the
    // driver never waits for the application to accept.
    let Ok(permit) = incoming.try_reserve_owned() else {
        tracing::debug!(
            stream = id,
            "spdy stream refused: the accept backlog is full"
        );
        refuse(shared, st);
        return None;
    };
    let entry = shared.add_stream(st, id);
    entry.remote_fin = flags & frame::FLAG_FIN != 0;
    entry.local_fin = flags & frame::FLAG_UNIDIRECTIONAL != 0;
    if flags & frame::FLAG_UNIDIRECTIONAL == 0 {
        // Queued before the stream is handed out, so it precedes any DATA the stream sends.
        let reply = Frame::SynReply {
            stream_id: id,
            flags: 0,
            headers: super::headers::Headers::new(),
        };
        let _ = shared.queue(st, &reply);
    }
    Some((permit, Stream::new(Arc::clone(shared), id, headers)))
}

fn remote_fin(shared: &Shared, st: &mut State, id: u32, flags: u8) {
    if flags & frame::FLAG_FIN == 0 {
        return;
    }
    if let Some(entry) = st.streams.get_mut(&id)
        && !entry.remote_fin
    {
        entry.remote_fin = true;
        if let Some(waker) = entry.read_waker.take() {
            waker.wake();
        }
        shared.maybe_finish(st);
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(shared: &Shared, writer: W) {
    let mut writer = BufWriter::with_capacity(64 << 10, writer);
    let mut ended = shared.ended.subscribe();
    let mut batch = Vec::new();
    loop {
        let last_seq = {
            let mut st = shared.lock();
            if st.queue.is_empty() {
                if st.finishing || st.ended.is_some() {
                    break;
                }
                None
            } else {
                batch.extend(st.queue.drain(..));
                batch.last().map(|queued| queued.seq)
            }
        };
        let Some(last_seq) = last_seq else {
            shared.writer_wake.notified().await;
            continue;
        };
        let written: usize = batch.iter().map(|queued| queued.bytes.len()).sum();
        let write = async {
            for queued in &batch {
                writer.write_all(&queued.bytes).await?;
            }
            writer.flush().await
        };
        let deadline = async {
            let _ = ended.wait_for(|ended| *ended).await;
            tokio::time::sleep(shared.config.linger).await;
        };
        let result = tokio::select! {
            result = write => result,
            () = deadline => Err(std::io::ErrorKind::TimedOut.into()),
        };
        batch.clear();
        let mut st = shared.lock();
        st.queued_bytes = st.queued_bytes.saturating_sub(written);
        for waker in st.space_waiters.drain(..) {
            waker.wake();
        }
        shared.reader_wake.notify_one();
        if let Err(error) = result {
            // Flushes waiting on these frames fail (the connection has ended), not succeed.
            tracing::debug!(%error, "spdy transport write failed");
            st.queue.clear();
            st.queued_bytes = 0;
            shared.end(&mut st, EndReason::Io);
            return;
        }
        st.written_seq = last_seq;
        st.last_activity = Instant::now();
    }
    let deadline = tokio::time::sleep(shared.config.linger);
    tokio::select! {
        _ = writer.shutdown() => {}
        () = deadline => {}
    }
    let mut st = shared.lock();
    shared.end(&mut st, EndReason::Closed);
}
