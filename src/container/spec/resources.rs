//! cgroup limits (`linux.resources`) and `oom_score_adj`.
//!
//! CRI's convention holds: `None` and 0 leave a setting unset, -1 (quota, memory, swap, pids)
//! means unlimited. Hugepage limits are the exception: kubelet sends 0 for the page sizes a
//! container did not request, to deny them, so a 0 there is kept.

use std::collections::HashMap;

use oci_spec::runtime::{
    LinuxCpu, LinuxDeviceCgroup, LinuxHugepageLimit, LinuxMemory, LinuxPids, LinuxResources,
};

use crate::cgroups::Resources;

fn set<T: PartialEq + Default>(value: Option<T>) -> Option<T> {
    value.filter(|value| *value != T::default())
}

fn text(value: &Option<String>) -> Option<String> {
    value.clone().filter(|value| !value.is_empty())
}

/// `linux.resources` from the request's limits and the device rules.
pub(super) fn linux_resources(
    resources: &Resources,
    device_rules: Vec<LinuxDeviceCgroup>,
) -> LinuxResources {
    let mut out = LinuxResources::default();

    let memory_limit = set(resources.memory_limit);
    let swap_limit = set(resources.memory_swap_limit);
    let memory = (memory_limit.is_some() || swap_limit.is_some()).then(|| {
        let mut memory = LinuxMemory::default();
        memory.set_limit(memory_limit).set_swap(swap_limit);
        memory
    });

    let shares = set(resources.cpu_shares);
    let quota = set(resources.cpu_quota);
    let period = set(resources.cpu_period);
    let cpus = text(&resources.cpuset_cpus);
    let mems = text(&resources.cpuset_mems);
    let cpu = (shares.is_some()
        || quota.is_some()
        || period.is_some()
        || cpus.is_some()
        || mems.is_some())
    .then(|| {
        let mut cpu = LinuxCpu::default();
        cpu.set_shares(shares)
            .set_quota(quota)
            .set_period(period)
            .set_cpus(cpus)
            .set_mems(mems);
        cpu
    });

    let pids = set(resources.pids_limit).map(|limit| {
        let mut pids = LinuxPids::default();
        pids.set_limit(limit);
        pids
    });

    let hugepages: Vec<LinuxHugepageLimit> = resources
        .hugepage_limits
        .iter()
        .map(|(page_size, limit)| {
            let mut hugepage = LinuxHugepageLimit::default();
            hugepage
                .set_page_size(page_size.clone())
                .set_limit(i64::try_from(*limit).unwrap_or(i64::MAX));
            hugepage
        })
        .collect();

    let unified: HashMap<String, String> = resources
        .unified
        .iter()
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();

    out.set_devices(Some(device_rules))
        .set_memory(memory)
        .set_cpu(cpu)
        .set_pids(pids)
        .set_block_io(None)
        .set_hugepage_limits((!hugepages.is_empty()).then_some(hugepages))
        .set_network(None)
        .set_rdma(None)
        .set_unified((!unified.is_empty()).then_some(unified));
    out
}

/// The request's `oom_score_adj`, within the kernel's range and never below what the runtime
/// may set (without `CAP_SYS_RESOURCE` it cannot go below its own value, and asking would fail
/// the container rather than just protect it less).
pub(super) fn oom_score_adj(requested: i64, floor: i32) -> i32 {
    let clamped = requested.clamp(-1000, 1000);
    let value = i32::try_from(clamped).unwrap_or(0);
    value.max(floor.clamp(-1000, 1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_and_zero_values_are_left_out() {
        let out = linux_resources(&Resources::default(), Vec::new());
        assert_eq!(out.memory(), &None);
        assert_eq!(out.cpu(), &None);
        assert_eq!(out.pids(), &None);
        assert_eq!(out.hugepage_limits(), &None);
        assert_eq!(out.unified(), &None);
        let zeros = Resources {
            memory_limit: Some(0),
            cpu_shares: Some(0),
            cpuset_cpus: Some(String::new()),
            pids_limit: Some(0),
            ..Resources::default()
        };
        let out = linux_resources(&zeros, Vec::new());
        assert_eq!((out.memory(), out.cpu(), out.pids()), (&None, &None, &None));
    }

    #[test]
    fn limits_are_carried_over() {
        let resources = Resources {
            cpu_shares: Some(512),
            cpu_quota: Some(50_000),
            cpu_period: Some(100_000),
            memory_limit: Some(15 * 1024 * 1024),
            memory_swap_limit: Some(-1),
            pids_limit: Some(100),
            cpuset_cpus: Some("0-1".to_owned()),
            cpuset_mems: Some("0".to_owned()),
            hugepage_limits: vec![("2MB".to_owned(), 0), ("1GB".to_owned(), 1 << 30)],
            unified: [("memory.high".to_owned(), "1G".to_owned())].into(),
        };
        let out = linux_resources(&resources, Vec::new());
        let json = serde_json::to_value(&out).expect("json");
        assert_eq!(
            json["memory"],
            serde_json::json!({"limit": 15728640, "swap": -1})
        );
        assert_eq!(
            json["cpu"],
            serde_json::json!({"shares": 512, "quota": 50000, "period": 100000, "cpus": "0-1", "mems": "0"})
        );
        assert_eq!(json["pids"], serde_json::json!({"limit": 100}));
        assert_eq!(
            json["hugepageLimits"],
            serde_json::json!([{"pageSize": "2MB", "limit": 0}, {"pageSize": "1GB", "limit": 1073741824}])
        );
        assert_eq!(json["unified"], serde_json::json!({"memory.high": "1G"}));
    }

    #[test]
    fn oom_score_adj_is_clamped() {
        assert_eq!(oom_score_adj(1000, -1000), 1000);
        assert_eq!(oom_score_adj(-997, -1000), -997);
        assert_eq!(
            oom_score_adj(-997, -500),
            -500,
            "cannot go below the runtime's own"
        );
        assert_eq!(oom_score_adj(5000, -1000), 1000);
        assert_eq!(oom_score_adj(-5000, -2000), -1000);
        assert_eq!(oom_score_adj(0, 0), 0);
    }
}
