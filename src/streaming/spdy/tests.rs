//! Connection tests over an in-memory pipe: our client against our server, and our server
//! against a scripted peer that behaves like Go's spdystream (no SETTINGS, no flow control).

use std::io;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::frame::{self, Frame, FrameDecoder, FrameEncoder, Limits, rst};
use super::{ConnectionConfig, ConnectionHandle, Headers, Stream, connect, serve};

/// Guards every wait so that a bug fails the test instead of hanging it.
async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), future)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

fn headers(pairs: &[(&str, &str)]) -> Headers {
    let mut headers = Headers::new();
    for (name, value) in pairs {
        headers.insert(name, value);
    }
    headers
}

fn pair(
    config: ConnectionConfig,
) -> (
    ConnectionHandle,
    tokio::sync::mpsc::Receiver<Stream>,
    ConnectionHandle,
    tokio::sync::mpsc::Receiver<Stream>,
) {
    let (a, b) = tokio::io::duplex(256 << 10);
    let (client, client_incoming) = connect(a, config.clone());
    let (server, server_incoming) = serve(b, config);
    (client, client_incoming, server, server_incoming)
}

/// Echoes every stream the server accepts, upper-casing nothing: what comes in goes out,
/// then the server half-closes.
fn spawn_echo_server(mut incoming: tokio::sync::mpsc::Receiver<Stream>) {
    tokio::spawn(async move {
        while let Some(mut stream) = incoming.recv().await {
            tokio::spawn(async move {
                let mut buf = vec![0; 64 << 10];
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if stream.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                let _ = stream.shutdown().await;
            });
        }
    });
}

#[test]
fn handles_and_streams_move_between_tasks() {
    fn movable<T: Send + Sync + Unpin + 'static>() {}
    movable::<Stream>();
    movable::<ConnectionHandle>();
    movable::<super::SpdyError>();
}

#[tokio::test]
async fn many_streams_echo_with_half_close() {
    let (client, _client_incoming, _server, server_incoming) = pair(ConnectionConfig::default());
    spawn_echo_server(server_incoming);
    let mut tasks = Vec::new();
    for i in 0..40u32 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut stream = client
                .open_stream(headers(&[
                    ("streamtype", "data"),
                    ("requestid", &i.to_string()),
                ]))
                .await
                .expect("open");
            assert_eq!(stream.id() % 2, 1);
            let payload: Vec<u8> = (0..(i as usize * 997)).map(|b| (b % 251) as u8).collect();
            stream.write_all(&payload).await.expect("write");
            stream.shutdown().await.expect("half-close");
            let mut echoed = Vec::new();
            stream.read_to_end(&mut echoed).await.expect("read");
            assert_eq!(echoed, payload);
        }));
    }
    for task in tasks {
        within("echo", task).await.expect("task");
    }
}

#[tokio::test]
async fn server_sees_the_headers_and_ids() {
    let (client, _ci, _server, mut server_incoming) = pair(ConnectionConfig::default());
    let open = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .open_stream(headers(&[("StreamType", "stdout"), ("port", "8080")]))
                .await
        }
    });
    let stream = within("accept", server_incoming.recv())
        .await
        .expect("a stream");
    assert_eq!(stream.id(), 1);
    assert_eq!(stream.headers().get("streamtype"), Some("stdout"));
    assert_eq!(stream.headers().get("PORT"), Some("8080"));
    within("open", open).await.expect("task").expect("open");
}

#[tokio::test]
async fn large_transfer_both_ways_with_flow_control() {
    let config = ConnectionConfig {
        stream_window: 64 << 10,
        ..ConnectionConfig::default()
    };
    let (client, _ci, _server, server_incoming) = pair(config);
    spawn_echo_server(server_incoming);
    let stream = client.open_stream(Headers::new()).await.expect("open");
    let (mut read, mut write) = tokio::io::split(stream);
    let payload: Vec<u8> = (0..(8 << 20)).map(|b: usize| (b * 7 % 256) as u8).collect();
    let expected = payload.clone();
    let writer = tokio::spawn(async move {
        write.write_all(&payload).await.expect("write");
        write.shutdown().await.expect("shutdown");
    });
    let mut echoed = Vec::new();
    within("read back", read.read_to_end(&mut echoed))
        .await
        .expect("read");
    within("writer", writer).await.expect("writer");
    assert!(echoed == expected, "8 MiB echoed intact");
}

