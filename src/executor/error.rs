//! Errors of the executor, and the setup steps a container process reports when it fails.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::error_kind::ErrorKind;

/// A failure to start a container process, saying what failed and on which path.
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    /// The OCI spec asks for something impossible or malformed.
    #[error("invalid spec: {field}: {reason}")]
    InvalidSpec {
        /// The spec field at fault (`process.args`, `mounts[3].options`, ...).
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The OCI spec asks for a feature this executor does not implement (yet).
    #[error("unsupported: {feature}")]
    Unsupported {
        /// The feature, in words.
        feature: String,
    },
    /// Preparing the launch in the calling process failed (opening a namespace file, creating
    /// the sync socket, inspecting a mount source).
    #[error("{what} {}: {source}", .path.display())]
    Prepare {
        /// What was being done.
        what: &'static str,
        /// The file involved (empty when none).
        path: PathBuf,
        /// The failure.
        source: io::Error,
    },
    /// Creating the container process failed.
    #[error("clone container process: {source}")]
    Clone {
        /// The failure.
        source: io::Error,
    },
    /// Moving the new process into one of its cgroups failed; the process was killed.
    #[error("add process to cgroup {}: {source}", .path.display())]
    Cgroup {
        /// The `cgroup.procs` (or `tasks`) file written.
        path: PathBuf,
        /// The failure.
        source: io::Error,
    },
    /// A setup step inside the new process failed before `execve`; the process has exited and
    /// was reaped.
    #[error("{step}: {}", ErrnoText(.source))]
    Setup {
        /// The step, with its subject (`mount /proc (proc)`, `exec /bin/sh`, `setuid 1000`).
        step: String,
        /// The errno the step failed with.
        source: io::Error,
    },
    /// The program could not be executed (`execve` failed: not found, not executable...); the
    /// process has exited and was reaped.
    #[error("exec {program}: {}", ErrnoText(.source))]
    Exec {
        /// The program, as it was looked up: `/bin/sh`, `/bin/sh (found in PATH)`, or
        /// `sh (searched PATH /bin)` when no candidate existed.
        program: String,
        /// The errno of `execve`.
        source: io::Error,
    },
    /// The running container process to execute a program in is unusable: gone, or not
    /// isolated the way a container is (`exec_in`).
    #[error("exec in process {pid}: {reason}")]
    Target {
        /// Its pid (host PID namespace).
        pid: i32,
        /// What is wrong with it.
        reason: String,
    },
    /// Whoever was to place the new process in its cgroup (the daemon, for a systemd scope)
    /// refused or failed; the process was killed before it ran anything.
    #[error("place process {pid} in its cgroup: {reason}")]
    Placement {
        /// The new process.
        pid: i32,
        /// What failed.
        reason: String,
    },
    /// The container process broke the sync protocol (died before reporting, or sent garbage).
    #[error("container process setup: {reason}")]
    Protocol {
        /// What happened.
        reason: String,
    },
}

impl ExecutorError {
    /// The kind of failure, for the one place that maps errors to gRPC codes.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::InvalidSpec { .. } => ErrorKind::InvalidArgument,
            Self::Unsupported { .. } => ErrorKind::Unimplemented,
            Self::Prepare { source, .. }
            | Self::Clone { source }
            | Self::Cgroup { source, .. }
            | Self::Setup { source, .. }
            | Self::Exec { source, .. } => match source.raw_os_error() {
                Some(libc::EPERM | libc::EACCES) => ErrorKind::PermissionDenied,
                Some(libc::ENOSPC | libc::ENOMEM | libc::EAGAIN | libc::EMFILE) => {
                    ErrorKind::ResourceExhausted
                }
                Some(libc::ENOENT) => ErrorKind::NotFound,
                _ => ErrorKind::Internal,
            },
            Self::Target { .. } => ErrorKind::FailedPrecondition,
            Self::Protocol { .. } => ErrorKind::Internal,
            Self::Placement { .. } => ErrorKind::FailedPrecondition,
        }
    }

    /// Whether the program to execute does not exist (`execve` failed with `ENOENT`; also
    /// the case for a script whose interpreter is missing): what a shell reports as exit
    /// code 127 rather than 126.
    pub fn program_not_found(&self) -> bool {
        matches!(self, Self::Exec { source, .. } if source.raw_os_error() == Some(libc::ENOENT))
    }

    pub(super) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidSpec {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub(super) fn unsupported(feature: impl Into<String>) -> Self {
        Self::Unsupported {
            feature: feature.into(),
        }
    }
}

