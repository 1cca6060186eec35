//! Creating a cgroup in every hierarchy, remembering exactly which directories were new.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::CgroupError;
use super::interface;
use super::systemd::{Request, SystemdBus, Unit, UnitKind, build_properties};
use super::{CgroupManager, CgroupPath, Layout, Resources};

/// Controllers a pod or container may be limited by on v2; each is enabled for children only
/// when the root offers it.
const V2_CONTROLLERS: [&str; 6] = ["cpu", "cpuset", "hugetlb", "io", "memory", "pids"];

/// The directories one `create` made, shallowest first.
///
/// Kept with the pod or container record so that removal (also after a daemon restart)
/// deletes only what we made: a `cgroup_parent` such as `/kubepods/burstable` belongs to
/// kubelet and must outlive our pods.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Created {
    dirs: Vec<PathBuf>,
}

impl Created {
    /// The created directories, in creation order.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Rebuilds the set from a stored record. Safe against a tampered record: `remove` only
    /// deletes directories that are the cgroup path or one of its ancestors.
    pub fn from_dirs(dirs: impl IntoIterator<Item = PathBuf>) -> Self {
        Self {
            dirs: dirs.into_iter().collect(),
        }
    }

    /// Whether nothing was created (everything already existed).
    pub fn is_empty(&self) -> bool {
        self.dirs.is_empty()
    }
}

impl CgroupManager {
    /// Creates `path` (and missing ancestors) in every hierarchy, without limits or
    /// processes; see [`CgroupManager::create_with`].
    pub fn create(&self, path: &CgroupPath) -> Result<Created, CgroupError> {
        self.create_with(path, &Resources::default(), None)
    }

    /// Whether `path` can only be created together with its first process: a systemd scope
    /// (systemd refuses an empty one). Such a container cgroup is created at start.
    pub fn needs_process(&self, path: &CgroupPath) -> bool {
        self.systemd.is_some()
            && Unit::for_path(path).is_ok_and(|unit| unit.kind == UnitKind::Scope)
    }

    /// Creates `path` with `resources` applied and, when given, process `pid` in it.
    ///
    /// cgroupfs: the directories are made here. systemd: the unit (a slice, or a scope
    /// holding `pid`) is started through systemd's manager first, then the directories of
    /// v1 hierarchies systemd does not manage are made and the same interface files are
    /// written as with cgroupfs, as runc does. On failure everything made is undone.
    pub fn create_with(
        &self,
        path: &CgroupPath,
        resources: &Resources,
        pid: Option<i32>,
    ) -> Result<Created, CgroupError> {
        let unit = match &self.systemd {
            Some(bus) => Some(self.start_unit(bus, path, resources, pid)?),
            None => None,
        };
        let mut created = Created::default();
        let mut result = if unit.is_some() && self.is_v2() {
            // systemd made the unit's cgroup in the unified tree and owns its ancestors'
            // controllers.
            Ok(())
        } else {
            self.make_dirs(path, &mut created)
        };
        if result.is_ok()
            && let Some(pid) = pid
        {
            result = self.add_process(path, pid);
        }
        if result.is_ok() {
            result = self.apply(path, resources);
        }
        if let Err(err) = result {
            if let (Some(bus), Some(unit)) = (&self.systemd, &unit)
                && let Err(stop) = bus.stop_unit(&unit.name)
            {
                tracing::warn!(unit = %unit.name, error = %stop, "cannot undo unit start");
            }
            self.undo_create(&created);
            return Err(err);
        }
        tracing::debug!(cgroup = %path, created = created.dirs.len(), "cgroup created");
        Ok(created)
    }

    /// Asks systemd for the unit whose cgroup is `path`.
    fn start_unit(
        &self,
        bus: &SystemdBus,
        path: &CgroupPath,
        resources: &Resources,
        pid: Option<i32>,
    ) -> Result<Unit, CgroupError> {
        let unit = Unit::for_path(path)?;
        let pid = pid
            .map(|pid| {
                u32::try_from(pid).map_err(|_| CgroupError::InvalidValue {
                    controller: "cgroup".to_owned(),
                    file: "PIDs".to_owned(),
                    value: pid.to_string(),
                    reason: "not a process id".to_owned(),
                })
            })
            .transpose()?;
        let properties = build_properties(Request {
            unit: &unit,
            resources,
            pid,
            v2: self.is_v2(),
        })?;
        bus.start_unit(&unit.name, properties)?;
        tracing::debug!(unit = %unit.name, bus = bus.address(), "systemd unit started");
        Ok(unit)
    }

