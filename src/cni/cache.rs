//! The on-disk record of each pod's attachment, so that `DEL` can be replayed at any time.
//!
//! One JSON file per pod, `<cache_dir>/<pod_id>.json`, holding the network list exactly as it
//! was used (so a later edit or removal of the conf file cannot break teardown), the pod
//! parameters `DEL` needs (`CNI_ARGS`, netns, capability arguments) and the final `ADD` result.
//!
//! Protocol: before the first plugin runs, an `adding` record is committed; after the last one
//! succeeded, the `attached` record with the result replaces it; the record is removed only
//! after a successful `DEL`. A crash at any point therefore leaves a record that
//! [`super::CniManager::pending_teardowns`] reports and `teardown` can replay. Writes are
//! temp + fsync + rename + directory fsync. Removal does not fsync the directory: a record
//! resurrected by a crash only causes one more (idempotent) `DEL`.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::CniError;
use super::pod::PodNetwork;

/// Bumped when the record layout changes incompatibly.
const FORMAT: u32 = 1;
const SUFFIX: &str = ".json";
const TEMP_SUFFIX: &str = ".json.tmp";

/// How far a pod's attachment got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum AttachState {
    /// `ADD` started (or failed and its cleanup `DEL` failed); there is no final result.
    Adding,
    /// `ADD` completed; `result` is the chain's final result.
    Attached,
}

/// One pod's cached attachment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CacheEntry {
    /// Layout version, [`FORMAT`].
    pub format: u32,
    /// How far `ADD` got.
    pub state: AttachState,
    /// The network name.
    pub network: String,
    /// The spec version the network was driven with.
    pub cni_version: String,
    /// The conf file the network came from.
    pub conf_path: PathBuf,
    /// The network list in conflist form, as used for `ADD`.
    pub conflist: Value,
    /// `CNI_IFNAME` used.
    pub ifname: String,
    /// The pod parameters (identity, netns, capability arguments).
    pub pod: PodNetwork,
    /// The final `ADD` result, once attached.
    pub result: Option<Value>,
}

impl CacheEntry {
    /// A record for `pod` on `network` in state `state`.
    pub fn new(
        state: AttachState,
        list: &super::conf::NetworkConfigList,
        ifname: &str,
        pod: &PodNetwork,
        result: Option<Value>,
    ) -> Self {
        Self {
            format: FORMAT,
            state,
            network: list.name.clone(),
            cni_version: list.cni_version.clone(),
            conf_path: list.source.clone(),
            conflist: list.raw.clone(),
            ifname: ifname.to_owned(),
            pod: pod.clone(),
            result,
        }
    }
}

/// The cache directory.
#[derive(Debug, Clone)]
pub(crate) struct ResultCache {
    dir: PathBuf,
}

impl ResultCache {
    /// A cache in `dir` (created on first write).
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    fn path(&self, pod_id: &str) -> PathBuf {
        self.dir.join(format!("{pod_id}{SUFFIX}"))
    }

    /// Commits `entry` for its pod, atomically and durably.
    pub async fn write(&self, entry: &CacheEntry) -> Result<(), CniError> {
        let pod_id = entry.pod.pod_id.clone();
        let bytes = serde_json::to_vec_pretty(entry).map_err(|err| CniError::CacheCorrupt {
            path: self.path(&pod_id),
            container_id: pod_id.clone(),
            reason: format!("cannot encode: {err}"),
        })?;
        let dir = self.dir.clone();
        let target = self.path(&pod_id);
        blocking(&pod_id, move || write_atomically(&dir, &target, &bytes)).await
    }

    /// The entry of `pod_id`, if any.
    pub async fn load(&self, pod_id: &str) -> Result<Option<CacheEntry>, CniError> {
        let path = self.path(pod_id);
        let read_path = path.clone();
        let bytes = blocking(pod_id, move || match std::fs::read(&read_path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err((read_path, err)),
        })
        .await?;
        let Some(bytes) = bytes else {
            return Ok(None);
        };
        let entry: CacheEntry =
            serde_json::from_slice(&bytes).map_err(|err| CniError::CacheCorrupt {
                path: path.clone(),
                container_id: pod_id.to_owned(),
                reason: err.to_string(),
            })?;
        if entry.format != FORMAT || entry.pod.pod_id != pod_id {
            return Err(CniError::CacheCorrupt {
                path,
                container_id: pod_id.to_owned(),
                reason: format!(
                    "format {} for pod {:?}, expected format {FORMAT} for this pod",
                    entry.format, entry.pod.pod_id
                ),
            });
        }
        Ok(Some(entry))
    }

