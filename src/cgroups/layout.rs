//! Which cgroup hierarchies exist under the configured root, read from the mount table.
//!
//! Controllers are discovered, never assumed: on v1 a hierarchy may carry several controllers
//! (`cpu,cpuacct` co-mounted) or a named one (`name=systemd`), and a hybrid host also mounts an
//! empty cgroup2 tree at `<root>/unified`, which must not be mistaken for a v2 host.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use super::error::CgroupError;

/// The cgroup layout found under the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// Legacy per-controller hierarchies (also chosen on hybrid hosts).
    V1 {
        /// Controller name (`memory`, `cpuacct`, `name=systemd`) → its hierarchy's mount dir.
        /// Co-mounted controllers map to the same dir.
        controllers: BTreeMap<String, PathBuf>,
    },
    /// The unified hierarchy.
    V2 {
        /// Its mount point.
        unified: PathBuf,
    },
}

impl Layout {
    /// Finds the layout under `root` from the mount table at `mountinfo`.
    ///
    /// A cgroup2 mount exactly at `root` offering controllers wins; otherwise the v1
    /// hierarchies mounted below `root`; otherwise a controller-less cgroup2 at `root`.
    pub fn detect(root: &Path, mountinfo: &Path) -> Result<Self, CgroupError> {
        let text = std::fs::read_to_string(mountinfo).map_err(|source| CgroupError::Mountinfo {
            path: mountinfo.to_owned(),
            source,
        })?;
        let mut controllers = BTreeMap::new();
        let mut unified = None;
        for line in text.lines() {
            let Some(mount) = parse_line(line) else {
                continue;
            };
            match mount.fstype {
                "cgroup2" if mount.mount_point == root => unified = Some(mount.mount_point),
                "cgroup" if mount.mount_point.starts_with(root) => {
                    for option in mount.super_options.split(',') {
                        if is_controller_option(option) {
                            // A hierarchy bind-mounted twice keeps its first mount point.
                            controllers
                                .entry(option.to_owned())
                                .or_insert_with(|| mount.mount_point.clone());
                        }
                    }
                }
                _ => {}
            }
        }
        if let Some(unified) = &unified {
            let offered =
                std::fs::read_to_string(unified.join("cgroup.controllers")).unwrap_or_default();
            if !offered.trim().is_empty() || controllers.is_empty() {
                return Ok(Self::V2 {
                    unified: unified.clone(),
                });
            }
        }
        if controllers.is_empty() {
            return Err(CgroupError::NoHierarchy {
                root: root.to_owned(),
                mountinfo: mountinfo.to_owned(),
            });
        }
        Ok(Self::V1 { controllers })
    }

    /// Each distinct hierarchy mount dir once (co-mounted controllers share one).
    pub fn hierarchies(&self) -> Vec<&Path> {
        let mut dirs: Vec<&Path> = match self {
            Self::V1 { controllers } => controllers.values().map(PathBuf::as_path).collect(),
            Self::V2 { unified } => vec![unified.as_path()],
        };
        dirs.sort();
        dirs.dedup();
        dirs
    }
}

/// The super options of a v1 cgroup mount list its controllers among generic flags.
fn is_controller_option(option: &str) -> bool {
    const NOT_CONTROLLERS: [&str; 7] = [
        "rw",
        "ro",
        "noprefix",
        "clone_children",
        "xattr",
        "cpuset_v2_mode",
        "favordynmods",
    ];
    !option.is_empty()
        && !NOT_CONTROLLERS.contains(&option)
        && !option.starts_with("release_agent=")
}

/// The fields of one mountinfo line that matter here.
struct Mount<'a> {
    mount_point: PathBuf,
    fstype: &'a str,
    super_options: &'a str,
}

/// Parses `id parent maj:min root mount_point opts [optional...] - fstype source super_opts`.
fn parse_line(line: &str) -> Option<Mount<'_>> {
    let (left, right) = line.split_once(" - ")?;
    let mount_point = left.split(' ').nth(4)?;
    let mut right = right.split(' ');
    let fstype = right.next()?;
    let _source = right.next()?;
    let super_options = right.next().unwrap_or("");
    Some(Mount {
        mount_point: unescape(mount_point),
        fstype,
        super_options,
    })
}

/// Undoes the kernel's octal escaping of space, tab, newline and backslash in mount points.
/// Kept as bytes: a mount point need not be UTF-8.
fn unescape(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escape = bytes[i] == b'\\';
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|_| escape)
            .and_then(|digits| {
                let value = digits.iter().try_fold(0u32, |acc, b| {
                    (b'0'..=b'7')
                        .contains(b)
                        .then(|| acc * 8 + u32::from(b - b'0'))
                })?;
                u8::try_from(value).ok()
            });
        if let Some(value) = octal {
            out.push(value);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    PathBuf::from(OsString::from_vec(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::fixture::{HYBRID_MOUNTINFO, write_mountinfo};

    #[test]
    fn hybrid_host_is_v1_with_comounts_and_named_hierarchy() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("cgroup");
        let mountinfo = write_mountinfo(dir.path(), &root, HYBRID_MOUNTINFO);
        // The hybrid unified mount even offers a controller on some hosts; it is not at root.
        std::fs::create_dir_all(root.join("unified")).expect("mkdir");
        std::fs::write(root.join("unified/cgroup.controllers"), "hugetlb\n").expect("write");
        let layout = Layout::detect(&root, &mountinfo).expect("layout");
        let Layout::V1 { controllers } = &layout else {
            panic!("expected v1, got {layout:?}");
        };
        assert_eq!(controllers["cpu"], root.join("cpu,cpuacct"));
        assert_eq!(controllers["cpuacct"], root.join("cpu,cpuacct"));
        assert_eq!(controllers["memory"], root.join("memory"));
        assert_eq!(controllers["name=systemd"], root.join("systemd"));
        assert!(!controllers.contains_key("rw"));
        assert!(!controllers.contains_key("release_agent=/x"));
        assert_eq!(layout.hierarchies().len(), 7);
    }

    #[test]
    fn mounts_outside_root_are_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("cgroup");
        let text = "40 31 0:37 / /elsewhere/memory rw - cgroup cgroup rw,memory\n";
        let mountinfo = dir.path().join("mountinfo");
        std::fs::write(&mountinfo, text).expect("write");
        let err = Layout::detect(&root, &mountinfo).expect_err("nothing under root");
        assert!(matches!(err, CgroupError::NoHierarchy { .. }), "{err}");
    }

    #[test]
    fn cgroup2_at_root_with_controllers_is_v2() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("cg root");
        std::fs::create_dir_all(&root).expect("mkdir");
        std::fs::write(
            root.join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .expect("write");
        let escaped = root.display().to_string().replace(' ', "\\040");
        let text =
            format!("30 23 0:26 / {escaped} rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n");
        let mountinfo = dir.path().join("mountinfo");
        std::fs::write(&mountinfo, text).expect("write");
        let layout = Layout::detect(&root, &mountinfo).expect("layout");
        assert_eq!(layout, Layout::V2 { unified: root });
    }

    #[test]
    fn missing_mountinfo_is_an_error_naming_it() {
        let err = Layout::detect(Path::new("/sys/fs/cgroup"), Path::new("/nonexistent/mi"))
            .expect_err("missing");
        assert!(err.to_string().contains("/nonexistent/mi"), "{err}");
    }
}