    /// Makes the missing directories of `path` in every hierarchy, noting them in `created`.
    ///
    /// On v1 a newly created cpuset cgroup gets its parent's `cpuset.cpus`/`cpuset.mems`,
    /// because an empty cpuset refuses tasks (ENOSPC). On v2 the controllers the root offers
    /// are enabled in each ancestor's `cgroup.subtree_control`.
    fn make_dirs(&self, path: &CgroupPath, created: &mut Created) -> Result<(), CgroupError> {
        match &self.layout {
            Layout::V1 { controllers } => {
                let cpuset = controllers.get("cpuset");
                self.layout.hierarchies().into_iter().try_for_each(|mount| {
                    let is_cpuset = cpuset.is_some_and(|dir| dir == mount);
                    create_v1_hierarchy(mount, path, is_cpuset, created)
                })
            }
            Layout::V2 { unified } => create_v2(unified, path, created),
        }
    }

    /// Best-effort removal of a half-finished create; the original error is what matters.
    fn undo_create(&self, created: &Created) {
        for dir in created.dirs.iter().rev() {
            if let Err(err) = std::fs::remove_dir(dir) {
                tracing::warn!(dir = %dir.display(), %err, "cannot undo cgroup creation");
            }
        }
    }
}

fn create_v1_hierarchy(
    mount: &Path,
    path: &CgroupPath,
    is_cpuset: bool,
    created: &mut Created,
) -> Result<(), CgroupError> {
    for prefix in path.prefixes() {
        let dir = mount.join(prefix.relative());
        if make_dir(&dir)? {
            created.dirs.push(dir.clone());
            if is_cpuset {
                copy_cpuset_from_parent(&dir)?;
            }
        }
    }
    Ok(())
}

/// Gives a new v1 cpuset cgroup its parent's CPUs and memory nodes. An empty parent (one we
/// did not create and nobody initialised) is left alone: writing its ancestors is not ours.
fn copy_cpuset_from_parent(dir: &Path) -> Result<(), CgroupError> {
    let Some(parent) = dir.parent() else {
        return Ok(());
    };
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let value = interface::read_optional(&parent.join(file))?.unwrap_or_default();
        let value = value.trim();
        if !value.is_empty() {
            interface::write(&dir.join(file), "cpuset", value)?;
        }
    }
    Ok(())
}

fn create_v2(unified: &Path, path: &CgroupPath, created: &mut Created) -> Result<(), CgroupError> {
    let offered: BTreeSet<String> = interface::read_optional(&unified.join("cgroup.controllers"))?
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let wanted: Vec<&str> = V2_CONTROLLERS
        .into_iter()
        .filter(|controller| offered.contains(*controller))
        .collect();
    let mut parent = unified.to_owned();
    for prefix in path.prefixes() {
        // Children only get a controller's files once their parent enables it.
        enable_controllers(&parent, &wanted)?;
        let dir = unified.join(prefix.relative());
        if make_dir(&dir)? {
            created.dirs.push(dir.clone());
        }
        parent = dir;
    }
    Ok(())
}