#[tokio::test]
async fn reset_by_the_client_fails_the_server_reader() {
    let (client, _ci, _server, mut server_incoming) = pair(ConnectionConfig::default());
    let mut stream = client.open_stream(Headers::new()).await.expect("open");
    let mut accepted = server_incoming.recv().await.expect("accepted");
    stream.write_all(b"partial").await.expect("write");
    stream.flush().await.expect("flush");
    let mut buf = [0; 7];
    accepted.read_exact(&mut buf).await.expect("read");
    stream.reset();
    let error = within("read after reset", accepted.read(&mut buf))
        .await
        .expect_err("reset");
    assert_eq!(error.kind(), io::ErrorKind::ConnectionReset);
    let error = stream.write(b"more").await.expect_err("own reset");
    assert_eq!(error.kind(), io::ErrorKind::ConnectionReset);
    let error = within("server write after reset", accepted.write_all(b"x"))
        .await
        .expect_err("peer reset");
    assert_eq!(error.kind(), io::ErrorKind::ConnectionReset);
}

#[tokio::test]
async fn close_waits_for_open_streams_then_ends_both_sides() {
    let (client, _ci, server, mut server_incoming) = pair(ConnectionConfig::default());
    let mut stream = client.open_stream(Headers::new()).await.expect("open");
    let mut accepted = server_incoming.recv().await.expect("accepted");
    server.close();
    // New streams are refused, the open one keeps working.
    let refused = within("refused open", client.open_stream(Headers::new())).await;
    assert!(refused.is_err(), "{refused:?}");
    accepted.write_all(b"bye").await.expect("write");
    accepted.shutdown().await.expect("shutdown");
    let mut got = Vec::new();
    stream.read_to_end(&mut got).await.expect("read");
    assert_eq!(got, b"bye");
    stream.shutdown().await.expect("shutdown");
    let mut rest = Vec::new();
    accepted.read_to_end(&mut rest).await.expect("eof");
    within("server closed", server.closed()).await;
    within("client closed", client.closed()).await;
    assert!(server_incoming.recv().await.is_none());
    assert!(matches!(
        client.open_stream(Headers::new()).await,
        Err(super::SpdyError::ConnectionClosed | super::SpdyError::GoingAway)
    ));
}

#[tokio::test]
async fn idle_timeout_ends_the_connection() {
    let config = ConnectionConfig {
        idle_timeout: Some(Duration::from_millis(100)),
        ..ConnectionConfig::default()
    };
    let (client, _ci, server, mut server_incoming) = pair(config);
    let _stream = client.open_stream(Headers::new()).await.expect("open");
    let mut accepted = server_incoming.recv().await.expect("accepted");
    within("idle close", server.closed()).await;
    within("client sees it", client.closed()).await;
    let mut buf = [0; 1];
    assert!(accepted.read(&mut buf).await.is_err());
}

/// A scripted peer speaking raw frames, like Go's spdystream: it sends no SETTINGS and no
/// WINDOW_UPDATE, and ignores ours.
struct RawPeer {
    io: DuplexStream,
    encoder: FrameEncoder,
    decoder: FrameDecoder,
    buf: BytesMut,
}

impl RawPeer {
    fn new(io: DuplexStream) -> Self {
        Self {
            io,
            encoder: FrameEncoder::new(),
            decoder: FrameDecoder::new(Limits::default()),
            buf: BytesMut::new(),
        }
    }

    async fn send(&mut self, frame: Frame) {
        let mut out = BytesMut::new();
        self.encoder.encode(&frame, &mut out).expect("encode");
        self.io.write_all(&out).await.expect("send");
    }

    /// The next frame, skipping SETTINGS and WINDOW_UPDATE; `None` at EOF.
    async fn recv(&mut self) -> Option<Frame> {
        loop {
            match self.recv_any().await? {
                Frame::Settings { .. } | Frame::WindowUpdate { .. } => continue,
                frame => return Some(frame),
            }
        }
    }

