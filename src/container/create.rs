//! `CreateContainer`: reserve the name, then prepare the writable layer, mount the rootfs,
//! create the cgroup, build the spec and write the monitor's files — each with its undo step —
//! and commit the record (state CREATED) last.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path};
use std::sync::Arc;

use oci_spec::runtime::Spec;

use super::spec::{self, RootfsFiles};
use super::{ContainerError, ContainerService, CreateRequest};
use crate::cgroups::{CgroupPath, Created};
use crate::events::ContainerEventKind;
use crate::failpoint;
use crate::image_service::manifest::ImageConfig;
use crate::monitor::protocol::{CONFIG_FILE, MONITOR_FILE, MonitorConfig, ROOTFS_DIR};
use crate::rollback::Rollback;
use crate::snapshot;
use crate::store::{
    ContainerMount, ContainerRecord, ContainerState, ContainerUser, NamespaceMode, PodRecord,
    PodState, container_name_key, now_ns, replace_runtime_file,
};

/// The file in the runtime dir holding the cgroup resources last applied (for status).
pub(super) const RESOURCES_FILE: &str = "resources.json";

impl ContainerService {
    /// Creates a container; returns its id. The create finishes even when the client gives
    /// up, and the client's retry with the same name gets the container (see `resumable`).
    /// `deadline` is the client's, past which the result is kept for its retry.
    pub async fn create(
        self: &Arc<Self>,
        request: CreateRequest,
        deadline: Option<std::time::Instant>,
    ) -> Result<String, ContainerError> {
        let name = format!(
            "{}/{}/{}",
            request.pod_id, request.metadata.name, request.metadata.attempt
        );
        let service = Arc::clone(self);
        self.resumable
            .run(
                name,
                deadline,
                |id| self.store.containers.get(id).is_some(),
                async move { service.create_now(request).await },
            )
            .await
    }

    async fn create_now(&self, request: CreateRequest) -> Result<String, ContainerError> {
        let phase = tracing::info_span!("container.image_lookup").entered();
        validate(&request)?;
        let pod =
            self.store
                .pods
                .get(&request.pod_id)
                .ok_or_else(|| ContainerError::PodNotFound {
                    pod_id: request.pod_id.clone(),
                })?;
        if pod.state != PodState::Ready {
            return Err(ContainerError::PodNotReady {
                pod_id: pod.id.clone(),
                reason: "it was stopped",
            });
        }
        let image =
            self.images
                .status(&request.image)?
                .ok_or_else(|| ContainerError::ImageNotFound {
                    image: request.image.clone(),
                })?;
        let image_config = self.image_config(&image)?;
        let mut request = request;
        if request.spec.security.namespaces.pid == NamespaceMode::Pod {
            request.spec.security.namespaces.pid_namespace_path =
                pod.pidns_path.as_ref().map(std::path::PathBuf::from);
        }
        if request.spec.security.namespaces.pid == NamespaceMode::Target {
            request.spec.security.namespaces.pid_namespace_path =
                Some(self.target_pid_namespace(request.pid_target_id.as_deref().unwrap_or(""))?);
        }

        drop(phase);
        let id = new_id();
        // Held until the created event is out, so that no start of this container can
        // publish before it. (Taken before the next phase: an entered span cannot cross an
        // await.)
        let _guard = self.locks.lock(&id).await;
        let phase = tracing::info_span!("container.reserve_name").entered();
        let name_key = container_name_key(
            &request.metadata.name,
            &pod.metadata.name,
            &pod.metadata.namespace,
            &pod.metadata.uid,
            request.metadata.attempt,
        );
        self.store.container_names.reserve(&name_key, &id)?;
        let mut rollback = Rollback::default();
        {
            let store = Arc::clone(&self.store);
            let (name_key, id) = (name_key.clone(), id.clone());
            rollback.push("release name", move || {
                store.container_names.release(&name_key, &id);
                Ok(())
            });
        }
        drop(phase);
        let result = self.acquire(
            &id,
            name_key,
            &request,
            &pod,
            &image,
            &image_config,
            &mut rollback,
        );
        match result {
            Ok(()) => {
                rollback.commit();
                tracing::info!(container = %id, pod = %pod.id, name = %request.metadata.name, "container created");
                self.publish_current(ContainerEventKind::Created, &id);
                Ok(id)
            }
            Err(err) => {
                let failed = rollback.run();
                if !failed.is_empty() {
                    tracing::error!(container = %id, steps = ?failed, "container cleanup incomplete after failed create");
                }
                Err(err)
            }
        }
    }

