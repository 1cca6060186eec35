//! Child-process helpers for fixtures: bounded waits and SIGTERM-then-SIGKILL
//! stops, always addressed by a pid the fixture holds (never by name).

use std::io;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// How often bounded waits poll.
pub const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// Pid of a child as nix wants it.
pub fn pid_of(child: &Child) -> Pid {
    // Linux pids fit in i32 (pid_max is at most 2^22).
    Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX))
}

/// Sends `signal` to `child` unless it has already been reaped.
pub fn signal(child: &mut Child, signal: Signal) -> io::Result<()> {
    if child.try_wait()?.is_some() {
        return Ok(());
    }
    match kill(pid_of(child), signal) {
        // ESRCH: it exited between the check and the kill.
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(errno) => Err(io::Error::from(errno)),
    }
}

/// Waits up to `timeout` for `child` to exit; `Ok(None)` when it is still running.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> io::Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Asks `child` to exit with SIGTERM, waits up to `grace`, then SIGKILLs it.
///
/// Returns the exit status and whether SIGKILL was needed.
pub fn terminate(child: &mut Child, grace: Duration) -> io::Result<(ExitStatus, bool)> {
    signal(child, Signal::SIGTERM)?;
    if let Some(status) = wait_timeout(child, grace)? {
        return Ok((status, false));
    }
    child.kill()?;
    Ok((child.wait()?, true))
}

/// SIGKILLs a process that is not our child (for example one found in a
/// cgroup or a network namespace a test node owns); a vanished pid is fine.
pub fn kill_pid(pid: Pid) {
    // Ignoring the result: ESRCH means it is already gone, and there is
    // nothing better to do about EPERM during teardown than to carry on.
    let _ = kill(pid, Signal::SIGKILL);
}

/// Whether a process with this pid currently exists.
pub fn pid_exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}
