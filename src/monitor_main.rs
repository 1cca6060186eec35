//! The `carrack-monitor` binary: the per-container and per-pod processes the daemon starts
//! (`monitor`, `pod-init`, `exec-in`), without the daemon's gRPC, async runtime, telemetry
//! or command line linked in. Each lives as long as its container, so its size is paid per
//! pod: it only reaches the monitor and executor modules of the library. The `carrack`
//! binary accepts the same sub-commands (the daemon falls back to it when this one is not
//! installed beside it).
//!
//! Arguments are the daemon's, not people's: [`carrack::monitor::command::parse`] reads them
//! without a command-line parser, whose code would be mapped into every monitor.

use std::process::ExitCode;

use carrack::monitor::command::{self, Command};

fn main() -> ExitCode {
    match command::parse(std::env::args_os().skip(1)) {
        Ok(Command::Monitor { dir }) => carrack::monitor::run(&dir),
        Ok(Command::PodInit { pod_dir }) => carrack::monitor::pod_init::run(pod_dir.as_deref()),
        Ok(Command::ExecIn(args)) => ExitCode::from(carrack::monitor::exec_helper::run(args)),
        Err(err) => {
            eprintln!("carrack-monitor: {err}");
            ExitCode::from(2)
        }
    }
}
