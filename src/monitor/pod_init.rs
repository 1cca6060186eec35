//! `carrack pod-init`: the init (PID 1) of a pod's shared PID namespace, for pods whose
//! containers share one (`NamespaceMode::POD`). It does nothing but reap: orphans of the
//! pod's containers are reparented to it. Killing it ends every process of the namespace.
//!
//! The first process detaches (`setsid`), clones the init into a new PID namespace, prints the
//! init's pid (host PID namespace) on stdout and exits; the init closes its stdio and reaps
//! forever.

use std::process::ExitCode;
use std::time::Duration;

use crate::executor::sys::{Cloned, clone_process};

/// How long the init sleeps when it has no child to wait for (orphans are reparented to it
/// at any time; a short poll keeps it free of signal handling).
const IDLE_POLL: Duration = Duration::from_secs(1);

/// Runs `carrack pod-init`. Must be called from a single-threaded process.
pub fn run() -> ExitCode {
    let _ = rustix::process::setsid();
    match clone_process(libc::CLONE_NEWPID as u64) {
        Ok(Cloned::Parent { pid, .. }) => {
            println!("{}", pid.as_raw_nonzero());
            ExitCode::SUCCESS
        }
        Ok(Cloned::Child) => reap_forever(),
        Err(err) => {
            eprintln!("carrack pod-init: cannot create the PID namespace: {err}");
            ExitCode::FAILURE
        }
    }
}

/// The init's whole life: no stdio (the daemon reads the parent's stdout to its end), reap.
fn reap_forever() -> ! {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        let _ = rustix::stdio::dup2_stdin(&null);
        let _ = rustix::stdio::dup2_stdout(&null);
        let _ = rustix::stdio::dup2_stderr(&null);
    }
    let _ = std::env::set_current_dir("/");
    loop {
        match rustix::process::wait(rustix::process::WaitOptions::empty()) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(_) => std::thread::sleep(IDLE_POLL),
        }
    }
}
