//! What a node may not keep after its workloads are gone: the leak check of the fault and
//! load tests.

use std::fs;
use std::path::{Path, PathBuf};

use super::cni::leased_ips;
use super::node::Node;

/// Everything of the node's runtime that does not belong to the objects whose ids are in
/// `keep`: mounts under the node's dirs, pod and container runtime dirs, cgroups under the
/// node's parent, IP leases in `ipam_dir` (so `keep` may hold only host-network pods),
/// and processes whose command line names the node's state dir.
pub fn leaks(node: &Node, ipam_dir: &Path, keep: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    let mine = |path: &Path| {
        let text = path.to_string_lossy();
        keep.iter().any(|id| text.contains(id))
    };
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for mount in mountinfo.lines().filter_map(|line| line.split(' ').nth(4)) {
        let path = PathBuf::from(mount);
        if path.starts_with(node.base_dir()) && !mine(&path) {
            found.push(format!("mount {mount}"));
        }
    }
    for dir in ["pods", "containers"] {
        for entry in fs::read_dir(node.state_dir().join(dir))
            .into_iter()
            .flatten()
            .flatten()
        {
            if !mine(&entry.path()) {
                found.push(format!("dir {}", entry.path().display()));
            }
        }
    }
    for hierarchy in fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        let parent = hierarchy
            .path()
            .join(node.cgroup_parent().trim_start_matches('/'));
        let mut stack = vec![parent];
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    if !mine(&path) {
                        found.push(format!("cgroup {}", path.display()));
                    }
                    stack.push(path);
                }
            }
        }
    }
    // The sentinel pod runs in the node's network (no lease of its own).
    for ip in leased_ips(ipam_dir) {
        found.push(format!("IP lease {ip}"));
    }
    let state_dir = node.state_dir().to_string_lossy().into_owned();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if text.contains(&state_dir) && !mine(Path::new(&text)) {
            found.push(format!(
                "process {}: {text}",
                entry.file_name().to_string_lossy()
            ));
        }
    }
    found
}
