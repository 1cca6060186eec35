//! Carrack's typed configuration: the TOML schema, its defaults and its validation.
//!
//! Every key is optional; a missing file means all defaults, and the defaults make a working
//! node. Unknown keys and unusable values stop the start with an error naming the key and the
//! file. `main` and `daemon` load it and hand each subsystem its own sub-struct.

mod error;
mod telemetry;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use error::ConfigError;
pub use telemetry::{MetricsConfig, OtlpProtocol, SAMPLERS, TracesConfig, parse_ratio};

/// Where the config is read from when neither `--config` nor `CARRACK_CONFIG` says otherwise.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/carrack/config.toml";

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Persistent data: image content, layers, records. Survives reboots.
    pub root_dir: PathBuf,
    /// Runtime state: namespaces pins, monitor sockets, the lock. Stale after a reboot.
    pub state_dir: PathBuf,
    /// The CRI gRPC socket (RuntimeService and ImageService).
    pub socket_path: PathBuf,
    /// Logging of the daemon itself.
    pub log: LogConfig,
    /// Cgroup driver and the roots under which pod cgroups are made.
    pub cgroups: CgroupConfig,
    /// CNI network configuration and plugin locations.
    pub cni: CniConfig,
    /// Registry mirrors.
    pub registry: RegistryConfig,
    /// Pull and unpack behaviour.
    pub images: ImagesConfig,
    /// The exec/attach/port-forward streaming server.
    pub streaming: StreamingConfig,
    /// Limits of the CRI gRPC server's replies.
    pub grpc: GrpcConfig,
    /// OpenTelemetry trace export (off by default).
    pub traces: TracesConfig,
    /// The Prometheus `/metrics` endpoint (off by default).
    pub metrics: MetricsConfig,
    /// Restart recovery and the reconciler.
    pub recovery: RecoveryConfig,
}

/// How the daemon logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A `tracing` filter: a level (`info`) or directives (`carrack=debug,tonic=warn`).
    pub level: String,
    /// `text` for people, `json` for log collectors.
    pub format: LogFormat,
}

/// The log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Which cgroup manager owns pod and container cgroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupDriver {
    /// Carrack writes the cgroup filesystem itself.
    Cgroupfs,
    /// systemd owns the tree; Carrack asks it for slices and scopes.
    Systemd,
}

/// Cgroup settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CgroupConfig {
    /// Must match kubelet's `--cgroup-driver`. Default: `systemd` when systemd is PID 1.
    pub driver: CgroupDriver,
    /// Where the cgroup filesystems are mounted.
    pub root: PathBuf,
    /// Parent for pods whose request names no `cgroup_parent`.
    pub default_parent: String,
    /// D-Bus address of systemd's manager (systemd driver). Empty: `DBUS_SYSTEM_BUS_ADDRESS`,
    /// else the system bus `unix:path=/run/dbus/system_bus_socket`.
    pub systemd_bus_address: String,
}

/// CNI settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CniConfig {
    /// Directory of `.conf`/`.conflist` files; the first by name is used.
    pub conf_dir: PathBuf,
    /// Directories searched, in order, for plugin binaries.
    pub bin_dirs: Vec<PathBuf>,
    /// Seconds one plugin run (ADD, DEL, CHECK) may take before it is killed and the pod
    /// operation fails with `DEADLINE_EXCEEDED`.
    pub plugin_timeout_secs: u64,
}

/// Restart recovery and the reconciler.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecoveryConfig {
    /// Seconds between reconciler passes while the daemon runs (one always runs at start):
    /// each pass removes pod and container leftovers no record and no create in flight owns.
    /// 0 = only at start.
    pub reconcile_interval_secs: u64,
}

/// Registry settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// Mirrors keyed by the registry host they stand in for (`docker.io`, `registry.k8s.io`).
    pub mirrors: BTreeMap<String, MirrorConfig>,
}

/// The mirrors of one registry host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MirrorConfig {
    /// Tried in order; `http://` endpoints are spoken to in plain HTTP, `https://` with TLS.
    pub endpoints: Vec<String>,
    /// Whether the real host is tried after every mirror failed.
    pub use_upstream: bool,
}

