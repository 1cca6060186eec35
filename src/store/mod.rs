//! Durable state: pod, container and image records, and the CRI name registrar.
//!
//! Design choice: one JSON file per record under `<root_dir>/store/<kind>/`, written with
//! temp + fsync + rename + directory fsync. Records are small and change independently, so a
//! file each gives crash atomicity from the filesystem alone, lets unrelated pods write in
//! parallel, and stays readable with `cat` during an incident. Every change reaches disk before
//! it is visible in memory.

mod atomic;
mod error;
mod locks;
mod record_store;
mod records;
mod registrar;

use std::path::Path;

pub use atomic::{replace_runtime_file, write_atomically};
pub use error::StoreError;
pub use locks::KeyedLocks;
pub use record_store::{Record, RecordStore, ScanReport};
pub use records::{
    ContainerMount, ContainerRecord, ContainerState, ContainerUser, DnsConfig, IdMapping,
    ImageRecord, NamespaceMode, NamespaceModes, ObjectMetadata, PodRecord, PodState, PortMapping,
    Protocol, UserNamespaceMappings,
};
pub use registrar::{NameRegistrar, container_name_key, pod_name_key};

/// Whether `id` has the form of the ids Carrack gives pods and containers (64 lowercase hex
/// digits). The reconcilers judge only such names in the directories they sweep.
pub fn is_object_id(id: &str) -> bool {
    id.len() == 64
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Nanoseconds since the epoch: the timestamp unit of every record (and of CRI).
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// All durable records of the node plus the name reservations derived from them.
#[derive(Debug)]
pub struct Store {
    /// Pod sandboxes.
    pub pods: RecordStore<PodRecord>,
    /// Containers.
    pub containers: RecordStore<ContainerRecord>,
    /// Images.
    pub images: RecordStore<ImageRecord>,
    /// Pod names.
    pub pod_names: NameRegistrar,
    /// Container names.
    pub container_names: NameRegistrar,
}

/// What the start-up scan found, per kind.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecoveryReport {
    /// Pods.
    pub pods: ScanReport,
    /// Containers.
    pub containers: ScanReport,
    /// Images.
    pub images: ScanReport,
}

impl Store {
    /// Opens the store under `<root_dir>/store`, cleaning up half-written records and
    /// rebuilding the name reservations from what was committed.
    pub fn open(root_dir: &Path) -> Result<(Self, RecoveryReport), StoreError> {
        let root = root_dir.join("store");
        let (pods, pods_report) = RecordStore::open(&root)?;
        let (containers, containers_report) = RecordStore::open(&root)?;
        let (images, images_report) = RecordStore::open(&root)?;
        let store = Self {
            pods,
            containers,
            images,
            pod_names: NameRegistrar::default(),
            container_names: NameRegistrar::default(),
        };
        reserve_all(&store.pods, &store.pod_names)?;
        reserve_all(&store.containers, &store.container_names)?;
        Ok((
            store,
            RecoveryReport {
                pods: pods_report,
                containers: containers_report,
                images: images_report,
            },
        ))
    }
}

fn reserve_all<T: Record>(
    records: &RecordStore<T>,
    names: &NameRegistrar,
) -> Result<(), StoreError> {
    for record in records.list() {
        if let Some(name) = record.reserved_name() {
            names.reserve(name, record.id())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_object_ids_are_judged() {
        assert!(is_object_id(&"a1".repeat(32)));
        assert!(!is_object_id("lost+found"));
        assert!(!is_object_id(&"A1".repeat(32)));
        assert!(!is_object_id(&"a1".repeat(31)));
    }

    fn pod(id: &str, name: &str) -> PodRecord {
        PodRecord {
            id: id.to_owned(),
            name_key: pod_name_key(name, "default", "uid", 0),
            metadata: ObjectMetadata {
                name: name.to_owned(),
                uid: "uid".to_owned(),
                namespace: "default".to_owned(),
                attempt: 0,
            },
            state: PodState::Ready,
            created_at_ns: 1,
            labels: Default::default(),
            annotations: Default::default(),
            runtime_handler: String::new(),
            hostname: String::new(),
            log_directory: String::new(),
            dns: None,
            port_mappings: Vec::new(),
            namespaces: NamespaceModes::default(),
            sysctls: Default::default(),
            privileged: false,
            cgroup_parent: String::new(),
            cgroup_path: String::new(),
            cgroup_created: Vec::new(),
            pod_dir: String::new(),
            netns_path: None,
            ipcns_path: None,
            utsns_path: None,
            userns_path: None,
            shm_path: None,
            ip: None,
            additional_ips: Vec::new(),
            network_attached: false,
            pid_init: 0,
            pidns_path: None,
            creating: false,
        }
    }

    #[test]
    fn names_are_rebuilt_from_records() {
        let root = tempfile::tempdir().unwrap();
        {
            let (store, _) = Store::open(root.path()).unwrap();
            let record = pod("p1", "web");
            store
                .pod_names
                .reserve(&record.name_key, &record.id)
                .unwrap();
            store.pods.put(record).unwrap();
        }
        let (store, report) = Store::open(root.path()).unwrap();
        assert_eq!(report.pods.loaded, 1);
        let key = pod_name_key("web", "default", "uid", 0);
        assert_eq!(store.pod_names.holder(&key).as_deref(), Some("p1"));
        assert!(store.pod_names.reserve(&key, "p2").is_err());
    }
}
