//! [`CniManager`]: the node network's single entry point, and its settings.
//!
//! # Noticing config changes
//!
//! Every call that needs the network config (`setup`, `status`, ...) first takes a
//! [`DirFingerprint`] of the conf dir (one `getdents` plus one `stat` per candidate file) and
//! reloads only when it differs from the one taken at the last load. This was chosen over an
//! inotify watch (the `notify` crate's inotify backend is available here) because it has no
//! failure modes to handle: it works when the dir does not exist yet (a CNI DaemonSet creates
//! it after the runtime started), when the dir is deleted and recreated (an inotify watch is
//! silently lost), and for symlinked files (ConfigMap mounts), and it needs no thread or
//! event queue. Comparing the dir's mtime alone would miss in-place edits of a file; the
//! fingerprint compares each file's inode, size, mtime and ctime, and a file changed in the
//! last two seconds forces a reload on the next call, so two same-size writes within one
//! timestamp tick cannot hide the second. The cost is a few microseconds per call, nothing
//! next to a plugin run.
//!
//! # Concurrency and cancellation
//!
//! Operations on one pod are serialised ([`PodLocks`]); different pods run in parallel. Each
//! `setup`/`teardown`/`check` runs in its own spawned task, so a caller that gives up (a gRPC
//! deadline) does not abort a plugin chain halfway: the chain, its rollback and the cache
//! update always finish, and the cache keeps telling the truth.

use std::ffi::OsString;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::Value;

use super::cache::ResultCache;
use super::conf::{self, ConfigLoad, DirFingerprint, NetworkConfigList};
use super::error::{CniCommand, CniError, PluginContext};
use super::exec::{PluginEnv, PluginRunner};
use super::locks::PodLocks;
use super::plugin_input::plugin_input;

/// Everything the CNI subsystem needs from the daemon's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniSettings {
    /// Directory of network config files (`/etc/cni/net.d`).
    pub conf_dir: PathBuf,
    /// Directories searched, in order, for plugin binaries; also `CNI_PATH`.
    pub bin_dirs: Vec<PathBuf>,
    /// Where each pod's attachment is recorded for `DEL` replay. Prefer a persistent dir
    /// (`<root_dir>/cni/results`): IPAM leases (host-local keeps them under `/var/lib/cni`)
    /// survive a reboot, and only a surviving record lets recovery release them.
    pub cache_dir: PathBuf,
    /// Limit for one plugin run; the plugin's process group is killed when it passes.
    pub plugin_timeout: Duration,
    /// `CNI_IFNAME` of the pod interface.
    pub ifname: String,
    /// Command prefix plugins are run through, e.g. `["nsenter", "--net=/run/netns/node"]`.
    /// Empty in production; tests use it to run plugins inside a throwaway netns.
    pub exec_prefix: Vec<OsString>,
}

impl CniSettings {
    /// The default pod interface name.
    pub const DEFAULT_IFNAME: &'static str = "eth0";

    /// Settings from the config file's `[cni]` table (plugin timeout included), with the cache
    /// in `cache_dir` and the defaults for the rest.
    pub fn new(config: &crate::config::CniConfig, cache_dir: PathBuf) -> Self {
        Self {
            conf_dir: config.conf_dir.clone(),
            bin_dirs: config.bin_dirs.clone(),
            cache_dir,
            plugin_timeout: Duration::from_secs(config.plugin_timeout_secs),
            ifname: Self::DEFAULT_IFNAME.to_owned(),
            exec_prefix: Vec::new(),
        }
    }

    fn search_path(&self) -> String {
        self.bin_dirs
            .iter()
            .map(|dir| dir.display().to_string())
            .collect::<Vec<_>>()
            .join(":")
    }
}

/// What a `VERSION` call reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginVersions {
    /// The version the reply is written in.
    pub cni_version: String,
    /// The spec versions the plugin supports.
    pub supported_versions: Vec<String>,
}

/// Loads the node's network config and runs its plugins for pods. Cheap to clone.
#[derive(Debug, Clone)]
pub struct CniManager {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub settings: CniSettings,
    pub runner: PluginRunner,
    pub cache: ResultCache,
    pub locks: Arc<PodLocks>,
    conf: Mutex<ConfState>,
}

#[derive(Debug, Default)]
struct ConfState {
    fingerprint: Option<DirFingerprint>,
    load: ConfigLoad,
}

