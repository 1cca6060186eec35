//! Raw syscall wrappers that need `unsafe`. This module is on the crate's unsafe inventory
//! (`#[allow(unsafe_code)]` in `executor/mod.rs`); every block says why it is sound.
//!
//! What lives here: the fork-like `clone3` that starts a container process (with its pidfd),
//! the process parked in a new user namespace for a pod, idmapped mount clones,
//! `mount_setattr`, installing a seccomp BPF program, marking inherited descriptors
//! close-on-exec, `TIOCSCTTY`, polling a pidfd, `execve`, `_exit`, and thread-level
//! `unshare`, and (in [`memory`]) giving back a long-lived process's start-up memory.
//! Everything else the executor needs has a safe wrapper in `rustix`.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use rustix::io::Errno;
use rustix::process::Pid;
use rustix::thread::UnshareFlags;

pub mod memory;

/// Namespaces a thread can leave into fresh ones without affecting the rest of the process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NewNamespaces {
    /// A new network namespace.
    pub net: bool,
    /// A new IPC namespace.
    pub ipc: bool,
    /// A new UTS (hostname) namespace.
    pub uts: bool,
}

/// Moves the *calling thread* into new network/IPC/UTS namespaces.
///
/// Only call this on a dedicated thread that exits afterwards: the namespaces belong to the
/// thread, and a pooled thread would carry them into unrelated work.
pub fn unshare_thread(namespaces: NewNamespaces) -> io::Result<()> {
    let mut flags = UnshareFlags::empty();
    if namespaces.net {
        flags |= UnshareFlags::NEWNET;
    }
    if namespaces.ipc {
        flags |= UnshareFlags::NEWIPC;
    }
    if namespaces.uts {
        flags |= UnshareFlags::NEWUTS;
    }
    if flags.is_empty() {
        return Ok(());
    }
    // SAFETY: `unshare_unsafe` is unsafe only because CLONE_FILES would split the fd table and
    // leave other threads holding fds this thread can no longer see. We pass only NEWNET,
    // NEWIPC and NEWUTS, which change no file descriptor table.
    unsafe { rustix::thread::unshare_unsafe(flags) }.map_err(io::Error::from)
}

/// Brings the loopback interface of the calling thread's network namespace up.
///
/// Done in-process with one ioctl instead of exec'ing the CNI `loopback` plugin, which costs a
/// process start (several milliseconds) per pod.
pub fn set_loopback_up() -> io::Result<()> {
    let socket = rustix::net::socket(
        rustix::net::AddressFamily::INET,
        rustix::net::SocketType::DGRAM,
        None,
    )?;
    // SAFETY: `ifreq` is a plain C struct for which all-zero bytes are a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(b"lo\0") {
        *slot = *byte as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the name and writes the flags union member of `request`, a
    // valid, exclusively borrowed `ifreq` that outlives the call; the fd is an open socket.
    let got = unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut request) };
    if got < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just filled `ifru_flags` (the active union member for SIOCGIFFLAGS).
    let flags = unsafe { request.ifr_ifru.ifru_flags };
    request.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
    // SAFETY: as above; SIOCSIFFLAGS only reads the name and the flags we set.
    let set = unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &request) };
    if set < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Moves the calling thread into a new cgroup namespace rooted at its current cgroup.
///
/// The container process calls this after its parent has moved it into the container's cgroup,
/// so that the namespace's root is that cgroup and not the monitor's.
pub fn unshare_cgroup_namespace() -> io::Result<()> {
    // SAFETY: as in `unshare_thread`, only CLONE_FILES is hazardous; CLONE_NEWCGROUP changes no
    // file descriptor table.
    unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWCGROUP) }.map_err(io::Error::from)
}

/// Which side of [`clone_process`] the caller is on.
#[derive(Debug)]
pub enum Cloned {
    /// The calling process: the child's pid (in the caller's PID namespace) and a pidfd for it.
    Parent {
        /// The child's process id.
        pid: Pid,
        /// A pidfd referring to the child (close-on-exec).
        pidfd: OwnedFd,
    },
    /// The new process. It must end in `execve` or [`exit_immediately`], never by returning
    /// into the caller's frames past the function that called `clone_process`.
    Child,
}

