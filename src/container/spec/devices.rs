//! Devices: the nodes created in the container's `/dev` and the device cgroup rules.
//!
//! Unprivileged containers get the standard nodes (the executor creates them), the CRI
//! devices, and device rules that deny everything else (the default allow list is runc's:
//! `mknod` of anything, and the standard nodes and terminals). Privileged containers get every
//! device of the host and may use any.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType};

use super::{ContainerSpecInput, HostInfo, SpecError};

/// A device node's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    /// A character device.
    Char,
    /// A block device.
    Block,
}

/// A device node of the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Its path on the host (and, for privileged containers, in the container).
    pub path: PathBuf,
    /// Character or block.
    pub kind: DeviceKind,
    /// Major number.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
    /// Permission bits.
    pub file_mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// Directories of `/dev` that are not the host's devices to hand out (runc skips the same):
/// terminals and shared memory are the container's own, and the rest are mount points or
/// symlink farms.
const SKIPPED_DIRS: &[&str] = &["pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"];

/// The device nodes below `dev` (the host's `/dev`), recursively, without following symlinks
/// and without the host's console.
pub fn host_devices(dev: &Path) -> io::Result<Vec<DeviceInfo>> {
    let mut found = Vec::new();
    let mut pending = vec![dev.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let path = entry.path();
            let file_type = entry.file_type()?;
            if file_type.is_dir() {
                let name = entry.file_name();
                if !SKIPPED_DIRS.iter().any(|skip| name == *skip) {
                    pending.push(path);
                }
                continue;
            }
            let kind = if file_type.is_char_device() {
                DeviceKind::Char
            } else if file_type.is_block_device() {
                DeviceKind::Block
            } else {
                continue;
            };
            if path == dev.join("console") {
                continue;
            }
            let metadata = match fs::symlink_metadata(&path) {
                Ok(metadata) => metadata,
                // Devices come and go (hotplug): one that vanished is not an error.
                Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                Err(err) => return Err(err),
            };
            let rdev = metadata.rdev();
            found.push(DeviceInfo {
                path,
                kind,
                major: rustix::fs::major(rdev),
                minor: rustix::fs::minor(rdev),
                file_mode: metadata.mode() & 0o7777,
                uid: metadata.uid(),
                gid: metadata.gid(),
            });
        }
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(found)
}

fn device_type(kind: DeviceKind) -> LinuxDeviceType {
    match kind {
        DeviceKind::Char => LinuxDeviceType::C,
        DeviceKind::Block => LinuxDeviceType::B,
    }
}

