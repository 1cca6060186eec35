//! `launch`: the parent's side of starting a container process.

use std::convert::Infallible;
use std::ffi::OsStr;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use rustix::fs::{Mode, OFlags};
use rustix::process::{Pid, Signal, WaitIdOptions, WaitIdStatus};
use rustix::thread::LinkNameSpaceType;

use super::child::{self, OwnCgroups};
use super::error::{ChildFailure, ExecutorError, Step, prepare};
use super::plan::{Plan, Stdio};
use super::sync::{Message, Received, SyncSocket};
use super::sys::{self, Cloned};

/// What to start.
#[derive(Debug)]
pub struct LaunchRequest {
    /// The OCI runtime spec, complete: process (args, env, cwd, user, capabilities, rlimits,
    /// no_new_privs, oom_score_adj, terminal: stdin then becomes the controlling terminal of
    /// a new session), mounts, hostname, and `linux` (namespaces, devices,
    /// masked and read-only paths, seccomp, sysctls, rootfs propagation). Namespaces with a
    /// `path` are joined (the pod's net, IPC and UTS pins; a PID namespace to share); those
    /// without are created; a mount namespace is required. `root.path` is ignored in favour
    /// of `rootfs`; `root.readonly` is honoured. Cgroup resources are not applied here.
    pub spec: Spec,
    /// The root filesystem, already assembled (an overlay mount from the snapshotter, or a
    /// plain directory). It is bind-mounted inside the container's mount namespace, so the
    /// host's mount table never changes.
    pub rootfs: PathBuf,
    /// The container process's stdin, stdout and stderr.
    pub stdio: Stdio,
    /// The cgroups the process joins before it runs anything: one file per v1 hierarchy,
    /// or the single v2 file. A v1 `tasks` file is written by the process itself, first
    /// thing after the clone (see `child::OwnCgroups`: it skips an RCU grace period); a
    /// `cgroup.procs` file gets the process's pid from the parent.
    pub cgroup_procs_files: Vec<PathBuf>,
    /// Called with the new process's pid (caller's PID namespace) after the cgroup writes
    /// and before the process may run anything: for a cgroup someone else creates around it
    /// (a systemd scope). An error kills the process and fails the launch.
    pub place: Option<PlaceHook>,
}

/// The v1 cgroup file a new process writes itself into (see [`LaunchRequest::cgroup_procs_files`]).
pub const OWN_CGROUP_FILE: &str = "tasks";

/// See [`LaunchRequest::place`].
pub struct PlaceHook(pub Box<dyn FnOnce(i32) -> Result<(), String>>);

impl std::fmt::Debug for PlaceHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PlaceHook")
    }
}

/// A started container process.
#[derive(Debug)]
pub struct Launched {
    /// The process id, in the caller's PID namespace.
    pub pid: Pid,
    /// A pidfd for it: signal it with `pidfd_send_signal` and wait for it with `waitid`
    /// without pid reuse races. The caller is its parent and must reap it.
    pub pidfd: OwnedFd,
    /// How long each step of the start took, in order (for the start's trace).
    pub phases: Vec<LaunchPhase>,
}

/// One timed step of a start: `executor.clone`, `executor.cgroup` (the parent putting the
/// child into its cgroups, while the child's first [`SetupPhase`](super::sync::SetupPhase)s
/// run: those start at the end of the clone), the child's phases, and
/// `executor.seccomp_exec` (seccomp and `execve`, which the child cannot report on: a filter
/// may forbid the message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaunchPhase {
    /// The span name, e.g. `executor.rootfs`.
    pub name: &'static str,
    /// Start, ns since the epoch.
    pub start_ns: i64,
    /// End, ns since the epoch.
    pub end_ns: i64,
}

/// Wall-clock time in ns since the epoch; allocation-free, usable in the child.
pub(super) fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_nanos()).unwrap_or(i64::MAX)
        })
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this code.
    Code(i32),
    /// A signal killed it.
    Signal(i32),
}

impl Launched {
    /// Blocks until the process exits and reaps it.
    pub fn wait(&self) -> io::Result<Exit> {
        wait_pidfd(&self.pidfd)
    }
}

fn wait_pidfd(pidfd: &OwnedFd) -> io::Result<Exit> {
    loop {
        match rustix::process::waitid(
            rustix::process::WaitId::PidFd(pidfd.as_fd()),
            WaitIdOptions::EXITED,
        ) {
            Err(rustix::io::Errno::INTR) => continue,
            Err(errno) => return Err(errno.into()),
            Ok(Some(status)) => return Ok(exit_of(&status)),
            Ok(None) => return Err(io::Error::other("waitid returned no status")),
        }
    }
}

