//! `RemoveContainer`: kill it if it runs, then unmount the rootfs and remove the writable
//! layer, the cgroup, the runtime files and the record. Idempotent: an unknown container
//! succeeds, and a removal cut short is finished by the next one.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument;

use super::create::unmount_rootfs;
use super::{ContainerError, ContainerService};
use crate::cgroups::{CgroupPath, Created};
use crate::events::ContainerEventKind;
use crate::monitor::protocol::ROOTFS_DIR;
use crate::store::ContainerState;

impl ContainerService {
    /// Removes container `id`.
    pub async fn remove(self: &Arc<Self>, id: &str) -> Result<(), ContainerError> {
        let Some(container) = self.find(id)? else {
            return Ok(());
        };
        let id = container.id.clone();
        if container.state == ContainerState::Running {
            self.stop(&id, Duration::ZERO)
                .instrument(tracing::info_span!("container.stop"))
                .await?;
        }
        let _guard = self.locks.lock(&id).await;
        let Some(container) = self.store.containers.get(&id) else {
            return Ok(());
        };
        if container.state == ContainerState::Running {
            return Err(ContainerError::WrongState {
                id,
                state: "running",
                reason: "it was started again while being removed",
            });
        }
        // The deleted event shows the container as it was, resources included, which are
        // read from the runtime dir about to go.
        let last_state = self.snapshot(Arc::clone(&container));
        let dir = self.runtime_dir(&id);
        let rootfs = dir.join(ROOTFS_DIR);
        tracing::info_span!("container.rootfs_unmount")
            .in_scope(|| unmount_rootfs(&rootfs))
            .map_err(ContainerError::io(&id, "unmount", &rootfs))?;
        tracing::info_span!("container.snapshot_remove")
            .in_scope(|| self.snapshots.remove_active(&id))
            .map_err(|source| ContainerError::Snapshot {
                id: id.clone(),
                source,
            })?;
        crate::failpoint::hit(crate::failpoint::REMOVE_CONTAINER_MID_TEARDOWN);
        if let Ok(path) = CgroupPath::parse(&container.cgroup_path) {
            let created = Created::from_dirs(container.cgroup_created.iter().map(PathBuf::from));
            let cgroups = Arc::clone(&self.cgroups);
            tokio::task::spawn_blocking(move || cgroups.remove(&path, &created))
                .instrument(tracing::info_span!("container.cgroup_remove"))
                .await
                .map_err(|err| ContainerError::Io {
                    id: id.clone(),
                    action: "remove cgroup",
                    path: PathBuf::from(&container.cgroup_path),
                    source: std::io::Error::other(err),
                })?
                .map_err(|source| ContainerError::Cgroup {
                    id: id.clone(),
                    source,
                })?;
        }
        let removed = tracing::info_span!("container.files_remove")
            .in_scope(|| std::fs::remove_dir_all(&dir));
        match removed {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                return Err(ContainerError::io(&id, "remove runtime dir", &dir)(err));
            }
            _ => {}
        }
        crate::failpoint::hit(crate::failpoint::REMOVE_CONTAINER_AFTER_TEARDOWN);
        tracing::info_span!("container.record_remove")
            .in_scope(|| self.store.containers.remove(&id))?;
        self.cpu_samples.forget(&id);
        self.store.container_names.release(&container.name_key, &id);
        tracing::info!(container = %id, "container removed");
        self.publish(ContainerEventKind::Deleted, last_state);
        Ok(())
    }

    /// Stops every container of pod `pod_id` at once (no grace period, as a pod stop is).
    pub async fn stop_pod_containers(self: &Arc<Self>, pod_id: &str) -> Result<(), ContainerError> {
        self.stop_all_of(pod_id)
            .instrument(tracing::info_span!("pod.stop_containers"))
            .await
    }

    async fn stop_all_of(self: &Arc<Self>, pod_id: &str) -> Result<(), ContainerError> {
        let stops = self
            .of_pod(pod_id)
            .into_iter()
            .map(|container| {
                let service = Arc::clone(self);
                // A child span per container: spawned tasks do not inherit the caller's span.
                let span = tracing::info_span!("container.stop", container_id = %container.id);
                tokio::spawn(
                    async move { service.stop(&container.id, Duration::ZERO).await }
                        .instrument(span),
                )
            })
            .collect::<Vec<_>>();
        let mut first_error = None;
        for stop in stops {
            if let Ok(Err(err)) = stop.await {
                first_error.get_or_insert(err);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Removes every container of pod `pod_id`.
    pub async fn remove_pod_containers(
        self: &Arc<Self>,
        pod_id: &str,
    ) -> Result<(), ContainerError> {
        let phase = tracing::info_span!("pod.remove_containers");
        for container in self.of_pod(pod_id) {
            self.remove(&container.id)
                .instrument(tracing::info_span!(parent: &phase, "container.remove", container_id = %container.id))
                .await?;
        }
        Ok(())
    }
}
