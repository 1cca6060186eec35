//! Usage figures for CRI stats and the OOM watcher, read from v1 or v2 interface files.
//!
//! Each figure is an `Option`: a controller may be absent (no hugetlb, no pids hierarchy), and
//! CRI distinguishes "unknown" from zero. Working set follows kubelet/cAdvisor: usage minus
//! inactive file pages, which the kernel can drop without pressure on the workload.

use super::error::CgroupError;
use super::interface;
use super::{CgroupManager, CgroupPath};

/// A snapshot of one cgroup's usage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupStats {
    /// Cumulative CPU time in nanoseconds.
    pub cpu_usage_ns: Option<u64>,
    /// Memory charged to the cgroup, page cache included, in bytes.
    pub memory_usage_bytes: Option<u64>,
    /// Usage minus inactive file pages: what kubelet evicts on, in bytes.
    pub memory_working_set_bytes: Option<u64>,
    /// Anonymous (and swap-cache) memory, in bytes.
    pub memory_rss_bytes: Option<u64>,
    /// Page faults.
    pub page_faults: Option<u64>,
    /// Major page faults (those needing I/O).
    pub major_page_faults: Option<u64>,
    /// Tasks currently in the cgroup.
    pub pids_current: Option<u64>,
    /// Processes killed by the OOM killer in this cgroup.
    pub oom_kills: Option<u64>,
}

impl CgroupManager {
    /// Reads the usage of `path`; `NotFound` when it exists in no hierarchy.
    pub fn stats(&self, path: &CgroupPath) -> Result<CgroupStats, CgroupError> {
        if !self.dirs(path).iter().any(|dir| dir.is_dir()) {
            return Err(CgroupError::NotFound {
                path: path.to_string(),
            });
        }
        if self.is_v2() {
            self.stats_v2(path)
        } else {
            self.stats_v1(path)
        }
    }

    /// The OOM kill count of `path`, `0` when the kernel does not report one.
    pub fn oom_kills(&self, path: &CgroupPath) -> Result<u64, CgroupError> {
        Ok(self.read_oom_kills(path)?.unwrap_or(0))
    }

