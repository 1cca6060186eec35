//! What a node's runtime holds on the host outside the objects a test still expects: the
//! invariant check of the fault and recovery tests ("nothing leaked").

use std::fs;
use std::path::{Path, PathBuf};

use super::cleanup::CGROUP_ROOT;
use super::cni::leased_ips;
use super::node::Node;

/// Everything of the node's runtime whose path or command line names none of `keep` (ids of
/// pods and containers the test still expects): mounts under the node's dir, pod and
/// container runtime dirs, cgroups under the node's parent, IP leases in `ipam_dir` (when
/// the node has a bridge network), and processes naming the state dir. Images and their
/// layers are not judged here.
pub fn leaks(node: &Node, ipam_dir: Option<&Path>, keep: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    let kept = |path: &Path| {
        let text = path.to_string_lossy();
        keep.iter().any(|id| text.contains(id))
    };
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for mount in mountinfo.lines().filter_map(|line| line.split(' ').nth(4)) {
        let path = PathBuf::from(mount);
        // The root dir itself may be a mount a test made (a small tmpfs).
        if path.starts_with(node.base_dir()) && path != node.root_dir() && !kept(&path) {
            found.push(format!("mount {mount}"));
        }
    }
    for dir in ["pods", "containers"] {
        for entry in fs::read_dir(node.state_dir().join(dir))
            .into_iter()
            .flatten()
            .flatten()
        {
            if !kept(&entry.path()) {
                found.push(format!("dir {}", entry.path().display()));
            }
        }
    }
    for path in node_cgroups(node) {
        if !kept(&path) {
            found.push(format!("cgroup {}", path.display()));
        }
    }
    if let Some(ipam_dir) = ipam_dir {
        for ip in leased_ips(ipam_dir) {
            found.push(format!("IP lease {ip}"));
        }
    }
    let state_dir = node.state_dir().to_string_lossy().into_owned();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if text.contains(&state_dir) && !kept(Path::new(&text)) {
            found.push(format!(
                "process {}: {text}",
                entry.file_name().to_string_lossy()
            ));
        }
    }
    found
}

/// The cgroup directories (one per hierarchy) below the node's cgroup parent whose name
/// contains `id` (a pod's or a container's).
pub fn cgroup_dirs(node: &Node, id: &str) -> Vec<PathBuf> {
    node_cgroups(node)
        .into_iter()
        .filter(|path| {
            path.file_name()
                .is_some_and(|name| name.to_string_lossy().contains(id))
        })
        .collect()
}

/// Every cgroup directory below the node's cgroup parent, in every hierarchy.
fn node_cgroups(node: &Node) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for hierarchy in fs::read_dir(CGROUP_ROOT).into_iter().flatten().flatten() {
        let mut pending = vec![
            hierarchy
                .path()
                .join(node.cgroup_parent().trim_start_matches('/')),
        ];
        while let Some(dir) = pending.pop() {
            for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    found.push(path.clone());
                    pending.push(path);
                }
            }
        }
    }
    found
}
