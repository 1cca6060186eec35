//! Errors of the CNI subsystem: config loading, plugin lookup, plugin runs and the result cache.
//!
//! Every variant carries the context an operator needs to act without re-running anything: the
//! network and its conf file, the plugin, the CNI command, the container (pod sandbox) id, and
//! for a failed plugin run its exit status, the error object it printed (`code`, `msg`,
//! `details`) and the tail of its stderr. Context that is common to every plugin run lives in a
//! boxed [`PluginContext`] so that `Result<_, CniError>` stays small.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::error_kind::ErrorKind;

use super::conf::SkippedConfig;

/// The CNI verb a plugin is run with (`CNI_COMMAND`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CniCommand {
    /// Attach the container to the network.
    Add,
    /// Release what `ADD` set up; must tolerate a missing netns and repeated calls.
    Del,
    /// Verify that what `ADD` set up is still in place (spec 0.4.0 and later).
    Check,
    /// Ask whether the plugin is ready to serve `ADD` (spec 1.1.0 and later).
    Status,
    /// Ask which spec versions the plugin supports.
    Version,
}

impl CniCommand {
    /// The value of `CNI_COMMAND`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Add => "ADD",
            Self::Del => "DEL",
            Self::Check => "CHECK",
            Self::Status => "STATUS",
            Self::Version => "VERSION",
        }
    }
}

impl fmt::Display for CniCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who was run, for what, on which network: the context shared by every plugin-run error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginContext {
    /// The plugin `type` (binary name), e.g. `bridge`.
    pub plugin: String,
    /// The network (`name` of the conflist).
    pub network: String,
    /// The conf file the network was loaded from (as recorded at `ADD` time for teardowns).
    pub conf_path: PathBuf,
    /// The CNI verb.
    pub command: CniCommand,
    /// `CNI_CONTAINERID`: the pod sandbox id (empty for `VERSION`/`STATUS`).
    pub container_id: String,
}

impl fmt::Display for PluginContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cni plugin {} {}", self.plugin, self.command)?;
        if !self.container_id.is_empty() {
            write!(f, " for {}", self.container_id)?;
        }
        if !self.network.is_empty() {
            write!(f, " (network {}", self.network)?;
            if !self.conf_path.as_os_str().is_empty() {
                write!(f, " from {}", self.conf_path.display())?;
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// The error object a plugin prints on stdout when it fails (CNI spec "Error" result).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PluginErrorReply {
    /// The error code: 1-99 are reserved by the spec (e.g. 7 = invalid network config,
    /// 11 = try again later), 100+ are plugin-specific.
    pub code: u32,
    /// A short message.
    pub msg: String,
    /// Longer details, possibly empty.
    pub details: String,
}

impl fmt::Display for PluginErrorReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (code {})", self.msg, self.code)?;
        if !self.details.is_empty() {
            write!(f, ": {}", self.details)?;
        }
        Ok(())
    }
}

/// Spec error code 11: the plugin asks to be retried later.
pub const CODE_TRY_AGAIN_LATER: u32 = 11;
/// Spec error code 50: the plugin is not available (`STATUS`).
pub const CODE_PLUGIN_NOT_AVAILABLE: u32 = 50;
/// Spec error code 51: the plugin is available but with limited connectivity (`STATUS`).
pub const CODE_LIMITED_CONNECTIVITY: u32 = 51;

