//! `exec_in`: running one more process inside an already-running container (CRI `ExecSync`
//! and streaming exec), as its parent.
//!
//! The container is named by its init's pid. We take a pidfd for it first and, from then on,
//! name the container only through that pidfd: the namespaces are joined with
//! `setns(pidfd, CLONE_NEWNS | CLONE_NEWNET | ...)` (Linux 5.8+), which joins them all at
//! once and cannot be redirected to another process by a pid reuse. Which namespaces to join
//! comes from comparing `/proc/self/ns/*` with `/proc/<pid>/ns/*`, read before checking that
//! the pidfd's process still lives (so the files read were its own).
//!
//! A container in a user namespace of its own (a pod's) has it joined last, in
//! [`child::finish`], like its first process did: the container's mount and cgroup
//! namespaces are owned by the host's, so joining them needs the host's root.
//!
//! A PID namespace can only be entered for children: the parent enters the container's
//! around the clone, as [`launch`](super::launch()) does for a shared PID namespace. The child
//! then joins the others, after the parent has put it into the container's cgroups, and
//! finishes like a container's first process ([`child::finish`]): rlimits, stdio,
//! user and capabilities, no_new_privs and seccomp last. Mounts, rootfs, hostname and sysctls
//! are the container's already and are not touched; joining the mount namespace makes the
//! container's root our `/`, so the working directory is resolved inside it.
//!
//! The process dies with its parent (`PR_SET_PDEATHSIG(SIGKILL)`): the parent is a helper
//! (`carrack exec-in`) that the daemon kills on an `ExecSync` timeout, and the process must
//! not outlive it. Once dead it is a child of the container's init (or a subreaper in it),
//! which reaps it.

use std::convert::Infallible;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use oci_spec::runtime::{LinuxNamespaceType, Spec};
use rustix::fs::{Mode, OFlags};
use rustix::process::{Pid, PidfdFlags};
use rustix::thread::ThreadNameSpaceType;

use super::child::{self, OwnCgroups};
use super::error::{ChildFailure, ExecutorError, Step, prepare};
use super::launch::{Launched, PidNamespace, start};
use super::plan::{Join, ProcessPlan, Stdio};
use super::sync::SyncSocket;
use super::sys;

/// What to run in which running container.
#[derive(Debug)]
pub struct ExecRequest {
    /// The container's spec. Its `process` gives the user, groups, capabilities,
    /// no_new_privs, rlimits and `oom_score_adj`, `linux.seccomp` the seccomp profile (AppArmor
    /// and SELinux labels are ignored); `process.args`, `env`, `cwd` and `terminal` are those
    /// of the new process (the caller overrides `args`). `linux.namespaces`, mounts, hostname
    /// and sysctls are ignored: the container's namespaces are joined as they are.
    pub spec: Spec,
    /// The container's init process, by its pid in the caller's PID namespace. Every
    /// namespace of it that differs from the caller's is joined (mount, PID, network, IPC,
    /// UTS, cgroup, and last the user namespace); it must have its own mount namespace, and
    /// no time namespace of its own (unsupported).
    pub target_pid: i32,
    /// The new process's stdin, stdout and stderr (a terminal's slave side on all three when
    /// `process.terminal` is set; it becomes the controlling terminal of a new session).
    pub stdio: Stdio,
    /// `cgroup.procs` files of the container's cgroups, which the new process joins before
    /// it does anything.
    pub cgroup_procs_files: Vec<PathBuf>,
}

/// The namespaces we can join, by their `/proc/<pid>/ns/` name.
const JOINABLE: [(&str, ThreadNameSpaceType); 6] = [
    ("mnt", ThreadNameSpaceType::MOUNT),
    ("pid", ThreadNameSpaceType::PROCESS_ID),
    ("net", ThreadNameSpaceType::NETWORK),
    ("ipc", ThreadNameSpaceType::INTER_PROCESS_COMMUNICATION),
    ("uts", ThreadNameSpaceType::HOST_NAME_AND_NIS_DOMAIN_NAME),
    ("cgroup", ThreadNameSpaceType::CONTROL_GROUP),
];

/// Namespaces whose joining is not supported: a process in them differs from us in ways the
/// plan does not handle (clock offsets).
const UNSUPPORTED: [(&str, &str); 1] =
    [("time", "exec in a container with its own time namespace")];

/// The running container, through a pidfd of its init.
#[derive(Debug)]
struct Target {
    pid: i32,
    pidfd: OwnedFd,
    /// `/proc/<pid>`, for messages.
    proc_dir: PathBuf,
    /// Namespaces to join in the child (all but the PID namespace, which the parent enters).
    joins: ThreadNameSpaceType,
    /// Whether the PID namespace differs from ours.
    pid_namespace: bool,
    /// The container's user namespace when it differs from ours (a pod's), joined last,
    /// like the container's first process did (`child::finish`).
    user_namespace: Option<Join>,
}

