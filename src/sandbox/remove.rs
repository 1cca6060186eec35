//! `RemovePodSandbox`: stop if needed, then release every resource and drop the record.
//! Repeatable; an unknown pod succeeds. The record goes last, so a failure midway leaves a
//! record the next Remove (or the reconciler) finishes.

use std::path::{Path, PathBuf};

use tracing::Instrument;

use super::files;
use super::namespaces::{self, PinnedNamespaces};
use super::{SandboxError, SandboxService};
use crate::cgroups::{CgroupPath, Created};
use crate::events::ContainerEventKind;

impl SandboxService {
    /// Removes the pod `id` names.
    pub async fn remove(&self, id: &str) -> Result<(), SandboxError> {
        let Some(pod) = self.find(id)? else {
            return Ok(());
        };
        let _guard = self.locks.lock(&pod.id).await;
        self.stop_locked(&pod.id)
            .instrument(tracing::info_span!("pod.stop"))
            .await?;
        let Some(pod) = self.store.pods.get(&pod.id) else {
            return Ok(());
        };
        let namespaces_error = |source| SandboxError::Namespaces {
            id: pod.id.clone(),
            source,
        };
        let pinned = PinnedNamespaces {
            net: pod.netns_path.as_ref().map(PathBuf::from),
            ipc: pod.ipcns_path.as_ref().map(PathBuf::from),
            uts: pod.utsns_path.as_ref().map(PathBuf::from),
        };
        tracing::info_span!("pod.namespaces_release")
            .in_scope(|| {
                namespaces::release(&pinned)?;
                // After the namespaces it owns (each pin holds it too, so the order is only tidy).
                match &pod.userns_path {
                    Some(user) => namespaces::unpin(Path::new(user)),
                    None => Ok(()),
                }
            })
            .map_err(namespaces_error)?;
        if let Some(shm) = &pod.shm_path {
            let _phase = tracing::info_span!("pod.shm_unmount").entered();
            files::unmount_shm(Path::new(shm)).map_err(|source| SandboxError::Io {
                id: pod.id.clone(),
                action: "unmount /dev/shm",
                path: PathBuf::from(shm),
                source,
            })?;
        }
        if !pod.cgroup_path.is_empty() {
            let _phase = tracing::info_span!("pod.cgroup_remove").entered();
            let cgroup_error = |source| SandboxError::Cgroup {
                id: pod.id.clone(),
                source,
            };
            let path = CgroupPath::parse(&pod.cgroup_path).map_err(cgroup_error)?;
            let created = Created::from_dirs(pod.cgroup_created.iter().map(PathBuf::from));
            self.cgroups.remove(&path, &created).map_err(cgroup_error)?;
        }
        if !pod.pod_dir.is_empty() {
            let _phase = tracing::info_span!("pod.files_remove").entered();
            match std::fs::remove_dir_all(&pod.pod_dir) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(SandboxError::Io {
                        id: pod.id.clone(),
                        action: "remove pod dir",
                        path: PathBuf::from(&pod.pod_dir),
                        source,
                    });
                }
            }
        }
        crate::failpoint::hit(crate::failpoint::REMOVE_POD_AFTER_TEARDOWN);
        tracing::info_span!("pod.record_remove").in_scope(|| self.store.pods.remove(&pod.id))?;
        self.store.pod_names.release(&pod.name_key, &pod.id);
        tracing::info!(pod = %pod.id, "pod sandbox removed");
        self.publish(ContainerEventKind::Deleted, pod);
        Ok(())
    }
}
