//! SPDY/3.1 frames: their in-memory form and the pure encoding and decoding of one frame
//! to and from bytes, with size limits checked before anything is buffered or inflated.
//!
//! Wire form (draft 3, section 2.2): a control frame starts with the control bit, the 15-bit
//! version (3) and the 16-bit type; a data frame with a 31-bit stream id. Both continue with
//! 8 bits of flags and a 24-bit payload length. Header blocks inside SYN_STREAM, SYN_REPLY
//! and HEADERS go through the connection's shared zlib contexts ([`super::headers`]), which
//! is why the encoder and decoder here are stateful and one per connection direction.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::error::SpdyError;
use super::headers::{HeaderDecoder, HeaderEncoder, Headers};

/// The protocol version this module speaks.
pub const VERSION: u16 = 3;
/// FLAG_FIN on DATA, SYN_STREAM, SYN_REPLY and HEADERS: the sender's half is closed.
pub const FLAG_FIN: u8 = 0x01;
/// FLAG_UNIDIRECTIONAL on SYN_STREAM: the recipient must not send on the stream.
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;
/// The frame header's size.
pub const HEADER_LEN: usize = 8;
/// The largest payload the 24-bit length field can express.
pub const MAX_PAYLOAD_LEN: usize = (1 << 24) - 1;
/// Largest stream id (31 bits).
pub const MAX_STREAM_ID: u32 = 0x7fff_ffff;

/// RST_STREAM status codes (draft 3, section 2.6.3).
pub mod rst {
    /// PROTOCOL_ERROR.
    pub const PROTOCOL_ERROR: u32 = 1;
    /// INVALID_STREAM.
    pub const INVALID_STREAM: u32 = 2;
    /// REFUSED_STREAM: the stream was not processed.
    pub const REFUSED_STREAM: u32 = 3;
    /// CANCEL: the creator no longer needs the stream.
    pub const CANCEL: u32 = 5;
    /// INTERNAL_ERROR.
    pub const INTERNAL_ERROR: u32 = 6;
    /// FLOW_CONTROL_ERROR: the peer sent beyond what the stream could hold.
    pub const FLOW_CONTROL_ERROR: u32 = 7;
}

/// GOAWAY status codes.
pub mod goaway {
    /// OK: a normal shutdown.
    pub const OK: u32 = 0;
    /// PROTOCOL_ERROR.
    pub const PROTOCOL_ERROR: u32 = 1;
    /// INTERNAL_ERROR.
    pub const INTERNAL_ERROR: u32 = 2;
}

/// SETTINGS ids this module acts on.
pub mod settings {
    /// SETTINGS_INITIAL_WINDOW_SIZE: the initial per-stream flow-control window.
    pub const INITIAL_WINDOW_SIZE: u32 = 7;
}

/// Control frame type codes.
mod kind {
    pub const SYN_STREAM: u16 = 1;
    pub const SYN_REPLY: u16 = 2;
    pub const RST_STREAM: u16 = 3;
    pub const SETTINGS: u16 = 4;
    pub const PING: u16 = 6;
    pub const GOAWAY: u16 = 7;
    pub const HEADERS: u16 = 8;
    pub const WINDOW_UPDATE: u16 = 9;
}

/// One SETTINGS entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// FLAG_SETTINGS_PERSIST_VALUE (1) / FLAG_SETTINGS_PERSISTED (2).
    pub flags: u8,
    /// The 24-bit setting id.
    pub id: u32,
    /// Its value.
    pub value: u32,
}

