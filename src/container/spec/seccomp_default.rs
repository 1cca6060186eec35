//! Carrack's `RuntimeDefault` seccomp profile: an allowlist written for carrack, in the spirit
//! of containerd 2's and Docker's defaults.
//!
//! - Everything not listed fails with `EPERM`.
//! - [`ALLOWED`] holds the system calls ordinary programs make (files, memory, processes,
//!   signals, time, sockets, System V and POSIX IPC), grouped by purpose.
//! - [`BY_CAPABILITY`] holds calls that only make sense with a capability the kernel checks
//!   anyway (`mount` with `CAP_SYS_ADMIN`, `reboot` with `CAP_SYS_BOOT`...): they are allowed
//!   only when the container is granted that capability, which keeps the attack surface of
//!   unprivileged containers small.
//! - `clone` may not create namespaces (any `CLONE_NEW*` flag) without `CAP_SYS_ADMIN`, and
//!   `clone3`, whose flags live in memory a filter cannot read, returns `ENOSYS` so that glibc
//!   and musl fall back to `clone`; with `CAP_SYS_ADMIN` both are allowed.
//! - `personality` is allowed only for the harmless personas (Linux, 32-bit Linux, UNAME26,
//!   and the query `0xffffffff`).
//! - Denied on purpose: `io_uring_setup`, `io_uring_enter` and `io_uring_register` (a large,
//!   frequently exploited kernel surface that bypasses the other rules), the keyring calls
//!   (`add_key`, `keyctl`, `request_key`: not namespaced), `kexec_*`, `pivot_root`, swap,
//!   `ustat`, `sysfs`, `_sysctl`, `uselib`, `vm86`, and the obsolete module calls.
//!
//! Names unknown on the running architecture (32-bit or other-architecture calls listed for
//! completeness) are skipped by the executor's compiler.

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompOperator, LinuxSyscall,
};

use super::SpecError;
use super::capabilities::bit;

/// The `CLONE_NEW*` flags: NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET.
pub const CLONE_NAMESPACE_FLAGS: u64 =
    0x0002_0000 | 0x0200_0000 | 0x0400_0000 | 0x0800_0000 | 0x1000_0000 | 0x2000_0000 | 0x4000_0000;

/// The `personality(2)` values allowed: `PER_LINUX`, `PER_LINUX32`, `UNAME26`,
/// `PER_LINUX32 | UNAME26`, and the query.
pub const ALLOWED_PERSONAS: [u64; 5] = [0x0, 0x8, 0x2_0000, 0x2_0008, 0xffff_ffff];