fn exit_of(status: &WaitIdStatus) -> Exit {
    match (status.exit_status(), status.terminating_signal()) {
        (Some(code), _) => Exit::Code(code),
        (None, Some(signal)) => Exit::Signal(signal),
        (None, None) => Exit::Code(-1),
    }
}

/// Kills and reaps the child unless disarmed: every early return of `launch` after the clone
/// leaves no process behind.
struct ChildGuard {
    pidfd: Option<OwnedFd>,
}

impl ChildGuard {
    fn disarm(mut self) -> Option<OwnedFd> {
        self.pidfd.take()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(pidfd) = self.pidfd.take() {
            let _ = rustix::process::pidfd_send_signal(&pidfd, Signal::KILL);
            let _ = wait_pidfd(&pidfd);
        }
    }
}

/// Starts the container process described by `request` and returns once it has called
/// `execve` (or failed before, with the step that failed).
///
/// **Call this from a single-threaded process** (the per-pod monitor): it forks, and a fork
/// of a multi-threaded process could leave the child with locks owned by threads it does not
/// have. This is checked; from a multi-threaded process it fails with [`ExecutorError::Clone`].
/// Never call it from the tokio daemon.
///
/// The caller becomes the parent of the process: it gets SIGCHLD when it ends and must reap it
/// ([`Launched::wait`], or `waitid`/`waitpid` in its reaper).
pub fn launch(request: LaunchRequest) -> Result<Launched, ExecutorError> {
    let LaunchRequest {
        spec,
        rootfs,
        stdio,
        cgroup_procs_files,
        place,
    } = request;
    let plan = Plan::new(&spec, &rootfs, stdio)?;
    let pid_namespace = plan.pid_namespace.as_ref().map(|join| PidNamespace {
        fd: join.fd.as_fd(),
        subject: &join.path,
    });
    start(
        pid_namespace,
        plan.clone_flags,
        &cgroup_procs_files,
        place,
        |sync, cgroups| child::run(sync, || child::set_up_container(&plan, cgroups, sync)),
        |failure| plan.process.error(failure, || plan.describe(failure)),
    )
}

/// A PID namespace a new process starts in: the parent enters it with
/// `setns(fd, CLONE_NEWPID)` around the clone (a PID namespace can only be entered for
/// children), then returns to its own.
#[derive(Debug, Clone, Copy)]
pub(super) struct PidNamespace<'a> {
    /// A namespace file (`/proc/<pid>/ns/pid`, a pin) or a pidfd of a process in it.
    pub fd: BorrowedFd<'a>,
    /// What `fd` is, for messages.
    pub subject: &'a Path,
}