/// A decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Opens a stream.
    SynStream {
        /// The new stream's id (odd from clients, even from servers).
        stream_id: u32,
        /// The stream it is associated with (server push), or 0.
        associated_to: u32,
        /// Priority, 0 (highest) to 7.
        priority: u8,
        /// Credential slot (unused by kubelet's clients).
        slot: u8,
        /// FLAG_FIN and/or FLAG_UNIDIRECTIONAL.
        flags: u8,
        /// The stream's headers.
        headers: Headers,
    },
    /// Accepts a stream.
    SynReply {
        /// The stream.
        stream_id: u32,
        /// FLAG_FIN.
        flags: u8,
        /// Reply headers.
        headers: Headers,
    },
    /// Ends a stream abnormally.
    RstStream {
        /// The stream.
        stream_id: u32,
        /// Why (see [`rst`]).
        status: u32,
    },
    /// Connection settings.
    Settings {
        /// FLAG_SETTINGS_CLEAR_SETTINGS.
        flags: u8,
        /// The entries.
        entries: Vec<Setting>,
    },
    /// A liveness probe; the recipient echoes the peer's pings.
    Ping {
        /// Odd from clients, even from servers.
        id: u32,
    },
    /// The sender will accept no more streams.
    GoAway {
        /// The last stream the sender accepted.
        last_good_stream_id: u32,
        /// Why (see [`goaway`]).
        status: u32,
    },
    /// More headers on an open stream.
    Headers {
        /// The stream.
        stream_id: u32,
        /// FLAG_FIN.
        flags: u8,
        /// The headers.
        headers: Headers,
    },
    /// Flow-control credit (stream 0: the whole session, SPDY/3.1).
    WindowUpdate {
        /// The stream, or 0.
        stream_id: u32,
        /// The 31-bit credit.
        delta: u32,
    },
    /// Stream payload.
    Data {
        /// The stream.
        stream_id: u32,
        /// FLAG_FIN.
        flags: u8,
        /// The bytes.
        data: Bytes,
    },
    /// A control frame of a type this module does not know; the draft says to ignore it.
    Unknown {
        /// The type code.
        frame_type: u16,
        /// The flags.
        flags: u8,
        /// The raw payload.
        payload: Bytes,
    },
}

impl Frame {
    /// The frame type's name, for errors and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::SynStream { .. } => "SYN_STREAM",
            Self::SynReply { .. } => "SYN_REPLY",
            Self::RstStream { .. } => "RST_STREAM",
            Self::Settings { .. } => "SETTINGS",
            Self::Ping { .. } => "PING",
            Self::GoAway { .. } => "GOAWAY",
            Self::Headers { .. } => "HEADERS",
            Self::WindowUpdate { .. } => "WINDOW_UPDATE",
            Self::Data { .. } => "DATA",
            Self::Unknown { .. } => "unknown control",
        }
    }
}

fn type_name(frame_type: u16) -> &'static str {
    match frame_type {
        kind::SYN_STREAM => "SYN_STREAM",
        kind::SYN_REPLY => "SYN_REPLY",
        kind::RST_STREAM => "RST_STREAM",
        kind::SETTINGS => "SETTINGS",
        kind::PING => "PING",
        kind::GOAWAY => "GOAWAY",
        kind::HEADERS => "HEADERS",
        kind::WINDOW_UPDATE => "WINDOW_UPDATE",
        _ => "unknown control",
    }
}

/// What the decoder accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest DATA payload.
    pub max_data_len: usize,
    /// Largest control frame payload (compressed header blocks included).
    pub max_control_len: usize,
    /// Largest inflated header block.
    pub max_header_block: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            // Go's spdystream sends one DATA frame per Write call, of any size the 24-bit
            // length allows; refusing large ones would break such a peer.
            max_data_len: MAX_PAYLOAD_LEN,
            max_control_len: 256 << 10,
            max_header_block: 256 << 10,
        }
    }
}

/// Turns bytes from the peer into frames, keeping the connection's inbound zlib context.
#[derive(Debug)]
pub struct FrameDecoder {
    limits: Limits,
    headers: HeaderDecoder,
}

