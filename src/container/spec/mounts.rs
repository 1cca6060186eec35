//! The container's mounts, masked paths and read-only paths.
//!
//! Order, as containerd builds it: the standard filesystems (`/proc`, `/dev` and what lives in
//! it, `/sys`, `/sys/fs/cgroup`), the pod's files (`/etc/hostname`, `/etc/resolv.conf`,
//! `/etc/hosts` for host-network pods) and its `/dev/shm`, then the CRI mounts sorted by depth
//! so that a parent is mounted before its children. A CRI mount replaces a standard one with
//! the same destination (kubelet's own `/etc/hosts` replaces the pod's, for example), and a
//! CRI `/dev` replaces everything below `/dev`.

use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::Mount;

use super::{ContainerSpecInput, HostInfo, MountPropagation, SpecError};
use crate::store::{NamespaceMode, PodRecord};

/// Paths masked unless the container is privileged or the request gives its own list
/// (containerd's list).
pub const DEFAULT_MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths made read-only unless the container is privileged or the request gives its own list.
pub const DEFAULT_READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The mount-related parts of the spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct MountPlan {
    pub mounts: Vec<Mount>,
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
    /// `rshared` when a mount is bidirectional, `rslave` when one receives host mounts, else
    /// unset (the executor's default).
    pub rootfs_propagation: Option<String>,
}

fn mount(destination: &str, typ: &str, source: impl Into<PathBuf>, options: &[&str]) -> Mount {
    let mut mount = Mount::default();
    mount
        .set_destination(PathBuf::from(destination))
        .set_typ(Some(typ.to_owned()))
        .set_source(Some(source.into()))
        .set_options(Some(options.iter().map(|o| (*o).to_owned()).collect()))
        .set_uid_mappings(None)
        .set_gid_mappings(None);
    mount
}

/// A bind mount with CRI's option words.
fn bind(destination: &str, source: impl Into<PathBuf>, options: &[&str]) -> Mount {
    mount(destination, "bind", source, options)
}

