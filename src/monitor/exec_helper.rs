//! The exec helper, `carrack exec-in <container_dir> --pid <pid> [--tty] -- <argv>...`: runs
//! one more process in a running container and exits with its exit code. The daemon starts it
//! per `ExecSync` (and streaming exec) with the process's stdio as its own, and kills it on a
//! timeout; the process dies with it (see `executor::exec_in`).
//!
//! It reads the container's OCI spec from `<container_dir>/config.json`, puts `argv` and
//! `--tty` into its `process`, finds the container's cgroups from `/proc/<pid>/cgroup` and
//! the cgroup mounts in `/proc/self/mountinfo` ([`cgroup_procs_files`], pure), and calls the
//! executor. Single-threaded, no tokio, no logging: the caller reads stderr.
//!
//! Exit code contract: the process's own exit code, or 128 + the signal that killed it;
//! [`CANNOT_EXECUTE`] (126) when it could not be started (the reason on stderr), and
//! [`NOT_FOUND`] (127) when its program does not exist, as shells report them.

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use rustix::event::{PollFd, PollFlags};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

use super::protocol::CONFIG_FILE;
use crate::executor::{self, ExecRequest, ExecutorError, Exit, Stdio};

/// Exit code when the process could not be started.
pub const CANNOT_EXECUTE: u8 = 126;
/// Exit code when the program to execute does not exist.
pub const NOT_FOUND: u8 = 127;

/// What the helper was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecInArgs {
    /// The container's runtime directory (holding `config.json`).
    pub container_dir: PathBuf,
    /// The container's init pid (host PID namespace).
    pub pid: i32,
    /// Whether stdio is a terminal (`process.terminal`).
    pub tty: bool,
    /// The program and its arguments (`process.args`).
    pub argv: Vec<String>,
}

/// Why the helper could not start the process (or wait for it).
#[derive(Debug, thiserror::Error)]
pub enum ExecHelperError {
    /// A file could not be read.
    #[error("read {}: {source}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: io::Error,
    },
    /// The container's spec is not valid JSON for an OCI runtime spec.
    #[error("parse {}: {source}", .path.display())]
    ParseSpec {
        /// The spec file.
        path: PathBuf,
        /// The failure.
        source: serde_json::Error,
    },
    /// The container's spec has no `process` to take the user, capabilities... from.
    #[error("{}: no process in the spec", .path.display())]
    NoProcess {
        /// The spec file.
        path: PathBuf,
    },
    /// A line of a `/proc/<pid>/cgroup` file is not `id:controllers:path`.
    #[error("{}: line {line}: not a cgroup membership: {text:?}", .path.display())]
    CgroupLine {
        /// The file.
        path: PathBuf,
        /// The line number, from 1.
        line: usize,
        /// The line.
        text: String,
    },
    /// One of the helper's own stdio descriptors could not be duplicated.
    #[error("duplicate {name}: {source}")]
    Stdio {
        /// `stdin`, `stdout` or `stderr`.
        name: &'static str,
        /// The failure.
        source: io::Error,
    },
    /// The executor could not start the process.
    #[error(transparent)]
    Executor(#[from] ExecutorError),
    /// Waiting for the process failed.
    #[error("wait for process {pid}: {source}")]
    Wait {
        /// Its pid.
        pid: i32,
        /// The failure.
        source: io::Error,
    },
}

impl ExecHelperError {
    /// The helper's exit code for this failure: [`NOT_FOUND`] when the program does not
    /// exist, else [`CANNOT_EXECUTE`].
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Executor(err) if err.program_not_found() => NOT_FOUND,
            _ => CANNOT_EXECUTE,
        }
    }
}

/// Runs the helper: starts the process, waits for it and returns the exit code to exit with
/// (see the module doc); a failure is printed on stderr.
pub fn run(args: ExecInArgs) -> u8 {
    match execute(&args) {
        Ok(exit) => exit_code(exit),
        Err(err) => {
            // The daemon passes this on as the exec's stderr.
            eprintln!("carrack exec-in: {err}");
            err.exit_code()
        }
    }
}

/// The shell's exit code for how a process ended: its code, or 128 + the signal.
pub fn exit_code(exit: Exit) -> u8 {
    let code = match exit {
        Exit::Code(code) => code,
        Exit::Signal(signal) => 128 + signal,
    };
    u8::try_from(code & 0xff).unwrap_or(CANNOT_EXECUTE)
}

