//! `cgroup` mounts: the host's layout of cgroup hierarchies (from its mountinfo), to be
//! re-created inside the container. In its own cgroup namespace the container sees its own
//! cgroup as the root of each hierarchy it mounts. A unified (v2-only) host gets one cgroup2
//! mount; a v1 or hybrid host a tmpfs with one mount per hierarchy (`cpu,cpuacct`, `memory`,
//! `systemd`, `unified`...) and the symlinks for co-mounted controllers, as the host has.

use std::ffi::CString;

use super::error::ExecutorError;
use super::plan::{FsParameter, cstring};

/// How a `cgroup` mount is made, after the host's layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum CgroupPlan {
    /// The host mounts cgroup2 at `/sys/fs/cgroup`: so does the container.
    Unified,
    /// The host has v1 hierarchies (maybe with a v2 one beside them): a tmpfs with one
    /// mount per hierarchy, and the host's symlinks for co-mounted controllers.
    Hierarchies {
        /// One per host hierarchy, in mountinfo order.
        hierarchies: Vec<CgroupHierarchy>,
        /// `(target, name)`: `cpu -> cpu,cpuacct` and the like.
        symlinks: Vec<(CString, CString)>,
        /// The tmpfs's parameters (`mode=755`).
        tmpfs: Vec<FsParameter>,
    },
}

/// One cgroup hierarchy below the cgroup tmpfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CgroupHierarchy {
    /// The directory name (`cpu,cpuacct`, `systemd`, `unified`).
    pub name: CString,
    /// `cgroup` or `cgroup2`.
    pub fstype: CString,
    /// Controllers as flags, and `name=` for named hierarchies.
    pub options: Vec<FsParameter>,
}

/// The cgroup layout of the host from its `/proc/self/mountinfo` text: what is mounted at
/// `/sys/fs/cgroup` and directly below it.
pub(super) fn cgroup_layout(mountinfo: &str) -> Result<CgroupPlan, ExecutorError> {
    const ROOT: &str = "/sys/fs/cgroup";
    let mut hierarchies = Vec::new();
    let mut names = Vec::new();
    for line in mountinfo.lines() {
        let mut halves = line.splitn(2, " - ");
        let (Some(left), Some(right)) = (halves.next(), halves.next()) else {
            continue;
        };
        let Some(mount_point) = left.split(' ').nth(4) else {
            continue;
        };
        let mut right = right.split(' ');
        let (Some(fstype), _, Some(super_options)) = (right.next(), right.next(), right.next())
        else {
            continue;
        };
        if mount_point == ROOT && fstype == "cgroup2" {
            return Ok(CgroupPlan::Unified);
        }
        let Some(name) = mount_point
            .strip_prefix(ROOT)
            .and_then(|rest| rest.strip_prefix('/'))
            .filter(|name| !name.is_empty() && !name.contains('/'))
        else {
            continue;
        };
        let field = "host cgroup layout";
        let options = match fstype {
            "cgroup2" => Vec::new(),
            "cgroup" => super_options
                .split(',')
                .filter(|option| {
                    option.starts_with("name=")
                        || !(option.contains('=')
                            || matches!(
                                *option,
                                "rw" | "ro"
                                    | "clone_children"
                                    | "noprefix"
                                    | "xattr"
                                    | "cpuset_v2_mode"
                                    | "favordynmods"
                            ))
                })
                .map(|option| match option.split_once('=') {
                    Some((key, value)) => Ok((cstring(field, key)?, Some(cstring(field, value)?))),
                    None => Ok((cstring(field, option)?, None)),
                })
                .collect::<Result<Vec<_>, ExecutorError>>()?,
            _ => continue,
        };
        names.push(name.to_owned());
        hierarchies.push(CgroupHierarchy {
            name: cstring(field, name)?,
            fstype: cstring(field, fstype)?,
            options,
        });
    }
    if hierarchies.is_empty() {
        return Err(ExecutorError::unsupported(
            "a cgroup mount on a host without cgroups mounted at /sys/fs/cgroup",
        ));
    }
    let mut symlinks = Vec::new();
    for name in names.iter().filter(|name| name.contains(',')) {
        for part in name.split(',') {
            if !names.iter().any(|other| other == part) {
                symlinks.push((cstring("cgroup", name.as_str())?, cstring("cgroup", part)?));
            }
        }
    }
    Ok(CgroupPlan::Hierarchies {
        hierarchies,
        symlinks,
        tmpfs: vec![(c"mode".to_owned(), Some(c"755".to_owned()))],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hybrid_host_cgroup_layout_is_reproduced() {
        let mountinfo = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory,clone_children
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
42 31 0:39 / /sys/fs/cgroup/memory/deeper rw - cgroup cgroup rw,memory
";
        let CgroupPlan::Hierarchies {
            hierarchies,
            symlinks,
            ..
        } = cgroup_layout(mountinfo).expect("layout")
        else {
            panic!("hybrid expected");
        };
        let summary: Vec<String> = hierarchies
            .iter()
            .map(|h| {
                let options: Vec<String> = h
                    .options
                    .iter()
                    .map(|(k, v)| match v {
                        Some(v) => format!("{}={}", k.to_string_lossy(), v.to_string_lossy()),
                        None => k.to_string_lossy().into_owned(),
                    })
                    .collect();
                format!(
                    "{} {} {}",
                    h.name.to_string_lossy(),
                    h.fstype.to_string_lossy(),
                    options.join(",")
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                "cpu,cpuacct cgroup cpu,cpuacct",
                "memory cgroup memory",
                "systemd cgroup name=systemd",
                "unified cgroup2 ",
            ]
        );
        assert_eq!(
            symlinks,
            [
                (c"cpu,cpuacct".to_owned(), c"cpu".to_owned()),
                (c"cpu,cpuacct".to_owned(), c"cpuacct".to_owned()),
            ]
        );
        let unified = "30 23 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(cgroup_layout(unified).expect("layout"), CgroupPlan::Unified);
        assert!(cgroup_layout("").is_err());
    }
}
