//! What a node's runtime holds on the host outside the objects a test still expects: the
//! invariant check of the fault, recovery and load tests ("nothing leaked"), and the image
//! store's full verify ([`image_store_problems`]).

use std::fs;
use std::path::{Path, PathBuf};

use carrack::proto::images::images_client::ImagesClient;

use super::cleanup::CGROUP_ROOT;
use super::cni::leased_ips;
use super::node::Node;

/// Everything of the node's runtime whose path or command line names none of `keep` (ids of
/// pods and containers the test still expects): mounts under the node's dir, pod and
/// container runtime dirs, cgroups under the node's parent, IP leases in `ipam_dir` (when
/// the node has a bridge network), processes naming the state dir, and every file of the
/// root and state dirs outside a record (see [`stray_files`]). Images and their layers are
/// judged by [`image_store_problems`].
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
    found.extend(stray_files(node, keep));
    found
}

/// What is wrong with the node's image store, from the daemon's full verify
/// (`carrack.images.v1.Images/Verify`, what `carrack image verify` runs): a blob that does not
/// hash to its name, an image whose documents or layers are missing or disagree, a blob or
/// layer no image owns, leftovers in the ingest dirs. Empty when the store is whole.
pub async fn image_store_problems(node: &Node) -> Vec<String> {
    let channel = match super::client::connect_channel(&node.socket_path()).await {
        Ok(channel) => channel,
        Err(err) => return vec![format!("image verify: cannot connect: {err:?}")],
    };
    match ImagesClient::new(channel)
        .verify(carrack::proto::images::VerifyRequest {})
        .await
    {
        Ok(reply) => reply
            .into_inner()
            .problems
            .into_iter()
            .map(|problem| format!("image store: {problem}"))
            .collect(),
        Err(status) => vec![format!("image verify failed: {status}")],
    }
}

/// Files of the root and state dirs that no record owns, proven by walking both: every
/// top-level entry must be one the daemon makes, and inside them
/// - `store/{pods,containers}/<id>.json` must name a kept id (`store/images` is the image
///   store's; a quarantined `*.json.corrupt` is kept aside on purpose), and nothing else
///   (a half-written temp record) may be there;
/// - `snapshots/active/<id>` (a writable layer) must name a kept container, and
///   `snapshots/ingest/` and `content/ingest/` must be empty (`snapshots/layers` and
///   `content/blobs` are the image store's, judged by its verify);
/// - `cni/results/<pod>.json` (a CNI attachment whose DEL is owed) must name a kept pod;
/// - `<state_dir>/{pods,containers}/<id>` must name a kept id.
pub fn stray_files(node: &Node, keep: &[&str]) -> Vec<String> {
    let kept = |name: &str| keep.iter().any(|id| name.contains(id));
    let mut found = Vec::new();
    let root = node.root_dir();
    for (dir, allowed) in [
        (
            root.clone(),
            &["carrack.lock", "store", "content", "snapshots", "cni"][..],
        ),
        (node.state_dir(), &["boot_id", "pods", "containers"][..]),
        (root.join("store"), &["pods", "containers", "images"][..]),
        (root.join("content"), &["blobs", "ingest"][..]),
        (root.join("snapshots"), &["layers", "active", "ingest"][..]),
        (root.join("cni"), &["results"][..]),
    ] {
        for (name, path) in entries(&dir) {
            if !allowed.contains(&name.as_str()) {
                found.push(format!("unexpected file {}", path.display()));
            }
        }
    }
    for kind in ["pods", "containers"] {
        for (name, path) in entries(&root.join("store").join(kind)) {
            let owned = match name.strip_suffix(".json") {
                Some(id) => kept(id),
                None => name.ends_with(".json.corrupt"),
            };
            if !owned {
                found.push(format!("store file {}", path.display()));
            }
        }
    }
    for (name, path) in entries(&root.join("store").join("images")) {
        if !name.ends_with(".json") && !name.ends_with(".json.corrupt") {
            found.push(format!("store file {}", path.display()));
        }
    }
    for (name, path) in entries(&root.join("snapshots").join("active")) {
        if !kept(&name) {
            found.push(format!("writable layer {}", path.display()));
        }
    }
    for dir in [
        root.join("snapshots").join("ingest"),
        root.join("content").join("ingest"),
    ] {
        for (_, path) in entries(&dir) {
            found.push(format!("ingest leftover {}", path.display()));
        }
    }
    for (name, path) in entries(&root.join("cni").join("results")) {
        if !(name.ends_with(".json") && kept(&name)) {
            found.push(format!("CNI cache entry {}", path.display()));
        }
    }
    found
}

/// The entries of `dir` by name, sorted (none when it does not exist).
fn entries(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut found: Vec<(String, PathBuf)> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| {
            (
                entry.file_name().to_string_lossy().into_owned(),
                entry.path(),
            )
        })
        .collect();
    found.sort();
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