    /// The files whose `oom_kill <n>` line counts OOM kills in `path` (v1
    /// `memory.oom_control`, v2 `memory.events`), for a process that watches without a
    /// manager of its own (the container monitor).
    pub fn oom_counter_files(&self, path: &CgroupPath) -> Vec<std::path::PathBuf> {
        let file = if self.is_v2() {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        self.controller_dir("memory", path)
            .map(|dir| vec![dir.join(file)])
            .unwrap_or_default()
    }

    fn read_oom_kills(&self, path: &CgroupPath) -> Result<Option<u64>, CgroupError> {
        let Some(dir) = self.controller_dir("memory", path) else {
            return Ok(None);
        };
        // v1 reports it in memory.oom_control (kernel 4.13+), v2 in memory.events.
        let file = if self.is_v2() {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        Ok(interface::read_keyed(&dir.join(file))?.and_then(|map| map.get("oom_kill").copied()))
    }

    fn stats_v1(&self, path: &CgroupPath) -> Result<CgroupStats, CgroupError> {
        let mut stats = CgroupStats::default();
        if let Some(dir) = self.controller_dir("cpuacct", path) {
            stats.cpu_usage_ns = interface::read_u64(&dir.join("cpuacct.usage"))?;
        }
        if let Some(dir) = self.controller_dir("memory", path) {
            stats.memory_usage_bytes = interface::read_u64(&dir.join("memory.usage_in_bytes"))?;
            if let Some(stat) = interface::read_keyed(&dir.join("memory.stat"))? {
                // The total_* fields include child cgroups, which a pod cgroup has.
                let get = |key: &str| {
                    stat.get(&format!("total_{key}"))
                        .or_else(|| stat.get(key))
                        .copied()
                };
                stats.memory_rss_bytes = get("rss");
                stats.page_faults = get("pgfault");
                stats.major_page_faults = get("pgmajfault");
                stats.memory_working_set_bytes =
                    working_set(stats.memory_usage_bytes, get("inactive_file"));
            }
        }
        if let Some(dir) = self.controller_dir("pids", path) {
            stats.pids_current = interface::read_u64(&dir.join("pids.current"))?;
        }
        stats.oom_kills = self.read_oom_kills(path)?;
        Ok(stats)
    }

    fn stats_v2(&self, path: &CgroupPath) -> Result<CgroupStats, CgroupError> {
        let mut stats = CgroupStats::default();
        let Some(dir) = self.dirs(path).into_iter().next() else {
            return Ok(stats);
        };
        if let Some(cpu) = interface::read_keyed(&dir.join("cpu.stat"))? {
            stats.cpu_usage_ns = cpu.get("usage_usec").map(|usec| usec.saturating_mul(1000));
        }
        stats.memory_usage_bytes = interface::read_u64(&dir.join("memory.current"))?;
        if let Some(stat) = interface::read_keyed(&dir.join("memory.stat"))? {
            stats.memory_rss_bytes = stat.get("anon").copied();
            stats.page_faults = stat.get("pgfault").copied();
            stats.major_page_faults = stat.get("pgmajfault").copied();
            stats.memory_working_set_bytes =
                working_set(stats.memory_usage_bytes, stat.get("inactive_file").copied());
        }
        stats.pids_current = interface::read_u64(&dir.join("pids.current"))?;
        stats.oom_kills = self.read_oom_kills(path)?;
        Ok(stats)
    }
}

/// `usage - inactive_file`, floored at zero (the two are read at different instants).
fn working_set(usage: Option<u64>, inactive_file: Option<u64>) -> Option<u64> {
    usage.map(|usage| usage.saturating_sub(inactive_file.unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::fixture::{FakeHost, path};
    use crate::error_kind::ErrorKind;

    #[test]
    fn v1_stats_come_from_cpuacct_memory_and_pids() {
        let host = FakeHost::v1();
        host.make_cgroup("p", &[]);
        host.write("cpu,cpuacct/p/cpuacct.usage", "123456789\n");
        host.write("memory/p/memory.usage_in_bytes", "10000\n");
        host.write(
            "memory/p/memory.stat",
            "cache 1\nrss 2\npgfault 3\npgmajfault 4\ninactive_file 5\n\
             total_cache 100\ntotal_rss 4000\ntotal_pgfault 30\ntotal_pgmajfault 2\n\
             total_inactive_file 2500\n",
        );
        host.write(
            "memory/p/memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
        );
        host.write("pids/p/pids.current", "7\n");
        let stats = host.manager().stats(&path("/p")).expect("stats");
        assert_eq!(
            stats,
            CgroupStats {
                cpu_usage_ns: Some(123_456_789),
                memory_usage_bytes: Some(10_000),
                memory_working_set_bytes: Some(7_500),
                memory_rss_bytes: Some(4_000),
                page_faults: Some(30),
                major_page_faults: Some(2),
                pids_current: Some(7),
                oom_kills: Some(3),
            }
        );
        assert_eq!(host.manager().oom_kills(&path("/p")).expect("oom"), 3);
    }

    #[test]
    fn v2_stats_come_from_cpu_stat_memory_and_events() {
        let host = FakeHost::v2("cpu memory pids");
        host.make_cgroup("p", &[]);
        host.write(
            "p/cpu.stat",
            "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n",
        );
        host.write("p/memory.current", "8192\n");
        host.write(
            "p/memory.stat",
            "anon 4096\nfile 4096\ninactive_file 10000\npgfault 9\npgmajfault 1\n",
        );
        host.write(
            "p/memory.events",
            "low 0\nhigh 0\nmax 2\noom 1\noom_kill 1\noom_group_kill 0\n",
        );
        host.write("p/pids.current", "2\n");
        let stats = host.manager().stats(&path("/p")).expect("stats");
        assert_eq!(
            stats,
            CgroupStats {
                cpu_usage_ns: Some(1_500_000),
                memory_usage_bytes: Some(8192),
                // inactive_file above usage (read at another instant) floors at zero.
                memory_working_set_bytes: Some(0),
                memory_rss_bytes: Some(4096),
                page_faults: Some(9),
                major_page_faults: Some(1),
                pids_current: Some(2),
                oom_kills: Some(1),
            }
        );
    }

    #[test]
    fn missing_files_are_unknown_and_missing_cgroup_is_not_found() {
        let host = FakeHost::v1();
        host.make_cgroup("p", &[]);
        let stats = host.manager().stats(&path("/p")).expect("stats");
        assert_eq!(stats, CgroupStats::default());
        assert_eq!(host.manager().oom_kills(&path("/p")).expect("oom"), 0);
        let err = host.manager().stats(&path("/gone")).expect_err("gone");
        assert_eq!(err.kind(), ErrorKind::NotFound);
    }
}
