//! `UpdatePodSandboxResources`: new pod-level limits applied to the pod cgroup. CRI calls
//! this best effort: the pod keeps running whatever happens here.

use super::run::pod_limits;
use super::{SandboxError, SandboxService};
use crate::cgroups::{CgroupPath, Resources};

impl SandboxService {
    /// Applies `overhead` + `resources` to the pod `id` names.
    pub async fn update_resources(
        &self,
        id: &str,
        overhead: Option<Resources>,
        resources: Option<Resources>,
    ) -> Result<(), SandboxError> {
        let pod = self.require(id)?;
        let _guard = self.locks.lock(&pod.id).await;
        let Some(limits) = pod_limits(overhead.as_ref(), resources.as_ref()) else {
            return Ok(());
        };
        let cgroup_error = |source| SandboxError::Cgroup {
            id: pod.id.clone(),
            source,
        };
        let path = CgroupPath::parse(&pod.cgroup_path).map_err(cgroup_error)?;
        self.cgroups.apply(&path, &limits).map_err(cgroup_error)?;
        tracing::info!(pod = %pod.id, "pod resources updated");
        Ok(())
    }
}
