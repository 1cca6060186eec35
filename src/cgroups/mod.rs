//! Every read and write under the cgroup hierarchy, for pods and containers alike.
//!
//! [`CgroupManager`] is built once from [`CgroupSettings`]; it finds the hierarchies under the
//! configured root (v1 per-controller mounts, or the v2 unified tree), turns what kubelet sends
//! into validated [`CgroupPath`]s, and creates, limits, populates, measures, empties and removes
//! cgroups. One file per verb: `create`, `apply`, `processes`, `remove`, `stats`.
//!
//! Design choices:
//! - The manager is plain data (no trait object): the seam for tests is the injected root and
//!   mountinfo path, so unit tests run on a TempDir with a fake mount table.
//! - Everything here is blocking filesystem I/O (and short sleeps in `kill_all`/`remove`);
//!   async callers run it under `spawn_blocking`.
//! - `create` reports which directories it made ([`Created`]) so that `remove` deletes only
//!   those, never a parent another pod or kubelet still uses.
//! - The systemd driver (`systemd/`) asks systemd's manager over D-Bus for a slice per pod
//!   and a scope per container (created with the container's first process), then shares
//!   the cgroupfs driver's directory and file writes for what systemd does not cover.

mod apply;
mod create;
mod error;
mod interface;
mod layout;
mod path;
mod processes;
mod remove;
mod stats;
mod systemd;

#[cfg(test)]
mod fixture;
#[cfg(test)]
mod root_tests;

use std::path::{Path, PathBuf};

use crate::config::CgroupDriver;

pub use apply::{Resources, shares_to_weight};
pub use create::Created;
pub use error::CgroupError;
pub use layout::Layout;
pub use path::{CgroupPath, expand_slice};
pub use stats::CgroupStats;
pub use systemd::DEFAULT_SYSTEM_BUS;

use systemd::SystemdBus;

/// Where and how the manager works.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupSettings {
    /// Must match kubelet's `--cgroup-driver`.
    pub driver: CgroupDriver,
    /// Where the cgroup filesystems are mounted (`/sys/fs/cgroup`).
    pub root: PathBuf,
    /// The mount table to read (`/proc/self/mountinfo`); injectable for tests.
    pub mountinfo: PathBuf,
    /// The D-Bus address of systemd's manager (systemd driver only).
    pub systemd_bus: String,
}

impl CgroupSettings {
    /// Settings for `driver` on `root`, reading this process's mount table.
    pub fn new(driver: CgroupDriver, root: PathBuf) -> Self {
        Self {
            driver,
            root,
            mountinfo: PathBuf::from("/proc/self/mountinfo"),
            systemd_bus: DEFAULT_SYSTEM_BUS.to_owned(),
        }
    }
}

/// Owns the node's cgroup hierarchy for pods and containers.
#[derive(Debug, Clone)]
pub struct CgroupManager {
    driver: CgroupDriver,
    layout: Layout,
    /// systemd's manager, for the systemd driver; connected on first use.
    systemd: Option<SystemdBus>,
}

impl CgroupManager {
    /// Detects the cgroup layout under `settings.root`.
    pub fn new(settings: CgroupSettings) -> Result<Self, CgroupError> {
        let layout = Layout::detect(&settings.root, &settings.mountinfo)?;
        tracing::debug!(?layout, driver = ?settings.driver, "cgroup layout detected");
        let systemd = (settings.driver == CgroupDriver::Systemd)
            .then(|| SystemdBus::new(&settings.systemd_bus));
        Ok(Self {
            driver: settings.driver,
            layout,
            systemd,
        })
    }

    /// The layout found at start.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The configured driver.
    pub fn driver(&self) -> CgroupDriver {
        self.driver
    }