    /// The next frame; `None` at EOF.
    async fn recv_any(&mut self) -> Option<Frame> {
        loop {
            if let Some(frame) = self.decoder.decode(&mut self.buf).expect("decode") {
                return Some(frame);
            }
            let n = within("peer read", self.io.read_buf(&mut self.buf))
                .await
                .expect("read");
            if n == 0 {
                return None;
            }
        }
    }

    async fn syn(&mut self, id: u32, pairs: &[(&str, &str)]) {
        self.send(Frame::SynStream {
            stream_id: id,
            associated_to: 0,
            priority: 0,
            slot: 0,
            flags: 0,
            headers: headers(pairs),
        })
        .await;
    }

    async fn data(&mut self, id: u32, flags: u8, data: &[u8]) {
        self.send(Frame::Data {
            stream_id: id,
            flags,
            data: Bytes::copy_from_slice(data),
        })
        .await;
    }
}

fn raw_server(
    config: ConnectionConfig,
) -> (
    RawPeer,
    ConnectionHandle,
    tokio::sync::mpsc::Receiver<Stream>,
) {
    let (a, b) = tokio::io::duplex(4 << 20);
    let (server, incoming) = serve(b, config);
    (RawPeer::new(a), server, incoming)
}

#[tokio::test]
async fn go_like_peer_gets_reply_before_data_and_chunked_writes() {
    let (mut peer, _server, mut incoming) = raw_server(ConnectionConfig::default());
    peer.syn(1, &[("streamtype", "stdout")]).await;
    let mut stream = within("accept", incoming.recv()).await.expect("stream");
    // 200 KiB out, well past the 64 KiB SPDY window the peer never updates.
    let payload = vec![b'x'; 200 << 10];
    within("write without window updates", stream.write_all(&payload))
        .await
        .expect("write");
    stream.shutdown().await.expect("fin");
    assert_eq!(
        peer.recv().await,
        Some(Frame::SynReply {
            stream_id: 1,
            flags: 0,
            headers: Headers::new()
        })
    );
    let mut got = 0;
    loop {
        match peer.recv().await.expect("frame") {
            Frame::Data {
                stream_id: 1,
                flags,
                data,
            } => {
                assert!(data.len() <= 32 << 10);
                got += data.len();
                if flags & frame::FLAG_FIN != 0 {
                    break;
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, payload.len());
}

#[tokio::test]
async fn pings_from_the_peer_are_echoed_and_ours_ignored() {
    let (mut peer, _server, _incoming) = raw_server(ConnectionConfig::default());
    // Server side: client pings are odd; an even id would be an echo of the server's own.
    peer.send(Frame::Ping { id: 2 }).await;
    peer.send(Frame::Ping { id: 7 }).await;
    assert_eq!(peer.recv().await, Some(Frame::Ping { id: 7 }));
}

#[tokio::test]
async fn peer_rst_and_fin_reach_the_reader() {
    let (mut peer, _server, mut incoming) = raw_server(ConnectionConfig::default());
    peer.syn(1, &[]).await;
    peer.syn(3, &[]).await;
    let mut first = incoming.recv().await.expect("1");
    let mut second = incoming.recv().await.expect("3");
    peer.data(1, frame::FLAG_FIN, b"done").await;
    peer.send(Frame::RstStream {
        stream_id: 3,
        status: rst::CANCEL,
    })
    .await;
    let mut got = Vec::new();
    first.read_to_end(&mut got).await.expect("eof after fin");
    assert_eq!(got, b"done");
    let error = second.read(&mut [0; 4]).await.expect_err("reset");
    assert_eq!(error.kind(), io::ErrorKind::ConnectionReset);
}

#[tokio::test]
async fn bad_stream_ids_are_refused_with_rst() {
    let (mut peer, _server, mut incoming) = raw_server(ConnectionConfig::default());
    peer.syn(5, &[]).await;
    let _five = incoming.recv().await.expect("5");
    // Even (the server's parity), then lower than the last: PROTOCOL_ERROR each.
    peer.syn(6, &[]).await;
    peer.syn(3, &[]).await;
    let mut resets = Vec::new();
    while resets.len() < 2 {
        match peer.recv().await.expect("frame") {
            Frame::RstStream { stream_id, status } => resets.push((stream_id, status)),
            Frame::SynReply { stream_id: 5, .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(resets, [(6, rst::PROTOCOL_ERROR), (3, rst::PROTOCOL_ERROR)]);
}

#[tokio::test]
async fn stalled_reader_does_not_block_other_streams() {
    let config = ConnectionConfig {
        stream_window: 64 << 10,
        stall_timeout: Duration::from_millis(200),
        ..ConnectionConfig::default()
    };
    let (mut peer, _server, mut incoming) = raw_server(config);
    peer.syn(1, &[("streamtype", "stdin")]).await;
    peer.syn(3, &[("streamtype", "resize")]).await;
    let mut slow = incoming.recv().await.expect("1");
    let mut other = incoming.recv().await.expect("3");
    // The Go-like peer ignores windows: 256 KiB to a stream nobody reads.
    for _ in 0..8 {
        peer.data(1, 0, &[b's'; 32 << 10]).await;
    }
    peer.data(3, frame::FLAG_FIN, b"{\"Width\":80}").await;
    let mut got = Vec::new();
    within("other stream", other.read_to_end(&mut got))
        .await
        .expect("read");
    assert_eq!(got, b"{\"Width\":80}");
    // The stalled stream was reset so that the rest could go on.
    loop {
        match peer.recv().await.expect("frame") {
            Frame::RstStream {
                stream_id: 1,
                status,
            } => {
                assert_eq!(status, rst::FLOW_CONTROL_ERROR);
                break;
            }
            Frame::SynReply { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    let error = slow.read(&mut [0; 16]).await.expect_err("reset");
    assert_eq!(error.kind(), io::ErrorKind::ConnectionReset);
}

#[tokio::test]
async fn a_reader_that_catches_up_is_not_reset() {
    let config = ConnectionConfig {
        stream_window: 64 << 10,
        stall_timeout: Duration::from_secs(60),
        ..ConnectionConfig::default()
    };
    let (mut peer, _server, mut incoming) = raw_server(config);
    peer.syn(1, &[]).await;
    let mut stream = incoming.recv().await.expect("1");
    let total = 1 << 20;
    let sender = tokio::spawn(async move {
        for _ in 0..(total / (32 << 10)) {
            peer.data(1, 0, &[b'z'; 32 << 10]).await;
        }
        peer.data(1, frame::FLAG_FIN, &[]).await;
        peer
    });
    let mut got = Vec::new();
    within("slow read", async {
        let mut buf = [0; 4096];
        loop {
            let n = stream.read(&mut buf).await.expect("read");
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(got.len(), total);
    within("sender", sender).await.expect("sender");
}

#[tokio::test]
async fn flow_controlled_writer_waits_without_blocking_other_streams() {
    let config = ConnectionConfig {
        stream_window: 64 << 10,
        ..ConnectionConfig::default()
    };
    let (client, _ci, _server, mut server_incoming) = pair(config);
    let mut blocked = client.open_stream(Headers::new()).await.expect("open");
    let _not_read = server_incoming.recv().await.expect("accepted");
    // Our server does flow control, so the client can only fill the window...
    let pending = tokio::time::timeout(
        Duration::from_millis(300),
        blocked.write_all(&vec![0; 1 << 20]),
    )
    .await;
    assert!(pending.is_err(), "the write waits for window updates");
    // ...and another stream still flows.
    let mut open = client.open_stream(Headers::new()).await.expect("open");
    let mut accepted = server_incoming.recv().await.expect("accepted");
    open.write_all(b"hello").await.expect("write");
    open.shutdown().await.expect("fin");
    let mut got = Vec::new();
    within("other stream", accepted.read_to_end(&mut got))
        .await
        .expect("read");
    assert_eq!(got, b"hello");
}

#[tokio::test]
async fn peer_goaway_finishes_the_connection_after_streams() {
    let (mut peer, server, mut incoming) = raw_server(ConnectionConfig::default());
    peer.syn(1, &[]).await;
    let mut stream = incoming.recv().await.expect("1");
    peer.send(Frame::GoAway {
        last_good_stream_id: 0,
        status: frame::goaway::OK,
    })
    .await;
    // The open stream still works.
    stream.write_all(b"out").await.expect("write");
    stream.shutdown().await.expect("fin");
    peer.data(1, frame::FLAG_FIN, b"in").await;
    let mut got = Vec::new();
    stream.read_to_end(&mut got).await.expect("read");
    assert_eq!(got, b"in");
    let mut frames = Vec::new();
    while let Some(frame) = peer.recv().await {
        frames.push(frame);
    }
    assert!(
        matches!(frames.last(), Some(Frame::GoAway { .. })),
        "{frames:?}"
    );
    within("closed", server.closed()).await;
    assert!(incoming.recv().await.is_none());
}

#[tokio::test]
async fn protocol_error_sends_goaway_and_ends() {
    let (mut peer, server, _incoming) = raw_server(ConnectionConfig::default());
    peer.io
        .write_all(b"\x80\x02\x00\x06\x00\x00\x00\x04\x00\x00\x00\x01")
        .await
        .expect("write");
    assert!(matches!(
        peer.recv().await,
        Some(Frame::GoAway {
            status: frame::goaway::PROTOCOL_ERROR,
            ..
        })
    ));
    within("closed", server.closed()).await;
}

#[tokio::test]
async fn accept_backlog_and_max_streams_refuse_instead_of_blocking() {
    let config = ConnectionConfig {
        accept_backlog: 1,
        max_streams: 2,
        ..ConnectionConfig::default()
    };
    let (mut peer, _server, mut incoming) = raw_server(config);
    peer.syn(1, &[]).await;
    peer.syn(3, &[]).await; // backlog full: refused
    let mut refused = Vec::new();
    loop {
        match peer.recv().await.expect("frame") {
            Frame::SynReply { stream_id: 1, .. } => {}
            Frame::RstStream { stream_id, status } => {
                refused.push((stream_id, status));
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(refused, [(3, rst::REFUSED_STREAM)]);
    let _one = incoming.recv().await.expect("1");
    peer.syn(5, &[]).await;
    let _five = incoming.recv().await.expect("5");
    peer.syn(7, &[]).await; // two open: refused
    loop {
        match peer.recv().await.expect("frame") {
            Frame::SynReply { .. } => {}
            Frame::RstStream { stream_id, status } => {
                assert_eq!((stream_id, status), (7, rst::REFUSED_STREAM));
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn dropped_stream_sends_fin_then_cancel() {
    let (mut peer, _server, mut incoming) = raw_server(ConnectionConfig::default());
    peer.syn(1, &[]).await;
    let mut stream = incoming.recv().await.expect("1");
    stream.write_all(b"last words").await.expect("write");
    drop(stream);
    let mut frames = Vec::new();
    while frames.len() < 4 {
        frames.push(peer.recv().await.expect("frame"));
    }
    assert_eq!(
        frames[1..],
        [
            Frame::Data {
                stream_id: 1,
                flags: 0,
                data: Bytes::from_static(b"last words")
            },
            Frame::Data {
                stream_id: 1,
                flags: frame::FLAG_FIN,
                data: Bytes::new()
            },
            Frame::RstStream {
                stream_id: 1,
                status: rst::CANCEL
            },
        ]
    );
}

#[tokio::test]
async fn transport_eof_fails_unfinished_reads_and_ends() {
    let (mut peer, server, mut incoming) = raw_server(ConnectionConfig::default());
    peer.syn(1, &[]).await;
    peer.syn(3, &[]).await;
    let mut unfinished = incoming.recv().await.expect("1");
    let mut finished = incoming.recv().await.expect("3");
    peer.data(3, frame::FLAG_FIN, b"whole").await;
    peer.data(1, 0, b"part").await;
    drop(peer);
    within("closed", server.closed()).await;
    let mut got = Vec::new();
    finished
        .read_to_end(&mut got)
        .await
        .expect("finished stream reads to its end");
    assert_eq!(got, b"whole");
    let mut buf = [0; 4];
    unfinished
        .read_exact(&mut buf)
        .await
        .expect("buffered data first");
    let error = unfinished.read(&mut buf).await.expect_err("no FIN");
    assert_eq!(error.kind(), io::ErrorKind::ConnectionAborted);
    assert!(unfinished.write_all(b"x").await.is_err());
    assert!(incoming.recv().await.is_none());
}

#[tokio::test]
async fn abort_resets_streams_and_ends_at_once() {
    let (mut peer, server, mut incoming) = raw_server(ConnectionConfig::default());
    peer.syn(1, &[]).await;
    let mut stream = incoming.recv().await.expect("1");
    server.abort();
    within("closed", server.closed()).await;
    let error = stream.read(&mut [0; 4]).await.expect_err("reset");
    assert_eq!(error.kind(), io::ErrorKind::ConnectionReset);
    let mut frames = Vec::new();
    while let Some(frame) = peer.recv().await {
        frames.push(frame);
    }
    assert!(frames.contains(&Frame::RstStream {
        stream_id: 1,
        status: rst::CANCEL
    }));
    assert!(
        matches!(frames.last(), Some(Frame::GoAway { .. })),
        "{frames:?}"
    );
}

#[tokio::test]
async fn a_peer_that_never_reads_is_still_ended_by_the_idle_timeout() {
    let config = ConnectionConfig {
        idle_timeout: Some(Duration::from_millis(200)),
        write_queue_bytes: 16 << 10,
        linger: Duration::from_millis(100),
        ..ConnectionConfig::default()
    };
    // A tiny pipe the peer never reads: our writes and our ping answers back up.
    let (mut peer_io, ours) = tokio::io::duplex(1024);
    let (server, _incoming) = serve(ours, config);
    let mut encoder = FrameEncoder::new();
    let mut pings = BytesMut::new();
    for id in 0..20_000u32 {
        encoder
            .encode(&Frame::Ping { id: id * 2 + 1 }, &mut pings)
            .expect("encode");
    }
    let flood = tokio::spawn(async move {
        let _ = peer_io.write_all(&pings).await;
        peer_io
    });
    within("idle end despite the backlog", server.closed()).await;
    drop(within("flood", flood).await);
}

#[tokio::test]
async fn window_updates_only_once_the_peer_does_flow_control_then_with_what_is_owed() {
    let config = ConnectionConfig {
        stream_window: 64 << 10,
        ..ConnectionConfig::default()
    };
    let (mut peer, _server, mut incoming) = raw_server(config);
    assert!(matches!(
        peer.recv_any().await,
        Some(Frame::Settings { .. })
    ));
    peer.syn(1, &[]).await;
    let mut stream = incoming.recv().await.expect("1");
    peer.data(1, 0, &[1; 48 << 10]).await;
    let mut buf = vec![0; 48 << 10];
    stream.read_exact(&mut buf).await.expect("read");
    // A Go-like peer gets no WINDOW_UPDATE, however much is read.
    peer.send(Frame::Ping { id: 1 }).await;
    assert_eq!(
        peer.recv_any().await,
        Some(Frame::SynReply {
            stream_id: 1,
            flags: 0,
            headers: Headers::new()
        })
    );
    assert_eq!(peer.recv_any().await, Some(Frame::Ping { id: 1 }));
    // Once it proves it does flow control, it is owed the 48 KiB read so far.
    peer.send(Frame::WindowUpdate {
        stream_id: 1,
        delta: 1,
    })
    .await;
    let mut updates = Vec::new();
    while updates.len() < 2 {
        match peer.recv_any().await.expect("frame") {
            Frame::WindowUpdate { stream_id, delta } => updates.push((stream_id, delta)),
            other => panic!("unexpected {other:?}"),
        }
    }
    updates.sort_unstable();
    assert_eq!(updates, [(0, 0x7fff_ffff - (64 << 10)), (1, 48 << 10)]);
}
