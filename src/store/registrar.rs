//! The name registrar: one CRI name belongs to at most one object at a time.
//!
//! CRI names are built from metadata (`<name>_<namespace>_<uid>_<attempt>` for pods) and
//! kubelet relies on a duplicate create failing with `ALREADY_EXISTS`. Reservations live only in
//! memory; at start they are rebuilt from the records, so a crash cannot leave a stale one.

use std::collections::HashMap;
use std::sync::Mutex;

use super::StoreError;

/// Name → id reservations for one kind of object.
#[derive(Debug, Default)]
pub struct NameRegistrar {
    names: Mutex<HashMap<String, String>>,
}

impl NameRegistrar {
    /// Reserves `name` for `id`. Reserving again for the same id succeeds (retries are
    /// idempotent); a name held by another id is refused, naming the holder.
    pub fn reserve(&self, name: &str, id: &str) -> Result<(), StoreError> {
        let mut names = self.lock();
        match names.get(name) {
            Some(holder) if holder == id => Ok(()),
            Some(holder) => Err(StoreError::NameReserved {
                name: name.to_owned(),
                holder: holder.clone(),
            }),
            None => {
                names.insert(name.to_owned(), id.to_owned());
                Ok(())
            }
        }
    }

    /// Releases `name` if `id` holds it; releasing a name held by someone else does nothing.
    pub fn release(&self, name: &str, id: &str) {
        let mut names = self.lock();
        if names.get(name).is_some_and(|holder| holder == id) {
            names.remove(name);
        }
    }

    /// Whether `id` holds some name: a create in flight reserves its name before it makes
    /// anything, so the reconcilers leave what such an id names alone.
    pub fn holds(&self, id: &str) -> bool {
        self.lock().values().any(|holder| holder == id)
    }

    /// The id holding `name`, if any.
    pub fn holder(&self, name: &str) -> Option<String> {
        self.lock().get(name).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        // The map holds no invariant a panicking holder could break halfway.
        self.names
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The CRI name of a pod: `<name>_<namespace>_<uid>_<attempt>`, as kubelet and containerd use.
pub fn pod_name_key(name: &str, namespace: &str, uid: &str, attempt: u32) -> String {
    format!("{name}_{namespace}_{uid}_{attempt}")
}

/// The CRI name of a container: `<name>_<pod name>_<namespace>_<pod uid>_<attempt>`.
pub fn container_name_key(
    name: &str,
    pod_name: &str,
    namespace: &str,
    pod_uid: &str,
    attempt: u32,
) -> String {
    format!("{name}_{pod_name}_{namespace}_{pod_uid}_{attempt}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_name_names_holder() {
        let registrar = NameRegistrar::default();
        registrar.reserve("web_default_u1_0", "pod-a").unwrap();
        let err = registrar.reserve("web_default_u1_0", "pod-b").unwrap_err();
        assert!(err.to_string().contains("pod-a"), "{err}");
        assert!(matches!(err, StoreError::NameReserved { .. }));
    }

    #[test]
    fn same_id_may_reserve_twice() {
        let registrar = NameRegistrar::default();
        registrar.reserve("n", "id").unwrap();
        registrar.reserve("n", "id").unwrap();
    }

    #[test]
    fn release_only_by_holder() {
        let registrar = NameRegistrar::default();
        registrar.reserve("n", "a").unwrap();
        registrar.release("n", "b");
        assert_eq!(registrar.holder("n").as_deref(), Some("a"));
        assert!(registrar.holds("a"));
        registrar.release("n", "a");
        assert_eq!(registrar.holder("n"), None);
        assert!(!registrar.holds("a"));
        registrar.reserve("n", "b").unwrap();
    }

    #[test]
    fn name_keys_follow_kubelet_format() {
        assert_eq!(pod_name_key("web", "default", "u1", 2), "web_default_u1_2");
        assert_eq!(
            container_name_key("c", "web", "default", "u1", 0),
            "c_web_default_u1_0"
        );
    }
}
