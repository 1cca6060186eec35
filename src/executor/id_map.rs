//! A container's user namespace id mappings, as the host side of its setup needs them.
//!
//! A container in a user namespace of its own (a pod's, joined by path) has its mounts made
//! by the executor while it is still the host's root, and joins the user namespace only just
//! before it becomes the container's user. What the kernel would have read in the container's
//! ids had the mounts been made from inside (a tmpfs's owner, `devpts`' `gid=5`, a device
//! node's owner) is therefore translated here to the host ids they map to. Pure functions.

use oci_spec::runtime::{Linux, LinuxIdMapping};

use super::error::ExecutorError;

/// One contiguous range: container ids `container..container+length` are host ids
/// `host..host+length`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct IdRange {
    pub container: u32,
    pub host: u32,
    pub length: u32,
}

impl IdRange {
    /// The host id of container id `id`, if the range maps it.
    pub fn to_host(self, id: u32) -> Option<u32> {
        let offset = id.checked_sub(self.container)?;
        (offset < self.length).then(|| self.host.checked_add(offset))?
    }

    fn from_oci(mapping: &LinuxIdMapping) -> IdRange {
        IdRange {
            container: mapping.container_id(),
            host: mapping.host_id(),
            length: mapping.size(),
        }
    }
}

/// The user and group id mappings of the container's user namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct IdMap {
    pub uid: IdRange,
    pub gid: IdRange,
}

impl IdMap {
    /// The mappings of `linux.uidMappings` and `linux.gidMappings`: exactly one range each
    /// (what a pod user namespace has), which must map container root.
    pub fn from_spec(linux: &Linux) -> Result<IdMap, ExecutorError> {
        let one = |field: &str, list: Option<&Vec<LinuxIdMapping>>| match list.map(Vec::as_slice) {
            Some([mapping]) => {
                let range = IdRange::from_oci(mapping);
                if range.to_host(0).is_none() {
                    return Err(ExecutorError::invalid(field, "does not map container root"));
                }
                Ok(range)
            }
            _ => Err(ExecutorError::invalid(
                field,
                "a container joining a user namespace needs exactly one mapping",
            )),
        };
        Ok(IdMap {
            uid: one("linux.uidMappings", linux.uid_mappings().as_ref())?,
            gid: one("linux.gidMappings", linux.gid_mappings().as_ref())?,
        })
    }

    /// Whether a mount's own `uidMappings`/`gidMappings` are exactly these (an idmapped
    /// mount can only use the container's user namespace, the only one we hold).
    pub fn same_as(&self, uids: &[LinuxIdMapping], gids: &[LinuxIdMapping]) -> bool {
        matches!((uids, gids), ([uid], [gid])
            if IdRange::from_oci(uid) == self.uid && IdRange::from_oci(gid) == self.gid)
    }

    /// Host uid of container uid `id`.
    pub fn host_uid(&self, field: &str, id: u32) -> Result<u32, ExecutorError> {
        self.uid.to_host(id).ok_or_else(|| {
            ExecutorError::invalid(
                field,
                format!("uid {id} is not mapped in the user namespace"),
            )
        })
    }

    /// Host gid of container gid `id`.
    pub fn host_gid(&self, field: &str, id: u32) -> Result<u32, ExecutorError> {
        self.gid.to_host(id).ok_or_else(|| {
            ExecutorError::invalid(
                field,
                format!("gid {id} is not mapped in the user namespace"),
            )
        })
    }

    /// Rewrites a filesystem's `uid=`/`gid=` parameters to host ids, and gives a `tmpfs`
    /// without them the owner it would get if the container's root had mounted it.
    pub fn map_mount_data(
        &self,
        field: &str,
        fstype: &str,
        data: &mut Vec<(String, Option<String>)>,
    ) -> Result<(), ExecutorError> {
        let mut has = (false, false);
        for (key, value) in data.iter_mut() {
            let is_uid = key == "uid";
            if !is_uid && key != "gid" {
                continue;
            }
            let Some(id) = value.as_deref().and_then(|v| v.parse::<u32>().ok()) else {
                return Err(ExecutorError::invalid(
                    field,
                    format!("{key}= is not an id"),
                ));
            };
            let host = if is_uid {
                has.0 = true;
                self.host_uid(field, id)?
            } else {
                has.1 = true;
                self.host_gid(field, id)?
            };
            *value = Some(host.to_string());
        }
        if fstype == "tmpfs" {
            if !has.0 {
                data.push(("uid".to_owned(), Some(self.host_uid(field, 0)?.to_string())));
            }
            if !has.1 {
                data.push(("gid".to_owned(), Some(self.host_gid(field, 0)?.to_string())));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> IdMap {
        IdMap {
            uid: IdRange {
                container: 0,
                host: 100_000,
                length: 65_536,
            },
            gid: IdRange {
                container: 0,
                host: 200_000,
                length: 1000,
            },
        }
    }

    #[test]
    fn ids_map_inside_the_range_only() {
        let map = map();
        assert_eq!(map.host_uid("f", 0).unwrap(), 100_000);
        assert_eq!(map.host_uid("f", 65_535).unwrap(), 165_535);
        assert!(map.host_uid("f", 65_536).is_err());
        assert_eq!(map.host_gid("f", 5).unwrap(), 200_005);
        assert!(map.host_gid("f", 1000).is_err());
        let shifted = IdRange {
            container: 10,
            host: 0,
            length: u32::MAX,
        };
        assert_eq!(shifted.to_host(9), None);
        assert_eq!(shifted.to_host(u32::MAX), Some(u32::MAX - 10));
    }

    #[test]
    fn mount_owners_are_translated_and_tmpfs_gets_container_root() {
        let map = map();
        let mut devpts = vec![
            ("newinstance".to_owned(), None),
            ("gid".to_owned(), Some("5".to_owned())),
        ];
        map.map_mount_data("m", "devpts", &mut devpts).unwrap();
        assert_eq!(devpts[1].1.as_deref(), Some("200005"));
        assert_eq!(devpts.len(), 2);
        let mut tmpfs = vec![("mode".to_owned(), Some("755".to_owned()))];
        map.map_mount_data("m", "tmpfs", &mut tmpfs).unwrap();
        assert_eq!(
            tmpfs[1..],
            [
                ("uid".to_owned(), Some("100000".to_owned())),
                ("gid".to_owned(), Some("200000".to_owned()))
            ]
        );
        let mut bad = vec![("uid".to_owned(), Some("x".to_owned()))];
        assert!(map.map_mount_data("m", "tmpfs", &mut bad).is_err());
        let mut unmapped = vec![("gid".to_owned(), Some("5000".to_owned()))];
        assert!(map.map_mount_data("m", "devpts", &mut unmapped).is_err());
    }
}