/// How images are pulled and unpacked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImagesConfig {
    /// Platform chosen from multi-platform indexes, `os/arch[/variant]`; empty = this host's.
    pub platform: String,
    /// Layers of one image downloaded (and unpacked) at the same time.
    pub max_concurrent_downloads: usize,
    /// Seconds a transfer may make no progress before it is aborted.
    pub stall_timeout_secs: u64,
    /// Whether layers may create device nodes (char/block). Off: such entries are skipped.
    pub allow_device_nodes: bool,
    /// Largest uncompressed layer accepted, in bytes (decompression-bomb guard).
    pub max_layer_bytes: u64,
}

impl Default for ImagesConfig {
    fn default() -> Self {
        Self {
            platform: String::new(),
            max_concurrent_downloads: 4,
            stall_timeout_secs: 60,
            allow_device_nodes: false,
            max_layer_bytes: 64 * 1024 * 1024 * 1024,
        }
    }
}

/// The largest CRI reply message kubelet accepts (its gRPC client's cap).
pub const MAX_GRPC_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// The smallest `grpc.max_message_bytes` accepted: room for any single small list item.
const MIN_GRPC_MESSAGE_BYTES: usize = 256;

/// Limits of the CRI gRPC server's replies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcConfig {
    /// Largest reply message in bytes: a unary list whose reply would be larger fails with
    /// `RESOURCE_EXHAUSTED` naming its streamed twin, and streamed lists are cut into messages
    /// no larger. Default and maximum 16 MiB (kubelet's cap); lowered only by tests.
    pub max_message_bytes: usize,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            max_message_bytes: MAX_GRPC_MESSAGE_BYTES,
        }
    }
}

/// Streaming server settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamingConfig {
    /// Listen address; port 0 picks a free port at start.
    pub address: String,
    /// The host name or IP the returned URLs name (containerd's `stream_server_address`
    /// role); empty: the listen IP, or the node's default-route IP when listening on
    /// `0.0.0.0`/`::` (loopback, with a warning, when there is none).
    pub advertise_address: String,
    /// `"self-signed"` to serve HTTPS with a certificate generated at start; `""` (the
    /// default) for plain HTTP unless `tls_cert` and `tls_key` are set.
    pub tls: String,
    /// PEM certificate chain served with `tls_key` (both or neither).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Seconds a stream may pass no data before it is closed (kubelet's default: 4 h).
    pub idle_timeout_secs: u64,
    /// Seconds a returned URL stays usable (kubelet's: 1 min); tests shorten it.
    pub token_ttl_secs: u64,
}

/// The value of `streaming.tls` that asks for a generated certificate.
pub const SELF_SIGNED_TLS: &str = "self-signed";

impl Default for Config {
    fn default() -> Self {
        Self {
            root_dir: PathBuf::from("/var/lib/carrack"),
            state_dir: PathBuf::from("/run/carrack"),
            socket_path: PathBuf::from("/run/carrack/carrack.sock"),
            log: LogConfig::default(),
            cgroups: CgroupConfig::default(),
            cni: CniConfig::default(),
            registry: RegistryConfig::default(),
            images: ImagesConfig::default(),
            streaming: StreamingConfig::default(),
            grpc: GrpcConfig::default(),
            traces: TracesConfig::default(),
            metrics: MetricsConfig::default(),
            recovery: RecoveryConfig::default(),
        }
    }
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        // Leftovers only come from crashes and failed undos, so a pass every ten minutes
        // bounds how long one lingers at the cost of a few directory reads.
        Self {
            reconcile_interval_secs: 600,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".to_owned(),
            format: LogFormat::Text,
        }
    }
}

impl Default for CgroupConfig {
    fn default() -> Self {
        Self {
            driver: detect_cgroup_driver(Path::new("/proc/1/comm")),
            root: PathBuf::from("/sys/fs/cgroup"),
            default_parent: "/carrack".to_owned(),
            systemd_bus_address: String::new(),
        }
    }
}

impl Default for CniConfig {
    fn default() -> Self {
        Self {
            conf_dir: PathBuf::from("/etc/cni/net.d"),
            bin_dirs: vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")],
            plugin_timeout_secs: 60,
        }
    }
}

impl Default for MirrorConfig {
    fn default() -> Self {
        Self {
            endpoints: Vec::new(),
            use_upstream: true,
        }
    }
}

