//! A pod's network, IPC and UTS namespaces, kept alive without any process.
//!
//! A short-lived OS thread unshares into fresh namespaces, brings `lo` up, sets the hostname
//! and the pod's sysctls from inside them, and bind-mounts its `/proc/thread-self/ns/<kind>`
//! files onto pin files in the pod directory. The thread then exits; the bind mounts hold the
//! namespaces until the pod is removed. This replaces the pause container.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use rustix::mount::{UnmountFlags, mount_bind, unmount};

use super::sysctl::{Sysctl, SysctlNamespace};
use crate::executor::sys::{self, NewNamespaces};

/// Where `/proc/sys` is; sysctls are written below it from inside the pod's namespaces.
const PROC_SYS: &str = "/proc/sys";

/// What to set up inside the new namespaces.
#[derive(Debug, Clone, Default)]
pub struct NamespaceSetup {
    /// Which namespaces to create.
    pub create: NewNamespaces,
    /// Hostname to set in the new UTS namespace.
    pub hostname: String,
    /// Sysctls to write (each in its own namespace, which must be among those created).
    pub sysctls: Vec<Sysctl>,
}

/// The pin files of a pod's namespaces.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PinnedNamespaces {
    /// Network namespace pin.
    pub net: Option<PathBuf>,
    /// IPC namespace pin.
    pub ipc: Option<PathBuf>,
    /// UTS namespace pin.
    pub uts: Option<PathBuf>,
}

/// A failure inside the namespace thread, naming the step.
#[derive(Debug, thiserror::Error)]
#[error("{step}: {source}")]
pub struct NamespaceError {
    /// What was being done.
    pub step: String,
    /// The failure.
    pub source: io::Error,
}

/// Creates and pins the namespaces of `setup` under `dir` (which must exist).
pub fn create(dir: &Path, setup: NamespaceSetup) -> Result<PinnedNamespaces, NamespaceError> {
    let dir = dir.to_owned();
    on_scratch_thread(move || create_on_this_thread(&dir, &setup))
}

/// Runs `body` on a new OS thread that exits afterwards, so the namespaces it enters never
/// reach a pooled thread.
pub(super) fn on_scratch_thread<T: Send + 'static>(
    body: impl FnOnce() -> Result<T, NamespaceError> + Send + 'static,
) -> Result<T, NamespaceError> {
    std::thread::Builder::new()
        .name("carrack-podns".to_owned())
        .spawn(body)
        .map_err(|source| NamespaceError {
            step: "spawn namespace thread".to_owned(),
            source,
        })?
        .join()
        .unwrap_or_else(|_| {
            Err(NamespaceError {
                step: "namespace thread panicked".to_owned(),
                source: io::Error::other("panic"),
            })
        })
}

fn create_on_this_thread(
    dir: &Path,
    setup: &NamespaceSetup,
) -> Result<PinnedNamespaces, NamespaceError> {
    sys::unshare_thread(setup.create).map_err(|source| NamespaceError {
        step: "unshare namespaces".to_owned(),
        source,
    })?;
    configure_this_thread(setup)?;
    pin_all(dir, setup.create, |kind| {
        format!("/proc/thread-self/ns/{kind}")
    })
}

/// Brings up `lo`, sets the hostname and writes the sysctls of `setup` in the namespaces the
/// calling thread is in (which must be the pod's).
pub(super) fn configure_this_thread(setup: &NamespaceSetup) -> Result<(), NamespaceError> {
    let step = |step: &str| {
        let step = step.to_owned();
        move |source| NamespaceError { step, source }
    };
    if setup.create.net {
        sys::set_loopback_up().map_err(step("bring up loopback"))?;
    }
    if setup.create.uts && !setup.hostname.is_empty() {
        rustix::system::sethostname(setup.hostname.as_bytes())
            .map_err(io::Error::from)
            .map_err(step("set hostname"))?;
    }
    for sysctl in &setup.sysctls {
        let created = match sysctl.namespace {
            SysctlNamespace::Net => setup.create.net,
            SysctlNamespace::Ipc => setup.create.ipc,
        };
        if !created {
            // Validation refuses these; never write a sysctl into a host namespace.
            return Err(NamespaceError {
                step: format!("sysctl {}", sysctl.name),
                source: io::Error::other("its namespace is the host's"),
            });
        }
        let path = Path::new(PROC_SYS).join(&sysctl.relative_path);
        fs::write(&path, &sysctl.value).map_err(step(&format!(
            "write sysctl {}={}",
            sysctl.name, sysctl.value
        )))?;
    }
    Ok(())
}