fn rule(
    allow: bool,
    typ: LinuxDeviceType,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> LinuxDeviceCgroup {
    let mut rule = LinuxDeviceCgroup::default();
    rule.set_allow(allow)
        .set_typ(Some(typ))
        .set_major(major)
        .set_minor(minor)
        .set_access(Some(access.to_owned()));
    rule
}

/// The default rules: deny all, then allow `mknod` of any node and the use of the standard
/// nodes (null, zero, full, random, urandom, tty, console, ptmx) and pseudo-terminals.
fn default_rules() -> Vec<LinuxDeviceCgroup> {
    let c = LinuxDeviceType::C;
    let mut rules = vec![
        rule(false, LinuxDeviceType::A, None, None, "rwm"),
        rule(true, c, None, None, "m"),
        rule(true, LinuxDeviceType::B, None, None, "m"),
    ];
    for (major, minor) in [
        (1, 3),
        (1, 5),
        (1, 7),
        (1, 8),
        (1, 9),
        (5, 0),
        (5, 1),
        (5, 2),
    ] {
        rules.push(rule(true, c, Some(major), Some(minor), "rwm"));
    }
    rules.push(rule(true, c, Some(136), None, "rwm"));
    rules
}

fn linux_device(device: &DeviceInfo, container_path: PathBuf) -> LinuxDevice {
    let mut out = LinuxDevice::default();
    out.set_path(container_path)
        .set_typ(device_type(device.kind))
        .set_major(i64::from(device.major))
        .set_minor(i64::from(device.minor))
        .set_file_mode(Some(device.file_mode & 0o777))
        .set_uid(Some(device.uid))
        .set_gid(Some(device.gid));
    out
}

/// `linux.devices` and the device cgroup rules.
pub(super) fn build(
    input: &ContainerSpecInput,
    host: &HostInfo,
) -> Result<(Vec<LinuxDevice>, Vec<LinuxDeviceCgroup>), SpecError> {
    let mut devices: Vec<LinuxDevice> = Vec::new();
    let mut rules;
    if input.security.privileged {
        devices.extend(
            host.devices
                .iter()
                .map(|device| linux_device(device, device.path.clone())),
        );
        rules = vec![rule(true, LinuxDeviceType::A, None, None, "rwm")];
    } else {
        rules = default_rules();
    }

    for (at, request) in input.devices.iter().enumerate() {
        let field = format!("devices[{at}]");
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
        let permissions = if request.permissions.is_empty() {
            "rwm"
        } else {
            request.permissions.as_str()
        };
        if !permissions.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
            return Err(SpecError::invalid(
                format!("{field}.permissions"),
                format!("{permissions:?} is not a combination of r, w and m"),
            ));
        }
        let host_path = Path::new(&request.host_path);
        let container_path = Path::new(&request.container_path);
        // The node itself, or every node below a directory (`/dev/snd`).
        let matches: Vec<(&DeviceInfo, PathBuf)> =
            match host.devices.iter().find(|device| device.path == host_path) {
                Some(device) => vec![(device, container_path.to_path_buf())],
                None => host
                    .devices
                    .iter()
                    .filter_map(|device| {
                        let rest = device.path.strip_prefix(host_path).ok()?;
                        (!rest.as_os_str().is_empty()).then(|| (device, container_path.join(rest)))
                    })
                    .collect(),
            };
        if matches.is_empty() {
            return Err(SpecError::DeviceNotFound {
                host_path: request.host_path.clone(),
            });
        }
        for (device, path) in matches {
            let node = linux_device(device, path);
            match devices.iter_mut().find(|d| d.path() == node.path()) {
                Some(existing) => *existing = node,
                None => devices.push(node),
            }
            rules.push(rule(
                true,
                device_type(device.kind),
                Some(i64::from(device.major)),
                Some(i64::from(device.minor)),
                permissions,
            ));
        }
    }
    Ok((devices, rules))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::spec::DeviceRequest;

    pub(crate) fn host() -> HostInfo {
        let device = |path: &str, kind, major, minor| DeviceInfo {
            path: PathBuf::from(path),
            kind,
            major,
            minor,
            file_mode: 0o660,
            uid: 0,
            gid: 6,
        };
        HostInfo {
            devices: vec![
                device("/dev/null", DeviceKind::Char, 1, 3),
                device("/dev/fuse", DeviceKind::Char, 10, 229),
                device("/dev/sda", DeviceKind::Block, 8, 0),
                device("/dev/snd/controlC0", DeviceKind::Char, 116, 0),
                device("/dev/snd/timer", DeviceKind::Char, 116, 33),
                device("/dev/sndx", DeviceKind::Char, 1, 1),
            ],
            ..HostInfo::default()
        }
    }

    fn request(container: &str, host: &str, permissions: &str) -> DeviceRequest {
        DeviceRequest {
            container_path: container.to_owned(),
            host_path: host.to_owned(),
            permissions: permissions.to_owned(),
        }
    }

    fn rule_text(rule: &LinuxDeviceCgroup) -> String {
        format!("{}{}", if rule.allow() { "allow " } else { "deny " }, rule)
    }

    #[test]
    fn unprivileged_containers_get_deny_all_plus_the_standard_nodes() {
        let (devices, rules) = build(&ContainerSpecInput::default(), &host()).expect("devices");
        assert!(devices.is_empty());
        let rules: Vec<String> = rules.iter().map(rule_text).collect();
        assert_eq!(rules.first().map(String::as_str), Some("deny a *:* rwm"));
        assert!(rules.contains(&"allow c 1:3 rwm".to_owned()));
        assert!(rules.contains(&"allow c 136:* rwm".to_owned()));
        assert!(rules.contains(&"allow b *:* m".to_owned()));
        assert!(!rules.iter().any(|r| r.contains("8:0")));
    }

    #[test]
    fn cri_devices_by_node_and_by_directory() {
        let input = ContainerSpecInput {
            devices: vec![
                request("/dev/fuse", "/dev/fuse", "rw"),
                request("/dev/xvda", "/dev/sda", "r"),
                request("/dev/sound", "/dev/snd", "mrw"),
            ],
            ..ContainerSpecInput::default()
        };
        let (devices, rules) = build(&input, &host()).expect("devices");
        let paths: Vec<_> = devices
            .iter()
            .map(|d| d.path().display().to_string())
            .collect();
        assert_eq!(
            paths,
            [
                "/dev/fuse",
                "/dev/xvda",
                "/dev/sound/controlC0",
                "/dev/sound/timer"
            ]
        );
        let xvda = devices.get(1).expect("xvda");
        assert_eq!(
            (xvda.typ(), xvda.major(), xvda.minor()),
            (LinuxDeviceType::B, 8, 0)
        );
        assert_eq!(xvda.file_mode(), Some(0o660));
        let rules: Vec<String> = rules.iter().map(rule_text).collect();
        assert!(rules.contains(&"allow c 10:229 rw".to_owned()));
        assert!(rules.contains(&"allow b 8:0 r".to_owned()));
        assert!(rules.contains(&"allow c 116:33 mrw".to_owned()));
        assert!(
            !rules.iter().any(|r| r.contains(" 1:1 ")),
            "/dev/sndx is not below /dev/snd"
        );
    }

    #[test]
    fn bad_device_requests() {
        let mut input = ContainerSpecInput {
            devices: vec![request("/dev/nope", "/dev/nope", "rwm")],
            ..ContainerSpecInput::default()
        };
        let err = build(&input, &host()).expect_err("missing");
        assert!(matches!(err, SpecError::DeviceNotFound { .. }));
        input.devices = vec![request("/dev/fuse", "/dev/fuse", "rwx")];
        assert!(matches!(
            build(&input, &host()),
            Err(SpecError::Invalid { .. })
        ));
        input.devices = vec![request("dev/fuse", "/dev/fuse", "rw")];
        assert!(matches!(
            build(&input, &host()),
            Err(SpecError::RelativePath { .. })
        ));
    }

    #[test]
    fn privileged_containers_get_every_host_device() {
        let mut input = ContainerSpecInput::default();
        input.security.privileged = true;
        let (devices, rules) = build(&input, &host()).expect("devices");
        assert_eq!(devices.len(), host().devices.len());
        assert_eq!(rules.len(), 1);
        assert_eq!(
            rules.first().map(rule_text).as_deref(),
            Some("allow a *:* rwm")
        );
    }

    #[test]
    fn host_devices_skips_what_is_not_a_device() {
        let dev = tempfile::tempdir().expect("tempdir");
        fs::write(dev.path().join("regular"), "").expect("write");
        fs::create_dir(dev.path().join("pts")).expect("mkdir");
        std::os::unix::fs::symlink("/dev/null", dev.path().join("link")).expect("symlink");
        assert!(host_devices(dev.path()).expect("walk").is_empty());
        // The real /dev has at least null, with its well-known numbers.
        if let Ok(devices) = host_devices(Path::new("/dev")) {
            if let Some(null) = devices.iter().find(|d| d.path == Path::new("/dev/null")) {
                assert_eq!(
                    (null.kind, null.major, null.minor),
                    (DeviceKind::Char, 1, 3)
                );
            }
            assert!(!devices.iter().any(|d| d.path.starts_with("/dev/pts")));
        }
    }
}
