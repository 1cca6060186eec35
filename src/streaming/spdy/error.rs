//! The SPDY module's error type: what went wrong decoding, encoding or driving a connection,
//! with the frame or stream it concerns.

use crate::error_kind::ErrorKind;

/// A failure of the SPDY/3.1 framing or connection layer.
#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    /// A frame announced a length above the limit this side accepts.
    #[error("spdy {frame} frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// The frame type's name.
        frame: &'static str,
        /// The announced length.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// A control frame of another protocol version.
    #[error("spdy control frame of unsupported version {version} (only 3 is spoken)")]
    UnsupportedVersion {
        /// The version the frame carried.
        version: u16,
    },
    /// A frame whose fixed fields are malformed.
    #[error("invalid spdy {frame} frame: {reason}")]
    InvalidFrame {
        /// The frame type's name.
        frame: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A name/value header block that does not parse.
    #[error("invalid spdy header block on stream {stream_id}: {reason}")]
    InvalidHeaderBlock {
        /// The stream the block belongs to.
        stream_id: u32,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A header block that inflates beyond the limit (a decompression bomb).
    #[error("spdy header block on stream {stream_id} inflates beyond {max} bytes")]
    HeaderBlockTooLarge {
        /// The stream the block belongs to.
        stream_id: u32,
        /// The limit in force.
        max: usize,
    },
    /// The zlib stream of header blocks is corrupt (the whole connection's context is lost).
    #[error("spdy header compression on stream {stream_id}: {reason}")]
    Compression {
        /// The stream whose block was being (de)compressed.
        stream_id: u32,
        /// What zlib reported.
        reason: String,
    },
    /// The peer refused or reset the stream.
    #[error("spdy stream {stream_id} was reset (status {status})")]
    StreamReset {
        /// The stream.
        stream_id: u32,
        /// The RST_STREAM status code (3: refused, 5: cancel, ...).
        status: u32,
    },
    /// The connection is going away (GOAWAY sent or received): no new streams.
    #[error("spdy connection is going away; no new streams")]
    GoingAway,
    /// As many streams are open as the connection allows.
    #[error("spdy connection has its maximum of {max} streams open")]
    TooManyStreams {
        /// The limit.
        max: usize,
    },
    /// This side has used up its stream ids.
    #[error("spdy stream ids exhausted")]
    StreamIdsExhausted,
    /// The connection has ended.
    #[error("spdy connection closed")]
    ConnectionClosed,
}

impl SpdyError {
    /// The kind of failure, for the one place that maps errors to gRPC codes.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::FrameTooLarge { .. }
            | Self::UnsupportedVersion { .. }
            | Self::InvalidFrame { .. }
            | Self::InvalidHeaderBlock { .. }
            | Self::HeaderBlockTooLarge { .. }
            | Self::Compression { .. } => ErrorKind::InvalidArgument,
            Self::StreamReset { .. } => ErrorKind::Cancelled,
            Self::TooManyStreams { .. } => ErrorKind::ResourceExhausted,
            Self::GoingAway | Self::StreamIdsExhausted | Self::ConnectionClosed => {
                ErrorKind::Unavailable
            }
        }
    }
}