/// Number of threads of the calling process, from `/proc/self/task`.
fn thread_count() -> io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/task")?.count())
}

/// Forks the calling process into a child that starts in the new namespaces `namespaces`
/// (`CLONE_NEW*` bits), and returns a pidfd for it; the child's exit signal is `SIGCHLD`.
///
/// The calling process must be single-threaded, and this is checked: a fork-like clone of a
/// multi-threaded process would leave the child with locks (allocator, stdio) held forever by
/// threads that do not exist in it. Uses `clone3`, or `clone` where `clone3` is unavailable
/// (e.g. blocked by a seccomp filter with ENOSYS).
pub fn clone_process(namespaces: u64) -> io::Result<Cloned> {
    let threads = thread_count()?;
    if threads != 1 {
        return Err(io::Error::other(format!(
            "clone of a process with {threads} threads refused: call from a single-threaded process"
        )));
    }
    let mut pidfd: RawFd = -1;
    let flags = namespaces | libc::CLONE_PIDFD as u64;
    // SAFETY: `clone_args` is a plain C struct for which all-zero bytes are a valid value.
    let mut args: libc::clone_args = unsafe { std::mem::zeroed() };
    args.flags = flags;
    args.pidfd = &raw mut pidfd as u64;
    args.exit_signal = libc::SIGCHLD as u64;
    // SAFETY: a fork-like clone3 (no CLONE_VM, no new stack): the child gets a copy of this
    // address space and continues here with return value 0. The process has exactly one
    // thread (checked above, and only this thread could start another), so no lock in the
    // copy is held by a thread missing from the child. `args` and `pidfd` are valid for the
    // call; the kernel writes the pidfd into `pidfd` in the parent only.
    let mut ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &raw mut args,
            size_of::<libc::clone_args>(),
        )
    };
    if ret < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS) {
        // SAFETY: the legacy clone with the same fork-like semantics as above (stack 0 means
        // the child shares the parent's stack pointer on its copy of the memory). With
        // CLONE_PIDFD the kernel stores the pidfd through the third argument (`parent_tid`),
        // which points to `pidfd`; the fourth and fifth arguments (child tid, tls) are unused
        // and zero, so their order, which differs between architectures, does not matter.
        ret = unsafe {
            libc::syscall(
                libc::SYS_clone,
                flags | libc::SIGCHLD as u64,
                0usize,
                &raw mut pidfd,
                0usize,
                0usize,
            )
        };
    }
    match ret {
        ..0 => Err(io::Error::last_os_error()),
        0 => Ok(Cloned::Child),
        pid => {
            // SAFETY: the kernel just stored this clone's pidfd in `pidfd` (CLONE_PIDFD).
            let (pid, pidfd) = unsafe { clone_parent_side(pid, pidfd) }?;
            Ok(Cloned::Parent { pid, pidfd })
        }
    }
}

/// The parent's side of a clone with `CLONE_PIDFD` that returned `ret` (> 0): the child's pid
/// and its pidfd, owned.
///
/// # Safety
/// `pidfd` must be the descriptor the kernel stored for that clone, owned by nothing else.
unsafe fn clone_parent_side(ret: libc::c_long, pidfd: RawFd) -> io::Result<(Pid, OwnedFd)> {
    // SAFETY: the caller guarantees the kernel just opened `pidfd` for us and nothing else
    // owns it; owning it first means an odd `ret` below cannot leak it.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    let pid = i32::try_from(ret)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| io::Error::other(format!("clone returned pid {ret}")))?;
    Ok((pid, pidfd))
}

/// A process parked in a user namespace of its own, created by [`park_in_new_user_namespace`].
/// It does nothing until `release` is dropped, then exits; its parent must reap it
/// through `pidfd`.
#[derive(Debug)]
pub struct ParkedProcess {
    /// The process id, in the caller's PID namespace.
    pub pid: Pid,
    /// A pidfd referring to it (close-on-exec).
    pub pidfd: OwnedFd,
    /// The write end of the pipe it waits on: dropping it lets the process exit.
    pub release: OwnedFd,
}