/// Shorthand for an [`ExecutorError::Prepare`] constructor.
pub(super) fn prepare(
    what: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(io::Error) -> ExecutorError {
    let path = path.into();
    move |source| ExecutorError::Prepare { what, path, source }
}

/// Formats an errno as `ENOENT (No such file or directory)`: the symbolic name people search
/// for, then the C library's text.
struct ErrnoText<'a>(&'a io::Error);

impl fmt::Display for ErrnoText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.raw_os_error().and_then(errno_name) {
            Some(name) => {
                let text = self.0.to_string();
                let text = text.split(" (os error").next().unwrap_or(&text);
                write!(f, "{name} ({text})")
            }
            None => write!(f, "{}", self.0),
        }
    }
}

/// The symbolic name of the errnos setup steps commonly fail with.
pub fn errno_name(errno: i32) -> Option<&'static str> {
    Some(match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::ENXIO => "ENXIO",
        libc::E2BIG => "E2BIG",
        libc::ENOEXEC => "ENOEXEC",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::EXDEV => "EXDEV",
        libc::ENODEV => "ENODEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::ENOTTY => "ENOTTY",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::EMFILE => "EMFILE",
        libc::ETXTBSY => "ETXTBSY",
        libc::ENOSPC => "ENOSPC",
        libc::EROFS => "EROFS",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ENOSYS => "ENOSYS",
        libc::ELOOP => "ELOOP",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        _ => return None,
    })
}

/// A setup step of the container process. The child reports the step that failed with an
/// index into the matching list of the launch plan; the parent turns both into words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(super) enum Step {
    /// Waiting for the parent's go-ahead (or, index 1, finding the parent gone).
    WaitForParent = 1,
    /// Resetting signal dispositions and the signal mask.
    Signals,
    /// Joining namespace `index` of the plan.
    JoinNamespace,
    /// Entering a new cgroup namespace.
    UnshareCgroup,
    /// Writing `oom_score_adj`.
    OomScoreAdj,
    /// Setting the propagation of `/`.
    RootPropagation,
    /// Bind-mounting the rootfs onto itself.
    BindRootfs,
    /// Opening the rootfs.
    OpenRootfs,
    /// Creating or opening the mount point of mount `index`.
    MountPoint,
    /// Mounting mount `index`.
    Mount,
    /// Setting the attributes of mount `index`.
    MountAttributes,
    /// Creating device `index`.
    Device,
    /// Creating `/dev` symlink `index`.
    DevSymlink,
    /// `pivot_root`.
    PivotRoot,
    /// Detaching the old root.
    DetachOldRoot,
    /// Writing sysctl `index`.
    Sysctl,
    /// Masking path `index`.
    MaskPath,
    /// Making path `index` read-only.
    ReadonlyPath,
    /// Making the rootfs read-only.
    ReadonlyRootfs,
    /// `sethostname`.
    Hostname,
    /// `setdomainname`.
    Domainname,
    /// Setting rlimit `index`.
    Rlimit,
    /// Duplicating stdio descriptor `index` onto 0, 1 or 2.
    Stdio,
    /// Installing seccomp filter `index`.
    Seccomp,
    /// Dropping capability `index` (its number) from the bounding set.
    BoundingSet,
    /// `PR_SET_KEEPCAPS`.
    KeepCaps,
    /// `setgroups`.
    Groups,
    /// `setgid`.
    Gid,
    /// `setuid`.
    Uid,
    /// `capset`.
    Capabilities,
    /// Raising capability `index` (its number) in the ambient set.
    Ambient,
    /// `chdir` to the working directory.
    Cwd,
    /// `PR_SET_NO_NEW_PRIVS`.
    NoNewPrivs,
    /// Marking inherited descriptors close-on-exec.
    CloseFds,
    /// `execve` of candidate `index`.
    Exec,
    /// `PR_SET_PDEATHSIG` (processes that die with their parent).
    ParentDeathSignal,
    /// `setsid` (index 0) or `TIOCSCTTY` on stdin (index 1), for a terminal.
    Terminal,
    /// Joining the container's user namespace.
    JoinUserNamespace,
    /// Moving itself into cgroup `index` of the self-joined ones (a v1 `tasks` file).
    JoinCgroup,
}

