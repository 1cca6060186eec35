//! Errors that stop the daemon from starting or serving.

use std::path::PathBuf;

use crate::cgroups::CgroupError;
use crate::config::ConfigError;
use crate::error_kind::ErrorKind;
use crate::image_service::ImageError;
use crate::snapshot::SnapshotError;
use crate::store::StoreError;
use crate::telemetry::TelemetryError;

/// A start-up or serving failure, naming the path involved.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Another daemon holds the root directory's lock.
    #[error(
        "another carrack daemon{} already uses root dir {root_dir} (lock file {lock_path} is held)",
        holder.map(|pid| format!(" (pid {pid})")).unwrap_or_default()
    )]
    AlreadyRunning {
        /// The contested root directory.
        root_dir: PathBuf,
        /// The lock file.
        lock_path: PathBuf,
        /// The pid written in the lock file by its holder, when readable.
        holder: Option<u32>,
    },
    /// Something answers on the socket path already.
    #[error("socket {path} is served by a live process; refusing to replace it")]
    SocketInUse {
        /// The socket path.
        path: PathBuf,
    },
    /// The socket path exists and is not a socket.
    #[error("{path} exists and is not a unix socket; refusing to remove it")]
    NotASocket {
        /// The socket path.
        path: PathBuf,
    },
    /// A filesystem operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done (`create directory`, `bind socket`, …).
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// The state store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The image service could not start.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// The snapshot directories are unusable.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// The cgroup hierarchy is unusable.
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The streaming server could not start.
    #[error(transparent)]
    Streaming(#[from] crate::streaming::StreamingError),
    /// Telemetry (the metrics endpoint) could not start.
    #[error(transparent)]
    Telemetry(#[from] TelemetryError),
    /// The gRPC server failed.
    #[error("grpc server on {path}: {source}")]
    Serve {
        /// The socket path.
        path: PathBuf,
        /// The transport failure.
        source: tonic::transport::Error,
    },
}

impl DaemonError {
    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::AlreadyRunning { .. } | Self::SocketInUse { .. } | Self::NotASocket { .. } => {
                ErrorKind::FailedPrecondition
            }
            Self::Store(err) => err.kind(),
            Self::Cgroup(err) => err.kind(),
            Self::Image(err) => err.kind(),
            Self::Snapshot(err) => err.kind(),
            Self::Config(err) => err.kind(),
            Self::Streaming(err) => err.kind(),
            Self::Io { .. } | Self::Serve { .. } | Self::Telemetry(_) => ErrorKind::Internal,
        }
    }
}
