//! The daemon's side of the control socket (placeholder until the monitor lands).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::error::MonitorError;
use super::protocol::{EXIT_FILE, ExitRecord, PID_FILE, Request, Response, SOCKET_FILE};

/// Sends `request` to the monitor of the container whose runtime dir is `dir`.
pub fn request(dir: &Path, request: &Request, timeout: Duration) -> Result<Response, MonitorError> {
    let path = dir.join(SOCKET_FILE);
    let io = |action| {
        let path = path.clone();
        move |source| MonitorError::Io {
            action,
            path,
            source,
        }
    };
    let mut stream = UnixStream::connect(&path).map_err(io("connect"))?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(io("set timeout"))?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(io("set timeout"))?;
    let mut line = serde_json::to_vec(request).map_err(|e| MonitorError::Malformed {
        what: "request",
        path: path.clone(),
        reason: e.to_string(),
    })?;
    line.push(b'\n');
    stream.write_all(&line).map_err(io("write"))?;
    let mut answer = String::new();
    BufReader::new(stream)
        .read_line(&mut answer)
        .map_err(io("read"))?;
    serde_json::from_str(&answer).map_err(|e| MonitorError::Malformed {
        what: "response",
        path,
        reason: e.to_string(),
    })
}

/// The container's exit record, once the monitor wrote it.
pub fn read_exit(dir: &Path) -> Result<Option<ExitRecord>, MonitorError> {
    let path = dir.join(EXIT_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| MonitorError::Malformed {
                    what: "exit record",
                    path,
                    reason: e.to_string(),
                })
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(MonitorError::Io {
            action: "read",
            path,
            source,
        }),
    }
}

/// The monitor's pid, once it wrote it.
pub fn read_pid(dir: &Path) -> Result<Option<i32>, MonitorError> {
    let path = dir.join(PID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => text
            .trim()
            .parse()
            .map(Some)
            .map_err(|e: std::num::ParseIntError| MonitorError::Malformed {
                what: "pid file",
                path,
                reason: e.to_string(),
            }),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(MonitorError::Io {
            action: "read",
            path,
            source,
        }),
    }
}
