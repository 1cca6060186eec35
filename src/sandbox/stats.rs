//! Pod usage for `PodSandboxStats`: the pod cgroup's figures and the interface counters of the
//! pod's network namespace (read from `/proc/thread-self/net/dev` by a short-lived thread that
//! joins the namespace — there is no pause process whose `/proc/<pid>/net` could be read).

use std::path::Path;

use super::{SandboxError, SandboxService};
use crate::cgroups::{CgroupPath, CgroupStats};
use crate::store::now_ns;

/// One network interface's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceUsage {
    /// Interface name.
    pub name: String,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Receive errors.
    pub rx_errors: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Send errors.
    pub tx_errors: u64,
}

/// A pod's usage at one moment.
#[derive(Debug, Clone, Default)]
pub struct PodUsage {
    /// When it was read, nanoseconds since the epoch.
    pub timestamp_ns: i64,
    /// The pod cgroup's figures.
    pub cgroup: CgroupStats,
    /// The pod's interfaces other than `lo` (empty for host-network pods).
    pub interfaces: Vec<InterfaceUsage>,
}

impl SandboxService {
    /// The usage of pod `id`.
    pub fn usage(&self, id: &str) -> Result<PodUsage, SandboxError> {
        let pod = self.require(id)?;
        let timestamp_ns = now_ns();
        let cgroup = CgroupPath::parse(&pod.cgroup_path)
            .ok()
            .and_then(|path| self.cgroups.stats(&path).ok())
            .unwrap_or_default();
        let interfaces = pod
            .netns_path
            .as_deref()
            .and_then(|netns| read_net_dev_in(Path::new(netns)).ok())
            .map(|text| parse_net_dev(&text))
            .unwrap_or_default();
        Ok(PodUsage {
            timestamp_ns,
            cgroup,
            interfaces,
        })
    }
}

/// Reads `/proc/net/dev` as seen from the network namespace pinned at `netns`.
fn read_net_dev_in(netns: &Path) -> std::io::Result<String> {
    super::port_forward::in_netns(netns, || {
        std::fs::read_to_string("/proc/thread-self/net/dev")
    })
}

/// Parses `/proc/net/dev`: two header lines, then `name: rx_bytes rx_packets rx_errs … tx_bytes
/// tx_packets tx_errs …` (8 receive and 8 transmit columns). `lo` is left out.
fn parse_net_dev(text: &str) -> Vec<InterfaceUsage> {
    text.lines()
        .skip(2)
        .filter_map(|line| {
            let (name, counters) = line.split_once(':')?;
            let name = name.trim();
            if name == "lo" {
                return None;
            }
            let numbers: Vec<u64> = counters
                .split_whitespace()
                .map(|field| field.parse().unwrap_or(0))
                .collect();
            if numbers.len() < 16 {
                return None;
            }
            Some(InterfaceUsage {
                name: name.to_owned(),
                rx_bytes: numbers[0],
                rx_errors: numbers[2],
                tx_bytes: numbers[8],
                tx_errors: numbers[10],
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_dev_counters_are_read_per_interface() {
        let text = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0\n  eth0:    1500      10    2    0    0     0          0         0     3000      20    1    0    0     0       0          0\n";
        let interfaces = parse_net_dev(text);
        assert_eq!(
            interfaces,
            vec![InterfaceUsage {
                name: "eth0".to_owned(),
                rx_bytes: 1500,
                rx_errors: 2,
                tx_bytes: 3000,
                tx_errors: 1,
            }]
        );
    }
}