/// System calls any container may make.
pub const ALLOWED: &[&str] = &[
    // Reading and writing files and descriptors.
    "access",
    "arm_fadvise64_64",
    "arm_sync_file_range",
    "cachestat",
    "close",
    "close_range",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "flock",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "ioctl",
    "_llseek",
    "lseek",
    "memfd_create",
    "open",
    "openat",
    "openat2",
    "pipe",
    "pipe2",
    "pread64",
    "preadv",
    "preadv2",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readv",
    "sendfile",
    "sendfile64",
    "splice",
    "sync",
    "sync_file_range",
    "sync_file_range2",
    "syncfs",
    "tee",
    "truncate",
    "truncate64",
    "vmsplice",
    "write",
    "writev",
    // Names, directories and metadata.
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchown32",
    "fchownat",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "futimesat",
    "getcwd",
    "getdents",
    "getdents64",
    "lchown",
    "lchown32",
    "link",
    "linkat",
    "lstat",
    "lstat64",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "newfstatat",
    "readlink",
    "readlinkat",
    "rename",
    "renameat",
    "renameat2",
    "rmdir",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "umask",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    // Extended attributes.
    "fgetxattr",
    "flistxattr",
    "fremovexattr",
    "fsetxattr",
    "getxattr",
    "getxattrat",
    "lgetxattr",
    "listxattr",
    "listxattrat",
    "llistxattr",
    "lremovexattr",
    "lsetxattr",
    "removexattr",
    "removexattrat",
    "setxattr",
    "setxattrat",
    // File change notification.
    "fanotify_mark",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    // Waiting for events.
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "_newselect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "pselect6",
    "pselect6_time64",
    "select",
    "signalfd",
    "signalfd4",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    // Asynchronous I/O (the classic kind; io_uring stays denied).
    "io_cancel",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "io_setup",
    "io_submit",
    // Memory.
    "brk",
    "madvise",
    "map_shadow_stack",
    "membarrier",
    "memfd_secret",
    "mincore",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mremap",
    "mseal",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "remap_file_pages",
    // Processes and threads (clone, clone3 and personality have rules of their own).
    "arch_prctl",
    "breakpoint",
    "cacheflush",
    "capget",
    "capset",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "fork",
    "get_robust_list",
    "get_thread_area",
    "getcpu",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrlimit",
    "getrusage",
    "getsid",
    "gettid",
    "ioprio_get",
    "ioprio_set",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "modify_ldt",
    "pidfd_open",
    "pidfd_send_signal",
    "prctl",
    "prlimit64",
    "process_mrelease",
    "ptrace",
    "restart_syscall",
    "riscv_flush_icache",
    "riscv_hwprobe",
    "rseq",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "set_robust_list",
    "set_thread_area",
    "set_tid_address",
    "set_tls",
    "setpgid",
    "setpriority",
    "setrlimit",
    "setsid",
    "sysinfo",
    "ugetrlimit",
    "uname",
    "vfork",
    "wait4",
    "waitid",
    "waitpid",
    // Credentials.
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getuid",
    "getuid32",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setuid",
    "setuid32",
    // Signals and timers.
    "alarm",
    "getitimer",
    "kill",
    "pause",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "setitimer",
    "sigaltstack",
    "sigprocmask",
    "sigreturn",
    "tgkill",
    "tkill",
    // Time (setting clocks needs CAP_SYS_TIME below; adjtimex only reads without it).
    "adjtimex",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "gettimeofday",
    "nanosleep",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "times",
    // Futexes.
    "futex",
    "futex_requeue",
    "futex_time64",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    // Sockets.
    "accept",
    "accept4",
    "bind",
    "connect",
    "getpeername",
    "getsockname",
    "getsockopt",
    "listen",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "send",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setsockopt",
    "shutdown",
    "socket",
    "socketcall",
    "socketpair",
    // System V and POSIX IPC (both namespaced by the pod's IPC namespace).
    "ipc",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    // Randomness.
    "getrandom",
];

/// System calls allowed only to containers granted the capability (by bit number).
pub const BY_CAPABILITY: &[(u32, &[&str])] = &[
    (bit::DAC_READ_SEARCH, &["open_by_handle_at"]),
    (
        bit::SYS_ADMIN,
        &[
            "bpf",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "name_to_handle_at",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    (bit::SYS_BOOT, &["reboot"]),
    (bit::SYS_CHROOT, &["chroot"]),
    (
        bit::SYS_MODULE,
        &["delete_module", "finit_module", "init_module"],
    ),
    (bit::SYS_PACCT, &["acct"]),
    (
        bit::SYS_PTRACE,
        &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "userfaultfd",
        ],
    ),
    (bit::SYS_RAWIO, &["ioperm", "iopl"]),
    (
        bit::SYS_TIME,
        &[
            "clock_adjtime",
            "clock_adjtime64",
            "clock_settime",
            "clock_settime64",
            "settimeofday",
            "stime",
        ],
    ),
    (bit::SYS_TTY_CONFIG, &["vhangup"]),
    (
        bit::SYS_NICE,
        &[
            "get_mempolicy",
            "mbind",
            "move_pages",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
    ),
    (bit::SYSLOG, &["syslog"]),
    (bit::BPF, &["bpf"]),
    (bit::PERFMON, &["perf_event_open"]),
];

/// The native architecture first, then the compatibility ones its kernel also runs.
pub fn native_arches() -> Vec<Arch> {
    match std::env::consts::ARCH {
        "aarch64" => vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm],
        "riscv64" => vec![Arch::ScmpArchRiscv64],
        "s390x" => vec![Arch::ScmpArchS390x, Arch::ScmpArchS390],
        "powerpc64" => vec![Arch::ScmpArchPpc64le],
        _ => vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32],
    }
}

fn rule(
    names: &[&str],
    action: LinuxSeccompAction,
    args: Option<Vec<LinuxSeccompArg>>,
) -> LinuxSyscall {
    let mut syscall = LinuxSyscall::default();
    syscall
        .set_names(names.iter().map(|name| (*name).to_owned()).collect())
        .set_action(action)
        .set_errno_ret(None)
        .set_args(args);
    syscall
}

fn arg(
    index: usize,
    value: u64,
    value_two: Option<u64>,
    op: LinuxSeccompOperator,
) -> Result<LinuxSeccompArg, SpecError> {
    let builder = LinuxSeccompArgBuilder::default()
        .index(index)
        .value(value)
        .op(op);
    let builder = match value_two {
        Some(two) => builder.value_two(two),
        None => builder,
    };
    builder
        .build()
        .map_err(|err| SpecError::invalid("linux.seccomp", err.to_string()))
}

