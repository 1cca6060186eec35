//! The daemon's side of a monitor: control requests over its socket and the files it leaves
//! in the runtime directory. Blocking calls (short, bounded by their timeout): call them from
//! `spawn_blocking`, never on an async worker.

use std::io;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::control::{MAX_LINE, read_line, write_line};
use super::error::{MonitorError, io_at};
use super::protocol::{
    EXIT_FILE, ExitRecord, PID_FILE, Request, Response, SOCKET_FILE, START_FILE, StartReport,
};

/// Sends `request` to the monitor of the runtime directory `dir` and returns its answer;
/// sending and receiving each take at most `timeout`.
pub fn request(dir: &Path, request: &Request, timeout: Duration) -> Result<Response, MonitorError> {
    let path = dir.join(SOCKET_FILE);
    let socket_err = |what: &'static str| {
        let path = path.clone();
        move |source| MonitorError::Socket { what, path, source }
    };
    let mut stream = super::protocol::with_socket_path(&path, |short| UnixStream::connect(short))
        .map_err(socket_err("connect to"))?;
    // A zero timeout means "none" to the socket options; keep it a bound.
    let timeout = timeout.max(Duration::from_millis(1));
    stream
        .set_write_timeout(Some(timeout))
        .and_then(|()| stream.set_read_timeout(Some(timeout)))
        .map_err(socket_err("set timeouts on"))?;
    write_line(&mut stream, request).map_err(socket_err("send request on"))?;
    let mut buf = [0u8; MAX_LINE];
    let len = read_line(&mut stream, &mut buf).map_err(socket_err("read response from"))?;
    if len == 0 {
        return Err(MonitorError::BadResponse {
            path,
            reason: "the monitor closed the connection without answering".to_owned(),
        });
    }
    serde_json::from_slice(&buf[..len]).map_err(|err| MonitorError::BadResponse {
        path,
        reason: err.to_string(),
    })
}

/// The exit record of the runtime directory `dir`; `None` while the container runs (or if its
/// monitor died before recording anything).
pub fn read_exit(dir: &Path) -> Result<Option<ExitRecord>, MonitorError> {
    read_json(dir, EXIT_FILE)
}

/// The start report the monitor of runtime directory `dir` recorded; `None` before a successful
/// start.
pub fn read_start(dir: &Path) -> Result<Option<StartReport>, MonitorError> {
    read_json(dir, START_FILE)
}

/// The JSON file `dir/name`, `None` when it does not exist.
fn read_json<T: serde::de::DeserializeOwned>(
    dir: &Path,
    name: &str,
) -> Result<Option<T>, MonitorError> {
    let path = dir.join(name);
    let Some(bytes) = read_if_exists(&path)? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|err| MonitorError::Parse {
            path,
            reason: err.to_string(),
        })
}

/// The monitor's pid from the runtime directory `dir`; `None` when no monitor has written it.
pub fn read_pid(dir: &Path) -> Result<Option<i32>, MonitorError> {
    let path = dir.join(PID_FILE);
    let Some(bytes) = read_if_exists(&path)? else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&bytes);
    match text.trim().parse::<i32>() {
        Ok(pid) if pid > 0 => Ok(Some(pid)),
        _ => Err(MonitorError::Parse {
            path,
            reason: format!("not a pid: {:?}", text.trim()),
        }),
    }
}

fn read_if_exists(path: &Path) -> Result<Option<Vec<u8>>, MonitorError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(io_at("read", path)(err)),
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixListener;

    use super::*;
    use crate::error_kind::ErrorKind;

    #[test]
    fn a_request_gets_the_monitors_answer() {
        let dir = tempfile::tempdir().expect("temp dir");
        let listener = UnixListener::bind(dir.path().join(SOCKET_FILE)).expect("bind");
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().expect("accept");
            let mut buf = [0u8; MAX_LINE];
            let len = read_line(&mut stream, &mut buf).expect("read");
            let request: Request = serde_json::from_slice(&buf[..len]).expect("request");
            write_line(
                &mut stream,
                &Response::Error {
                    message: format!("got {request:?}"),
                },
            )
            .expect("answer");
        });
        let response = request(
            dir.path(),
            &Request::Signal { signal: 15 },
            Duration::from_secs(5),
        )
        .expect("request");
        assert_eq!(
            response,
            Response::Error {
                message: "got Signal { signal: 15 }".to_owned()
            }
        );
        server.join().expect("server");
    }

    #[test]
    fn a_silent_monitor_times_out_and_a_missing_one_is_unavailable() {
        let dir = tempfile::tempdir().expect("temp dir");
        let err = request(dir.path(), &Request::ReopenLog, Duration::from_secs(1))
            .expect_err("no socket");
        assert_eq!(err.kind(), ErrorKind::Unavailable);

        let listener = UnixListener::bind(dir.path().join(SOCKET_FILE)).expect("bind");
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().expect("accept");
            // Read the request, say nothing until the client gives up.
            let mut buf = [0u8; 64];
            let _ = stream.read(&mut buf);
            let mut rest = Vec::new();
            let _ = stream.read_to_end(&mut rest);
        });
        let err = request(dir.path(), &Request::ReopenLog, Duration::from_millis(100))
            .expect_err("timeout");
        assert_eq!(err.kind(), ErrorKind::DeadlineExceeded, "{err}");
        server.join().expect("server");
    }

    #[test]
    fn a_closed_connection_is_a_bad_response() {
        let dir = tempfile::tempdir().expect("temp dir");
        let listener = UnixListener::bind(dir.path().join(SOCKET_FILE)).expect("bind");
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().expect("accept");
            let mut buf = [0u8; 64];
            let _ = stream.read(&mut buf);
            stream.write_all(b"").expect("nothing");
        });
        let err =
            request(dir.path(), &Request::ReopenLog, Duration::from_secs(5)).expect_err("closed");
        assert!(matches!(err, MonitorError::BadResponse { .. }), "{err}");
        server.join().expect("server");
    }

    #[test]
    fn exit_and_pid_files_are_optional_but_must_parse() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert_eq!(read_exit(dir.path()).expect("no exit"), None);
        assert_eq!(read_pid(dir.path()).expect("no pid"), None);
        std::fs::write(dir.path().join(PID_FILE), "1234").expect("pid");
        assert_eq!(read_pid(dir.path()).expect("pid"), Some(1234));
        std::fs::write(dir.path().join(PID_FILE), "-3").expect("pid");
        assert!(matches!(
            read_pid(dir.path()),
            Err(MonitorError::Parse { .. })
        ));
        let record = ExitRecord {
            exit_code: 0,
            signal: None,
            finished_at_ns: 1,
            oom_killed: true,
            start_error: None,
        };
        std::fs::write(
            dir.path().join(EXIT_FILE),
            serde_json::to_vec(&record).expect("json"),
        )
        .expect("exit");
        assert_eq!(read_exit(dir.path()).expect("exit"), Some(record));
        std::fs::write(dir.path().join(EXIT_FILE), "{").expect("exit");
        let err = read_exit(dir.path()).expect_err("garbage");
        assert!(err.to_string().contains("exit.json"), "{err}");
    }
}