/// Starts a child process in a new user namespace (with no id mappings yet), and in the new
/// network/IPC/UTS namespaces of `owned`, which that user namespace owns; it waits until
/// [`ParkedProcess::release`] is dropped and then exits.
///
/// Unlike [`clone_process`], callable from a multi-threaded process: the child runs only raw
/// `close`, `read` and `_exit` system calls (async-signal-safe, no allocation, no lock), so the
/// locks other threads held at the fork do not matter. A thread of a multi-threaded process
/// cannot `unshare(CLONE_NEWUSER)` itself; a new process can be cloned into one.
pub fn park_in_new_user_namespace(owned: NewNamespaces) -> io::Result<ParkedProcess> {
    // std's pipe is close-on-exec.
    let (wait_end, release) = io::pipe()?;
    let (wait_end, release) = (OwnedFd::from(wait_end), OwnedFd::from(release));
    let wait_fd = wait_end.as_raw_fd();
    let release_fd = release.as_raw_fd();
    let mut pidfd: RawFd = -1;
    // SAFETY: `clone_args` is a plain C struct for which all-zero bytes are a valid value.
    let mut args: libc::clone_args = unsafe { std::mem::zeroed() };
    let mut flags = libc::CLONE_NEWUSER | libc::CLONE_PIDFD;
    for (wanted, flag) in [
        (owned.net, libc::CLONE_NEWNET),
        (owned.ipc, libc::CLONE_NEWIPC),
        (owned.uts, libc::CLONE_NEWUTS),
    ] {
        if wanted {
            flags |= flag;
        }
    }
    // The kernel creates the user namespace first; the others are owned by it.
    args.flags = u64::try_from(flags).map_err(io::Error::other)?;
    args.pidfd = &raw mut pidfd as u64;
    args.exit_signal = libc::SIGCHLD as u64;
    // SAFETY: a fork-like clone3 (no CLONE_VM, no new stack): the child continues here with a
    // copy of the address space and return value 0. Other threads' locks may be held in that
    // copy, so the child below only makes raw system calls and `_exit`s, never returning into
    // Rust code that could allocate or lock. `args` and `pidfd` are valid for the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &raw mut args,
            size_of::<libc::clone_args>(),
        )
    };
    match ret {
        ..0 => Err(io::Error::last_os_error()),
        0 => {
            // SAFETY: closing this process's copy of the write end (a descriptor it owns), so
            // EOF arrives once the parent drops its copy.
            unsafe { libc::close(release_fd) };
            let mut byte = 0u8;
            loop {
                // SAFETY: a raw read into `byte`, which outlives the call, from a descriptor
                // this process owns. EOF (or a stray byte) ends the wait; EINTR repeats it.
                let read = unsafe { libc::read(wait_fd, (&raw mut byte).cast(), 1) };
                if read >= 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                    break;
                }
            }
            exit_immediately(0)
        }
        pid => {
            // SAFETY: the kernel just stored this clone's pidfd in `pidfd` (CLONE_PIDFD).
            let (pid, pidfd) = unsafe { clone_parent_side(pid, pidfd) }?;
            drop(wait_end);
            Ok(ParkedProcess {
                pid,
                pidfd,
                release,
            })
        }
    }
}

/// A new user namespace with the `uid_map` and `gid_map` lines given (`"0 100000 65536\n"`),
/// held by the returned descriptor alone: its holder process (see
/// [`park_in_new_user_namespace`]) has exited and been reaped. For idmapped mounts.
pub fn new_user_namespace(uid_map: &str, gid_map: &str) -> io::Result<OwnedFd> {
    let parked = park_in_new_user_namespace(NewNamespaces::default())?;
    let proc_dir = format!("/proc/{}", parked.pid.as_raw_nonzero());
    let opened = (|| {
        std::fs::write(format!("{proc_dir}/uid_map"), uid_map)?;
        std::fs::write(format!("{proc_dir}/gid_map"), gid_map)?;
        Ok::<_, io::Error>(OwnedFd::from(std::fs::File::open(format!(
            "{proc_dir}/ns/user"
        ))?))
    })();
    drop(parked.release);
    reap(parked.pidfd.as_fd())?;
    opened
}

