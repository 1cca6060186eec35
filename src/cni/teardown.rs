//! `DEL`: detaching a pod, replayed from its cached record.
//!
//! Teardown uses the network list and pod parameters recorded at `ADD` time, not the current
//! conf dir, so editing or removing the node's config never strands an attachment. The record
//! is removed only after every plugin's `DEL` succeeded, so a failed teardown can simply be
//! retried; a pod without a record is already detached and tears down as `Ok`. Call it before
//! the netns is removed: `DEL` with the netns gone works (an empty `CNI_NETNS` is passed) but
//! plugins then release less (plugins 1.1.1's bridge leaves its ipMasq rules behind).

use std::path::PathBuf;

use serde_json::Value;

use super::cache::CacheEntry;
use super::conf::NetworkConfigList;
use super::error::{CniCommand, CniError};
use super::exec::PluginEnv;
use super::manager::{CniManager, netns_for_del, plugin_context};
use super::plugin_input::plugin_input;
use super::pod::{PodNetwork, validate_pod_id};

impl CniManager {
    /// Detaches `pod_id` from the network it was attached to. Idempotent.
    pub async fn teardown(&self, pod_id: &str) -> Result<(), CniError> {
        validate_pod_id(pod_id)?;
        let this = self.clone();
        let id = pod_id.to_owned();
        self.detached(pod_id, async move { this.teardown_locked(id).await })
            .await
    }

    async fn teardown_locked(self, pod_id: String) -> Result<(), CniError> {
        let _guard = self.inner.locks.lock(&pod_id).await;
        let cache = &self.inner.cache;
        match cache.load(&pod_id).await {
            Ok(None) => return Ok(()),
            Ok(Some(entry)) => self.del_entry(&entry).await?,
            Err(err @ CniError::CacheCorrupt { .. }) => {
                // Best effort rather than a pod that can never be removed: DEL by container id
                // on the current network (IPAM releases by id; the netns is unknown).
                let Ok(list) = self.network_config() else {
                    return Err(err);
                };
                tracing::warn!(pod_id = %pod_id, error = %err, "corrupt cni record; DEL with the current network config");
                let binaries = self.resolve_plugins(&list)?;
                let pod = PodNetwork {
                    pod_id: pod_id.clone(),
                    ..PodNetwork::default()
                };
                let ifname = self.inner.settings.ifname.clone();
                self.del_chain(&list, &binaries, &pod, &ifname, None)
                    .await?;
            }
            Err(err) => return Err(err),
        }
        cache.remove(&pod_id).await
    }

    /// Replays `DEL` for a cached record.
    pub(crate) async fn del_entry(&self, entry: &CacheEntry) -> Result<(), CniError> {
        let list = cached_list(entry)?;
        let binaries = self.resolve_plugins(&list)?;
        self.del_chain(
            &list,
            &binaries,
            &entry.pod,
            &entry.ifname,
            entry.result.as_ref(),
        )
        .await
    }

    /// Runs `DEL` for every plugin of `list` in reverse order. Keeps going after a failure so
    /// that as much as possible is released, and returns the first error.
    pub(crate) async fn del_chain(
        &self,
        list: &NetworkConfigList,
        binaries: &[PathBuf],
        pod: &PodNetwork,
        ifname: &str,
        result: Option<&Value>,
    ) -> Result<(), CniError> {
        let env = PluginEnv {
            container_id: pod.pod_id.clone(),
            netns: netns_for_del(&pod.netns_path),
            ifname: ifname.to_owned(),
            args: pod.cni_args(),
        };
        // Spec 0.4.0 added prevResult to DEL; older plugins may refuse unknown input.
        let prev = result.filter(|_| list.version_at_least(0, 4, 0));
        let mut first_error = None;
        for (plugin, binary) in list.plugins.iter().zip(binaries).rev() {
            let context = plugin_context(list, &plugin.plugin_type, CniCommand::Del, &pod.pod_id);
            let input = plugin_input(list, plugin, prev, pod.runtime_config(plugin));
            if let Err(err) = self
                .inner
                .runner
                .run(binary, CniCommand::Del, &env, input, context)
                .await
            {
                tracing::warn!(pod_id = %pod.pod_id, error = %err, "cni DEL failed");
                first_error.get_or_insert(err);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// The network list of a record, as it was used for `ADD`.
pub(crate) fn cached_list(entry: &CacheEntry) -> Result<NetworkConfigList, CniError> {
    let mut list = NetworkConfigList::from_list_value(entry.conflist.clone(), &entry.conf_path)
        .map_err(|reason| CniError::CacheCorrupt {
            path: entry.conf_path.clone(),
            container_id: entry.pod.pod_id.clone(),
            reason: format!("cached network list: {reason}"),
        })?;
    list.cni_version.clone_from(&entry.cni_version);
    Ok(list)
}