impl FrameDecoder {
    /// A decoder for a new connection.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            headers: HeaderDecoder::new(limits.max_header_block),
        }
    }

    /// How many bytes `buf` must hold before [`Self::decode`] can return a frame (at least
    /// the header; after it, the whole frame).
    pub fn wanted(buf: &[u8]) -> usize {
        match buf.get(..HEADER_LEN) {
            Some(header) => HEADER_LEN + payload_len(header),
            None => HEADER_LEN,
        }
    }

    /// Takes one frame off the front of `buf`, or returns `None` when it is incomplete. A
    /// length over the limits is an error as soon as the header is in, before the payload is
    /// buffered. After an error the decoder (its zlib context) is unusable.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, SpdyError> {
        let Some(header) = buf.get(..HEADER_LEN) else {
            return Ok(None);
        };
        let first = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        let flags = header[4];
        let len = payload_len(header);
        let control = first & 0x8000_0000 != 0;
        let (frame_type, max) = if control {
            (
                type_name((first & 0xffff) as u16),
                self.limits.max_control_len,
            )
        } else {
            ("DATA", self.limits.max_data_len)
        };
        if len > max {
            return Err(SpdyError::FrameTooLarge {
                frame: frame_type,
                len,
                max,
            });
        }
        if buf.len() < HEADER_LEN + len {
            return Ok(None);
        }
        buf.advance(HEADER_LEN);
        let payload = buf.split_to(len).freeze();
        if !control {
            let stream_id = first & MAX_STREAM_ID;
            if stream_id == 0 {
                return Err(invalid("DATA", "stream id 0"));
            }
            return Ok(Some(Frame::Data {
                stream_id,
                flags,
                data: payload,
            }));
        }
        let version = ((first >> 16) & 0x7fff) as u16;
        if version != VERSION {
            return Err(SpdyError::UnsupportedVersion { version });
        }
        self.control((first & 0xffff) as u16, flags, payload)
            .map(Some)
    }

    fn control(&mut self, frame_type: u16, flags: u8, payload: Bytes) -> Result<Frame, SpdyError> {
        let name = type_name(frame_type);
        let mut p = payload.clone();
        let frame = match frame_type {
            kind::SYN_STREAM => {
                if p.len() < 10 {
                    return Err(invalid(name, "shorter than 10 bytes"));
                }
                let stream_id = stream_id(name, p.get_u32())?;
                let associated_to = p.get_u32() & MAX_STREAM_ID;
                let priority = p.get_u8() >> 5;
                let slot = p.get_u8();
                let headers = self.headers.decode(&p, stream_id)?;
                Frame::SynStream {
                    stream_id,
                    associated_to,
                    priority,
                    slot,
                    flags,
                    headers,
                }
            }
            kind::SYN_REPLY | kind::HEADERS => {
                if p.len() < 4 {
                    return Err(invalid(name, "shorter than 4 bytes"));
                }
                let stream_id = stream_id(name, p.get_u32())?;
                let headers = self.headers.decode(&p, stream_id)?;
                if frame_type == kind::SYN_REPLY {
                    Frame::SynReply {
                        stream_id,
                        flags,
                        headers,
                    }
                } else {
                    Frame::Headers {
                        stream_id,
                        flags,
                        headers,
                    }
                }
            }
            kind::RST_STREAM => {
                exact_len(name, &p, 8)?;
                let stream_id = stream_id(name, p.get_u32())?;
                let status = p.get_u32();
                if status == 0 {
                    return Err(invalid(name, "status 0"));
                }
                Frame::RstStream { stream_id, status }
            }
            kind::SETTINGS => {
                if p.len() < 4 {
                    return Err(invalid(name, "shorter than 4 bytes"));
                }
                let count = p.get_u32() as usize;
                if count.checked_mul(8) != Some(p.len()) {
                    return Err(invalid(name, "entry count does not match the length"));
                }
                let entries = (0..count)
                    .map(|_| {
                        let word = p.get_u32();
                        Setting {
                            flags: (word >> 24) as u8,
                            id: word & 0x00ff_ffff,
                            value: p.get_u32(),
                        }
                    })
                    .collect();
                Frame::Settings { flags, entries }
            }
            kind::PING => {
                exact_len(name, &p, 4)?;
                Frame::Ping { id: p.get_u32() }
            }
            kind::GOAWAY => {
                exact_len(name, &p, 8)?;
                Frame::GoAway {
                    last_good_stream_id: p.get_u32() & MAX_STREAM_ID,
                    status: p.get_u32(),
                }
            }
            kind::WINDOW_UPDATE => {
                exact_len(name, &p, 8)?;
                Frame::WindowUpdate {
                    stream_id: p.get_u32() & MAX_STREAM_ID,
                    delta: p.get_u32() & 0x7fff_ffff,
                }
            }
            _ => Frame::Unknown {
                frame_type,
                flags,
                payload,
            },
        };
        Ok(frame)
    }
}

fn payload_len(header: &[u8]) -> usize {
    (usize::from(header[5]) << 16) | (usize::from(header[6]) << 8) | usize::from(header[7])
}

