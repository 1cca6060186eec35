//! Named network namespaces for test nodes: create/delete through `ip netns`,
//! run code on a thread inside one, and find the processes still living in one.
//!
//! Only the network namespace is entered: the daemon and the tests must share
//! the host's mount namespace so that cgroup mounts and the daemon's mounts
//! stay visible (this is also why the daemon is started with `nsenter --net`
//! rather than `ip netns exec`, which remounts `/sys`).

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::sched::{CloneFlags, setns};
use nix::unistd::Pid;

/// Directory where `ip netns` keeps its bind-mounted namespace files.
pub const NETNS_DIR: &str = "/run/netns";

/// Path of the namespace file of the named network namespace.
pub fn path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// Creates the named network namespace and brings its loopback up; on error
/// nothing is left behind.
pub fn add(name: &str) -> io::Result<()> {
    ip(&["netns", "add", name])?;
    ip(&["-n", name, "link", "set", "lo", "up"]).inspect_err(|_| {
        // The namespace is of no use without loopback; the first error is the one to report.
        let _ = delete(name);
    })
}

/// Deletes the named network namespace (unmounts and removes its file); the
/// namespace itself lives on while processes are still in it.
pub fn delete(name: &str) -> io::Result<()> {
    ip(&["netns", "del", name])
}

/// Names of all the network namespaces `ip netns` knows about.
pub fn list() -> io::Result<Vec<String>> {
    match std::fs::read_dir(NETNS_DIR) {
        Ok(entries) => Ok(entries
            .filter_map(|entry| entry.ok())
            .filter_map(|entry| entry.file_name().into_string().ok())
            .collect()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(err) => Err(err),
    }
}

/// Runs `f` on a fresh thread that first joins the network namespace at
/// `netns_path`, and returns its result; a panic in `f` is re-raised here.
///
/// Sockets created on that thread belong to that namespace, so this is how a
/// test reaches a server listening on the node's `127.0.0.1`. A scoped thread
/// is used so `f` may borrow from the caller, and a fresh one so the caller's
/// thread never changes namespace.
pub fn run_in<T, F>(netns_path: &Path, f: F) -> io::Result<T>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    let netns = File::open(netns_path).map_err(|err| {
        io::Error::new(
            err.kind(),
            format!("open network namespace {}: {err}", netns_path.display()),
        )
    })?;
    std::thread::scope(|scope| {
        let handle = scope.spawn(move || {
            setns(&netns, CloneFlags::CLONE_NEWNET).map_err(|errno| {
                io::Error::other(format!("setns into {}: {errno}", netns_path.display()))
            })?;
            Ok(f())
        });
        match handle.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Pids of every process whose network namespace is the one at `netns_path`.
///
/// Used by teardown to catch processes the daemon started that outlived it
/// (monitors, host-network containers), without any name-based matching.
pub fn pids_in(netns_path: &Path) -> Vec<Pid> {
    let Ok(target) = std::fs::metadata(netns_path) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let own = std::process::id();
    entries
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != own)
        .filter(|pid| {
            // The process may exit between listing and stat: treat that as "not in it".
            std::fs::metadata(format!("/proc/{pid}/ns/net"))
                .is_ok_and(|ns| ns.dev() == target.dev() && ns.ino() == target.ino())
        })
        .filter_map(|pid| i32::try_from(pid).ok().map(Pid::from_raw))
        .collect()
}

/// Runs `ip` with `args`, turning a non-zero exit into an error carrying its stderr.
fn ip(args: &[&str]) -> io::Result<()> {
    let output = Command::new("ip").args(args).output()?;
    if output.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "ip {} failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}
