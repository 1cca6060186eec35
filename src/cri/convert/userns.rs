//! A pod's `userns_options` (CRI `hostUsers`) checked and turned into [`UserNamespaceMappings`].
//!
//! Kubelet sends mode `NODE` for `hostUsers: true` and mode `POD` with one uid and one gid
//! range for `hostUsers: false`. A pod user namespace must map container id 0 (its root), and
//! one range each is all the kernel's single `uid_map` write from a parent namespace needs.

use tonic::Status;

use crate::proto;
use crate::store::{IdMapping, UserNamespaceMappings};

/// The pod's own user namespace mappings, or `None` when the pod uses the node's.
pub fn user_namespace(
    options: Option<&proto::UserNamespace>,
) -> Result<Option<UserNamespaceMappings>, Status> {
    let Some(options) = options else {
        return Ok(None);
    };
    match proto::NamespaceMode::try_from(options.mode) {
        Ok(proto::NamespaceMode::Node) => {
            if options.uids.is_empty() && options.gids.is_empty() {
                Ok(None)
            } else {
                Err(Status::invalid_argument(
                    "user namespace mode NODE takes no uid or gid mappings",
                ))
            }
        }
        Ok(proto::NamespaceMode::Pod) => Ok(Some(UserNamespaceMappings {
            uid: single_mapping("uid", &options.uids)?,
            gid: single_mapping("gid", &options.gids)?,
        })),
        // A user namespace per container is a real option that carrack does not build.
        Ok(proto::NamespaceMode::Container) => Err(Status::unimplemented(
            "user namespace mode CONTAINER is not supported by carrack",
        )),
        // Another container's namespace is a PID-only notion in CRI.
        Ok(proto::NamespaceMode::Target) => Err(Status::invalid_argument(
            "user namespace mode TARGET is not valid for user namespaces",
        )),
        Err(_) => Err(Status::invalid_argument(format!(
            "unknown user namespace mode {}",
            options.mode
        ))),
    }
}

/// The `userns_options` a pod (or container) reports: mode `POD` with its mappings, or
/// `NODE`.
pub fn to_proto(mappings: Option<&UserNamespaceMappings>) -> proto::UserNamespace {
    let one = |mapping: &IdMapping| {
        vec![proto::IdMapping {
            host_id: mapping.host_id,
            container_id: mapping.container_id,
            length: mapping.length,
        }]
    };
    match mappings {
        Some(mappings) => proto::UserNamespace {
            mode: proto::NamespaceMode::Pod.into(),
            uids: one(&mappings.uid),
            gids: one(&mappings.gid),
        },
        None => proto::UserNamespace {
            mode: proto::NamespaceMode::Node.into(),
            uids: Vec::new(),
            gids: Vec::new(),
        },
    }
}

/// The id mappings a CRI mount asks to be idmapped with (`uidMappings`/`gidMappings`), or
/// `None` for a plain mount; the same rules as a pod's.
pub fn mount_mappings(
    uids: &[proto::IdMapping],
    gids: &[proto::IdMapping],
) -> Result<Option<UserNamespaceMappings>, Status> {
    if uids.is_empty() && gids.is_empty() {
        return Ok(None);
    }
    Ok(Some(UserNamespaceMappings {
        uid: single_mapping("mount uid", uids)?,
        gid: single_mapping("mount gid", gids)?,
    }))
}