fn invalid(frame: &'static str, reason: &'static str) -> SpdyError {
    SpdyError::InvalidFrame { frame, reason }
}

fn exact_len(frame: &'static str, payload: &Bytes, len: usize) -> Result<(), SpdyError> {
    if payload.len() == len {
        Ok(())
    } else {
        Err(invalid(frame, "wrong payload length"))
    }
}

fn stream_id(frame: &'static str, word: u32) -> Result<u32, SpdyError> {
    match word & MAX_STREAM_ID {
        0 => Err(invalid(frame, "stream id 0")),
        id => Ok(id),
    }
}

/// Turns frames into bytes for the peer, keeping the connection's outbound zlib context.
#[derive(Debug, Default)]
pub struct FrameEncoder {
    headers: HeaderEncoder,
}

impl FrameEncoder {
    /// An encoder for a new connection.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `frame`'s wire form to `out`. Frames carrying headers advance the zlib
    /// context, so they must reach the peer in the order they were encoded.
    pub fn encode(&mut self, frame: &Frame, out: &mut BytesMut) -> Result<(), SpdyError> {
        match frame {
            Frame::SynStream {
                stream_id,
                associated_to,
                priority,
                slot,
                flags,
                headers,
            } => {
                let block = self.headers.encode(headers, *stream_id)?;
                control_header(out, kind::SYN_STREAM, *flags, 10 + block.len())?;
                out.put_u32(stream_id & MAX_STREAM_ID);
                out.put_u32(associated_to & MAX_STREAM_ID);
                out.put_u8((priority & 0x7) << 5);
                out.put_u8(*slot);
                out.put_slice(&block);
            }
            Frame::SynReply {
                stream_id,
                flags,
                headers,
            }
            | Frame::Headers {
                stream_id,
                flags,
                headers,
            } => {
                let frame_type = if matches!(frame, Frame::SynReply { .. }) {
                    kind::SYN_REPLY
                } else {
                    kind::HEADERS
                };
                let block = self.headers.encode(headers, *stream_id)?;
                control_header(out, frame_type, *flags, 4 + block.len())?;
                out.put_u32(stream_id & MAX_STREAM_ID);
                out.put_slice(&block);
            }
            Frame::RstStream { stream_id, status } => {
                control_header(out, kind::RST_STREAM, 0, 8)?;
                out.put_u32(stream_id & MAX_STREAM_ID);
                out.put_u32(*status);
            }
            Frame::Settings { flags, entries } => {
                control_header(out, kind::SETTINGS, *flags, 4 + entries.len() * 8)?;
                out.put_u32(u32::try_from(entries.len()).unwrap_or(u32::MAX));
                for entry in entries {
                    out.put_u32((u32::from(entry.flags) << 24) | (entry.id & 0x00ff_ffff));
                    out.put_u32(entry.value);
                }
            }
            Frame::Ping { id } => {
                control_header(out, kind::PING, 0, 4)?;
                out.put_u32(*id);
            }
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => {
                control_header(out, kind::GOAWAY, 0, 8)?;
                out.put_u32(last_good_stream_id & MAX_STREAM_ID);
                out.put_u32(*status);
            }
            Frame::WindowUpdate { stream_id, delta } => {
                control_header(out, kind::WINDOW_UPDATE, 0, 8)?;
                out.put_u32(stream_id & MAX_STREAM_ID);
                out.put_u32(delta & 0x7fff_ffff);
            }
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                encode_data_header(out, *stream_id, *flags, data.len())?;
                out.put_slice(data);
            }
            Frame::Unknown {
                frame_type,
                flags,
                payload,
            } => {
                control_header(out, *frame_type, *flags, payload.len())?;
                out.put_slice(payload);
            }
        }
        Ok(())
    }
}

/// Appends a DATA frame header (the payload follows separately, which spares a copy).
pub fn encode_data_header(
    out: &mut BytesMut,
    stream_id: u32,
    flags: u8,
    len: usize,
) -> Result<(), SpdyError> {
    if len > MAX_PAYLOAD_LEN {
        return Err(SpdyError::FrameTooLarge {
            frame: "DATA",
            len,
            max: MAX_PAYLOAD_LEN,
        });
    }
    out.reserve(HEADER_LEN + len);
    out.put_u32(stream_id & MAX_STREAM_ID);
    out.put_u32((u32::from(flags) << 24) | len as u32);
    Ok(())
}