/// `path` made absolute and lexically clean (`//`, `.` and `..` resolved; never above `/`).
fn clean(path: &str) -> String {
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for component in Path::new(path).components() {
        match component {
            Component::Normal(name) => parts.push(name),
            Component::ParentDir => {
                parts.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    let mut out = String::new();
    for part in parts {
        out.push('/');
        out.push_str(&part.to_string_lossy());
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// Builds the mounts and masks.
pub(super) fn build(
    input: &ContainerSpecInput,
    pod: &PodRecord,
    host: &HostInfo,
) -> Result<MountPlan, SpecError> {
    let security = &input.security;
    let privileged = security.privileged;
    let sys_mode = if privileged { "rw" } else { "ro" };
    let mut defaults = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        shm_mount(input, pod, host)?,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", sys_mode],
        ),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", sys_mode],
        ),
    ];

    // The pod's files, read-only with a read-only rootfs (as containerd does).
    if pod.pod_dir.is_empty() {
        return Err(SpecError::PodIncomplete {
            pod_id: pod.id.clone(),
            what: "pod directory",
        });
    }
    let pod_dir = Path::new(&pod.pod_dir);
    let file_mode = if security.readonly_rootfs { "ro" } else { "rw" };
    let file_options = ["rbind", "rprivate", file_mode];
    defaults.push(bind(
        "/etc/hostname",
        pod_dir.join("hostname"),
        &file_options,
    ));
    defaults.push(bind(
        "/etc/resolv.conf",
        pod_dir.join("resolv.conf"),
        &file_options,
    ));
    // Only host-network pods have a hosts file of their own; for the others kubelet sends
    // its managed /etc/hosts as a CRI mount.
    if pod.namespaces.network == NamespaceMode::Node {
        defaults.push(bind("/etc/hosts", pod_dir.join("hosts"), &file_options));
    }

    let mut requested = Vec::new();
    let mut propagation = None;
    for (at, request) in input.mounts.iter().enumerate() {
        let field = format!("mounts[{at}]");
        if request.image.is_some() {
            return Err(SpecError::Unsupported {
                feature: "image volumes (mounts with an image)",
            });
        }
        for (name, path) in [
            ("container_path", &request.container_path),
            ("host_path", &request.host_path),
        ] {
            if !path.starts_with('/') {
                return Err(SpecError::RelativePath {
                    field: format!("{field}.{name}"),
                    path: path.clone(),
                });
            }
        }
        let destination = clean(&request.container_path);
        if destination == "/" {
            return Err(SpecError::invalid(
                format!("{field}.container_path"),
                "a mount over the container's root is not allowed",
            ));
        }
        let mut options = vec!["rbind"];
        match request.propagation {
            MountPropagation::Private => options.push("rprivate"),
            MountPropagation::HostToContainer => {
                options.push("rslave");
                if propagation.is_none() {
                    propagation = Some("rslave");
                }
            }
            MountPropagation::Bidirectional => {
                options.push("rshared");
                propagation = Some("rshared");
            }
        }
        options.push(if request.readonly { "ro" } else { "rw" });
        if request.recursive_read_only {
            if !request.readonly {
                return Err(SpecError::invalid(
                    format!("{field}.recursive_read_only"),
                    "needs readonly",
                ));
            }
            if request.propagation != MountPropagation::Private {
                return Err(SpecError::invalid(
                    format!("{field}.recursive_read_only"),
                    "needs private propagation",
                ));
            }
            options.push("rro");
        }
        let mut mount = bind_owned(&request.host_path, &options);
        if let Some(mappings) = &request.id_mappings {
            // The executor idmaps through the container's user namespace, the pod's: other
            // mappings would need a user namespace of their own.
            if pod.namespaces.user.as_ref() != Some(mappings) {
                return Err(SpecError::Unsupported {
                    feature: "idmapped mounts with other mappings than the pod's user namespace",
                });
            }
            mount
                .set_uid_mappings(Some(vec![super::oci_id_mapping(&mappings.uid)]))
                .set_gid_mappings(Some(vec![super::oci_id_mapping(&mappings.gid)]));
        }
        requested.push((destination, mount));
    }
    // Parents before children; equal depths keep the request's order.
    requested.sort_by_key(|(destination, _)| Path::new(destination.as_str()).components().count());

    let replaces_dev = requested
        .iter()
        .any(|(destination, _)| destination == "/dev");
    defaults.retain(|default| {
        let destination = clean(&default.destination().to_string_lossy());
        let replaced = requested.iter().any(|(d, _)| *d == destination);
        let under_dev = replaces_dev && destination.starts_with("/dev/");
        !replaced && !under_dev
    });
    let mut mounts = defaults;
    for (destination, mut mount) in requested {
        mount.set_destination(PathBuf::from(destination));
        mounts.push(mount);
    }

    let (masked_paths, readonly_paths) = if privileged {
        (Vec::new(), Vec::new())
    } else {
        (
            path_list(
                "security_context.masked_paths",
                security.masked_paths.as_deref(),
                DEFAULT_MASKED_PATHS,
            )?,
            path_list(
                "security_context.readonly_paths",
                security.readonly_paths.as_deref(),
                DEFAULT_READONLY_PATHS,
            )?,
        )
    };

    Ok(MountPlan {
        mounts,
        masked_paths,
        readonly_paths,
        rootfs_propagation: propagation.map(str::to_owned),
    })
}

fn bind_owned(source: &str, options: &[&str]) -> Mount {
    // The destination is set by the caller (after sorting).
    bind("/", PathBuf::from(source), options)
}

/// `/dev/shm`: the pod's shared tmpfs; with host IPC the node's `/dev/shm` (or a private tmpfs
/// when the caller gives none).
fn shm_mount(
    input: &ContainerSpecInput,
    pod: &PodRecord,
    host: &HostInfo,
) -> Result<Mount, SpecError> {
    let tmpfs = || {
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        )
    };
    if input.security.namespaces.ipc == NamespaceMode::Node {
        return Ok(match &host.host_shm {
            Some(path) => bind("/dev/shm", path.clone(), &["rbind", "rprivate", "rw"]),
            None => tmpfs(),
        });
    }
    match pod.shm_path.as_deref().filter(|path| !path.is_empty()) {
        Some(path) => Ok(bind(
            "/dev/shm",
            PathBuf::from(path),
            &["rbind", "rprivate", "rw"],
        )),
        None => Err(SpecError::PodIncomplete {
            pod_id: pod.id.clone(),
            what: "/dev/shm",
        }),
    }
}

/// The request's list if it gives one (each path absolute), else the defaults.
fn path_list(
    field: &str,
    requested: Option<&[String]>,
    defaults: &[&str],
) -> Result<Vec<String>, SpecError> {
    match requested {
        None => Ok(defaults.iter().map(|p| (*p).to_owned()).collect()),
        Some(list) => list
            .iter()
            .enumerate()
            .map(|(at, path)| {
                if path.starts_with('/') {
                    Ok(path.clone())
                } else {
                    Err(SpecError::RelativePath {
                        field: format!("{field}[{at}]"),
                        path: path.clone(),
                    })
                }
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_cleaned_lexically() {
        assert_eq!(clean("/a//b/./c/"), "/a/b/c");
        assert_eq!(clean("/a/../../b"), "/b");
        assert_eq!(clean("/.."), "/");
        assert_eq!(clean("/"), "/");
    }

    #[test]
    fn default_lists_match_containerds() {
        assert_eq!(DEFAULT_MASKED_PATHS.len(), 11);
        assert!(DEFAULT_MASKED_PATHS.contains(&"/sys/devices/virtual/powercap"));
        assert_eq!(DEFAULT_READONLY_PATHS.len(), 5);
        assert!(DEFAULT_READONLY_PATHS.contains(&"/proc/sysrq-trigger"));
    }
}
