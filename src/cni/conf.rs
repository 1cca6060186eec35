//! Network config files: finding, parsing and validating the node's network in the conf dir.
//!
//! Selection follows libcni's convention: the files named `*.conflist`, `*.conf` and `*.json`
//! in the conf dir are tried in lexical order of their names, and the first *valid* one is the
//! node's network. A single-plugin file (`.conf`/`.json`) is wrapped into a one-plugin list.
//! Files tried before the winner and refused are reported as [`SkippedConfig`]s with the reason,
//! so `status()` can say why the network is not ready.
//!
//! Change detection is a [`DirFingerprint`]: the name, device, inode, size, mtime and ctime of
//! every candidate file (following symlinks, so a ConfigMap-style `..data` swap is seen). The
//! manager takes one on each call and reloads only when it differs from the last load's, see
//! `manager.rs` for why this was chosen over an inotify watch.

use std::ffi::OsString;
use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value};

/// The spec versions this runtime can drive (all result formats from 0.3.0 on).
pub const SUPPORTED_VERSIONS: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// File name endings that are candidate network configs, as in libcni.
const EXTENSIONS: [&str; 3] = ["conflist", "conf", "json"];

/// A conf file larger than this is refused rather than read (they are a few hundred bytes).
const MAX_CONF_BYTES: u64 = 1024 * 1024;

/// A file changed this recently may change again within the same timestamp tick without its
/// fingerprint changing ("racy" in git's sense), so the next call reloads regardless.
const RACY_WINDOW: Duration = Duration::from_secs(2);

/// One validated network: a list of plugins run in order on `ADD`, in reverse on `DEL`.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfigList {
    /// The network name (`name`), injected into every plugin's config.
    pub name: String,
    /// The spec version the plugins are driven with (`cniVersion`, or the highest supported
    /// entry of `cniVersions`).
    pub cni_version: String,
    /// `disableCheck`: the network asks the runtime never to run `CHECK`.
    pub disable_check: bool,
    /// The plugins, in `ADD` order.
    pub plugins: Vec<PluginConf>,
    /// The file it was loaded from.
    pub source: PathBuf,
    /// The list in conflist form (a `.conf` file is wrapped), as cached for teardown replay.
    pub raw: Value,
}

/// One plugin entry of a network config list.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginConf {
    /// The plugin `type`: the binary name looked up in the bin dirs.
    pub plugin_type: String,
    /// The capabilities the plugin declares (`capabilities` keys set to `true`); only these
    /// are passed in its `runtimeConfig`.
    pub capabilities: Vec<String>,
    /// The plugin's config object as written in the file.
    pub raw: Map<String, Value>,
}

/// A candidate file that was not used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedConfig {
    /// The file (or the conf dir itself when it could not be listed).
    pub path: PathBuf,
    /// Why it was refused, lowercase.
    pub reason: String,
}

impl fmt::Display for SkippedConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason)
    }
}

/// The outcome of scanning the conf dir.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigLoad {
    /// The first valid network, if any.
    pub selected: Option<std::sync::Arc<NetworkConfigList>>,
    /// Candidates before it (or all of them) that were refused.
    pub skipped: Vec<SkippedConfig>,
}

