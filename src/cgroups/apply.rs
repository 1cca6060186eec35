//! Writing resource limits into a cgroup, for v1 and v2 file names and units.
//!
//! Values are validated and normalised first (so a bad field fails before anything is
//! written), then written controller by controller. `None` and `0` leave a setting unchanged,
//! as in CRI; `-1` means unlimited for quota, memory, swap and pids.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::error::CgroupError;
use super::interface;
use super::{CgroupManager, CgroupPath};

/// Lowest and highest v1 `cpu.shares` the kernel honours; it clamps anything else.
const MIN_SHARES: u64 = 2;
const MAX_SHARES: u64 = 262_144;
/// The kernel's CFS bandwidth bounds, in microseconds.
const MIN_CFS_US: u64 = 1_000;
const MAX_CFS_PERIOD_US: u64 = 1_000_000;

/// Resource limits for a pod or container cgroup.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    /// Relative CPU weight in v1 shares (2..=262144); converted to `cpu.weight` on v2.
    pub cpu_shares: Option<u64>,
    /// CFS quota in microseconds per period; `-1` removes the quota.
    pub cpu_quota: Option<i64>,
    /// CFS period in microseconds (1000..=1000000).
    pub cpu_period: Option<u64>,
    /// Memory limit in bytes; `-1` removes it.
    pub memory_limit: Option<i64>,
    /// Memory plus swap limit in bytes (v1 `memsw` semantics); `-1` removes it.
    pub memory_swap_limit: Option<i64>,
    /// Maximum number of tasks; `-1` removes the limit.
    pub pids_limit: Option<i64>,
    /// CPUs allowed, in the kernel's list format (`0-3,6`).
    pub cpuset_cpus: Option<String>,
    /// Memory nodes allowed, in the kernel's list format.
    pub cpuset_mems: Option<String>,
    /// HugeTLB limits in bytes by page size (`2MB`, `1GB`). Unlike the other fields a `0` here
    /// is written: kubelet sends `0` for page sizes a container did not request, to deny them.
    pub hugepage_limits: Vec<(String, u64)>,
    /// Raw v2 interface files and values (`memory.high` → `1G`); refused on v1.
    pub unified: BTreeMap<String, String>,
}

/// A validated limit: a number or "no limit".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Limit {
    Max,
    Value(u64),
}

impl Limit {
    /// The v1 spelling: `-1` for no limit.
    fn v1(self) -> String {
        match self {
            Self::Max => "-1".to_owned(),
            Self::Value(value) => value.to_string(),
        }
    }

    /// The v2 (and v1 `pids.max`) spelling: `max` for no limit.
    fn v2(self) -> String {
        match self {
            Self::Max => "max".to_owned(),
            Self::Value(value) => value.to_string(),
        }
    }
}

/// [`Resources`] after validation, with "leave unchanged" folded into `None`.
#[derive(Debug, Default)]
pub(super) struct Plan {
    pub(super) shares: Option<u64>,
    pub(super) quota: Option<Limit>,
    pub(super) period: Option<u64>,
    pub(super) memory: Option<Limit>,
    memory_swap: Option<Limit>,
    pub(super) pids: Option<Limit>,
    cpus: Option<String>,
    mems: Option<String>,
    hugepages: Vec<(String, u64)>,
    unified: Vec<(String, String)>,
}

/// `cpu.shares` → `cpu.weight`, the conversion runc, crun and kubelet agree on:
/// 2..=262144 maps linearly onto 1..=10000.
pub fn shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(MIN_SHARES, MAX_SHARES);
    1 + ((shares - MIN_SHARES) * 9999) / (MAX_SHARES - MIN_SHARES)
}

fn invalid(controller: &str, file: &str, value: impl ToString, reason: &str) -> CgroupError {
    CgroupError::InvalidValue {
        controller: controller.to_owned(),
        file: file.to_owned(),
        value: value.to_string(),
        reason: reason.to_owned(),
    }
}

