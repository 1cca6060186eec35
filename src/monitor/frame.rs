//! The frames of the attach socket ([`ATTACH_SOCKET_FILE`](super::protocol::ATTACH_SOCKET_FILE)),
//! shared by the monitor and the daemon's attach client (pure: encoding and parsing only).
//!
//! A frame is a kind byte, the payload length (`u32`, big endian) and the payload. The client
//! opens with [`Kind::Hello`] (payload: one byte, 1 when it sends input), then sends
//! [`Kind::Stdin`] data, [`Kind::StdinEnd`] once its input has ended, and [`Kind::Resize`]
//! (width and height, `u16` big endian each). The monitor sends [`Kind::Stdout`] and
//! [`Kind::Stderr`] data, and closes the connection when the container has exited.

/// Bytes before the payload.
pub const HEADER_LEN: usize = 5;

/// The largest payload accepted; a frame announcing more is a protocol error.
pub const MAX_PAYLOAD: usize = 64 * 1024;

/// What a frame carries (the stdio numbers are those of kubelet's stream channels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Client → monitor: input for the container.
    Stdin,
    /// Monitor → client: the container's stdout (or its terminal's output).
    Stdout,
    /// Monitor → client: the container's stderr.
    Stderr,
    /// Client → monitor, first: whether this client sends input.
    Hello,
    /// Client → monitor: a terminal size.
    Resize,
    /// Client → monitor: this client's input has ended.
    StdinEnd,
}

impl Kind {
    fn byte(self) -> u8 {
        match self {
            Kind::Stdin => 0,
            Kind::Stdout => 1,
            Kind::Stderr => 2,
            Kind::Hello => 3,
            Kind::Resize => 4,
            Kind::StdinEnd => 5,
        }
    }

    fn from_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            0 => Kind::Stdin,
            1 => Kind::Stdout,
            2 => Kind::Stderr,
            3 => Kind::Hello,
            4 => Kind::Resize,
            5 => Kind::StdinEnd,
            _ => return None,
        })
    }
}

/// A malformed frame: the peer does not speak this protocol, and its connection is dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The kind byte is unknown.
    #[error("unknown attach frame kind {0}")]
    UnknownKind(u8),
    /// The payload is longer than [`MAX_PAYLOAD`].
    #[error("attach frame of {0} bytes is too long")]
    TooLong(usize),
}

/// Appends a frame of `kind` carrying `payload` (at most [`MAX_PAYLOAD`] bytes: callers split
/// longer data) to `out`.
pub fn encode(kind: Kind, payload: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    out.push(kind.byte());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
}

/// Appends `data` as frames of `kind`, split at [`MAX_PAYLOAD`].
pub fn encode_data(kind: Kind, data: &[u8], out: &mut Vec<u8>) {
    for chunk in data.chunks(MAX_PAYLOAD) {
        encode(kind, chunk, out);
    }
}

/// The payload of a [`Kind::Resize`] frame.
pub fn resize_payload(width: u16, height: u16) -> [u8; 4] {
    let [w0, w1] = width.to_be_bytes();
    let [h0, h1] = height.to_be_bytes();
    [w0, w1, h0, h1]
}

/// The width and height of a [`Kind::Resize`] payload; `None` when it is not four bytes.
pub fn parse_resize(payload: &[u8]) -> Option<(u16, u16)> {
    match payload {
        [w0, w1, h0, h1] => Some((
            u16::from_be_bytes([*w0, *w1]),
            u16::from_be_bytes([*h0, *h1]),
        )),
        _ => None,
    }
}

/// A frame parsed out of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// What it carries.
    pub kind: Kind,
    /// Its payload.
    pub payload: &'a [u8],
    /// How many bytes of the buffer it took, header included.
    pub len: usize,
}

/// The first complete frame in `buf`; `None` while incomplete.
pub fn parse(buf: &[u8]) -> Result<Option<Frame<'_>>, FrameError> {
    let Some((&kind, rest)) = buf.split_first() else {
        return Ok(None);
    };
    let kind = Kind::from_byte(kind).ok_or(FrameError::UnknownKind(kind))?;
    let Some(len) = rest.get(..4) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]);
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    if len > MAX_PAYLOAD {
        return Err(FrameError::TooLong(len));
    }
    let end = HEADER_LEN + len;
    Ok(buf.get(HEADER_LEN..end).map(|payload| Frame {
        kind,
        payload,
        len: end,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_wait_for_their_end() {
        let mut buf = Vec::new();
        encode(Kind::Hello, &[1], &mut buf);
        encode(Kind::Resize, &resize_payload(80, 24), &mut buf);
        encode(Kind::StdinEnd, &[], &mut buf);
        let hello = parse(&buf).unwrap().unwrap();
        assert_eq!((hello.kind, hello.payload), (Kind::Hello, &[1u8][..]));
        let rest = &buf[hello.len..];
        let resize = parse(rest).unwrap().unwrap();
        assert_eq!(resize.kind, Kind::Resize);
        assert_eq!(parse_resize(resize.payload), Some((80, 24)));
        let rest = &rest[resize.len..];
        assert_eq!(
            parse(rest).unwrap(),
            Some(Frame {
                kind: Kind::StdinEnd,
                payload: &[],
                len: 5
            })
        );
        for cut in 0..rest.len() {
            assert_eq!(parse(&rest[..cut]).unwrap(), None);
        }
        let mut data = Vec::new();
        encode(Kind::Stdout, b"hello", &mut data);
        assert_eq!(parse(&data[..7]).unwrap(), None);
        assert_eq!(
            parse(&data).unwrap(),
            Some(Frame {
                kind: Kind::Stdout,
                payload: b"hello",
                len: 10
            })
        );
    }

    #[test]
    fn long_data_is_split_and_bad_frames_refused() {
        let mut buf = Vec::new();
        encode_data(Kind::Stderr, &vec![7u8; MAX_PAYLOAD + 3], &mut buf);
        let first = parse(&buf).unwrap().unwrap();
        assert_eq!(first.payload.len(), MAX_PAYLOAD);
        assert_eq!(parse(&buf[first.len..]).unwrap().unwrap().payload.len(), 3);
        assert_eq!(parse(&[9]), Err(FrameError::UnknownKind(9)));
        assert_eq!(
            parse(&[0, 0xff, 0xff, 0xff, 0xff]),
            Err(FrameError::TooLong(0xffff_ffff))
        );
        assert_eq!(parse_resize(&[1, 2, 3]), None);
    }
}
