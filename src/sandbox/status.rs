//! `PodSandboxStatus` and `ListPodSandbox`: reads of the pod records.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{SandboxError, SandboxService};
use crate::store::{PodRecord, PodState};

/// A `ListPodSandbox` filter; every given field must match.
#[derive(Debug, Clone, Default)]
pub struct PodFilter {
    /// Full id or prefix.
    pub id: Option<String>,
    /// Wanted state.
    pub state: Option<PodState>,
    /// Labels that must all be present with these values.
    pub labels: BTreeMap<String, String>,
}

impl SandboxService {
    /// The pod `id` names.
    pub fn status(&self, id: &str) -> Result<Arc<PodRecord>, SandboxError> {
        self.require(id)
    }

    /// Pods matching `filter`, newest first.
    pub fn list(&self, filter: &PodFilter) -> Vec<Arc<PodRecord>> {
        let mut pods: Vec<_> = self
            .store
            .pods
            .list()
            .into_iter()
            .filter(|pod| matches(pod, filter))
            .collect();
        pods.sort_by_key(|pod| std::cmp::Reverse(pod.created_at_ns));
        pods
    }
}

fn matches(pod: &PodRecord, filter: &PodFilter) -> bool {
    filter
        .id
        .as_ref()
        .is_none_or(|id| id.is_empty() || pod.id.starts_with(id.as_str()))
        && filter.state.is_none_or(|state| pod.state == state)
        && filter
            .labels
            .iter()
            .all(|(key, value)| pod.labels.get(key) == Some(value))
}