impl Default for StreamingConfig {
    fn default() -> Self {
        Self {
            address: "127.0.0.1:0".to_owned(),
            advertise_address: String::new(),
            tls: String::new(),
            tls_cert: None,
            tls_key: None,
            idle_timeout_secs: 4 * 60 * 60,
            token_ttl_secs: 60,
        }
    }
}

/// `systemd` when PID 1 is systemd (what kubelet's default expects there), else `cgroupfs`.
///
/// Reads the init's command name rather than probing `/run/systemd/system`, because on hosts
/// where `/run` is not a tmpfs that directory can outlive a systemd boot.
pub fn detect_cgroup_driver(init_comm: &Path) -> CgroupDriver {
    match std::fs::read_to_string(init_comm) {
        Ok(comm) if comm.trim() == "systemd" => CgroupDriver::Systemd,
        _ => CgroupDriver::Cgroupfs,
    }
}

impl Config {
    /// Loads `path`; a missing file yields the defaults, any other problem is an error.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                let config = Self::default();
                config.validate(path)?;
                return Ok(config);
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        Self::parse(&text, path)
    }

    /// Parses and validates TOML text; `origin` is only used to name the file in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text).map_err(|err| ConfigError::Parse {
            path: origin.to_owned(),
            message: err.to_string().trim_end().to_owned(),
        })?;
        config.validate(origin)?;
        Ok(config)
    }

    /// The full configuration as TOML, as `carrack config default` prints it.
    pub fn to_toml(&self) -> String {
        // Serialising plain structs of strings, paths and maps cannot fail.
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// The parsed listen address of the streaming server.
    pub fn streaming_address(&self) -> Result<SocketAddr, ConfigError> {
        self.streaming
            .address
            .parse()
            .map_err(|err| ConfigError::Invalid {
                path: PathBuf::from("<config>"),
                key: "streaming.address".to_owned(),
                reason: format!(
                    "`{}` is not an ip:port address: {err}",
                    self.streaming.address
                ),
            })
    }

    fn validate(&self, origin: &Path) -> Result<(), ConfigError> {
        let invalid = |key: &str, reason: String| ConfigError::Invalid {
            path: origin.to_owned(),
            key: key.to_owned(),
            reason,
        };
        for (key, path) in [
            ("root_dir", &self.root_dir),
            ("state_dir", &self.state_dir),
            ("socket_path", &self.socket_path),
            ("cgroups.root", &self.cgroups.root),
            ("cni.conf_dir", &self.cni.conf_dir),
        ] {
            if !path.is_absolute() {
                return Err(invalid(
                    key,
                    format!("`{}` is not an absolute path", path.display()),
                ));
            }
        }
        for dir in &self.cni.bin_dirs {
            if !dir.is_absolute() {
                return Err(invalid(
                    "cni.bin_dirs",
                    format!("`{}` is not an absolute path", dir.display()),
                ));
            }
        }
        if self.root_dir == self.state_dir {
            return Err(invalid(
                "state_dir",
                "must differ from root_dir: state is wiped on reboot, root data is not".to_owned(),
            ));
        }
        validate_log_level(&self.log.level).map_err(|reason| invalid("log.level", reason))?;
        if !self.cgroups.default_parent.starts_with('/') {
            return Err(invalid(
                "cgroups.default_parent",
                format!("`{}` must start with `/`", self.cgroups.default_parent),
            ));
        }
        for (host, mirror) in &self.registry.mirrors {
            let key = format!("registry.mirrors.\"{host}\".endpoints");
            if host.is_empty() || host.contains('/') {
                return Err(invalid(
                    &format!("registry.mirrors.\"{host}\""),
                    "a mirror table is keyed by a registry host such as `docker.io`".to_owned(),
                ));
            }
            for endpoint in &mirror.endpoints {
                validate_endpoint(endpoint).map_err(|reason| invalid(&key, reason))?;
            }
        }
        if self.cni.plugin_timeout_secs == 0 {
            return Err(invalid(
                "cni.plugin_timeout_secs",
                "must be at least 1".to_owned(),
            ));
        }
        if self.images.max_concurrent_downloads == 0 {
            return Err(invalid(
                "images.max_concurrent_downloads",
                "must be at least 1".to_owned(),
            ));
        }
        if self.images.stall_timeout_secs == 0 {
            return Err(invalid(
                "images.stall_timeout_secs",
                "must be at least 1".to_owned(),
            ));
        }
        if !self.images.platform.is_empty() {
            let parts: Vec<&str> = self.images.platform.split('/').collect();
            if !(2..=3).contains(&parts.len()) || parts.iter().any(|part| part.is_empty()) {
                return Err(invalid(
                    "images.platform",
                    format!("`{}` is not os/arch[/variant]", self.images.platform),
                ));
            }
        }
        if !(MIN_GRPC_MESSAGE_BYTES..=MAX_GRPC_MESSAGE_BYTES).contains(&self.grpc.max_message_bytes)
        {
            return Err(invalid(
                "grpc.max_message_bytes",
                format!(
                    "{} is outside {MIN_GRPC_MESSAGE_BYTES}..={MAX_GRPC_MESSAGE_BYTES}",
                    self.grpc.max_message_bytes
                ),
            ));
        }
        if let Err(err) = self.streaming.address.parse::<SocketAddr>() {
            return Err(invalid(
                "streaming.address",
                format!(
                    "`{}` is not an ip:port address: {err}",
                    self.streaming.address
                ),
            ));
        }
        if let Some((key, reason)) = self.traces.problem() {
            return Err(invalid(key, reason));
        }
        self.metrics
            .listen_address()
            .map_err(|reason| invalid("metrics.address", reason))?;
        self.validate_streaming(origin)
    }

    fn validate_streaming(&self, origin: &Path) -> Result<(), ConfigError> {
        let invalid = |key: &str, reason: String| ConfigError::Invalid {
            path: origin.to_owned(),
            key: key.to_owned(),
            reason,
        };
        let streaming = &self.streaming;
        let host = &streaming.advertise_address;
        let is_name = host.len() <= 253
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !host.is_empty() && host.parse::<std::net::IpAddr>().is_err() && !is_name {
            return Err(invalid(
                "streaming.advertise_address",
                format!("`{host}` is not an IP address or a host name (no port)"),
            ));
        }
        if !streaming.tls.is_empty() && streaming.tls != SELF_SIGNED_TLS {
            return Err(invalid(
                "streaming.tls",
                format!("`{}` is not \"\" or \"{SELF_SIGNED_TLS}\"", streaming.tls),
            ));
        }
        match (&streaming.tls_cert, &streaming.tls_key) {
            (Some(_), None) | (None, Some(_)) => {
                return Err(invalid(
                    "streaming.tls_cert",
                    "tls_cert and tls_key go together".to_owned(),
                ));
            }
            (Some(_), Some(_)) if streaming.tls == SELF_SIGNED_TLS => {
                return Err(invalid(
                    "streaming.tls",
                    "a self-signed certificate and tls_cert/tls_key exclude each other".to_owned(),
                ));
            }
            _ => {}
        }
        for (key, path) in [
            ("streaming.tls_cert", &streaming.tls_cert),
            ("streaming.tls_key", &streaming.tls_key),
        ] {
            if let Some(path) = path
                && !path.is_absolute()
            {
                return Err(invalid(
                    key,
                    format!("`{}` is not an absolute path", path.display()),
                ));
            }
        }
        for (key, value) in [
            ("streaming.idle_timeout_secs", streaming.idle_timeout_secs),
            ("streaming.token_ttl_secs", streaming.token_ttl_secs),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be at least 1".to_owned()));
            }
        }
        Ok(())
    }
}