/// Waits for the exited child behind `pidfd` and reaps it.
pub fn reap(pidfd: BorrowedFd<'_>) -> io::Result<()> {
    loop {
        match rustix::process::waitid(
            rustix::process::WaitId::PidFd(pidfd),
            rustix::process::WaitIdOptions::EXITED,
        ) {
            Err(Errno::INTR) => continue,
            Err(errno) => return Err(errno.into()),
            Ok(_) => return Ok(()),
        }
    }
}

/// `mount_setattr(2)`: changes the attributes (`MOUNT_ATTR_*`) and propagation (`MS_SHARED`,
/// `MS_SLAVE`, `MS_PRIVATE`, `MS_UNBINDABLE` or 0) of the mount at `dirfd` + `path`.
/// `flags` takes `AT_EMPTY_PATH`, `AT_RECURSIVE`, `AT_SYMLINK_NOFOLLOW`.
pub fn mount_setattr(
    dirfd: BorrowedFd<'_>,
    path: &CStr,
    flags: u32,
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
) -> rustix::io::Result<()> {
    // SAFETY: `mount_attr` is a plain C struct for which all-zero bytes are a valid value.
    let mut attr: libc::mount_attr = unsafe { std::mem::zeroed() };
    attr.attr_set = attr_set;
    attr.attr_clr = attr_clr;
    attr.propagation = propagation;
    set_mount_attr(dirfd, path, flags, &attr)
}

/// A detached copy (`open_tree` with `OPEN_TREE_CLONE`) of the mount at `path` whose file
/// owners are seen through the id mappings of the user namespace `userns`
/// (`MOUNT_ATTR_IDMAP`): a file owned by id `k` on disk appears owned by the host id that `k`
/// maps to, so inside that namespace it appears owned by `k`. Attach it with `move_mount`.
///
/// Only the mount itself is idmapped (not its submounts). The kernel refuses to idmap an
/// overlay mount: idmap each layer and the upper/work directory, then stack the overlay.
pub fn idmapped_clone(path: &CStr, userns: BorrowedFd<'_>) -> rustix::io::Result<OwnedFd> {
    use rustix::mount::OpenTreeFlags;
    let tree = rustix::mount::open_tree(
        rustix::fs::CWD,
        path,
        OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
    )?;
    set_idmap(tree.as_fd(), userns, false)?;
    Ok(tree)
}

/// Idmaps the detached mount `tree` (a fresh `open_tree` clone, not yet attached) through the
/// user namespace `userns` (`MOUNT_ATTR_IDMAP`), and with `recursive` every mount below it.
pub fn set_idmap(
    tree: BorrowedFd<'_>,
    userns: BorrowedFd<'_>,
    recursive: bool,
) -> rustix::io::Result<()> {
    // SAFETY: `mount_attr` is a plain C struct for which all-zero bytes are a valid value.
    let mut attr: libc::mount_attr = unsafe { std::mem::zeroed() };
    attr.attr_set = libc::MOUNT_ATTR_IDMAP;
    attr.userns_fd = u64::try_from(userns.as_raw_fd()).map_err(|_| Errno::BADF)?;
    let mut flags = libc::AT_EMPTY_PATH as u32;
    if recursive {
        flags |= libc::AT_RECURSIVE as u32;
    }
    set_mount_attr(tree, c"", flags, &attr)
}

fn set_mount_attr(
    dirfd: BorrowedFd<'_>,
    path: &CStr,
    flags: u32,
    attr: &libc::mount_attr,
) -> rustix::io::Result<()> {
    // SAFETY: `path` is a NUL-terminated string and `attr` a valid `mount_attr` whose size we
    // pass; both outlive the call, and the kernel only reads them. `dirfd` is an open fd.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            dirfd.as_raw_fd(),
            path.as_ptr(),
            flags,
            std::ptr::from_ref(attr),
            size_of::<libc::mount_attr>(),
        )
    };
    if ret < 0 {
        return Err(last_errno());
    }
    Ok(())
}

