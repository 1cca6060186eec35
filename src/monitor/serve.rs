//! Serving: the single-threaded event loop of a running container, on `poll(2)` over the
//! container's pidfd, the control socket, the output streams and the attach socket with its
//! clients (one-second timeout), and the wrap-up once the container has exited: drain the
//! output (to the log and the attached clients), record the exit, close the attach clients and
//! remove the sockets.

use std::io;
use std::os::fd::AsFd;
use std::process::ExitCode;
use std::time::Duration;

use rustix::event::{PollFd, PollFlags};
use rustix::io::Errno;

use super::attach::Attach;
use super::diag::note;
use super::log::Stream;
use super::oom::oom_kills;
use super::output::{Output, timespec};
use super::protocol::{ExitRecord, Request, Response};
use super::reaper::reap_exited;
use super::record::{self, now_ns};
use super::start::Running;
use crate::executor::{Exit, Launched};

/// How long one `poll` waits at most: orphans are reaped at least this often.
const POLL_TIMEOUT: Duration = Duration::from_secs(1);

/// After the exit, attached clients get this long to take the output still buffered for them.
const ATTACH_FLUSH_LIMIT: Duration = Duration::from_secs(2);

/// After the exit, output is read until no data came for this long...
const DRAIN_IDLE: Duration = Duration::from_millis(100);

/// ...or this much time has passed (an escaped process may keep a pipe open).
const DRAIN_LIMIT: Duration = Duration::from_secs(2);

/// The exit code recorded when the container's status could not be read (containerd's
/// "unknown exit code").
const UNKNOWN_EXIT_CODE: i32 = 255;

/// What one `poll` found ready.
#[derive(Debug, Default)]
struct Ready {
    /// The container process has exited (its pidfd is readable).
    exited: bool,
    /// Connections wait on the control socket.
    control: bool,
    /// Output waits on stdout, stderr.
    streams: [bool; 2],
    /// The events of the attach socket's descriptors.
    attach: Vec<PollFlags>,
    /// Nothing happened for a whole [`POLL_TIMEOUT`] (never without a timeout).
    idle: bool,
}

/// Runs the container until it exits, records the exit and returns the monitor's exit code.
pub(super) fn serve(running: Running) -> ExitCode {
    let Running {
        dir,
        config,
        launched,
        socket,
        mut output,
        mut attach,
        oom_before,
        own_pid_namespace,
    } = running;
    // Once trimmed, an idle monitor sleeps until something happens: its container exits,
    // writes, or a client calls. Orphans of a container that shares a PID namespace are
    // reparented to us (the subreaper), so then the loop still wakes each second to reap them.
    let idle_timeout = (!own_pid_namespace).then_some(POLL_TIMEOUT);
    // Memory is given back once the monitor falls idle after the start and after each later
    // burst of work (requests, output, attach clients), not while it is busy.
    let mut trim_due = true;
    let exit = loop {
        let timeout = if trim_due {
            Some(POLL_TIMEOUT)
        } else {
            idle_timeout
        };
        let ready = match wait(&launched, socket.listener(), &output, &attach, timeout) {
            Ok(ready) => ready,
            Err(Errno::INTR) => continue,
            Err(errno) => {
                // Only EINVAL/ENOMEM are possible; back off rather than spin.
                note!("poll: {}", io::Error::from(errno));
                std::thread::sleep(POLL_TIMEOUT);
                Ready::default()
            }
        };
        for stream in [Stream::Stdout, Stream::Stderr] {
            if ready.streams[stream.index()] {
                output.read(stream, &mut |stream, data| attach.broadcast(stream, data));
            }
        }
        attach.on_ready(&ready.attach);
        if ready.control {
            socket.serve_pending(
                |request| handle(request, &launched, &mut output),
                |err| note!("control connection: {err}"),
            );
        }
        if let Some(exit) = reap_exited(launched.pid) {
            break exit;
        }
        if !ready.idle {
            trim_due = true;
        } else if trim_due {
            trim_due = false;
            trim_memory();
        }
        if ready.exited {
            // Exited but not reaped above: only if someone else reaped it, which nothing
            // should. Wait on the pidfd rather than spin on a readable pidfd.
            match launched.wait() {
                Ok(exit) => break exit,
                Err(err) => {
                    note!("wait for the container: {err}");
                    break Exit::Code(UNKNOWN_EXIT_CODE);
                }
            }
        }
    };
    output.drain(DRAIN_IDLE, DRAIN_LIMIT, &mut |stream, data| {
        attach.broadcast(stream, data);
    });
    output.finish();
    attach.finish(ATTACH_FLUSH_LIMIT);
    let (exit_code, signal) = match exit {
        Exit::Code(code) => (code, None),
        Exit::Signal(signal) => (128 + signal, Some(signal)),
    };
    let record = ExitRecord {
        exit_code,
        signal,
        finished_at_ns: now_ns(),
        oom_killed: oom_kills(&config.oom_counter_files) > oom_before,
        start_error: None,
    };
    note!(
        "container {} exited: code {exit_code}{}{}",
        config.container_id,
        signal.map(|s| format!(", signal {s}")).unwrap_or_default(),
        if record.oom_killed {
            ", oom killed"
        } else {
            ""
        }
    );
    let recorded = record::write_exit(&dir, &record);
    // The sockets go only after the record is down: a client that cannot connect any more (or
    // whose attach ended) finds the exit.
    drop(attach);
    drop(socket);
    match recorded {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            note!("{err}");
            ExitCode::FAILURE
        }
    }
}

