//! Teardown of what a test node leaves on the host, shared by `Node`'s drop
//! and by the start-up sweep of leftovers from crashed test processes.
//!
//! Every step is best effort and reports problems on stderr instead of
//! panicking: teardown often runs while a test is already unwinding, and one
//! failed step must not stop the others.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::mount::{MntFlags, umount2};
use nix::unistd::Pid;

use super::{NAME_PREFIX, netns, process};

/// Root of the cgroup hierarchies (one v1 hierarchy per directory here).
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// File placed in a temp dir kept with `CARRACK_TEST_KEEP=1`, so that the
/// sweep does not delete it.
pub const KEPT_MARKER: &str = "KEPT-BY-CARRACK-TEST";

/// How long to keep trying to remove a cgroup whose processes are dying.
const CGROUP_REMOVE_TIMEOUT: Duration = Duration::from_secs(10);

/// SIGKILLs every process in the network namespace at `netns_path`.
pub fn kill_netns_processes(netns_path: &Path) {
    for pid in netns::pids_in(netns_path) {
        process::kill_pid(pid);
    }
}

/// Removes the cgroup `/<name>` and everything below it in every hierarchy
/// under [`CGROUP_ROOT`], killing the processes in it first.
pub fn remove_cgroups(name: &str) {
    for hierarchy in hierarchies() {
        let top = hierarchy.join(name);
        if top.is_dir()
            && let Err(err) = remove_cgroup_tree(&top)
        {
            eprintln!("carrack test cleanup: {}: {err}", top.display());
        }
    }
}

/// Lazily unmounts every mount at or below `dir`, deepest and newest first,
/// repeating for mounts stacked on the same point.
pub fn unmount_under(dir: &Path) {
    for _ in 0..10 {
        let mounts = mounts_under(dir);
        if mounts.is_empty() {
            return;
        }
        for mount in mounts {
            // MNT_DETACH: a process still using the mount must not make teardown fail.
            if let Err(errno) = umount2(&mount, MntFlags::MNT_DETACH) {
                eprintln!("carrack test cleanup: umount {}: {errno}", mount.display());
            }
        }
    }
    eprintln!(
        "carrack test cleanup: mounts remain under {}",
        dir.display()
    );
}

/// Cleans up after test processes that died without their drops running
/// (SIGKILL, abort, a killed CI job): namespaces, cgroups, mounts and temp
/// dirs named `carrack-test-<pid>-*` whose pid no longer exists.
pub fn sweep_leftovers() {
    let own = std::process::id();
    let is_stale =
        |name: &str| owner_pid(name).is_some_and(|pid| pid != own && !process::pid_exists(pid));

    if let Ok(names) = netns::list() {
        for name in names.iter().filter(|name| is_stale(name)) {
            eprintln!("carrack test: removing leftover network namespace {name}");
            kill_netns_processes(&netns::path(name));
            remove_cgroups(name);
            if let Err(err) = netns::delete(name) {
                eprintln!("carrack test cleanup: {err}");
            }
        }
    }

    for hierarchy in hierarchies() {
        for name in dir_names(&hierarchy).iter().filter(|name| is_stale(name)) {
            eprintln!(
                "carrack test: removing leftover cgroup {}",
                hierarchy.join(name).display()
            );
            remove_cgroups(name);
        }
    }

    let tmp = std::env::temp_dir();
    for name in dir_names(&tmp).iter().filter(|name| is_stale(name)) {
        let dir = tmp.join(name);
        let dir = dir.canonicalize().unwrap_or(dir);
        unmount_under(&dir);
        if !dir.join(KEPT_MARKER).exists() {
            eprintln!("carrack test: removing leftover temp dir {}", dir.display());
            if let Err(err) = std::fs::remove_dir_all(&dir) {
                eprintln!("carrack test cleanup: {}: {err}", dir.display());
            }
        }
    }
}

/// The pid in a `carrack-test-<pid>-<n>[.suffix]` name.
fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(NAME_PREFIX)?;
    let (pid, _) = rest.split_once('-')?;
    pid.parse().ok()
}

/// The cgroup hierarchies: every real directory (not the `cpu,cpuacct`-style
/// symlinks some systems add) under [`CGROUP_ROOT`], v2 included.
fn hierarchies() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(CGROUP_ROOT) else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_dir()))
        .map(|entry| entry.path())
        .collect()
}

/// Names of the entries of `dir` (empty if it cannot be read).
fn dir_names(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect()
}

/// Kills the processes in the cgroup tree at `top` and removes its
/// directories bottom-up, retrying while dying processes keep them busy.
fn remove_cgroup_tree(top: &Path) -> io::Result<()> {
    let deadline = Instant::now() + CGROUP_REMOVE_TIMEOUT;
    loop {
        let mut dirs = Vec::new();
        collect_dirs(top, &mut dirs);
        // Deepest first: a cgroup can only be removed once it has no children.
        dirs.sort_by_key(|dir| std::cmp::Reverse(dir.components().count()));

        for dir in &dirs {
            unfreeze_and_kill(dir);
        }
        let mut last_error = None;
        for dir in &dirs {
            match std::fs::remove_dir(dir) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => last_error = Some(err),
            }
        }
        match last_error {
            None => return Ok(()),
            Some(err) if Instant::now() >= deadline => return Err(err),
            Some(_) => std::thread::sleep(process::POLL_INTERVAL),
        }
    }
}

/// `dir` and all the directories below it.
fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    out.push(dir.to_path_buf());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(|entry| entry.ok()) {
        if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            collect_dirs(&entry.path(), out);
        }
    }
}

/// Makes the processes of one cgroup die: SIGKILL is not delivered to a frozen
/// task, so thaw first (v1 `freezer.state`, v2 `cgroup.freeze`), and use v2's
/// `cgroup.kill` where it exists. Write errors are expected for files that
/// are absent in a hierarchy and ignored.
fn unfreeze_and_kill(dir: &Path) {
    let _ = std::fs::write(dir.join("freezer.state"), "THAWED");
    let _ = std::fs::write(dir.join("cgroup.freeze"), "0");
    let _ = std::fs::write(dir.join("cgroup.kill"), "1");
    if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        for pid in procs
            .lines()
            .filter_map(|line| line.trim().parse::<i32>().ok())
        {
            process::kill_pid(Pid::from_raw(pid));
        }
    }
}

/// Mount points at or below `dir`, in the order to unmount them: deepest
/// first, and among equals the most recently mounted first.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut mounts: Vec<(usize, PathBuf)> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape_mountinfo(field)))
        .filter(|mount| mount.starts_with(dir))
        .enumerate()
        .collect();
    // mountinfo lists mounts oldest first; sort by depth, then newest first.
    mounts.sort_by_key(|(order, path)| {
        (
            std::cmp::Reverse(path.components().count()),
            std::cmp::Reverse(*order),
        )
    });
    mounts.into_iter().map(|(_, path)| path).collect()
}

/// Undoes mountinfo's octal escapes (`\040` for space, `\011`, `\012`, `\134`).
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && let Some(octal) = bytes.get(i + 1..i + 4)
            && let Ok(text) = std::str::from_utf8(octal)
            && let Ok(value) = u8::from_str_radix(text, 8)
        {
            out.push(value);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
