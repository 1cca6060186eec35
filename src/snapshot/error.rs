//! Errors of the snapshotter.

use std::io;
use std::path::PathBuf;

use crate::error_kind::ErrorKind;

/// A snapshotter failure, naming the path, chain id or container id involved.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// A filesystem operation on the snapshot tree failed.
    #[error("snapshot i/o on {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The I/O failure.
        source: io::Error,
    },
    /// A layer's metadata file could not be written or read back.
    #[error("layer metadata {path}: {source}")]
    Metadata {
        /// The metadata file.
        path: PathBuf,
        /// The encoder's or decoder's failure.
        source: serde_json::Error,
    },
    /// The chain id cannot be used as a key.
    #[error("invalid chain id {chain_id:?}: {reason}")]
    InvalidChainId {
        /// The refused chain id (truncated to 300 characters).
        chain_id: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The container id cannot be used as a directory name.
    #[error(
        "invalid container id {container_id:?}: ids are 1-128 characters of [A-Za-z0-9_.-], not starting with '.'"
    )]
    InvalidContainerId {
        /// The refused id (truncated to 300 characters).
        container_id: String,
    },
    /// No committed layer has this chain id.
    #[error("layer {chain_id} not found")]
    LayerNotFound {
        /// The chain id looked up.
        chain_id: String,
    },
    /// The layer is still needed and cannot be removed.
    #[error("layer {chain_id} is in use by {user}")]
    LayerInUse {
        /// The layer.
        chain_id: String,
        /// Who uses it: `container <id>` or `layer <chain id>` (a child layer).
        user: String,
    },
    /// The container already has an active snapshot.
    #[error("container {container_id} already has an active snapshot")]
    ActiveExists {
        /// The container id.
        container_id: String,
    },
    /// Mounting or unmounting an overlay failed.
    #[error("overlay mount on {target}: {step} failed: {source}{}", kernel_log(.log))]
    Mount {
        /// The mount point.
        target: PathBuf,
        /// The step that failed (`fsopen`, `fsconfig lowerdir+`, `fsmount`, `move_mount`...).
        step: &'static str,
        /// Messages the kernel left in the filesystem context, if any.
        log: String,
        /// The syscall's failure.
        source: io::Error,
    },
}

fn kernel_log(log: &str) -> String {
    if log.is_empty() {
        String::new()
    } else {
        format!(" (kernel: {log})")
    }
}

impl SnapshotError {
    /// The kind of failure, for the one place that maps errors to gRPC codes.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Io { source, .. } | Self::Mount { source, .. }
                if matches!(source.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT)) =>
            {
                ErrorKind::ResourceExhausted
            }
            Self::Mount { source, .. } if source.raw_os_error() == Some(libc::EPERM) => {
                ErrorKind::PermissionDenied
            }
            Self::Io { .. } | Self::Metadata { .. } | Self::Mount { .. } => ErrorKind::Internal,
            Self::InvalidChainId { .. } | Self::InvalidContainerId { .. } => {
                ErrorKind::InvalidArgument
            }
            Self::LayerNotFound { .. } => ErrorKind::NotFound,
            Self::LayerInUse { .. } => ErrorKind::FailedPrecondition,
            Self::ActiveExists { .. } => ErrorKind::AlreadyExists,
        }
    }
}

/// Shorthand for an [`SnapshotError::Io`] constructor over `path`.
pub(super) fn io_at(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> SnapshotError {
    let path = path.into();
    move |source| SnapshotError::Io { path, source }
}
