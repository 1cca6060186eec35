//! Pod files: the hostname, resolv.conf and hosts files containers mount, and the pod's
//! shared `/dev/shm`.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rustix::mount::{MountFlags, UnmountFlags, mount, unmount};

use crate::store::DnsConfig;

/// Size of a pod's `/dev/shm` tmpfs, as containerd and Docker default to.
pub const SHM_BYTES: u64 = 64 * 1024 * 1024;

/// The files written for one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodFiles {
    /// `<pod dir>/hostname`.
    pub hostname: PathBuf,
    /// `<pod dir>/resolv.conf`.
    pub resolv_conf: PathBuf,
    /// `<pod dir>/hosts`, for host-network pods.
    pub hosts: Option<PathBuf>,
}

/// What to write.
#[derive(Debug, Clone)]
pub struct PodFilesSpec<'a> {
    /// The pod's hostname.
    pub hostname: &'a str,
    /// DNS settings; `None` copies the node's resolv.conf.
    pub dns: Option<&'a DnsConfig>,
    /// Host-network pods also get a copy of the node's hosts file.
    pub host_network: bool,
    /// The node's resolv.conf (injected for tests).
    pub host_resolv_conf: &'a Path,
    /// The node's hosts file (injected for tests).
    pub host_hosts: &'a Path,
}

/// Writes the pod files into `pod_dir`.
pub fn write(pod_dir: &Path, spec: &PodFilesSpec<'_>) -> io::Result<PodFiles> {
    let hostname = pod_dir.join("hostname");
    write_public(&hostname, format!("{}\n", spec.hostname).as_bytes())?;
    let resolv_conf = pod_dir.join("resolv.conf");
    match spec.dns {
        Some(dns) => write_public(&resolv_conf, render_resolv_conf(dns).as_bytes())?,
        None => {
            let host = fs::read(spec.host_resolv_conf).unwrap_or_default();
            write_public(&resolv_conf, &host)?;
        }
    }
    let hosts = if spec.host_network {
        let path = pod_dir.join("hosts");
        let host = fs::read(spec.host_hosts).unwrap_or_default();
        write_public(&path, &host)?;
        Some(path)
    } else {
        None
    };
    Ok(PodFiles {
        hostname,
        resolv_conf,
        hosts,
    })
}

/// resolv.conf text for a DNS config.
pub fn render_resolv_conf(dns: &DnsConfig) -> String {
    let mut text = String::new();
    if !dns.searches.is_empty() {
        text.push_str(&format!("search {}\n", dns.searches.join(" ")));
    }
    for server in &dns.servers {
        text.push_str(&format!("nameserver {server}\n"));
    }
    if !dns.options.is_empty() {
        text.push_str(&format!("options {}\n", dns.options.join(" ")));
    }
    text
}

/// Containers of any user read these files through bind mounts: 0644.
fn write_public(path: &Path, contents: &[u8]) -> io::Result<()> {
    fs::write(path, contents)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o644))
}

/// Mounts the pod's shared `/dev/shm` tmpfs at `<pod dir>/shm`.
pub fn mount_shm(pod_dir: &Path) -> io::Result<PathBuf> {
    let target = pod_dir.join("shm");
    fs::create_dir_all(&target)?;
    let options =
        std::ffi::CString::new(format!("mode=1777,size={SHM_BYTES}")).map_err(io::Error::other)?;
    mount(
        "shm",
        &target,
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        Some(options.as_c_str()),
    )?;
    Ok(target)
}

/// Unmounts the pod's `/dev/shm`; repeatable.
pub fn unmount_shm(path: &Path) -> io::Result<()> {
    match unmount(path, UnmountFlags::DETACH) {
        Ok(()) => Ok(()),
        Err(err) if err == rustix::io::Errno::INVAL || err == rustix::io::Errno::NOENT => Ok(()),
        Err(err) => Err(err.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_from_dns_config() {
        let dns = DnsConfig {
            servers: vec!["10.0.0.10".into(), "10.0.0.11".into()],
            searches: vec!["ns.svc.cluster.local".into(), "cluster.local".into()],
            options: vec!["ndots:5".into()],
        };
        assert_eq!(
            render_resolv_conf(&dns),
            "search ns.svc.cluster.local cluster.local\nnameserver 10.0.0.10\nnameserver 10.0.0.11\noptions ndots:5\n"
        );
    }

    #[test]
    fn writes_files_and_copies_host_ones() {
        let dir = tempfile::tempdir().unwrap();
        let host_resolv = dir.path().join("host-resolv");
        let host_hosts = dir.path().join("host-hosts");
        fs::write(&host_resolv, "nameserver 1.1.1.1\n").unwrap();
        fs::write(&host_hosts, "127.0.0.1 localhost\n").unwrap();
        let pod = dir.path().join("pod");
        fs::create_dir(&pod).unwrap();
        let files = write(
            &pod,
            &PodFilesSpec {
                hostname: "web-0",
                dns: None,
                host_network: true,
                host_resolv_conf: &host_resolv,
                host_hosts: &host_hosts,
            },
        )
        .unwrap();
        assert_eq!(fs::read_to_string(&files.hostname).unwrap(), "web-0\n");
        assert_eq!(
            fs::read_to_string(&files.resolv_conf).unwrap(),
            "nameserver 1.1.1.1\n"
        );
        assert_eq!(
            fs::read_to_string(files.hosts.unwrap()).unwrap(),
            "127.0.0.1 localhost\n"
        );
        let mode = fs::metadata(&files.hostname).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
    }

    #[test]
    fn shm_is_a_tmpfs_and_unmount_is_repeatable() {
        if !rustix::process::geteuid().is_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let shm = mount_shm(dir.path()).unwrap();
        let stat = rustix::fs::statfs(&shm).unwrap();
        assert_eq!(stat.f_type, libc::TMPFS_MAGIC);
        unmount_shm(&shm).unwrap();
        unmount_shm(&shm).unwrap();
    }
}
