//! `ADD`: attaching a pod to the node network, with rollback on failure.
//!
//! The plugins of the list run in order, each getting the previous one's result as
//! `prevResult`. The cache holds an `adding` record before the first plugin runs and the
//! final result before success is returned (see `cache.rs`). If a plugin fails midway, `DEL`
//! runs for the whole list in reverse (with the last result obtained as `prevResult`) before
//! the error is returned; when that cleanup fails too, the `adding` record stays so that
//! [`CniManager::pending_teardowns`] offers the pod for another `teardown`.

use serde_json::Value;

use super::cache::{AttachState, CacheEntry};
use super::conf::NetworkConfigList;
use super::error::{CniCommand, CniError, PluginContext};
use super::exec::PluginEnv;
use super::manager::{CniManager, excerpt, plugin_context};
use super::plugin_input::plugin_input;
use super::pod::PodNetwork;
use super::result::{CniResult, NetworkStatus};

impl CniManager {
    /// Attaches the pod in `pod.netns_path` to the node network and returns its addresses.
    ///
    /// A leftover record for the same pod id (an earlier attempt whose cleanup failed) is torn
    /// down first. On success the attachment is durably cached for [`Self::teardown`].
    pub async fn setup(&self, pod: &PodNetwork) -> Result<NetworkStatus, CniError> {
        pod.validate()?;
        if !pod.netns_path.is_absolute() {
            return Err(CniError::InvalidArgument {
                container_id: pod.pod_id.clone(),
                reason: format!(
                    "netns path {:?} is not an absolute path",
                    pod.netns_path.display()
                ),
            });
        }
        let this = self.clone();
        let pod = pod.clone();
        let pod_id = pod.pod_id.clone();
        self.detached(&pod_id, async move { this.setup_locked(pod).await })
            .await
    }

    async fn setup_locked(self, pod: PodNetwork) -> Result<NetworkStatus, CniError> {
        let _guard = self.inner.locks.lock(&pod.pod_id).await;
        let list = self.network_config()?;
        let binaries = self.resolve_plugins(&list)?;
        let cache = &self.inner.cache;
        if let Some(stale) = cache.load(&pod.pod_id).await? {
            tracing::warn!(
                pod_id = %pod.pod_id,
                state = ?stale.state,
                "cni record left by an earlier attempt; tearing it down first"
            );
            self.del_entry(&stale).await?;
            cache.remove(&pod.pod_id).await?;
        }
        let ifname = self.inner.settings.ifname.clone();
        cache
            .write(&CacheEntry::new(
                AttachState::Adding,
                &list,
                &ifname,
                &pod,
                None,
            ))
            .await?;
        let env = PluginEnv {
            container_id: pod.pod_id.clone(),
            netns: pod.netns_path.clone().into_os_string(),
            ifname: ifname.clone(),
            args: pod.cni_args(),
        };
        let mut prev: Option<CniResult> = None;
        for (plugin, binary) in list.plugins.iter().zip(&binaries) {
            let context = plugin_context(&list, &plugin.plugin_type, CniCommand::Add, &pod.pod_id);
            let input = plugin_input(
                &list,
                plugin,
                prev.as_ref().map(|result| &result.raw),
                pod.runtime_config(plugin),
            );
            let outcome = match self
                .inner
                .runner
                .run(binary, CniCommand::Add, &env, input, context.clone())
                .await
            {
                Ok(stdout) => parse_add_output(&stdout, prev.as_ref(), &context),
                Err(err) => Err(err),
            };
            match outcome {
                Ok(result) => {
                    if prev.is_none() && list.plugins.len() > 1 {
                        crate::failpoint::hit(crate::failpoint::RUN_POD_MID_NETWORK);
                    }
                    prev = Some(result);
                }
                Err(err) => {
                    self.rollback(&list, &binaries, &pod, prev.as_ref().map(|r| &r.raw))
                        .await;
                    return Err(err);
                }
            }
        }
        let Some(result) = prev else {
            // `NetworkConfigList` guarantees at least one plugin.
            return Err(CniError::InvalidArgument {
                container_id: pod.pod_id.clone(),
                reason: format!("network {} has no plugins", list.name),
            });
        };
        let entry = CacheEntry::new(
            AttachState::Attached,
            &list,
            &ifname,
            &pod,
            Some(result.raw.clone()),
        );
        if let Err(err) = cache.write(&entry).await {
            // Without the record a later teardown could not replay DEL: undo now.
            self.rollback(&list, &binaries, &pod, Some(&result.raw))
                .await;
            return Err(err);
        }
        let status = NetworkStatus::from_result(&result, &ifname);
        tracing::debug!(
            pod_id = %pod.pod_id,
            network = %list.name,
            primary_ip = ?status.primary_ip,
            "pod attached to cni network"
        );
        Ok(status)
    }

    /// Runs `DEL` for the whole list after a failed `ADD`; forgets the record when that worked.
    async fn rollback(
        &self,
        list: &NetworkConfigList,
        binaries: &[std::path::PathBuf],
        pod: &PodNetwork,
        prev: Option<&Value>,
    ) {
        let ifname = &self.inner.settings.ifname;
        match self.del_chain(list, binaries, pod, ifname, prev).await {
            Ok(()) => {
                if let Err(err) = self.inner.cache.remove(&pod.pod_id).await {
                    tracing::warn!(pod_id = %pod.pod_id, error = %err, "cannot drop cni record after rollback");
                }
            }
            Err(err) => tracing::error!(
                pod_id = %pod.pod_id,
                error = %err,
                "cleanup DEL after a failed cni ADD failed; the pod stays pending teardown"
            ),
        }
    }
}

/// Parses an `ADD` output. A chained plugin that prints nothing passes the previous result on
/// (some older chained plugins do); the first plugin must print a result.
fn parse_add_output(
    stdout: &[u8],
    prev: Option<&CniResult>,
    context: &PluginContext,
) -> Result<CniResult, CniError> {
    let invalid = |reason: String| CniError::InvalidResult {
        context: Box::new(context.clone()),
        reason,
    };
    if stdout.iter().all(u8::is_ascii_whitespace) {
        return match prev {
            Some(prev) => {
                tracing::warn!(plugin = %context.plugin, "cni plugin printed no result; passing the previous one on");
                Ok(prev.clone())
            }
            None => Err(invalid("the plugin printed no result".to_owned())),
        };
    }
    let value: Value = serde_json::from_slice(stdout)
        .map_err(|err| invalid(format!("{err} in {}", excerpt(stdout))))?;
    CniResult::from_json(value)
        .map_err(|reason| invalid(format!("{reason} in {}", excerpt(stdout))))
}
