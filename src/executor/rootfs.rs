//! The container's root filesystem, built inside the container process's new mount namespace.
//!
//! Every mount target is opened inside the rootfs with `openat2(RESOLVE_IN_ROOT)`, so a symlink
//! planted in the image (`/proc -> /etc`) resolves inside the rootfs, never on the host (the
//! runc CVE-2021-30465 class); missing targets are created through the same kind of lookups.
//! Mounts are made with the fd-based mount API (`open_tree`, `fsopen`/`fsmount`, `move_mount`
//! onto the opened target, `mount_setattr`), so no path is resolved twice. Masks, read-only
//! paths and sysctls are applied through the rootfs fd before `pivot_root`, while the host's
//! `/dev/null` can still be cloned: masked files get a read-only bind of it, checked first to
//! be the 1:3 character device (the CVE-2025-31133 class).
//!
//! Runs in the child between clone and exec: no allocation, errors are [`ChildFailure`]s.

use std::ffi::CStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{AtFlags, CWD, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MountPropagationFlags, MoveMountFlags,
    OpenTreeFlags, UnmountFlags,
};

use super::cgroup_mount::{CgroupHierarchy, CgroupPlan};
use super::error::{ChildFailure, Step};
use super::mount_options::attr;
use super::plan::{FsParameter, MountKind, MountPlan, Plan, RootfsPlan};
use super::sys;

type Result<T> = std::result::Result<T, ChildFailure>;

/// Opens `path` below `dirfd` as an `O_PATH` descriptor, with `dirfd` as the root.
fn resolve<P: rustix::path::Arg>(dirfd: BorrowedFd<'_>, path: P) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat2(
        dirfd,
        path,
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
}

/// Opens `relative` inside `root`, creating the missing directories on the way and, when
/// `file` is set, an empty file as the last component.
fn open_or_create(
    root: BorrowedFd<'_>,
    relative: &CStr,
    file: bool,
) -> rustix::io::Result<OwnedFd> {
    match resolve(root, relative) {
        Err(Errno::NOENT) => {}
        other => return other,
    }
    let bytes = relative.to_bytes();
    let mut parent = resolve(root, c".")?;
    let mut start = 0;
    loop {
        let end = bytes
            .get(start..)
            .and_then(|rest| rest.iter().position(|b| *b == b'/'))
            .map_or(bytes.len(), |at| start + at);
        let name = bytes.get(start..end).unwrap_or_default();
        let prefix = bytes.get(..end).unwrap_or_default();
        let last = end >= bytes.len();
        let next = match resolve(root, prefix) {
            Err(Errno::NOENT) => {
                let created = if last && file {
                    rustix::fs::openat(
                        &parent,
                        name,
                        OFlags::CREATE
                            | OFlags::EXCL
                            | OFlags::WRONLY
                            | OFlags::NOFOLLOW
                            | OFlags::CLOEXEC,
                        Mode::from_raw_mode(0o644),
                    )
                    .map(drop)
                } else {
                    rustix::fs::mkdirat(&parent, name, Mode::from_raw_mode(0o755))
                };
                match created {
                    Ok(()) | Err(Errno::EXIST) => resolve(root, prefix)?,
                    Err(errno) => return Err(errno),
                }
            }
            other => other?,
        };
        if last {
            return Ok(next);
        }
        parent = next;
        start = end + 1;
    }
}

/// Moves the detached mount `tree` onto the opened `target`.
fn attach(tree: &OwnedFd, target: &OwnedFd) -> rustix::io::Result<()> {
    rustix::mount::move_mount(
        tree,
        c"",
        target,
        c"",
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
    )
}

