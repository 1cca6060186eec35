//! A directory of JSON records of one kind, written atomically, indexed in memory.
//!
//! Write protocol (checkpoint, then commit): encode, write a unique temp file, fsync it, rename
//! it over `<id>.json`, fsync the directory, and only then change the in-memory index. A crash
//! at any point leaves either the old record or the new one on disk, plus perhaps a temp file
//! that the recovery scan removes.

use std::collections::HashMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::StoreError;

/// What a type must say to be stored.
pub trait Record: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    /// Singular kind name, used in errors and as the envelope's `kind`.
    const KIND: &'static str;
    /// The directory name under the store root.
    const DIR: &'static str;
    /// The schema version this binary writes. Older versions are read (and migrated by the
    /// record's serde defaults); newer ones are left untouched on disk and skipped.
    const SCHEMA_VERSION: u32;
    /// The record's unique id, also its file name.
    fn id(&self) -> &str;
    /// The CRI name this record holds in the registrar, if any.
    fn reserved_name(&self) -> Option<&str> {
        None
    }
}

/// The on-disk wrapper: the version lets a newer binary migrate an older record.
#[derive(Serialize, Deserialize)]
struct Envelope<T> {
    schema_version: u32,
    kind: String,
    record: T,
}

/// Counts from one recovery scan.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ScanReport {
    /// Records loaded into the index.
    pub loaded: usize,
    /// Half-written temp files removed.
    pub removed_temp: usize,
    /// Unreadable records renamed aside (`*.corrupt`) for an operator to inspect.
    pub quarantined: usize,
    /// Records written by a newer schema, left on disk and not loaded.
    pub newer_schema: usize,
}

/// Number of write locks; writes to ids in different stripes never wait on each other.
const STRIPES: usize = 64;

/// The records of one kind.
#[derive(Debug)]
pub struct RecordStore<T: Record> {
    dir: PathBuf,
    index: RwLock<HashMap<String, Arc<T>>>,
    /// Serialises disk write + index update per id, so memory always matches the last rename.
    stripes: Vec<Mutex<()>>,
    temp_counter: AtomicU64,
}

impl<T: Record> RecordStore<T> {
    /// Opens (creating) `<root>/<T::DIR>` and scans it.
    pub fn open(root: &Path) -> Result<(Self, ScanReport), StoreError> {
        let dir = root.join(T::DIR);
        fs::create_dir_all(&dir).map_err(|source| StoreError::Io {
            path: dir.clone(),
            source,
        })?;
        let store = Self {
            dir,
            index: RwLock::new(HashMap::new()),
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            temp_counter: AtomicU64::new(0),
        };
        let report = store.scan()?;
        Ok((store, report))
    }

    /// Writes `record` durably, then makes it visible.
    pub fn put(&self, record: T) -> Result<Arc<T>, StoreError> {
        let id = record.id().to_owned();
        validate_id(T::KIND, &id)?;
        let envelope = Envelope {
            schema_version: T::SCHEMA_VERSION,
            kind: T::KIND.to_owned(),
            record,
        };
        let bytes = serde_json::to_vec_pretty(&envelope).map_err(|source| StoreError::Encode {
            kind: T::KIND,
            id: id.clone(),
            source,
        })?;
        let record = Arc::new(envelope.record);
        let _guard = self.stripe(&id);
        self.write_atomically(&id, &bytes)?;
        self.index_mut().insert(id, Arc::clone(&record));
        Ok(record)
    }

    /// Deletes the record durably, then drops it from memory. Absent ids succeed.
    pub fn remove(&self, id: &str) -> Result<(), StoreError> {
        validate_id(T::KIND, id)?;
        let _guard = self.stripe(id);
        let path = self.record_path(id);
        match fs::remove_file(&path) {
            Ok(()) => self.sync_dir()?,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(StoreError::Io { path, source }),
        }
        self.index_mut().remove(id);
        Ok(())
    }

    /// The record with `id`.
    pub fn get(&self, id: &str) -> Option<Arc<T>> {
        self.index().get(id).cloned()
    }

    /// The record with `id`, or a `NotFound` error naming it.
    pub fn require(&self, id: &str) -> Result<Arc<T>, StoreError> {
        self.get(id).ok_or_else(|| StoreError::NotFound {
            kind: T::KIND,
            id: id.to_owned(),
        })
    }

    /// Every record, in no particular order.
    pub fn list(&self) -> Vec<Arc<T>> {
        self.index().values().cloned().collect()
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.index().len()
    }

    /// Whether there are no records.
    pub fn is_empty(&self) -> bool {
        self.index().is_empty()
    }

