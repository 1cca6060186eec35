//! A pod's own user namespace (`hostUsers: false`), kept alive without any process.
//!
//! The daemon is multi-threaded, and a thread of a multi-threaded process cannot enter a new
//! user namespace, so a parked child process is cloned into one
//! ([`sys::park_in_new_user_namespace`]). From outside, the daemon writes the pod's single uid
//! and gid ranges into the child's `uid_map` and `gid_map`, bind-mounts its
//! `/proc/<pid>/ns/user` onto a pin file in the pod directory, then lets the child exit and
//! reaps it. The pin holds the namespace until the pod is removed ([`super::namespaces::unpin`]).
//!
//! The pod's network, IPC and UTS namespaces are created by the same clone, so the user
//! namespace owns them; a scratch thread joins them to bring up `lo`, set the hostname and
//! write sysctls, and they are pinned from the child's `/proc/<pid>/ns` files.

use std::fs;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use rustix::thread::LinkNameSpaceType;

use super::namespaces::{
    NamespaceError, NamespaceSetup, PinnedNamespaces, configure_this_thread, on_scratch_thread,
    pin, pin_all, unpin,
};
use crate::executor::sys::{self, NewNamespaces};
use crate::store::UserNamespaceMappings;

/// The pins of a pod's user namespace and of the namespaces it owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedUserNamespaces {
    /// The user namespace pin, `<dir>/userns`.
    pub user: PathBuf,
    /// The network, IPC and UTS namespaces created inside it (owned by it, so the pod's
    /// root can mount `sysfs` and `mqueue` for them).
    pub owned: PinnedNamespaces,
}

/// Creates the pod's user namespace with `mappings`, and inside it the namespaces of `setup`
/// (configured like [`super::namespaces::create`] does), and pins them all under `dir`.
pub fn create(
    dir: &Path,
    mappings: &UserNamespaceMappings,
    setup: NamespaceSetup,
) -> Result<PinnedUserNamespaces, NamespaceError> {
    let step = |step: String| move |source| NamespaceError { step, source };
    let parked = sys::park_in_new_user_namespace(setup.create)
        .map_err(step("start user namespace holder".into()))?;
    let proc_dir = PathBuf::from(format!("/proc/{}", parked.pid.as_raw_nonzero()));
    let pinned = (|| {
        for (file, mapping) in [("uid_map", &mappings.uid), ("gid_map", &mappings.gid)] {
            let line = mapping.map_file_line();
            fs::write(proc_dir.join(file), &line)
                .map_err(step(format!("write {file} {:?}", line.trim_end())))?;
        }
        let ns_dir = proc_dir.join("ns");
        let create = setup.create;
        let joined = ns_dir.clone();
        on_scratch_thread(move || {
            join_owned(&joined, create)?;
            configure_this_thread(&setup)
        })?;
        let user = pin(dir, "user", &ns_dir.join("user").to_string_lossy())?;
        match pin_all(dir, create, |kind| {
            ns_dir.join(kind).to_string_lossy().into_owned()
        }) {
            Ok(owned) => Ok(PinnedUserNamespaces { user, owned }),
            Err(err) => {
                let _ = unpin(&user);
                Err(err)
            }
        }
    })();
    drop(parked.release);
    let reaped = sys::reap(parked.pidfd.as_fd()).map_err(step("reap user namespace holder".into()));
    let pinned = pinned?;
    reaped?;
    Ok(pinned)
}

/// Moves the calling thread into the holder's network, IPC and UTS namespaces (those
/// `create` made); the daemon's root may, as it owns every user namespace below it.
fn join_owned(ns_dir: &Path, create: NewNamespaces) -> Result<(), NamespaceError> {
    let kinds = [
        ("net", create.net, LinkNameSpaceType::Network),
        (
            "ipc",
            create.ipc,
            LinkNameSpaceType::InterProcessCommunication,
        ),
        (
            "uts",
            create.uts,
            LinkNameSpaceType::HostNameAndNISDomainName,
        ),
    ];
    for (kind, wanted, link_type) in kinds {
        if !wanted {
            continue;
        }
        let path = ns_dir.join(kind);
        let step = format!("join {}", path.display());
        let file = fs::File::open(&path).map_err(|source| NamespaceError {
            step: step.clone(),
            source,
        })?;
        rustix::thread::move_into_link_name_space(file.as_fd(), Some(link_type)).map_err(
            |errno| NamespaceError {
                step,
                source: errno.into(),
            },
        )?;
    }
    Ok(())
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
        let setup = NamespaceSetup {
            create: NewNamespaces {
                net: true,
                ipc: true,
                uts: true,
            },
            hostname: "userns-pod".to_owned(),
            sysctls: Vec::new(),
        };
        let pinned = create(dir.path(), &mappings, setup).unwrap();
        assert_eq!(pinned.user, dir.path().join("userns"));
        let pinned_id = rustix::fs::stat(&pinned.user).unwrap().st_ino;
        let own_id = rustix::fs::stat("/proc/self/ns/user").unwrap().st_ino;
        assert_ne!(pinned_id, own_id, "the pod user namespace must be new");
        // A process that joins the pinned user namespace sees the pod's maps, and may join
        // the pod's UTS and network namespaces, which only their owner allows.
        let user = pinned.user.clone();
        let uts = pinned.owned.uts.clone().unwrap();
        let net = pinned.owned.net.clone().unwrap();
        let inside = sys::test_support::in_child_process(move || {
            let join = |path: &Path, kind| {
                let ns = fs::File::open(path).map_err(|e| e.to_string())?;
                rustix::thread::move_into_link_name_space(ns.as_fd(), Some(kind))
                    .map_err(|e| format!("join {}: {e}", path.display()))
            };
            join(&user, LinkNameSpaceType::User)?;
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
            join(&uts, LinkNameSpaceType::HostNameAndNISDomainName)?;
            join(&net, LinkNameSpaceType::Network)?;
            let hostname = rustix::system::uname()
                .nodename()
                .to_string_lossy()
                .into_owned();
            if hostname != "userns-pod" {
                return Err(format!("hostname {hostname:?}"));
            }
            Ok(())
        });
        unpin(&pinned.user).unwrap();
        super::super::namespaces::release(&pinned.owned).unwrap();
        inside.unwrap();
        assert!(
            !pinned.user.exists() && pinned.owned.net.as_ref().is_some_and(|net| !net.exists())
        );
    }
}
