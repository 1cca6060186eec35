//! The control socket, [`SOCKET_FILE`](super::protocol::SOCKET_FILE): one [`Request`] line
//! per connection, one [`Response`] line back, then the connection is closed.
//!
//! The listener is non-blocking and polled with the container's output; each accepted
//! connection is served at once with short timeouts, so a client that connects and says
//! nothing delays the monitor by at most [`CLIENT_TIMEOUT`] and never blocks it.

use std::io::{self, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::error::{MonitorError, io_at};
use super::protocol::{Request, Response};

/// How long the monitor waits for a client to send its request or take the response.
pub(super) const CLIENT_TIMEOUT: Duration = Duration::from_secs(1);

/// The longest request (or response) line accepted, newline included.
pub(super) const MAX_LINE: usize = 4096;

/// The bound control socket; the socket file is removed when this is dropped.
#[derive(Debug)]
pub(super) struct ControlSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl ControlSocket {
    /// Binds `path` (removing a stale socket first) and makes the listener non-blocking.
    pub(super) fn bind(path: &Path) -> Result<Self, MonitorError> {
        Ok(ControlSocket {
            listener: bind_listener(path)?,
            path: path.to_owned(),
        })
    }

    /// The listener, to poll.
    pub(super) fn listener(&self) -> &UnixListener {
        &self.listener
    }

    /// Serves every pending connection with `handle`; returns how many were served. Failures
    /// of single connections (a client that went away or timed out) are reported to `note`.
    pub(super) fn serve_pending(
        &self,
        mut handle: impl FnMut(Request) -> Response,
        mut note: impl FnMut(&io::Error),
    ) -> usize {
        let mut served = 0;
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    served += 1;
                    if let Err(err) = serve_connection(stream, &mut handle) {
                        note(&err);
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return served,
                Err(err) => {
                    // EMFILE and the like: try again on the next wakeup.
                    note(&err);
                    return served;
                }
            }
        }
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds a non-blocking listener at `path`, removing a stale socket first (one left by a
/// monitor that died).
pub(super) fn bind_listener(path: &Path) -> Result<UnixListener, MonitorError> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(io_at("remove stale socket", path)(err)),
    }
    let listener = super::protocol::with_socket_path(path, |short| UnixListener::bind(short))
        .map_err(io_at("bind", path))?;
    listener
        .set_nonblocking(true)
        .map_err(io_at("set non-blocking", path))?;
    Ok(listener)
}

/// Reads one request from `stream`, answers it, and closes the connection.
fn serve_connection(
    mut stream: UnixStream,
    handle: &mut impl FnMut(Request) -> Response,
) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    let mut buf = [0u8; MAX_LINE];
    let len = read_line(&mut stream, &mut buf)?;
    let response = match serde_json::from_slice::<Request>(&buf[..len]) {
        Ok(request) => handle(request),
        Err(err) => Response::Error {
            message: format!("bad request: {err}"),
        },
    };
    write_line(&mut stream, &response)
}

/// Reads up to the first newline (not included in the returned length), the end of the
/// stream, or a full `buf` (an error).
pub(super) fn read_line(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut len = 0;
    loop {
        if let Some(end) = buf[..len].iter().position(|&byte| byte == b'\n') {
            return Ok(end);
        }
        if len == buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("line longer than {} bytes", buf.len()),
            ));
        }
        match reader.read(&mut buf[len..]) {
            Ok(0) => return Ok(len),
            Ok(n) => len += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
}

/// Writes `value` as one JSON line.
pub(super) fn write_line(writer: &mut impl Write, value: &impl serde::Serialize) -> io::Result<()> {
    let mut line = serde_json::to_vec(value).map_err(io::Error::other)?;
    line.push(b'\n');
    writer.write_all(&line)?;
    writer.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_line_stops_at_the_newline_or_the_end() {
        let mut buf = [0u8; 16];
        assert_eq!(read_line(&mut &b"abc\ndef"[..], &mut buf).expect("line"), 3);
        assert_eq!(read_line(&mut &b"abc"[..], &mut buf).expect("line"), 3);
        let err = read_line(&mut &[b'x'; 40][..], &mut buf).expect_err("too long");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn requests_are_answered_and_the_socket_removed_on_drop() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("monitor.sock");
        std::fs::write(&path, "stale").expect("stale file");
        let socket = ControlSocket::bind(&path).expect("bind");
        // Nothing pending: returns at once.
        assert_eq!(socket.serve_pending(|_| Response::Ok, |_| {}), 0);

        let mut good = UnixStream::connect(&path).expect("connect");
        write_line(
            &mut good,
            &Request::Resize {
                width: 80,
                height: 24,
            },
        )
        .expect("send");
        let mut bad = UnixStream::connect(&path).expect("connect");
        bad.write_all(b"{\"nonsense\":1}\n").expect("send");
        let mut seen = Vec::new();
        let served = socket.serve_pending(
            |request| {
                seen.push(request);
                Response::Ok
            },
            |err| panic!("connection failed: {err}"),
        );
        assert_eq!(served, 2);
        assert_eq!(
            seen,
            vec![Request::Resize {
                width: 80,
                height: 24
            }]
        );
        let mut answer = String::new();
        good.read_to_string(&mut answer).expect("answer");
        assert_eq!(answer, "\"ok\"\n");
        answer.clear();
        bad.read_to_string(&mut answer).expect("answer");
        assert!(
            answer.starts_with("{\"error\":{\"message\":\"bad request:"),
            "{answer}"
        );

        drop(socket);
        assert!(!path.exists());
    }
}
