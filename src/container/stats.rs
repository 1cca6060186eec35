//! `ContainerStats` and the container part of pod stats: the cgroup's CPU and memory figures
//! and what the container wrote to its writable layer.

use super::{ContainerError, ContainerService};
use crate::cgroups::{CgroupPath, CgroupStats};
use crate::snapshot::FsUsage;
use crate::store::{ContainerRecord, ContainerState, now_ns};

/// One container's usage at one moment.
#[derive(Debug, Clone, Default)]
pub struct ContainerUsage {
    /// When it was read, nanoseconds since the epoch.
    pub timestamp_ns: i64,
    /// cgroup figures (empty for a container whose cgroup is gone).
    pub cgroup: CgroupStats,
    /// CPU use since the previous sample of this container, in nanocores (billionths of a
    /// core); `None` on the first sample.
    pub cpu_nano_cores: Option<u64>,
    /// The writable layer's usage.
    pub writable_layer: FsUsage,
}

impl ContainerService {
    /// The usage of container `id`.
    pub fn stats(
        &self,
        id: &str,
    ) -> Result<(std::sync::Arc<ContainerRecord>, ContainerUsage), ContainerError> {
        let container = self.require(id)?;
        let usage = self.usage_of(&container)?;
        Ok((container, usage))
    }

    /// The usage of `container`.
    pub fn usage_of(&self, container: &ContainerRecord) -> Result<ContainerUsage, ContainerError> {
        let timestamp_ns = now_ns();
        let cgroup = match CgroupPath::parse(&container.cgroup_path) {
            Ok(path) if container.state == ContainerState::Running => self
                .cgroups
                .stats(&path)
                .map_err(|source| ContainerError::Cgroup {
                    id: container.id.clone(),
                    source,
                })?,
            _ => CgroupStats::default(),
        };
        let writable_layer = self
            .snapshots
            .active_usage(&container.id)
            .map_err(|source| ContainerError::Snapshot {
                id: container.id.clone(),
                source,
            })?;
        let cpu_nano_cores = cgroup
            .cpu_usage_ns
            .and_then(|cpu| self.cpu_samples.rate(&container.id, timestamp_ns, cpu));
        Ok(ContainerUsage {
            timestamp_ns,
            cgroup,
            cpu_nano_cores,
            writable_layer,
        })
    }

    /// The usage of every container of `pod_id` (or of all pods), for list stats.
    pub fn list_stats(
        &self,
        matches: impl Fn(&ContainerRecord) -> bool,
    ) -> Vec<(std::sync::Arc<ContainerRecord>, ContainerUsage)> {
        self.store
            .containers
            .list()
            .into_iter()
            .filter(|container| matches(container))
            .filter_map(|container| {
                let usage = self.usage_of(&container).ok()?;
                Some((container, usage))
            })
            .collect()
    }
}

/// The previous CPU sample of each container, to turn cumulative CPU time into a rate.
#[derive(Debug, Default)]
pub(super) struct CpuSamples(std::sync::Mutex<std::collections::HashMap<String, (i64, u64)>>);

impl CpuSamples {
    /// Records `(at_ns, cpu_ns)` for `id` and returns the rate since its previous sample.
    pub(super) fn rate(&self, id: &str, at_ns: i64, cpu_ns: u64) -> Option<u64> {
        let mut samples = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let previous = samples.insert(id.to_owned(), (at_ns, cpu_ns));
        let (then, cpu_then) = previous?;
        let elapsed = u64::try_from(at_ns.checked_sub(then)?)
            .ok()
            .filter(|e| *e > 0)?;
        let used = cpu_ns.checked_sub(cpu_then)?;
        // nanoseconds of CPU per nanosecond of wall time, in billionths.
        u64::try_from(u128::from(used) * 1_000_000_000 / u128::from(elapsed)).ok()
    }

    /// Forgets a removed container.
    pub(super) fn forget(&self, id: &str) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nano_cores_need_two_samples() {
        let samples = CpuSamples::default();
        assert_eq!(samples.rate("c", 1_000_000_000, 0), None);
        // Half a core over one second.
        assert_eq!(
            samples.rate("c", 2_000_000_000, 500_000_000),
            Some(500_000_000)
        );
        assert_eq!(samples.rate("c", 2_000_000_000, 600_000_000), None);
        samples.forget("c");
        assert_eq!(samples.rate("c", 3_000_000_000, 700_000_000), None);
    }
}
