//! Applying one tar entry to the layer directory: creating the file, directory, link or node
//! and giving it the header's owner, mode, xattrs and times.
//!
//! Every path goes through [`Tree`], so parents are reached without following symlinks, and
//! the entry's own name is only used with calls that do not follow it either. Metadata is
//! applied in the order the kernel needs: data, then owner (chown clears setuid/setgid and
//! file capabilities), then mode, then xattrs, then times (every earlier step may touch
//! them). Directory times are applied last of all, once nothing more is created inside.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rustix::fs::{
    AtFlags, FileType, Gid, Mode, OFlags, Timespec, Timestamps, Uid, XattrFlags, chmodat, chownat,
    fchmod, fchown, fsetxattr, fstat, futimens, linkat, lsetxattr, makedev, mkdirat, mknodat,
    openat, statat, symlinkat, utimensat,
};
use rustix::io::Errno;
use tar::EntryType;

use super::UnpackError;
use super::name::EntryPath;
use super::tree::{Tree, WalkError, clear, is_whiteout, kind_at, replace_whiteout_with_dir};
use super::whiteout::{self, OPAQUE_XATTR, Special};

/// Size of the buffer file data is copied through.
pub(super) const COPY_BUFFER: usize = 256 * 1024;
/// Granularity at which sparse files skip zero runs instead of writing them.
const HOLE_BLOCK: usize = 4096;
/// Permission and special bits a header may set.
const MODE_BITS: u32 = 0o7777;
const SPECIAL_BITS: u32 = 0o7000;
const SETGID: u32 = 0o2000;

/// Why applying an entry failed.
#[derive(Debug)]
pub(super) enum ApplyError {
    /// Reading the entry's data failed; the stream layer knows why (see `stream`).
    Stream(io::Error),
    /// The entry is refused or the filesystem failed.
    Unpack(UnpackError),
}

impl From<UnpackError> for ApplyError {
    fn from(error: UnpackError) -> Self {
        Self::Unpack(error)
    }
}

/// The owner, mode, times and xattrs a header asks for.
#[derive(Debug)]
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: Timespec,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Meta {
    fn times(&self) -> Timestamps {
        // tar's atime is optional and rarely meaningful; use the mtime for both, like
        // containerd does when the header has none.
        Timestamps {
            last_access: self.mtime,
            last_modification: self.mtime,
        }
    }
}

/// Everything entry application needs besides the tree (kept apart so that a parent fd
/// borrowed from the tree can be used alongside it).
#[derive(Debug)]
struct Context {
    layer: PathBuf,
    allow_device_nodes: bool,
    euid: u32,
    egid: u32,
    /// The process umask, or 0o777 if unknown (then every mode is set explicitly).
    umask: u32,
    /// Whether a setgid directory exists in the layer: files created below one inherit its
    /// group (and directories its setgid bit), so ownership and mode must then always be set.
    gid_inherited: bool,
    /// Set when a directory tree was removed, so the tree's cached fd must be dropped.
    removed_dir: bool,
    /// Directory times to apply at the end, as creating children changes them.
    dir_times: Vec<(Vec<u8>, Timespec)>,
    buffer: Vec<u8>,
    /// The layer's uncompressed-size limit. A sparse entry's holes never pass through the
    /// stream meter, yet the tar reader hands them over as zeros to be scanned, so the sizes
    /// sparse entries claim are counted against this limit too.
    expansion_limit: u64,
    /// What sparse entries may still claim.
    sparse_budget: u64,
}

/// Applies entries to one layer directory.
#[derive(Debug)]
pub(super) struct Applier {
    tree: Tree,
    cx: Context,
}

