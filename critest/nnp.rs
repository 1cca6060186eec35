//! `nnp`: the stand-in for critest's `nonewprivs` test image helper.
//!
//! The image installs this file setuid-root and runs it as uid 1000. It prints
//! `Effective uid: <euid>` and exits: 0 when the setuid bit took effect (no
//! `no_new_privs`), 1000 when the kernel ignored it because of `no_new_privs`.
//!
//! It is built by `critest/run` as a static binary (`rustc -C target-feature=+crt-static`)
//! so that it runs in a busybox image without shared libraries. The effective uid is read
//! from `/proc/self/status` (the second field of `Uid:`), so only the standard library is
//! needed and there is no `unsafe`.

use std::process::ExitCode;

fn effective_uid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|euid| euid.parse().ok())
}

fn main() -> ExitCode {
    let status = match std::fs::read_to_string("/proc/self/status") {
        Ok(status) => status,
        Err(err) => {
            eprintln!("nnp: read /proc/self/status: {err}");
            return ExitCode::FAILURE;
        }
    };
    match effective_uid(&status) {
        Some(euid) => {
            println!("Effective uid: {euid}");
            ExitCode::SUCCESS
        }
        None => {
            eprintln!("nnp: no Uid line in /proc/self/status");
            ExitCode::FAILURE
        }
    }
}
