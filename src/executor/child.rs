//! The new process between clone and exec: it follows the plan step by step and either
//! becomes the program or reports the step that failed and exits.
//!
//! Order for a new container ([`set_up_container`]), and why:
//! 1. reset signal dispositions and the mask the monitor may have changed; on cgroup v1,
//!    move into our cgroups ourselves ([`OwnCgroups`]);
//! 2. join the spec's namespaces (`setns`);
//! 3. `oom_score_adj` (through the host's `/proc`, still reachable);
//! 4. the root filesystem, up to `pivot_root` ([`super::rootfs`]). Meanwhile the parent puts
//!    us into the cgroups it writes (v2's `cgroup.procs`), whose first move waits for an RCU
//!    grace period (milliseconds) that the mounts overlap. Only the steps that depend on
//!    the cgroup wait for the parent's go-ahead: the new cgroup namespace (rooted at the
//!    cgroup we are then in) and the cgroup mount inside it, or, without one, the end of the
//!    rootfs;
//! 5. hostname and domain name; then [`finish`]: rlimits, stdio (a terminal becomes the
//!    controlling terminal of a new session), every other descriptor close-on-exec;
//!    then, for a container in a (pod's) user namespace, that namespace is joined: every
//!    mount was made by the host's root, the user switch and capabilities below happen in it;
//! 6. without no_new_privs, seccomp now: installing a filter then needs `CAP_SYS_ADMIN`, which
//!    the next step may drop (the filter then also sees the remaining setup calls);
//! 7. bounding set, user and groups (with keep-caps), the other capability sets; for a process
//!    that dies with its parent, the parent-death signal again (the user switch cleared it)
//!    and a check that the parent still lives; umask, cwd;
//! 8. no_new_privs, then seccomp as the very last step before `execve`.
//!
//! A process executed in a running container (`super::exec`) shares steps 1 and 5-8
//! ([`begin`], which also waits for the go-ahead first, and [`finish`]); in between it only
//! joins the container's namespaces.

use std::convert::Infallible;
use std::os::fd::{AsFd, OwnedFd};

use oci_spec::runtime::LinuxNamespaceType;
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::thread::LinkNameSpaceType;

use super::error::{ChildFailure, Step};
use super::plan::{Plan, ProcessPlan};
use super::rootfs;
use super::sync::{Message, Received, SetupPhase, SyncSocket};
use super::sys;

/// Exit code of a child whose setup failed (after it reported why).
const SETUP_FAILED: i32 = 125;

/// Runs the child's side, `setup`, and never returns: the process becomes the program or
/// reports the failed step on `sync` and exits.
pub(super) fn run(
    sync: &SyncSocket,
    setup: impl FnOnce() -> Result<Infallible, ChildFailure>,
) -> ! {
    // A panic must not unwind into the caller's frames, which belong to the parent's logic.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(setup));
    match outcome {
        Ok(Err(failure)) => {
            // If even this fails the parent sees end-of-file and reaps an exit code of 125.
            let _ = sync.send(Message::Failed(failure));
            sys::exit_immediately(SETUP_FAILED)
        }
        Ok(Ok(never)) => match never {},
        Err(_) => sys::exit_immediately(SETUP_FAILED + 1),
    }
}

/// The cgroups a new process moves itself into: v1 `tasks` files the parent opened before
/// the clone, into each of which the child writes `0` ("the calling thread").
///
/// Why the child and not the parent: a write that names another process (any pid but 0), or
/// any write to `cgroup.procs`, takes the kernel's global `cgroup_threadgroup_rwsem` for
/// writing, and its first writer waits for an RCU grace period (5-17 ms per start measured
/// on the test machines, more under load). A thread that moves only itself skips that lock.
/// The child is single-threaded until `execve`, so its thread is the whole process. The
/// files were opened by the parent, and the kernel checks the opener's credentials.
#[derive(Debug, Default)]
pub(super) struct OwnCgroups(pub Vec<OwnedFd>);

impl OwnCgroups {
    /// Moves the calling (single-threaded) process into every cgroup; allocation-free.
    pub(super) fn join(&self) -> Result<(), ChildFailure> {
        for (at, fd) in self.0.iter().enumerate() {
            loop {
                match rustix::io::write(fd, b"0") {
                    Err(Errno::INTR) => continue,
                    Err(errno) => return Err(ChildFailure::at(Step::JoinCgroup, at)(errno)),
                    Ok(_) => break,
                }
            }
        }
        Ok(())
    }
}

