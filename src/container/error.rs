//! Errors of container operations, naming the container and the step that failed.

use std::path::PathBuf;

use super::spec::SpecError;
use crate::cgroups::CgroupError;
use crate::error_kind::ErrorKind;
use crate::image_service::ImageError;
use crate::monitor::MonitorError;
use crate::snapshot::SnapshotError;
use crate::store::StoreError;

/// A container operation failure.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// The request is unusable.
    #[error("invalid container config: {reason}")]
    InvalidConfig {
        /// What is wrong.
        reason: String,
    },
    /// No container with that id.
    #[error("container {id} not found")]
    NotFound {
        /// The id (or prefix) looked up.
        id: String,
    },
    /// The pod named by the request does not exist.
    #[error("pod sandbox {pod_id} not found")]
    PodNotFound {
        /// The pod id.
        pod_id: String,
    },
    /// The pod exists but cannot take containers.
    #[error("pod sandbox {pod_id} is not ready: {reason}")]
    PodNotReady {
        /// The pod id.
        pod_id: String,
        /// Why.
        reason: &'static str,
    },
    /// The image is not on the node.
    #[error("image {image:?} not found: pull it first")]
    ImageNotFound {
        /// The image as named.
        image: String,
    },
    /// The container is not in a state the operation needs.
    #[error("container {id} is {state}: {reason}")]
    WrongState {
        /// The container.
        id: String,
        /// Its state.
        state: &'static str,
        /// What the operation needed.
        reason: &'static str,
    },
    /// A feature the request asks for is not supported.
    #[error("container {id}: {feature} is not supported")]
    Unsupported {
        /// The container (or its name when not created yet).
        id: String,
        /// What is missing.
        feature: String,
    },
    /// Building the OCI spec failed.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The container process could not be started.
    #[error("container {id}: start failed: {message}")]
    StartFailed {
        /// The container.
        id: String,
        /// What failed, from the monitor.
        message: String,
    },
    /// Running the monitor or talking to it failed.
    #[error("container {id}: monitor: {source}")]
    Monitor {
        /// The container.
        id: String,
        /// The failure.
        source: MonitorError,
    },
    /// An exec'd command outlived its timeout.
    #[error("container {id}: command timed out after {seconds} s")]
    ExecTimeout {
        /// The container.
        id: String,
        /// The timeout.
        seconds: u64,
    },
    /// A file or process operation failed.
    #[error("container {id}: {action} {path}: {source}")]
    Io {
        /// The container.
        id: String,
        /// What was being done.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// A cgroup operation failed.
    #[error("container {id}: cgroup: {source}")]
    Cgroup {
        /// The container.
        id: String,
        /// The failure.
        source: CgroupError,
    },
    /// The writable layer or its mount failed.
    #[error("container {id}: rootfs: {source}")]
    Snapshot {
        /// The container.
        id: String,
        /// The failure.
        source: SnapshotError,
    },
    /// Reading the image failed.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ContainerError {
    /// The kind of failure, for the one place that maps errors to gRPC codes.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::InvalidConfig { .. } => ErrorKind::InvalidArgument,
            Self::NotFound { .. } | Self::PodNotFound { .. } | Self::ImageNotFound { .. } => {
                ErrorKind::NotFound
            }
            Self::PodNotReady { .. } | Self::WrongState { .. } => ErrorKind::FailedPrecondition,
            Self::Unsupported { .. } => ErrorKind::Unimplemented,
            Self::Spec(err) => err.kind(),
            Self::StartFailed { .. } => ErrorKind::Internal,
            Self::Monitor { source, .. } => source.kind(),
            Self::ExecTimeout { .. } => ErrorKind::DeadlineExceeded,
            Self::Io { source, .. } if source.raw_os_error() == Some(libc::ENOSPC) => {
                ErrorKind::ResourceExhausted
            }
            Self::Io { .. } => ErrorKind::Internal,
            Self::Cgroup { source, .. } => source.kind(),
            Self::Snapshot { source, .. } => source.kind(),
            Self::Image(err) => err.kind(),
            Self::Store(err) => err.kind(),
        }
    }

    pub(super) fn io(
        id: &str,
        action: &'static str,
        path: &std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> ContainerError + use<> {
        let (id, path) = (id.to_owned(), path.to_path_buf());
        move |source| ContainerError::Io {
            id,
            action,
            path,
            source,
        }
    }
}
