//! `UpdateContainerResources` (applied to the live cgroup and kept for status) and
//! `ReopenContainerLog` (the monitor reopens the file after kubelet rotated it).

use std::sync::Arc;

use super::create::{RESOURCES_FILE, write_json};
use super::start::state_name;
use super::{ContainerError, ContainerService};
use crate::cgroups::{CgroupPath, Resources};
use crate::monitor::protocol::Request;
use crate::store::ContainerState;

impl ContainerService {
    /// Applies `resources` to container `id`'s cgroup; unset fields keep their values.
    pub async fn update_resources(
        &self,
        id: &str,
        resources: Resources,
    ) -> Result<(), ContainerError> {
        let container = self.require(id)?;
        let id = container.id.clone();
        let _guard = self.locks.lock(&id).await;
        if matches!(
            container.state,
            ContainerState::Exited | ContainerState::Unknown
        ) {
            return Err(ContainerError::WrongState {
                id,
                state: state_name(container.state),
                reason: "resources can only be updated while it is created or running",
            });
        }
        let cgroup_error = |source| ContainerError::Cgroup {
            id: id.clone(),
            source,
        };
        let path = CgroupPath::parse(&container.cgroup_path).map_err(cgroup_error)?;
        // A systemd scope does not exist before start, which applies the kept resources.
        let exists =
            !(container.state == ContainerState::Created && self.cgroups.needs_process(&path));
        if exists {
            let cgroups = Arc::clone(&self.cgroups);
            let applied = resources.clone();
            tokio::task::spawn_blocking(move || cgroups.apply(&path, &applied))
                .await
                .map_err(|err| ContainerError::Io {
                    id: id.clone(),
                    action: "update resources",
                    path: container.cgroup_path.clone().into(),
                    source: std::io::Error::other(err),
                })?
                .map_err(cgroup_error)?;
        }
        let file = self.runtime_dir(&id).join(RESOURCES_FILE);
        let merged = merge(
            std::fs::read(&file)
                .ok()
                .and_then(|bytes| serde_json::from_slice(&bytes).ok())
                .unwrap_or_default(),
            resources,
        );
        write_json(&id, &file, &merged)
    }

    /// Has the monitor of running container `id` reopen its log file.
    pub async fn reopen_log(&self, id: &str) -> Result<(), ContainerError> {
        let container = self.require(id)?;
        if container.state != ContainerState::Running {
            return Err(ContainerError::WrongState {
                id: container.id.clone(),
                state: state_name(container.state),
                reason: "only a running container's log can be reopened",
            });
        }
        self.monitor_request(&container.id, Request::ReopenLog)
            .await
    }
}

/// `old` with every field `new` sets replaced.
fn merge(mut old: Resources, new: Resources) -> Resources {
    macro_rules! take {
        ($($field:ident),*) => {$(
            if new.$field.is_some() {
                old.$field = new.$field;
            }
        )*};
    }
    take!(
        cpu_shares,
        cpu_quota,
        cpu_period,
        memory_limit,
        memory_swap_limit,
        pids_limit,
        cpuset_cpus,
        cpuset_mems
    );
    if !new.hugepage_limits.is_empty() {
        old.hugepage_limits = new.hugepage_limits;
    }
    old.unified.extend(new.unified);
    old
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_keeps_what_it_does_not_set() {
        let old = Resources {
            cpu_shares: Some(512),
            memory_limit: Some(1 << 30),
            ..Default::default()
        };
        let new = Resources {
            memory_limit: Some(1 << 29),
            ..Default::default()
        };
        let merged = merge(old, new);
        assert_eq!(merged.cpu_shares, Some(512));
        assert_eq!(merged.memory_limit, Some(1 << 29));
    }
}