/// Adds the `wanted` controllers missing from `dir/cgroup.subtree_control`, in one write.
fn enable_controllers(dir: &Path, wanted: &[&str]) -> Result<(), CgroupError> {
    let file = dir.join("cgroup.subtree_control");
    let enabled = interface::read_optional(&file)?.unwrap_or_default();
    let enabled: BTreeSet<&str> = enabled.split_whitespace().collect();
    let missing: Vec<String> = wanted
        .iter()
        .filter(|controller| !enabled.contains(*controller))
        .map(|controller| format!("+{controller}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    interface::write(&file, "cgroup", &missing.join(" "))
}

/// `mkdir`, answering whether the directory is new. An existing non-directory (a cgroup
/// named like an interface file, `tasks`) is an error rather than a silent success.
fn make_dir(dir: &Path) -> Result<bool, CgroupError> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
            if std::fs::symlink_metadata(dir).is_ok_and(|meta| meta.is_dir()) {
                Ok(false)
            } else {
                Err(CgroupError::Mkdir {
                    path: dir.to_owned(),
                    source: std::io::Error::from_raw_os_error(libc::ENOTDIR),
                })
            }
        }
        Err(source) => Err(CgroupError::Mkdir {
            path: dir.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::fixture::{FakeHost, path};
    use crate::error_kind::ErrorKind;

    #[test]
    fn v1_create_reports_only_new_dirs_in_every_hierarchy() {
        let host = FakeHost::v1();
        // kubelet's parent already exists in memory but not elsewhere.
        host.mkdir("memory/kubepods");
        let created = host
            .manager()
            .create(&path("/kubepods/pod1"))
            .expect("create");
        let made: Vec<String> = created.dirs().iter().map(|d| host.rel(d)).collect();
        assert!(
            made.contains(&"memory/kubepods/pod1".to_owned()),
            "{made:?}"
        );
        assert!(!made.contains(&"memory/kubepods".to_owned()), "{made:?}");
        for hierarchy in host.hierarchies() {
            assert!(host.root.join(hierarchy).join("kubepods/pod1").is_dir());
            if hierarchy != "memory" {
                assert!(made.contains(&format!("{hierarchy}/kubepods")), "{made:?}");
            }
        }
        // Shallowest first within a hierarchy.
        let cpu: Vec<&String> = made.iter().filter(|d| d.starts_with("cpu,")).collect();
        assert_eq!(cpu, ["cpu,cpuacct/kubepods", "cpu,cpuacct/kubepods/pod1"]);
        // A second create finds everything in place.
        let again = host
            .manager()
            .create(&path("/kubepods/pod1"))
            .expect("create");
        assert!(again.is_empty());
    }

    #[test]
    fn v1_cpuset_values_are_copied_from_the_parent() {
        let host = FakeHost::v1();
        host.write("cpuset/a/cpuset.cpus", "0-3\n");
        host.write("cpuset/a/cpuset.mems", "0\n");
        // What the kernel gives a new cpuset cgroup: the files, empty.
        host.write("cpuset/a/b/cpuset.cpus", "");
        host.write("cpuset/a/b/cpuset.mems", "");
        copy_cpuset_from_parent(&host.root.join("cpuset/a/b")).expect("copy");
        assert_eq!(host.read("cpuset/a/b/cpuset.cpus"), "0-3");
        assert_eq!(host.read("cpuset/a/b/cpuset.mems"), "0");
    }

    #[test]
    fn failed_create_removes_what_it_made() {
        let host = FakeHost::v1();
        // The parent has CPUs, so create must write them into the new dir; a plain tempdir
        // dir has no cpuset files, which stands in for the kernel refusing the write.
        host.write("cpuset/cpuset.cpus", "0-1\n");
        host.mkdir("memory/keep");
        let err = host
            .manager()
            .create(&path("/keep/new"))
            .expect_err("write into plain dir fails");
        assert!(matches!(err, CgroupError::Write { .. }), "{err}");
        for hierarchy in host.hierarchies() {
            assert!(!host.root.join(hierarchy).join("keep/new").exists());
        }
        assert!(
            host.root.join("memory/keep").is_dir(),
            "pre-existing dir kept"
        );
        assert!(!host.root.join("cpuset/keep").exists());
    }

    #[test]
    fn v2_create_enables_offered_controllers_in_ancestors_only() {
        let host = FakeHost::v2("cpu memory pids cpuset");
        // A plain tempdir gives new dirs no interface files, so the parent exists already.
        host.write("pods/cgroup.subtree_control", "cpu\n");
        let created = host.manager().create(&path("/pods/p1")).expect("create");
        assert_eq!(created.dirs(), [host.root.join("pods/p1")]);
        assert_eq!(
            host.read("cgroup.subtree_control"),
            "+cpu +cpuset +memory +pids"
        );
        assert_eq!(
            host.read("pods/cgroup.subtree_control"),
            "+cpuset +memory +pids"
        );
        // The leaf holds processes, so its subtree_control is never touched.
        assert!(!host.root.join("pods/p1/cgroup.subtree_control").exists());
    }

    #[test]
    fn v2_create_skips_controllers_already_enabled() {
        let host = FakeHost::v2("cpu memory io");
        host.write("cgroup.subtree_control", "cpu memory");
        host.manager().create(&path("/x")).expect("create");
        assert_eq!(host.read("cgroup.subtree_control"), "+io");
    }

    #[test]
    fn systemd_create_without_a_bus_names_the_address_and_leaves_nothing() {
        let host = FakeHost::v1();
        let err = host
            .systemd_manager()
            .create(&path("/kubepods.slice"))
            .expect_err("no bus");
        assert_eq!(err.kind(), ErrorKind::Unavailable);
        assert!(err.to_string().contains(&host.bus_address()), "{err}");
        for hierarchy in host.hierarchies() {
            assert!(!host.root.join(hierarchy).join("kubepods.slice").exists());
        }
    }

    #[test]
    fn only_systemd_scopes_wait_for_a_process() {
        let host = FakeHost::v1();
        let scope = path("/a.slice/carrack-c1.scope");
        assert!(host.systemd_manager().needs_process(&scope));
        assert!(!host.systemd_manager().needs_process(&path("/a.slice")));
        assert!(!host.manager().needs_process(&scope));
    }

    #[test]
    fn existing_file_in_the_way_is_an_error() {
        let host = FakeHost::v1();
        host.write("memory/tasks", "");
        let err = host
            .manager()
            .create(&path("/tasks"))
            .expect_err("file in the way");
        assert!(matches!(err, CgroupError::Mkdir { .. }), "{err}");
        for hierarchy in host.hierarchies() {
            if hierarchy != "memory" {
                assert!(!host.root.join(hierarchy).join("tasks").exists());
            }
        }
    }
}
