//! Errors of the cgroup subsystem.
//!
//! Every variant names the file or directory involved, and, where a value was being written,
//! the controller and the value, so that a failed `apply` says exactly which knob the kernel
//! refused.

use std::path::PathBuf;

use crate::error_kind::ErrorKind;

/// A cgroup failure, with the path, controller and value involved.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// The mount table could not be read.
    #[error("cannot read mount table {path}: {source}")]
    Mountinfo {
        /// The mountinfo file.
        path: PathBuf,
        /// The I/O failure.
        source: std::io::Error,
    },
    /// No cgroup filesystem is mounted under the configured root.
    #[error("no cgroup filesystem is mounted under {root} (according to {mountinfo})")]
    NoHierarchy {
        /// The configured cgroup root.
        root: PathBuf,
        /// The mountinfo file that was searched.
        mountinfo: PathBuf,
    },
    /// A cgroup path or name is malformed or unsafe.
    #[error("invalid cgroup path {path:?}: {reason}")]
    InvalidPath {
        /// The refused path or name, as given.
        path: String,
        /// Why it was refused.
        reason: String,
    },
    /// A resource value is out of range or malformed.
    #[error("invalid value {value:?} for {controller} setting {file}: {reason}")]
    InvalidValue {
        /// The controller the value is for (`memory`, `cpu`, ...).
        controller: String,
        /// The interface file (`memory.max`, or the CRI field when no file applies).
        file: String,
        /// The refused value.
        value: String,
        /// Why it was refused.
        reason: String,
    },
    /// The request needs something this layout or driver cannot do.
    #[error("unsupported cgroup operation on {path}: {reason}")]
    Unsupported {
        /// The cgroup path involved.
        path: String,
        /// What is missing.
        reason: String,
    },
    /// Reading an interface file or listing a directory failed.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// The I/O failure.
        source: std::io::Error,
    },
    /// An interface file held something we could not parse.
    #[error("cannot parse {path}: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What was wrong with its content.
        reason: String,
    },
    /// The kernel refused a value written to an interface file.
    #[error("cannot write {value:?} to {path} ({controller}): {source}")]
    Write {
        /// The interface file.
        path: PathBuf,
        /// The controller owning the file.
        controller: String,
        /// The value written.
        value: String,
        /// The kernel's answer.
        source: std::io::Error,
    },
    /// Creating a cgroup directory failed.
    #[error("cannot create cgroup directory {path}: {source}")]
    Mkdir {
        /// The directory.
        path: PathBuf,
        /// The I/O failure.
        source: std::io::Error,
    },
    /// Removing a cgroup directory failed (after retries, for a busy one).
    #[error("cannot remove cgroup directory {path}: {source}")]
    Rmdir {
        /// The directory.
        path: PathBuf,
        /// The I/O failure.
        source: std::io::Error,
    },
    /// Processes were still listed after every kill round.
    #[error("{} process(es) still in cgroup {path} after SIGKILL: {pids:?}", pids.len())]
    ProcessesRemain {
        /// The cgroup path.
        path: String,
        /// The survivors.
        pids: Vec<i32>,
    },
    /// systemd's manager could not be reached on the configured bus.
    #[error(
        "cannot reach systemd's manager over D-Bus at {address}: {reason} (the systemd cgroup \
         driver needs it; check cgroups.systemd_bus_address or use cgroups.driver = \"cgroupfs\")"
    )]
    SystemdBus {
        /// The bus address.
        address: String,
        /// What failed.
        reason: String,
    },
    /// systemd's manager answered a call with an error.
    #[error("systemd refused {method} for unit {unit}: {reason}")]
    Systemd {
        /// The unit.
        unit: String,
        /// The manager method called.
        method: &'static str,
        /// The D-Bus error name (`org.freedesktop.systemd1.NoSuchUnit`), empty when none.
        error: String,
        /// systemd's message.
        reason: String,
    },
    /// The job systemd ran for a unit did not end in `done`.
    #[error("systemd job for {method} of unit {unit} ended with {result:?}")]
    SystemdJob {
        /// The unit.
        unit: String,
        /// The manager method that queued the job.
        method: &'static str,
        /// The job's result (`failed`, `timeout`, `dependency`, ...).
        result: String,
    },
    /// The cgroup does not exist in any hierarchy.
    #[error("cgroup {path} does not exist")]
    NotFound {
        /// The cgroup path.
        path: String,
    },
}

