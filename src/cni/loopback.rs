//! Bringing up `lo` in a pod's netns with the `loopback` plugin.
//!
//! The caller decides whether to use it (bringing `lo` up over netlink in-process is far
//! cheaper than starting the plugin, see the perf notes). Nothing is cached: `lo` disappears
//! with the netns, so there is nothing to tear down.

use std::path::{Path, PathBuf};

use super::error::{CniCommand, CniError, PluginContext};
use super::exec::PluginEnv;
use super::manager::{CniManager, excerpt};
use super::pod::validate_pod_id;

/// The network name given to the loopback plugin.
const LOOPBACK_NETWORK: &str = "cni-loopback";
/// 0.3.1 is understood by every loopback plugin release from 2017 on.
const LOOPBACK_VERSION: &str = "0.3.1";

impl CniManager {
    /// Runs the `loopback` plugin's `ADD` in `netns_path` (found in the bin dirs).
    pub async fn setup_loopback(&self, pod_id: &str, netns_path: &Path) -> Result<(), CniError> {
        validate_pod_id(pod_id)?;
        let binary = self
            .find_plugin("loopback")
            .ok_or_else(|| CniError::PluginNotFound {
                plugin: "loopback".to_owned(),
                network: LOOPBACK_NETWORK.to_owned(),
                conf_path: PathBuf::new(),
                search_path: self
                    .settings()
                    .bin_dirs
                    .iter()
                    .map(|dir| dir.display().to_string())
                    .collect::<Vec<_>>()
                    .join(":"),
            })?;
        let input = serde_json::to_vec(&serde_json::json!({
            "cniVersion": LOOPBACK_VERSION,
            "name": LOOPBACK_NETWORK,
            "type": "loopback",
        }))
        .unwrap_or_default();
        let env = PluginEnv {
            container_id: pod_id.to_owned(),
            netns: netns_path.as_os_str().to_owned(),
            ifname: "lo".to_owned(),
            args: format!("IgnoreUnknown=1;K8S_POD_INFRA_CONTAINER_ID={pod_id}"),
        };
        let context = PluginContext {
            plugin: "loopback".to_owned(),
            network: LOOPBACK_NETWORK.to_owned(),
            conf_path: PathBuf::new(),
            command: CniCommand::Add,
            container_id: pod_id.to_owned(),
        };
        let stdout = self
            .inner
            .runner
            .run(&binary, CniCommand::Add, &env, input, context.clone())
            .await?;
        if serde_json::from_slice::<serde_json::Value>(&stdout).is_err() {
            return Err(CniError::InvalidResult {
                context: Box::new(context),
                reason: format!("not json: {}", excerpt(&stdout)),
            });
        }
        Ok(())
    }
}
