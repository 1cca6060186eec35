//! CNI set-up for test nodes: Debian's bridge + host-local + portmap plugins, and a look at
//! the IP leases host-local keeps in the node's temp dir.

use std::fs;
use std::path::{Path, PathBuf};

use super::node::Node;

/// Writes a bridge + host-local + portmap conflist for the node, with IPAM state in the
/// node's temp dir so tests never share leases.
pub fn write_bridge_conflist(node: &Node) -> PathBuf {
    write_conflist_with_bridge(node, "bridge")
}

/// [`write_bridge_conflist`] with the bridge plugin run as `bridge_type` (a test's wrapper
/// around Debian's bridge plugin, found in one of the daemon's `cni.bin_dirs`).
pub fn write_conflist_with_bridge(node: &Node, bridge_type: &str) -> PathBuf {
    write_conflist(node, bridge_type, serde_json::json!({}), Vec::new())
}

/// The bridge + host-local + portmap conflist, the bridge plugin run as `bridge_type` and
/// declaring `bridge_capabilities` (e.g. `{"ipRanges": true}`), with `more_plugins` chained
/// after portmap (e.g. `bandwidth`). A bridge declaring `ipRanges` gets no ranges of its own:
/// host-local prepends the runtime's ranges to the configured ones, which would give the pod
/// a second IPv4 address. Returns host-local's data dir.
pub fn write_conflist(
    node: &Node,
    bridge_type: &str,
    bridge_capabilities: serde_json::Value,
    more_plugins: Vec<serde_json::Value>,
) -> PathBuf {
    let ipam_dir = node.base_dir().join("cni").join("ipam");
    fs::create_dir_all(node.cni_conf_dir()).expect("cni conf dir");
    let ranges = if bridge_capabilities["ipRanges"] == true {
        serde_json::json!([])
    } else {
        serde_json::json!([[{"subnet": "10.99.0.0/24"}]])
    };
    let mut plugins = vec![
        serde_json::json!({
            "type": bridge_type,
            "bridge": "cr0",
            "isGateway": true,
            "ipMasq": false,
            "capabilities": bridge_capabilities,
            "ipam": {
                "type": "host-local",
                "dataDir": ipam_dir,
                "ranges": ranges,
                "routes": [{"dst": "0.0.0.0/0"}]
            }
        }),
        serde_json::json!({"type": "portmap", "capabilities": {"portMappings": true}}),
    ];
    plugins.extend(more_plugins);
    let conflist = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "carrack-test",
        "plugins": plugins,
    });
    fs::write(
        node.cni_conf_dir().join("10-carrack-test.conflist"),
        serde_json::to_vec_pretty(&conflist).expect("json"),
    )
    .expect("write conflist");
    ipam_dir
}

/// Writes the executable shell script `dir/name` with `body` (after `#!/bin/sh`): a fake or
/// wrapping CNI plugin for a daemon whose `cni.bin_dirs` include `dir`.
pub fn write_plugin(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    fs::write(&path, format!("#!/bin/sh\n{body}")).expect("write plugin");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod plugin");
    path
}

/// The IPs host-local has leased in `ipam_dir` (as written by [`write_bridge_conflist`]).
pub fn leased_ips(ipam_dir: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(ipam_dir.join("carrack-test")) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.parse::<std::net::IpAddr>().is_ok())
        .collect()
}