/// A new instance of `fstype` with `source` and `options`, detached, with attributes `attrs`.
fn new_filesystem(
    fstype: &CStr,
    source: Option<&CStr>,
    options: &[FsParameter],
    attrs: u64,
) -> rustix::io::Result<OwnedFd> {
    let fs = rustix::mount::fsopen(fstype, FsOpenFlags::FSOPEN_CLOEXEC)?;
    if let Some(source) = source {
        rustix::mount::fsconfig_set_string(&fs, c"source", source)?;
    }
    for (key, value) in options {
        match value {
            Some(value) => {
                rustix::mount::fsconfig_set_string(&fs, key.as_c_str(), value.as_c_str())?
            }
            None => rustix::mount::fsconfig_set_flag(&fs, key.as_c_str())?,
        }
    }
    rustix::mount::fsconfig_create(&fs)?;
    rustix::mount::fsmount(
        &fs,
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::from_bits_retain(attrs as _),
    )
}

/// Everything up to and including `pivot_root`: afterwards `/` is the container's root.
/// `enter_cgroup` is called before the first cgroup filesystem is mounted (which must show
/// the container's cgroup namespace); the caller makes sure it has run by the end. A cgroup
/// mount nothing else depends on is made last, after the masked and read-only paths
/// ([`RootfsPlan::cgroup_mount_last`]), so that all the rest can overlap the cgroup join.
pub(super) fn build(plan: &Plan, enter_cgroup: &mut dyn FnMut() -> Result<()>) -> Result<()> {
    let rootfs = &plan.rootfs;
    rustix::mount::mount_change(
        c"/",
        MountPropagationFlags::from_bits_retain(rootfs.propagation as _),
    )
    .map_err(ChildFailure::at(Step::RootPropagation, 0))?;
    if let Some(holder) = &rootfs.shared_holder {
        rustix::mount::mount_change(holder.as_c_str(), MountPropagationFlags::PRIVATE)
            .map_err(ChildFailure::at(Step::RootPropagation, 1))?;
    }
    // pivot_root needs the new root to be a mount point.
    rustix::mount::mount_bind_recursive(rootfs.path.as_c_str(), rootfs.path.as_c_str())
        .map_err(ChildFailure::at(Step::BindRootfs, 0))?;
    let root = rustix::fs::open(
        rootfs.path.as_c_str(),
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(ChildFailure::at(Step::OpenRootfs, 0))?;
    let root = root.as_fd();

    let userns = plan
        .process
        .user_namespace
        .as_ref()
        .map(|join| join.fd.as_fd());
    for (at, mount) in rootfs.mounts.iter().enumerate() {
        if rootfs.cgroup_mount_last == Some(at) {
            continue;
        }
        if matches!(mount.kind, MountKind::Cgroup(_)) {
            enter_cgroup()?;
        }
        mount_one(root, at, mount, userns)?;
    }
    create_devices(root, rootfs)?;
    for (at, sysctl) in plan.sysctls.iter().enumerate() {
        let fail = ChildFailure::at(Step::Sysctl, at);
        let file = rustix::fs::openat2(
            root,
            sysctl.path.as_c_str(),
            OFlags::WRONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        )
        .map_err(fail)?;
        rustix::io::write(&file, &sysctl.value).map_err(ChildFailure::at(Step::Sysctl, at))?;
    }
    mask_paths(root, rootfs)?;
    for (at, path) in rootfs.readonly_paths.iter().enumerate() {
        let fail = ChildFailure::at(Step::ReadonlyPath, at);
        let target = match resolve(root, path.as_c_str()) {
            Err(Errno::NOENT) => continue,
            other => other.map_err(fail)?,
        };
        let tree = rustix::mount::open_tree(
            &target,
            c"",
            OpenTreeFlags::OPEN_TREE_CLONE
                | OpenTreeFlags::OPEN_TREE_CLOEXEC
                | OpenTreeFlags::AT_EMPTY_PATH
                | OpenTreeFlags::AT_RECURSIVE,
        )
        .map_err(ChildFailure::at(Step::ReadonlyPath, at))?;
        sys::mount_setattr(
            tree.as_fd(),
            c"",
            (libc::AT_EMPTY_PATH | libc::AT_RECURSIVE) as u32,
            attr::RDONLY,
            0,
            0,
        )
        .map_err(ChildFailure::at(Step::ReadonlyPath, at))?;
        attach(&tree, &target).map_err(ChildFailure::at(Step::ReadonlyPath, at))?;
    }
    if let Some(at) = rootfs.cgroup_mount_last
        && let Some(mount) = rootfs.mounts.get(at)
    {
        enter_cgroup()?;
        mount_one(root, at, mount, userns)?;
    }
    if rootfs.readonly {
        sys::mount_setattr(root, c"", libc::AT_EMPTY_PATH as u32, attr::RDONLY, 0, 0)
            .map_err(ChildFailure::at(Step::ReadonlyRootfs, 0))?;
    }
    pivot(root)?;
    // Shared mounts (the bidirectional binds) joined their sources' peer groups when they were
    // cloned; the rest of the new tree, private until now, becomes shared too.
    if rootfs.shared_holder.is_some() {
        rustix::mount::mount_change(
            c"/",
            MountPropagationFlags::from_bits_retain(rootfs.propagation as _),
        )
        .map_err(ChildFailure::at(Step::RootPropagation, 2))?;
    }
    Ok(())
}

/// Makes one mount; `userns` is the container's user namespace, for idmapped binds.
fn mount_one(
    root: BorrowedFd<'_>,
    at: usize,
    mount: &MountPlan,
    userns: Option<BorrowedFd<'_>>,
) -> Result<()> {
    let target = open_or_create(root, mount.relative.as_c_str(), mount.file)
        .map_err(ChildFailure::at(Step::MountPoint, at))?;
    let options = &mount.options;
    let tree = match &mount.kind {
        MountKind::Bind {
            source,
            recursive,
            idmap,
        } => {
            let mut flags = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC;
            if *recursive {
                flags |= OpenTreeFlags::AT_RECURSIVE;
            }
            rustix::mount::open_tree(CWD, source.as_c_str(), flags).and_then(|tree| {
                match (idmap, userns) {
                    (false, _) => {}
                    (true, Some(userns)) => sys::set_idmap(tree.as_fd(), userns, *recursive)?,
                    // The plan allows idmapped binds only with a user namespace.
                    (true, None) => return Err(Errno::INVAL),
                }
                Ok(tree)
            })
        }
        MountKind::Filesystem {
            fstype,
            source,
            options: config,
        } => new_filesystem(fstype, source.as_deref(), config, options.attributes.set),
        MountKind::Cgroup(CgroupPlan::Unified) => {
            new_filesystem(c"cgroup2", Some(c"cgroup"), &[], options.attributes.set)
        }
        // Read-only comes after the hierarchies' mount points are made.
        MountKind::Cgroup(CgroupPlan::Hierarchies { tmpfs, .. }) => new_filesystem(
            c"tmpfs",
            Some(c"tmpfs"),
            tmpfs,
            options.attributes.set & !attr::RDONLY,
        ),
    }
    .map_err(ChildFailure::at(Step::Mount, at))?;
    attach(&tree, &target).map_err(ChildFailure::at(Step::Mount, at))?;
    if let MountKind::Cgroup(CgroupPlan::Hierarchies {
        hierarchies,
        symlinks,
        ..
    }) = &mount.kind
    {
        mount_cgroup_hierarchies(root, mount, hierarchies, symlinks)
            .map_err(ChildFailure::at(Step::Mount, at))?;
    }

    let is_bind = matches!(mount.kind, MountKind::Bind { .. });
    let bind_attributes = is_bind && !options.attributes.is_empty();
    if !bind_attributes && options.recursive.is_empty() && options.propagation.is_none() {
        return Ok(());
    }
    let fail = || ChildFailure::at(Step::MountAttributes, at);
    // The target fd still names the covered directory; the new mount is found by path.
    let mounted = resolve(root, mount.relative.as_c_str()).map_err(fail())?;
    let empty = libc::AT_EMPTY_PATH as u32;
    let recursive = (libc::AT_EMPTY_PATH | libc::AT_RECURSIVE) as u32;
    if bind_attributes {
        let attributes = options.attributes;
        sys::mount_setattr(
            mounted.as_fd(),
            c"",
            empty,
            attributes.set,
            attributes.clear,
            0,
        )
        .map_err(fail())?;
    }
    if !options.recursive.is_empty() {
        let attributes = options.recursive;
        sys::mount_setattr(
            mounted.as_fd(),
            c"",
            recursive,
            attributes.set,
            attributes.clear,
            0,
        )
        .map_err(fail())?;
    }
    if let Some((propagation, all)) = options.propagation {
        let flags = if all { recursive } else { empty };
        sys::mount_setattr(mounted.as_fd(), c"", flags, 0, 0, propagation).map_err(fail())?;
    }
    Ok(())
}

/// Mounts each hierarchy below the cgroup tmpfs just attached at `mount`'s destination, adds
/// the co-mount symlinks, and only then makes the tmpfs read-only if asked.
fn mount_cgroup_hierarchies(
    root: BorrowedFd<'_>,
    mount: &MountPlan,
    hierarchies: &[CgroupHierarchy],
    symlinks: &[(std::ffi::CString, std::ffi::CString)],
) -> rustix::io::Result<()> {
    let tmpfs = resolve(root, mount.relative.as_c_str())?;
    let attributes = mount.options.attributes.set;
    for hierarchy in hierarchies {
        let target = open_or_create(tmpfs.as_fd(), hierarchy.name.as_c_str(), false)?;
        let tree = new_filesystem(
            hierarchy.fstype.as_c_str(),
            Some(c"cgroup"),
            &hierarchy.options,
            attributes,
        )?;
        attach(&tree, &target)?;
    }
    for (target, name) in symlinks {
        match rustix::fs::symlinkat(target.as_c_str(), &tmpfs, name.as_c_str()) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(errno) => return Err(errno),
        }
    }
    if attributes & attr::RDONLY != 0 {
        sys::mount_setattr(
            tmpfs.as_fd(),
            c"",
            libc::AT_EMPTY_PATH as u32,
            attr::RDONLY,
            0,
            0,
        )?;
    }
    Ok(())
}

