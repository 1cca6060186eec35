//! The root filesystem of a container whose pod has its own user namespace.
//!
//! The image layers are owned on disk by the image's ids (host root for most files), which
//! the pod's user namespace does not map: seen from inside they would belong to `nobody`. So
//! each layer is mounted through an idmapped clone (`open_tree` + `MOUNT_ATTR_IDMAP` with the
//! pod's user namespace), where a file owned by `k` appears owned by the host id that
//! container id `k` maps to, and the overlay is stacked on those clones, passed by descriptor
//! (the kernel refuses to idmap an overlay mount itself). The upper directory is used as it
//! is: what the container writes is owned on disk by the mapped host ids it writes as, and
//! copied-up files keep their mapped owners. Its root, the container's `/`, is given to the
//! mapped root.

use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::ContainerError;
use crate::executor::sys;
use crate::snapshot::{self, MountSpec};
use crate::store::UserNamespaceMappings;

/// Mounts the overlay of `spec` on `target` with its layers idmapped through the user
/// namespace pinned at `userns_path`, whose mappings are `mappings`.
pub(super) fn mount(
    id: &str,
    spec: &MountSpec,
    userns_path: &Path,
    mappings: &UserNamespaceMappings,
    target: &Path,
) -> Result<(), ContainerError> {
    let io = |action, path: &Path| ContainerError::io(id, action, path);
    let userns =
        std::fs::File::open(userns_path).map_err(io("open user namespace", userns_path))?;
    let lowers = idmapped_layers(spec, userns.as_fd())
        .map_err(|(path, source)| io("idmap layer", &path)(source))?;
    std::os::unix::fs::chown(
        &spec.upper_dir,
        Some(mappings.uid.host_id),
        Some(mappings.gid.host_id),
    )
    .map_err(io(
        "give the writable layer to the pod's root",
        &spec.upper_dir,
    ))?;
    snapshot::mount_overlay_on_layer_mounts(spec, &lowers, target).map_err(|source| {
        ContainerError::Snapshot {
            id: id.to_owned(),
            source,
        }
    })
}

/// An idmapped clone of each layer of `spec`, in its order; on failure the layer's path.
fn idmapped_layers(
    spec: &MountSpec,
    userns: std::os::fd::BorrowedFd<'_>,
) -> Result<Vec<OwnedFd>, (std::path::PathBuf, std::io::Error)> {
    spec.lower_dirs
        .iter()
        .map(|dir| {
            let fail = |source| (dir.clone(), source);
            let path = CString::new(dir.as_os_str().as_bytes())
                .map_err(|_| fail(std::io::Error::other("path has a NUL byte")))?;
            sys::idmapped_clone(&path, userns).map_err(|errno| fail(errno.into()))
        })
        .collect()
}

/// Whether this kernel and the filesystem of `dir` can give containers a rootfs in a user
/// namespace: a scratch overlay below `dir` is stacked on an idmapped layer (and never
/// attached). The error says what failed.
pub fn probe(dir: &Path) -> Result<(), String> {
    let scratch = dir.join(format!(".userns-probe-{}", std::process::id()));
    let result = probe_in(&scratch);
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

fn probe_in(scratch: &Path) -> Result<(), String> {
    let spec = MountSpec {
        lower_dirs: vec![scratch.join("lower")],
        upper_dir: scratch.join("upper"),
        work_dir: scratch.join("work"),
    };
    for dir in spec
        .lower_dirs
        .iter()
        .chain([&spec.upper_dir, &spec.work_dir])
    {
        std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    }
    let userns = sys::new_user_namespace("0 100000 65536\n", "0 100000 65536\n")
        .map_err(|e| format!("user namespace: {e}"))?;
    let lowers = idmapped_layers(&spec, userns.as_fd())
        .map_err(|(path, e)| format!("idmapped mount of {}: {e}", path.display()))?;
    let overlay =
        snapshot::overlay_on_layer_mounts(&spec, &lowers, scratch).map_err(|e| e.to_string())?;
    drop(overlay);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_kernel_supports_idmapped_overlay_layers() {
        if !rustix::process::geteuid().is_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        probe(dir.path()).unwrap();
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "scratch left"
        );
    }
}
