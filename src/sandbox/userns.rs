//! A pod's own user namespace (`hostUsers: false`), kept alive without any process.
//!
//! The daemon is multi-threaded, and a thread of a multi-threaded process cannot enter a new
//! user namespace, so a parked child process is cloned into one
//! ([`sys::park_in_new_user_namespace`]). From outside, the daemon writes the pod's single uid
//! and gid ranges into the child's `uid_map` and `gid_map`, bind-mounts its
//! `/proc/<pid>/ns/user` onto a pin file in the pod directory, then lets the child exit and
//! reaps it. The pin holds the namespace until the pod is removed ([`super::namespaces::unpin`]).

use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use rustix::process::{WaitId, WaitIdOptions};

use super::namespaces::{NamespaceError, pin};
use crate::executor::sys;
use crate::store::UserNamespaceMappings;

/// Creates the pod's user namespace with `mappings` and pins it at `<dir>/userns`.
pub fn create(dir: &Path, mappings: &UserNamespaceMappings) -> Result<PathBuf, NamespaceError> {
    let step = |step: String| move |source| NamespaceError { step, source };
    let parked =
        sys::park_in_new_user_namespace().map_err(step("start user namespace holder".into()))?;
    let proc_dir = PathBuf::from(format!("/proc/{}", parked.pid.as_raw_nonzero()));
    let pinned = (|| {
        for (file, mapping) in [("uid_map", &mappings.uid), ("gid_map", &mappings.gid)] {
            let line = mapping.map_file_line();
            fs::write(proc_dir.join(file), &line)
                .map_err(step(format!("write {file} {:?}", line.trim_end())))?;
        }
        pin(dir, "user", &proc_dir.join("ns/user").to_string_lossy())
    })();
    drop(parked.release);
    let reaped = reap(&parked.pidfd).map_err(step("reap user namespace holder".into()));
    let pinned = pinned?;
    reaped?;
    Ok(pinned)
}

fn reap(pidfd: &impl AsFd) -> io::Result<()> {
    loop {
        match rustix::process::waitid(WaitId::PidFd(pidfd.as_fd()), WaitIdOptions::EXITED) {
            Err(rustix::io::Errno::INTR) => continue,
            Err(errno) => return Err(errno.into()),
            Ok(_) => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::IdMapping;

    #[test]
    fn pins_a_user_namespace_with_the_pod_mappings() {
        if !rustix::process::geteuid().is_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let mappings = UserNamespaceMappings {
            uid: IdMapping {
                container_id: 0,
                host_id: 100_000,
                length: 65_536,
            },
            gid: IdMapping {
                container_id: 0,
                host_id: 200_000,
                length: 1000,
            },
        };
        let pinned = create(dir.path(), &mappings).unwrap();
        assert_eq!(pinned, dir.path().join("userns"));
        let pinned_id = rustix::fs::stat(&pinned).unwrap().st_ino;
        let own_id = rustix::fs::stat("/proc/self/ns/user").unwrap().st_ino;
        assert_ne!(pinned_id, own_id, "the pod user namespace must be new");
        // A process that joins the pinned namespace sees the pod's maps.
        let maps = sys::test_support::in_child_process(|| {
            let ns = fs::File::open(&pinned).map_err(|e| e.to_string())?;
            rustix::thread::move_into_link_name_space(
                ns.as_fd(),
                Some(rustix::thread::LinkNameSpaceType::User),
            )
            .map_err(|e| e.to_string())?;
            let uid_map = fs::read_to_string("/proc/self/uid_map").map_err(|e| e.to_string())?;
            let gid_map = fs::read_to_string("/proc/self/gid_map").map_err(|e| e.to_string())?;
            let words = |map: &str| map.split_whitespace().collect::<Vec<_>>().join(" ");
            if words(&uid_map) != "0 100000 65536" || words(&gid_map) != "0 200000 1000" {
                return Err(format!("maps {uid_map:?} {gid_map:?}"));
            }
            // The host's root is not mapped in there: it shows as the overflow uid.
            if rustix::process::getuid().is_root() {
                return Err("host root is mapped inside".to_owned());
            }
            Ok(())
        });
        super::super::namespaces::unpin(&pinned).unwrap();
        maps.unwrap();
        assert!(!pinned.exists());
    }
}