    /// `/proc/<pid>/ns/pid` of the running container `target_id`.
    fn target_pid_namespace(&self, target_id: &str) -> Result<std::path::PathBuf, ContainerError> {
        if target_id.is_empty() {
            return Err(ContainerError::InvalidConfig {
                reason: "pid namespace mode TARGET needs namespace_options.target_id".to_owned(),
            });
        }
        let target = self.require(target_id)?;
        if target.state != ContainerState::Running || target.pid <= 0 {
            return Err(ContainerError::WrongState {
                id: target.id.clone(),
                state: super::start::state_name(target.state),
                reason: "a TARGET pid namespace needs a running target container",
            });
        }
        Ok(std::path::PathBuf::from(format!(
            "/proc/{}/ns/pid",
            target.pid
        )))
    }

    fn image_config(
        &self,
        image: &crate::store::ImageRecord,
    ) -> Result<ImageConfig, ContainerError> {
        let bytes = self
            .images
            .config_of(image)?
            .ok_or_else(|| ContainerError::ImageNotFound {
                image: image.id.clone(),
            })?;
        serde_json::from_slice(&bytes).map_err(|err| ContainerError::InvalidConfig {
            reason: format!("image {} has an unreadable config: {err}", image.id),
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn acquire(
        &self,
        id: &str,
        name_key: String,
        request: &CreateRequest,
        pod: &PodRecord,
        image: &crate::store::ImageRecord,
        image_config: &ImageConfig,
        rollback: &mut Rollback,
    ) -> Result<(), ContainerError> {
        let io = |action, path: &Path| ContainerError::io(id, action, path);

        // Runtime directory.
        let phase = tracing::info_span!("container.runtime_dir").entered();
        let dir = self.runtime_dir(id);
        fs::create_dir_all(&dir).map_err(io("create runtime dir", &dir))?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
            .map_err(io("set mode of runtime dir", &dir))?;
        {
            let dir = dir.clone();
            rollback.push("remove runtime dir", move || {
                match fs::remove_dir_all(&dir) {
                    Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(err.to_string()),
                    _ => Ok(()),
                }
            });
        }

        drop(phase);

        // Writable layer and rootfs mount.
        let phase = tracing::info_span!("container.snapshot").entered();
        let snapshot_error = |source| ContainerError::Snapshot {
            id: id.to_owned(),
            source,
        };
        let mount_spec = self
            .snapshots
            .prepare_active(id, &image.chain_ids)
            .map_err(snapshot_error)?;
        {
            let (snapshots, id) = (Arc::clone(&self.snapshots), id.to_owned());
            rollback.push("remove writable layer", move || {
                snapshots
                    .remove_active(&id)
                    .map(drop)
                    .map_err(|e| e.to_string())
            });
        }
        let rootfs = dir.join(ROOTFS_DIR);
        fs::create_dir(&rootfs).map_err(io("create rootfs dir", &rootfs))?;
        match (&pod.namespaces.user, &pod.userns_path) {
            (None, _) => snapshot::mount_overlay(&mount_spec, &rootfs).map_err(snapshot_error)?,
            (Some(mappings), Some(userns)) => {
                super::userns_rootfs::mount(id, &mount_spec, Path::new(userns), mappings, &rootfs)?
            }
            (Some(_), None) => {
                return Err(ContainerError::InvalidConfig {
                    reason: format!("pod {} has no pinned user namespace", pod.id),
                });
            }
        }
        {
            let rootfs = rootfs.clone();
            rollback.push("unmount rootfs", move || {
                unmount_rootfs(&rootfs).map_err(|e| e.to_string())
            });
        }

        drop(phase);
        failpoint::hit(failpoint::CREATE_CONTAINER_AFTER_SNAPSHOT);

        // cgroup.
        let phase = tracing::info_span!("container.cgroup").entered();
        let cgroup_error = |source| ContainerError::Cgroup {
            id: id.to_owned(),
            source,
        };
        let pod_cgroup = CgroupPath::parse(&pod.cgroup_path).map_err(cgroup_error)?;
        let cgroup_path = self.cgroups.container_cgroup_path(&pod_cgroup, id);
        // A systemd scope is created at start, around the container's first process.
        let placed_at_start = self.cgroups.needs_process(&cgroup_path);
        let created = if placed_at_start {
            Created::default()
        } else {
            let created = self.cgroups.create(&cgroup_path).map_err(cgroup_error)?;
            {
                let cgroups = Arc::clone(&self.cgroups);
                let (path, created) = (cgroup_path.clone(), created.clone());
                rollback.push("remove container cgroup", move || {
                    cgroups.remove(&path, &created).map_err(|e| e.to_string())
                });
            }
            self.cgroups
                .apply(&cgroup_path, &request.spec.resources)
                .map_err(cgroup_error)?;
            created
        };

        drop(phase);
        failpoint::hit(failpoint::CREATE_CONTAINER_AFTER_CGROUP);

        // Spec and monitor files.
        let phase = tracing::info_span!("container.spec").entered();
        let mut host = self.settings.host.clone();
        host.cgroup_path = cgroup_path.as_str().to_owned();
        let mut input = request.spec.clone();
        input.stdin = request.stdin;
        // A container lives in its pod's network and IPC namespaces: those of the node when the
        // pod uses the node's (kubelet sends the pod's modes, other clients may not).
        let namespaces = &mut input.security.namespaces;
        if pod.namespaces.network == NamespaceMode::Node {
            namespaces.network = NamespaceMode::Node;
        }
        if pod.namespaces.ipc == NamespaceMode::Node {
            namespaces.ipc = NamespaceMode::Node;
        }
        let spec = spec::build_spec(&input, image_config, pod, &RootfsFiles::new(&rootfs), &host)?;
        let log_path = if pod.log_directory.is_empty() || request.log_path.is_empty() {
            None
        } else {
            Some(Path::new(&pod.log_directory).join(&request.log_path))
        };
        let monitor = MonitorConfig {
            container_id: id.to_owned(),
            rootfs: rootfs.clone(),
            log_path: log_path.clone(),
            cgroup_procs_files: if placed_at_start {
                Vec::new()
            } else {
                self.cgroups.procs_files(&cgroup_path)
            },
            placed_by_daemon: placed_at_start,
            oom_counter_files: self.cgroups.oom_counter_files(&cgroup_path),
            tty: request.spec.tty,
            stdin: request.stdin,
            stdin_once: request.stdin_once,
        };
        write_json(id, &dir.join(CONFIG_FILE), &spec)?;
        write_json(id, &dir.join(MONITOR_FILE), &monitor)?;
        write_json(id, &dir.join(RESOURCES_FILE), &request.spec.resources)?;

        let stop_signal = match request.stop_signal {
            Some(signal) => signal,
            None => image_config
                .config
                .as_ref()
                .and_then(|config| config.stop_signal.as_deref())
                .map(|name| {
                    parse_signal(name).ok_or_else(|| ContainerError::InvalidConfig {
                        reason: format!("image {} has an unknown StopSignal {name:?}", image.id),
                    })
                })
                .transpose()?
                .unwrap_or(libc::SIGTERM),
        };
        let record = ContainerRecord {
            id: id.to_owned(),
            pod_id: pod.id.clone(),
            name_key,
            metadata: crate::store::ObjectMetadata {
                name: request.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
                namespace: pod.metadata.namespace.clone(),
                attempt: request.metadata.attempt,
            },
            image_ref: image
                .repo_digests
                .first()
                .cloned()
                .unwrap_or_else(|| image.id.clone()),
            image_id: image.id.clone(),
            state: ContainerState::Created,
            created_at_ns: now_ns(),
            labels: request.labels.clone(),
            annotations: request.annotations.clone(),
            image_spec: request.image.clone(),
            log_path: log_path
                .map(|path| path.to_string_lossy().into_owned())
                .unwrap_or_default(),
            log_path_relative: request.log_path.clone(),
            cgroup_path: cgroup_path.as_str().to_owned(),
            cgroup_created: created
                .dirs()
                .iter()
                .map(|dir| dir.to_string_lossy().into_owned())
                .collect(),
            stop_signal,
            tty: request.spec.tty,
            stdin: request.stdin,
            stdin_once: request.stdin_once,
            mounts: mounts_of(request),
            user: user_of(&spec),
            started_at_ns: 0,
            finished_at_ns: 0,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            pid: 0,
            monitor_pid: 0,
        };
        drop(phase);
        tracing::info_span!("container.record").in_scope(|| self.store.containers.put(record))?;
        Ok(())
    }
}

/// Checks what the spec builder does not: names and the log path.
fn validate(request: &CreateRequest) -> Result<(), ContainerError> {
    let invalid = |reason: String| Err(ContainerError::InvalidConfig { reason });
    if request.pod_id.is_empty() {
        return invalid("pod_sandbox_id is required".to_owned());
    }
    let name = &request.metadata.name;
    if name.is_empty() {
        return invalid("container metadata.name is required".to_owned());
    }
    if name.contains(['/', '\0', '\n']) {
        return invalid(format!(
            "container metadata.name {name:?} contains '/', NUL or newline"
        ));
    }
    if request.image.trim().is_empty() {
        return invalid("image.image is required".to_owned());
    }
    let log_path = Path::new(&request.log_path);
    if !request.log_path.is_empty()
        && log_path
            .components()
            .any(|part| !matches!(part, Component::Normal(_)))
    {
        return invalid(format!(
            "log_path {:?} must be relative to the pod's log directory, without '..'",
            request.log_path
        ));
    }
    Ok(())
}

/// Writes one of the runtime directory's JSON files (under the state dir: replaced
/// atomically, not fsynced, as it does not outlive a boot).
pub(super) fn write_json<T: serde::Serialize>(
    id: &str,
    path: &Path,
    value: &T,
) -> Result<(), ContainerError> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|err| ContainerError::Io {
        id: id.to_owned(),
        action: "serialize",
        path: path.to_path_buf(),
        source: std::io::Error::other(err),
    })?;
    let mut temp = path.as_os_str().to_owned();
    temp.push(".tmp");
    replace_runtime_file(Path::new(&temp), path, &bytes).map_err(|(path, source)| {
        ContainerError::Io {
            id: id.to_owned(),
            action: "write",
            path,
            source,
        }
    })
}

/// Unmounts the rootfs; nothing mounted there is fine.
pub(super) fn unmount_rootfs(rootfs: &Path) -> std::io::Result<()> {
    use rustix::mount::{UnmountFlags, unmount};
    match unmount(rootfs, UnmountFlags::NOFOLLOW) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOENT) => Ok(()),
        // Something (a process that escaped the container's cleanup) still uses it: detach it,
        // the kernel frees it once the last user is gone.
        Err(rustix::io::Errno::BUSY) => {
            unmount(rootfs, UnmountFlags::DETACH | UnmountFlags::NOFOLLOW)
                .map_err(std::io::Error::from)
        }
        Err(errno) => Err(errno.into()),
    }
}