/// `None`/`0` → unchanged, `-1` → no limit, other negatives refused.
fn limit(value: Option<i64>, controller: &str, field: &str) -> Result<Option<Limit>, CgroupError> {
    match value {
        None | Some(0) => Ok(None),
        Some(-1) => Ok(Some(Limit::Max)),
        Some(v) if v < 0 => Err(invalid(
            controller,
            field,
            v,
            "must be positive, or -1 for no limit",
        )),
        Some(v) => Ok(Some(Limit::Value(v.unsigned_abs()))),
    }
}

impl Plan {
    /// Validates `resources`; nothing is written.
    pub(super) fn new(resources: &Resources) -> Result<Self, CgroupError> {
        let quota = limit(resources.cpu_quota, "cpu", "cpu_quota")?;
        if let Some(Limit::Value(quota)) = quota
            && quota < MIN_CFS_US
        {
            return Err(invalid(
                "cpu",
                "cpu_quota",
                quota,
                "the kernel's smallest CFS quota is 1000us",
            ));
        }
        let period = resources.cpu_period.filter(|p| *p != 0);
        if let Some(period) = period
            && !(MIN_CFS_US..=MAX_CFS_PERIOD_US).contains(&period)
        {
            return Err(invalid(
                "cpu",
                "cpu_period",
                period,
                "the CFS period must be 1000..=1000000us",
            ));
        }
        let memory = limit(resources.memory_limit, "memory", "memory_limit")?;
        let memory_swap = limit(resources.memory_swap_limit, "memory", "memory_swap_limit")?;
        match (memory, memory_swap) {
            (Some(Limit::Value(mem)), Some(Limit::Value(swap))) if swap < mem => {
                return Err(invalid(
                    "memory",
                    "memory_swap_limit",
                    swap,
                    "memory+swap limit must be at least the memory limit",
                ));
            }
            (Some(Limit::Max), Some(Limit::Value(swap))) => {
                return Err(invalid(
                    "memory",
                    "memory_swap_limit",
                    swap,
                    "a memory+swap limit cannot go with an unlimited memory limit",
                ));
            }
            _ => {}
        }
        let pids = limit(resources.pids_limit, "pids", "pids_limit")?;
        let cpus = cpu_list(resources.cpuset_cpus.as_deref(), "cpuset.cpus")?;
        let mems = cpu_list(resources.cpuset_mems.as_deref(), "cpuset.mems")?;
        for (size, _) in &resources.hugepage_limits {
            if !is_page_size(size) {
                return Err(invalid(
                    "hugetlb",
                    "hugepage_limits",
                    size,
                    "page size must be a number and KB, MB, GB or TB (`2MB`)",
                ));
            }
        }
        let mut unified = Vec::new();
        for (key, value) in &resources.unified {
            if !is_unified_key(key) {
                return Err(invalid(
                    "unified",
                    key,
                    value,
                    "not a controller interface file (`<controller>.<name>`, not `cgroup.*`)",
                ));
            }
            if value.contains('\0') {
                return Err(invalid("unified", key, value, "contains a NUL byte"));
            }
            unified.push((key.clone(), value.clone()));
        }
        Ok(Self {
            shares: resources.cpu_shares.filter(|s| *s != 0),
            quota,
            period,
            memory,
            memory_swap,
            pids,
            cpus,
            mems,
            hugepages: resources.hugepage_limits.clone(),
            unified,
        })
    }
}

/// A cpuset list (`0-3,6`), trimmed; empty means unchanged.
fn cpu_list(value: Option<&str>, file: &str) -> Result<Option<String>, CgroupError> {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let valid = value.split(',').all(|item| {
        let (low, high) = item.split_once('-').unwrap_or((item, item));
        match (low.parse::<u32>(), high.parse::<u32>()) {
            (Ok(low), Ok(high)) => low <= high,
            _ => false,
        }
    });
    if !valid {
        return Err(invalid(
            "cpuset",
            file,
            value,
            "must be a list of numbers and ranges such as `0-3,6`",
        ));
    }
    Ok(Some(value.to_owned()))
}

fn is_page_size(size: &str) -> bool {
    let digits = size.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &size[digits.len()..];
    !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && matches!(unit, "KB" | "MB" | "GB" | "TB")
}

