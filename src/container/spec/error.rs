//! Why a container config could not become an OCI spec, with the offending value named.

use std::path::PathBuf;

use crate::error_kind::ErrorKind;

/// A container config that cannot be turned into a runtime spec.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// A field holds a value that is not usable.
    #[error("invalid container config: {field}: {reason}")]
    Invalid {
        /// The field, in CRI terms (`envs[2].key`, `security_context.run_as_user`).
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Neither the request nor the image says what to run.
    #[error(
        "no command specified: the container config and the image give neither a command nor args"
    )]
    NoCommand,
    /// `run_as_group` without a user to go with it (kubelet and containerd refuse this too).
    #[error("run_as_group {gid} is set without run_as_user or run_as_username")]
    GroupWithoutUser {
        /// The requested group.
        gid: i64,
    },
    /// A user name that the image's `/etc/passwd` does not list.
    #[error("user {name:?} not found in the image's /etc/passwd")]
    UnknownUser {
        /// The name looked up.
        name: String,
    },
    /// A group name that the image's `/etc/group` does not list.
    #[error("group {name:?} not found in the image's /etc/group")]
    UnknownGroup {
        /// The name looked up.
        name: String,
    },
    /// A capability name the kernel does not have.
    #[error("unknown capability {name:?} in {field}")]
    UnknownCapability {
        /// `capabilities.add_capabilities` or the like.
        field: &'static str,
        /// The name as given.
        name: String,
    },
    /// A path that must be absolute is not.
    #[error("{field}: {path:?} is not an absolute path")]
    RelativePath {
        /// The field holding it.
        field: String,
        /// The path as given.
        path: String,
    },
    /// A privileged container asked for in a pod that was not created privileged.
    #[error("privileged container in pod {pod_id}, which is not privileged")]
    PrivilegedNotAllowed {
        /// The pod.
        pod_id: String,
    },
    /// The localhost seccomp profile cannot be read or parsed.
    #[error("seccomp profile {path}: {reason}")]
    SeccompProfile {
        /// The profile file.
        path: PathBuf,
        /// Why it is unusable.
        reason: String,
    },
    /// The container wants to share a pod namespace the pod does not have.
    #[error("pod {pod_id} has no {namespace} namespace for its containers to join")]
    PodNamespaceMissing {
        /// The pod.
        pod_id: String,
        /// `network`, `ipc`, `uts` or `pid`.
        namespace: &'static str,
    },
    /// The pod record lacks something every container needs.
    #[error("pod {pod_id} has no {what}")]
    PodIncomplete {
        /// The pod.
        pod_id: String,
        /// What is missing (`pod directory`, `/dev/shm`).
        what: &'static str,
    },
    /// A requested device is not among the host's devices.
    #[error("device {host_path} not found on the host")]
    DeviceNotFound {
        /// The host path as requested.
        host_path: String,
    },
    /// Something the request asks for that carrack does not do.
    #[error("{feature} is not supported")]
    Unsupported {
        /// What is missing.
        feature: &'static str,
    },
    /// Reading `/etc/passwd` or `/etc/group` from the container's rootfs failed.
    #[error("read {file} in the container rootfs: {source}")]
    RootfsFile {
        /// `/etc/passwd` or `/etc/group`.
        file: &'static str,
        /// The failure.
        source: std::io::Error,
    },
}

impl SpecError {
    /// The kind of failure, for the one error→status mapping in `cri::status`.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Invalid { .. }
            | Self::NoCommand
            | Self::GroupWithoutUser { .. }
            | Self::UnknownUser { .. }
            | Self::UnknownGroup { .. }
            | Self::UnknownCapability { .. }
            | Self::RelativePath { .. }
            | Self::PrivilegedNotAllowed { .. }
            | Self::SeccompProfile { .. }
            | Self::DeviceNotFound { .. } => ErrorKind::InvalidArgument,
            Self::PodNamespaceMissing { .. } | Self::PodIncomplete { .. } => {
                ErrorKind::FailedPrecondition
            }
            Self::Unsupported { .. } => ErrorKind::Unimplemented,
            Self::RootfsFile { .. } => ErrorKind::Internal,
        }
    }

    pub(super) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}
