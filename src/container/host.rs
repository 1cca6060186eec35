//! Gathers the node facts a container spec depends on ([`HostInfo`]), once at start-up.

use std::path::{Path, PathBuf};

use super::spec::{ALL_CAPABILITIES, HostInfo, host_devices, parse_cap_bnd};

/// Reads the bounding set, device nodes, hostname and lowest allowed `oom_score_adj` of this
/// process. Anything unreadable falls back to the safe side (no extra capabilities, no devices,
/// our own `oom_score_adj` as the floor).
pub fn detect_host(proc_dir: &Path, dev_dir: &Path) -> HostInfo {
    let status = std::fs::read_to_string(proc_dir.join("self/status")).unwrap_or_default();
    let bounding_caps = parse_cap_bnd(&status).unwrap_or(ALL_CAPABILITIES);
    let devices = host_devices(dev_dir).unwrap_or_else(|err| {
        tracing::warn!(error = %err, "cannot list host devices; privileged containers get none");
        Vec::new()
    });
    let hostname = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    let own_adj = std::fs::read_to_string(proc_dir.join("self/oom_score_adj"))
        .ok()
        .and_then(|text| text.trim().parse::<i32>().ok())
        .unwrap_or(0);
    // Lowering oom_score_adj needs CAP_SYS_RESOURCE in the effective set.
    let min_oom_score_adj = if has_sys_resource(&status) {
        -1000
    } else {
        own_adj
    };
    let host_shm = Some(PathBuf::from("/dev/shm")).filter(|path| path.is_dir());
    HostInfo {
        bounding_caps,
        cgroup_path: String::new(),
        devices,
        hostname,
        min_oom_score_adj,
        host_shm,
    }
}

/// Whether the `CapEff` line of `/proc/self/status` has `CAP_SYS_RESOURCE` (bit 24).
fn has_sys_resource(status: &str) -> bool {
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << 24) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sys_resource_is_read_from_the_effective_set() {
        assert!(has_sys_resource("CapInh:\t0\nCapEff:\t0000000001000000\n"));
        assert!(!has_sys_resource("CapEff:\t000001fffeffffff\n"));
        assert!(!has_sys_resource("nothing here"));
    }
}
