//! Test fixtures: fake v1 and v2 cgroup hosts on a TempDir, with a fake mount table.
//!
//! A tempdir is not cgroupfs: `mkdir` makes no interface files and writes just replace file
//! contents. That is enough to check names, values and which directories are touched; the
//! kernel's own behaviour is covered by `root_tests` on the real hierarchy.

use std::path::{Path, PathBuf};

use super::{CgroupManager, CgroupPath, CgroupSettings};
use crate::config::CgroupDriver;

/// The test machines' hybrid layout, with `cpu,cpuacct` co-mounted as many distributions do.
/// `{root}` stands for the fake cgroup root.
pub(super) const HYBRID_MOUNTINFO: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
31 23 0:28 / {root} rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / {root}/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
34 31 0:31 / {root}/cpuset rw,relatime - cgroup cgroup rw,cpuset,clone_children
35 31 0:32 / {root}/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / {root}/hugetlb rw,relatime - cgroup cgroup rw,hugetlb
37 31 0:34 / {root}/freezer rw,relatime - cgroup cgroup rw,freezer
39 31 0:36 / {root}/pids rw,relatime - cgroup cgroup rw,pids,release_agent=/x
40 31 0:37 / {root}/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / {root}/unified rw,relatime - cgroup2 cgroup2 rw
";

/// The hierarchy dirs of [`HYBRID_MOUNTINFO`], relative to the root.
const V1_HIERARCHIES: [&str; 7] = [
    "cpu,cpuacct",
    "cpuset",
    "freezer",
    "hugetlb",
    "memory",
    "pids",
    "systemd",
];

/// Writes `template` with `{root}` replaced as `<dir>/mountinfo`, returning its path.
pub(super) fn write_mountinfo(dir: &Path, root: &Path, template: &str) -> PathBuf {
    let path = dir.join("mountinfo");
    let text = template.replace("{root}", &root.display().to_string());
    std::fs::write(&path, text).expect("write mountinfo");
    path
}

/// Parses a cgroup path that the test knows to be valid.
pub(super) fn path(text: &str) -> CgroupPath {
    CgroupPath::parse(text).expect("valid test path")
}

/// A fake cgroup host under a TempDir.
pub(super) struct FakeHost {
    _dir: tempfile::TempDir,
    /// The fake cgroup root (`/sys/fs/cgroup`).
    pub(super) root: PathBuf,
    mountinfo: PathBuf,
    v1: bool,
}

impl FakeHost {
    /// A hybrid host: the v1 hierarchies plus a controller-less unified mount.
    pub(super) fn v1() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("cgroup");
        for hierarchy in V1_HIERARCHIES.into_iter().chain(["unified"]) {
            std::fs::create_dir_all(root.join(hierarchy)).expect("mkdir hierarchy");
        }
        std::fs::write(root.join("unified/cgroup.controllers"), "").expect("write");
        let mountinfo = write_mountinfo(dir.path(), &root, HYBRID_MOUNTINFO);
        Self {
            _dir: dir,
            root,
            mountinfo,
            v1: true,
        }
    }

    /// A unified host whose root offers `controllers` (space separated).
    pub(super) fn v2(controllers: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("cgroup");
        std::fs::create_dir_all(&root).expect("mkdir root");
        std::fs::write(root.join("cgroup.controllers"), controllers).expect("write");
        std::fs::write(root.join("cgroup.subtree_control"), "").expect("write");
        let mountinfo = write_mountinfo(
            dir.path(),
            &root,
            "30 23 0:26 / {root} rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n",
        );
        Self {
            _dir: dir,
            root,
            mountinfo,
            v1: false,
        }
    }

    fn settings(&self, driver: CgroupDriver) -> CgroupSettings {
        CgroupSettings {
            driver,
            root: self.root.clone(),
            mountinfo: self.mountinfo.clone(),
            systemd_bus: self.bus_address(),
        }
    }

    /// A bus address where nothing listens (a socket path in the temp dir).
    pub(super) fn bus_address(&self) -> String {
        format!("unix:path={}/no-bus.sock", self.root.display())
    }

    /// A cgroupfs-driver manager on this host.
    pub(super) fn manager(&self) -> CgroupManager {
        CgroupManager::new(self.settings(CgroupDriver::Cgroupfs)).expect("manager")
    }

    /// A systemd-driver manager on this host.
    pub(super) fn systemd_manager(&self) -> CgroupManager {
        CgroupManager::new(self.settings(CgroupDriver::Systemd)).expect("manager")
    }

    /// The hierarchy dirs (relative to the root); on v2 just the root itself (`""`).
    pub(super) fn hierarchies(&self) -> Vec<&'static str> {
        if self.v1 {
            V1_HIERARCHIES.to_vec()
        } else {
            vec![""]
        }
    }

    /// `mkdir -p <root>/<rel>`.
    pub(super) fn mkdir(&self, rel: &str) {
        std::fs::create_dir_all(self.root.join(rel)).expect("mkdir");
    }

    /// Makes the cgroup `cgroup_rel` in every hierarchy with the given empty interface files,
    /// as the kernel would.
    pub(super) fn make_cgroup(&self, cgroup_rel: &str, files: &[&str]) {
        for hierarchy in self.hierarchies() {
            let dir = self.root.join(hierarchy).join(cgroup_rel);
            std::fs::create_dir_all(&dir).expect("mkdir");
            for file in files.iter().chain(&["cgroup.procs"]) {
                std::fs::write(dir.join(file), "").expect("write");
            }
        }
    }

    /// Writes `<root>/<rel>`, creating parent dirs.
    pub(super) fn write(&self, rel: &str, content: &str) {
        let file = self.root.join(rel);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(file, content).expect("write");
    }

    /// `<root>/<rel>`'s content, trimmed.
    pub(super) fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.root.join(rel))
            .unwrap_or_else(|err| panic!("read {rel}: {err}"))
            .trim()
            .to_owned()
    }

    /// `abs` relative to the root, as a string.
    pub(super) fn rel(&self, abs: &Path) -> String {
        abs.strip_prefix(&self.root)
            .expect("under root")
            .display()
            .to_string()
    }
}
