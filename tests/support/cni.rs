//! CNI configuration for test nodes: Debian's bridge + host-local + portmap plugins, with
//! IPAM state in the node's temp dir so tests never share leases.

use std::fs;
use std::path::PathBuf;

use super::node::Node;

/// Writes a bridge + host-local + portmap conflist for the node, with IPAM state in the
/// node's temp dir so tests never share leases.
pub fn write_bridge_conflist(node: &Node) -> PathBuf {
    let ipam_dir = node.base_dir().join("cni").join("ipam");
    fs::create_dir_all(node.cni_conf_dir()).expect("cni conf dir");
    let conflist = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "carrack-test",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cr0",
                "isGateway": true,
                "ipMasq": false,
                "ipam": {
                    "type": "host-local",
                    "dataDir": ipam_dir,
                    "ranges": [[{"subnet": "10.99.0.0/24"}]],
                    "routes": [{"dst": "0.0.0.0/0"}]
                }
            },
            {"type": "portmap", "capabilities": {"portMappings": true}}
        ]
    });
    fs::write(
        node.cni_conf_dir().join("10-carrack-test.conflist"),
        serde_json::to_vec_pretty(&conflist).expect("json"),
    )
    .expect("write conflist");
    ipam_dir
}
