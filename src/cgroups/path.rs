//! Cgroup path names: validation of what callers send, and systemd slice expansion.
//!
//! A [`CgroupPath`] is an absolute path *inside* a hierarchy (`/kubepods/burstable/pod1`),
//! never a filesystem path; the manager joins it onto each mount. Every component is checked
//! against a small character set so that a hostile `cgroup_parent` (`/../etc`, `a//b`, a name
//! with spaces or NULs) can never address anything outside the cgroup mounts.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::error::CgroupError;

/// Longest cgroup path we accept, matching the kernel's `PATH_MAX`.
const MAX_PATH_LEN: usize = 4096;
/// Longest component, matching `NAME_MAX`: the kernel refuses longer directory names anyway,
/// and refusing early gives a clearer message.
const MAX_COMPONENT_LEN: usize = 255;

/// A validated absolute cgroup path relative to a hierarchy's mount point.
///
/// Invariant: starts with `/`, has at least one component, and every component is non-empty,
/// is neither `.` nor `..`, and uses only `[A-Za-z0-9_.:@-]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CgroupPath(String);

impl CgroupPath {
    /// Validates `path` as an absolute, non-root cgroup path.
    pub fn parse(path: &str) -> Result<Self, CgroupError> {
        let invalid = |reason: String| CgroupError::InvalidPath {
            path: path.to_owned(),
            reason,
        };
        let rest = path
            .strip_prefix('/')
            .ok_or_else(|| invalid("must be absolute (start with `/`)".to_owned()))?;
        if rest.is_empty() {
            return Err(invalid(
                "the root cgroup cannot be used for a pod or container".to_owned(),
            ));
        }
        if path.len() > MAX_PATH_LEN {
            return Err(invalid(format!("longer than {MAX_PATH_LEN} bytes")));
        }
        for component in rest.split('/') {
            validate_component(component).map_err(invalid)?;
        }
        Ok(Self(path.to_owned()))
    }

    /// The path as a string, with its leading `/`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path without its leading `/`, ready to be joined onto a mount point.
    pub fn relative(&self) -> &str {
        &self.0[1..]
    }

    /// The components from the top down.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.relative().split('/')
    }

    /// Every ancestor-or-self from the top down: `/a`, `/a/b`, `/a/b/c`.
    pub fn prefixes(&self) -> Vec<CgroupPath> {
        let mut out = Vec::new();
        let mut current = String::new();
        for component in self.components() {
            current.push('/');
            current.push_str(component);
            out.push(Self(current.clone()));
        }
        out
    }

    /// `self/child` where `child` is one already-validated component.
    fn join_component(&self, child: &str) -> Self {
        Self(format!("{}/{}", self.0, child))
    }
}

impl fmt::Display for CgroupPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for CgroupPath {
    type Error = CgroupError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<CgroupPath> for String {
    fn from(value: CgroupPath) -> Self {
        value.0
    }
}

/// Checks one path component; the error is the reason, for the caller to wrap.
fn validate_component(component: &str) -> Result<(), String> {
    if component.is_empty() {
        return Err("empty path component (`//` or a trailing `/`)".to_owned());
    }
    if component == "." || component == ".." {
        return Err(format!("`{component}` components are not allowed"));
    }
    if component.len() > MAX_COMPONENT_LEN {
        return Err(format!("component longer than {MAX_COMPONENT_LEN} bytes"));
    }
    if let Some(bad) = component.chars().find(|c| !is_name_char(*c)) {
        return Err(format!(
            "component {component:?} contains {bad:?}; only [A-Za-z0-9_.:@-] are allowed"
        ));
    }
    Ok(())
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '@' | '-')
}

/// The pod cgroup for the cgroupfs driver: `cgroup_parent` itself, or
/// `<default_parent>/<pod_id>` when kubelet named none.
pub(super) fn cgroupfs_pod_path(
    cgroup_parent: &str,
    default_parent: &str,
    pod_id: &str,
) -> Result<CgroupPath, CgroupError> {
    if !cgroup_parent.is_empty() {
        if cgroup_parent.ends_with(".slice") && !cgroup_parent.contains('/') {
            return Err(CgroupError::InvalidPath {
                path: cgroup_parent.to_owned(),
                reason: "this is a systemd slice name but carrack uses the cgroupfs driver; \
                         kubelet's --cgroup-driver must match carrack's cgroups.driver"
                    .to_owned(),
            });
        }
        return CgroupPath::parse(cgroup_parent);
    }
    let parent = CgroupPath::parse(default_parent)?;
    validate_component(pod_id).map_err(|reason| CgroupError::InvalidPath {
        path: pod_id.to_owned(),
        reason: format!("pod id is not a valid cgroup name: {reason}"),
    })?;
    Ok(parent.join_component(pod_id))
}

