//! The `spdy` target: byte streams a SPDY/3.1 peer could send, fed to the frame decoder and
//! to a server connection's driver over an in-memory pipe.
//!
//! Inputs are generated as a valid sequence of frames (header blocks compressed through one
//! shared zlib context, as a real peer does), with hand-built frames of hostile lengths,
//! types and versions mixed in, decompression bombs (header blocks inflating past the
//! decoder's limit), and byte mutations on top. Invariants:
//!
//! - no panic, and the decoder gives the same frames (or the same error) whether the bytes
//!   arrive whole or in small pieces;
//! - every decoded frame re-encodes, through a second shared context, to an equal frame;
//! - no inflated header block is larger than the decoder's limit;
//! - the connection driver, served these bytes then EOF, ends (no hang, no dead task).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use carrack::streaming::spdy::frame::{Frame, FrameDecoder, FrameEncoder, Limits, Setting};
use carrack::streaming::spdy::{ConnectionConfig, Headers, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Target;
use super::mutate::mutate;
use super::rng::Rng;

/// Largest generated input.
const MAX_INPUT: usize = 96 << 10;
/// The decoder's limits in this target: small, so that bombs and oversize frames are cheap.
const LIMITS: Limits = Limits {
    max_data_len: 64 << 10,
    max_control_len: 16 << 10,
    max_header_block: 32 << 10,
};
/// How long the driver may take to end once the input is in and the pipe closed.
const END_WITHIN: Duration = Duration::from_secs(10);

/// Tokens worth splicing into frames: frame starts, lengths, zlib and flush markers.
const DICTIONARY: &[&[u8]] = &[
    b"\x80\x03\x00\x01",
    b"\x80\x03\x00\x02",
    b"\x80\x03\x00\x03",
    b"\x80\x03\x00\x04",
    b"\x80\x03\x00\x06",
    b"\x80\x03\x00\x07",
    b"\x80\x03\x00\x08",
    b"\x80\x03\x00\x09",
    b"\x80\x02\x00\x01",
    b"\x00\x00\x00\x01",
    b"\x01\xff\xff\xff",
    b"\x00\xff\xff\xff",
    b"\x7f\xff\xff\xff",
    b"\xff\xff\xff\xff",
    b"\x00\x00\xff\xff",
    // zlib headers naming the SPDY/3 dictionary, at default and best compression.
    b"\x78\xbb\xe3\xc6\xa7\xc2",
    b"\x78\xf9\xe3\xc6\xa7\xc2",
    b"\x03\x00",
    b"\x00\x00\x00\x00",
];

const HEADER_NAMES: &[&str] = &[
    "streamtype",
    "port",
    "requestid",
    "x-stream-protocol-version",
    ":method",
    "StreamType",
    "host",
    "content-length",
    "a",
];

const HEADER_VALUES: &[&str] = &[
    "data",
    "error",
    "stdin",
    "stdout",
    "stderr",
    "resize",
    "8080",
    "0",
    "v4.channel.k8s.io",
    "portforward.k8s.io",
    "",
    "a\0b",
    "é",
];

/// The `spdy` target.
#[derive(Debug)]
pub struct SpdyTarget;

impl Target for SpdyTarget {
    fn name(&self) -> &'static str {
        "spdy"
    }

    fn weight(&self) -> u32 {
        2
    }

    fn generate(&self, rng: &mut Rng) -> Vec<u8> {
        let mut encoder = FrameEncoder::new();
        let mut out = BytesMut::new();
        let frames = rng.range(1, 12);
        for _ in 0..frames {
            if rng.one_in(10) {
                out.extend_from_slice(&raw_frame(rng));
            } else {
                let frame = frame(rng);
                // Only an over-long header block fails, and then nothing is written.
                let _ = encoder.encode(&frame, &mut out);
            }
            if out.len() > MAX_INPUT {
                break;
            }
        }
        let mut bytes = out.to_vec();
        if rng.one_in(3) {
            let max = bytes.len().max(64) * 2;
            mutate(rng, &mut bytes, DICTIONARY, 4, max.min(MAX_INPUT * 2));
        }
        bytes
    }

    fn run(&self, input: &[u8]) -> Result<String, String> {
        let whole = decode_all(input, input.len().max(1))?;
        let piecewise = decode_all(input, input.len() % 7 + 1)?;
        if whole != piecewise {
            return Err(format!(
                "piecewise decoding differs: whole gives {:?}, pieces give {:?}",
                summary(&whole),
                summary(&piecewise)
            ));
        }
        check_round_trip(&whole.frames)?;
        for frame in &whole.frames {
            if let Some(headers) = headers_of(frame) {
                let size: usize = headers.iter().map(|(n, v)| n.len() + v.len()).sum();
                if size > LIMITS.max_header_block {
                    return Err(format!(
                        "header block over the limit: {size} bytes inflated, limit {}",
                        LIMITS.max_header_block
                    ));
                }
            }
        }
        drive_connection(input)?;
        Ok(match &whole.error {
            Some(error) => format!("error:{error}"),
            None if whole.incomplete => "incomplete".to_owned(),
            None => format!("frames:{}", whole.frames.len().min(8)),
        })
    }
}

