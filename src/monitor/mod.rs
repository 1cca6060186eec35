//! The container monitor: the small, long-lived process (`carrack monitor <dir>`) that is the
//! parent of a container's process, outlives daemon restarts, writes the container's CRI log
//! and records how it exited.
//!
//! [`protocol`] is what the daemon and the monitor share: the runtime directory's files, the
//! start report, the exit record and the control-socket requests. [`client`] is the daemon's
//! side of it (blocking calls: run them off the async runtime). [`exec_helper`] is the
//! `carrack exec-in` helper that runs one more process in a running container.
//!
//! The monitor itself is single-threaded and synchronous (no tokio, which the executor's fork
//! forbids anyway), one responsibility per file:
//! - `start`: detach, read the configuration, bind the socket, create stdio, launch, report;
//! - `serve`: the `poll` loop and the wrap-up after the exit;
//! - `stdio`: the pipes or the pseudo-terminal; `output`: reading them into the log file;
//! - [`log`]: the CRI log line format (pure);
//! - `control`: the control socket; `attach`: the attach socket (live output to clients,
//!   their input to the container's stdin, terminal resizes), in [`frame`]s; `reaper`: reaping the container and orphans;
//! - `oom`: the OOM-kill counters; `record`: `monitor.pid` and `exit.json`;
//! - `diag`: the monitor's own diagnostics in `monitor.log`.
//!
//! [`pod_init`] is `carrack pod-init`, the reaping init of a pod's shared PID namespace.
//! [`command`] parses these three command lines for the small `carrack-monitor` binary the
//! daemon starts them from.

mod attach;
pub mod client;
pub mod command;
mod control;
mod diag;
mod error;
pub mod exec_helper;
pub mod frame;
pub mod log;
mod oom;
mod output;
pub mod pod_init;
pub mod protocol;
mod reaper;
mod record;
mod serve;
mod start;
mod stdio;

use std::path::Path;
use std::process::ExitCode;

pub use error::MonitorError;

/// Runs the monitor of the container whose runtime directory is `dir` (`carrack monitor
/// <dir>`): starts it, prints the [`protocol::StartReport`] line, serves it until it exits and
/// records the exit. Returns success once the exit is recorded, failure when the start failed.
///
/// Must be called from a single-threaded process that has not started an async runtime.
pub fn run(dir: &Path) -> ExitCode {
    match start::start(dir) {
        Some(running) => serve::serve(running),
        None => ExitCode::FAILURE,
    }
}