fn control_header(
    out: &mut BytesMut,
    frame_type: u16,
    flags: u8,
    len: usize,
) -> Result<(), SpdyError> {
    if len > MAX_PAYLOAD_LEN {
        return Err(SpdyError::FrameTooLarge {
            frame: type_name(frame_type),
            len,
            max: MAX_PAYLOAD_LEN,
        });
    }
    out.reserve(HEADER_LEN + len);
    out.put_u16(0x8000 | VERSION);
    out.put_u16(frame_type);
    out.put_u32((u32::from(flags) << 24) | len as u32);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        let mut headers = Headers::new();
        for (name, value) in pairs {
            headers.insert(name, value);
        }
        headers
    }

    fn all_kinds() -> Vec<Frame> {
        vec![
            Frame::SynStream {
                stream_id: 1,
                associated_to: 0,
                priority: 0,
                slot: 0,
                flags: 0,
                headers: headers(&[("streamtype", "error")]),
            },
            Frame::SynStream {
                stream_id: 3,
                associated_to: 1,
                priority: 7,
                slot: 2,
                flags: FLAG_FIN | FLAG_UNIDIRECTIONAL,
                headers: headers(&[("streamtype", "data"), ("port", "80"), ("requestid", "1")]),
            },
            Frame::SynReply {
                stream_id: 1,
                flags: 0,
                headers: Headers::new(),
            },
            Frame::RstStream {
                stream_id: 3,
                status: rst::CANCEL,
            },
            Frame::Settings {
                flags: 1,
                entries: vec![Setting {
                    flags: 1,
                    id: settings::INITIAL_WINDOW_SIZE,
                    value: 1 << 20,
                }],
            },
            Frame::Ping { id: 2 },
            Frame::GoAway {
                last_good_stream_id: 5,
                status: goaway::OK,
            },
            Frame::Headers {
                stream_id: 1,
                flags: FLAG_FIN,
                headers: headers(&[("x", "y")]),
            },
            Frame::WindowUpdate {
                stream_id: 0,
                delta: 0x7fff_0000,
            },
            Frame::Data {
                stream_id: 1,
                flags: 0,
                data: Bytes::from_static(b"hello"),
            },
            Frame::Data {
                stream_id: 1,
                flags: FLAG_FIN,
                data: Bytes::new(),
            },
            Frame::Unknown {
                frame_type: 10,
                flags: 3,
                payload: Bytes::from_static(b"credential"),
            },
        ]
    }

    #[test]
    fn every_kind_round_trips_through_one_shared_context() {
        let mut encoder = FrameEncoder::new();
        let mut wire = BytesMut::new();
        for frame in all_kinds() {
            encoder.encode(&frame, &mut wire).expect("encode");
        }
        let mut decoder = FrameDecoder::new(Limits::default());
        let mut decoded = Vec::new();
        while let Some(frame) = decoder.decode(&mut wire).expect("decode") {
            decoded.push(frame);
        }
        assert!(wire.is_empty());
        assert_eq!(decoded, all_kinds());
    }

    #[test]
    fn partial_input_waits_for_more() {
        let mut wire = BytesMut::new();
        FrameEncoder::new()
            .encode(&all_kinds()[1], &mut wire)
            .expect("encode");
        let whole = wire.clone();
        let mut decoder = FrameDecoder::new(Limits::default());
        let mut partial = BytesMut::new();
        for (i, byte) in whole.iter().enumerate() {
            assert_eq!(decoder.decode(&mut partial).expect("no error yet"), None);
            assert_eq!(
                FrameDecoder::wanted(&partial),
                if i < HEADER_LEN {
                    HEADER_LEN
                } else {
                    whole.len()
                }
            );
            partial.put_u8(*byte);
        }
        assert_eq!(
            decoder.decode(&mut partial).expect("decode"),
            Some(all_kinds()[1].clone())
        );
    }

    #[test]
    fn known_bytes_of_a_ping_and_a_data_frame() {
        let mut wire = BytesMut::new();
        let mut encoder = FrameEncoder::new();
        encoder
            .encode(&Frame::Ping { id: 1 }, &mut wire)
            .expect("ping");
        let data = Frame::Data {
            stream_id: 5,
            flags: FLAG_FIN,
            data: Bytes::from_static(b"ab"),
        };
        encoder.encode(&data, &mut wire).expect("data");
        assert_eq!(
            wire.as_ref(),
            b"\x80\x03\x00\x06\x00\x00\x00\x04\x00\x00\x00\x01\x00\x00\x00\x05\x01\x00\x00\x02ab"
        );
    }

    /// Two SYN_STREAMs as Go's moby/spdystream client writes them (captured on the wire):
    /// the second header block continues the first's zlib stream (best compression).
    #[test]
    fn decodes_what_spdystream_sends() {
        let mut wire = BytesMut::from(
            &b"\x80\x03\x00\x01\x00\x00\x00\x2a\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\
               \x78\xf9\xe3\xc6\xa7\xc2\x62\x60\x60\x60\x04\xa7\xb3\x92\xa2\xd4\xc4\x5c\
               \x68\x51\xc2\x9a\x5a\x54\x94\x5f\x04\x00\x00\x00\xff\xff\
               \x80\x03\x00\x01\x00\x00\x00\x19\x00\x00\x00\x03\x00\x00\x00\x00\x00\x00\
               \xc2\x2a\xc5\x56\x5c\x92\x92\x5f\x5a\x02\x00\x00\x00\xff\xff"[..],
        );
        let mut decoder = FrameDecoder::new(Limits::default());
        for (id, kind) in [(1, "error"), (3, "stdout")] {
            let frame = decoder.decode(&mut wire).expect("decode");
            assert_eq!(
                frame,
                Some(Frame::SynStream {
                    stream_id: id,
                    associated_to: 0,
                    priority: 0,
                    slot: 0,
                    flags: 0,
                    headers: headers(&[("streamtype", kind)]),
                })
            );
        }
        assert!(wire.is_empty());
    }

    #[test]
    fn oversize_lengths_are_rejected_from_the_header_alone() {
        let limits = Limits {
            max_data_len: 16,
            max_control_len: 32,
            max_header_block: 64,
        };
        let mut decoder = FrameDecoder::new(limits);
        let mut data = BytesMut::from(&b"\x00\x00\x00\x01\x00\x00\x00\x11"[..]);
        assert!(matches!(
            decoder.decode(&mut data),
            Err(SpdyError::FrameTooLarge { len: 17, .. })
        ));
        let mut control = BytesMut::from(&b"\x80\x03\x00\x01\x00\xff\xff\xff"[..]);
        assert!(matches!(
            FrameDecoder::new(limits).decode(&mut control),
            Err(SpdyError::FrameTooLarge { .. })
        ));
    }

    #[test]
    fn malformed_control_frames_are_errors() {
        let cases: [&[u8]; 7] = [
            // version 2
            b"\x80\x02\x00\x06\x00\x00\x00\x04\x00\x00\x00\x01",
            // PING of 3 bytes
            b"\x80\x03\x00\x06\x00\x00\x00\x03\x00\x00\x01",
            // RST_STREAM with status 0
            b"\x80\x03\x00\x03\x00\x00\x00\x08\x00\x00\x00\x01\x00\x00\x00\x00",
            // RST_STREAM on stream 0
            b"\x80\x03\x00\x03\x00\x00\x00\x08\x00\x00\x00\x00\x00\x00\x00\x05",
            // SETTINGS claiming 2 entries with room for 1
            b"\x80\x03\x00\x04\x00\x00\x00\x0c\x00\x00\x00\x02\x00\x00\x00\x07\x00\x00\x00\x01",
            // SYN_STREAM shorter than its fixed part
            b"\x80\x03\x00\x01\x00\x00\x00\x04\x00\x00\x00\x01",
            // DATA on stream 0
            b"\x00\x00\x00\x00\x00\x00\x00\x00",
        ];
        for case in cases {
            let mut buf = BytesMut::from(case);
            let result = FrameDecoder::new(Limits::default()).decode(&mut buf);
            assert!(result.is_err(), "{case:?}: {result:?}");
        }
    }
}