impl Applier {
    /// Opens `dest` and prepares to apply entries into it.
    pub(super) fn new(
        dest: &Path,
        allow_device_nodes: bool,
        expansion_limit: u64,
    ) -> Result<Self, UnpackError> {
        let open_error = |source: io::Error| UnpackError::OpenDest {
            path: dest.to_path_buf(),
            source,
        };
        let tree = Tree::open(dest).map_err(open_error)?;
        let root_mode = fstat(tree.root()).map_err(|errno| open_error(errno.into()))?;
        Ok(Self {
            tree,
            cx: Context {
                layer: dest.to_path_buf(),
                allow_device_nodes,
                euid: rustix::process::geteuid().as_raw(),
                egid: rustix::process::getegid().as_raw(),
                umask: process_umask(),
                gid_inherited: root_mode.st_mode & SETGID != 0,
                removed_dir: false,
                dir_times: Vec::new(),
                buffer: vec![0; COPY_BUFFER],
                expansion_limit,
                sparse_budget: expansion_limit,
            },
        })
    }

    /// Applies one entry.
    pub(super) fn apply<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
    ) -> Result<(), ApplyError> {
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let mut entry_type = entry.header().entry_type();
        if entry_type.is_pax_global_extensions() {
            tracing::debug!(entry = %shown, "skipping pax global header");
            return Ok(());
        }
        // Pre-POSIX archives mark directories by a trailing slash on a regular entry.
        if entry_type == EntryType::Regular && raw.ends_with(b"/") {
            entry_type = EntryType::Directory;
        }
        let path = EntryPath::parse(&raw).map_err(|reason| UnpackError::InvalidName {
            entry: shown.clone(),
            reason,
        })?;
        if path.is_root() {
            if entry_type == EntryType::Directory {
                // The layer root belongs to the snapshotter; containerd ignores it too.
                tracing::debug!(entry = %shown, "skipping the layer root entry");
                return Ok(());
            }
            return Err(UnpackError::InvalidName {
                entry: shown,
                reason: "a non-directory entry names the layer root",
            }
            .into());
        }
        let special = whiteout::classify(&path).map_err(|reason| UnpackError::InvalidWhiteout {
            entry: shown.clone(),
            reason,
        })?;
        match special {
            Special::AufsMeta => {
                tracing::debug!(entry = %shown, "skipping aufs metadata entry");
                Ok(())
            }
            Special::Opaque => self.opaque(&path, &shown),
            Special::Whiteout(name) => self.whiteout(&path, name, &shown),
            Special::None => self.entry(entry, entry_type, &path, &shown),
        }
    }

    /// Applies the deferred directory times. Call once after the last entry.
    pub(super) fn finish(self) -> Result<(), UnpackError> {
        for (rel, mtime) in &self.cx.dir_times {
            let shown = String::from_utf8_lossy(rel);
            let dir = match self.tree.open_path(rel, OFlags::RDONLY) {
                Ok(dir) => dir,
                // A later entry replaced or removed it: nothing to stamp.
                Err(WalkError::Missing | WalkError::NotDir | WalkError::Symlink) => continue,
                Err(error) => return Err(self.cx.walk_error(&shown, error)),
            };
            let times = Timestamps {
                last_access: *mtime,
                last_modification: *mtime,
            };
            futimens(&dir, &times).map_err(|errno| self.cx.io(&shown, "set times", errno))?;
        }
        Ok(())
    }

    fn entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        entry_type: EntryType,
        path: &EntryPath,
        shown: &str,
    ) -> Result<(), ApplyError> {
        let meta = read_meta(entry, shown)?;
        match entry_type {
            EntryType::Char | EntryType::Block if !self.cx.allow_device_nodes => {
                tracing::debug!(entry = %shown, "skipping device node (not allowed)");
                return Ok(());
            }
            EntryType::Link => {
                // Resolve the target before borrowing the parent from the tree's cache.
                let (target_dir, target_name) = self.link_target(entry, shown)?;
                let parent = self
                    .tree
                    .parent_dir(path.parent())
                    .map_err(|error| self.cx.walk_error(shown, error))?;
                self.cx
                    .hardlink(target_dir.as_fd(), &target_name, parent, path.name(), shown)?;
                self.after_entry();
                return Ok(());
            }
            _ => {}
        }
        let parent = self
            .tree
            .parent_dir(path.parent())
            .map_err(|error| self.cx.walk_error(shown, error))?;
        let name = path.name();
        let result = match entry_type {
            EntryType::Regular | EntryType::Continuous => {
                self.cx.regular(parent, name, &meta, entry, false, shown)
            }
            EntryType::GNUSparse => self.cx.regular(parent, name, &meta, entry, true, shown),
            EntryType::Directory => self.cx.directory(parent, path, &meta, shown),
            EntryType::Symlink => {
                let target = entry.link_name_bytes().map(|target| target.into_owned());
                self.cx.symlink(parent, name, target, &meta, shown)
            }
            EntryType::Char => {
                self.cx
                    .node(parent, name, FileType::CharacterDevice, &meta, entry, shown)
            }
            EntryType::Block => {
                self.cx
                    .node(parent, name, FileType::BlockDevice, &meta, entry, shown)
            }
            EntryType::Fifo => self
                .cx
                .node(parent, name, FileType::Fifo, &meta, entry, shown),
            other => Err(UnpackError::UnsupportedType {
                entry: shown.to_owned(),
                entry_type: other.as_byte(),
            }
            .into()),
        };
        self.after_entry();
        result
    }

    fn parent(&mut self, path: &EntryPath, shown: &str) -> Result<BorrowedFd<'_>, ApplyError> {
        self.tree
            .parent_dir(path.parent())
            .map_err(|error| self.cx.walk_error(shown, error).into())
    }

    fn after_entry(&mut self) {
        if std::mem::take(&mut self.cx.removed_dir) {
            self.tree.invalidate();
        }
    }

    /// Resolves a hard link's target inside the layer, without creating anything.
    fn link_target<R: Read>(
        &self,
        entry: &tar::Entry<'_, R>,
        shown: &str,
    ) -> Result<(std::os::fd::OwnedFd, Vec<u8>), ApplyError> {
        let raw = entry
            .link_name_bytes()
            .map(|target| target.into_owned())
            .unwrap_or_default();
        let target_shown = String::from_utf8_lossy(&raw).into_owned();
        let refuse = |reason| UnpackError::HardlinkTarget {
            entry: shown.to_owned(),
            target: target_shown.clone(),
            reason,
        };
        let target = EntryPath::parse(&raw).map_err(refuse)?;
        if target.is_root() {
            return Err(refuse("the target is the layer root").into());
        }
        let dir =
            self.tree
                .open_path(target.parent(), OFlags::PATH)
                .map_err(|error| match error {
                    WalkError::Missing => refuse("the target does not exist in this layer").into(),
                    WalkError::Symlink | WalkError::Escape => {
                        refuse("the target's path crosses a symlink").into()
                    }
                    WalkError::NotDir => refuse("a parent of the target is not a directory").into(),
                    WalkError::Io(source) => {
                        ApplyError::from(self.cx.io(shown, "open link target", source))
                    }
                })?;
        Ok((dir, target.name().to_vec()))
    }

    fn opaque(&mut self, path: &EntryPath, shown: &str) -> Result<(), ApplyError> {
        // Make sure the directory exists (the marker may precede its directory's entry)...
        self.parent(path, shown)?;
        // ...then open it for real: xattrs cannot be set through an O_PATH fd.
        let dir = self
            .tree
            .open_path(path.parent(), OFlags::RDONLY)
            .map_err(|error| self.cx.walk_error(shown, error))?;
        whiteout::mark_opaque(dir.as_fd())
            .map_err(|errno| self.cx.io(shown, "set opaque xattr", errno))?;
        Ok(())
    }

    fn whiteout(&mut self, path: &EntryPath, name: &[u8], shown: &str) -> Result<(), ApplyError> {
        let parent = self
            .tree
            .parent_dir(path.parent())
            .map_err(|error| self.cx.walk_error(shown, error))?;
        let created = whiteout::create_whiteout(parent, name)
            .map_err(|errno| self.cx.io(shown, "create whiteout", errno))?;
        if !created {
            tracing::debug!(entry = %shown, "whiteout shadows an entry of the same layer; keeping the entry");
            return Ok(());
        }
        // A whiteout is root's, as every runtime writes it, whoever runs the unpack.
        if self.cx.euid != 0 || self.cx.egid != 0 || self.cx.gid_inherited {
            chownat(
                parent,
                name,
                Some(Uid::ROOT),
                Some(Gid::ROOT),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|errno| self.cx.io(shown, "chown whiteout", errno))?;
        }
        Ok(())
    }
}