impl CniManager {
    /// A manager for `settings`; loads the conf dir once and clears temp files a crash may have
    /// left in the cache dir. Does no plugin runs.
    pub fn new(settings: CniSettings) -> Self {
        let runner = PluginRunner {
            cni_path: OsString::from(settings.search_path()),
            timeout: settings.plugin_timeout,
            exec_prefix: settings.exec_prefix.clone(),
        };
        let cache = ResultCache::new(settings.cache_dir.clone());
        cache.remove_stale_temps();
        let manager = Self {
            inner: Arc::new(Inner {
                settings,
                runner,
                cache,
                locks: Arc::new(PodLocks::default()),
                conf: Mutex::new(ConfState::default()),
            }),
        };
        manager.reload();
        manager
    }

    /// The settings in use.
    pub fn settings(&self) -> &CniSettings {
        &self.inner.settings
    }

    /// Rescans the conf dir now, whatever the fingerprint says, and returns what it found.
    pub fn reload(&self) -> ConfigLoad {
        let mut state = self.conf_state();
        self.reload_locked(&mut state);
        state.load.clone()
    }

    /// The current network config, rescanning the conf dir first if it changed.
    pub fn network_config(&self) -> Result<Arc<NetworkConfigList>, CniError> {
        let load = self.current_load();
        load.selected.ok_or_else(|| CniError::NoNetworkConfig {
            conf_dir: self.inner.settings.conf_dir.clone(),
            skipped: load.skipped,
        })
    }

    /// `Ok` when a valid network config exists and every plugin it names is installed; the
    /// error names what is missing. This is the runtime's `NetworkReady` condition.
    pub fn status(&self) -> Result<(), CniError> {
        let list = self.network_config()?;
        self.resolve_plugins(&list).map(drop)
    }

    /// Pod ids with a cached attachment (complete or not): what recovery must tear down or
    /// keep, after matching them against the pods it knows.
    pub fn pending_teardowns(&self) -> Vec<String> {
        self.inner.cache.list()
    }

    /// Runs `STATUS` on every plugin of the network when its version is 1.1.0 or later (older
    /// plugins have no such verb: then this only checks what [`Self::status`] checks).
    pub async fn plugin_status(&self) -> Result<(), CniError> {
        let list = self.network_config()?;
        let binaries = self.resolve_plugins(&list)?;
        if !list.version_at_least(1, 1, 0) {
            return Ok(());
        }
        for (plugin, binary) in list.plugins.iter().zip(&binaries) {
            let input = plugin_input(&list, plugin, None, None);
            let context = plugin_context(&list, &plugin.plugin_type, CniCommand::Status, "");
            self.inner
                .runner
                .run(
                    binary,
                    CniCommand::Status,
                    &PluginEnv::default(),
                    input,
                    context,
                )
                .await?;
        }
        Ok(())
    }