/// Pins each namespace kind in `create` from the file `source_of(kind)`; on a failure the
/// pins already made are released.
pub(super) fn pin_all(
    dir: &Path,
    create: NewNamespaces,
    source_of: impl Fn(&str) -> String,
) -> Result<PinnedNamespaces, NamespaceError> {
    let mut pinned = PinnedNamespaces::default();
    let kinds = [
        ("net", create.net),
        ("ipc", create.ipc),
        ("uts", create.uts),
    ];
    for (kind, wanted) in kinds {
        if !wanted {
            continue;
        }
        match pin(dir, kind, &source_of(kind)) {
            Ok(path) => match kind {
                "net" => pinned.net = Some(path),
                "ipc" => pinned.ipc = Some(path),
                _ => pinned.uts = Some(path),
            },
            Err(err) => {
                let _ = release(&pinned);
                return Err(err);
            }
        }
    }
    Ok(pinned)
}

/// Bind-mounts the namespace file `source` onto the new pin file `<dir>/<kind>ns`.
pub(super) fn pin(dir: &Path, kind: &str, source: &str) -> Result<PathBuf, NamespaceError> {
    let target = dir.join(format!("{kind}ns"));
    File::create(&target).map_err(|source| NamespaceError {
        step: format!("create pin file {}", target.display()),
        source,
    })?;
    if let Err(err) = mount_bind(source, &target) {
        let _ = fs::remove_file(&target);
        return Err(NamespaceError {
            step: format!("pin {kind} namespace at {}", target.display()),
            source: err.into(),
        });
    }
    Ok(target)
}

/// Unpins every namespace (the kernel frees each once nothing else uses it). Pins that are
/// already gone are fine: release is repeatable.
pub fn release(pinned: &PinnedNamespaces) -> Result<(), NamespaceError> {
    for path in [&pinned.net, &pinned.ipc, &pinned.uts]
        .into_iter()
        .flatten()
    {
        unpin(path)?;
    }
    Ok(())
}

/// Unmounts and deletes one pin file.
pub fn unpin(path: &Path) -> Result<(), NamespaceError> {
    match unmount(path, UnmountFlags::DETACH) {
        Ok(()) => {}
        // EINVAL: not a mount point (already unmounted); ENOENT: already removed.
        Err(err) if err == rustix::io::Errno::INVAL || err == rustix::io::Errno::NOENT => {}
        Err(err) => {
            return Err(NamespaceError {
                step: format!("unpin {}", path.display()),
                source: err.into(),
            });
        }
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(NamespaceError {
            step: format!("remove pin file {}", path.display()),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn pins_namespaces_with_hostname_and_sysctls() {
        if !rustix::process::geteuid().is_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let sysctls = super::super::sysctl::validate(
            &BTreeMap::from([("kernel.shm_rmid_forced".to_owned(), "1".to_owned())]),
            true,
            true,
        )
        .unwrap();
        let host_before = fs::read_to_string("/proc/sys/kernel/shm_rmid_forced").unwrap();
        let pinned = create(
            dir.path(),
            NamespaceSetup {
                create: NewNamespaces {
                    net: true,
                    ipc: true,
                    uts: true,
                },
                hostname: "pod-host".to_owned(),
                sysctls,
            },
        )
        .unwrap();
        let net = pinned.net.clone().unwrap();
        let own = fs::read_link("/proc/self/ns/net").unwrap();
        let pinned_id = rustix::fs::stat(&net).unwrap().st_ino;
        let own_id = rustix::fs::stat("/proc/self/ns/net").unwrap().st_ino;
        assert_ne!(
            pinned_id, own_id,
            "pod netns must differ from ours ({own:?})"
        );
        assert_eq!(
            fs::read_to_string("/proc/sys/kernel/shm_rmid_forced").unwrap(),
            host_before,
            "host sysctl must be untouched"
        );
        // Enter the pinned namespaces on a scratch thread and look inside.
        let uts = pinned.uts.clone().unwrap();
        let ipc = pinned.ipc.clone().unwrap();
        let (hostname, rmid) = std::thread::spawn(move || {
            let uts = File::open(uts).unwrap();
            let ipc = File::open(ipc).unwrap();
            rustix::thread::move_into_link_name_space(
                std::os::fd::AsFd::as_fd(&uts),
                Some(rustix::thread::LinkNameSpaceType::HostNameAndNISDomainName),
            )
            .unwrap();
            rustix::thread::move_into_link_name_space(
                std::os::fd::AsFd::as_fd(&ipc),
                Some(rustix::thread::LinkNameSpaceType::InterProcessCommunication),
            )
            .unwrap();
            let hostname = rustix::system::uname()
                .nodename()
                .to_string_lossy()
                .into_owned();
            (
                hostname,
                fs::read_to_string("/proc/sys/kernel/shm_rmid_forced").unwrap(),
            )
        })
        .join()
        .unwrap();
        assert_eq!(hostname, "pod-host");
        assert_eq!(rmid.trim(), "1");
        release(&pinned).unwrap();
        release(&pinned).unwrap();
        assert!(!net.exists());
    }
}
