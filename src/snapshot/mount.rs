//! Mounting a [`MountSpec`] as overlayfs with the new mount API.
//!
//! `fsopen("overlay")` + one `fsconfig("lowerdir+", dir)` per layer + `fsmount` +
//! `move_mount` has no limit on the number of layers: the classic `mount(2)` data string is
//! capped at one page, which long layer paths exhaust at a few dozen layers. `lowerdir+`
//! needs Linux 6.8. On older kernels the first `lowerdir+` fails with `EINVAL` and we fall
//! back to `mount(2)` with a `lowerdir=a:b:c` string, which works while it fits in a page
//! (our short `layers/<n>/fs` paths keep ~100 layers within that).

use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::io::Errno;
use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MountFlags, MoveMountFlags, UnmountFlags,
    fsconfig_create, fsconfig_set_string, fsmount, fsopen, move_mount,
};

use super::{MountSpec, SnapshotError};

/// `fsconfig` copies at most 256 bytes of a string value (NUL included).
const FSCONFIG_STRING_MAX: usize = 255;
/// `mount(2)` copies at most one page of data.
const MOUNT_DATA_MAX: usize = 4095;

/// Mounts `spec` as an overlay on `target` (an existing directory).
pub fn mount_overlay(spec: &MountSpec, target: &Path) -> Result<(), SnapshotError> {
    let fail = failure(target);
    let all_paths = spec
        .lower_dirs
        .iter()
        .chain([&spec.upper_dir, &spec.work_dir]);
    if let Some(long) = all_paths
        .into_iter()
        .find(|path| path.as_os_str().len() > FSCONFIG_STRING_MAX)
    {
        let log = format!("path {} is too long for fsconfig", long.display());
        return Err(fail("fsconfig", log, Errno::NAMETOOLONG));
    }
    let context = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)
        .map_err(|errno| fail("fsopen", String::new(), errno))?;
    let set = |key: &str, value: &Path, step: &'static str| {
        fsconfig_set_string(&context, key, value)
            .map_err(|errno| fail(step, kernel_log(context.as_fd()), errno))
    };
    let mut lowers = spec.lower_dirs.iter();
    if let Some(first) = lowers.next() {
        match fsconfig_set_string(&context, "lowerdir+", first) {
            Ok(()) => {}
            Err(errno) => {
                let log = kernel_log(context.as_fd());
                // Before 6.8 the key itself is unknown; any other failure is real.
                if errno == Errno::INVAL && log.contains("Unknown parameter") {
                    tracing::debug!(%log, "overlay lowerdir+ unsupported, using mount(2)");
                    return legacy_mount(spec, target);
                }
                return Err(fail("fsconfig lowerdir+", log, errno));
            }
        }
    }
    for lower in lowers {
        set("lowerdir+", lower, "fsconfig lowerdir+")?;
    }
    let mount = finish_mount(spec, context, target)?;
    attach(&mount, target)
}

/// Mounts `spec` as an overlay on `target` with `lowers` (detached mounts, one per
/// `spec.lower_dirs` entry and in the same order; typically idmapped clones of them) as the
/// layers, passed by descriptor (Linux 6.13+). The upper and work directories are used as
/// they are, so what the container writes is owned on disk by the ids it writes as.
pub fn mount_overlay_on_layer_mounts(
    spec: &MountSpec,
    lowers: &[OwnedFd],
    target: &Path,
) -> Result<(), SnapshotError> {
    let mount = overlay_on_layer_mounts(spec, lowers, target)?;
    attach(&mount, target)
}

/// The overlay of [`mount_overlay_on_layer_mounts`], left detached (errors name `target`);
/// dropping it unmounts it. Also how a kernel's support for it is probed.
pub fn overlay_on_layer_mounts(
    spec: &MountSpec,
    lowers: &[OwnedFd],
    target: &Path,
) -> Result<OwnedFd, SnapshotError> {
    let fail = failure(target);
    if lowers.len() != spec.lower_dirs.len() {
        return Err(fail(
            "fsconfig lowerdir+",
            format!(
                "{} layer mounts for {} layers",
                lowers.len(),
                spec.lower_dirs.len()
            ),
            Errno::INVAL,
        ));
    }
    let context = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)
        .map_err(|errno| fail("fsopen", String::new(), errno))?;
    for lower in lowers {
        rustix::mount::fsconfig_set_fd(&context, "lowerdir+", lower).map_err(|errno| {
            fail(
                "fsconfig lowerdir+ (fd)",
                kernel_log(context.as_fd()),
                errno,
            )
        })?;
    }
    finish_mount(spec, context, target)
}