/// Installs a seccomp BPF `program` on the calling thread with `SECCOMP_SET_MODE_FILTER` and
/// `flags` (`SECCOMP_FILTER_FLAG_*`).
///
/// The kernel requires either no_new_privs or `CAP_SYS_ADMIN`; unlike `seccompiler`'s own
/// installer this does not set no_new_privs, which the OCI spec controls separately.
pub fn install_seccomp_filter(
    program: &[seccompiler::sock_filter],
    flags: libc::c_ulong,
) -> rustix::io::Result<()> {
    let len = u16::try_from(program.len()).map_err(|_| Errno::INVAL)?;
    let fprog = libc::sock_fprog {
        len,
        // `seccompiler::sock_filter` is `#[repr(C)]` with the fields of `struct sock_filter`.
        filter: program.as_ptr().cast::<libc::sock_filter>().cast_mut(),
    };
    // SAFETY: `fprog` points to `len` valid instructions that outlive the call; the kernel
    // copies the program and never writes through the pointer.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            &raw const fprog,
        )
    };
    if ret < 0 {
        return Err(last_errno());
    }
    Ok(())
}

/// Marks every descriptor from `first` up close-on-exec (`close_range` with
/// `CLOSE_RANGE_CLOEXEC`), so that nothing but stdio crosses into the container's program
/// (CVE-2024-21626: a leaked directory fd gives a path back to the host).
pub fn mark_cloexec_from(first: u32) -> rustix::io::Result<()> {
    // SAFETY: with CLOSE_RANGE_CLOEXEC no descriptor is closed, only flagged, so no `OwnedFd`
    // in this process is invalidated.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if ret < 0 {
        return Err(last_errno());
    }
    Ok(())
}

/// Gives the calling process the signal state a new program expects: every disposition at
/// its default and nothing blocked. A monitor blocks signals for its signalfd and may ignore
/// some; both would otherwise survive `execve` into the container's program.
pub fn reset_signals() -> rustix::io::Result<()> {
    // The kernel's `struct sigaction` with every field zero: handler SIG_DFL, no flags, no
    // restorer, empty mask (the field order differs between architectures; zeros do not care).
    let default_action = [0u64; 4];
    for signal in 1..=libc::SIGRTMAX() {
        if signal == libc::SIGKILL || signal == libc::SIGSTOP {
            continue;
        }
        // SAFETY: the raw rt_sigaction (glibc's wrapper refuses its reserved signals 32 and
        // 33) reads a zeroed kernel sigaction, 32 bytes, more than the kernel's struct on
        // x86_64 and aarch64; no old action is requested; the mask size is the kernel's (8).
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                signal,
                default_action.as_ptr(),
                std::ptr::null_mut::<u64>(),
                8usize,
            )
        };
    }
    // SAFETY: `empty` is a valid, initialised `sigset_t`; the old mask is not requested.
    let ret = unsafe {
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&raw mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &raw const empty, std::ptr::null_mut())
    };
    if ret < 0 {
        return Err(last_errno());
    }
    Ok(())
}

/// `dup2(fd, target)`: makes `target` (0, 1 or 2 in practice) a copy of `fd`, without the
/// close-on-exec flag.
pub fn dup2_raw(fd: BorrowedFd<'_>, target: RawFd) -> rustix::io::Result<()> {
    // SAFETY: `fd` is an open descriptor for the duration of the call. Replacing `target`
    // closes whatever it was; the callers pass only the stdio numbers 0-2, which no `OwnedFd`
    // of this process owns (the plan keeps its descriptors above 2).
    let ret = unsafe { libc::dup2(fd.as_raw_fd(), target) };
    if ret < 0 {
        return Err(last_errno());
    }
    Ok(())
}