impl Step {
    const ALL: [Step; 39] = [
        Step::WaitForParent,
        Step::Signals,
        Step::JoinNamespace,
        Step::UnshareCgroup,
        Step::OomScoreAdj,
        Step::RootPropagation,
        Step::BindRootfs,
        Step::OpenRootfs,
        Step::MountPoint,
        Step::Mount,
        Step::MountAttributes,
        Step::Device,
        Step::DevSymlink,
        Step::PivotRoot,
        Step::DetachOldRoot,
        Step::Sysctl,
        Step::MaskPath,
        Step::ReadonlyPath,
        Step::ReadonlyRootfs,
        Step::Hostname,
        Step::Domainname,
        Step::Rlimit,
        Step::Stdio,
        Step::Seccomp,
        Step::BoundingSet,
        Step::KeepCaps,
        Step::Groups,
        Step::Gid,
        Step::Uid,
        Step::Capabilities,
        Step::Ambient,
        Step::Cwd,
        Step::NoNewPrivs,
        Step::CloseFds,
        Step::Exec,
        Step::ParentDeathSignal,
        Step::Terminal,
        Step::JoinUserNamespace,
        Step::JoinCgroup,
    ];

    /// The step with wire code `code`.
    pub(super) fn from_code(code: u32) -> Option<Step> {
        Step::ALL.into_iter().find(|step| *step as u32 == code)
    }
}

/// What the container process reports when a setup step fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ChildFailure {
    /// The step.
    pub step: Step,
    /// Which item of the step's list (mount, device, path...), 0 when the step has no list.
    pub index: u32,
    /// The errno.
    pub errno: i32,
}

impl ChildFailure {
    /// A constructor for `map_err`: the failure of `step` on item `index`.
    pub fn at(step: Step, index: usize) -> impl Fn(rustix::io::Errno) -> ChildFailure + Copy {
        move |errno| ChildFailure {
            step,
            index: u32::try_from(index).unwrap_or(u32::MAX),
            errno: errno.raw_os_error(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_round_trip_through_their_codes() {
        for step in Step::ALL {
            assert_eq!(Step::from_code(step as u32), Some(step));
        }
        assert_eq!(Step::from_code(0), None);
        assert_eq!(Step::from_code(Step::JoinCgroup as u32 + 1), None);
    }

    #[test]
    fn setup_errors_name_the_step_and_the_errno() {
        let err = ExecutorError::Setup {
            step: "mount /proc (proc)".to_owned(),
            source: io::Error::from_raw_os_error(libc::EPERM),
        };
        assert_eq!(
            err.to_string(),
            "mount /proc (proc): EPERM (Operation not permitted)"
        );
        assert_eq!(err.kind(), ErrorKind::PermissionDenied);
        assert!(!err.program_not_found());
        let err = ExecutorError::Exec {
            program: "/bin/nope".to_owned(),
            source: io::Error::from_raw_os_error(libc::ENOENT),
        };
        assert_eq!(
            err.to_string(),
            "exec /bin/nope: ENOENT (No such file or directory)"
        );
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert!(err.program_not_found());
        let denied = ExecutorError::Exec {
            program: "/etc/passwd".to_owned(),
            source: io::Error::from_raw_os_error(libc::EACCES),
        };
        assert!(!denied.program_not_found());
    }
}
