//! The tunables of one SPDY connection.

use std::time::Duration;

use super::frame::Limits;

/// How a connection behaves and what it accepts.
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    /// End the connection (resetting its streams) when no frame has been read or written for
    /// this long. `None`: never. Kubelet's streaming server uses 4 hours.
    pub idle_timeout: Option<Duration>,
    /// Most streams open at once; the peer's further SYN_STREAMs are refused
    /// (RST_STREAM REFUSED_STREAM) and `open_stream` fails.
    pub max_streams: usize,
    /// Bytes buffered per stream for a reader that is not keeping up, and the window this side
    /// advertises to peers that do flow control.
    pub stream_window: u32,
    /// How long a peer that ignores flow control may keep the connection's reading paused on
    /// one stream whose reader does not drain its full buffer before that stream is reset.
    pub stall_timeout: Duration,
    /// Bytes of outbound frames queued (and not yet written) before writers wait.
    pub write_queue_bytes: usize,
    /// Once the connection has ended, how long the writer may still spend flushing what is
    /// queued (a final GOAWAY, resets) to a peer that may have stopped reading.
    pub linger: Duration,
    /// Peer-opened streams waiting in the receiver; beyond that they are refused rather than
    /// holding up the connection.
    pub accept_backlog: usize,
    /// Frame size limits of the decoder.
    pub limits: Limits,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        Self {
            idle_timeout: None,
            max_streams: 1024,
            stream_window: 256 << 10,
            stall_timeout: Duration::from_secs(30),
            write_queue_bytes: 1 << 20,
            linger: Duration::from_secs(5),
            accept_backlog: 64,
            limits: Limits::default(),
        }
    }
}