impl Context {
    fn io(&self, entry: &str, op: &'static str, source: impl Into<io::Error>) -> UnpackError {
        UnpackError::Write {
            entry: entry.to_owned(),
            layer: self.layer.clone(),
            op,
            source: source.into(),
        }
    }

    fn walk_error(&self, entry: &str, error: WalkError) -> UnpackError {
        let escape = |reason| UnpackError::Escape {
            entry: entry.to_owned(),
            reason,
        };
        match error {
            WalkError::Symlink => escape("a parent directory is a symlink"),
            WalkError::Escape => escape("the path leaves the layer directory"),
            WalkError::NotDir => UnpackError::InvalidName {
                entry: entry.to_owned(),
                reason: "a parent is not a directory",
            },
            WalkError::Missing => self.io(entry, "open parent", Errno::NOENT),
            WalkError::Io(source) => self.io(entry, "open parent", source),
        }
    }

    /// Whether ownership must be set explicitly: new nodes belong to us (and to a setgid
    /// parent's group), so a chown is only needed when the header says otherwise.
    fn needs_chown(&self, meta: &Meta, created: bool) -> bool {
        !created || self.gid_inherited || meta.uid != self.euid || meta.gid != self.egid
    }

    /// Whether the mode must be set explicitly after creation (the create call cannot set
    /// special bits and is subject to the umask).
    fn needs_chmod(&self, mode: u32, created: bool) -> bool {
        !created || self.gid_inherited || mode & SPECIAL_BITS != 0 || mode & 0o777 & self.umask != 0
    }

