//! Starting: from the runtime directory's files to a running container process and the one
//! [`StartReport`] line on stdout.
//!
//! In order: stderr to `monitor.log`; detach from the daemon (new session, child subreaper,
//! the termination signals blocked, working directory `/`); `monitor.pid`; the two config
//! files; the control and attach sockets (bound before the report, so they exist once the
//! daemon reads it); the container's stdio and log; the OOM count; the launch. A failure anywhere is
//! recorded in `exit.json` before it is reported, and the monitor then exits.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use oci_spec::runtime::LinuxNamespaceType;
use serde::de::DeserializeOwned;

use super::attach::Attach;
use super::control::ControlSocket;
use super::diag::{self, note};
use super::error::{MonitorError, io_at};
use super::oom::oom_kills;
use super::output::Output;
use super::protocol::{
    ATTACH_SOCKET_FILE, CONFIG_FILE, ExitRecord, MONITOR_FILE, MonitorConfig, PLACED, PhaseTiming,
    SOCKET_FILE, StartReport,
};
use super::record::{self, now_ns};
use super::stdio;
use crate::executor::{self, LaunchRequest, Launched};

/// The exit code recorded for a container that could not be started.
pub(super) const START_FAILURE_EXIT_CODE: i32 = 128;

/// Signals the monitor never acts on: the daemon stops containers through the control socket,
/// and a stray `kill` or a terminal hangup must not orphan a container. Blocked rather than
/// ignored; the executor resets the mask in the container process.
const BLOCKED_SIGNALS: [Signal; 4] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
];

/// A started container and everything the monitor holds for it.
#[derive(Debug)]
pub(super) struct Running {
    /// The runtime directory (absolute).
    pub dir: PathBuf,
    /// `monitor.json`.
    pub config: MonitorConfig,
    /// The container process.
    pub launched: Launched,
    /// The control socket.
    pub socket: ControlSocket,
    /// The container's output and its log.
    pub output: Output,
    /// The attach socket, which holds the container's stdin.
    pub attach: Attach,
    /// The OOM kill count before the start.
    pub oom_before: u64,
    /// Whether the container has a PID namespace of its own: its orphans are then reparented
    /// to its own first process, never to us, and only its exit needs reaping.
    pub own_pid_namespace: bool,
}

/// Starts the container of the runtime directory `dir` and reports on stdout; `None` when
/// the start failed (reported and recorded).
pub(super) fn start(dir: &Path) -> Option<Running> {
    let begun_ns = now_ns();
    let dir = match std::path::absolute(dir) {
        Ok(dir) => dir,
        Err(err) => {
            report(&StartReport::Failed {
                message: format!("runtime directory {}: {err}", dir.display()),
            });
            return None;
        }
    };
    // The daemon's answer to a placing request comes on our original stdin, which
    // `redirect_stderr` points at /dev/null: keep a duplicate for it (closed after the start).
    let answers = rustix::io::fcntl_dupfd_cloexec(std::io::stdin(), 3).ok();
    diag::redirect_stderr(&dir);
    detach();
    match launch_in(&dir, answers) {
        Ok(running) => {
            let pid = running.launched.pid.as_raw_nonzero().get();
            note!(
                "container {} started as pid {pid}",
                running.config.container_id
            );
            let started = StartReport::Started {
                pid,
                monitor_pid: rustix::process::getpid().as_raw_nonzero().get(),
                started_at_ns: now_ns(),
                phases: phases(begun_ns, &running.launched.phases),
            };
            if let Err(err) = record::write_start(&dir, &started) {
                note!("{err}");
            }
            report(&started);
            Some(running)
        }
        Err(err) => {
            let message = err.to_string();
            note!("start failed: {message}");
            let record = ExitRecord {
                exit_code: START_FAILURE_EXIT_CODE,
                signal: None,
                finished_at_ns: now_ns(),
                oom_killed: false,
                start_error: Some(message.clone()),
            };
            if let Err(err) = record::write_exit(&dir, &record) {
                note!("{err}");
            }
            report(&StartReport::Failed { message });
            None
        }
    }
}

/// The start's timed steps: the monitor's own setup up to the launch, then the executor's.
fn phases(begun_ns: i64, launch: &[executor::LaunchPhase]) -> Vec<PhaseTiming> {
    let setup_end = launch.first().map_or(begun_ns, |phase| phase.start_ns);
    let setup = PhaseTiming {
        name: "monitor.setup".to_owned(),
        start_ns: begun_ns,
        end_ns: setup_end,
    };
    std::iter::once(setup)
        .chain(launch.iter().map(|phase| PhaseTiming {
            name: phase.name.to_owned(),
            start_ns: phase.start_ns,
            end_ns: phase.end_ns,
        }))
        .collect()
}