fn single_mapping(what: &str, mappings: &[proto::IdMapping]) -> Result<IdMapping, Status> {
    let [mapping] = mappings else {
        return Err(Status::invalid_argument(format!(
            "a pod user namespace needs exactly one {what} mapping, got {}",
            mappings.len()
        )));
    };
    if mapping.container_id != 0 {
        return Err(Status::invalid_argument(format!(
            "the {what} mapping must start at container id 0 (the pod's root), not {}",
            mapping.container_id
        )));
    }
    if mapping.length == 0 {
        return Err(Status::invalid_argument(format!(
            "the {what} mapping has length 0"
        )));
    }
    if u64::from(mapping.host_id) + u64::from(mapping.length) > u64::from(u32::MAX) {
        return Err(Status::invalid_argument(format!(
            "the {what} mapping {}+{} runs past the last id",
            mapping.host_id, mapping.length
        )));
    }
    Ok(IdMapping {
        container_id: mapping.container_id,
        host_id: mapping.host_id,
        length: mapping.length,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    fn range(container_id: u32, host_id: u32, length: u32) -> proto::IdMapping {
        proto::IdMapping {
            host_id,
            container_id,
            length,
        }
    }

    fn options(mode: proto::NamespaceMode, ids: Vec<proto::IdMapping>) -> proto::UserNamespace {
        proto::UserNamespace {
            mode: mode.into(),
            uids: ids.clone(),
            gids: ids,
        }
    }

    fn code(options: &proto::UserNamespace) -> Code {
        user_namespace(Some(options)).unwrap_err().code()
    }

    #[test]
    fn node_mode_and_absence_mean_the_node_user_namespace() {
        assert_eq!(user_namespace(None).unwrap(), None);
        let node = options(proto::NamespaceMode::Node, vec![]);
        assert_eq!(user_namespace(Some(&node)).unwrap(), None);
        let node_with_maps = options(proto::NamespaceMode::Node, vec![range(0, 1000, 10)]);
        assert_eq!(code(&node_with_maps), Code::InvalidArgument);
    }

    #[test]
    fn pod_mode_takes_one_mapping_of_container_root() {
        let pod = options(proto::NamespaceMode::Pod, vec![range(0, 1000, 100_000)]);
        let expected = IdMapping {
            container_id: 0,
            host_id: 1000,
            length: 100_000,
        };
        assert_eq!(
            user_namespace(Some(&pod)).unwrap(),
            Some(UserNamespaceMappings {
                uid: expected,
                gid: expected,
            })
        );
    }

    #[test]
    fn bad_pod_mappings_are_invalid_arguments() {
        let two = options(
            proto::NamespaceMode::Pod,
            vec![range(0, 1000, 100_000), range(0, 2000, 100_000)],
        );
        assert_eq!(code(&two), Code::InvalidArgument);
        let none = options(proto::NamespaceMode::Pod, vec![]);
        assert_eq!(code(&none), Code::InvalidArgument);
        let no_root = options(proto::NamespaceMode::Pod, vec![range(1, 1000, 100_000)]);
        assert_eq!(code(&no_root), Code::InvalidArgument);
        let empty = options(proto::NamespaceMode::Pod, vec![range(0, 1000, 0)]);
        assert_eq!(code(&empty), Code::InvalidArgument);
        let past_end = options(proto::NamespaceMode::Pod, vec![range(0, u32::MAX - 5, 10)]);
        assert_eq!(code(&past_end), Code::InvalidArgument);
        let mut gids_only_bad = options(proto::NamespaceMode::Pod, vec![range(0, 1000, 10)]);
        gids_only_bad.gids.clear();
        assert_eq!(code(&gids_only_bad), Code::InvalidArgument);
    }

    #[test]
    fn mappings_are_reported_back_as_given() {
        let pod = options(proto::NamespaceMode::Pod, vec![range(0, 1000, 100_000)]);
        let mappings = user_namespace(Some(&pod)).unwrap();
        assert_eq!(to_proto(mappings.as_ref()), pod);
        assert_eq!(to_proto(None).mode, i32::from(proto::NamespaceMode::Node));
    }

    #[test]
    fn container_and_target_modes_are_refused() {
        let container = options(proto::NamespaceMode::Container, vec![]);
        assert_eq!(code(&container), Code::Unimplemented);
        let target = options(proto::NamespaceMode::Target, vec![]);
        assert_eq!(code(&target), Code::InvalidArgument);
        let unknown = proto::UserNamespace {
            mode: 42,
            ..Default::default()
        };
        assert_eq!(code(&unknown), Code::InvalidArgument);
    }
}