    fn regular<R: Read>(
        &mut self,
        parent: BorrowedFd<'_>,
        name: &[u8],
        meta: &Meta,
        entry: &mut tar::Entry<'_, R>,
        sparse: bool,
        shown: &str,
    ) -> Result<(), ApplyError> {
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mode = Mode::from_raw_mode(meta.mode & 0o777);
        let fd = match openat(parent, name, flags, mode) {
            Ok(fd) => fd,
            Err(Errno::EXIST) => {
                // O_EXCL refused to reuse whatever is there (even a symlink): remove it, as
                // tar does, and create afresh.
                self.removed_dir |=
                    clear(parent, name).map_err(|source| self.io(shown, "replace", source))?;
                openat(parent, name, flags, mode)
                    .map_err(|errno| self.io(shown, "create file", errno))?
            }
            Err(errno) => return Err(self.io(shown, "create file", errno).into()),
        };
        let file = File::from(fd);
        self.copy_data(entry, &file, sparse, shown)?;
        self.finish_fd(file.as_fd(), meta, true, false, shown)
    }

    /// Copies the entry's data into `file` through one large buffer: one read-fill and one
    /// write per 256 KiB. Sparse entries skip all-zero blocks, leaving holes.
    fn copy_data<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        mut file: &File,
        sparse: bool,
        shown: &str,
    ) -> Result<(), ApplyError> {
        if sparse {
            // Refuse before scanning: a 2 KiB entry can claim a hole of 2^63 bytes.
            let claimed = entry.size();
            if claimed > self.sparse_budget {
                return Err(UnpackError::TooLarge {
                    limit: self.expansion_limit,
                }
                .into());
            }
            self.sparse_budget -= claimed;
        }
        let mut offset = 0u64;
        loop {
            let filled = fill(entry, &mut self.buffer).map_err(ApplyError::Stream)?;
            if filled == 0 {
                break;
            }
            let chunk = &self.buffer[..filled];
            if sparse {
                write_sparse(file, chunk, offset)
                    .map_err(|source| self.io(shown, "write", source))?;
            } else {
                file.write_all(chunk)
                    .map_err(|source| self.io(shown, "write", source))?;
            }
            offset += filled as u64;
        }
        // The tar reader reports a stream that ends inside an entry as a short read, not an
        // error; a short file must not pass for a complete one.
        if offset != entry.size() {
            return Err(ApplyError::Stream(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "archive ends after {offset} of the entry's {} bytes",
                    entry.size()
                ),
            )));
        }
        if sparse {
            // A trailing hole was never written; extend the file to its full size.
            file.set_len(offset)
                .map_err(|source| self.io(shown, "truncate", source))?;
        }
        Ok(())
    }

    fn directory(
        &mut self,
        parent: BorrowedFd<'_>,
        path: &EntryPath,
        meta: &Meta,
        shown: &str,
    ) -> Result<(), ApplyError> {
        let name = path.name();
        let mode = Mode::from_raw_mode(meta.mode & 0o777);
        let created = match mkdirat(parent, name, mode) {
            Ok(()) => true,
            // This layer deleted the lower directory and recreates it: opaque, so nothing
            // of the lower one shows through.
            Err(Errno::EXIST) if is_whiteout(parent, name) => {
                replace_whiteout_with_dir(parent, name, meta.mode & 0o777)
                    .map_err(|source| self.io(shown, "replace whiteout", source))?;
                true
            }
            Err(Errno::EXIST) => match kind_at(parent, name)
                .map_err(|source| self.io(shown, "stat", source))?
            {
                // A later entry for an existing directory updates its metadata.
                Some(FileType::Directory) => false,
                _ => {
                    self.removed_dir |=
                        clear(parent, name).map_err(|source| self.io(shown, "replace", source))?;
                    mkdirat(parent, name, mode).map_err(|errno| self.io(shown, "mkdir", errno))?;
                    true
                }
            },
            Err(errno) => return Err(self.io(shown, "mkdir", errno).into()),
        };
        let dir = openat(
            parent,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|errno| self.io(shown, "open directory", errno))?;
        self.finish_fd(dir.as_fd(), meta, created, true, shown)?;
        if meta.mode & SETGID != 0 {
            self.gid_inherited = true;
        }
        self.dir_times.push((path.as_bytes().to_vec(), meta.mtime));
        Ok(())
    }

    fn symlink(
        &mut self,
        parent: BorrowedFd<'_>,
        name: &[u8],
        target: Option<Vec<u8>>,
        meta: &Meta,
        shown: &str,
    ) -> Result<(), ApplyError> {
        let target = target.filter(|target| !target.is_empty()).ok_or_else(|| {
            UnpackError::InvalidHeader {
                entry: shown.to_owned(),
                reason: "symlink without a target".to_owned(),
            }
        })?;
        // The target is stored verbatim: it is only ever resolved inside the container's
        // root at run time, never by this unpacker (the walk refuses symlinks).
        match symlinkat(target.as_slice(), parent, name) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                self.removed_dir |=
                    clear(parent, name).map_err(|source| self.io(shown, "replace", source))?;
                symlinkat(target.as_slice(), parent, name)
                    .map_err(|errno| self.io(shown, "symlink", errno))?;
            }
            Err(errno) => return Err(self.io(shown, "symlink", errno).into()),
        }
        self.finish_at(parent, name, meta, false, shown)
    }

    fn node<R: Read>(
        &mut self,
        parent: BorrowedFd<'_>,
        name: &[u8],
        file_type: FileType,
        meta: &Meta,
        entry: &tar::Entry<'_, R>,
        shown: &str,
    ) -> Result<(), ApplyError> {
        let header = entry.header();
        let number = |field: io::Result<Option<u32>>| {
            field
                .map(Option::unwrap_or_default)
                .map_err(|error| UnpackError::InvalidHeader {
                    entry: shown.to_owned(),
                    reason: format!("device number: {error}"),
                })
        };
        let dev = if file_type == FileType::Fifo {
            0
        } else {
            makedev(
                number(header.device_major())?,
                number(header.device_minor())?,
            )
        };
        let mode = Mode::from_raw_mode(meta.mode & 0o777);
        match mknodat(parent, name, file_type, mode, dev) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                self.removed_dir |=
                    clear(parent, name).map_err(|source| self.io(shown, "replace", source))?;
                mknodat(parent, name, file_type, mode, dev)
                    .map_err(|errno| self.io(shown, "mknod", errno))?;
            }
            Err(errno) => return Err(self.io(shown, "mknod", errno).into()),
        }
        self.finish_at(parent, name, meta, true, shown)
    }

    fn hardlink(
        &mut self,
        target_dir: BorrowedFd<'_>,
        target_name: &[u8],
        parent: BorrowedFd<'_>,
        name: &[u8],
        shown: &str,
    ) -> Result<(), ApplyError> {
        let link = || linkat(target_dir, target_name, parent, name, AtFlags::empty());
        let refuse = |reason| UnpackError::HardlinkTarget {
            entry: shown.to_owned(),
            target: String::from_utf8_lossy(target_name).into_owned(),
            reason,
        };
        let map = |errno: Errno| -> ApplyError {
            match errno {
                Errno::NOENT => refuse("the target does not exist in this layer").into(),
                Errno::PERM => refuse("the target cannot be hard-linked (a directory?)").into(),
                other => self.io(shown, "link", other).into(),
            }
        };
        match link() {
            Ok(()) => Ok(()),
            Err(Errno::EXIST) => {
                let same = |flags| {
                    statat(parent, name, flags)
                        .ok()
                        .map(|stat| (stat.st_dev, stat.st_ino))
                };
                let existing = same(AtFlags::SYMLINK_NOFOLLOW);
                let wanted = statat(target_dir, target_name, AtFlags::SYMLINK_NOFOLLOW)
                    .ok()
                    .map(|stat| (stat.st_dev, stat.st_ino));
                if existing.is_some() && existing == wanted {
                    return Ok(());
                }
                let removed =
                    clear(parent, name).map_err(|source| self.io(shown, "replace", source))?;
                let linked = link().map_err(map);
                self.removed_dir |= removed;
                linked
            }
            Err(errno) => Err(map(errno)),
        }
    }

    /// Owner, mode, xattrs and (for non-directories) times, through an open fd.
    fn finish_fd(
        &mut self,
        fd: BorrowedFd<'_>,
        meta: &Meta,
        created: bool,
        is_dir: bool,
        shown: &str,
    ) -> Result<(), ApplyError> {
        if self.needs_chown(meta, created) {
            fchown(
                fd,
                Some(Uid::from_raw(meta.uid)),
                Some(Gid::from_raw(meta.gid)),
            )
            .map_err(|errno| self.io(shown, "chown", errno))?;
        }
        if self.needs_chmod(meta.mode, created) {
            fchmod(fd, Mode::from_raw_mode(meta.mode))
                .map_err(|errno| self.io(shown, "chmod", errno))?;
        }
        for (name, value) in &meta.xattrs {
            if let Some(name) = self.xattr_allowed(name, value, is_dir, shown) {
                let result = fsetxattr(fd, name, value, XattrFlags::empty());
                self.xattr_result(result, name, shown)?;
            }
        }
        if !is_dir {
            futimens(fd, &meta.times()).map_err(|errno| self.io(shown, "set times", errno))?;
        }
        Ok(())
    }

    /// Owner, mode, xattrs and times of a node that cannot be opened as a regular fd
    /// (symlink, device, fifo), by name in its parent without following it.
    fn finish_at(
        &mut self,
        parent: BorrowedFd<'_>,
        name: &[u8],
        meta: &Meta,
        set_mode: bool,
        shown: &str,
    ) -> Result<(), ApplyError> {
        if self.needs_chown(meta, true) {
            chownat(
                parent,
                name,
                Some(Uid::from_raw(meta.uid)),
                Some(Gid::from_raw(meta.gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|errno| self.io(shown, "chown", errno))?;
        }
        if set_mode && self.needs_chmod(meta.mode, true) {
            // fchmodat cannot refuse to follow a symlink, but this node was just created by
            // us in a directory only this unpack writes to, so it is not one.
            chmodat(
                parent,
                name,
                Mode::from_raw_mode(meta.mode),
                AtFlags::empty(),
            )
            .map_err(|errno| self.io(shown, "chmod", errno))?;
        }
        if !meta.xattrs.is_empty() {
            // There is no fd-based lsetxattr for nodes that cannot be opened; reach the node
            // through our verified parent fd's /proc magic link, which pins the directory, and
            // let lsetxattr not follow the final component.
            let mut path = format!("/proc/self/fd/{}/", parent.as_raw_fd()).into_bytes();
            path.extend_from_slice(name);
            for (xattr, value) in &meta.xattrs {
                if let Some(xattr) = self.xattr_allowed(xattr, value, false, shown) {
                    let result = lsetxattr(path.as_slice(), xattr, value, XattrFlags::empty());
                    self.xattr_result(result, xattr, shown)?;
                }
            }
        }
        utimensat(parent, name, &meta.times(), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|errno| self.io(shown, "set times", errno))?;
        Ok(())
    }

    /// Filters xattrs from the archive. overlayfs reads `trusted.overlay.*` (and, with
    /// `userxattr`, `user.overlay.*`) as instructions (redirects, metacopy, opaque), so a layer
    /// must not set them directly; the one exception is an opaque marker on a directory,
    /// which some tools emit instead of `.wh..wh..opq` and which means the same.
    fn xattr_allowed<'n>(
        &self,
        name: &'n [u8],
        value: &[u8],
        is_dir: bool,
        shown: &str,
    ) -> Option<&'n [u8]> {
        let overlay = name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.");
        if !overlay || (is_dir && name == OPAQUE_XATTR.as_bytes() && value == b"y") {
            return Some(name);
        }
        tracing::debug!(entry = %shown, xattr = %String::from_utf8_lossy(name), "skipping overlayfs xattr from layer");
        None
    }

    fn xattr_result(
        &self,
        result: Result<(), Errno>,
        name: &[u8],
        shown: &str,
    ) -> Result<(), ApplyError> {
        match result {
            Ok(()) => Ok(()),
            // The filesystem or the node type does not take this namespace (user.* on a
            // symlink, security.selinux without SELinux): the file is still usable, as with
            // containerd, so say so and go on.
            Err(errno @ (Errno::OPNOTSUPP | Errno::PERM)) => {
                tracing::warn!(
                    entry = %shown,
                    xattr = %String::from_utf8_lossy(name),
                    error = %errno,
                    "cannot set xattr from layer; skipping it"
                );
                Ok(())
            }
            Err(errno) => Err(self.io(shown, "set xattr", errno).into()),
        }
    }
}