fn execute(args: &ExecInArgs) -> Result<Exit, ExecHelperError> {
    let spec = load_spec(&args.container_dir.join(CONFIG_FILE), args)?;
    let cgroup_path = PathBuf::from(format!("/proc/{}/cgroup", args.pid));
    let memberships = read(&cgroup_path)?;
    let own_cgroup_path = Path::new("/proc/self/cgroup");
    let own_memberships = read(own_cgroup_path)?;
    let mountinfo_path = Path::new("/proc/self/mountinfo");
    let mountinfo = read(mountinfo_path)?;
    let cgroup_procs_files = cgroup_procs_files(
        (&cgroup_path, &memberships),
        (own_cgroup_path, &own_memberships),
        &mountinfo,
    )?;
    let stdio = Stdio {
        stdin: duplicate("stdin", io::stdin().as_fd())?,
        stdout: duplicate("stdout", io::stdout().as_fd())?,
        stderr: duplicate("stderr", io::stderr().as_fd())?,
    };
    // SIGTERM (the daemon's "time is up") and SIGINT arrive on a signalfd: the helper then
    // kills the command and reaps it before it exits, so no zombie is left in the container.
    // The executor's child resets the mask, so the command itself gets signals normally.
    let mut stop_signals = SigSet::empty();
    stop_signals.add(Signal::SIGTERM);
    stop_signals.add(Signal::SIGINT);
    let stop = stop_signals
        .thread_block()
        .and_then(|()| {
            SignalFd::with_flags(
                &stop_signals,
                SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK,
            )
        })
        .ok();
    let launched = executor::exec_in(ExecRequest {
        spec,
        target_pid: args.pid,
        stdio,
        cgroup_procs_files,
    })?;
    let wait_error = |source| ExecHelperError::Wait {
        pid: launched.pid.as_raw_nonzero().get(),
        source,
    };
    if let Some(stop) = stop {
        loop {
            let mut fds = [
                PollFd::new(&launched.pidfd, PollFlags::IN),
                PollFd::new(&stop, PollFlags::IN),
            ];
            match rustix::event::poll(&mut fds, None) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(errno) => return Err(wait_error(errno.into())),
            }
            if fds[0].revents().contains(PollFlags::IN) {
                break;
            }
            if fds[1].revents().contains(PollFlags::IN) {
                let _ = rustix::process::pidfd_send_signal(
                    &launched.pidfd,
                    rustix::process::Signal::KILL,
                );
                break;
            }
        }
    }
    launched.wait().map_err(wait_error)
}

/// The container's spec with `args` and `terminal` of the exec.
fn load_spec(path: &Path, args: &ExecInArgs) -> Result<Spec, ExecHelperError> {
    let bytes = std::fs::read(path).map_err(|source| ExecHelperError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut spec: Spec =
        serde_json::from_slice(&bytes).map_err(|source| ExecHelperError::ParseSpec {
            path: path.to_owned(),
            source,
        })?;
    let mut process = spec
        .process()
        .clone()
        .ok_or_else(|| ExecHelperError::NoProcess {
            path: path.to_owned(),
        })?;
    process.set_args(Some(args.argv.clone()));
    process.set_terminal(Some(args.tty));
    spec.set_process(Some(process));
    Ok(spec)
}

fn read(path: &Path) -> Result<String, ExecHelperError> {
    std::fs::read_to_string(path).map_err(|source| ExecHelperError::Read {
        path: path.to_owned(),
        source,
    })
}

/// A copy of one of our stdio descriptors for the process; `None` (the process inherits the
/// closed slot) when we were started without it.
fn duplicate(
    name: &'static str,
    fd: std::os::fd::BorrowedFd<'_>,
) -> Result<Option<OwnedFd>, ExecHelperError> {
    match fd.try_clone_to_owned() {
        Ok(fd) => Ok(Some(fd)),
        Err(err) if err.raw_os_error() == Some(libc::EBADF) => Ok(None),
        Err(source) => Err(ExecHelperError::Stdio { name, source }),
    }
}

/// One line of `/proc/<pid>/cgroup`: the process's cgroup in one hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupMembership {
    /// The hierarchy id (0 for the unified hierarchy).
    pub hierarchy: u32,
    /// The v1 controllers (`cpu`, `cpuacct`, `name=systemd`); empty for the unified one.
    pub controllers: Vec<String>,
    /// The cgroup, relative to the hierarchy's root as seen from our cgroup namespace.
    pub path: String,
}