impl CgroupError {
    /// The kind of failure, for the one place that maps errors to gRPC codes.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::InvalidPath { .. } | Self::InvalidValue { .. } => ErrorKind::InvalidArgument,
            Self::Unsupported { .. } => ErrorKind::Unimplemented,
            Self::NotFound { .. } => ErrorKind::NotFound,
            // The kernel answers EINVAL/ERANGE for values it will not take (a cpuset naming
            // CPUs the node does not have, a limit below current usage is EBUSY instead).
            Self::Write { source, .. } => match source.raw_os_error() {
                Some(libc::EINVAL | libc::ERANGE) => ErrorKind::InvalidArgument,
                _ => io_kind(source),
            },
            Self::Mountinfo { source, .. }
            | Self::Read { source, .. }
            | Self::Mkdir { source, .. }
            | Self::Rmdir { source, .. } => io_kind(source),
            Self::NoHierarchy { .. } => ErrorKind::FailedPrecondition,
            Self::SystemdBus { .. } => ErrorKind::Unavailable,
            // Nobody owns systemd's name on that bus: as unreachable as no bus at all.
            Self::Systemd { error, .. }
                if error == "org.freedesktop.DBus.Error.ServiceUnknown"
                    || error == "org.freedesktop.DBus.Error.NameHasNoOwner" =>
            {
                ErrorKind::Unavailable
            }
            Self::Systemd { .. } | Self::SystemdJob { .. } => ErrorKind::FailedPrecondition,
            Self::Parse { .. } | Self::ProcessesRemain { .. } => ErrorKind::Internal,
        }
    }
}

/// The kind of a raw I/O failure on the cgroup filesystem.
fn io_kind(err: &std::io::Error) -> ErrorKind {
    match err.raw_os_error() {
        Some(libc::EACCES | libc::EPERM | libc::EROFS) => ErrorKind::PermissionDenied,
        Some(libc::ENOSPC | libc::ENOMEM | libc::EAGAIN) => ErrorKind::ResourceExhausted,
        Some(libc::EBUSY) => ErrorKind::FailedPrecondition,
        _ => ErrorKind::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_error(errno: i32) -> CgroupError {
        CgroupError::Write {
            path: PathBuf::from("/sys/fs/cgroup/cpuset/x/cpuset.cpus"),
            controller: "cpuset".to_owned(),
            value: "7".to_owned(),
            source: std::io::Error::from_raw_os_error(errno),
        }
    }

    #[test]
    fn kernel_refusals_map_to_kinds() {
        assert_eq!(write_error(libc::EINVAL).kind(), ErrorKind::InvalidArgument);
        assert_eq!(
            write_error(libc::EBUSY).kind(),
            ErrorKind::FailedPrecondition
        );
        assert_eq!(
            write_error(libc::ENOSPC).kind(),
            ErrorKind::ResourceExhausted
        );
        assert_eq!(
            write_error(libc::EACCES).kind(),
            ErrorKind::PermissionDenied
        );
        assert_eq!(write_error(libc::EIO).kind(), ErrorKind::Internal);
    }

    #[test]
    fn messages_name_path_controller_and_value() {
        let text = write_error(libc::EINVAL).to_string();
        assert!(text.contains("cpuset.cpus"), "{text}");
        assert!(text.contains("(cpuset)"), "{text}");
        assert!(text.contains("\"7\""), "{text}");
    }
}