/// A failure of the CNI subsystem.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    /// No usable network config in the conf dir (the node's network is not ready).
    #[error("no network config found in {}{}", conf_dir.display(), skipped_summary(skipped))]
    NoNetworkConfig {
        /// The directory searched.
        conf_dir: PathBuf,
        /// Candidate files that were refused, with the reason.
        skipped: Vec<SkippedConfig>,
    },
    /// A plugin named by the network config is in none of the bin dirs.
    #[error(
        "plugin {plugin} not found in {search_path} (needed by network {network} from {})",
        conf_path.display()
    )]
    PluginNotFound {
        /// The plugin `type`.
        plugin: String,
        /// The network needing it.
        network: String,
        /// The conf file of that network.
        conf_path: PathBuf,
        /// The bin dirs searched, joined by `:`.
        search_path: String,
    },
    /// The request cannot be turned into a plugin invocation (bad id, name or netns path).
    #[error("invalid cni request for {container_id:?}: {reason}")]
    InvalidArgument {
        /// The pod sandbox id as given.
        container_id: String,
        /// What is wrong.
        reason: String,
    },
    /// The plugin binary could not be started.
    #[error("{context}: cannot execute {}: {source}", path.display())]
    Spawn {
        /// What was being run.
        context: Box<PluginContext>,
        /// The binary (or the exec prefix's first element).
        path: PathBuf,
        /// The OS failure.
        source: std::io::Error,
    },
    /// Talking to the plugin over its pipes failed.
    #[error("{context}: i/o with the plugin failed: {source}")]
    PluginIo {
        /// What was being run.
        context: Box<PluginContext>,
        /// The OS failure.
        source: std::io::Error,
    },
    /// The plugin did not finish within the timeout and was killed (with its process group).
    #[error("{context}: timed out after {timeout:?}, killed")]
    Timeout {
        /// What was being run.
        context: Box<PluginContext>,
        /// The limit that passed.
        timeout: Duration,
    },
    /// The plugin exited unsuccessfully.
    #[error("{context}: {}", failure_summary(*exit_code, *signal, error.as_deref(), stderr))]
    PluginFailed {
        /// What was being run.
        context: Box<PluginContext>,
        /// The exit code, when it exited (rather than being killed by a signal).
        exit_code: Option<i32>,
        /// The signal that killed it, if any.
        signal: Option<i32>,
        /// The error object the plugin printed on stdout, when it printed a parsable one.
        error: Option<Box<PluginErrorReply>>,
        /// The last few KiB of its stderr (lossily decoded, trimmed), possibly empty.
        stderr: String,
    },
    /// The plugin succeeded but its stdout is not a result this runtime can use.
    #[error("{context}: invalid result: {reason}")]
    InvalidResult {
        /// What was being run.
        context: Box<PluginContext>,
        /// What is wrong with the output (it quotes the start of the output).
        reason: String,
    },
    /// Reading, writing or removing a cached result failed.
    #[error("cni result cache i/o on {} for {container_id}: {source}", path.display())]
    Cache {
        /// The cache file or directory.
        path: PathBuf,
        /// The pod sandbox id.
        container_id: String,
        /// The OS failure.
        source: std::io::Error,
    },
    /// A cached result exists but cannot be decoded.
    #[error("corrupt cni result cache {} for {container_id}: {reason}", path.display())]
    CacheCorrupt {
        /// The cache file.
        path: PathBuf,
        /// The pod sandbox id.
        container_id: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// The operation's task ended without finishing (the runtime is shutting down).
    #[error("cni operation for {container_id} was cancelled")]
    Cancelled {
        /// The pod sandbox id.
        container_id: String,
    },
    /// The pod has no cached `ADD` result (it was never attached, or already torn down).
    #[error("no cni result cached for {container_id}")]
    NotAttached {
        /// The pod sandbox id.
        container_id: String,
    },
}

impl CniError {
    /// The kind of failure, for the one place that maps errors to gRPC codes.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::NoNetworkConfig { .. } | Self::PluginNotFound { .. } => {
                ErrorKind::FailedPrecondition
            }
            Self::InvalidArgument { .. } => ErrorKind::InvalidArgument,
            Self::Spawn { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                ErrorKind::FailedPrecondition
            }
            Self::Spawn { .. } | Self::PluginIo { .. } | Self::InvalidResult { .. } => {
                ErrorKind::Internal
            }
            Self::Timeout { .. } => ErrorKind::DeadlineExceeded,
            Self::PluginFailed { error, .. } => match error.as_deref().map(|reply| reply.code) {
                Some(CODE_TRY_AGAIN_LATER | CODE_PLUGIN_NOT_AVAILABLE) => ErrorKind::Unavailable,
                // 1 = incompatible version, 7 = invalid network config: the node's config is
                // at fault, not the request.
                Some(1 | 7) => ErrorKind::FailedPrecondition,
                _ => ErrorKind::Internal,
            },
            Self::Cache { source, .. } if source.raw_os_error() == Some(libc::ENOSPC) => {
                ErrorKind::ResourceExhausted
            }
            Self::Cache { .. } | Self::CacheCorrupt { .. } => ErrorKind::Internal,
            Self::NotAttached { .. } => ErrorKind::NotFound,
            Self::Cancelled { .. } => ErrorKind::Cancelled,
        }
    }

    /// The plugin's error object, when this is a plugin failure that printed one.
    pub fn plugin_reply(&self) -> Option<&PluginErrorReply> {
        match self {
            Self::PluginFailed { error, .. } => error.as_deref(),
            _ => None,
        }
    }

    /// The plugin-run context, for the variants that come from running a plugin.
    pub fn plugin_context(&self) -> Option<&PluginContext> {
        match self {
            Self::Spawn { context, .. }
            | Self::PluginIo { context, .. }
            | Self::Timeout { context, .. }
            | Self::PluginFailed { context, .. }
            | Self::InvalidResult { context, .. } => Some(context),
            _ => None,
        }
    }
}

fn skipped_summary(skipped: &[SkippedConfig]) -> String {
    if skipped.is_empty() {
        return String::new();
    }
    let reasons: Vec<String> = skipped.iter().map(ToString::to_string).collect();
    format!(" (skipped: {})", reasons.join("; "))
}

fn failure_summary(
    exit_code: Option<i32>,
    signal: Option<i32>,
    error: Option<&PluginErrorReply>,
    stderr: &str,
) -> String {
    let mut text = match (exit_code, signal) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => "failed".to_owned(),
    };
    if let Some(reply) = error {
        text.push_str(": ");
        text.push_str(&reply.to_string());
    }
    if !stderr.is_empty() {
        text.push_str("; stderr: ");
        text.push_str(stderr);
    }
    text
}