/// Reads the header's metadata, including PAX `mtime` and `SCHILY.xattr.*` records.
fn read_meta<R: Read>(entry: &mut tar::Entry<'_, R>, shown: &str) -> Result<Meta, ApplyError> {
    let invalid = |reason: String| UnpackError::InvalidHeader {
        entry: shown.to_owned(),
        reason,
    };
    let header = entry.header();
    let mode = header
        .mode()
        .map_err(|error| invalid(format!("mode: {error}")))?
        & MODE_BITS;
    // -1 means "leave unchanged" to chown, so it cannot be an owner.
    let id = |value: io::Result<u64>, what: &str| {
        let value = value.map_err(|error| invalid(format!("{what}: {error}")))?;
        u32::try_from(value)
            .ok()
            .filter(|id| *id != u32::MAX)
            .ok_or_else(|| invalid(format!("{what} {value} out of range")))
    };
    let uid = id(header.uid(), "uid")?;
    let gid = id(header.gid(), "gid")?;
    let seconds = header
        .mtime()
        .map_err(|error| invalid(format!("mtime: {error}")))?;
    let mut mtime = Timespec {
        tv_sec: i64::try_from(seconds)
            .map_err(|_| invalid(format!("mtime {seconds} out of range")))?,
        tv_nsec: 0,
    };
    let mut xattrs = Vec::new();
    if let Some(extensions) = entry.pax_extensions().map_err(ApplyError::Stream)? {
        for extension in extensions {
            let extension = extension.map_err(|error| invalid(format!("pax record: {error}")))?;
            let key = extension.key_bytes();
            if key == b"mtime" {
                mtime = parse_pax_time(extension.value_bytes())
                    .ok_or_else(|| invalid("pax mtime is not a decimal time".to_owned()))?;
            } else if key.starts_with(b"GNU.sparse.") {
                // PAX-format sparse files carry their map inside the data, which the tar
                // reader does not decode; writing the raw data would corrupt the file.
                return Err(
                    invalid("PAX (GNU 0.x/1.0) sparse files are not supported".to_owned()).into(),
                );
            } else if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                xattrs.push((name.to_vec(), extension.value_bytes().to_vec()));
            }
        }
    }
    Ok(Meta {
        mode,
        uid,
        gid,
        mtime,
        xattrs,
    })
}