    /// Runs `VERSION` on the plugin binary `plugin_type`.
    pub async fn plugin_version(&self, plugin_type: &str) -> Result<PluginVersions, CniError> {
        let binary = self
            .find_plugin(plugin_type)
            .ok_or_else(|| CniError::PluginNotFound {
                plugin: plugin_type.to_owned(),
                network: String::new(),
                conf_path: PathBuf::new(),
                search_path: self.inner.settings.search_path(),
            })?;
        let latest = conf::SUPPORTED_VERSIONS[conf::SUPPORTED_VERSIONS.len() - 1];
        let input =
            serde_json::to_vec(&serde_json::json!({ "cniVersion": latest })).unwrap_or_default();
        let context = PluginContext {
            plugin: plugin_type.to_owned(),
            network: String::new(),
            conf_path: PathBuf::new(),
            command: CniCommand::Version,
            container_id: String::new(),
        };
        let stdout = self
            .inner
            .runner
            .run(
                &binary,
                CniCommand::Version,
                &PluginEnv::default(),
                input,
                context.clone(),
            )
            .await?;
        let invalid = |reason: String| CniError::InvalidResult {
            context: Box::new(context.clone()),
            reason,
        };
        let value: Value = serde_json::from_slice(&stdout)
            .map_err(|err| invalid(format!("{err} in {}", excerpt(&stdout))))?;
        let supported = value
            .get("supportedVersions")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid("supportedVersions is missing".to_owned()))?;
        Ok(PluginVersions {
            cni_version: value
                .get("cniVersion")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            supported_versions: supported
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
        })
    }

    /// The first `<bin_dir>/<plugin_type>` that is an executable regular file.
    pub fn find_plugin(&self, plugin_type: &str) -> Option<PathBuf> {
        use std::os::unix::fs::PermissionsExt;
        if plugin_type.is_empty() || plugin_type.contains('/') {
            return None;
        }
        self.inner
            .settings
            .bin_dirs
            .iter()
            .map(|dir| dir.join(plugin_type))
            .find(|path| {
                std::fs::metadata(path)
                    .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
            })
    }

    /// The binary of every plugin of `list`, or the first one missing.
    pub(crate) fn resolve_plugins(
        &self,
        list: &NetworkConfigList,
    ) -> Result<Vec<PathBuf>, CniError> {
        list.plugins
            .iter()
            .map(|plugin| {
                self.find_plugin(&plugin.plugin_type)
                    .ok_or_else(|| CniError::PluginNotFound {
                        plugin: plugin.plugin_type.clone(),
                        network: list.name.clone(),
                        conf_path: list.source.clone(),
                        search_path: self.inner.settings.search_path(),
                    })
            })
            .collect()
    }

    /// Runs `work` in its own task so that the caller dropping its future does not cut a
    /// plugin chain short (see the module docs).
    pub(crate) async fn detached<T, F>(&self, pod_id: &str, work: F) -> Result<T, CniError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, CniError>> + Send + 'static,
    {
        // The spawned work's spans stay children of the caller's.
        match tokio::spawn(tracing::Instrument::in_current_span(work)).await {
            Ok(outcome) => outcome,
            Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
            Err(_) => Err(CniError::Cancelled {
                container_id: pod_id.to_owned(),
            }),
        }
    }

    fn conf_state(&self) -> std::sync::MutexGuard<'_, ConfState> {
        self.inner
            .conf
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn current_load(&self) -> ConfigLoad {
        let dir = &self.inner.settings.conf_dir;
        let now = DirFingerprint::take(dir);
        let mut state = self.conf_state();
        let current = state
            .fingerprint
            .as_ref()
            .is_some_and(|last| last.still_matches(&now));
        if !current {
            self.reload_locked(&mut state);
        }
        state.load.clone()
    }

    /// Loads the conf dir into `state`, logging what changed. Runs under the state lock so
    /// concurrent callers do not load twice; a load reads a few small files.
    fn reload_locked(&self, state: &mut ConfState) {
        let dir = &self.inner.settings.conf_dir;
        // Fingerprint first: a change racing the load then shows on the next call.
        let fingerprint = DirFingerprint::take(dir);
        let load = conf::load_dir(dir);
        if load.selected != state.load.selected {
            match &load.selected {
                Some(list) => tracing::info!(
                    network = %list.name,
                    cni_version = %list.cni_version,
                    path = %list.source.display(),
                    plugins = ?list.plugins.iter().map(|p| p.plugin_type.as_str()).collect::<Vec<_>>(),
                    "cni network config loaded"
                ),
                None => tracing::warn!(conf_dir = %dir.display(), "no valid cni network config"),
            }
        }
        if load.skipped != state.load.skipped {
            for skipped in &load.skipped {
                tracing::warn!(path = %skipped.path.display(), reason = %skipped.reason, "cni config skipped");
            }
        }
        state.fingerprint = Some(fingerprint);
        state.load = load;
    }
}

/// The error context of running `plugin` of `list`.
pub(crate) fn plugin_context(
    list: &NetworkConfigList,
    plugin: &str,
    command: CniCommand,
    container_id: &str,
) -> PluginContext {
    PluginContext {
        plugin: plugin.to_owned(),
        network: list.name.clone(),
        conf_path: list.source.clone(),
        command,
        container_id: container_id.to_owned(),
    }
}

/// The start of a plugin's output, for error messages.
pub(crate) fn excerpt(bytes: &[u8]) -> String {
    const MAX: usize = 256;
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX)]).into_owned();
    if bytes.len() > MAX {
        format!("{text:?}...")
    } else {
        format!("{text:?}")
    }
}

/// `CNI_NETNS` for a `DEL`: the path while the netns exists, else empty (the spec lets `DEL`
/// run without one, and plugins then release what they can).
pub(crate) fn netns_for_del(netns_path: &Path) -> OsString {
    if !netns_path.as_os_str().is_empty() && netns_path.exists() {
        netns_path.as_os_str().to_owned()
    } else {
        OsString::new()
    }
}