/// The pod cgroup for the systemd driver: the expanded slice kubelet named, or a slice for
/// the pod under the default parent slice when kubelet named none.
pub(super) fn systemd_pod_path(
    cgroup_parent: &str,
    default_parent: &str,
    pod_id: &str,
) -> Result<CgroupPath, CgroupError> {
    if !cgroup_parent.is_empty() {
        let name = single_slice_name(cgroup_parent).ok_or_else(|| CgroupError::InvalidPath {
            path: cgroup_parent.to_owned(),
            reason: "the systemd cgroup driver expects a slice name such as \
                     `kubepods-burstable-pod<uid>.slice`, not a cgroupfs path; kubelet's \
                     --cgroup-driver must match carrack's cgroups.driver"
                .to_owned(),
        })?;
        return expand_slice(name);
    }
    // The default parent comes from our own config, where it is written as a path (`/carrack`)
    // so that it also serves the cgroupfs driver; for systemd it names the parent slice.
    let trimmed = default_parent.strip_prefix('/').unwrap_or(default_parent);
    if trimmed.is_empty() || trimmed.contains('/') {
        return Err(CgroupError::InvalidPath {
            path: default_parent.to_owned(),
            reason: "with the systemd driver the default parent must name one slice \
                     (`/carrack` or `carrack.slice`)"
                .to_owned(),
        });
    }
    let stem = trimmed.strip_suffix(".slice").unwrap_or(trimmed);
    if pod_id.is_empty() || pod_id.contains('-') || validate_component(pod_id).is_err() {
        // A dash would make systemd read the id as further slice levels.
        return Err(CgroupError::InvalidPath {
            path: pod_id.to_owned(),
            reason: "pod id cannot be part of a slice name (empty, a dash, or a character \
                     outside [A-Za-z0-9_.:@])"
                .to_owned(),
        });
    }
    let name = if stem == "-" {
        format!("{pod_id}.slice")
    } else {
        format!("{stem}-{pod_id}.slice")
    };
    expand_slice(&name)
}

/// `name` with at most one leading `/` stripped, when what is left is one `*.slice` component.
fn single_slice_name(value: &str) -> Option<&str> {
    let name = value.strip_prefix('/').unwrap_or(value);
    (name.ends_with(".slice") && !name.contains('/')).then_some(name)
}

/// Expands a systemd slice name into its cgroup path: each dash-separated prefix is a parent
/// slice, so `a-b-c.slice` lives at `/a.slice/a-b.slice/a-b-c.slice`.
pub fn expand_slice(name: &str) -> Result<CgroupPath, CgroupError> {
    let invalid = |reason: &str| CgroupError::InvalidPath {
        path: name.to_owned(),
        reason: reason.to_owned(),
    };
    let stem = name
        .strip_suffix(".slice")
        .ok_or_else(|| invalid("a systemd slice name must end in `.slice`"))?;
    if name.contains('/') {
        return Err(invalid("a slice name cannot contain `/`"));
    }
    if stem == "-" {
        return Err(invalid(
            "`-.slice` is the root cgroup, which cannot hold a pod",
        ));
    }
    if stem.is_empty() {
        return Err(invalid("empty slice name"));
    }
    if stem.starts_with('-') || stem.ends_with('-') {
        return Err(invalid("a slice name cannot start or end with `-`"));
    }
    if stem.contains("--") {
        return Err(invalid("a slice name cannot contain `--`"));
    }
    let mut path = String::new();
    let mut prefix = String::new();
    for part in stem.split('-') {
        if !prefix.is_empty() {
            prefix.push('-');
        }
        prefix.push_str(part);
        path.push('/');
        path.push_str(&prefix);
        path.push_str(".slice");
    }
    CgroupPath::parse(&path)
}