/// Parses `/proc/<pid>/cgroup` (`id:controllers:path` per line; `0::/path` for v2).
pub fn parse_proc_cgroup(
    source: &Path,
    text: &str,
) -> Result<Vec<CgroupMembership>, ExecHelperError> {
    let mut memberships = Vec::new();
    for (at, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let bad = || ExecHelperError::CgroupLine {
            path: source.to_owned(),
            line: at + 1,
            text: line.to_owned(),
        };
        // The path is last and may itself contain colons.
        let mut fields = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            return Err(bad());
        };
        let hierarchy = id.parse().map_err(|_| bad())?;
        if !path.starts_with('/') {
            return Err(bad());
        }
        memberships.push(CgroupMembership {
            hierarchy,
            controllers: controllers
                .split(',')
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect(),
            path: path.to_owned(),
        });
    }
    Ok(memberships)
}

/// A cgroup filesystem mount, from `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupMount {
    /// `cgroup2` (unified) rather than `cgroup` (v1).
    pub unified: bool,
    /// The cgroup at the root of the mount, relative to the hierarchy's root.
    pub root: String,
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// The superblock options (for v1 they name the controllers: `rw,cpu,cpuacct`).
    pub options: Vec<String>,
}

/// The cgroup and cgroup2 mounts listed in a mountinfo text, in order.
pub fn cgroup_mounts(mountinfo: &str) -> Vec<CgroupMount> {
    let mut mounts = Vec::new();
    for line in mountinfo.lines() {
        // `id parent major:minor root mount_point options [optional...] - fstype source super`
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mut left = left.split(' ');
        let (Some(root), Some(mount_point)) = (left.nth(3), left.next()) else {
            continue;
        };
        let mut right = right.split(' ');
        let (Some(fstype), Some(_source), Some(options)) =
            (right.next(), right.next(), right.next())
        else {
            continue;
        };
        let unified = match fstype {
            "cgroup2" => true,
            "cgroup" => false,
            _ => continue,
        };
        mounts.push(CgroupMount {
            unified,
            root: unescape(root),
            mount_point: PathBuf::from(unescape(mount_point)),
            options: options.split(',').map(str::to_owned).collect(),
        });
    }
    mounts
}

