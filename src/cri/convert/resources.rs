//! `LinuxContainerResources` → cgroup resources. CRI uses 0 for "not set".

use crate::cgroups::Resources;
use crate::proto;

/// The cgroup resources a CRI message asks for; zero fields are left unset.
pub fn from_proto(resources: &proto::LinuxContainerResources) -> Resources {
    let positive = |value: i64| (value > 0).then_some(value);
    Resources {
        cpu_shares: u64::try_from(resources.cpu_shares).ok().filter(|v| *v > 0),
        cpu_quota: (resources.cpu_quota != 0).then_some(resources.cpu_quota),
        cpu_period: u64::try_from(resources.cpu_period).ok().filter(|v| *v > 0),
        memory_limit: positive(resources.memory_limit_in_bytes),
        memory_swap_limit: (resources.memory_swap_limit_in_bytes != 0)
            .then_some(resources.memory_swap_limit_in_bytes),
        pids_limit: None,
        cpuset_cpus: (!resources.cpuset_cpus.is_empty()).then(|| resources.cpuset_cpus.clone()),
        cpuset_mems: (!resources.cpuset_mems.is_empty()).then(|| resources.cpuset_mems.clone()),
        hugepage_limits: resources
            .hugepage_limits
            .iter()
            .map(|limit| (limit.page_size.clone(), limit.limit))
            .collect(),
        unified: resources
            .unified
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_means_unset() {
        let resources = from_proto(&proto::LinuxContainerResources::default());
        assert_eq!(resources, Resources::default());
        let resources = from_proto(&proto::LinuxContainerResources {
            cpu_shares: 512,
            cpu_quota: 50_000,
            cpu_period: 100_000,
            memory_limit_in_bytes: 64 << 20,
            ..Default::default()
        });
        assert_eq!(resources.cpu_shares, Some(512));
        assert_eq!(resources.cpu_quota, Some(50_000));
        assert_eq!(resources.memory_limit, Some(64 << 20));
    }
}
