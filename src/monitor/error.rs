//! Errors of the monitor and of its client: each names the file or socket involved.

use std::io;
use std::path::PathBuf;

use crate::error_kind::ErrorKind;
use crate::executor::ExecutorError;

/// A monitor failure (starting a container, serving it) or a failure to talk to one.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// A file of the runtime directory could not be read, written or created.
    #[error("{what} {}: {source}", .path.display())]
    Io {
        /// What was being done (`read`, `write`, `create pipe for`, ...).
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The failure.
        source: io::Error,
    },
    /// A file of the runtime directory holds something that does not parse.
    #[error("cannot parse {}: {reason}", .path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Creating the container's stdio (pipes, terminal) failed.
    #[error("{what}: {source}")]
    Stdio {
        /// The step (`create stdout pipe`, `open terminal`, ...).
        what: &'static str,
        /// The failure.
        source: io::Error,
    },
    /// The executor could not start the container process.
    #[error(transparent)]
    Launch(#[from] ExecutorError),
    /// The monitor's control socket could not be reached, or the exchange failed.
    #[error("{what} monitor socket {}: {source}", .path.display())]
    Socket {
        /// What was being done (`connect to`, `send request on`, `read response from`).
        what: &'static str,
        /// The socket.
        path: PathBuf,
        /// The failure.
        source: io::Error,
    },
    /// The monitor answered something that is not a [`super::protocol::Response`].
    #[error("bad response from monitor socket {}: {reason}", .path.display())]
    BadResponse {
        /// The socket.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
}

impl MonitorError {
    /// The kind of failure, for the one place that maps errors to gRPC codes.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Launch(err) => err.kind(),
            Self::Socket { source, .. } => match source.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ErrorKind::DeadlineExceeded,
                // No socket, or nobody listening: the monitor is gone.
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                    ErrorKind::Unavailable
                }
                _ => ErrorKind::Internal,
            },
            Self::Io { source, .. } | Self::Stdio { source, .. } => match source.raw_os_error() {
                Some(libc::ENOENT) => ErrorKind::NotFound,
                Some(libc::ENOSPC | libc::EDQUOT | libc::EMFILE | libc::ENFILE) => {
                    ErrorKind::ResourceExhausted
                }
                Some(libc::EPERM | libc::EACCES) => ErrorKind::PermissionDenied,
                _ => ErrorKind::Internal,
            },
            Self::Parse { .. } | Self::BadResponse { .. } => ErrorKind::Internal,
        }
    }
}

/// Shorthand for an [`MonitorError::Io`] constructor.
pub(super) fn io_at(
    what: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(io::Error) -> MonitorError {
    let path = path.into();
    move |source| MonitorError::Io { what, path, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_their_path_and_map_to_kinds() {
        let err = io_at("read", "/run/c/config.json")(io::Error::from_raw_os_error(libc::ENOENT));
        assert!(err.to_string().starts_with("read /run/c/config.json: "));
        assert_eq!(err.kind(), ErrorKind::NotFound);
        let err = MonitorError::Socket {
            what: "connect to",
            path: "/run/c/monitor.sock".into(),
            source: io::Error::from_raw_os_error(libc::ECONNREFUSED),
        };
        assert_eq!(
            err.to_string().split(':').next(),
            Some("connect to monitor socket /run/c/monitor.sock")
        );
        assert_eq!(err.kind(), ErrorKind::Unavailable);
        let err = MonitorError::Socket {
            what: "read response from",
            path: "/run/c/monitor.sock".into(),
            source: io::Error::from(io::ErrorKind::WouldBlock),
        };
        assert_eq!(err.kind(), ErrorKind::DeadlineExceeded);
    }
}
