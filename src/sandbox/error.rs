//! Errors of pod sandbox operations, naming the pod and the step.

use std::path::PathBuf;

use super::namespaces::NamespaceError;
use crate::cgroups::CgroupError;
use crate::cni::CniError;
use crate::error_kind::ErrorKind;
use crate::store::StoreError;

/// A pod operation failure.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The request is unusable (bad sysctl, bad hostname, …).
    #[error("invalid pod sandbox config: {reason}")]
    InvalidConfig {
        /// What is wrong.
        reason: String,
    },
    /// The runtime handler is not one this node has.
    #[error(
        "runtime handler {handler:?} is not configured (carrack has only the default handler \"\")"
    )]
    UnknownHandler {
        /// The requested handler.
        handler: String,
    },
    /// No pod with that id.
    #[error("pod sandbox {id} not found")]
    NotFound {
        /// The id (or prefix) looked up.
        id: String,
    },
    /// A feature the pod asks for is not built yet.
    #[error("pod sandbox {id}: {feature} is not supported yet")]
    Unsupported {
        /// The pod.
        id: String,
        /// What is missing.
        feature: &'static str,
    },
    /// A file or directory operation failed.
    #[error("pod sandbox {id}: {action} {path}: {source}")]
    Io {
        /// The pod.
        id: String,
        /// What was being done.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// Creating or pinning namespaces failed.
    #[error("pod sandbox {id}: namespaces: {source}")]
    Namespaces {
        /// The pod.
        id: String,
        /// The failure.
        source: NamespaceError,
    },
    /// A cgroup operation failed.
    #[error("pod sandbox {id}: cgroup: {source}")]
    Cgroup {
        /// The pod.
        id: String,
        /// The failure.
        source: CgroupError,
    },
    /// Pod networking failed.
    #[error("pod sandbox {id}: network: {source}")]
    Network {
        /// The pod.
        id: String,
        /// The failure.
        source: CniError,
    },
    /// The pod is not ready for what was asked (port-forward to a stopped pod).
    #[error("pod sandbox {id} is not ready: {reason}")]
    NotReady {
        /// The pod.
        id: String,
        /// What the operation needed.
        reason: &'static str,
    },
    /// A port inside the pod's network could not be connected to.
    #[error("pod sandbox {id}: connect to localhost:{port} in the pod network: {source}")]
    Connect {
        /// The pod.
        id: String,
        /// The port.
        port: u16,
        /// The failure (the IPv4 attempt's when both failed).
        source: std::io::Error,
    },
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SandboxError {
    /// The kind of failure, for the one place that maps errors to gRPC codes.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::InvalidConfig { .. } => ErrorKind::InvalidArgument,
            Self::UnknownHandler { .. } | Self::NotFound { .. } => ErrorKind::NotFound,
            Self::Unsupported { .. } => ErrorKind::Unimplemented,
            Self::Io { source, .. } if source.raw_os_error() == Some(libc::ENOSPC) => {
                ErrorKind::ResourceExhausted
            }
            Self::Io { .. } | Self::Namespaces { .. } => ErrorKind::Internal,
            Self::NotReady { .. } => ErrorKind::FailedPrecondition,
            Self::Connect { .. } => ErrorKind::Unavailable,
            Self::Cgroup { source, .. } => source.kind(),
            Self::Network { source, .. } => source.kind(),
            Self::Store(err) => err.kind(),
        }
    }
}