impl NetworkConfigList {
    /// Parses a conf file's bytes; `source` decides the format (`.conflist` = list, else a
    /// single plugin) and is recorded in the result. Errors are lowercase reasons.
    pub fn parse(bytes: &[u8], source: &Path) -> Result<Self, String> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|err| format!("invalid json: {err}"))?;
        let is_list = source.extension().is_some_and(|ext| ext == "conflist");
        if is_list {
            Self::from_list_value(value, source)
        } else {
            Self::from_single_value(value, source)
        }
    }

    /// Validates a conflist-form value (`name`, `cniVersion`, `plugins: [{type, ...}]`).
    pub fn from_list_value(value: Value, source: &Path) -> Result<Self, String> {
        let Value::Object(object) = &value else {
            return Err("not a json object".to_owned());
        };
        let name = validate_name(object.get("name"))?;
        let cni_version = select_version(object)?;
        let disable_check = match object.get("disableCheck") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(flag)) => *flag,
            Some(Value::String(text)) if text == "true" || text == "false" => text == "true",
            Some(other) => return Err(format!("disableCheck must be a boolean, got {other}")),
        };
        let Some(Value::Array(entries)) = object.get("plugins") else {
            return Err("plugins is missing or not a list".to_owned());
        };
        if entries.is_empty() {
            return Err("plugins is empty".to_owned());
        }
        let plugins = entries
            .iter()
            .enumerate()
            .map(|(index, entry)| {
                PluginConf::from_value(entry)
                    .map_err(|reason| format!("plugins[{index}]: {reason}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            name,
            cni_version,
            disable_check,
            plugins,
            source: source.to_owned(),
            raw: value,
        })
    }

    /// Validates a single-plugin config and wraps it into a one-plugin list.
    fn from_single_value(value: Value, source: &Path) -> Result<Self, String> {
        let Value::Object(object) = &value else {
            return Err("not a json object".to_owned());
        };
        if object.get("type").is_none() && object.get("plugins").is_some() {
            return Err("a plugin list must be in a .conflist file".to_owned());
        }
        let mut list = Map::new();
        for key in ["name", "cniVersion", "cniVersions", "disableCheck"] {
            if let Some(field) = object.get(key) {
                list.insert(key.to_owned(), field.clone());
            }
        }
        list.insert("plugins".to_owned(), Value::Array(vec![value.clone()]));
        Self::from_list_value(Value::Object(list), source)
    }

    /// Whether the list's spec version is at least `major.minor.patch`.
    pub fn version_at_least(&self, major: u32, minor: u32, patch: u32) -> bool {
        parse_version(&self.cni_version).is_some_and(|version| version >= (major, minor, patch))
    }
}

impl PluginConf {
    fn from_value(value: &Value) -> Result<Self, String> {
        let Value::Object(raw) = value else {
            return Err("not a json object".to_owned());
        };
        let plugin_type = match raw.get("type") {
            Some(Value::String(name)) => name.clone(),
            Some(_) => return Err("type is not a string".to_owned()),
            None => return Err("type is missing".to_owned()),
        };
        if plugin_type.is_empty()
            || plugin_type == "."
            || plugin_type == ".."
            || plugin_type.contains(['/', '\0'])
        {
            return Err(format!("type {plugin_type:?} is not a plugin binary name"));
        }
        let capabilities = match raw.get("capabilities") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Object(caps)) => caps
                .iter()
                .filter(|(_, enabled)| enabled.as_bool() == Some(true))
                .map(|(name, _)| name.clone())
                .collect(),
            Some(_) => return Err("capabilities is not an object".to_owned()),
        };
        Ok(Self {
            plugin_type,
            capabilities,
            raw: raw.clone(),
        })
    }

    /// Whether the plugin declared the runtime capability `name` (e.g. `portMappings`).
    pub fn has_capability(&self, name: &str) -> bool {
        self.capabilities.iter().any(|cap| cap == name)
    }
}

/// The spec's network name rule: `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`.
fn validate_name(name: Option<&Value>) -> Result<String, String> {
    let name = match name {
        Some(Value::String(name)) => name,
        Some(_) => return Err("name is not a string".to_owned()),
        None => return Err("name is missing".to_owned()),
    };
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if valid {
        Ok(name.clone())
    } else {
        Err(format!(
            "name {name:?} is not a valid network name ([a-zA-Z0-9][a-zA-Z0-9_.-]*)"
        ))
    }
}

/// `cniVersions` (spec 1.1: the highest one we support wins) or else `cniVersion`.
fn select_version(object: &Map<String, Value>) -> Result<String, String> {
    if let Some(Value::Array(versions)) = object.get("cniVersions") {
        let best = versions
            .iter()
            .filter_map(Value::as_str)
            .filter(|version| SUPPORTED_VERSIONS.contains(version))
            .max_by_key(|version| parse_version(version));
        if let Some(best) = best {
            return Ok(best.to_owned());
        }
        if object.get("cniVersion").is_none() {
            return Err(format!(
                "none of cniVersions is supported (supported: {})",
                SUPPORTED_VERSIONS.join(", ")
            ));
        }
    }
    match object.get("cniVersion") {
        Some(Value::String(version)) if SUPPORTED_VERSIONS.contains(&version.as_str()) => {
            Ok(version.clone())
        }
        Some(Value::String(version)) => Err(format!(
            "cniVersion {version:?} is not supported (supported: {})",
            SUPPORTED_VERSIONS.join(", ")
        )),
        Some(_) => Err("cniVersion is not a string".to_owned()),
        None => Err("cniVersion is missing".to_owned()),
    }
}