/// A new container's setup, from the go-ahead to `execve`.
pub(super) fn set_up_container(
    plan: &Plan,
    cgroups: &OwnCgroups,
    sync: &SyncSocket,
) -> Result<Infallible, ChildFailure> {
    prepare(&plan.process)?;
    cgroups.join()?;

    for (at, join) in plan.joins.iter().enumerate() {
        rustix::thread::move_into_link_name_space(join.fd.as_fd(), Some(link_type(join.kind)))
            .map_err(ChildFailure::at(Step::JoinNamespace, at))?;
    }
    // Device nodes get exactly the spec's modes.
    rustix::process::umask(Mode::empty());
    if let Some(score) = plan.process.oom_score_adj {
        set_oom_score_adj(score)?;
    }

    phase_done(sync, SetupPhase::Namespaces);
    let mut in_cgroup = false;
    let mut enter_cgroup = || -> Result<(), ChildFailure> {
        if !in_cgroup {
            wait_for_go(sync)?;
            if plan.new_cgroup_namespace {
                sys::unshare_cgroup_namespace().map_err(|err| ChildFailure {
                    step: Step::UnshareCgroup,
                    index: 0,
                    errno: err.raw_os_error().unwrap_or(libc::EIO),
                })?;
            }
            in_cgroup = true;
        }
        Ok(())
    };
    rootfs::build(plan, &mut enter_cgroup)?;
    enter_cgroup()?;
    phase_done(sync, SetupPhase::Rootfs);

    if let Some(hostname) = &plan.hostname {
        rustix::system::sethostname(hostname.as_bytes())
            .map_err(ChildFailure::at(Step::Hostname, 0))?;
    }
    if let Some(domainname) = &plan.domainname {
        rustix::system::setdomainname(domainname.as_bytes())
            .map_err(ChildFailure::at(Step::Domainname, 0))?;
    }
    finish(&plan.process, sync)
}

/// The first steps of every child: [`prepare`], moving into our own cgroups, then the
/// parent's go-ahead (it puts us into the other cgroups first).
pub(super) fn begin(
    process: &ProcessPlan,
    cgroups: &OwnCgroups,
    sync: &SyncSocket,
) -> Result<(), ChildFailure> {
    prepare(process)?;
    cgroups.join()?;
    wait_for_go(sync)
}

/// A clean signal state, and the parent-death signal if asked for.
fn prepare(process: &ProcessPlan) -> Result<(), ChildFailure> {
    sys::reset_signals().map_err(ChildFailure::at(Step::Signals, 0))?;
    if process.die_with_parent {
        // Set before waiting: a parent that dies from here on takes us along, and one that
        // died before makes the wait for the go-ahead read end-of-file.
        rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
            .map_err(ChildFailure::at(Step::ParentDeathSignal, 0))?;
    }
    Ok(())
}

/// Waits for the parent's go-ahead: we are in our cgroups.
fn wait_for_go(sync: &SyncSocket) -> Result<(), ChildFailure> {
    let waiting = ChildFailure::at(Step::WaitForParent, 0);
    match sync.receive().map_err(waiting)? {
        Received::Message(Message::Go) => Ok(()),
        // The parent is gone or confused: nothing to set up for.
        _ => Err(waiting(Errno::PIPE)),
    }
}

/// The process's own setup once its environment is ready, ending in `execve`: rlimits,
/// stdio (and the terminal), every other descriptor close-on-exec, user and capabilities,
/// umask, cwd, no_new_privs and seccomp (see the module doc for the order).
pub(super) fn finish(process: &ProcessPlan, sync: &SyncSocket) -> Result<Infallible, ChildFailure> {
    for (at, (_, resource, limit)) in process.rlimits.iter().enumerate() {
        rustix::process::setrlimit(*resource, *limit)
            .map_err(ChildFailure::at(Step::Rlimit, at))?;
    }
    let [stdin, stdout, stderr] = &process.stdio;
    if let Some(fd) = stdin {
        sys::dup2_raw(fd.as_fd(), 0).map_err(ChildFailure::at(Step::Stdio, 0))?;
    }
    if let Some(fd) = stdout {
        sys::dup2_raw(fd.as_fd(), 1).map_err(ChildFailure::at(Step::Stdio, 1))?;
    }
    if let Some(fd) = stderr {
        sys::dup2_raw(fd.as_fd(), 2).map_err(ChildFailure::at(Step::Stdio, 2))?;
    }
    if process.terminal {
        // A terminal program (a shell, `top`) needs stdin as its controlling terminal, which
        // only a session leader without one can acquire (and before the user switch, which
        // drops the capability to take it over from another session).
        rustix::process::setsid().map_err(ChildFailure::at(Step::Terminal, 0))?;
        sys::set_controlling_terminal_to_stdin().map_err(ChildFailure::at(Step::Terminal, 1))?;
    }
    // Nothing but stdio may reach the program (CVE-2024-21626); our own descriptors stay
    // usable until execve.
    sys::mark_cloexec_from(3).map_err(ChildFailure::at(Step::CloseFds, 0))?;
    if let Some(join) = &process.user_namespace {
        // Last of what needs the host's root (mounts, rlimits, the terminal), first of what
        // the container's root does: from here on its capabilities hold only inside the user
        // namespace (and the kernel refills them all, so the steps below trim them again).
        rustix::thread::move_into_link_name_space(join.fd.as_fd(), Some(LinkNameSpaceType::User))
            .map_err(ChildFailure::at(Step::JoinUserNamespace, 0))?;
    }

    if !process.no_new_privs {
        install_seccomp(process)?;
    }
    switch_user(process)?;
    if process.die_with_parent {
        // A change of uid or gid clears the parent-death signal: set it again, then make sure
        // the parent did not die in between (its end of the sync socket would be closed; our
        // parent may live outside our PID namespace, where getppid says 0).
        rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
            .map_err(ChildFailure::at(Step::ParentDeathSignal, 0))?;
        if sync
            .peer_closed()
            .map_err(ChildFailure::at(Step::WaitForParent, 1))?
        {
            return Err(ChildFailure::at(Step::WaitForParent, 1)(Errno::PIPE));
        }
    }
    rustix::process::umask(Mode::from_raw_mode(process.user.umask));
    rustix::process::chdir(process.cwd.as_c_str()).map_err(ChildFailure::at(Step::Cwd, 0))?;
    // The last message: a seccomp filter may forbid sending.
    phase_done(sync, SetupPhase::Process);
    if process.no_new_privs {
        rustix::thread::set_no_new_privs(true).map_err(ChildFailure::at(Step::NoNewPrivs, 0))?;
        install_seccomp(process)?;
    }
    Err(exec(process))
}

