//! `CHECK`: asking the plugins whether a pod's attachment is still intact.
//!
//! Uses the record cached at `ADD` (network list, parameters, final result as `prevResult`).
//! Networks older than spec 0.4.0 have no `CHECK`, and a list may set `disableCheck`; for
//! those the check is skipped and reported as `Ok`.

use super::cache::AttachState;
use super::error::{CniCommand, CniError};
use super::exec::PluginEnv;
use super::manager::{CniManager, plugin_context};
use super::plugin_input::plugin_input;
use super::pod::validate_pod_id;
use super::teardown::cached_list;

impl CniManager {
    /// Runs `CHECK` for every plugin of the pod's network, in order. `NotAttached` when the pod
    /// has no completed attachment.
    pub async fn check(&self, pod_id: &str) -> Result<(), CniError> {
        validate_pod_id(pod_id)?;
        let this = self.clone();
        let id = pod_id.to_owned();
        self.detached(pod_id, async move { this.check_locked(id).await })
            .await
    }

    async fn check_locked(self, pod_id: String) -> Result<(), CniError> {
        let _guard = self.inner.locks.lock(&pod_id).await;
        let entry = match self.inner.cache.load(&pod_id).await? {
            Some(entry) if entry.state == AttachState::Attached => entry,
            _ => {
                return Err(CniError::NotAttached {
                    container_id: pod_id,
                });
            }
        };
        let list = cached_list(&entry)?;
        if !list.version_at_least(0, 4, 0) || list.disable_check {
            tracing::debug!(pod_id = %pod_id, cni_version = %list.cni_version, "cni CHECK skipped");
            return Ok(());
        }
        let binaries = self.resolve_plugins(&list)?;
        let env = PluginEnv {
            container_id: pod_id.clone(),
            netns: entry.pod.netns_path.clone().into_os_string(),
            ifname: entry.ifname.clone(),
            args: entry.pod.cni_args(),
        };
        for (plugin, binary) in list.plugins.iter().zip(&binaries) {
            let context = plugin_context(&list, &plugin.plugin_type, CniCommand::Check, &pod_id);
            let input = plugin_input(
                &list,
                plugin,
                entry.result.as_ref(),
                entry.pod.runtime_config(plugin),
            );
            self.inner
                .runner
                .run(binary, CniCommand::Check, &env, input, context)
                .await?;
        }
        Ok(())
    }
}