    /// Whether a record of `id` is on disk that this store did not load: one written by a
    /// newer schema (left untouched) or one quarantined as unreadable (`<id>.json.corrupt`).
    /// What such a record describes is not known, so what it may own (a pod's namespaces and
    /// cgroup, a container's writable layer) must be kept, never reconciled away, until an
    /// operator (or a newer binary) deals with the file. Reads the directory, so an operator
    /// removing the file is seen at once. Ids that cannot name a record are `false`.
    pub fn has_unreadable(&self, id: &str) -> bool {
        if validate_id(T::KIND, id).is_err() {
            return false;
        }
        let path = self.record_path(id);
        (self.get(id).is_none() && path.exists()) || path.with_extension("json.corrupt").exists()
    }

    fn scan(&self) -> Result<ScanReport, StoreError> {
        let mut report = ScanReport::default();
        let entries = fs::read_dir(&self.dir).map_err(|source| StoreError::Io {
            path: self.dir.clone(),
            source,
        })?;
        let mut index = HashMap::new();
        for entry in entries {
            let entry = entry.map_err(|source| StoreError::Io {
                path: self.dir.clone(),
                source,
            })?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.ends_with(".tmp") {
                fs::remove_file(&path).map_err(|source| StoreError::Io {
                    path: path.clone(),
                    source,
                })?;
                tracing::info!(path = %path.display(), "removed half-written record");
                report.removed_temp += 1;
                continue;
            }
            let Some(id) = name.strip_suffix(".json") else {
                continue;
            };
            match read_envelope::<T>(&path) {
                Ok(envelope) if envelope.schema_version > T::SCHEMA_VERSION => {
                    tracing::warn!(
                        path = %path.display(),
                        version = envelope.schema_version,
                        "record written by a newer carrack; left untouched, and what it owns is kept"
                    );
                    report.newer_schema += 1;
                }
                Ok(envelope) if envelope.record.id() == id => {
                    index.insert(id.to_owned(), Arc::new(envelope.record));
                    report.loaded += 1;
                }
                Ok(envelope) => {
                    let reason = format!("it names id {}", envelope.record.id());
                    self.quarantine(&path, &reason)?;
                    report.quarantined += 1;
                }
                Err(reason) => {
                    self.quarantine(&path, &reason)?;
                    report.quarantined += 1;
                }
            }
        }
        if report.removed_temp + report.quarantined > 0 {
            self.sync_dir()?;
        }
        *self.index_mut() = index;
        Ok(report)
    }

    /// Renames the unreadable record at `path` aside (`<id>.json.corrupt`, which no scan
    /// loads) so that the rest loads and an operator can inspect it, and logs both paths.
    fn quarantine(&self, path: &Path, reason: &str) -> Result<(), StoreError> {
        let aside = path.with_extension("json.corrupt");
        fs::rename(path, &aside).map_err(|source| StoreError::Io {
            path: path.to_owned(),
            source,
        })?;
        tracing::error!(
            path = %path.display(),
            moved_to = %aside.display(),
            reason,
            "unreadable {} record quarantined; the rest of the state loads without it, and what it owns is kept until the file is removed",
            T::KIND
        );
        Ok(())
    }

    fn write_atomically(&self, id: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let seq = self.temp_counter.fetch_add(1, Ordering::Relaxed);
        let temp = self.dir.join(format!(".{id}.{seq}.tmp"));
        super::atomic::write_atomically(&temp, &self.record_path(id), bytes)
            .map_err(|(path, source)| StoreError::Io { path, source })
    }

    fn sync_dir(&self) -> Result<(), StoreError> {
        File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(|source| StoreError::Io {
                path: self.dir.clone(),
                source,
            })
    }