/// The default profile for a container granted the capabilities in `granted` (bit n =
/// capability n). (It fails only if `oci-spec` refused one of the fixed argument conditions.)
pub fn runtime_default_profile(granted: u64) -> Result<LinuxSeccomp, SpecError> {
    let has = |cap: u32| granted & (1 << cap) != 0;
    let mut allowed: Vec<&str> = ALLOWED.to_vec();
    for (cap, names) in BY_CAPABILITY {
        if has(*cap) {
            allowed.extend_from_slice(names);
        }
    }
    let sys_admin = has(bit::SYS_ADMIN);
    if sys_admin {
        allowed.extend_from_slice(&["clone", "clone3"]);
    }
    allowed.sort_unstable();
    allowed.dedup();

    let allow = LinuxSeccompAction::ScmpActAllow;
    let mut syscalls = vec![rule(&allowed, allow, None)];
    for persona in ALLOWED_PERSONAS {
        syscalls.push(rule(
            &["personality"],
            allow,
            Some(vec![arg(
                0,
                persona,
                None,
                LinuxSeccompOperator::ScmpCmpEq,
            )?]),
        ));
    }
    if !sys_admin {
        // clone(flags, ...) on x86_64 and aarch64: allowed when no CLONE_NEW* bit is set.
        syscalls.push(rule(
            &["clone"],
            allow,
            Some(vec![arg(
                0,
                CLONE_NAMESPACE_FLAGS,
                Some(0),
                LinuxSeccompOperator::ScmpCmpMaskedEq,
            )?]),
        ));
        let mut clone3 = rule(&["clone3"], LinuxSeccompAction::ScmpActErrno, None);
        clone3.set_errno_ret(Some(libc::ENOSYS as u32));
        syscalls.push(clone3);
    }

    let mut profile = LinuxSeccomp::default();
    profile
        .set_default_action(LinuxSeccompAction::ScmpActErrno)
        .set_default_errno_ret(Some(libc::EPERM as u32))
        .set_architectures(Some(native_arches()))
        .set_flags(None)
        .set_listener_path(None)
        .set_listener_metadata(None)
        .set_syscalls(Some(syscalls));
    Ok(profile)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::spec::capabilities::DEFAULT_CAPABILITIES;

    /// The rules naming `name`: `(action, errno, args)`.
    fn rules_for(
        profile: &LinuxSeccomp,
        name: &str,
    ) -> Vec<(LinuxSeccompAction, Option<u32>, Vec<LinuxSeccompArg>)> {
        profile
            .syscalls()
            .iter()
            .flatten()
            .filter(|rule| rule.names().iter().any(|n| n == name))
            .map(|rule| {
                (
                    rule.action(),
                    rule.errno_ret(),
                    rule.args().clone().unwrap_or_default(),
                )
            })
            .collect()
    }

    fn allowed_unconditionally(profile: &LinuxSeccomp, name: &str) -> bool {
        rules_for(profile, name)
            .iter()
            .any(|(action, _, args)| *action == LinuxSeccompAction::ScmpActAllow && args.is_empty())
    }

    #[test]
    fn the_lists_have_no_repeats_and_gated_calls_are_not_also_free() {
        let mut sorted = ALLOWED.to_vec();
        sorted.sort_unstable();
        let before = sorted.len();
        sorted.dedup();
        assert_eq!(before, sorted.len(), "a name is listed twice in ALLOWED");
        for (_, names) in BY_CAPABILITY {
            for name in *names {
                assert!(!ALLOWED.contains(name), "{name} is gated and free");
            }
        }
        for name in ["clone", "clone3", "personality"] {
            assert!(!ALLOWED.contains(&name), "{name} has its own rules");
        }
    }

    #[test]
    fn deny_by_default_with_eperm() {
        let profile = runtime_default_profile(DEFAULT_CAPABILITIES).expect("profile");
        assert_eq!(profile.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(profile.default_errno_ret(), Some(libc::EPERM as u32));
        assert_eq!(
            profile.architectures().as_ref().map(|a| a.first().copied()),
            Some(native_arches().first().copied())
        );
        assert!(allowed_unconditionally(&profile, "read"));
        assert!(
            allowed_unconditionally(&profile, "chroot"),
            "CAP_SYS_CHROOT is a default"
        );
    }

    #[test]
    fn io_uring_and_other_dangerous_calls_are_denied() {
        let everything = runtime_default_profile(u64::MAX).expect("profile");
        for name in [
            "io_uring_setup",
            "io_uring_enter",
            "io_uring_register",
            "keyctl",
            "add_key",
            "request_key",
            "kexec_load",
            "kexec_file_load",
            "pivot_root",
            "swapon",
            "ustat",
            "_sysctl",
        ] {
            assert!(
                rules_for(&everything, name).is_empty(),
                "{name} must stay denied"
            );
        }
    }

    #[test]
    fn clone3_gets_enosys_and_clone_cannot_make_namespaces() {
        let profile = runtime_default_profile(DEFAULT_CAPABILITIES).expect("profile");
        assert_eq!(
            rules_for(&profile, "clone3")
                .iter()
                .map(|(action, errno, _)| (*action, *errno))
                .collect::<Vec<_>>(),
            [(LinuxSeccompAction::ScmpActErrno, Some(libc::ENOSYS as u32))]
        );
        let clone = rules_for(&profile, "clone");
        assert_eq!(clone.len(), 1);
        let (action, _, args) = clone.first().expect("clone rule");
        assert_eq!(*action, LinuxSeccompAction::ScmpActAllow);
        let condition = args.first().expect("condition");
        assert_eq!(condition.op(), LinuxSeccompOperator::ScmpCmpMaskedEq);
        assert_eq!(condition.index(), 0);
        assert_eq!(condition.value(), 2_114_060_288, "Docker's well-known mask");
        assert_eq!(condition.value_two(), Some(0));
        for name in ["unshare", "setns", "mount", "sethostname"] {
            assert!(
                rules_for(&profile, name).is_empty(),
                "{name} needs CAP_SYS_ADMIN"
            );
        }
    }

    #[test]
    fn sys_admin_unlocks_namespaces_mounts_and_sethostname() {
        let profile =
            runtime_default_profile(DEFAULT_CAPABILITIES | 1 << bit::SYS_ADMIN).expect("profile");
        for name in [
            "clone",
            "clone3",
            "unshare",
            "setns",
            "mount",
            "umount2",
            "sethostname",
        ] {
            assert!(allowed_unconditionally(&profile, name), "{name}");
        }
        assert_eq!(
            rules_for(&profile, "clone").len(),
            1,
            "no restricted clone rule left"
        );
        assert_eq!(
            rules_for(&profile, "clone3").len(),
            1,
            "no ENOSYS rule left"
        );
    }

    #[test]
    fn capability_gated_groups() {
        let base = runtime_default_profile(DEFAULT_CAPABILITIES).expect("profile");
        let more = runtime_default_profile(
            DEFAULT_CAPABILITIES | 1 << bit::SYS_PTRACE | 1 << bit::SYS_TIME | 1 << bit::BPF,
        )
        .expect("profile");
        for name in ["process_vm_readv", "settimeofday", "bpf", "kcmp"] {
            assert!(rules_for(&base, name).is_empty(), "{name}");
            assert!(allowed_unconditionally(&more, name), "{name}");
        }
        assert!(!allowed_unconditionally(&more, "reboot"));
        let no_chroot = runtime_default_profile(DEFAULT_CAPABILITIES & !(1 << bit::SYS_CHROOT))
            .expect("profile");
        assert!(rules_for(&no_chroot, "chroot").is_empty());
    }

    #[test]
    fn personality_only_for_harmless_personas() {
        let profile = runtime_default_profile(DEFAULT_CAPABILITIES).expect("profile");
        let values: Vec<u64> = rules_for(&profile, "personality")
            .iter()
            .map(|(action, _, args)| {
                assert_eq!(*action, LinuxSeccompAction::ScmpActAllow);
                assert_eq!(args.len(), 1);
                let arg = args.first().expect("arg");
                assert_eq!(arg.op(), LinuxSeccompOperator::ScmpCmpEq);
                arg.value()
            })
            .collect();
        assert_eq!(values, ALLOWED_PERSONAS);
    }

    #[test]
    fn the_profile_round_trips_as_json() {
        let profile = runtime_default_profile(DEFAULT_CAPABILITIES).expect("profile");
        let json = serde_json::to_value(&profile).expect("json");
        assert_eq!(json["defaultAction"], "SCMP_ACT_ERRNO");
        let back: LinuxSeccomp = serde_json::from_value(json).expect("parse");
        assert_eq!(back, profile);
    }
}