/// A level (`info`) or comma-separated `target=level` directives (`carrack=debug,h2=warn`).
///
/// `EnvFilter` itself accepts almost any string (a bare word is a target name), which would turn
/// a typo into silent logging changes; we require every directive to end in a known level.
fn validate_log_level(filter: &str) -> Result<(), String> {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    for directive in filter.split(',') {
        let level = directive.rsplit('=').next().unwrap_or_default().trim();
        if !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "`{directive}` in `{filter}` does not end in one of {}",
                LEVELS.join(", ")
            ));
        }
    }
    tracing_subscriber::EnvFilter::try_new(filter)
        .map(drop)
        .map_err(|err| format!("`{filter}`: {err}"))
}

/// A mirror endpoint must be `http://host[:port][/path]` or `https://…`.
fn validate_endpoint(endpoint: &str) -> Result<(), String> {
    let rest = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"))
        .ok_or_else(|| format!("`{endpoint}` must start with http:// or https://"))?;
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(format!("`{endpoint}` has no host"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/carrack/test.toml"))
    }

    #[test]
    fn shipped_config_file_loads_and_states_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/config.toml");
        let config = Config::load(&path).unwrap();
        assert_eq!(
            config,
            Config::default(),
            "deploy/config.toml must state the defaults"
        );
        let kind = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kind/config.toml");
        let config = Config::load(&kind).unwrap();
        assert_eq!(config.cgroups.driver, CgroupDriver::Systemd);
    }

    /// Equality with the defaults cannot notice a key the file leaves out (absent keys take
    /// their defaults), so every key the defaults serialize must be written in its table,
    /// set or commented out.
    #[test]
    fn shipped_config_file_names_every_key() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/config.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let mut keys_by_table: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut table = String::new();
        for line in text.lines() {
            let line = line.trim_start_matches('#').trim();
            if line.starts_with("[registry") {
                // The commented mirror example is not a table of the defaults.
                table = "registry".to_owned();
            } else if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                table = name.to_owned();
            } else if let Some((key, _)) = line.split_once(" = ") {
                keys_by_table
                    .entry(table.clone())
                    .or_default()
                    .push(key.to_owned());
            }
        }
        let defaults = toml::Value::try_from(Config::default()).unwrap();
        let mut missing = Vec::new();
        for (key, value) in defaults.as_table().unwrap() {
            let written = |table: &str, key: &str| {
                keys_by_table
                    .get(table)
                    .is_some_and(|keys| keys.iter().any(|k| k == key))
            };
            match value.as_table() {
                // Mirrors are a map of hosts, not keys with defaults.
                Some(_) if key == "registry" => {}
                Some(inner) => missing.extend(
                    inner
                        .keys()
                        .filter(|inner_key| !written(key, inner_key))
                        .map(|inner_key| format!("{key}.{inner_key}")),
                ),
                None if !written("", key) => missing.push(key.clone()),
                None => {}
            }
        }
        assert!(
            missing.is_empty(),
            "deploy/config.toml leaves out {missing:?}"
        );
    }

    #[test]
    fn empty_file_gives_defaults() {
        let config = parse("").unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.socket_path, Path::new("/run/carrack/carrack.sock"));
        assert_eq!(config.streaming_address().unwrap().port(), 0);
    }

    #[test]
    fn missing_file_gives_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::load(&dir.path().join("absent.toml")).unwrap();
        assert_eq!(config, Config::default());
    }

    #[test]
    fn default_config_round_trips_through_toml() {
        let mut config = Config::default();
        config.registry.mirrors.insert(
            "docker.io".to_owned(),
            MirrorConfig {
                endpoints: vec!["http://127.0.0.1:5000".to_owned()],
                use_upstream: false,
            },
        );
        let text = config.to_toml();
        assert_eq!(parse(&text).unwrap(), config);
    }

    #[test]
    fn unknown_key_names_key_and_file() {
        let err = parse("root_dir = \"/x\"\nbogus_key = 1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("bogus_key"), "{err}");
        assert!(err.contains("/etc/carrack/test.toml"), "{err}");
    }

    #[test]
    fn unknown_nested_key_is_refused() {
        let err = parse("[cni]\nconfdir = \"/x\"\n").unwrap_err().to_string();
        assert!(err.contains("confdir"), "{err}");
    }

    #[test]
    fn bad_enum_value_names_key() {
        let err = parse("[cgroups]\ndriver = \"bogus\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("driver"), "{err}");
        assert!(err.contains("bogus"), "{err}");
    }

    #[test]
    fn relative_path_is_refused() {
        let err = parse("root_dir = \"var/lib\"\n").unwrap_err().to_string();
        assert!(err.contains("`root_dir`"), "{err}");
    }

    #[test]
    fn bad_log_level_and_address_are_refused() {
        let err = parse("[log]\nlevel = \"loud!!\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("log.level"), "{err}");
        parse("[log]\nlevel = \"carrack=debug,h2=warn\"\n").unwrap();
        let err = parse("[streaming]\naddress = \"localhost\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("streaming.address"), "{err}");
    }

    #[test]
    fn streaming_tls_settings_are_checked() {
        let config = parse("[streaming]\ntls = \"self-signed\"\ntoken_ttl_secs = 2\n").unwrap();
        assert_eq!(config.streaming.tls, SELF_SIGNED_TLS);
        assert_eq!(config.streaming.token_ttl_secs, 2);
        assert_eq!(Config::default().streaming.idle_timeout_secs, 4 * 3600);
        let err = parse("[streaming]\ntls = \"yes\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("streaming.tls"), "{err}");
        let err = parse("[streaming]\ntls_cert = \"/c.pem\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("go together"), "{err}");
        let err = parse("[streaming]\ntls_cert = \"c.pem\"\ntls_key = \"/k.pem\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("streaming.tls_cert"), "{err}");
        let err = parse("[streaming]\nidle_timeout_secs = 0\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("idle_timeout_secs"), "{err}");

        for good in ["node-1.example", "10.0.0.5", "fd00::1"] {
            let config = parse(&format!("[streaming]\nadvertise_address = \"{good}\"\n"))
                .unwrap_or_else(|err| panic!("{good}: {err}"));
            assert_eq!(config.streaming.advertise_address, good);
        }
        for bad in ["10.0.0.5:10010", "http://node", "a b", "-node"] {
            let err = parse(&format!("[streaming]\nadvertise_address = \"{bad}\"\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("streaming.advertise_address"), "{bad}: {err}");
        }
    }

    #[test]
    fn reconcile_interval_and_plugin_timeout() {
        let defaults = parse("").unwrap();
        assert_eq!(defaults.recovery.reconcile_interval_secs, 600);
        assert_eq!(defaults.cni.plugin_timeout_secs, 60);
        let config =
            parse("[recovery]\nreconcile_interval_secs = 0\n[cni]\nplugin_timeout_secs = 2\n")
                .unwrap();
        assert_eq!(config.recovery.reconcile_interval_secs, 0);
        assert_eq!(config.cni.plugin_timeout_secs, 2);
        let err = parse("[cni]\nplugin_timeout_secs = 0\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("cni.plugin_timeout_secs"), "{err}");
        let err = parse("[recovery]\nreconcile_every = 5\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("reconcile_every"), "{err}");
    }

    #[test]
    fn message_limit_is_bounded_by_kubelets_cap() {
        assert_eq!(
            parse("").unwrap().grpc.max_message_bytes,
            MAX_GRPC_MESSAGE_BYTES
        );
        assert_eq!(
            parse("[grpc]\nmax_message_bytes = 1024\n")
                .unwrap()
                .grpc
                .max_message_bytes,
            1024
        );
        for bad in ["10", "16777217"] {
            let err = parse(&format!("[grpc]\nmax_message_bytes = {bad}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("grpc.max_message_bytes"), "{err}");
        }
    }

    #[test]
    fn mirror_endpoint_needs_scheme() {
        let err = parse("[registry.mirrors.\"docker.io\"]\nendpoints = [\"127.0.0.1:5000\"]\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("registry.mirrors.\"docker.io\".endpoints"),
            "{err}"
        );
        let ok = parse(
            "[registry.mirrors.\"docker.io\"]\nendpoints = [\"http://127.0.0.1:5000\"]\nuse_upstream = false\n",
        )
        .unwrap();
        assert!(!ok.registry.mirrors["docker.io"].use_upstream);
    }

    #[test]
    fn cgroup_driver_follows_init() {
        let dir = tempfile::tempdir().unwrap();
        let comm = dir.path().join("comm");
        std::fs::write(&comm, "systemd\n").unwrap();
        assert_eq!(detect_cgroup_driver(&comm), CgroupDriver::Systemd);
        std::fs::write(&comm, "tini\n").unwrap();
        assert_eq!(detect_cgroup_driver(&comm), CgroupDriver::Cgroupfs);
        assert_eq!(
            detect_cgroup_driver(&dir.path().join("absent")),
            CgroupDriver::Cgroupfs
        );
    }
}