/// The parent's side shared by [`launch`] and `exec_in`: clones a child (in `pid_namespace`,
/// with the new namespaces `clone_flags`) that runs `child`, puts it into its cgroups, gives
/// the go-ahead and waits until it has exec'd or reported a failure, which `failed` turns
/// into the error. No process is left behind on failure.
pub(super) fn start(
    pid_namespace: Option<PidNamespace<'_>>,
    clone_flags: u64,
    cgroup_procs_files: &[PathBuf],
    place: Option<PlaceHook>,
    child: impl FnOnce(&SyncSocket, &OwnCgroups) -> Infallible,
    failed: impl FnOnce(&ChildFailure) -> ExecutorError,
) -> Result<Launched, ExecutorError> {
    let started_ns = now_ns();
    let (parent_end, child_end) = SyncSocket::pair().map_err(prepare("create sync socket", ""))?;
    let (own_cgroup_files, cgroup_procs_files): (Vec<&PathBuf>, Vec<&PathBuf>) = cgroup_procs_files
        .iter()
        .partition(|path| path.file_name() == Some(OsStr::new(OWN_CGROUP_FILE)));
    let own_cgroups = own_cgroup_files
        .iter()
        .map(|path| {
            rustix::fs::open(
                path.as_path(),
                OFlags::WRONLY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|errno| ExecutorError::Cgroup {
                path: path.to_path_buf(),
                source: errno.into(),
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(OwnCgroups)?;
    let failed = |failure: &ChildFailure| match own_cgroup_files.get(failure.index as usize) {
        Some(path) if failure.step == Step::JoinCgroup => ExecutorError::Cgroup {
            path: path.to_path_buf(),
            source: io::Error::from_raw_os_error(failure.errno),
        },
        _ => failed(failure),
    };

    let own_pid_namespace = match pid_namespace {
        None => None,
        Some(join) => {
            let own = rustix::fs::open(
                "/proc/self/ns/pid",
                OFlags::RDONLY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|errno| prepare("open", "/proc/self/ns/pid")(errno.into()))?;
            rustix::thread::move_into_link_name_space(join.fd, Some(LinkNameSpaceType::ProcessID))
                .map_err(|errno| prepare("join pid namespace", join.subject)(errno.into()))?;
            Some(own)
        }
    };
    let cloned = sys::clone_process(clone_flags);
    if let Ok(Cloned::Child) = cloned {
        drop(parent_end);
        // Never returns: the child execs or exits.
        child(&child_end, &own_cgroups);
    }
    drop(own_cgroups);
    // Only the parent gets here.
    if let Some(own) = own_pid_namespace {
        // Entering our own namespace again is always allowed; if it failed, later children
        // would land in the container's namespace, so treat it as a failure of this start.
        let restored = rustix::thread::move_into_link_name_space(
            own.as_fd(),
            Some(LinkNameSpaceType::ProcessID),
        );
        if let Err(errno) = restored {
            if let Ok(Cloned::Parent { pidfd, .. }) = cloned {
                drop(ChildGuard { pidfd: Some(pidfd) });
            }
            return Err(prepare("restore pid namespace", "/proc/self/ns/pid")(
                errno.into(),
            ));
        }
    }
    let (pid, pidfd) = match cloned.map_err(|source| ExecutorError::Clone { source })? {
        Cloned::Parent { pid, pidfd } => (pid, pidfd),
        Cloned::Child => unreachable!("the child ran above"),
    };
    drop(child_end);
    let cloned_ns = now_ns();
    let guard = ChildGuard { pidfd: Some(pidfd) };

    // The child sets up its mounts meanwhile (see `child`): a failure it reports while we
    // are still here says more than ours (a pid that has exited cannot join a cgroup).
    let joined = cgroup_procs_files.iter().try_for_each(|path| {
        add_to_cgroup(path, pid).map_err(|source| ExecutorError::Cgroup {
            path: path.to_path_buf(),
            source,
        })
    });
    // With the systemd driver the daemon puts the process in its scope now, before it runs.
    let placed = joined.and_then(|()| match place {
        Some(PlaceHook(place)) => {
            let raw = pid.as_raw_nonzero().get();
            place(raw).map_err(|reason| ExecutorError::Placement { pid: raw, reason })
        }
        None => Ok(()),
    });
    let go = placed.and_then(|()| {
        parent_end
            .send(Message::Go)
            .map_err(|errno| ExecutorError::Protocol {
                reason: format!("send go-ahead: {}", io::Error::from(errno)),
            })
    });
    if let Err(err) = go {
        drop(guard);
        return Err(match reported_failure(&parent_end) {
            Some(failure) => failed(&failure),
            None => err,
        });
    }
    let mut last_ns = cloned_ns;
    let mut phases = vec![
        LaunchPhase {
            name: "executor.clone",
            start_ns: started_ns,
            end_ns: cloned_ns,
        },
        LaunchPhase {
            name: "executor.cgroup",
            start_ns: cloned_ns,
            end_ns: now_ns(),
        },
    ];
    let mut received = parent_end.receive();
    while let Ok(Received::Message(Message::PhaseDone(phase, at_ns))) = received {
        phases.push(LaunchPhase {
            name: phase.name(),
            start_ns: last_ns,
            end_ns: at_ns,
        });
        last_ns = at_ns;
        received = parent_end.receive();
    }
    match received {
        Ok(Received::Closed) => {
            let pidfd = guard.disarm().ok_or_else(|| ExecutorError::Protocol {
                reason: "pidfd lost".to_owned(),
            })?;
            phases.push(LaunchPhase {
                name: "executor.seccomp_exec",
                start_ns: last_ns,
                end_ns: now_ns(),
            });
            Ok(Launched { pid, pidfd, phases })
        }
        Ok(Received::Message(Message::Failed(failure))) => {
            // The child exits right after reporting; reap it (the guard's SIGKILL is moot).
            drop(guard);
            Err(failed(&failure))
        }
        Ok(other) => Err(ExecutorError::Protocol {
            reason: format!("unexpected message {other:?}"),
        }),
        Err(errno) => Err(ExecutorError::Protocol {
            reason: format!(
                "read from the container process: {}",
                io::Error::from(errno)
            ),
        }),
    }
}

/// The failure the child reported before it ended, if any: call once it is reaped, so that
/// the socket ends after its last message.
fn reported_failure(parent_end: &SyncSocket) -> Option<ChildFailure> {
    loop {
        match parent_end.receive() {
            Ok(Received::Message(Message::Failed(failure))) => return Some(failure),
            Ok(Received::Message(_) | Received::Garbage(_)) => {}
            Ok(Received::Closed) | Err(_) => return None,
        }
    }
}

/// Writes `pid` into a `cgroup.procs` file (opened for writing only: never created).
fn add_to_cgroup(path: &Path, pid: Pid) -> io::Result<()> {
    let mut file = std::fs::OpenOptions::new().write(true).open(path)?;
    file.write_all(pid.as_raw_nonzero().to_string().as_bytes())
}