/// Tells the parent when `phase` ended, for the start's trace; best effort (a lost mark only
/// merges two phases), allocation-free.
fn phase_done(sync: &SyncSocket, phase: SetupPhase) {
    let _ = sync.send(Message::PhaseDone(phase, super::launch::now_ns()));
}

fn link_type(kind: LinuxNamespaceType) -> LinkNameSpaceType {
    match kind {
        LinuxNamespaceType::Mount => LinkNameSpaceType::Mount,
        LinuxNamespaceType::Cgroup => LinkNameSpaceType::ControlGroup,
        LinuxNamespaceType::Uts => LinkNameSpaceType::HostNameAndNISDomainName,
        LinuxNamespaceType::Ipc => LinkNameSpaceType::InterProcessCommunication,
        LinuxNamespaceType::User => LinkNameSpaceType::User,
        LinuxNamespaceType::Pid => LinkNameSpaceType::ProcessID,
        LinuxNamespaceType::Network => LinkNameSpaceType::Network,
        LinuxNamespaceType::Time => LinkNameSpaceType::Time,
    }
}

/// Writes `oom_score_adj`. Lowering it below the current value needs `CAP_SYS_RESOURCE`; a
/// host whose bounding set lacks that refuses with EACCES, and the process then keeps the
/// inherited value rather than failing the container.
pub(super) fn set_oom_score_adj(score: i32) -> Result<(), ChildFailure> {
    let fail = ChildFailure::at(Step::OomScoreAdj, 0);
    let file = rustix::fs::open(
        c"/proc/self/oom_score_adj",
        OFlags::WRONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(fail)?;
    match rustix::io::write(&file, rustix::path::DecInt::new(score).as_bytes()) {
        Ok(_) | Err(Errno::ACCESS) => Ok(()),
        Err(errno) => Err(fail(errno)),
    }
}

fn install_seccomp(process: &ProcessPlan) -> Result<(), ChildFailure> {
    for (at, program) in process.seccomp.programs.iter().enumerate() {
        sys::install_seccomp_filter(program, process.seccomp.flags)
            .map_err(ChildFailure::at(Step::Seccomp, at))?;
    }
    Ok(())
}

/// Bounding set first (needs `CAP_SETPCAP`), then groups, gid and uid with keep-caps on so
/// that the permitted set survives the switch from root, then the spec's sets.
fn switch_user(process: &ProcessPlan) -> Result<(), ChildFailure> {
    let user = &process.user;
    if let Some(caps) = &process.capabilities {
        caps.drop_bounding_set()?;
        rustix::thread::set_keep_capabilities(true).map_err(ChildFailure::at(Step::KeepCaps, 0))?;
    }
    rustix::thread::set_thread_groups(&user.groups).map_err(ChildFailure::at(Step::Groups, 0))?;
    rustix::thread::set_thread_gid(rustix::process::Gid::from_raw(user.gid))
        .map_err(ChildFailure::at(Step::Gid, 0))?;
    rustix::thread::set_thread_uid(rustix::process::Uid::from_raw(user.uid))
        .map_err(ChildFailure::at(Step::Uid, 0))?;
    if let Some(caps) = &process.capabilities {
        rustix::thread::set_keep_capabilities(false)
            .map_err(ChildFailure::at(Step::KeepCaps, 0))?;
        caps.apply()?;
    }
    Ok(())
}

/// Tries each candidate path as `execvp` does: a missing or non-directory entry moves on to
/// the next, a permission error is remembered, anything else stops the search.
fn exec(process: &ProcessPlan) -> ChildFailure {
    let exec = &process.exec;
    let mut denied = None;
    for (at, candidate) in exec.candidates.iter().enumerate() {
        let errno = sys::execve(candidate, &exec.argv, &exec.envp);
        match errno {
            Errno::NOENT | Errno::NOTDIR if exec.search_path.is_some() => {}
            Errno::ACCESS if exec.search_path.is_some() => denied = denied.or(Some(at)),
            errno => return ChildFailure::at(Step::Exec, at)(errno),
        }
    }
    match denied {
        Some(at) => ChildFailure::at(Step::Exec, at)(Errno::ACCESS),
        None => ChildFailure::at(Step::Exec, u32::MAX as usize)(Errno::NOENT),
    }
}