    fn record_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    fn stripe(&self, id: &str) -> std::sync::MutexGuard<'_, ()> {
        let hash = id.bytes().fold(0usize, |acc, byte| {
            acc.wrapping_mul(31).wrapping_add(usize::from(byte))
        });
        self.stripes[hash % STRIPES]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn index(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<T>>> {
        self.index
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn index_mut(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<T>>> {
        self.index
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The record at `path`, or why it cannot be used.
fn read_envelope<T: Record>(path: &Path) -> Result<Envelope<T>, String> {
    let bytes = fs::read(path).map_err(|err| format!("unreadable: {err}"))?;
    let envelope: Envelope<T> =
        serde_json::from_slice(&bytes).map_err(|err| format!("not a record: {err}"))?;
    if envelope.kind != T::KIND {
        return Err(format!(
            "it is a {:?} record, not a {}",
            envelope.kind,
            T::KIND
        ));
    }
    Ok(envelope)
}

/// Ids become file names, so they must not be able to name another path.
fn validate_id(kind: &'static str, id: &str) -> Result<(), StoreError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidId {
            kind,
            id: id.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Thing {
        id: String,
        value: u32,
        #[serde(default)]
        added_later: Option<String>,
    }

    impl Record for Thing {
        const KIND: &'static str = "thing";
        const DIR: &'static str = "things";
        const SCHEMA_VERSION: u32 = 2;
        fn id(&self) -> &str {
            &self.id
        }
    }

    fn thing(id: &str, value: u32) -> Thing {
        Thing {
            id: id.to_owned(),
            value,
            added_later: None,
        }
    }

    #[test]
    fn put_get_remove_and_reopen() {
        let root = tempfile::tempdir().unwrap();
        let (store, report) = RecordStore::<Thing>::open(root.path()).unwrap();
        assert_eq!(report, ScanReport::default());
        store.put(thing("a", 1)).unwrap();
        store.put(thing("b", 2)).unwrap();
        store.put(thing("a", 3)).unwrap();
        assert_eq!(store.get("a").unwrap().value, 3);
        store.remove("b").unwrap();
        store.remove("b").unwrap();
        drop(store);

        let (store, report) = RecordStore::<Thing>::open(root.path()).unwrap();
        assert_eq!(report.loaded, 1);
        assert_eq!(store.get("a").unwrap().value, 3);
        assert!(store.get("b").is_none());
        assert!(matches!(
            store.require("b"),
            Err(StoreError::NotFound { .. })
        ));
    }

    #[test]
    fn scan_removes_temp_files_and_quarantines_garbage() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("things");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(".a.0.tmp"), b"{half").unwrap();
        fs::write(dir.join("bad.json"), b"not json").unwrap();
        // A record whose file name and id disagree is not trusted either.
        fs::write(
            dir.join("x.json"),
            br#"{"schema_version":1,"kind":"thing","record":{"id":"y","value":1}}"#,
        )
        .unwrap();
        let (store, report) = RecordStore::<Thing>::open(root.path()).unwrap();
        assert_eq!(report.removed_temp, 1);
        assert_eq!(report.quarantined, 2);
        assert!(store.is_empty());
        assert!(dir.join("bad.json.corrupt").exists());
        assert!(!dir.join(".a.0.tmp").exists());
        assert!(store.has_unreadable("bad"));
        assert!(store.has_unreadable("x"));
        // Still known after a restart, when the scan no longer reads the quarantined file.
        drop(store);
        let (store, report) = RecordStore::<Thing>::open(root.path()).unwrap();
        assert_eq!(report.quarantined, 0);
        assert!(store.has_unreadable("bad"));
    }

    #[test]
    fn older_schema_is_read_and_newer_left_alone() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("things");
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join("old.json"),
            br#"{"schema_version":1,"kind":"thing","record":{"id":"old","value":7}}"#,
        )
        .unwrap();
        fs::write(
            dir.join("new.json"),
            br#"{"schema_version":9,"kind":"thing","record":{"id":"new","value":7}}"#,
        )
        .unwrap();
        let (store, report) = RecordStore::<Thing>::open(root.path()).unwrap();
        assert_eq!(report.loaded, 1);
        assert_eq!(report.newer_schema, 1);
        assert_eq!(store.get("old").unwrap().added_later, None);
        assert!(dir.join("new.json").exists());
        assert!(store.has_unreadable("new"));
        assert!(!store.has_unreadable("old"));
        assert!(!store.has_unreadable("absent"));
        assert!(!store.has_unreadable("../new"));
        fs::remove_file(dir.join("new.json")).unwrap();
        assert!(!store.has_unreadable("new"));
    }

    #[test]
    fn hostile_ids_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let (store, _) = RecordStore::<Thing>::open(root.path()).unwrap();
        for id in ["", "../escape", "a/b", ".hidden", "x\0y"] {
            assert!(matches!(
                store.put(thing(id, 1)),
                Err(StoreError::InvalidId { .. })
            ));
        }
        store.put(thing("sha256:abc", 1)).unwrap();
    }

    #[test]
    fn concurrent_writes_leave_memory_equal_to_disk() {
        let root = tempfile::tempdir().unwrap();
        let (store, _) = RecordStore::<Thing>::open(root.path()).unwrap();
        let store = Arc::new(store);
        let threads: Vec<_> = (0..8)
            .map(|n| {
                let store = Arc::clone(&store);
                std::thread::spawn(move || {
                    for round in 0..20 {
                        store.put(thing("shared", n * 100 + round)).unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let in_memory = store.get("shared").unwrap().value;
        drop(store);
        let (reopened, _) = RecordStore::<Thing>::open(root.path()).unwrap();
        assert_eq!(reopened.get("shared").unwrap().value, in_memory);
    }
}
