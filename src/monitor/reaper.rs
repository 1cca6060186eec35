//! Reaping: the monitor is the container's parent and, as a child subreaper, the adoptive
//! parent of every process the container leaves orphaned (when it shares the host's PID
//! namespace); it reaps them all so no zombie outlives its wakeup.
//!
//! One `waitpid(-1, WNOHANG)` loop serves both: an orphan's status is discarded, the
//! container's is the monitor's result. Reaping the container here rather than through its
//! pidfd is safe from pid reuse, because only the monitor reaps its children: the pid cannot
//! be recycled before this loop has seen it exit.

use rustix::io::Errno;
use rustix::process::{Pid, WaitOptions, WaitStatus};

use crate::executor::Exit;

/// Reaps every child that has exited and returns the container's exit if it was among them.
pub(super) fn reap_exited(container: Pid) -> Option<Exit> {
    let mut container_exit = None;
    loop {
        match rustix::process::waitpid(None, WaitOptions::NOHANG) {
            Ok(Some((pid, status))) => {
                if pid == container {
                    container_exit = exit_of(status).or(container_exit);
                }
            }
            Err(Errno::INTR) => {}
            // None: children left, none has exited; ECHILD: no children left.
            Ok(None) | Err(_) => return container_exit,
        }
    }
}

/// How a reaped process ended (`None` for a stop or continue report, which `waitpid` gives
/// only when asked for).
fn exit_of(status: WaitStatus) -> Option<Exit> {
    match (status.exit_status(), status.terminating_signal()) {
        (Some(code), _) => Some(Exit::Code(code)),
        (None, Some(signal)) => Some(Exit::Signal(signal)),
        (None, None) => None,
    }
}