impl Target {
    fn open(pid: i32) -> Result<Target, ExecutorError> {
        let gone = || ExecutorError::Target {
            pid,
            reason: "no such process (the container has exited)".to_owned(),
        };
        let proc_dir = PathBuf::from(format!("/proc/{pid}"));
        let raw = Pid::from_raw(pid).ok_or_else(|| ExecutorError::Target {
            pid,
            reason: "not a process id".to_owned(),
        })?;
        let pidfd = match rustix::process::pidfd_open(raw, PidfdFlags::empty()) {
            Ok(pidfd) => pidfd,
            Err(rustix::io::Errno::SRCH) => return Err(gone()),
            Err(errno) => return Err(prepare("open a pidfd of", &proc_dir)(errno.into())),
        };

        let mut joins = ThreadNameSpaceType::empty();
        let mut pid_namespace = false;
        let mut own_mount_namespace = false;
        for (name, flag) in JOINABLE {
            if differs(&proc_dir, name)? {
                match flag {
                    ThreadNameSpaceType::PROCESS_ID => pid_namespace = true,
                    ThreadNameSpaceType::MOUNT => {
                        own_mount_namespace = true;
                        joins |= flag;
                    }
                    _ => joins |= flag,
                }
            }
        }
        // Opened before the liveness check below, like the files compared above.
        let user_namespace = if differs(&proc_dir, "user")? {
            let path = proc_dir.join("ns/user");
            let fd = rustix::fs::open(&path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
                .map_err(|errno| prepare("open", &path)(errno.into()))?;
            Some(Join {
                kind: LinuxNamespaceType::User,
                path,
                fd,
            })
        } else {
            None
        };
        let mut unsupported = None;
        for (name, feature) in UNSUPPORTED {
            if differs(&proc_dir, name)? {
                unsupported = Some(feature);
                break;
            }
        }
        // What was read above is the target's only if it still runs now (else its pid may
        // have been reused meanwhile).
        if sys::pidfd_exited(pidfd.as_fd()).map_err(prepare("poll the pidfd of", &proc_dir))? {
            return Err(gone());
        }
        if let Some(feature) = unsupported {
            return Err(ExecutorError::unsupported(feature));
        }
        if !own_mount_namespace {
            return Err(ExecutorError::Target {
                pid,
                reason: "it shares our mount namespace: not a container".to_owned(),
            });
        }
        Ok(Target {
            pid,
            pidfd,
            proc_dir,
            joins,
            pid_namespace,
            user_namespace,
        })
    }

    /// The namespaces joined, as `mnt, net, ...`, for messages.
    fn join_names(&self) -> String {
        JOINABLE
            .iter()
            .filter(|(_, flag)| self.joins.contains(*flag))
            .map(|(name, _)| *name)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Whether namespace `name` of the process at `proc_dir` differs from ours. A namespace type
/// the kernel lacks (no `/proc/self/ns/<name>`) never differs; a target whose file is
/// missing has exited, which the caller's liveness check reports.
fn differs(proc_dir: &std::path::Path, name: &str) -> Result<bool, ExecutorError> {
    let own_path = PathBuf::from("/proc/self/ns").join(name);
    let own = match rustix::fs::stat(&own_path) {
        Ok(stat) => stat,
        Err(rustix::io::Errno::NOENT) => return Ok(false),
        Err(errno) => return Err(prepare("inspect", own_path)(errno.into())),
    };
    let theirs_path = proc_dir.join("ns").join(name);
    let theirs = match rustix::fs::stat(&theirs_path) {
        Ok(stat) => stat,
        Err(rustix::io::Errno::NOENT | rustix::io::Errno::SRCH) => return Ok(false),
        Err(errno) => return Err(prepare("inspect", theirs_path)(errno.into())),
    };
    Ok((own.st_dev, own.st_ino) != (theirs.st_dev, theirs.st_ino))
}

/// Starts the program of `request.spec.process` inside the running container of
/// `request.target_pid` and returns once it has called `execve` (or failed before, with the
/// step that failed: `exec /bin/nope: ENOENT (...)`).
///
/// As for [`launch`](super::launch()), **call this from a single-threaded process** (the
/// `carrack exec-in` helper; never the tokio daemon); the caller becomes the process's parent
/// and must reap it ([`Launched::wait`]). If the caller dies, the process is killed.
pub fn exec_in(request: ExecRequest) -> Result<Launched, ExecutorError> {
    let ExecRequest {
        spec,
        target_pid,
        stdio,
        cgroup_procs_files,
    } = request;
    let mut process = ProcessPlan::new(&spec, stdio)?;
    process.die_with_parent = true;
    let mut target = Target::open(target_pid)?;
    process.join_user_namespace(target.user_namespace.take());
    let pid_namespace = target.pid_namespace.then(|| PidNamespace {
        fd: target.pidfd.as_fd(),
        subject: &target.proc_dir,
    });
    start(
        pid_namespace,
        0,
        &cgroup_procs_files,
        None,
        |sync, cgroups| child::run(sync, || set_up(&target, &process, cgroups, sync)),
        |failure| {
            process.error(failure, || match failure.step {
                Step::JoinNamespace => format!(
                    "join the namespaces ({}) of process {}",
                    target.join_names(),
                    target.pid
                ),
                _ => process.describe(failure),
            })
        },
    )
}

/// The child's side: the go-ahead, `oom_score_adj` (through the host's `/proc`, before the
/// container's replaces it), the container's namespaces, then the process's own setup.
fn set_up(
    target: &Target,
    process: &ProcessPlan,
    cgroups: &OwnCgroups,
    sync: &SyncSocket,
) -> Result<Infallible, ChildFailure> {
    child::begin(process, cgroups, sync)?;
    if let Some(score) = process.oom_score_adj {
        child::set_oom_score_adj(score)?;
    }
    if !target.joins.is_empty() {
        rustix::thread::move_into_thread_name_spaces(target.pidfd.as_fd(), target.joins)
            .map_err(ChildFailure::at(Step::JoinNamespace, 0))?;
    }
    child::finish(process, sync)
}