/// `<pod>/<leaf>` for a container id, keeping the result inside the pod cgroup whatever the
/// id holds.
///
/// Ids are minted by the store, which already restricts them to `[A-Za-z0-9_.:-]`; mapping any
/// other character (and a `.`/`..` id) to `_` is a second fence, not a naming scheme.
pub(super) fn container_path(pod: &CgroupPath, leaf: &str) -> CgroupPath {
    let mut name: String = leaf
        .chars()
        .map(|c| if is_name_char(c) { c } else { '_' })
        .take(MAX_COMPONENT_LEN)
        .collect();
    if name.is_empty() || name.chars().all(|c| c == '.') {
        name = "_".repeat(name.len().max(1));
    }
    if name != leaf {
        tracing::warn!(id = leaf, cgroup = %name, "container id sanitised for its cgroup name");
    }
    pod.join_component(&name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(result: Result<CgroupPath, CgroupError>) -> String {
        match result {
            Err(CgroupError::InvalidPath { reason, .. }) => reason,
            other => panic!("expected InvalidPath, got {other:?}"),
        }
    }

    #[test]
    fn kubelet_and_critest_parents_are_accepted() {
        for parent in [
            "/kubepods/burstable/pod1234-abcd",
            "/test.slice",
            "/a/b_c/d:e@f",
        ] {
            let path = cgroupfs_pod_path(parent, "/carrack", "p1").expect(parent);
            assert_eq!(path.as_str(), parent);
        }
    }

    #[test]
    fn empty_parent_uses_default_parent_and_pod_id() {
        let path = cgroupfs_pod_path("", "/carrack", "abc123").expect("path");
        assert_eq!(path.as_str(), "/carrack/abc123");
        assert_eq!(path.relative(), "carrack/abc123");
        assert_eq!(
            path.prefixes()
                .iter()
                .map(CgroupPath::as_str)
                .collect::<Vec<_>>(),
            ["/carrack", "/carrack/abc123"]
        );
    }

    #[test]
    fn hostile_parents_are_refused() {
        for hostile in [
            "/../etc",
            "/a/../../etc",
            "/a/./b",
            "a/b",
            "a//b",
            "/a//b",
            "/a/b/",
            "/",
            "/with space",
            "/tab\there",
            "/nul\0byte",
            "/new\nline",
            "/star*",
            "/ünïcode",
        ] {
            let err = cgroupfs_pod_path(hostile, "/carrack", "p1").expect_err(hostile);
            assert_eq!(
                err.kind(),
                crate::error_kind::ErrorKind::InvalidArgument,
                "{hostile}"
            );
        }
        let long = format!("/{}", "a".repeat(256));
        assert!(reason(CgroupPath::parse(&long)).contains("longer"));
    }

    #[test]
    fn hostile_pod_ids_and_default_parents_are_refused() {
        assert!(cgroupfs_pod_path("", "/carrack", "..").is_err());
        assert!(cgroupfs_pod_path("", "/carrack", "a/b").is_err());
        assert!(cgroupfs_pod_path("", "/carrack", "").is_err());
        assert!(cgroupfs_pod_path("", "carrack", "p").is_err());
        assert!(cgroupfs_pod_path("", "/", "p").is_err());
    }

    #[test]
    fn slice_name_on_cgroupfs_driver_says_driver_mismatch() {
        let text = reason(cgroupfs_pod_path(
            "kubepods-burstable-pod1.slice",
            "/carrack",
            "p",
        ));
        assert!(text.contains("cgroup-driver"), "{text}");
    }

    #[test]
    fn systemd_slices_expand_to_nested_paths() {
        let path = systemd_pod_path("kubepods-burstable-pod1234_5678.slice", "/carrack", "p")
            .expect("slice");
        assert_eq!(
            path.as_str(),
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234_5678.slice"
        );
        assert_eq!(
            expand_slice("test.slice").expect("slice").as_str(),
            "/test.slice"
        );
        // critest may send the slice with a leading slash.
        assert_eq!(
            systemd_pod_path("/test.slice", "/carrack", "p")
                .expect("slice")
                .as_str(),
            "/test.slice"
        );
    }

    #[test]
    fn malformed_slices_are_refused() {
        for bad in [
            "-.slice",
            "a--b.slice",
            "-a.slice",
            "a-.slice",
            ".slice",
            "kubepods",
            "kubepods.scope",
            "a b.slice",
        ] {
            assert!(expand_slice(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cgroupfs_path_on_systemd_driver_is_a_clear_invalid_argument() {
        let err = systemd_pod_path("/kubepods/burstable/pod1", "/carrack", "p").expect_err("path");
        assert_eq!(err.kind(), crate::error_kind::ErrorKind::InvalidArgument);
        assert!(err.to_string().contains("slice name"), "{err}");
    }

    #[test]
    fn systemd_default_parent_becomes_a_pod_slice() {
        let path = systemd_pod_path("", "/carrack", "abc").expect("slice");
        assert_eq!(path.as_str(), "/carrack.slice/carrack-abc.slice");
        let path = systemd_pod_path("", "kubepods-besteffort.slice", "abc").expect("slice");
        assert_eq!(
            path.as_str(),
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-abc.slice"
        );
        assert!(systemd_pod_path("", "/carrack", "a-b").is_err());
        assert!(systemd_pod_path("", "/a/b", "abc").is_err());
    }

    #[test]
    fn container_leaf_cannot_escape_the_pod() {
        let pod = CgroupPath::parse("/carrack/p").expect("pod");
        assert_eq!(container_path(&pod, "abc").as_str(), "/carrack/p/abc");
        assert_eq!(container_path(&pod, "..").as_str(), "/carrack/p/__");
        assert_eq!(container_path(&pod, "a/../b").as_str(), "/carrack/p/a_.._b");
        assert_eq!(container_path(&pod, "").as_str(), "/carrack/p/_");
        // Whatever went in, the result re-validates.
        for id in ["..", "a/b", "", " ", "x\0y"] {
            let path = container_path(&pod, id);
            CgroupPath::parse(path.as_str()).expect(id);
        }
    }

    #[test]
    fn serde_round_trip_validates() {
        let path = CgroupPath::parse("/a/b").expect("path");
        let json = serde_json::to_string(&path).expect("json");
        assert_eq!(json, "\"/a/b\"");
        let back: CgroupPath = serde_json::from_str(&json).expect("back");
        assert_eq!(back, path);
        assert!(serde_json::from_str::<CgroupPath>("\"/../etc\"").is_err());
    }
}