/// Moves the detached `mount` onto `target`.
fn attach(mount: &OwnedFd, target: &Path) -> Result<(), SnapshotError> {
    move_mount(
        mount,
        "",
        rustix::fs::CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(|errno| failure(target)("move_mount", String::new(), errno))
}

/// The upper and work directories, then the (detached) mount itself, of an overlay whose
/// layers `context` has.
fn finish_mount(
    spec: &MountSpec,
    context: OwnedFd,
    target: &Path,
) -> Result<OwnedFd, SnapshotError> {
    let fail = failure(target);
    let set = |key: &str, value: &Path, step: &'static str| {
        fsconfig_set_string(&context, key, value)
            .map_err(|errno| fail(step, kernel_log(context.as_fd()), errno))
    };
    set("upperdir", &spec.upper_dir, "fsconfig upperdir")?;
    set("workdir", &spec.work_dir, "fsconfig workdir")?;
    // The inode index ties an upper to one set of lowers and refuses lowers shared by other
    // mounts on some kernels; containers never need it (containerd turns it off too).
    fsconfig_set_string(&context, "index", "off")
        .map_err(|errno| fail("fsconfig index", kernel_log(context.as_fd()), errno))?;
    fsconfig_create(&context)
        .map_err(|errno| fail("fsconfig create", kernel_log(context.as_fd()), errno))?;
    fsmount(
        &context,
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::empty(),
    )
    .map_err(|errno| fail("fsmount", kernel_log(context.as_fd()), errno))
}

/// Unmounts the overlay at `target`.
pub fn unmount_overlay(target: &Path) -> Result<(), SnapshotError> {
    rustix::mount::unmount(target, UnmountFlags::NOFOLLOW).map_err(|errno| SnapshotError::Mount {
        target: target.to_path_buf(),
        step: "umount",
        log: String::new(),
        source: errno.into(),
    })
}

/// The error of mount step `step` on `target`, with the kernel's messages `log`.
fn failure(target: &Path) -> impl Fn(&'static str, String, Errno) -> SnapshotError + '_ {
    move |step, log, errno| SnapshotError::Mount {
        target: target.to_path_buf(),
        step,
        log,
        source: errno.into(),
    }
}

/// Reads the messages the kernel queued on a filesystem context (`e overlayfs: ...`).
fn kernel_log(context: BorrowedFd<'_>) -> String {
    let mut messages = Vec::new();
    let mut buffer = [0u8; 1024];
    // Each read returns one message; ENODATA means the queue is empty.
    while let Ok(read) = rustix::io::read(context, &mut buffer) {
        if read == 0 || messages.len() >= 8 {
            break;
        }
        messages.push(
            String::from_utf8_lossy(&buffer[..read])
                .trim_end()
                .to_owned(),
        );
    }
    messages.join("; ")
}

/// The pre-6.8 path: one `mount(2)` with all options in a single page.
fn legacy_mount(spec: &MountSpec, target: &Path) -> Result<(), SnapshotError> {
    let fail = |log: String, errno: Errno| SnapshotError::Mount {
        target: target.to_path_buf(),
        step: "mount(2) fallback",
        log,
        source: errno.into(),
    };
    // mount(2) options cannot quote ',' and lowerdir cannot hold ':' unescaped; our own
    // paths never contain them, so refuse rather than escape.
    fn plain(path: &Path) -> Option<&[u8]> {
        let bytes = path.as_os_str().as_bytes();
        (!bytes.iter().any(|b| matches!(b, b',' | b':' | b'\\'))).then_some(bytes)
    }
    let checked = |path: &PathBuf| -> Result<Vec<u8>, SnapshotError> {
        plain(path).map(<[u8]>::to_vec).ok_or_else(|| {
            fail(
                format!("path {} contains ',', ':' or '\\'", path.display()),
                Errno::INVAL,
            )
        })
    };
    let mut data = b"lowerdir=".to_vec();
    for (position, lower) in spec.lower_dirs.iter().enumerate() {
        if position > 0 {
            data.push(b':');
        }
        data.extend_from_slice(&checked(lower)?);
    }
    data.extend_from_slice(b",upperdir=");
    data.extend_from_slice(&checked(&spec.upper_dir)?);
    data.extend_from_slice(b",workdir=");
    data.extend_from_slice(&checked(&spec.work_dir)?);
    data.extend_from_slice(b",index=off");
    if data.len() > MOUNT_DATA_MAX {
        return Err(fail(
            format!(
                "{} layers need {} bytes of mount options, over one page",
                spec.lower_dirs.len(),
                data.len()
            ),
            Errno::TOOBIG,
        ));
    }
    let data = CString::new(data)
        .map_err(|_| fail("mount options contain NUL".to_owned(), Errno::INVAL))?;
    rustix::mount::mount(
        "overlay",
        target,
        "overlay",
        MountFlags::empty(),
        data.as_c_str(),
    )
    .map_err(|errno| fail(String::new(), errno))
}
