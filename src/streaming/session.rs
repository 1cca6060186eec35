//! The protocol-neutral session layer: what SPDY and WebSocket both hand to the exec, attach
//! and port-forward code, so that each of those is written once.
//!
//! A stdio session has the streams kubelet's remotecommand protocol names (`stdin`, `stdout`,
//! `stderr`, `error`, `resize`); a port-forward session yields one [`ForwardStream`] per
//! forwarded connection. `closed` resolves when the client went away.

use std::future::Future;
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use super::status::StatusFormat;

/// Bytes from the client (or from the process, on the runtime side).
pub type Input = Box<dyn AsyncRead + Send + Unpin>;
/// Bytes to the client (or to the process).
pub type Output = Box<dyn AsyncWrite + Send + Unpin>;
/// Resolves when the client's connection is gone.
pub type Closed = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The streams of an exec or attach.
pub struct StdioSession {
    /// Input for the process, when the client asked to send some.
    pub stdin: Option<Input>,
    /// Where the process's stdout goes, when asked for.
    pub stdout: Option<Output>,
    /// Where its stderr goes, when asked for.
    pub stderr: Option<Output>,
    /// Where the final status goes.
    pub error: Output,
    /// Terminal size events (a stream of `{"Width":..,"Height":..}` objects), with `tty`.
    pub resize: Option<Input>,
    /// How the final status is written (JSON `Status` from v4 on).
    pub status: StatusFormat,
    /// The client went away.
    pub closed: Closed,
}

impl std::fmt::Debug for StdioSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StdioSession")
            .field("stdin", &self.stdin.is_some())
            .field("stdout", &self.stdout.is_some())
            .field("stderr", &self.stderr.is_some())
            .field("resize", &self.resize.is_some())
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// One forwarded connection: its port and its data and error streams.
pub struct ForwardStream {
    /// The port to connect to, or why the client's port was unusable.
    pub port: Result<u16, String>,
    /// Bytes from the client for the port.
    pub data_in: Input,
    /// Bytes from the port for the client.
    pub data_out: Output,
    /// Where a failure to connect is reported.
    pub error: Output,
}

impl std::fmt::Debug for ForwardStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForwardStream")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

/// A port-forward session: its connections as the client opens them.
pub struct ForwardSession {
    /// The connections; ends when the client can open no more.
    pub streams: mpsc::Receiver<ForwardStream>,
    /// The client went away.
    pub closed: Closed,
}

impl std::fmt::Debug for ForwardSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForwardSession").finish_non_exhaustive()
    }
}

/// A terminal size, as kubelet's clients send it on the resize stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct TerminalSize {
    /// Columns.
    #[serde(rename = "Width")]
    pub width: u16,
    /// Rows.
    #[serde(rename = "Height")]
    pub height: u16,
}

/// Splits a buffer of concatenated resize events into the complete ones and how many bytes
/// they took; a trailing partial event stays for the next read. Garbage is skipped to its end.
pub fn parse_resize_events(buffer: &[u8]) -> (Vec<TerminalSize>, usize) {
    let mut events = Vec::new();
    let mut stream = serde_json::Deserializer::from_slice(buffer).into_iter::<TerminalSize>();
    let mut used = 0;
    loop {
        match stream.next() {
            Some(Ok(size)) => {
                events.push(size);
                used = stream.byte_offset();
            }
            Some(Err(err)) if err.is_eof() => break,
            Some(Err(_)) => {
                // Not a size: drop what was read, a client must not wedge the stream.
                used = buffer.len();
                break;
            }
            None => {
                used = buffer.len();
                break;
            }
        }
    }
    (events, used)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_events_are_split_and_partial_ones_kept() {
        let text = br#"{"Width":80,"Height":24}{"Width":100,"Height":40}{"Width":1"#;
        let (events, used) = parse_resize_events(text);
        assert_eq!(
            events,
            [
                TerminalSize {
                    width: 80,
                    height: 24
                },
                TerminalSize {
                    width: 100,
                    height: 40
                }
            ]
        );
        assert_eq!(&text[used..], br#"{"Width":1"#);
        let (events, used) = parse_resize_events(b"\n{\"Width\":3,\"Height\":4}\n");
        assert_eq!(events.len(), 1);
        assert_eq!(used, 24);
        let (events, used) = parse_resize_events(b"{\"W\":1}");
        assert!(events.is_empty());
        assert_eq!(used, 7);
    }
}