/// Leaves the daemon's session and process group, becomes the subreaper of the container's
/// orphans, blocks [`BLOCKED_SIGNALS`] and moves to `/` (so no mount is kept busy).
fn detach() {
    if let Err(errno) = rustix::process::setsid() {
        // EPERM: already a process group leader (started from a shell); harmless.
        note!("setsid: {}", std::io::Error::from(errno));
    }
    if let Err(errno) = rustix::process::set_child_subreaper(Some(rustix::process::getpid())) {
        note!("become child subreaper: {}", std::io::Error::from(errno));
    }
    let mut blocked = SigSet::empty();
    for signal in BLOCKED_SIGNALS {
        blocked.add(signal);
    }
    if let Err(errno) = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&blocked), None) {
        note!("block signals: {errno}");
    }
    if let Err(err) = std::env::set_current_dir("/") {
        note!("chdir /: {err}");
    }
}

/// Everything from the files in `dir` to the launched process.
fn launch_in(dir: &Path, answers: Option<OwnedFd>) -> Result<Running, MonitorError> {
    record::write_pid(dir, rustix::process::getpid().as_raw_nonzero().get())?;
    let config: MonitorConfig = read_json(&dir.join(MONITOR_FILE))?;
    let spec: oci_spec::runtime::Spec = read_json(&dir.join(CONFIG_FILE))?;
    let socket = ControlSocket::bind(&dir.join(SOCKET_FILE))?;
    let (child_stdio, mut held) = stdio::create(config.tty, config.stdin)?;
    // With a terminal, input and resizes go to (a duplicate of) the master.
    let duplicate_master = || {
        held.stdout
            .as_fd()
            .try_clone_to_owned()
            .map_err(|source| MonitorError::Stdio {
                what: "duplicate terminal master",
                source,
            })
    };
    let (input, terminal) = if config.tty {
        let input = if config.stdin {
            Some(duplicate_master()?)
        } else {
            None
        };
        (input, Some(duplicate_master()?))
    } else {
        (held.stdin.take(), None)
    };
    let attach = Attach::bind(
        &dir.join(ATTACH_SOCKET_FILE),
        input,
        terminal,
        config.stdin_once,
    )?;
    let output = Output::new(held, config.log_path.clone());
    let oom_before = oom_kills(&config.oom_counter_files);
    let own_pid_namespace = spec
        .linux()
        .as_ref()
        .and_then(|linux| linux.namespaces().as_ref())
        .is_some_and(|namespaces| {
            namespaces
                .iter()
                .any(|ns| ns.typ() == LinuxNamespaceType::Pid && ns.path().is_none())
        });
    let launched = executor::launch(LaunchRequest {
        spec,
        rootfs: config.rootfs.clone(),
        stdio: child_stdio,
        cgroup_procs_files: config.cgroup_procs_files.clone(),
        place: config
            .placed_by_daemon
            .then(|| executor::PlaceHook(Box::new(move |pid| ask_daemon_to_place(pid, answers)))),
    })?;
    Ok(Running {
        dir: dir.to_owned(),
        config,
        launched,
        socket,
        output,
        attach,
        oom_before,
        own_pid_namespace,
    })
}

/// Hands the waiting process to the daemon (a [`StartReport::Placing`] line) and waits for
/// its answer on `answers` (the daemon's pipe to our stdin).
fn ask_daemon_to_place(pid: i32, answers: Option<OwnedFd>) -> Result<(), String> {
    let answers = answers.ok_or("the daemon gave no pipe for its answer")?;
    print_line(&StartReport::Placing { pid }).map_err(|err| format!("tell the daemon: {err}"))?;
    let mut answer = String::new();
    let read = BufReader::new(std::fs::File::from(answers)).read_line(&mut answer);
    match read {
        Ok(_) if answer.trim_end() == PLACED => Ok(()),
        Ok(0) => Err("the daemon went away before placing the process".to_owned()),
        Ok(_) => Err(answer.trim_end().to_owned()),
        Err(err) => Err(format!("read the daemon's answer: {err}")),
    }
}

/// Prints `line` as one JSON line on stdout.
fn print_line(line: &StartReport) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    let mut bytes = serde_json::to_vec(line).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    stdout.write_all(&bytes)?;
    stdout.flush()
}

/// Reads and parses a JSON file.
fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, MonitorError> {
    let bytes = std::fs::read(path).map_err(io_at("read", path))?;
    serde_json::from_slice(&bytes).map_err(|err| MonitorError::Parse {
        path: path.to_owned(),
        reason: err.to_string(),
    })
}

/// Prints `report` as one line on stdout, then points stdout at `/dev/null`: the daemon reads
/// to the end of the pipe, which comes only when no process holds it.
fn report(report: &StartReport) {
    if let Err(err) = print_line(report) {
        // The daemon went away; the container runs on regardless.
        note!("print start report: {err}");
    }
    match std::fs::OpenOptions::new().write(true).open("/dev/null") {
        Ok(null) => {
            if let Err(errno) = rustix::stdio::dup2_stdout(&null) {
                note!("close stdout: {}", std::io::Error::from(errno));
            }
        }
        Err(err) => note!("open /dev/null: {err}"),
    }
}