    /// Forgets `pod_id`; a missing entry is fine.
    pub async fn remove(&self, pod_id: &str) -> Result<(), CniError> {
        let path = self.path(pod_id);
        blocking(pod_id, move || match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err((path, err)),
        })
        .await
    }

    /// Pod ids with an entry, sorted. Unreadable dir = none (logged).
    pub fn list(&self) -> Vec<String> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(err) => {
                tracing::warn!(dir = %self.dir.display(), error = %err, "cannot list cni cache");
                return Vec::new();
            }
        };
        let mut ids: Vec<String> = entries
            .filter_map(Result::ok)
            .filter_map(|entry| entry.file_name().into_string().ok())
            .filter(|name| !name.starts_with('.'))
            .filter_map(|name| name.strip_suffix(SUFFIX).map(str::to_owned))
            .collect();
        ids.sort();
        ids
    }

    /// Removes temp files left by a crash mid-write (best effort).
    pub fn remove_stale_temps(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') && name.ends_with(TEMP_SUFFIX) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// Runs file I/O on the blocking pool, mapping `(path, error)` failures to [`CniError::Cache`].
async fn blocking<T: Send + 'static>(
    pod_id: &str,
    work: impl FnOnce() -> Result<T, (PathBuf, std::io::Error)> + Send + 'static,
) -> Result<T, CniError> {
    let outcome = tokio::task::spawn_blocking(work)
        .await
        .map_err(|_| CniError::Cancelled {
            container_id: pod_id.to_owned(),
        })?;
    outcome.map_err(|(path, source)| CniError::Cache {
        path,
        container_id: pod_id.to_owned(),
        source,
    })
}

fn write_atomically(
    dir: &Path,
    target: &Path,
    bytes: &[u8],
) -> Result<(), (PathBuf, std::io::Error)> {
    std::fs::create_dir_all(dir).map_err(|err| (dir.to_owned(), err))?;
    let file_name = target
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = file_name.strip_suffix(SUFFIX).unwrap_or(&file_name);
    // One writer per pod at a time (the pod lock), so the name is unique.
    let temp = dir.join(format!(".{stem}{TEMP_SUFFIX}"));
    let written = (|| {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()
    })();
    if let Err(err) = written {
        let _ = std::fs::remove_file(&temp);
        return Err((temp, err));
    }
    if let Err(err) = std::fs::rename(&temp, target) {
        let _ = std::fs::remove_file(&temp);
        return Err((target.to_owned(), err));
    }
    std::fs::File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(|err| (dir.to_owned(), err))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn cni_cache_round_trip_and_list() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = ResultCache::new(dir.path().join("cni/results"));
        assert!(cache.list().is_empty());
        assert_eq!(cache.load("p1").await.expect("load"), None);
        let list = super::super::conf::NetworkConfigList::parse(
            br#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"a"}]}"#,
            Path::new("/etc/cni/net.d/10-n.conflist"),
        )
        .expect("list");
        let pod = PodNetwork {
            pod_id: "p1".to_owned(),
            ..PodNetwork::default()
        };
        let entry = CacheEntry::new(
            AttachState::Attached,
            &list,
            "eth0",
            &pod,
            Some(serde_json::json!({"cniVersion": "1.0.0"})),
        );
        cache.write(&entry).await.expect("write");
        std::fs::write(dir.path().join("cni/results/.p2.json.tmp"), b"partial").expect("temp");
        assert_eq!(cache.list(), ["p1"]);
        assert_eq!(cache.load("p1").await.expect("load"), Some(entry));
        cache.remove_stale_temps();
        assert!(!dir.path().join("cni/results/.p2.json.tmp").exists());
        cache.remove("p1").await.expect("remove");
        cache.remove("p1").await.expect("remove twice");
        assert!(cache.list().is_empty());
        std::fs::write(dir.path().join("cni/results/p3.json"), b"{").expect("corrupt");
        let err = cache.load("p3").await.expect_err("corrupt");
        assert!(matches!(err, CniError::CacheCorrupt { .. }), "{err}");
    }
}