/// Makes the terminal on fd 0 the controlling terminal of the calling process, which must be
/// a session leader without one (`ioctl(0, TIOCSCTTY, 1)`). The terminal is taken over even
/// if it is another session's (which needs `CAP_SYS_ADMIN`): the caller handed it to this
/// process, and may well hold it as its own controlling terminal (an exec helper started on
/// a terminal).
pub fn set_controlling_terminal_to_stdin() -> rustix::io::Result<()> {
    // SAFETY: TIOCSCTTY takes an integer argument (1: take it over) and reads or writes no
    // memory of ours; an fd 0 that is closed or no terminal only makes the call fail.
    let ret = unsafe { libc::ioctl(0, libc::TIOCSCTTY, 1) };
    if ret < 0 {
        return Err(last_errno());
    }
    Ok(())
}

/// Whether the process a pidfd refers to has exited (its pidfd is readable; a zombie
/// counts as exited). Checked after reading `/proc/<pid>/...`: if the process still lives,
/// what was read belongs to it and not to a later process that reused its pid.
pub fn pidfd_exited(pidfd: BorrowedFd<'_>) -> io::Result<bool> {
    let mut poll = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: `poll` is one valid, exclusively borrowed `pollfd` that outlives the call,
        // and we pass a count of 1; a timeout of 0 never blocks.
        let ret = unsafe { libc::poll(&raw mut poll, 1, 0) };
        match ret {
            ..0 if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) => continue,
            ..0 => return Err(io::Error::last_os_error()),
            0 => return Ok(false),
            _ => return Ok(poll.revents & (libc::POLLIN | libc::POLLHUP) != 0),
        }
    }
}

/// A NULL-terminated array of C strings for `execve`, built before the fork so that the
/// child need not allocate.
pub struct CStringArray {
    strings: Vec<CString>,
    pointers: Vec<*const libc::c_char>,
}

impl CStringArray {
    /// The array of `strings`.
    pub fn new(strings: Vec<CString>) -> CStringArray {
        // Each CString's bytes live in their own heap block, so these pointers stay valid
        // however `strings` moves.
        let pointers = strings
            .iter()
            .map(|s| s.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        CStringArray { strings, pointers }
    }

    /// The strings, without the terminating NULL.
    pub fn strings(&self) -> &[CString] {
        &self.strings
    }
}

impl std::fmt::Debug for CStringArray {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(&self.strings).finish()
    }
}

/// `execve(2)`; returns only on failure, with the error.
pub fn execve(path: &CStr, argv: &CStringArray, envp: &CStringArray) -> Errno {
    // SAFETY: `path` is NUL-terminated; `argv` and `envp` are NULL-terminated arrays of
    // pointers to NUL-terminated strings owned by the arrays, which outlive the call.
    unsafe {
        libc::execve(
            path.as_ptr(),
            argv.pointers.as_ptr(),
            envp.pointers.as_ptr(),
        )
    };
    last_errno()
}

/// The calling thread's `errno`, without allocating.
fn last_errno() -> Errno {
    Errno::from_raw_os_error(
        io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO),
    )
}

/// Ends the calling process at once with `code`, running no exit handlers and flushing no
/// buffers: what a forked child that failed before `execve` must do.
pub fn exit_immediately(code: i32) -> ! {
    // SAFETY: `_exit` takes no pointers and never returns; skipping atexit handlers and
    // destructors is the point (they belong to the parent's copy of the state).
    unsafe { libc::_exit(code) }
}

/// Test support: running a test body in a forked, single-threaded child process.
#[cfg(test)]
pub mod test_support {
    use std::io::{Read, Write};