/// What decoding a whole input gave.
#[derive(Debug, PartialEq, Eq)]
struct Decoded {
    frames: Vec<Frame>,
    /// The first error's variant, where decoding stopped.
    error: Option<String>,
    /// Bytes left over that do not make a whole frame.
    incomplete: bool,
}

fn summary(decoded: &Decoded) -> (Vec<&'static str>, &Option<String>, bool) {
    (
        decoded.frames.iter().map(Frame::name).collect(),
        &decoded.error,
        decoded.incomplete,
    )
}

/// Feeds `input` to one decoder `piece` bytes at a time.
fn decode_all(input: &[u8], piece: usize) -> Result<Decoded, String> {
    let mut decoder = FrameDecoder::new(LIMITS);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for chunk in input.chunks(piece) {
        buf.extend_from_slice(chunk);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(error) => {
                    let variant = format!("{error:?}");
                    let variant = variant
                        .split([' ', '{', '('])
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    return Ok(Decoded {
                        frames,
                        error: Some(variant),
                        incomplete: false,
                    });
                }
            }
        }
    }
    if FrameDecoder::wanted(&buf) > buf.len() + LIMITS.max_data_len + 8 {
        return Err(format!(
            "decoder wants {} bytes with {} buffered",
            FrameDecoder::wanted(&buf),
            buf.len()
        ));
    }
    Ok(Decoded {
        frames,
        error: None,
        incomplete: !buf.is_empty(),
    })
}

/// Re-encodes every frame through a fresh shared context and decodes it back.
fn check_round_trip(frames: &[Frame]) -> Result<(), String> {
    let mut encoder = FrameEncoder::new();
    let mut decoder = FrameDecoder::new(Limits {
        max_data_len: LIMITS.max_data_len,
        // The re-encoded block may compress differently; the inflated limit is what counts.
        max_control_len: LIMITS.max_control_len * 4,
        max_header_block: LIMITS.max_header_block,
    });
    for frame in frames {
        let mut wire = BytesMut::new();
        encoder
            .encode(frame, &mut wire)
            .map_err(|error| format!("re-encode fails: {} frame: {error}", frame.name()))?;
        let again = decoder
            .decode(&mut wire)
            .map_err(|error| format!("re-decode fails: {frame:?}: {error}"))?;
        if again.as_ref() != Some(frame) || !wire.is_empty() {
            return Err(format!("round trip: {frame:?} came back as {again:?}"));
        }
    }
    Ok(())
}

fn headers_of(frame: &Frame) -> Option<&Headers> {
    match frame {
        Frame::SynStream { headers, .. }
        | Frame::SynReply { headers, .. }
        | Frame::Headers { headers, .. } => Some(headers),
        _ => None,
    }
}

