//! Errors of talking to a monitor (placeholder until the monitor lands).

use std::path::PathBuf;

use crate::error_kind::ErrorKind;

/// A monitor failure.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// A file or socket operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// A file or message could not be parsed.
    #[error("malformed {what} at {path}: {reason}")]
    Malformed {
        /// What.
        what: &'static str,
        /// Where.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl MonitorError {
    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::Internal
    }
}