/// Parses a PAX time (`[-]seconds[.fraction]`) with nanosecond precision.
fn parse_pax_time(value: &[u8]) -> Option<Timespec> {
    let text = std::str::from_utf8(value).ok()?;
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(fraction) {
        return None;
    }
    let seconds: i64 = whole.parse().ok()?;
    let mut nanos: i64 = 0;
    for position in 0..9 {
        let digit = fraction
            .as_bytes()
            .get(position)
            .map_or(0, |b| i64::from(b - b'0'));
        nanos = nanos * 10 + digit;
    }
    Some(match (negative, nanos) {
        (false, _) => Timespec {
            tv_sec: seconds,
            tv_nsec: nanos,
        },
        (true, 0) => Timespec {
            tv_sec: -seconds,
            tv_nsec: 0,
        },
        // -1.25 is 1.25 s before the epoch: -2 s plus 0.75 s.
        (true, _) => Timespec {
            tv_sec: -seconds - 1,
            tv_nsec: 1_000_000_000 - nanos,
        },
    })
}

/// Reads until `buffer` is full or the entry ends.
fn fill(reader: &mut impl Read, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

/// Writes the non-zero blocks of `chunk` at `offset`, leaving holes for zero blocks.
fn write_sparse(file: &File, chunk: &[u8], offset: u64) -> io::Result<()> {
    let mut run_start: Option<usize> = None;
    let mut position = 0;
    for block in chunk.chunks(HOLE_BLOCK) {
        let zero = block.iter().all(|&b| b == 0);
        match (zero, run_start) {
            (false, None) => run_start = Some(position),
            (true, Some(start)) => {
                file.write_all_at(&chunk[start..position], offset + start as u64)?;
                run_start = None;
            }
            _ => {}
        }
        position += block.len();
    }
    if let Some(start) = run_start {
        file.write_all_at(&chunk[start..], offset + start as u64)?;
    }
    Ok(())
}

/// The process umask, read once from /proc (reading it with umask(2) would change it for
/// every thread meanwhile). Unknown is treated as "mask everything", which makes every mode
/// be set explicitly.
fn process_umask() -> u32 {
    static UMASK: OnceLock<u32> = OnceLock::new();
    *UMASK.get_or_init(|| {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|status| {
                status
                    .lines()
                    .find_map(|line| line.strip_prefix("Umask:"))
                    .and_then(|value| u32::from_str_radix(value.trim(), 8).ok())
            })
            .unwrap_or(0o777)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpack_pax_time_parsing() {
        let t = |s: &str| parse_pax_time(s.as_bytes()).map(|t| (t.tv_sec, t.tv_nsec));
        assert_eq!(t("1700000000"), Some((1_700_000_000, 0)));
        assert_eq!(t("1700000000.5"), Some((1_700_000_000, 500_000_000)));
        assert_eq!(t("1.1234567891"), Some((1, 123_456_789)));
        assert_eq!(t("-1.25"), Some((-2, 750_000_000)));
        assert_eq!(t("-3"), Some((-3, 0)));
        assert_eq!(t(""), None);
        assert_eq!(t("1e9"), None);
        assert_eq!(t(".5"), None);
    }
}