fn mounts_of(request: &CreateRequest) -> Vec<ContainerMount> {
    use super::spec::MountPropagation;
    request
        .spec
        .mounts
        .iter()
        .map(|mount| ContainerMount {
            container_path: mount.container_path.clone(),
            host_path: mount.host_path.clone(),
            readonly: mount.readonly,
            propagation: match mount.propagation {
                MountPropagation::Private => "private",
                MountPropagation::HostToContainer => "rslave",
                MountPropagation::Bidirectional => "rshared",
            }
            .to_owned(),
        })
        .collect()
}

fn user_of(spec: &Spec) -> Option<ContainerUser> {
    let user = spec.process().as_ref()?.user();
    Some(ContainerUser {
        uid: user.uid(),
        gid: user.gid(),
        additional_gids: user.additional_gids().clone().unwrap_or_default(),
    })
}

/// A fresh random 64-hex id.
fn new_id() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

/// A signal as images name it: `SIGQUIT`, `QUIT` or `3`.
pub fn parse_signal(name: &str) -> Option<i32> {
    let name = name.trim();
    if let Ok(number) = name.parse::<i32>() {
        return (1..=64).contains(&number).then_some(number);
    }
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    const NAMES: [(&str, i32); 20] = [
        ("HUP", libc::SIGHUP),
        ("INT", libc::SIGINT),
        ("QUIT", libc::SIGQUIT),
        ("ILL", libc::SIGILL),
        ("TRAP", libc::SIGTRAP),
        ("ABRT", libc::SIGABRT),
        ("BUS", libc::SIGBUS),
        ("FPE", libc::SIGFPE),
        ("KILL", libc::SIGKILL),
        ("USR1", libc::SIGUSR1),
        ("SEGV", libc::SIGSEGV),
        ("USR2", libc::SIGUSR2),
        ("PIPE", libc::SIGPIPE),
        ("ALRM", libc::SIGALRM),
        ("TERM", libc::SIGTERM),
        ("CHLD", libc::SIGCHLD),
        ("CONT", libc::SIGCONT),
        ("STOP", libc::SIGSTOP),
        ("TSTP", libc::SIGTSTP),
        ("WINCH", libc::SIGWINCH),
    ];
    if let Some(&(_, number)) = NAMES.iter().find(|(known, _)| *known == bare) {
        return Some(number);
    }
    // SIGRTMIN+n / RTMIN+n
    let offset = bare.strip_prefix("RTMIN+")?.parse::<i32>().ok()?;
    let number = libc::SIGRTMIN() + offset;
    (number <= libc::SIGRTMAX()).then_some(number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_signals_parse_in_every_spelling() {
        assert_eq!(parse_signal("SIGQUIT"), Some(libc::SIGQUIT));
        assert_eq!(parse_signal("quit"), Some(libc::SIGQUIT));
        assert_eq!(parse_signal("9"), Some(9));
        assert_eq!(parse_signal("SIGRTMIN+3"), Some(libc::SIGRTMIN() + 3));
        assert_eq!(parse_signal("SIGNOPE"), None);
        assert_eq!(parse_signal("0"), None);
        assert_eq!(parse_signal("65"), None);
    }

    #[test]
    fn log_paths_must_stay_inside_the_pod_log_directory() {
        let mut request = CreateRequest {
            pod_id: "p".to_owned(),
            image: "busybox".to_owned(),
            ..Default::default()
        };
        request.metadata.name = "c".to_owned();
        request.log_path = "c/0.log".to_owned();
        assert!(validate(&request).is_ok());
        for bad in ["../x.log", "/etc/passwd", "c/../../x"] {
            request.log_path = bad.to_owned();
            assert!(validate(&request).is_err(), "{bad}");
        }
    }
}