    /// The pod's cgroup: `cgroup_parent` as sent by kubelet (a path for cgroupfs, a slice name
    /// for systemd), or one derived from `default_parent` and `pod_id` when it is empty.
    pub fn pod_cgroup_path(
        &self,
        cgroup_parent: &str,
        default_parent: &str,
        pod_id: &str,
    ) -> Result<CgroupPath, CgroupError> {
        match self.driver {
            CgroupDriver::Cgroupfs => {
                path::cgroupfs_pod_path(cgroup_parent, default_parent, pod_id)
            }
            CgroupDriver::Systemd => path::systemd_pod_path(cgroup_parent, default_parent, pod_id),
        }
    }

    /// A container's cgroup inside its pod's: `<pod>/<id>` (cgroupfs) or
    /// `<pod>/carrack-<id>.scope` (systemd).
    ///
    /// `container_id` is expected to be a store-minted id; any character outside
    /// `[A-Za-z0-9_.:@-]` is replaced so the result always stays inside `pod`.
    pub fn container_cgroup_path(&self, pod: &CgroupPath, container_id: &str) -> CgroupPath {
        match self.driver {
            CgroupDriver::Cgroupfs => path::container_path(pod, container_id),
            CgroupDriver::Systemd => {
                path::container_path(pod, &format!("carrack-{container_id}.scope"))
            }
        }
    }

    /// The container id a child cgroup of a pod is named after (the inverse of
    /// [`CgroupManager::container_cgroup_path`]); `None` for a name no container has.
    pub fn container_of<'a>(&self, child: &'a str) -> Option<&'a str> {
        match self.driver {
            CgroupDriver::Cgroupfs => Some(child),
            CgroupDriver::Systemd => child
                .strip_prefix("carrack-")
                .and_then(|rest| rest.strip_suffix(".scope"))
                .filter(|id| !id.is_empty()),
        }
    }

    /// The directory of `path` in every hierarchy (one per distinct v1 mount, or the v2 tree).
    fn dirs(&self, path: &CgroupPath) -> Vec<PathBuf> {
        self.layout
            .hierarchies()
            .into_iter()
            .map(|mount| mount.join(path.relative()))
            .collect()
    }

    /// The directory of `path` in the hierarchy carrying `controller`; on v2 the unified tree.
    /// `None` when no v1 hierarchy carries it.
    fn controller_dir(&self, controller: &str, path: &CgroupPath) -> Option<PathBuf> {
        match &self.layout {
            Layout::V1 { controllers } => controllers
                .get(controller)
                .map(|mount| mount.join(path.relative())),
            Layout::V2 { unified } => Some(unified.join(path.relative())),
        }
    }

    /// Whether this is the unified (v2) layout.
    fn is_v2(&self) -> bool {
        matches!(self.layout, Layout::V2 { .. })
    }

    /// The cgroup path `dir` stands for, when it lies inside one of our hierarchies.
    fn locate(&self, dir: &Path) -> Option<CgroupPath> {
        self.layout.hierarchies().into_iter().find_map(|mount| {
            let rest = dir.strip_prefix(mount).ok()?.to_str()?;
            CgroupPath::parse(&format!("/{rest}")).ok()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::fixture::FakeHost;

    #[test]
    fn driver_picks_naming_scheme() {
        let host = FakeHost::v1();
        let cgroupfs = host.manager();
        let pod = cgroupfs
            .pod_cgroup_path("", "/carrack", "p1")
            .expect("cgroupfs pod");
        assert_eq!(pod.as_str(), "/carrack/p1");
        assert_eq!(
            cgroupfs.container_cgroup_path(&pod, "c1").as_str(),
            "/carrack/p1/c1"
        );

        let systemd = host.systemd_manager();
        let pod = systemd
            .pod_cgroup_path("kubepods-besteffort-pod9.slice", "/carrack", "p1")
            .expect("systemd pod");
        assert_eq!(
            systemd.container_cgroup_path(&pod, "c1").as_str(),
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod9.slice/carrack-c1.scope"
        );
        assert_eq!(systemd.container_of("carrack-c1.scope"), Some("c1"));
        assert_eq!(systemd.container_of("other.scope"), None);
        assert_eq!(systemd.container_of("carrack-.scope"), None);
        assert_eq!(cgroupfs.container_of("c1"), Some("c1"));
    }
}
