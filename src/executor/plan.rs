//! The launch plan: everything the container process will do, derived from the OCI spec and
//! checked *before* the clone, with every string already a `CString` and every namespace
//! file already open. The child then only makes system calls; the parent keeps the same plan
//! to put a failed step into words (`mount /proc (proc)`, `exec /bin/sh`).
//!
//! [`ProcessPlan`] is the part about the process itself (limits, stdio, user, capabilities,
//! seccomp, cwd, program), which a process executed in a running container (`exec_in`) uses
//! alone; [`Plan`] adds the new container's namespaces, root filesystem, hostname and sysctls.

use std::ffi::{CString, OsStr};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, PosixRlimitType, Spec};
use rustix::fs::{AtFlags, CWD, FileType, Mode, OFlags};
use rustix::process::{Gid, Resource, Rlimit};

use super::capabilities::{self, CapabilityPlan};
use super::cgroup_mount::{CgroupPlan, cgroup_layout};
use super::error::{ChildFailure, ExecutorError, Step, prepare};
use super::id_map::IdMap;
use super::mount_options::{self, MountOptions};
use super::seccomp::{self, SeccompPlan};
use super::sys::CStringArray;

/// `PATH` used to find the program when the spec's environment has none (runc's default).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The standard device nodes every container gets in a fresh `/dev` (OCI runtime spec,
/// "Default Devices"): name, major, minor.
const DEFAULT_DEVICES: [(&str, u32, u32); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// The file descriptors that become the container process's stdin, stdout and stderr.
/// `None` leaves the caller's own descriptor in place.
#[derive(Debug, Default)]
pub struct Stdio {
    /// Becomes fd 0 (for example the read end of a pipe, or `/dev/null`).
    pub stdin: Option<OwnedFd>,
    /// Becomes fd 1 (for example the write end of the monitor's log pipe).
    pub stdout: Option<OwnedFd>,
    /// Becomes fd 2.
    pub stderr: Option<OwnedFd>,
}

/// A namespace the child joins with `setns`.
#[derive(Debug)]
pub(super) struct Join {
    pub kind: LinuxNamespaceType,
    pub path: PathBuf,
    pub fd: OwnedFd,
}

/// How a mount is made.
#[derive(Debug)]
pub(super) enum MountKind {
    /// `open_tree(source, OPEN_TREE_CLONE [| AT_RECURSIVE])` moved onto the target; with
    /// `idmap`, the clone is first idmapped through the container's user namespace (the mount
    /// asked for exactly that namespace's mappings).
    Bind {
        source: CString,
        recursive: bool,
        idmap: bool,
    },
    /// `fsopen(fstype)` configured with `options`, then `fsmount` and `move_mount`.
    Filesystem {
        fstype: CString,
        source: Option<CString>,
        /// `(key, value)` for `fsconfig`: a flag when `value` is `None`.
        options: Vec<FsParameter>,
    },
    /// A `cgroup` mount: the host's layout of hierarchies, re-mounted inside the container
    /// (which, in its own cgroup namespace, sees its cgroup as each hierarchy's root).
    Cgroup(CgroupPlan),
}

/// A filesystem parameter for `fsconfig`: a flag when the value is `None`.
pub(super) type FsParameter = (CString, Option<CString>);

/// One mount of the spec.
#[derive(Debug)]
pub(super) struct MountPlan {
    /// The destination as the spec gives it (for messages).
    pub destination: PathBuf,
    /// The destination relative to the rootfs, normalised.
    pub relative: CString,
    /// Whether the mount point is a file (bind of a non-directory) rather than a directory.
    pub file: bool,
    pub kind: MountKind,
    pub options: MountOptions,
}

/// A device node to create below the rootfs.
#[derive(Debug)]
pub(super) struct DevicePlan {
    /// The device path in the container (for messages, and the host path to bind from if
    /// `mknod` is refused).
    pub path: CString,
    /// The parent directory relative to the rootfs.
    pub parent: CString,
    /// The file name.
    pub name: CString,
    pub file_type: FileType,
    pub mode: Mode,
    pub rdev: u64,
    pub uid: u32,
    pub gid: u32,
}

/// A symlink in `/dev`: `(target, name)`.
pub(super) type DevSymlink = (&'static std::ffi::CStr, &'static std::ffi::CStr);

/// Everything about the container's root filesystem.
#[derive(Debug)]
pub(super) struct RootfsPlan {
    /// The rootfs on the host.
    pub path: CString,
    /// Propagation applied to `/` (recursively) before anything is mounted.
    pub propagation: u64,
    /// With shared propagation only: the mount holding the rootfs (the rootfs itself when it
    /// is a mount point), made private before the rootfs is bound onto itself. A shared parent
    /// would propagate that bind (and every mount below it) to the host, and `pivot_root`
    /// refuses a new root whose parent is shared. `/` is made shared again after the pivot.
    pub shared_holder: Option<CString>,
    /// Remount the rootfs read-only at the end.
    pub readonly: bool,
    pub mounts: Vec<MountPlan>,
    /// Device nodes to create (only when the spec mounts a fresh `/dev`).
    pub devices: Vec<DevicePlan>,
    pub dev_symlinks: Vec<DevSymlink>,
    /// Paths to hide, relative to the rootfs.
    pub masked: Vec<CString>,
    /// Paths to make read-only, relative to the rootfs.
    pub readonly_paths: Vec<CString>,
    /// The index in `mounts` of a cgroup mount that is made after the masked and read-only
    /// paths instead of in its place, as nothing else lies above or below its destination. It
    /// is the only step of the rootfs that needs the container's cgroup, which the monitor
    /// may still be joining (see `child`): the steps before it overlap that.
    pub cgroup_mount_last: Option<usize>,
}

/// The program to run.
#[derive(Debug)]
pub(super) struct ExecPlan {
    /// Paths to try in order (one when `args[0]` has a slash, else one per `PATH` entry).
    pub candidates: Vec<CString>,
    pub argv: CStringArray,
    pub envp: CStringArray,
    /// The `PATH` searched (for messages).
    pub search_path: Option<String>,
}

/// The user the process runs as.
#[derive(Debug)]
pub(super) struct UserPlan {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<Gid>,
    pub umask: u32,
}

/// A sysctl to write through the container's `/proc`.
#[derive(Debug)]
pub(super) struct SysctlPlan {
    pub key: String,
    /// `proc/sys/...`, relative to the rootfs.
    pub path: CString,
    pub value: Vec<u8>,
}

/// What the process itself does after its environment is ready, shared by a new container
/// ([`Plan`]) and a process executed in a running one (`exec_in`): limits, stdio, user,
/// capabilities, seccomp, working directory and the program.
#[derive(Debug)]
pub(super) struct ProcessPlan {
    pub rlimits: Vec<(PosixRlimitType, Resource, Rlimit)>,
    pub oom_score_adj: Option<i32>,
    pub user: UserPlan,
    pub capabilities: Option<CapabilityPlan>,
    pub no_new_privs: bool,
    pub seccomp: SeccompPlan,
    pub cwd: CString,
    pub exec: ExecPlan,
    /// Stdio descriptors, each duplicated above 2 so that `dup2` onto 0-2 cannot clobber one
    /// with another.
    pub stdio: [Option<OwnedFd>; 3],
    /// `process.terminal`: stdin is a terminal, which becomes the controlling terminal of a
    /// new session.
    pub terminal: bool,
    /// Die with the parent (`PR_SET_PDEATHSIG(SIGKILL)`, set again after the user switch,
    /// which clears it): for processes whose parent is a short-lived helper (`exec_in`),
    /// never for a container's init, which must outlive its monitor.
    pub die_with_parent: bool,
    /// The user namespace to join (a pod's), as the last step before the user switch: every
    /// mount is made before, by the host's root, and the namespace's root then holds all
    /// capabilities only inside it (see `child::finish`).
    pub user_namespace: Option<Join>,
}

/// The whole plan of a new container.
#[derive(Debug)]
pub(super) struct Plan {
    /// `CLONE_NEW*` flags for the clone.
    pub clone_flags: u64,
    /// A PID namespace to start the process in (entered by the parent around the clone).
    pub pid_namespace: Option<Join>,
    /// Namespaces the child joins, in spec order.
    pub joins: Vec<Join>,
    /// Whether the child unshares a new cgroup namespace (after being placed in its cgroup).
    pub new_cgroup_namespace: bool,
    pub rootfs: RootfsPlan,
    pub hostname: Option<CString>,
    pub domainname: Option<CString>,
    pub sysctls: Vec<SysctlPlan>,
    pub process: ProcessPlan,
}

pub(super) fn cstring(field: &str, bytes: impl Into<Vec<u8>>) -> Result<CString, ExecutorError> {
    CString::new(bytes).map_err(|_| ExecutorError::invalid(field, "contains a NUL byte"))
}

/// `path` made relative to the container root: `.` and empty components dropped, `..`
/// resolved lexically (it can never climb above the root). `None` for the root itself.
pub(super) fn relative_in_root(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => out.push(name),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

impl Plan {
    /// Checks `spec` and prepares everything the child needs.
    pub fn new(spec: &Spec, rootfs: &Path, stdio: Stdio) -> Result<Plan, ExecutorError> {
        if spec.process().is_none() {
            return Err(ExecutorError::invalid("process", "missing"));
        }
        let linux = spec
            .linux()
            .as_ref()
            .ok_or_else(|| ExecutorError::invalid("linux", "missing"))?;

        // Namespaces.
        let mut clone_flags = 0u64;
        let mut pid_namespace = None;
        let mut joins = Vec::new();
        let mut new_cgroup_namespace = false;
        let mut seen = Vec::new();
        let mut has_uts = false;
        let mut user_namespace = None;
        for (at, ns) in linux.namespaces().iter().flatten().enumerate() {
            let field = format!("linux.namespaces[{at}]");
            if seen.contains(&ns.typ()) {
                return Err(ExecutorError::invalid(field, "namespace type listed twice"));
            }
            seen.push(ns.typ());
            let flag = match ns.typ() {
                LinuxNamespaceType::User if ns.path().is_none() => {
                    return Err(ExecutorError::unsupported(
                        "new user namespaces (a container can only join one, by path)",
                    ));
                }
                LinuxNamespaceType::Time => {
                    return Err(ExecutorError::unsupported("time namespaces"));
                }
                LinuxNamespaceType::Mount if ns.path().is_some() => {
                    return Err(ExecutorError::unsupported(
                        "joining an existing mount namespace",
                    ));
                }
                LinuxNamespaceType::Uts => {
                    has_uts = true;
                    libc::CLONE_NEWUTS
                }
                other => other as i32,
            } as u64;
            match ns.path() {
                None if ns.typ() == LinuxNamespaceType::Cgroup => new_cgroup_namespace = true,
                None => clone_flags |= flag,
                Some(path) => {
                    let fd =
                        rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
                            .map_err(|errno| {
                                prepare("open namespace", path)(std::io::Error::from(errno))
                            })?;
                    let join = Join {
                        kind: ns.typ(),
                        path: path.clone(),
                        fd,
                    };
                    if ns.typ() == LinuxNamespaceType::Pid {
                        pid_namespace = Some(join);
                    } else if ns.typ() == LinuxNamespaceType::User {
                        user_namespace = Some(join);
                    } else {
                        joins.push(join);
                    }
                }
            }
        }
        if !seen.contains(&LinuxNamespaceType::Mount) {
            return Err(ExecutorError::invalid(
                "linux.namespaces",
                "a mount namespace is required (the container's mounts must not reach the host)",
            ));
        }

        let hostname = match spec.hostname() {
            Some(name) if !name.is_empty() => {
                if !has_uts {
                    return Err(ExecutorError::invalid(
                        "hostname",
                        "set without a UTS namespace (it would rename the host)",
                    ));
                }
                Some(cstring("hostname", name.as_bytes())?)
            }
            _ => None,
        };
        let domainname = match spec.domainname() {
            Some(name) if !name.is_empty() => {
                if !has_uts {
                    return Err(ExecutorError::invalid(
                        "domainname",
                        "set without a UTS namespace",
                    ));
                }
                Some(cstring("domainname", name.as_bytes())?)
            }
            _ => None,
        };

        let readonly = spec
            .root()
            .as_ref()
            .and_then(|root| root.readonly())
            .unwrap_or(false);
        let id_map = user_namespace
            .as_ref()
            .map(|_| IdMap::from_spec(linux))
            .transpose()?;
        let rootfs = RootfsPlan::new(spec, rootfs, readonly, id_map.as_ref())?;

        let mut sysctls = Vec::new();
        for (key, value) in linux.sysctl().iter().flatten() {
            let field = format!("linux.sysctl[{key}]");
            if key.is_empty()
                || key
                    .split(['.', '/'])
                    .any(|part| part.is_empty() || part == "..")
            {
                return Err(ExecutorError::invalid(field, "not a sysctl name"));
            }
            sysctls.push(SysctlPlan {
                key: key.clone(),
                path: cstring(&field, format!("proc/sys/{}", key.replace('.', "/")))?,
                value: value.as_bytes().to_vec(),
            });
        }

        let mut process = ProcessPlan::new(spec, stdio)?;
        process.join_user_namespace(user_namespace);

        Ok(Plan {
            clone_flags,
            pid_namespace,
            joins,
            new_cgroup_namespace,
            rootfs,
            hostname,
            domainname,
            sysctls,
            process,
        })
    }

    /// Puts a failure reported by the child into words, naming its subject.
    pub fn describe(&self, failure: &ChildFailure) -> String {
        let at = failure.index as usize;
        let rootfs = &self.rootfs;
        let lossy = |s: &CString| s.to_string_lossy().into_owned();
        match failure.step {
            Step::JoinNamespace => match self.joins.get(at) {
                Some(join) => format!("join {} namespace {}", join.kind, join.path.display()),
                None => "join namespace".to_owned(),
            },
            Step::UnshareCgroup => "create cgroup namespace".to_owned(),
            Step::RootPropagation => match (at, &rootfs.shared_holder) {
                (1, Some(holder)) => format!("make {} private", lossy(holder)),
                (2, _) => "make the new / shared".to_owned(),
                _ => "set the propagation of /".to_owned(),
            },
            Step::BindRootfs => format!("bind rootfs {}", lossy(&rootfs.path)),
            Step::OpenRootfs => format!("open rootfs {}", lossy(&rootfs.path)),
            Step::MountPoint | Step::Mount | Step::MountAttributes => {
                let Some(mount) = rootfs.mounts.get(at) else {
                    return "mount".to_owned();
                };
                let what = match &mount.kind {
                    MountKind::Bind { source, .. } => format!("bind {}", lossy(source)),
                    MountKind::Filesystem { fstype, .. } => lossy(fstype),
                    MountKind::Cgroup(_) => "cgroup".to_owned(),
                };
                let verb = match failure.step {
                    Step::MountPoint => "create mount point",
                    Step::Mount => "mount",
                    _ => "set mount attributes of",
                };
                format!("{verb} {} ({what})", mount.destination.display())
            }
            Step::Device => match rootfs.devices.get(at) {
                Some(device) => format!("create device {}", lossy(&device.path)),
                None => "create device".to_owned(),
            },
            Step::DevSymlink => match rootfs.dev_symlinks.get(at) {
                Some((target, name)) => format!(
                    "create symlink /dev/{} -> {}",
                    name.to_string_lossy(),
                    target.to_string_lossy()
                ),
                None => "create /dev symlink".to_owned(),
            },
            Step::PivotRoot => format!("pivot_root to {}", lossy(&rootfs.path)),
            Step::DetachOldRoot => "detach the old root".to_owned(),
            Step::Sysctl => match self.sysctls.get(at) {
                Some(sysctl) => format!("set sysctl {}", sysctl.key),
                None => "set sysctl".to_owned(),
            },
            Step::MaskPath if failure.index == u32::MAX => {
                "verify the host's /dev/null (for masking)".to_owned()
            }
            Step::MaskPath => match rootfs.masked.get(at) {
                Some(path) => format!("mask /{}", lossy(path)),
                None => "mask path".to_owned(),
            },
            Step::ReadonlyPath => match rootfs.readonly_paths.get(at) {
                Some(path) => format!("make /{} read-only", lossy(path)),
                None => "make path read-only".to_owned(),
            },
            Step::ReadonlyRootfs => "make the rootfs read-only".to_owned(),
            Step::Hostname => format!(
                "set hostname {}",
                self.hostname.as_ref().map(lossy).unwrap_or_default()
            ),
            Step::Domainname => format!(
                "set domainname {}",
                self.domainname.as_ref().map(lossy).unwrap_or_default()
            ),
            _ => self.process.describe(failure),
        }
    }
}

impl ProcessPlan {
    /// Checks the spec's `process` (and `linux.seccomp`) and prepares what the process does
    /// once its environment is ready. `die_with_parent` starts out false.
    pub fn new(spec: &Spec, stdio: Stdio) -> Result<ProcessPlan, ExecutorError> {
        let process = spec
            .process()
            .as_ref()
            .ok_or_else(|| ExecutorError::invalid("process", "missing"))?;
        let linux = spec.linux().as_ref();
        let rlimits = process
            .rlimits()
            .iter()
            .flatten()
            .map(|rlimit| {
                let limit = |value: u64| (value != u64::MAX).then_some(value);
                (
                    rlimit.typ(),
                    resource(rlimit.typ()),
                    Rlimit {
                        current: limit(rlimit.soft()),
                        maximum: limit(rlimit.hard()),
                    },
                )
            })
            .collect();

        let user = process.user();
        let user = UserPlan {
            uid: user.uid(),
            gid: user.gid(),
            groups: user
                .additional_gids()
                .iter()
                .flatten()
                .map(|gid| Gid::from_raw(*gid))
                .collect(),
            umask: user.umask().unwrap_or(0o022),
        };

        let capabilities = process
            .capabilities()
            .as_ref()
            .map(|caps| CapabilityPlan::new(caps, capabilities::host_bounding_set()));

        let seccomp = match linux.and_then(|linux| linux.seccomp().as_ref()) {
            Some(profile) => seccomp::compile(profile)?,
            None => SeccompPlan::default(),
        };

        let cwd = process.cwd();
        if !cwd.is_absolute() {
            return Err(ExecutorError::invalid(
                "process.cwd",
                format!("{} is not absolute", cwd.display()),
            ));
        }

        let stdio = [stdio.stdin, stdio.stdout, stdio.stderr].map(|fd| {
            fd.map(|fd| rustix::io::fcntl_dupfd_cloexec(&fd, 3).map_err(std::io::Error::from))
        });
        let [stdin, stdout, stderr] = stdio;
        let stdio = [
            stdin.transpose().map_err(prepare("duplicate stdin", ""))?,
            stdout
                .transpose()
                .map_err(prepare("duplicate stdout", ""))?,
            stderr
                .transpose()
                .map_err(prepare("duplicate stderr", ""))?,
        ];

        Ok(ProcessPlan {
            rlimits,
            oom_score_adj: process.oom_score_adj(),
            user,
            capabilities,
            no_new_privs: process.no_new_privileges().unwrap_or(false),
            seccomp,
            cwd: cstring("process.cwd", cwd.as_os_str().as_bytes())?,
            exec: ExecPlan::new(process.args().as_deref(), process.env().as_deref())?,
            stdio,
            terminal: process.terminal().unwrap_or(false),
            die_with_parent: false,
            user_namespace: None,
        })
    }

    /// Makes the process join `user_namespace` (if any) before its user switch, with the
    /// capability steps adjusted to the bounding set that joining refills.
    pub fn join_user_namespace(&mut self, user_namespace: Option<Join>) {
        if user_namespace.is_some()
            && let Some(caps) = &mut self.capabilities
        {
            caps.after_user_namespace_join(capabilities::host_bounding_set());
        }
        self.user_namespace = user_namespace;
    }

    /// Puts a failure of one of the process's own steps into words, naming its subject
    /// (steps of the environment, which only [`Plan`] knows, get their bare name).
    pub fn describe(&self, failure: &ChildFailure) -> String {
        let at = failure.index as usize;
        let lossy = |s: &CString| s.to_string_lossy().into_owned();
        match failure.step {
            Step::WaitForParent => "wait for the parent".to_owned(),
            Step::Signals => "reset signal handling".to_owned(),
            Step::ParentDeathSignal => "set the parent-death signal".to_owned(),
            Step::OomScoreAdj => format!(
                "set oom_score_adj {}",
                self.oom_score_adj.unwrap_or_default()
            ),
            Step::Rlimit => match self.rlimits.get(at) {
                Some((typ, _, _)) => format!("set rlimit {typ}"),
                None => "set rlimit".to_owned(),
            },
            Step::Stdio => format!(
                "set up {}",
                ["stdin", "stdout", "stderr"].get(at).unwrap_or(&"stdio")
            ),
            Step::JoinUserNamespace => match &self.user_namespace {
                Some(join) => format!("join user namespace {}", join.path.display()),
                None => "join user namespace".to_owned(),
            },
            Step::Terminal if failure.index == 0 => "start a new session".to_owned(),
            Step::Terminal => "make stdin the controlling terminal".to_owned(),
            Step::Seccomp => format!("install seccomp filter {at}"),
            Step::BoundingSet => format!(
                "drop {} from the bounding set",
                capabilities::name(failure.index)
            ),
            Step::KeepCaps => "set keep-caps".to_owned(),
            Step::Groups => format!(
                "setgroups {:?}",
                self.user
                    .groups
                    .iter()
                    .map(|gid| gid.as_raw())
                    .collect::<Vec<_>>()
            ),
            Step::Gid => format!("setgid {}", self.user.gid),
            Step::Uid => format!("setuid {}", self.user.uid),
            Step::Capabilities => "set capabilities".to_owned(),
            Step::Ambient => format!("raise ambient {}", capabilities::name(failure.index)),
            Step::Cwd => format!("chdir {}", lossy(&self.cwd)),
            Step::NoNewPrivs => "set no_new_privs".to_owned(),
            Step::CloseFds => "mark inherited descriptors close-on-exec".to_owned(),
            Step::Exec => format!("exec {}", self.program(failure.index)),
            other => format!("{other:?}"),
        }
    }

    /// The program as the failed `execve` candidate `index` names it: `/bin/sh`,
    /// `/bin/sh (found in PATH)`, or `sh (searched PATH /bin)` when no candidate existed.
    fn program(&self, index: u32) -> String {
        let lossy = |s: &CString| s.to_string_lossy().into_owned();
        match (
            self.exec.candidates.get(index as usize),
            &self.exec.search_path,
        ) {
            (Some(path), None) => lossy(path),
            (Some(path), Some(_)) => format!("{} (found in PATH)", lossy(path)),
            (None, search) => format!(
                "{} (searched PATH {})",
                self.exec
                    .argv
                    .strings()
                    .first()
                    .map(lossy)
                    .unwrap_or_default(),
                search.as_deref().unwrap_or_default()
            ),
        }
    }

    /// The error for `failure`, reported by the child: [`ExecutorError::Exec`] when the
    /// program could not be executed, else [`ExecutorError::Setup`] with the step in words
    /// (`describe`, which knows the environment's steps too).
    pub fn error(
        &self,
        failure: &ChildFailure,
        describe: impl FnOnce() -> String,
    ) -> ExecutorError {
        let source = std::io::Error::from_raw_os_error(failure.errno);
        match failure.step {
            Step::Exec => ExecutorError::Exec {
                program: self.program(failure.index),
                source,
            },
            _ => ExecutorError::Setup {
                step: describe(),
                source,
            },
        }
    }
}

impl RootfsPlan {
    fn new(
        spec: &Spec,
        rootfs: &Path,
        readonly: bool,
        id_map: Option<&IdMap>,
    ) -> Result<RootfsPlan, ExecutorError> {
        let metadata = std::fs::metadata(rootfs).map_err(prepare("inspect rootfs", rootfs))?;
        if !metadata.is_dir() || !rootfs.is_absolute() {
            return Err(ExecutorError::invalid(
                "rootfs",
                format!(
                    "{} is not an absolute path to a directory",
                    rootfs.display()
                ),
            ));
        }
        let linux = spec.linux().as_ref();
        let propagation = match linux.and_then(|l| l.rootfs_propagation().as_deref()) {
            None | Some("") | Some("rslave") | Some("slave") => libc::MS_SLAVE,
            Some("private") | Some("rprivate") => libc::MS_PRIVATE,
            Some("unbindable") | Some("runbindable") => libc::MS_UNBINDABLE,
            Some("shared") | Some("rshared") => libc::MS_SHARED,
            Some(other) => {
                return Err(ExecutorError::invalid(
                    "linux.rootfsPropagation",
                    format!("unknown propagation {other:?}"),
                ));
            }
        };

        let mut mounts = Vec::new();
        for (at, mount) in spec.mounts().iter().flatten().enumerate() {
            mounts.push(MountPlan::new(at, mount, id_map)?);
        }
        let fresh_dev = mounts.iter().any(|m| {
            m.relative.as_bytes() == b"dev" && matches!(m.kind, MountKind::Filesystem { .. })
        });
        let mounted = |relative: &[u8], fstype: &[u8]| {
            mounts.iter().any(|m| {
                m.relative.as_bytes() == relative
                    && matches!(&m.kind, MountKind::Filesystem { fstype: t, .. } if t.as_bytes() == fstype)
            })
        };
        let mut devices = Vec::new();
        let mut dev_symlinks: Vec<DevSymlink> = Vec::new();
        if fresh_dev {
            devices = device_plans(spec, id_map)?;
            dev_symlinks.extend([
                (c"/proc/self/fd", c"fd"),
                (c"/proc/self/fd/0", c"stdin"),
                (c"/proc/self/fd/1", c"stdout"),
                (c"/proc/self/fd/2", c"stderr"),
            ]);
            if mounted(b"proc", b"proc") {
                dev_symlinks.push((c"/proc/kcore", c"core"));
            }
            if mounted(b"dev/pts", b"devpts") {
                dev_symlinks.push((c"pts/ptmx", c"ptmx"));
            }
        }

        let paths = |field: &str, list: Option<&Vec<String>>| {
            list.into_iter()
                .flatten()
                .filter_map(|path| {
                    if !path.starts_with('/') {
                        return Some(Err(ExecutorError::invalid(
                            field,
                            format!("{path} is not absolute"),
                        )));
                    }
                    let relative = relative_in_root(Path::new(path))?;
                    Some(cstring(field, relative.as_os_str().as_bytes()))
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let masked = paths(
            "linux.maskedPaths",
            linux.and_then(|l| l.masked_paths().as_ref()),
        )?;
        let readonly_paths = paths(
            "linux.readonlyPaths",
            linux.and_then(|l| l.readonly_paths().as_ref()),
        )?;

        let cgroup_mount_last = cgroup_mount_last(&mounts, &masked, &readonly_paths);
        Ok(RootfsPlan {
            path: cstring("rootfs", rootfs.as_os_str().as_bytes())?,
            propagation: propagation | libc::MS_REC,
            shared_holder: match propagation {
                libc::MS_SHARED => Some(cstring(
                    "rootfs",
                    holding_mount(rootfs)?.as_os_str().as_bytes(),
                )?),
                _ => None,
            },
            readonly,
            mounts,
            devices,
            dev_symlinks,
            masked,
            readonly_paths,
            cgroup_mount_last,
        })
    }
}

/// The index of the cgroup mount when it can move after every other mount, mask and
/// read-only path without changing the result: none of theirs is its destination, above it
/// or below it. A fresh `/dev` and the sysctls (`/proc/sys`) are covered by the mounts that
/// make them.
fn cgroup_mount_last(
    mounts: &[MountPlan],
    masked: &[CString],
    readonly_paths: &[CString],
) -> Option<usize> {
    let at = mounts
        .iter()
        .position(|mount| matches!(mount.kind, MountKind::Cgroup(_)))?;
    let destination = Path::new(OsStr::from_bytes(mounts[at].relative.as_bytes()));
    let independent = |other: &CString| {
        let other = Path::new(OsStr::from_bytes(other.as_bytes()));
        !other.starts_with(destination) && !destination.starts_with(other)
    };
    let later_mounts = mounts.iter().skip(at + 1).map(|mount| &mount.relative);
    later_mounts
        .chain(masked)
        .chain(readonly_paths)
        .all(independent)
        .then_some(at)
}

/// The mount point of the mount that holds `path`: `path` itself when it is a mount root, else
/// its nearest ancestor that is one (`/` at the latest).
fn holding_mount(path: &Path) -> Result<&Path, ExecutorError> {
    use rustix::fs::{StatxAttributes, StatxFlags};
    let mut candidate = path;
    loop {
        let stat = rustix::fs::statx(
            CWD,
            candidate,
            AtFlags::NO_AUTOMOUNT | AtFlags::SYMLINK_NOFOLLOW,
            StatxFlags::empty(),
        )
        .map_err(|errno| prepare("inspect mount", candidate)(errno.into()))?;
        if !stat
            .stx_attributes_mask
            .contains(StatxAttributes::MOUNT_ROOT)
        {
            return Err(ExecutorError::unsupported(
                "shared rootfs propagation on a kernel whose statx does not report mount roots",
            ));
        }
        if stat.stx_attributes.contains(StatxAttributes::MOUNT_ROOT) {
            return Ok(candidate);
        }
        match candidate.parent() {
            Some(parent) => candidate = parent,
            None => return Ok(candidate),
        }
    }
}

impl MountPlan {
    fn new(
        at: usize,
        mount: &oci_spec::runtime::Mount,
        id_map: Option<&IdMap>,
    ) -> Result<MountPlan, ExecutorError> {
        let field = format!("mounts[{at}]");
        let destination = mount.destination().clone();
        let relative = relative_in_root(&destination).ok_or_else(|| {
            ExecutorError::invalid(&field, "mounting over the root itself is not allowed")
        })?;
        let mut options = mount_options::parse(mount.options().as_deref().unwrap_or_default())
            .map_err(|reason| ExecutorError::invalid(format!("{field}.options"), reason))?;
        let uid_mappings = mount.uid_mappings().as_deref().unwrap_or_default();
        let gid_mappings = mount.gid_mappings().as_deref().unwrap_or_default();
        let idmap = !uid_mappings.is_empty() || !gid_mappings.is_empty();
        let fstype = mount.typ().as_deref().unwrap_or("");
        let is_bind = fstype == "bind" || options.bind.is_some();
        let (kind, file) = if is_bind {
            let source = mount
                .source()
                .as_ref()
                .filter(|source| source.is_absolute())
                .ok_or_else(|| {
                    ExecutorError::invalid(&field, "a bind mount needs an absolute source")
                })?;
            let metadata =
                std::fs::metadata(source).map_err(prepare("inspect bind mount source", source))?;
            if !options.data.is_empty() {
                return Err(ExecutorError::invalid(
                    format!("{field}.options"),
                    format!("unknown bind mount options {:?}", options.data),
                ));
            }
            if idmap && !id_map.is_some_and(|map| map.same_as(uid_mappings, gid_mappings)) {
                return Err(ExecutorError::unsupported(
                    "idmapped mounts other than through the container's own user namespace",
                ));
            }
            let kind = MountKind::Bind {
                source: cstring(&field, source.as_os_str().as_bytes())?,
                recursive: options.bind.unwrap_or(false),
                idmap,
            };
            (kind, !metadata.is_dir())
        } else {
            match fstype {
                "" => return Err(ExecutorError::invalid(&field, "no filesystem type")),
                "cgroup" => {
                    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
                        .map_err(prepare("read", "/proc/self/mountinfo"))?;
                    return Ok(MountPlan {
                        relative: cstring(&field, relative.as_os_str().as_bytes())?,
                        destination,
                        file: false,
                        kind: MountKind::Cgroup(cgroup_layout(&mountinfo)?),
                        options,
                    });
                }
                _ => {}
            }
            if idmap {
                return Err(ExecutorError::unsupported(
                    "idmapped mounts of anything but a bind mount",
                ));
            }
            if let Some(map) = id_map {
                map.map_mount_data(&format!("{field}.options"), fstype, &mut options.data)?;
            }
            let mut config = Vec::new();
            for flag in &options.superblock {
                config.push((cstring(&field, *flag)?, None));
            }
            for (key, value) in &options.data {
                let value = value.as_deref().map(|v| cstring(&field, v)).transpose()?;
                config.push((cstring(&field, key.as_bytes())?, value));
            }
            let kind = MountKind::Filesystem {
                fstype: cstring(&field, fstype)?,
                source: mount
                    .source()
                    .as_ref()
                    .map(|s| cstring(&field, s.as_os_str().as_bytes()))
                    .transpose()?,
                options: config,
            };
            (kind, false)
        };
        Ok(MountPlan {
            destination,
            relative: cstring(&field, relative.as_os_str().as_bytes())?,
            file,
            kind,
            options,
        })
    }
}

/// The default devices plus the spec's `linux.devices` (which override a default of the same
/// path).
fn device_plans(spec: &Spec, id_map: Option<&IdMap>) -> Result<Vec<DevicePlan>, ExecutorError> {
    let mut wanted: Vec<(PathBuf, FileType, u32, u64, u32, u32)> = DEFAULT_DEVICES
        .iter()
        .map(|(name, major, minor)| {
            (
                Path::new("/dev").join(name),
                FileType::CharacterDevice,
                0o666,
                rustix::fs::makedev(*major, *minor),
                0,
                0,
            )
        })
        .collect();
    let spec_devices = spec
        .linux()
        .as_ref()
        .and_then(|linux| linux.devices().as_ref());
    for (at, device) in spec_devices.into_iter().flatten().enumerate() {
        let field = format!("linux.devices[{at}]");
        let file_type = match device.typ() {
            oci_spec::runtime::LinuxDeviceType::C | oci_spec::runtime::LinuxDeviceType::U => {
                FileType::CharacterDevice
            }
            oci_spec::runtime::LinuxDeviceType::B => FileType::BlockDevice,
            oci_spec::runtime::LinuxDeviceType::P => FileType::Fifo,
            oci_spec::runtime::LinuxDeviceType::A => {
                return Err(ExecutorError::invalid(
                    field,
                    "type a is for cgroup rules only",
                ));
            }
        };
        let number = |value: i64| {
            u32::try_from(value)
                .map_err(|_| ExecutorError::invalid(&field, format!("device number {value}")))
        };
        let rdev = rustix::fs::makedev(number(device.major())?, number(device.minor())?);
        let path = device.path();
        if !path.starts_with("/dev") || relative_in_root(path).is_none() {
            return Err(ExecutorError::invalid(
                field,
                format!("{} is not below /dev", path.display()),
            ));
        }
        let entry = (
            path.clone(),
            file_type,
            device.file_mode().unwrap_or(0o666) & 0o7777,
            rdev,
            device.uid().unwrap_or(0),
            device.gid().unwrap_or(0),
        );
        match wanted.iter_mut().find(|(p, ..)| p == path) {
            Some(slot) => *slot = entry,
            None => wanted.push(entry),
        }
    }
    wanted
        .into_iter()
        .map(|(path, file_type, mode, rdev, uid, gid)| {
            let field = "linux.devices";
            let relative = relative_in_root(&path)
                .ok_or_else(|| ExecutorError::invalid(field, "device at /"))?;
            let parent = relative.parent().unwrap_or(Path::new("dev")).to_owned();
            let name = relative
                .file_name()
                .ok_or_else(|| ExecutorError::invalid(field, "device without a name"))?;
            // Owners are the container's ids; the node is made by the host's root.
            let (uid, gid) = match id_map {
                Some(map) => (map.host_uid(field, uid)?, map.host_gid(field, gid)?),
                None => (uid, gid),
            };
            Ok(DevicePlan {
                path: cstring(field, path.as_os_str().as_bytes())?,
                parent: cstring(field, parent.as_os_str().as_bytes())?,
                name: cstring(field, name.as_bytes())?,
                file_type,
                mode: Mode::from_raw_mode(mode),
                rdev,
                uid,
                gid,
            })
        })
        .collect()
}

impl ExecPlan {
    fn new(args: Option<&[String]>, env: Option<&[String]>) -> Result<ExecPlan, ExecutorError> {
        let args = args.unwrap_or_default();
        let program = args
            .first()
            .filter(|program| !program.is_empty())
            .ok_or_else(|| ExecutorError::invalid("process.args", "empty"))?;
        let env = env.unwrap_or_default();
        let (candidates, search_path) = if program.contains('/') {
            (vec![cstring("process.args", program.as_bytes())?], None)
        } else {
            let path = env
                .iter()
                .rev()
                .find_map(|var| var.strip_prefix("PATH="))
                .unwrap_or(DEFAULT_PATH);
            let candidates = path
                .split(':')
                .map(|dir| {
                    let dir = if dir.is_empty() { "." } else { dir };
                    cstring("process.args", format!("{dir}/{program}"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            (candidates, Some(path.to_owned()))
        };
        let strings = |field: &str, list: &[String]| {
            list.iter()
                .map(|s| cstring(field, s.as_bytes()))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(ExecPlan {
            candidates,
            argv: CStringArray::new(strings("process.args", args)?),
            envp: CStringArray::new(strings("process.env", env)?),
            search_path,
        })
    }
}

fn resource(typ: PosixRlimitType) -> Resource {
    match typ {
        PosixRlimitType::RlimitCpu => Resource::Cpu,
        PosixRlimitType::RlimitFsize => Resource::Fsize,
        PosixRlimitType::RlimitData => Resource::Data,
        PosixRlimitType::RlimitStack => Resource::Stack,
        PosixRlimitType::RlimitCore => Resource::Core,
        PosixRlimitType::RlimitRss => Resource::Rss,
        PosixRlimitType::RlimitNproc => Resource::Nproc,
        PosixRlimitType::RlimitNofile => Resource::Nofile,
        PosixRlimitType::RlimitMemlock => Resource::Memlock,
        PosixRlimitType::RlimitAs => Resource::As,
        PosixRlimitType::RlimitLocks => Resource::Locks,
        PosixRlimitType::RlimitSigpending => Resource::Sigpending,
        PosixRlimitType::RlimitMsgqueue => Resource::Msgqueue,
        PosixRlimitType::RlimitNice => Resource::Nice,
        PosixRlimitType::RlimitRtprio => Resource::Rtprio,
        PosixRlimitType::RlimitRttime => Resource::Rttime,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(changes: impl FnOnce(&mut serde_json::Value)) -> Spec {
        let mut spec = serde_json::json!({
            "ociVersion": "1.0.2",
            "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "root": {"path": "rootfs"},
            "linux": {"namespaces": [{"type": "mount"}, {"type": "pid"}]}
        });
        changes(&mut spec);
        serde_json::from_value(spec).expect("spec")
    }

    fn refusal(spec: Spec) -> String {
        let rootfs = tempfile::tempdir().expect("temp dir");
        match Plan::new(&spec, rootfs.path(), Stdio::default()) {
            Ok(_) => "accepted".to_owned(),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn the_cgroup_mount_goes_last_unless_something_lies_above_or_below_it() {
        let rootfs = tempfile::tempdir().expect("temp dir");
        let planned = |later: &str, masked: &str| {
            let spec = spec(|s| {
                s["mounts"] = serde_json::json!([
                    {"destination": "/sys", "type": "sysfs", "source": "sysfs"},
                    {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup"},
                    {"destination": later, "type": "tmpfs", "source": "tmpfs"},
                ]);
                s["linux"]["maskedPaths"] = serde_json::json!([masked]);
            });
            Plan::new(&spec, rootfs.path(), Stdio::default())
                .expect("plan")
                .rootfs
                .cgroup_mount_last
        };
        assert_eq!(planned("/tmp", "/sys/firmware"), Some(1));
        assert_eq!(planned("/sys/fs/cgroup/x", "/sys/firmware"), None);
        assert_eq!(planned("/sys/fs", "/sys/firmware"), None);
        assert_eq!(planned("/tmp", "/sys/fs/cgroup/cpu"), None);
        assert_eq!(planned("/tmp", "/sys/fs/cgroupx"), Some(1));
    }

    #[test]
    fn a_minimal_spec_is_planned() {
        let rootfs = tempfile::tempdir().expect("temp dir");
        let plan = Plan::new(&spec(|_| {}), rootfs.path(), Stdio::default()).expect("plan");
        assert_eq!(
            plan.clone_flags,
            (libc::CLONE_NEWNS | libc::CLONE_NEWPID) as u64
        );
        assert!(plan.joins.is_empty() && plan.pid_namespace.is_none());
        assert!(plan.process.capabilities.is_none() && plan.process.seccomp.programs.is_empty());
        assert_eq!(plan.process.user.umask, 0o022);
    }

    #[test]
    fn specs_that_would_touch_the_host_or_need_missing_features_are_refused() {
        let no_mount_ns = spec(|s| s["linux"]["namespaces"] = serde_json::json!([{"type": "pid"}]));
        assert!(refusal(no_mount_ns).contains("a mount namespace is required"));
        let host_hostname = spec(|s| s["hostname"] = serde_json::json!("x"));
        assert!(refusal(host_hostname).contains("hostname: set without a UTS namespace"));
        let user_ns = spec(|s| {
            s["linux"]["namespaces"] = serde_json::json!([{"type": "mount"}, {"type": "user"}])
        });
        assert_eq!(
            refusal(user_ns),
            "unsupported: new user namespaces (a container can only join one, by path)"
        );
        let user_ns_without_maps = spec(|s| {
            s["linux"]["namespaces"] = serde_json::json!([{"type": "mount"}, {"type": "user", "path": "/proc/self/ns/user"}])
        });
        assert!(refusal(user_ns_without_maps).contains("needs exactly one mapping"));
        let relative_cwd = spec(|s| s["process"]["cwd"] = serde_json::json!("tmp"));
        assert!(refusal(relative_cwd).contains("process.cwd: tmp is not absolute"));
        let missing_ns = spec(|s| {
            s["linux"]["namespaces"] = serde_json::json!([{"type": "mount"}, {"type": "network", "path": "/nonexistent/ns"}])
        });
        assert!(refusal(missing_ns).starts_with("open namespace /nonexistent/ns: "));
        let relative_bind = spec(|s| {
            s["mounts"] = serde_json::json!([{"destination": "/x", "type": "bind", "source": "y"}])
        });
        assert!(refusal(relative_bind).contains("a bind mount needs an absolute source"));
        let bad_sysctl = spec(|s| s["linux"]["sysctl"] = serde_json::json!({"net..x": "1"}));
        assert!(refusal(bad_sysctl).contains("not a sysctl name"));
    }

    #[test]
    fn shared_rootfs_propagation_privatises_the_mount_holding_the_rootfs() {
        let rootfs = tempfile::tempdir().expect("temp dir");
        let shared = spec(|s| s["linux"]["rootfsPropagation"] = serde_json::json!("rshared"));
        let plan = Plan::new(&shared, rootfs.path(), Stdio::default()).expect("plan");
        assert_eq!(plan.rootfs.propagation, libc::MS_SHARED | libc::MS_REC);
        // A fresh temp dir is no mount point: its holder is an ancestor, `/` at the latest.
        let holder = plan.rootfs.shared_holder.expect("holder");
        let holder = Path::new(OsStr::from_bytes(holder.as_bytes()));
        assert!(rootfs.path().starts_with(holder) && holder != rootfs.path());
        let slave = Plan::new(&spec(|_| {}), rootfs.path(), Stdio::default()).expect("plan");
        assert_eq!(slave.rootfs.propagation, libc::MS_SLAVE | libc::MS_REC);
        assert!(slave.rootfs.shared_holder.is_none());
    }

    #[test]
    fn destinations_stay_inside_the_root() {
        let rel = |p: &str| relative_in_root(Path::new(p)).map(|p| p.display().to_string());
        assert_eq!(rel("/proc").as_deref(), Some("proc"));
        assert_eq!(rel("/dev//pts/").as_deref(), Some("dev/pts"));
        assert_eq!(rel("/../../etc/./x").as_deref(), Some("etc/x"));
        assert_eq!(rel("/a/b/../../..").as_deref(), None);
        assert_eq!(rel("/").as_deref(), None);
    }

    #[test]
    fn the_program_is_searched_in_the_spec_path() {
        let env = ["A=1".to_owned(), "PATH=/bin:/usr/bin".to_owned()];
        let plan = ExecPlan::new(Some(&["sh".to_owned()]), Some(&env)).expect("plan");
        assert_eq!(plan.candidates, [c"/bin/sh", c"/usr/bin/sh"]);
        let plan = ExecPlan::new(Some(&["./run".to_owned()]), None).expect("plan");
        assert_eq!(plan.candidates, [c"./run"]);
        assert_eq!(plan.search_path, None);
        let plan = ExecPlan::new(Some(&["sh".to_owned()]), None).expect("plan");
        assert_eq!(plan.candidates.len(), 6, "runc's default PATH");
        assert!(ExecPlan::new(Some(&[]), None).is_err());
        assert!(ExecPlan::new(Some(&["a\0b".to_owned()]), None).is_err());
    }
}
