//! `ContainerStatus` and `ListContainers`: reads of the container records, brought up to date
//! first when a monitor has already exited.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::create::RESOURCES_FILE;
use super::{ContainerError, ContainerService};
use crate::cgroups::Resources;
use crate::monitor::protocol::CONFIG_FILE;
use crate::store::{ContainerRecord, ContainerState};

/// A `ListContainers` filter; every given field must match.
#[derive(Debug, Clone, Default)]
pub struct ContainerFilter {
    /// Full id or prefix.
    pub id: Option<String>,
    /// Wanted state.
    pub state: Option<ContainerState>,
    /// Full pod id or prefix.
    pub pod_id: Option<String>,
    /// Labels that must all be present with these values.
    pub labels: BTreeMap<String, String>,
}

/// What `ContainerStatus` shows beyond the record.
#[derive(Debug, Clone)]
pub struct ContainerView {
    /// The record.
    pub record: Arc<ContainerRecord>,
    /// The cgroup resources last applied.
    pub resources: Option<Resources>,
    /// The OCI spec, for verbose status.
    pub spec_json: Option<String>,
}

impl ContainerService {
    /// The container `id` names, with its resources (and, when `verbose`, its spec).
    pub async fn status(&self, id: &str, verbose: bool) -> Result<ContainerView, ContainerError> {
        let mut record = self.require(id)?;
        if self.exit_pending(&record) {
            self.record_exit(&record.id).await?;
            record = self.require(&record.id)?;
        }
        let dir = self.runtime_dir(&record.id);
        let resources = self.applied_resources(&record.id);
        let spec_json = verbose
            .then(|| std::fs::read_to_string(dir.join(CONFIG_FILE)).ok())
            .flatten();
        Ok(ContainerView {
            record,
            resources,
            spec_json,
        })
    }

    /// The cgroup resources last applied to container `id`, when its runtime dir says.
    pub(super) fn applied_resources(&self, id: &str) -> Option<Resources> {
        std::fs::read(self.runtime_dir(id).join(RESOURCES_FILE))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
    }

    /// Containers matching `filter`, newest first.
    pub async fn list(&self, filter: &ContainerFilter) -> Vec<Arc<ContainerRecord>> {
        let candidates: Vec<_> = self
            .store
            .containers
            .list()
            .into_iter()
            .filter(|container| matches(container, filter, false))
            .collect();
        let mut containers = Vec::with_capacity(candidates.len());
        for container in candidates {
            let container = if self.exit_pending(&container) {
                let _ = self.record_exit(&container.id).await;
                self.store
                    .containers
                    .get(&container.id)
                    .unwrap_or(container)
            } else {
                container
            };
            if matches(&container, filter, true) {
                containers.push(container);
            }
        }
        containers.sort_by_key(|container| std::cmp::Reverse(container.created_at_ns));
        containers
    }
}

/// Whether `container` passes `filter`; the state is only checked when `check_state` (it may
/// change while the list is brought up to date).
fn matches(container: &ContainerRecord, filter: &ContainerFilter, check_state: bool) -> bool {
    let prefix = |wanted: &Option<String>, actual: &str| {
        wanted
            .as_ref()
            .is_none_or(|wanted| wanted.is_empty() || actual.starts_with(wanted.as_str()))
    };
    prefix(&filter.id, &container.id)
        && prefix(&filter.pod_id, &container.pod_id)
        && (!check_state || filter.state.is_none_or(|state| container.state == state))
        && filter
            .labels
            .iter()
            .all(|(key, value)| container.labels.get(key) == Some(value))
}