/// `"1.0.0"` → `(1, 0, 0)`.
pub(crate) fn parse_version(version: &str) -> Option<(u32, u32, u32)> {
    let mut parts = version.split('.').map(str::parse::<u32>);
    let major = parts.next()?.ok()?;
    let minor = parts.next()?.ok()?;
    let patch = parts.next()?.ok()?;
    parts.next().is_none().then_some((major, minor, patch))
}

/// Candidate file names in the conf dir, sorted lexically; `Err` when the dir cannot be listed.
fn candidates(dir: &Path) -> std::io::Result<Vec<OsString>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let matches = Path::new(&name)
            .extension()
            .and_then(|ext| ext.to_str())
            .is_some_and(|ext| EXTENSIONS.contains(&ext));
        if matches {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Scans `dir` and returns the first valid network plus the candidates refused before it.
pub fn load_dir(dir: &Path) -> ConfigLoad {
    let mut load = ConfigLoad::default();
    let names = match candidates(dir) {
        Ok(names) => names,
        Err(err) => {
            load.skipped.push(SkippedConfig {
                path: dir.to_owned(),
                reason: format!("cannot list directory: {err}"),
            });
            return load;
        }
    };
    for name in names {
        let path = dir.join(&name);
        match load_file(&path) {
            Ok(list) => {
                load.selected = Some(std::sync::Arc::new(list));
                break;
            }
            Err(reason) => load.skipped.push(SkippedConfig { path, reason }),
        }
    }
    load
}

fn load_file(path: &Path) -> Result<NetworkConfigList, String> {
    let metadata = std::fs::metadata(path).map_err(|err| format!("cannot stat: {err}"))?;
    if !metadata.is_file() {
        return Err("not a regular file".to_owned());
    }
    if metadata.len() > MAX_CONF_BYTES {
        return Err(format!(
            "file is {} bytes, more than the {MAX_CONF_BYTES} accepted",
            metadata.len()
        ));
    }
    let bytes = std::fs::read(path).map_err(|err| format!("cannot read: {err}"))?;
    NetworkConfigList::parse(&bytes, path)
}

/// What a conf dir looked like: equal fingerprints mean no candidate file changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirFingerprint {
    /// Per candidate, sorted by name: (name, stat identity) or the stat error kind.
    entries: Vec<(OsString, Result<FileStamp, std::io::ErrorKind>)>,
    /// Set when the dir could not be listed.
    list_error: Option<std::io::ErrorKind>,
    /// Some file changed within [`RACY_WINDOW`] of taking this fingerprint; it must not be
    /// trusted to detect the next change.
    racy: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl DirFingerprint {
    /// Lists `dir` and stats every candidate (following symlinks). Costs one `getdents` and one
    /// `stat` per candidate: microseconds for the usual one to three files.
    pub fn take(dir: &Path) -> Self {
        let names = match candidates(dir) {
            Ok(names) => names,
            Err(err) => {
                return Self {
                    entries: Vec::new(),
                    list_error: Some(err.kind()),
                    racy: false,
                };
            }
        };
        let recent = SystemTime::now()
            .checked_sub(RACY_WINDOW)
            .and_then(|time| time.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map_or(0, |since| {
                i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
            });
        let mut racy = false;
        let entries = names
            .into_iter()
            .map(|name| {
                let stamp = std::fs::metadata(dir.join(&name))
                    .map(|meta| FileStamp {
                        dev: meta.dev(),
                        ino: meta.ino(),
                        size: meta.size(),
                        mtime: (meta.mtime(), meta.mtime_nsec()),
                        ctime: (meta.ctime(), meta.ctime_nsec()),
                    })
                    .map_err(|err| err.kind());
                if let Ok(stamp) = &stamp {
                    racy |= stamp.mtime.0 >= recent || stamp.ctime.0 >= recent;
                }
                (name, stamp)
            })
            .collect();
        Self {
            entries,
            list_error: None,
            racy,
        }
    }

    /// Whether a load made at `self` is still current, judged by a fresh fingerprint `now`.
    pub fn still_matches(&self, now: &Self) -> bool {
        !self.racy && self.entries == now.entries && self.list_error == now.list_error
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).expect("write conf");
    }

    const BRIDGE_LIST: &str = r#"{"cniVersion":"1.0.0","name":"net-a","plugins":[
        {"type":"bridge","bridge":"cni0","ipam":{"type":"host-local"}},
        {"type":"portmap","capabilities":{"portMappings":true,"other":false}}]}"#;

    #[test]
    fn cni_conf_first_valid_in_lexical_order_wins() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "30-later.conflist", BRIDGE_LIST);
        write(dir.path(), "10-broken.conflist", "{not json");
        write(
            dir.path(),
            "20-old.conflist",
            r#"{"cniVersion":"0.2.0","name":"old","plugins":[{"type":"bridge"}]}"#,
        );
        write(dir.path(), "05-notes.txt", "ignored");
        write(
            dir.path(),
            "15-no-type.conf",
            r#"{"cniVersion":"0.4.0","name":"x"}"#,
        );
        let load = load_dir(dir.path());
        let selected = load.selected.expect("a network");
        assert_eq!(selected.name, "net-a");
        assert_eq!(selected.source, dir.path().join("30-later.conflist"));
        assert_eq!(selected.plugins.len(), 2);
        assert_eq!(selected.plugins[1].capabilities, vec!["portMappings"]);
        let skipped: Vec<_> = load
            .skipped
            .iter()
            .map(|skip| {
                skip.path
                    .file_name()
                    .and_then(|name| name.to_str())
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        assert_eq!(
            skipped,
            ["10-broken.conflist", "15-no-type.conf", "20-old.conflist"]
        );
        assert!(load.skipped[0].reason.contains("invalid json"));
        assert!(load.skipped[1].reason.contains("type is missing"));
        assert!(load.skipped[2].reason.contains("0.2.0"));
    }

    #[test]
    fn cni_conf_single_plugin_is_wrapped() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(
            dir.path(),
            "10-single.conf",
            r#"{"cniVersion":"0.4.0","name":"single","type":"bridge","bridge":"br9"}"#,
        );
        let list = load_dir(dir.path()).selected.expect("a network");
        assert_eq!(list.name, "single");
        assert_eq!(list.cni_version, "0.4.0");
        assert_eq!(list.plugins.len(), 1);
        assert_eq!(list.plugins[0].plugin_type, "bridge");
        assert_eq!(list.raw["plugins"][0]["bridge"], "br9");
        assert!(list.version_at_least(0, 4, 0));
        assert!(!list.version_at_least(1, 0, 0));
    }

    #[test]
    fn cni_conf_validation_reasons() {
        let path = Path::new("/x/a.conflist");
        let cases = [
            (
                r#"{"cniVersion":"1.0.0","plugins":[{"type":"a"}]}"#,
                "name is missing",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"-bad","plugins":[{"type":"a"}]}"#,
                "not a valid network name",
            ),
            (
                r#"{"name":"n","plugins":[{"type":"a"}]}"#,
                "cniVersion is missing",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","plugins":[]}"#,
                "plugins is empty",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"a"},{"x":1}]}"#,
                "plugins[1]: type is missing",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"../sh"}]}"#,
                "not a plugin binary name",
            ),
        ];
        for (text, reason) in cases {
            let err = NetworkConfigList::parse(text.as_bytes(), path).expect_err(text);
            assert!(err.contains(reason), "{text}: {err}");
        }
    }

    #[test]
    fn cni_conf_cni_versions_picks_highest_supported() {
        let text = r#"{"cniVersion":"0.4.0","cniVersions":["0.3.1","1.0.0","9.9.9"],"name":"n",
            "plugins":[{"type":"a"}]}"#;
        let list =
            NetworkConfigList::parse(text.as_bytes(), Path::new("/x/a.conflist")).expect("valid");
        assert_eq!(list.cni_version, "1.0.0");
    }

    #[test]
    fn cni_conf_missing_dir_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let load = load_dir(&dir.path().join("absent"));
        assert!(load.selected.is_none());
        assert!(load.skipped[0].reason.contains("cannot list directory"));
    }

    #[test]
    fn cni_conf_fingerprint_sees_edits_and_is_racy_when_fresh() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "10-a.conflist", BRIDGE_LIST);
        let first = DirFingerprint::take(dir.path());
        // Just written: a same-size rewrite within the same tick would be invisible.
        assert!(first.racy);
        assert!(!first.still_matches(&DirFingerprint::take(dir.path())));
        let stable = DirFingerprint {
            racy: false,
            ..first.clone()
        };
        assert!(stable.still_matches(&DirFingerprint::take(dir.path())));
        write(dir.path(), "20-b.conf", "{}");
        assert!(!stable.still_matches(&DirFingerprint::take(dir.path())));
    }
}