/// Undoes mountinfo's octal escapes (`\040` for a space, `\011`, `\012`, `\134`).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while let Some(&byte) = bytes.get(at) {
        let octal = bytes
            .get(at + 1..at + 4)
            .filter(|digits| byte == b'\\' && digits.iter().all(|d| (b'0'..=b'7').contains(d)))
            .and_then(|digits| {
                let text = std::str::from_utf8(digits).ok()?;
                u8::from_str_radix(text, 8).ok()
            });
        match octal {
            Some(decoded) => {
                out.push(decoded);
                at += 4;
            }
            None => {
                out.push(byte);
                at += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The files that put a new process into the cgroups of `target` (`/proc/<pid>/cgroup`
/// of the container's process: its path and text), found through the cgroup mounts of
/// `mountinfo`: for each hierarchy the first mount of it (v1: one offering all its
/// controllers; v2: a cgroup2 mount) whose root contains the cgroup. On v1 that is the
/// `tasks` file, which the new process writes itself (it skips an RCU grace period, see
/// [`executor::LaunchRequest::cgroup_procs_files`]); on v2 `cgroup.procs`.
///
/// Skipped: hierarchies that are not mounted (a process cannot be moved in them, nor can
/// it escape through them), and cgroups the helper itself is in (`own`, its
/// `/proc/self/cgroup`), which the new process inherits anyway: on a hybrid host the
/// container shares the monitor's cgroup of the unified and `name=systemd` hierarchies,
/// and a write there would wait for the grace period for nothing.
pub fn cgroup_procs_files(
    (source, target): (&Path, &str),
    (own_source, own): (&Path, &str),
    mountinfo: &str,
) -> Result<Vec<PathBuf>, ExecHelperError> {
    let memberships = parse_proc_cgroup(source, target)?;
    let own = parse_proc_cgroup(own_source, own)?;
    let mounts = cgroup_mounts(mountinfo);
    let mut files = Vec::new();
    for membership in memberships.iter().filter(|m| !own.contains(m)) {
        let unified = membership.hierarchy == 0 && membership.controllers.is_empty();
        let file_name = if unified {
            "cgroup.procs"
        } else {
            executor::OWN_CGROUP_FILE
        };
        let file = mounts
            .iter()
            .filter(|mount| mount.unified == unified)
            .filter(|mount| {
                membership
                    .controllers
                    .iter()
                    .all(|controller| mount.options.contains(controller))
            })
            .find_map(|mount| {
                let below = below_root(&membership.path, &mount.root)?;
                Some(mount.mount_point.join(below).join(file_name))
            });
        if let Some(file) = file.filter(|file| !files.contains(file)) {
            files.push(file);
        }
    }
    Ok(files)
}

/// `path` relative to `root` (both absolute cgroup paths), or `None` when it is not below it.
fn below_root<'a>(path: &'a str, root: &str) -> Option<&'a str> {
    let root = root.trim_end_matches('/');
    let rest = path.strip_prefix(root)?;
    if !rest.is_empty() && !rest.starts_with('/') {
        // `/a/bc` is not below `/a/b`.
        return None;
    }
    Some(rest.trim_start_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID_MOUNTINFO: &str = "\
22 1 0:21 / /proc rw,nosuid - proc proc rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
90 35 0:32 /kubepods /mnt/kube\\040pods rw - cgroup cgroup rw,memory
";

    fn files(cgroup: &str, mountinfo: &str) -> Vec<String> {
        files_for(cgroup, "", mountinfo)
    }

    fn files_for(cgroup: &str, own: &str, mountinfo: &str) -> Vec<String> {
        cgroup_procs_files(
            (Path::new("/proc/7/cgroup"), cgroup),
            (Path::new("/proc/self/cgroup"), own),
            mountinfo,
        )
        .expect("parsed")
        .into_iter()
        .map(|path| path.display().to_string())
        .collect()
    }

    #[test]
    fn proc_cgroup_lines_are_parsed() {
        let text = "12:cpu,cpuacct:/kubepods/pod1/c1\n1:name=systemd:/x:y\n0::/\n";
        let parsed = parse_proc_cgroup(Path::new("p"), text).expect("parsed");
        assert_eq!(
            parsed,
            [
                CgroupMembership {
                    hierarchy: 12,
                    controllers: vec!["cpu".to_owned(), "cpuacct".to_owned()],
                    path: "/kubepods/pod1/c1".to_owned(),
                },
                CgroupMembership {
                    hierarchy: 1,
                    controllers: vec!["name=systemd".to_owned()],
                    path: "/x:y".to_owned(),
                },
                CgroupMembership {
                    hierarchy: 0,
                    controllers: vec![],
                    path: "/".to_owned(),
                },
            ]
        );
        let err = parse_proc_cgroup(Path::new("/proc/7/cgroup"), "0::/\nnonsense\n")
            .expect_err("a bad line");
        assert_eq!(
            err.to_string(),
            "/proc/7/cgroup: line 2: not a cgroup membership: \"nonsense\""
        );
        assert!(parse_proc_cgroup(Path::new("p"), "x:cpu:/a").is_err());
        assert!(parse_proc_cgroup(Path::new("p"), "3:cpu:relative").is_err());
    }

    #[test]
    fn cgroup_mounts_are_found_in_mountinfo() {
        let mounts = cgroup_mounts(HYBRID_MOUNTINFO);
        let summary: Vec<String> = mounts
            .iter()
            .map(|m| {
                format!(
                    "{} {} {} {}",
                    if m.unified { "v2" } else { "v1" },
                    m.root,
                    m.mount_point.display(),
                    m.options.join(",")
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                "v1 / /sys/fs/cgroup/cpu,cpuacct rw,cpu,cpuacct",
                "v1 / /sys/fs/cgroup/memory rw,memory",
                "v1 / /sys/fs/cgroup/pids rw,pids",
                "v1 / /sys/fs/cgroup/systemd rw,xattr,name=systemd",
                "v2 / /sys/fs/cgroup/unified rw",
                "v1 /kubepods /mnt/kube pods rw,memory",
            ]
        );
        assert!(cgroup_mounts("garbage\n\n1 2 3 - cgroup\n").is_empty());
    }

    #[test]
    fn v1_and_hybrid_memberships_map_to_each_hierarchy_mount() {
        let cgroup = "\
12:pids:/kubepods/pod1/c1
4:memory:/kubepods/pod1/c1
3:cpu,cpuacct:/kubepods/pod1/c1
2:blkio:/kubepods/pod1/c1
1:name=systemd:/system.slice/x.scope
0::/system.slice/x.scope
";
        assert_eq!(
            files(cgroup, HYBRID_MOUNTINFO),
            [
                "/sys/fs/cgroup/pids/kubepods/pod1/c1/tasks",
                "/sys/fs/cgroup/memory/kubepods/pod1/c1/tasks",
                "/sys/fs/cgroup/cpu,cpuacct/kubepods/pod1/c1/tasks",
                // blkio is not mounted: skipped.
                "/sys/fs/cgroup/systemd/system.slice/x.scope/tasks",
                "/sys/fs/cgroup/unified/system.slice/x.scope/cgroup.procs",
            ]
        );
    }

    #[test]
    fn cgroups_the_helper_is_already_in_are_left_alone() {
        // The usual hybrid case: the container shares the monitor's (and so the helper's)
        // cgroup of the named and unified hierarchies, and has its own v1 controller ones.
        let target = "\
12:pids:/kubepods/pod1/c1
1:name=systemd:/system.slice/carrack.service
0::/system.slice/carrack.service
";
        let own = "\
12:pids:/system.slice/carrack.service
1:name=systemd:/system.slice/carrack.service
0::/system.slice/carrack.service
";
        assert_eq!(
            files_for(target, own, HYBRID_MOUNTINFO),
            ["/sys/fs/cgroup/pids/kubepods/pod1/c1/tasks"]
        );
        // Same path in another hierarchy is not the same cgroup.
        assert_eq!(
            files_for("0::/a\n", "1:name=systemd:/a\n", HYBRID_MOUNTINFO),
            ["/sys/fs/cgroup/unified/a/cgroup.procs"]
        );
    }

    #[test]
    fn a_mount_of_a_subtree_is_used_only_for_cgroups_below_its_root() {
        let mountinfo = "\
90 35 0:32 /kubepods /mnt/kube\\040pods rw - cgroup cgroup rw,memory
91 35 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
";
        assert_eq!(
            files("4:memory:/kubepods/pod1\n", mountinfo),
            ["/mnt/kube pods/pod1/tasks"]
        );
        assert_eq!(
            files("4:memory:/kubepods2/pod1\n", mountinfo),
            ["/sys/fs/cgroup/memory/kubepods2/pod1/tasks"]
        );
        assert_eq!(
            files("4:memory:/kubepods\n", mountinfo),
            ["/mnt/kube pods/tasks"]
        );
    }

    #[test]
    fn a_unified_host_has_one_file() {
        let mountinfo = "30 23 0:27 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            files("0::/kubepods.slice/cri-c1.scope\n", mountinfo),
            ["/sys/fs/cgroup/kubepods.slice/cri-c1.scope/cgroup.procs"]
        );
        assert_eq!(files("0::/\n", mountinfo), ["/sys/fs/cgroup/cgroup.procs"]);
        assert!(files("0::/\n", "").is_empty(), "nothing mounted");
    }

    #[test]
    fn exit_codes_follow_the_shell() {
        assert_eq!(exit_code(Exit::Code(0)), 0);
        assert_eq!(exit_code(Exit::Code(3)), 3);
        assert_eq!(exit_code(Exit::Signal(9)), 137);
        assert_eq!(exit_code(Exit::Signal(15)), 143);
        let missing = ExecHelperError::Executor(ExecutorError::Exec {
            program: "/bin/nope".to_owned(),
            source: io::Error::from_raw_os_error(libc::ENOENT),
        });
        assert_eq!(missing.exit_code(), NOT_FOUND);
        let denied = ExecHelperError::Executor(ExecutorError::Exec {
            program: "/etc".to_owned(),
            source: io::Error::from_raw_os_error(libc::EACCES),
        });
        assert_eq!(denied.exit_code(), CANNOT_EXECUTE);
        let no_spec = ExecHelperError::NoProcess {
            path: PathBuf::from("/run/c/config.json"),
        };
        assert_eq!(no_spec.exit_code(), CANNOT_EXECUTE);
    }

    #[test]
    fn the_spec_gets_the_exec_args_and_tty() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join(CONFIG_FILE);
        let args = ExecInArgs {
            container_dir: dir.path().to_owned(),
            pid: 1,
            tty: true,
            argv: vec!["ls".to_owned(), "-l".to_owned()],
        };
        std::fs::write(
            &path,
            r#"{"ociVersion": "1.0.2", "root": {"path": "rootfs"},
                "process": {"args": ["sleep", "30"], "cwd": "/", "user": {"uid": 0, "gid": 0}}}"#,
        )
        .expect("write");
        let spec = load_spec(&path, &args).expect("spec");
        let process = spec.process().as_ref().expect("process");
        assert_eq!(process.args().as_deref(), Some(&args.argv[..]));
        assert_eq!(process.terminal(), Some(true));

        std::fs::write(
            &path,
            r#"{"ociVersion": "1.0.2", "root": {"path": "rootfs"}}"#,
        )
        .expect("write");
        let err = load_spec(&path, &args).expect_err("no process");
        assert!(
            err.to_string()
                .ends_with("config.json: no process in the spec")
        );
        let err = load_spec(&dir.path().join("missing.json"), &args).expect_err("no file");
        assert!(err.to_string().starts_with("read "), "{err}");
    }
}
