//! What the daemon and a container's monitor agree on: the files in the container's runtime
//! directory, the start report, the exit record and the control-socket requests.
//!
//! A container's runtime directory is `<state_dir>/containers/<id>/`. The daemon writes
//! [`CONFIG_FILE`] (the OCI spec) and [`MONITOR_FILE`] (a [`MonitorConfig`]) and mounts the
//! rootfs before it runs `carrack monitor <dir>`. The monitor prints one [`StartReport`] line
//! on its stdout once the container process has exec'd (or failed to), then closes stdout and
//! lives on as the container's parent: it writes the CRI log, answers [`Request`]s on
//! [`SOCKET_FILE`], serves attach clients on [`ATTACH_SOCKET_FILE`], and when the container exits writes [`EXIT_FILE`] (an [`ExitRecord`],
//! atomically) and exits itself.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The OCI runtime spec (`config.json`), written by the daemon.
pub const CONFIG_FILE: &str = "config.json";
/// The [`MonitorConfig`], written by the daemon.
pub const MONITOR_FILE: &str = "monitor.json";
/// The monitor's pid (decimal), written by the monitor before it reports.
pub const PID_FILE: &str = "monitor.pid";
/// The [`ExitRecord`], written by the monitor once the container has exited.
pub const EXIT_FILE: &str = "exit.json";
/// The [`StartReport`] of a started container, written before it is printed, so a daemon that
/// died before reading the report learns the start's outcome after its restart.
pub const START_FILE: &str = "start.json";
/// The monitor's control socket (a Unix stream socket; one [`Request`] line per connection,
/// one [`Response`] line back).
pub const SOCKET_FILE: &str = "monitor.sock";
/// The monitor's attach socket (a Unix stream socket speaking [`frame`](super::frame)s):
/// the container's live output, its stdin and terminal size, for any number of clients.
pub const ATTACH_SOCKET_FILE: &str = "attach.sock";
/// The mount point of the container's root filesystem (mounted by the daemon).
pub const ROOTFS_DIR: &str = "rootfs";

/// How the monitor is to run the container; `monitor.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitorConfig {
    /// The container id (for log messages).
    pub container_id: String,
    /// The root filesystem to run in (already mounted).
    pub rootfs: PathBuf,
    /// Where the CRI log goes (`None`: output is discarded).
    pub log_path: Option<PathBuf>,
    /// `cgroup.procs` (or v1 `tasks`) files the container process joins.
    pub cgroup_procs_files: Vec<PathBuf>,
    /// The daemon creates the container's cgroup around the new process (a systemd scope
    /// needs its first process): the monitor prints [`StartReport::Placing`] and waits for
    /// the daemon's [`PLACED`] line on its stdin before letting the process run.
    #[serde(default)]
    pub placed_by_daemon: bool,
    /// Files whose `oom_kill <n>` line counts OOM kills in the container's cgroup (v1
    /// `memory.oom_control`, v2 `memory.events`); compared before start and after exit.
    pub oom_counter_files: Vec<PathBuf>,
    /// Allocate a pseudo-terminal for the container's stdio.
    pub tty: bool,
    /// Keep a stdin pipe open (for attach); otherwise stdin is `/dev/null`.
    pub stdin: bool,
    /// Close stdin after the first attach session ends.
    pub stdin_once: bool,
}

/// The daemon's answer on the monitor's stdin once it placed the process (any other line,
/// or none, is the reason it could not).
pub const PLACED: &str = "placed";

/// The line the monitor prints on stdout once the start succeeded or failed (preceded, with
/// [`MonitorConfig::placed_by_daemon`], by one [`StartReport::Placing`] line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartReport {
    /// The container process exists and waits to be placed in its cgroup by the daemon.
    Placing {
        /// The process (host PID namespace).
        pid: i32,
    },
    /// The container process runs.
    Started {
        /// The container's pid (host PID namespace).
        pid: i32,
        /// The monitor's own pid.
        monitor_pid: i32,
        /// When the process was started, nanoseconds since the epoch.
        started_at_ns: i64,
        /// How long the monitor's and executor's start steps took, in order, so that the
        /// daemon can show them in the start's trace.
        #[serde(default)]
        phases: Vec<PhaseTiming>,
    },
    /// It could not be started; the message says what failed and on which path. The monitor
    /// has exited and written an [`ExitRecord`] with the same message.
    Failed {
        /// What failed.
        message: String,
    },
}

/// One timed start step (see [`StartReport::Started`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseTiming {
    /// The span name, e.g. `executor.rootfs`.
    pub name: String,
    /// Start, nanoseconds since the epoch.
    pub start_ns: i64,
    /// End, nanoseconds since the epoch.
    pub end_ns: i64,
}

/// How the container ended; `exit.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// Exit code as CRI reports it: the code, or 128 + signal number.
    pub exit_code: i32,
    /// The signal that killed it, if one did.
    pub signal: Option<i32>,
    /// When it ended (or the start failed), nanoseconds since the epoch.
    pub finished_at_ns: i64,
    /// The kernel's OOM killer killed a process of the container.
    pub oom_killed: bool,
    /// Set when the container never ran: why its start failed.
    pub start_error: Option<String>,
}

/// A request on the control socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// Send this signal to the container's process.
    Signal {
        /// Signal number.
        signal: i32,
    },
    /// Close and reopen the log file (after log rotation).
    ReopenLog,
    /// Resize the terminal (tty containers).
    Resize {
        /// Columns.
        width: u16,
        /// Rows.
        height: u16,
    },
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    /// Done.
    Ok,
    /// Not done, and why.
    Error {
        /// What went wrong.
        message: String,
    },
}

/// Longest socket path `sun_path` holds (108 bytes with the terminating NUL).
const MAX_SOCKET_PATH: usize = 107;

/// Calls `use_path` with a path naming the socket at `path` that fits in a `sockaddr_un`: the
/// path itself when short enough, else `/proc/self/fd/<n>/<name>` through a descriptor of its
/// directory (deep state directories, such as a test's temp dir, exceed the limit).
pub fn with_socket_path<T>(
    path: &std::path::Path,
    use_path: impl FnOnce(&std::path::Path) -> std::io::Result<T>,
) -> std::io::Result<T> {
    if path.as_os_str().len() <= MAX_SOCKET_PATH {
        return use_path(path);
    }
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return use_path(path);
    };
    let dir = rustix::fs::open(
        dir,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    let short = PathBuf::from(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&dir)
    ))
    .join(name);
    let result = use_path(&short);
    drop(dir);
    result
}
