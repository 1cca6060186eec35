//! `carrack pod-init`: the init (PID 1) of a pod's shared PID namespace, for pods whose
//! containers share one (`NamespaceMode::POD`). It does nothing but reap: orphans of the
//! pod's containers are reparented to it. Killing it ends every process of the namespace.
//!
//! The first process detaches (`setsid`), clones the init into a new PID namespace, prints the
//! init's pid (host PID namespace) on stdout and exits; the init closes its stdio and reaps
//! forever.
//!
//! In a pod with its own user namespace (a `userns` pin in the pod directory) the first
//! process joins it and becomes its root before the clone, so the PID namespace is owned by
//! the pod's user namespace and its init runs as the pod's root (a mapped host id), without
//! capabilities: nothing of the host's root stays in the pod.

use std::os::fd::AsFd;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use rustix::thread::{CapabilitySet, CapabilitySets, LinkNameSpaceType};

use crate::executor::sys::{Cloned, clone_process};

/// How long the init sleeps when it has no child to wait for (orphans are reparented to it
/// at any time; a short poll keeps it free of signal handling).
const IDLE_POLL: Duration = Duration::from_secs(1);

/// The user namespace pin's name in the pod directory (see `sandbox::userns`).
const USER_NAMESPACE_PIN: &str = "userns";

/// Runs `carrack pod-init` for the pod of `pod_dir`. Must be called from a single-threaded
/// process.
pub fn run(pod_dir: Option<&Path>) -> ExitCode {
    let _ = rustix::process::setsid();
    let pin = pod_dir
        .map(|dir| dir.join(USER_NAMESPACE_PIN))
        .filter(|pin| pin.exists());
    if let Some(pin) = pin
        && let Err(err) = become_root_of(&pin)
    {
        eprintln!(
            "carrack pod-init: cannot join the pod's user namespace {}: {err}",
            pin.display()
        );
        return ExitCode::FAILURE;
    }
    match clone_process(libc::CLONE_NEWPID as u64) {
        Ok(Cloned::Parent { pid, .. }) => {
            println!("{}", pid.as_raw_nonzero());
            ExitCode::SUCCESS
        }
        Ok(Cloned::Child) => {
            // The clone needed CAP_SYS_ADMIN (in the pod's user namespace); reaping needs none.
            let none = CapabilitySet::empty();
            let _ = rustix::thread::set_capabilities(
                None,
                CapabilitySets {
                    effective: none,
                    permitted: none,
                    inheritable: none,
                },
            );
            reap_forever()
        }
        Err(err) => {
            eprintln!("carrack pod-init: cannot create the PID namespace: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Joins the user namespace pinned at `pin` and becomes its root (no supplementary groups).
fn become_root_of(pin: &Path) -> std::io::Result<()> {
    let namespace = std::fs::File::open(pin)?;
    rustix::thread::move_into_link_name_space(namespace.as_fd(), Some(LinkNameSpaceType::User))?;
    rustix::thread::set_thread_groups(&[])?;
    rustix::thread::set_thread_gid(rustix::process::Gid::ROOT)?;
    rustix::thread::set_thread_uid(rustix::process::Uid::ROOT)?;
    Ok(())
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
    // All that is left is the reaping loop: the start-up's code pages need not stay resident
    // for the pod's lifetime.
    let _ = crate::executor::sys::memory::release_start_up_memory();
    loop {
        match rustix::process::wait(rustix::process::WaitOptions::empty()) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(_) => std::thread::sleep(IDLE_POLL),
        }
    }
}
