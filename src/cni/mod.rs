//! CNI: the node's network config and running its plugins for pods.
//!
//! This leaf owns the files of the conf dir (`/etc/cni/net.d`), the plugin binaries' lookup
//! in the bin dirs, the execution of plugins (`ADD`, `DEL`, `CHECK`, `STATUS`, `VERSION`) and
//! the per-pod result cache that makes `DEL` replayable after a restart. The plugins do the
//! netlink and iptables work; this module hands them their inputs and returns typed results.
//! It knows nothing of CRI: the sandbox layer fills a [`PodNetwork`] and calls
//! [`CniManager::setup`] / [`CniManager::teardown`].
//!
//! Files, one concern each:
//! - `manager.rs`: [`CniManager`], [`CniSettings`], config reload (fingerprint), `status`.
//! - `conf.rs`: finding and validating network config files.
//! - `setup.rs`, `teardown.rs`, `check.rs`, `loopback.rs`: one verb each.
//! - `exec.rs`: running one plugin (env, stdin, capture, timeout, kill).
//! - `plugin_input.rs`: the per-plugin stdin config (name/version/prevResult/runtimeConfig).
//! - `pod.rs`: the pod-side inputs; `result.rs`: typed results; `cache.rs`: the record store.
//! - `locks.rs`: per-pod serialisation; `error.rs`: [`CniError`].

mod cache;
mod check;
mod conf;
mod error;
mod exec;
mod locks;
mod loopback;
mod manager;
mod plugin_input;
mod pod;
mod result;
mod setup;
mod teardown;

#[cfg(test)]
mod tests;

pub use conf::{ConfigLoad, NetworkConfigList, PluginConf, SUPPORTED_VERSIONS, SkippedConfig};
pub use error::{
    CODE_LIMITED_CONNECTIVITY, CODE_PLUGIN_NOT_AVAILABLE, CODE_TRY_AGAIN_LATER, CniCommand,
    CniError, PluginContext, PluginErrorReply,
};
pub use manager::{CniManager, CniSettings, PluginVersions};
pub use pod::{Bandwidth, Dns, IpRange, PodNetwork, PortMapping, Protocol};
pub use result::{CniResult, Interface, IpConfig, IpNet, NetworkStatus, ResultDns, Route};