fn create_devices(root: BorrowedFd<'_>, rootfs: &RootfsPlan) -> Result<()> {
    for (at, device) in rootfs.devices.iter().enumerate() {
        let fail = || ChildFailure::at(Step::Device, at);
        let parent = open_or_create(root, device.parent.as_c_str(), false).map_err(fail())?;
        let made = rustix::fs::mknodat(
            &parent,
            device.name.as_c_str(),
            device.file_type,
            device.mode,
            device.rdev,
        );
        match made {
            Ok(()) | Err(Errno::EXIST) => {}
            // No CAP_MKNOD (a user namespace): bind the host's node instead.
            Err(Errno::PERM) => {
                let target = rustix::fs::openat(
                    &parent,
                    device.name.as_c_str(),
                    OFlags::CREATE | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o644),
                )
                .and_then(|_| resolve(parent.as_fd(), device.name.as_c_str()))
                .map_err(fail())?;
                let tree = rustix::mount::open_tree(
                    CWD,
                    device.path.as_c_str(),
                    OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
                )
                .map_err(fail())?;
                attach(&tree, &target).map_err(fail())?;
            }
            Err(errno) => return Err(fail()(errno)),
        }
        rustix::fs::chownat(
            &parent,
            device.name.as_c_str(),
            Some(rustix::fs::Uid::from_raw(device.uid)),
            Some(rustix::fs::Gid::from_raw(device.gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(fail())?;
    }
    if rootfs.dev_symlinks.is_empty() {
        return Ok(());
    }
    let dev = resolve(root, c"dev").map_err(ChildFailure::at(Step::DevSymlink, 0))?;
    for (at, (target, name)) in rootfs.dev_symlinks.iter().enumerate() {
        match rustix::fs::symlinkat(*target, &dev, *name) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(errno) => return Err(ChildFailure::at(Step::DevSymlink, at)(errno)),
        }
    }
    Ok(())
}

/// Hides each masked path: directories under an empty read-only tmpfs, anything else under a
/// read-only bind of the host's `/dev/null`.
fn mask_paths(root: BorrowedFd<'_>, rootfs: &RootfsPlan) -> Result<()> {
    if rootfs.masked.is_empty() {
        return Ok(());
    }
    // Opened here, in the new mount namespace: a descriptor from before the clone would name
    // a mount of the old namespace, which open_tree refuses to clone.
    let verify = ChildFailure::at(Step::MaskPath, u32::MAX as usize);
    let dev_null = rustix::fs::open(c"/dev/null", OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
        .map_err(verify)?;
    let stat = rustix::fs::fstat(&dev_null).map_err(verify)?;
    let is_null = FileType::from_raw_mode(stat.st_mode) == FileType::CharacterDevice
        && rustix::fs::major(stat.st_rdev) == 1
        && rustix::fs::minor(stat.st_rdev) == 3;
    if !is_null {
        return Err(verify(Errno::NODEV));
    }
    // Not NODEV on the /dev/null bind: reading the mask must give EOF, not EACCES.
    let masked_attrs = attr::RDONLY | attr::NOSUID | attr::NOEXEC;
    for (at, path) in rootfs.masked.iter().enumerate() {
        let fail = || ChildFailure::at(Step::MaskPath, at);
        let target = match resolve(root, path.as_c_str()) {
            Err(Errno::NOENT) => continue,
            other => other.map_err(fail())?,
        };
        let stat = rustix::fs::fstat(&target).map_err(fail())?;
        let tree = if FileType::from_raw_mode(stat.st_mode) == FileType::Directory {
            new_filesystem(c"tmpfs", Some(c"tmpfs"), &[], masked_attrs | attr::NODEV)
                .map_err(fail())?
        } else {
            let tree = rustix::mount::open_tree(
                &dev_null,
                c"",
                OpenTreeFlags::OPEN_TREE_CLONE
                    | OpenTreeFlags::OPEN_TREE_CLOEXEC
                    | OpenTreeFlags::AT_EMPTY_PATH,
            )
            .map_err(fail())?;
            sys::mount_setattr(
                tree.as_fd(),
                c"",
                libc::AT_EMPTY_PATH as u32,
                masked_attrs,
                0,
                0,
            )
            .map_err(fail())?;
            tree
        };
        attach(&tree, &target).map_err(fail())?;
    }
    Ok(())
}

/// `pivot_root(".", ".")` in the new root, then the old root (stacked on top) is made a
/// slave, so that detaching it cannot propagate to the host, and detached.
///
/// The old root is named through a descriptor opened before the pivot: `.` after the pivot
/// is the *new* root for `mount(2)` (only `umount` looks past it to the mount stacked on top),
/// and making the new tree a slave would cut the bidirectional binds off from the host.
fn pivot(root: BorrowedFd<'_>) -> Result<()> {
    let old_root = rustix::fs::open(
        c"/",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(ChildFailure::at(Step::PivotRoot, 0))?;
    rustix::process::fchdir(root).map_err(ChildFailure::at(Step::PivotRoot, 0))?;
    rustix::process::pivot_root(c".", c".").map_err(ChildFailure::at(Step::PivotRoot, 0))?;
    let detach = ChildFailure::at(Step::DetachOldRoot, 0);
    rustix::process::fchdir(&old_root).map_err(detach)?;
    rustix::mount::mount_change(
        c".",
        MountPropagationFlags::DOWNSTREAM | MountPropagationFlags::REC,
    )
    .map_err(detach)?;
    rustix::mount::unmount(c".", UnmountFlags::DETACH).map_err(detach)?;
    rustix::process::chdir(c"/").map_err(detach)
}