/// Gives back the code pages and free heap the monitor's work since the last trim left
/// resident (the start: the OCI spec, the executor; a request: JSON): an idle monitor keeps
/// only what its `poll` loop touches, for as long as its container runs.
fn trim_memory() {
    if let Err(err) = crate::executor::sys::memory::release_start_up_memory() {
        note!("releasing memory: {err}");
    }
}

/// Polls the pidfd, the control socket, the open output streams and the attach descriptors.
fn wait(
    launched: &Launched,
    listener: &impl AsFd,
    output: &Output,
    attach: &Attach,
    timeout: Option<Duration>,
) -> Result<Ready, Errno> {
    let mut fds = Vec::with_capacity(8);
    fds.push(PollFd::new(&launched.pidfd, PollFlags::IN));
    fds.push(PollFd::from_borrowed_fd(listener.as_fd(), PollFlags::IN));
    let mut streams = [None; 2];
    for (stream, fd) in output.open_streams() {
        streams[stream.index()] = Some(fds.len());
        fds.push(PollFd::from_borrowed_fd(fd, PollFlags::IN));
    }
    let attach_at = fds.len();
    fds.extend(attach.poll_fds());
    let timeout = timeout.map(timespec);
    let ready_count = rustix::event::poll(&mut fds, timeout.as_ref())?;
    let is_ready = |index: usize| fds.get(index).is_some_and(|fd| !fd.revents().is_empty());
    Ok(Ready {
        exited: is_ready(0),
        control: is_ready(1),
        streams: streams.map(|slot| slot.is_some_and(is_ready)),
        attach: fds[attach_at..].iter().map(PollFd::revents).collect(),
        idle: ready_count == 0,
    })
}

/// Acts on one control request.
fn handle(request: Request, launched: &Launched, output: &mut Output) -> Response {
    let result = match request {
        Request::Signal { signal } => send_signal(launched, signal),
        Request::ReopenLog => output.reopen_log(),
        Request::Resize { width, height } => output.resize(width, height),
    };
    match result {
        Ok(()) => Response::Ok,
        Err(message) => Response::Error { message },
    }
}

/// Sends `signal` to the container process through its pidfd, unless it has exited.
fn send_signal(launched: &Launched, signal: i32) -> Result<(), String> {
    let Some(sig) = rustix::process::Signal::from_named_raw(signal) else {
        return Err(format!(
            "unsupported signal {signal} (only the named signals 1-31 can be sent)"
        ));
    };
    let mut pidfd = [PollFd::new(&launched.pidfd, PollFlags::IN)];
    let exited = rustix::event::poll(&mut pidfd, Some(&timespec(Duration::ZERO)))
        .is_ok_and(|ready| ready > 0);
    if exited {
        return Err("the container has exited".to_owned());
    }
    rustix::process::pidfd_send_signal(&launched.pidfd, sig).map_err(|errno| match errno {
        Errno::SRCH => "the container has exited".to_owned(),
        errno => format!("send signal {signal}: {}", io::Error::from(errno)),
    })
}