/// `<controller>.<name>` with a lowercase controller, never a core `cgroup.*` file (writing
/// `cgroup.procs` or `cgroup.subtree_control` is not a resource setting).
fn is_unified_key(key: &str) -> bool {
    let Some((controller, name)) = key.split_once('.') else {
        return false;
    };
    controller != "cgroup"
        && !controller.is_empty()
        && !name.is_empty()
        && controller
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b == b'_')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
}

/// Whether v1 must raise `memory.memsw.limit_in_bytes` before `memory.limit_in_bytes`: the
/// kernel keeps memsw ≥ memory at every step, so a rising limit goes swap first and a falling
/// one memory first.
fn swap_first(current_memory: Option<u64>, new_memory: Limit) -> bool {
    match (new_memory, current_memory) {
        (Limit::Max, _) => true,
        (Limit::Value(new), Some(current)) => new > current,
        (Limit::Value(_), None) => false,
    }
}

impl CgroupManager {
    /// Applies `resources` to the existing cgroup `path`.
    ///
    /// Everything is validated before the first write; a kernel refusal stops at that file
    /// and names it (earlier writes stay, as with runc).
    pub fn apply(&self, path: &CgroupPath, resources: &Resources) -> Result<(), CgroupError> {
        let plan = Plan::new(resources)?;
        if self.is_v2() {
            self.apply_v2(path, &plan)
        } else {
            if !plan.unified.is_empty() {
                return Err(invalid(
                    "unified",
                    "unified",
                    plan.unified
                        .iter()
                        .map(|(k, _)| k.as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                    "raw cgroup v2 settings cannot be applied on a cgroup v1 host",
                ));
            }
            self.apply_v1(path, &plan)
        }
    }

    /// The dir of `path` for `controller`, or an error naming the missing controller.
    fn require_dir(&self, controller: &str, path: &CgroupPath) -> Result<PathBuf, CgroupError> {
        self.controller_dir(controller, path)
            .ok_or_else(|| CgroupError::Unsupported {
                path: path.to_string(),
                reason: format!("no cgroup hierarchy carries the {controller} controller"),
            })
    }

    fn apply_v1(&self, path: &CgroupPath, plan: &Plan) -> Result<(), CgroupError> {
        if plan.cpus.is_some() || plan.mems.is_some() {
            let dir = self.require_dir("cpuset", path)?;
            if let Some(cpus) = &plan.cpus {
                interface::write(&dir.join("cpuset.cpus"), "cpuset", cpus)?;
            }
            if let Some(mems) = &plan.mems {
                interface::write(&dir.join("cpuset.mems"), "cpuset", mems)?;
            }
        }
        if plan.shares.is_some() || plan.quota.is_some() || plan.period.is_some() {
            let dir = self.require_dir("cpu", path)?;
            if let Some(shares) = plan.shares {
                interface::write(&dir.join("cpu.shares"), "cpu", &shares.to_string())?;
            }
            let quota_file = dir.join("cpu.cfs_quota_us");
            let period_file = dir.join("cpu.cfs_period_us");
            match (plan.period, plan.quota) {
                (Some(period), Some(quota)) => {
                    // A new period can break the parent's quota/period bound until the quota
                    // follows (EINVAL); then the other order works.
                    let period = period.to_string();
                    match interface::write(&period_file, "cpu", &period) {
                        Err(CgroupError::Write { source, .. })
                            if source.raw_os_error() == Some(libc::EINVAL) =>
                        {
                            interface::write(&quota_file, "cpu", &quota.v1())?;
                            interface::write(&period_file, "cpu", &period)?;
                        }
                        other => {
                            other?;
                            interface::write(&quota_file, "cpu", &quota.v1())?;
                        }
                    }
                }
                (Some(period), None) => {
                    interface::write(&period_file, "cpu", &period.to_string())?;
                }
                (None, Some(quota)) => interface::write(&quota_file, "cpu", &quota.v1())?,
                (None, None) => {}
            }
        }
        if plan.memory.is_some() || plan.memory_swap.is_some() {
            self.apply_v1_memory(path, plan)?;
        }
        if let Some(pids) = plan.pids {
            let dir = self.require_dir("pids", path)?;
            interface::write(&dir.join("pids.max"), "pids", &pids.v2())?;
        }
        for (size, limit) in &plan.hugepages {
            let file = self
                .controller_dir("hugetlb", path)
                .map(|dir| dir.join(format!("hugetlb.{size}.limit_in_bytes")));
            write_hugepage(path, file, size, *limit)?;
        }
        Ok(())
    }

    fn apply_v1_memory(&self, path: &CgroupPath, plan: &Plan) -> Result<(), CgroupError> {
        let dir = self.require_dir("memory", path)?;
        let memory_file = dir.join("memory.limit_in_bytes");
        let swap_file = dir.join("memory.memsw.limit_in_bytes");
        // Without swap accounting there is no memsw file; kubelet then sends swap == memory,
        // which the memory limit alone already enforces.
        let swap = plan.memory_swap.filter(|_| {
            let present = swap_file.exists();
            if !present {
                tracing::debug!(cgroup = %path, "no swap accounting; memory+swap limit skipped");
            }
            present
        });
        let write_memory = |limit: Limit| interface::write(&memory_file, "memory", &limit.v1());
        let write_swap = |limit: Limit| interface::write(&swap_file, "memory", &limit.v1());
        match (plan.memory, swap) {
            (Some(memory), Some(swap)) => {
                if swap_first(interface::read_u64(&memory_file)?, memory) {
                    write_swap(swap)?;
                    write_memory(memory)?;
                } else {
                    write_memory(memory)?;
                    write_swap(swap)?;
                }
            }
            (Some(memory), None) => write_memory(memory)?,
            (None, Some(swap)) => write_swap(swap)?,
            (None, None) => {}
        }
        Ok(())
    }

    fn apply_v2(&self, path: &CgroupPath, plan: &Plan) -> Result<(), CgroupError> {
        let dir = self
            .dirs(path)
            .into_iter()
            .next()
            .ok_or_else(|| CgroupError::NotFound {
                path: path.to_string(),
            })?;
        let file = |name: &str| dir.join(name);
        if let Some(cpus) = &plan.cpus {
            interface::write(&file("cpuset.cpus"), "cpuset", cpus)?;
        }
        if let Some(mems) = &plan.mems {
            interface::write(&file("cpuset.mems"), "cpuset", mems)?;
        }
        if let Some(shares) = plan.shares {
            let weight = shares_to_weight(shares).to_string();
            interface::write(&file("cpu.weight"), "cpu", &weight)?;
        }
        if plan.quota.is_some() || plan.period.is_some() {
            let cpu_max = file("cpu.max");
            let quota = match plan.quota {
                Some(quota) => quota.v2(),
                // Only the period changes: keep the quota the cgroup has.
                None => interface::read_optional(&cpu_max)?
                    .and_then(|text| text.split_whitespace().next().map(str::to_owned))
                    .unwrap_or_else(|| "max".to_owned()),
            };
            let value = match plan.period {
                Some(period) => format!("{quota} {period}"),
                None => quota,
            };
            interface::write(&cpu_max, "cpu", &value)?;
        }
        if let Some(memory) = plan.memory {
            interface::write(&file("memory.max"), "memory", &memory.v2())?;
        }
        if let Some(swap) = plan.memory_swap {
            // v2 limits swap alone, so memsw - memory; that needs the memory limit too.
            let value = match (swap, plan.memory) {
                (Limit::Max, _) => "max".to_owned(),
                (Limit::Value(total), Some(Limit::Value(memory))) => (total - memory).to_string(),
                (Limit::Value(total), _) => {
                    return Err(invalid(
                        "memory",
                        "memory_swap_limit",
                        total,
                        "on cgroup v2 a memory+swap limit needs a memory limit in the same request",
                    ));
                }
            };
            let swap_file = file("memory.swap.max");
            if swap_file.exists() {
                interface::write(&swap_file, "memory", &value)?;
            } else {
                tracing::debug!(cgroup = %path, "no memory.swap.max; swap limit skipped");
            }
        }
        if let Some(pids) = plan.pids {
            interface::write(&file("pids.max"), "pids", &pids.v2())?;
        }
        for (size, limit) in &plan.hugepages {
            write_hugepage(
                path,
                Some(file(&format!("hugetlb.{size}.max"))),
                size,
                *limit,
            )?;
        }
        for (key, value) in &plan.unified {
            let target = file(key);
            if !target.exists() {
                return Err(invalid(
                    "unified",
                    key,
                    value,
                    "no such interface file (controller not enabled for this cgroup?)",
                ));
            }
            let controller = key.split('.').next().unwrap_or("unified");
            interface::write(&target, controller, value)?;
        }
        Ok(())
    }
}

/// Writes one hugetlb limit. A missing controller or page size cannot deny hugepages, which is
/// fine for the `0` kubelet sends for sizes nobody asked for, but not for a real limit.
fn write_hugepage(
    path: &CgroupPath,
    file: Option<PathBuf>,
    size: &str,
    limit: u64,
) -> Result<(), CgroupError> {
    match file.filter(|file| file.exists()) {
        Some(file) => interface::write(&file, "hugetlb", &limit.to_string()),
        None if limit == 0 => Ok(()),
        None => Err(CgroupError::Unsupported {
            path: path.to_string(),
            reason: format!("no hugetlb controller or no {size} huge pages on this node"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::fixture::{FakeHost, path};
    use crate::error_kind::ErrorKind;

    /// What a fresh v1 memory cgroup reports as its limit.
    const UNLIMITED: &str = "9223372036854771712\n";

    const V1_FILES: [&str; 12] = [
        "cpu.shares",
        "cpu.cfs_quota_us",
        "cpu.cfs_period_us",
        "memory.limit_in_bytes",
        "memory.memsw.limit_in_bytes",
        "pids.max",
        "cpuset.cpus",
        "cpuset.mems",
        "hugetlb.2MB.limit_in_bytes",
        "hugetlb.1GB.limit_in_bytes",
        "cpuacct.usage",
        "memory.stat",
    ];

    const V2_FILES: [&str; 10] = [
        "cpu.weight",
        "cpu.max",
        "memory.max",
        "memory.swap.max",
        "memory.high",
        "pids.max",
        "cpuset.cpus",
        "cpuset.mems",
        "hugetlb.2MB.max",
        "io.weight",
    ];

    fn full() -> Resources {
        Resources {
            cpu_shares: Some(512),
            cpu_quota: Some(50_000),
            cpu_period: Some(100_000),
            memory_limit: Some(64 << 20),
            memory_swap_limit: Some(96 << 20),
            pids_limit: Some(100),
            cpuset_cpus: Some(" 0-1 ".to_owned()),
            cpuset_mems: Some("0".to_owned()),
            hugepage_limits: vec![("2MB".to_owned(), 4 << 20), ("1GB".to_owned(), 0)],
            unified: BTreeMap::new(),
        }
    }

    #[test]
    fn shares_convert_to_weight_like_runc() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        // Out-of-range shares are clamped first, as the v1 kernel does.
        assert_eq!(shares_to_weight(0), 1);
        assert_eq!(shares_to_weight(1_000_000), 10_000);
    }

    #[test]
    fn v1_files_get_v1_values() {
        let host = FakeHost::v1();
        host.make_cgroup("pod/ctr", &V1_FILES);
        host.write("memory/pod/ctr/memory.limit_in_bytes", UNLIMITED);
        host.manager()
            .apply(&path("/pod/ctr"), &full())
            .expect("apply");
        assert_eq!(host.read("cpu,cpuacct/pod/ctr/cpu.shares"), "512");
        assert_eq!(host.read("cpu,cpuacct/pod/ctr/cpu.cfs_quota_us"), "50000");
        assert_eq!(host.read("cpu,cpuacct/pod/ctr/cpu.cfs_period_us"), "100000");
        assert_eq!(
            host.read("memory/pod/ctr/memory.limit_in_bytes"),
            (64u64 << 20).to_string()
        );
        assert_eq!(
            host.read("memory/pod/ctr/memory.memsw.limit_in_bytes"),
            (96u64 << 20).to_string()
        );
        assert_eq!(host.read("pids/pod/ctr/pids.max"), "100");
        assert_eq!(host.read("cpuset/pod/ctr/cpuset.cpus"), "0-1");
        assert_eq!(host.read("cpuset/pod/ctr/cpuset.mems"), "0");
        assert_eq!(
            host.read("hugetlb/pod/ctr/hugetlb.2MB.limit_in_bytes"),
            (4u64 << 20).to_string()
        );
        assert_eq!(host.read("hugetlb/pod/ctr/hugetlb.1GB.limit_in_bytes"), "0");
    }

    #[test]
    fn v1_unlimited_is_minus_one_and_pids_max() {
        let host = FakeHost::v1();
        host.make_cgroup("p", &V1_FILES);
        host.write("memory/p/memory.limit_in_bytes", UNLIMITED);
        let resources = Resources {
            cpu_quota: Some(-1),
            memory_limit: Some(-1),
            memory_swap_limit: Some(-1),
            pids_limit: Some(-1),
            ..Resources::default()
        };
        host.manager()
            .apply(&path("/p"), &resources)
            .expect("apply");
        assert_eq!(host.read("cpu,cpuacct/p/cpu.cfs_quota_us"), "-1");
        assert_eq!(host.read("memory/p/memory.limit_in_bytes"), "-1");
        assert_eq!(host.read("memory/p/memory.memsw.limit_in_bytes"), "-1");
        assert_eq!(host.read("pids/p/pids.max"), "max");
    }

    #[test]
    fn zero_and_none_leave_files_alone() {
        let host = FakeHost::v1();
        host.make_cgroup("p", &V1_FILES);
        host.write("cpu,cpuacct/p/cpu.shares", "1024");
        host.write("memory/p/memory.limit_in_bytes", "777");
        let resources = Resources {
            cpu_shares: Some(0),
            cpu_quota: Some(0),
            cpu_period: Some(0),
            memory_limit: Some(0),
            memory_swap_limit: None,
            pids_limit: Some(0),
            cpuset_cpus: Some(String::new()),
            ..Resources::default()
        };
        host.manager()
            .apply(&path("/p"), &resources)
            .expect("apply");
        assert_eq!(host.read("cpu,cpuacct/p/cpu.shares"), "1024");
        assert_eq!(host.read("memory/p/memory.limit_in_bytes"), "777");
        assert_eq!(host.read("cpu,cpuacct/p/cpu.cfs_quota_us"), "");
        assert_eq!(host.read("pids/p/pids.max"), "");
        assert_eq!(host.read("cpuset/p/cpuset.cpus"), "");
    }

    #[test]
    fn v1_without_swap_accounting_skips_memsw() {
        let host = FakeHost::v1();
        host.make_cgroup("p", &["memory.limit_in_bytes"]);
        let resources = Resources {
            memory_limit: Some(1 << 20),
            memory_swap_limit: Some(1 << 20),
            ..Resources::default()
        };
        host.manager()
            .apply(&path("/p"), &resources)
            .expect("apply");
        assert_eq!(host.read("memory/p/memory.limit_in_bytes"), "1048576");
        assert!(
            !host
                .root
                .join("memory/p/memory.memsw.limit_in_bytes")
                .exists()
        );
    }

    #[test]
    fn v1_memory_order_raises_swap_first_only_when_growing() {
        assert!(swap_first(Some(100), Limit::Value(200)));
        assert!(swap_first(Some(100), Limit::Max));
        assert!(!swap_first(Some(200), Limit::Value(100)));
        assert!(!swap_first(Some(100), Limit::Value(100)));
        // The kernel's "unlimited" reads as a huge number: any finite limit is a decrease.
        assert!(!swap_first(
            Some(9_223_372_036_854_771_712),
            Limit::Value(1 << 30)
        ));
    }

    #[test]
    fn v1_refuses_unified_keys() {
        let host = FakeHost::v1();
        host.make_cgroup("p", &V1_FILES);
        let resources = Resources {
            unified: BTreeMap::from([("memory.high".to_owned(), "1G".to_owned())]),
            ..Resources::default()
        };
        let err = host
            .manager()
            .apply(&path("/p"), &resources)
            .expect_err("v1");
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        assert!(err.to_string().contains("memory.high"), "{err}");
    }

    #[test]
    fn v1_missing_hugetlb_is_fine_for_zero_not_for_a_limit() {
        let host = FakeHost::v1();
        host.make_cgroup("p", &["memory.limit_in_bytes"]);
        let zero = Resources {
            hugepage_limits: vec![("2MB".to_owned(), 0)],
            ..Resources::default()
        };
        host.manager().apply(&path("/p"), &zero).expect("zero");
        let some = Resources {
            hugepage_limits: vec![("2MB".to_owned(), 2 << 20)],
            ..Resources::default()
        };
        let err = host.manager().apply(&path("/p"), &some).expect_err("limit");
        assert_eq!(err.kind(), ErrorKind::Unimplemented);
    }

    #[test]
    fn v2_files_get_v2_values() {
        let host = FakeHost::v2("cpu memory pids cpuset hugetlb io");
        host.make_cgroup("pod/ctr", &V2_FILES);
        let mut resources = full();
        resources.hugepage_limits.truncate(1);
        resources.unified = BTreeMap::from([("memory.high".to_owned(), "50331648".to_owned())]);
        host.manager()
            .apply(&path("/pod/ctr"), &resources)
            .expect("apply");
        assert_eq!(host.read("pod/ctr/cpu.weight"), "20");
        assert_eq!(host.read("pod/ctr/cpu.max"), "50000 100000");
        assert_eq!(host.read("pod/ctr/memory.max"), (64u64 << 20).to_string());
        assert_eq!(
            host.read("pod/ctr/memory.swap.max"),
            (32u64 << 20).to_string()
        );
        assert_eq!(host.read("pod/ctr/pids.max"), "100");
        assert_eq!(host.read("pod/ctr/cpuset.cpus"), "0-1");
        assert_eq!(host.read("pod/ctr/cpuset.mems"), "0");
        assert_eq!(
            host.read("pod/ctr/hugetlb.2MB.max"),
            (4u64 << 20).to_string()
        );
        assert_eq!(host.read("pod/ctr/memory.high"), "50331648");
    }

    #[test]
    fn v2_unlimited_is_max() {
        let host = FakeHost::v2("cpu memory pids");
        host.make_cgroup("p", &V2_FILES);
        let resources = Resources {
            cpu_quota: Some(-1),
            cpu_period: Some(100_000),
            memory_limit: Some(-1),
            memory_swap_limit: Some(-1),
            pids_limit: Some(-1),
            ..Resources::default()
        };
        host.manager()
            .apply(&path("/p"), &resources)
            .expect("apply");
        assert_eq!(host.read("p/cpu.max"), "max 100000");
        assert_eq!(host.read("p/memory.max"), "max");
        assert_eq!(host.read("p/memory.swap.max"), "max");
        assert_eq!(host.read("p/pids.max"), "max");
    }

    #[test]
    fn v2_period_alone_keeps_the_current_quota() {
        let host = FakeHost::v2("cpu");
        host.make_cgroup("p", &V2_FILES);
        host.write("p/cpu.max", "25000 100000\n");
        let resources = Resources {
            cpu_period: Some(50_000),
            ..Resources::default()
        };
        host.manager()
            .apply(&path("/p"), &resources)
            .expect("apply");
        assert_eq!(host.read("p/cpu.max"), "25000 50000");
        let resources = Resources {
            cpu_quota: Some(10_000),
            ..Resources::default()
        };
        host.manager()
            .apply(&path("/p"), &resources)
            .expect("apply");
        assert_eq!(host.read("p/cpu.max"), "10000");
    }

    #[test]
    fn v2_swap_needs_memory_in_the_same_request() {
        let host = FakeHost::v2("memory");
        host.make_cgroup("p", &V2_FILES);
        let resources = Resources {
            memory_swap_limit: Some(1 << 30),
            ..Resources::default()
        };
        let err = host
            .manager()
            .apply(&path("/p"), &resources)
            .expect_err("swap alone");
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    }

    #[test]
    fn v2_unified_keys_are_checked() {
        let host = FakeHost::v2("memory");
        host.make_cgroup("p", &V2_FILES);
        for key in [
            "cgroup.procs",
            "cgroup.subtree_control",
            "../x.y",
            "memory",
            "Memory.high",
            "memory.",
            ".high",
        ] {
            let resources = Resources {
                unified: BTreeMap::from([(key.to_owned(), "1".to_owned())]),
                ..Resources::default()
            };
            let err = host
                .manager()
                .apply(&path("/p"), &resources)
                .expect_err(key);
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{key}");
        }
        let absent = Resources {
            unified: BTreeMap::from([("memory.oom.group".to_owned(), "1".to_owned())]),
            ..Resources::default()
        };
        let err = host
            .manager()
            .apply(&path("/p"), &absent)
            .expect_err("no such file");
        assert!(err.to_string().contains("no such interface file"), "{err}");
    }

    #[test]
    fn bad_values_are_refused_before_any_write() {
        let host = FakeHost::v1();
        host.make_cgroup("p", &V1_FILES);
        let cases = [
            Resources {
                memory_limit: Some(-2),
                ..Resources::default()
            },
            Resources {
                memory_swap_limit: Some(-5),
                ..Resources::default()
            },
            Resources {
                memory_limit: Some(2 << 20),
                memory_swap_limit: Some(1 << 20),
                ..Resources::default()
            },
            Resources {
                memory_limit: Some(-1),
                memory_swap_limit: Some(1 << 20),
                ..Resources::default()
            },
            Resources {
                cpu_quota: Some(999),
                ..Resources::default()
            },
            Resources {
                cpu_quota: Some(-7),
                ..Resources::default()
            },
            Resources {
                cpu_period: Some(999),
                ..Resources::default()
            },
            Resources {
                cpu_period: Some(1_000_001),
                ..Resources::default()
            },
            Resources {
                pids_limit: Some(-3),
                ..Resources::default()
            },
            Resources {
                cpuset_cpus: Some("0-".to_owned()),
                ..Resources::default()
            },
            Resources {
                cpuset_mems: Some("3-1".to_owned()),
                ..Resources::default()
            },
            Resources {
                hugepage_limits: vec![("2M/../x".to_owned(), 1)],
                ..Resources::default()
            },
        ];
        for (index, resources) in cases.iter().enumerate() {
            let mut with_shares = resources.clone();
            with_shares.cpu_shares = Some(4);
            let err = host
                .manager()
                .apply(&path("/p"), &with_shares)
                .expect_err(&format!("case {index}"));
            assert_eq!(
                err.kind(),
                ErrorKind::InvalidArgument,
                "case {index}: {err}"
            );
            assert_eq!(host.read("cpu,cpuacct/p/cpu.shares"), "", "case {index}");
        }
    }

    #[test]
    fn missing_controller_is_reported_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("cgroup");
        std::fs::create_dir_all(root.join("memory/p")).expect("mkdir");
        let mountinfo = crate::cgroups::fixture::write_mountinfo(
            dir.path(),
            &root,
            "35 31 0:32 / {root}/memory rw - cgroup cgroup rw,memory\n",
        );
        let manager = CgroupManager::new(crate::cgroups::CgroupSettings {
            driver: crate::config::CgroupDriver::Cgroupfs,
            root,
            mountinfo,
            systemd_bus: crate::cgroups::DEFAULT_SYSTEM_BUS.to_owned(),
        })
        .expect("manager");
        let resources = Resources {
            pids_limit: Some(10),
            ..Resources::default()
        };
        let err = manager.apply(&path("/p"), &resources).expect_err("no pids");
        assert!(err.to_string().contains("pids controller"), "{err}");
    }
}