    /// Forks a child that runs `body` and exits with the code it returns (or 101 if it
    /// panics), and returns its pid at once; the caller must reap it. Only for use inside
    /// [`in_child_process`] (whose child is single-threaded), for example to stand in for a
    /// helper process the test then kills.
    pub fn fork_running(body: impl FnOnce() -> i32) -> Result<rustix::process::Pid, String> {
        // SAFETY: as in `in_child_process`: the child runs `body` and `_exit`s without
        // returning into the caller's frames; the caller is single-threaded, so no lock is
        // held by a thread missing from the child.
        let pid = unsafe { libc::fork() };
        match pid {
            ..0 => Err(format!("fork: {}", super::io::Error::last_os_error())),
            0 => {
                let code =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).unwrap_or(101);
                super::exit_immediately(code)
            }
            pid => rustix::process::Pid::from_raw(pid).ok_or_else(|| "bad pid".to_owned()),
        }
    }

    /// Runs `body` in a forked child of the (multi-threaded) test process and returns what it
    /// returned; a panic in the child becomes an error. The container tests need this because
    /// `launch` refuses to clone a multi-threaded process, and because every mount and
    /// namespace they make must die with a process of their own.
    ///
    /// The body must not print or touch the environment: a lock of the standard streams or of
    /// the environment held by another test thread at the fork stays held in the child.
    pub fn in_child_process(body: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
        let (mut reader, mut writer) = std::io::pipe().map_err(|e| format!("pipe: {e}"))?;
        // SAFETY: the child only runs `body` and `_exit`s, never returning into the test
        // harness. glibc's fork resets its allocator locks in the child, so the body may
        // allocate; the locks it must not touch are named in the doc comment above.
        let pid = unsafe { libc::fork() };
        match pid {
            ..0 => Err(format!("fork: {}", super::io::Error::last_os_error())),
            0 => {
                drop(reader);
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body))
                    .unwrap_or_else(|_| Err("the test body panicked".to_owned()));
                let code = match outcome {
                    Ok(()) => 0,
                    Err(message) => {
                        let _ = writer.write_all(message.as_bytes());
                        1
                    }
                };
                super::exit_immediately(code)
            }
            pid => {
                drop(writer);
                let mut message = String::new();
                let read = reader.read_to_string(&mut message);
                let pid = rustix::process::Pid::from_raw(pid).ok_or("bad pid")?;
                let status =
                    rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty())
                        .map_err(|e| format!("waitpid: {e}"))?
                        .map(|(_, status)| status);
                read.map_err(|e| format!("read the child's result: {e}"))?;
                let outcome = match status.and_then(|status| status.exit_status()) {
                    Some(0) => Ok(()),
                    _ if !message.is_empty() => Err(message),
                    _ => Err(format!("test child ended with {status:?}")),
                };
                if let Err(message) = &outcome {
                    // Straight to the process's stderr, past the harness's capture: a CI log
                    // that shows only the lines around "FAILED" then still shows why.
                    let _ = writeln!(std::io::stderr(), "test child failed: {message}");
                }
                outcome
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idmapped_clone_shows_owners_through_the_namespace_maps() {
        if !rustix::process::geteuid().is_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("root-file"), b"").unwrap();
        std::fs::write(dir.path().join("user-file"), b"").unwrap();
        rustix::fs::chown(
            dir.path().join("user-file"),
            Some(rustix::fs::Uid::from_raw(5)),
            Some(rustix::fs::Gid::from_raw(7)),
        )
        .unwrap();
        let userns = new_user_namespace("0 100000 65536\n", "0 200000 65536\n").unwrap();
        let path = CString::new(dir.path().as_os_str().as_encoded_bytes()).unwrap();
        let tree = idmapped_clone(&path, userns.as_fd()).unwrap();
        let owner = |name: &str| {
            let stat = rustix::fs::statat(&tree, name, rustix::fs::AtFlags::empty()).unwrap();
            (stat.st_uid, stat.st_gid)
        };
        assert_eq!(owner("root-file"), (100_000, 200_000));
        assert_eq!(owner("user-file"), (100_005, 200_007));
        // On disk, and through the original path, nothing changed.
        let plain = rustix::fs::stat(dir.path().join("user-file")).unwrap();
        assert_eq!((plain.st_uid, plain.st_gid), (5, 7));
    }

    #[test]
    fn loopback_comes_up_in_a_fresh_namespace() {
        if !rustix::process::geteuid().is_root() {
            return;
        }
        let up = std::thread::spawn(|| {
            unshare_thread(NewNamespaces {
                net: true,
                ..NewNamespaces::default()
            })?;
            set_loopback_up()?;
            let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
            std::net::TcpStream::connect(listener.local_addr()?).map(drop)
        })
        .join()
        .expect("thread");
        up.expect("loopback reachable in the new netns");
    }
}
