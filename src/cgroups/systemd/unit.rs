//! Which systemd unit stands for a cgroup path: a slice for a pod (`…/kubepods-pod1.slice`),
//! a scope for a container (`…/carrack-<id>.scope`), and the slice each one lives in.
//!
//! systemd derives a slice's place in the tree from its name (each dash opens a level), so a
//! path is accepted only when it is exactly where systemd would put the unit; anything else
//! would make systemd create the unit somewhere other than where we then write limits.

use super::super::error::CgroupError;
use super::super::{CgroupPath, expand_slice};

/// The root slice, parent of top-level slices.
pub(crate) const ROOT_SLICE: &str = "-.slice";

/// The two kinds of unit the driver asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UnitKind {
    /// A group of units (a pod).
    Slice,
    /// Externally started processes (a container, started with its first process).
    Scope,
}

/// A systemd unit for one cgroup path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unit {
    /// The unit name (`kubepods-burstable-pod1.slice`, `carrack-<id>.scope`).
    pub name: String,
    /// Slice or scope.
    pub kind: UnitKind,
    /// The slice the unit lives in (`kubepods-burstable.slice`, or `-.slice` at the top).
    pub parent: String,
}

impl Unit {
    /// The unit whose cgroup is `path`, when `path` is where systemd keeps such a unit.
    pub(crate) fn for_path(path: &CgroupPath) -> Result<Self, CgroupError> {
        let components: Vec<&str> = path.components().collect();
        let invalid = |reason: String| CgroupError::InvalidPath {
            path: path.to_string(),
            reason,
        };
        let (name, parents) = components
            .split_last()
            .ok_or_else(|| invalid("empty path".to_owned()))?;
        let parent = parents.last().copied().unwrap_or(ROOT_SLICE);
        if name.ends_with(".slice") {
            if expand_slice(name)?.as_str() != path.as_str() {
                return Err(invalid(format!(
                    "systemd keeps slice {name} at {}, not here",
                    expand_slice(name)?
                )));
            }
            return Ok(Self {
                name: (*name).to_owned(),
                kind: UnitKind::Slice,
                parent: parent.to_owned(),
            });
        }
        if name.ends_with(".scope") && name.len() > ".scope".len() {
            if parents.is_empty() {
                return Err(invalid(
                    "a scope must live in a slice, not at the root".to_owned(),
                ));
            }
            let slice = CgroupPath::parse(&format!("/{}", parents.join("/")))?;
            Self::for_path(&slice).and_then(|unit| match unit.kind {
                UnitKind::Slice => Ok(()),
                UnitKind::Scope => Err(invalid("a scope cannot contain a scope".to_owned())),
            })?;
            return Ok(Self {
                name: (*name).to_owned(),
                kind: UnitKind::Scope,
                parent: parent.to_owned(),
            });
        }
        Err(invalid(
            "the systemd driver only manages `.slice` and `.scope` units".to_owned(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::fixture::path;

    #[test]
    fn pod_slices_name_their_parent_slice() {
        let unit = Unit::for_path(&path(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice",
        ))
        .expect("slice");
        assert_eq!(unit.name, "kubepods-burstable-pod1.slice");
        assert_eq!(unit.kind, UnitKind::Slice);
        assert_eq!(unit.parent, "kubepods-burstable.slice");
        let top = Unit::for_path(&path("/test.slice")).expect("top");
        assert_eq!(top.parent, ROOT_SLICE);
    }

    #[test]
    fn container_scopes_live_in_their_pod_slice() {
        let unit = Unit::for_path(&path("/carrack.slice/carrack-p1.slice/carrack-c1.scope"))
            .expect("scope");
        assert_eq!(unit.name, "carrack-c1.scope");
        assert_eq!(unit.kind, UnitKind::Scope);
        assert_eq!(unit.parent, "carrack-p1.slice");
    }

    #[test]
    fn paths_systemd_would_not_produce_are_refused() {
        for bad in [
            // Slice at the wrong depth for its name.
            "/kubepods-burstable-pod1.slice",
            "/a.slice/b.slice",
            // Scope at the root, in a plain directory, or in a scope.
            "/c.scope",
            "/carrack/c.scope",
            "/a.slice/x.scope/c.scope",
            // Neither a slice nor a scope.
            "/carrack/p1",
            "/a.slice/a-b.slice/c1",
            "/a.slice/.scope",
        ] {
            let err = Unit::for_path(&path(bad)).expect_err(bad);
            assert_eq!(
                err.kind(),
                crate::error_kind::ErrorKind::InvalidArgument,
                "{bad}"
            );
        }
    }
}