/// Serves `input` to a server connection (whose streams are read a little and answered),
/// then closes the pipe: the connection must end.
fn drive_connection(input: &[u8]) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|error| format!("runtime: {error}"))?;
    runtime.block_on(async {
        let (peer, ours) = tokio::io::duplex(32 << 10);
        let config = ConnectionConfig {
            stream_window: 16 << 10,
            stall_timeout: Duration::from_millis(20),
            max_streams: 8,
            accept_backlog: 4,
            limits: LIMITS,
            ..ConnectionConfig::default()
        };
        let (handle, mut incoming) = serve(ours, config);
        tokio::spawn(async move {
            while let Some(mut stream) = incoming.recv().await {
                tokio::spawn(async move {
                    let mut buf = [0; 1024];
                    let mut total = 0;
                    while let Ok(n @ 1..) = stream.read(&mut buf).await {
                        total += n;
                        if total > 4096 {
                            break;
                        }
                    }
                    let _ = stream.write_all(b"pong").await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        let (mut read, mut write) = tokio::io::split(peer);
        let drain = tokio::spawn(async move {
            let mut buf = [0; 8192];
            while let Ok(1..) = read.read(&mut buf).await {}
        });
        let _ = write.write_all(input).await;
        let _ = write.shutdown().await;
        if tokio::time::timeout(END_WITHIN, handle.closed())
            .await
            .is_err()
        {
            return Err(format!(
                "connection did not end within {END_WITHIN:?} of the peer's EOF (hang, or its driver died)"
            ));
        }
        drop(write);
        tokio::time::timeout(END_WITHIN, drain)
            .await
            .map_err(|_| "the connection's output never ended".to_owned())?
            .map_err(|error| format!("drain: {error}"))
    })
}

fn headers(rng: &mut Rng) -> Headers {
    let mut headers = Headers::new();
    for _ in 0..rng.below(6) {
        let name = if rng.one_in(5) {
            random_text(rng, 12)
        } else {
            rng.pick(HEADER_NAMES).to_owned()
        };
        let value = if rng.one_in(5) {
            random_text(rng, 40)
        } else {
            rng.pick(HEADER_VALUES).to_owned()
        };
        if !name.is_empty() {
            headers.insert(&name, &value);
        }
    }
    if rng.one_in(25) {
        // A decompression bomb: a long, repetitive value inflating past the limit.
        let len = LIMITS.max_header_block + rng.below(LIMITS.max_header_block * 4);
        headers.insert("bomb", &"a".repeat(len));
    }
    headers
}

fn random_text(rng: &mut Rng, max: usize) -> String {
    (0..rng.length(max))
        .map(|_| char::from(rng.range(0x20, 0x7e) as u8))
        .collect()
}

fn stream_id(rng: &mut Rng) -> u32 {
    match rng.below(4) {
        0 => rng.interesting_u64() as u32,
        _ => rng.range(1, 20) as u32,
    }
}

fn frame(rng: &mut Rng) -> Frame {
    let flags = if rng.one_in(4) {
        rng.byte()
    } else {
        rng.below(2) as u8
    };
    match rng.below(10) {
        0 | 1 => Frame::SynStream {
            stream_id: stream_id(rng),
            associated_to: if rng.one_in(4) { stream_id(rng) } else { 0 },
            priority: rng.below(8) as u8,
            slot: rng.byte(),
            flags,
            headers: headers(rng),
        },
        2 => Frame::SynReply {
            stream_id: stream_id(rng),
            flags,
            headers: headers(rng),
        },
        3 => Frame::Headers {
            stream_id: stream_id(rng),
            flags,
            headers: headers(rng),
        },
        4 => Frame::RstStream {
            stream_id: stream_id(rng),
            status: rng.range(0, 12) as u32,
        },
        5 => Frame::Settings {
            flags,
            entries: (0..rng.below(4))
                .map(|_| Setting {
                    flags: rng.below(3) as u8,
                    id: rng.range(1, 8) as u32,
                    value: rng.interesting_u64() as u32,
                })
                .collect(),
        },
        6 => Frame::Ping {
            id: rng.interesting_u64() as u32,
        },
        7 => Frame::GoAway {
            last_good_stream_id: stream_id(rng),
            status: rng.below(3) as u32,
        },
        8 => Frame::WindowUpdate {
            stream_id: if rng.one_in(3) { 0 } else { stream_id(rng) },
            delta: rng.interesting_u64() as u32,
        },
        _ => {
            let len = if rng.one_in(8) {
                rng.below(40 << 10)
            } else {
                rng.length(512)
            };
            let data: Vec<u8> = (0..len).map(|_| rng.byte()).collect();
            Frame::Data {
                stream_id: stream_id(rng),
                flags: flags & 1,
                data: Bytes::from(data),
            }
        }
    }
}

/// A frame built by hand: any type and version, flags, and a length field that may not
/// match what follows.
fn raw_frame(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    let payload_len = rng.length(64);
    let claimed = match rng.below(4) {
        0 => rng.interesting_u64() as usize & 0xff_ffff,
        _ => payload_len,
    };
    if rng.one_in(4) {
        out.extend_from_slice(&(rng.interesting_u64() as u32 & 0x7fff_ffff).to_be_bytes());
    } else {
        let version: u16 = if rng.one_in(6) {
            rng.below(5) as u16
        } else {
            3
        };
        out.extend_from_slice(&(0x8000 | version).to_be_bytes());
        out.extend_from_slice(&(rng.range(0, 12) as u16).to_be_bytes());
    }
    out.push(rng.byte());
    out.extend_from_slice(&(claimed as u32).to_be_bytes()[1..]);
    out.extend((0..payload_len).map(|_| rng.byte()));
    out
}
