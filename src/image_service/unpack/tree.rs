//! The layer directory as a tree of directory fds, walked without ever following a symlink.
//!
//! The layer directory is opened once. Every later lookup is an `openat2` relative to that fd
//! with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV`, so
//! the kernel itself refuses any path that would climb out, cross a symlink (even one
//! pointing inside the layer) or cross a mount. The entry's own last component is then only
//! ever used with `*at` calls on the parent fd that do not follow it (`O_NOFOLLOW`,
//! `O_EXCL`, `AT_SYMLINK_NOFOLLOW`, `linkat` without `AT_SYMLINK_FOLLOW`).

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{
    AtFlags, Dir, FileType, Mode, OFlags, ResolveFlags, mkdirat, openat, openat2, statat, unlinkat,
};
use rustix::io::Errno;

use super::whiteout;

/// Resolution rules for every walk: stay beneath the layer fd, follow nothing.
const WALK: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS)
    .union(ResolveFlags::NO_XDEV);

/// Mode of parent directories a layer implies but does not list (what Docker and containerd
/// use).
const IMPLIED_DIR_MODE: u32 = 0o755;

/// Why a directory could not be reached.
#[derive(Debug)]
pub(super) enum WalkError {
    /// A component is a symlink.
    Symlink,
    /// A component is not a directory.
    NotDir,
    /// A component does not exist (only when not creating).
    Missing,
    /// Resolution would leave the layer or cross a mount.
    Escape,
    /// Anything else.
    Io(io::Error),
}

impl WalkError {
    fn from_errno(errno: Errno) -> Self {
        match errno {
            Errno::LOOP => Self::Symlink,
            Errno::NOTDIR => Self::NotDir,
            Errno::NOENT => Self::Missing,
            Errno::XDEV => Self::Escape,
            other => Self::Io(other.into()),
        }
    }
}

/// The layer directory and a one-entry cache of the last parent directory used. Tar streams
/// list a directory's files together, so the cache saves one `openat2` for most entries.
#[derive(Debug)]
pub(super) struct Tree {
    root: OwnedFd,
    cached: Option<(Vec<u8>, OwnedFd)>,
}

impl Tree {
    /// Opens the layer directory. The caller chose `dest`, so resolving it normally is fine.
    pub(super) fn open(dest: &Path) -> io::Result<Self> {
        let root = openat(
            rustix::fs::CWD,
            dest,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Self { root, cached: None })
    }

    /// The layer directory's fd.
    pub(super) fn root(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }

    /// Forgets the cached parent; called after a directory was removed, since the cached fd
    /// could now refer to an unlinked directory.
    pub(super) fn invalidate(&mut self) {
        self.cached = None;
    }

    /// The directory at `rel` (normalised, layer-relative), creating missing components with
    /// mode 0755 the way tar extraction does for implied parents.
    pub(super) fn parent_dir(&mut self, rel: &[u8]) -> Result<BorrowedFd<'_>, WalkError> {
        if rel.is_empty() {
            return Ok(self.root.as_fd());
        }
        let hit = matches!(&self.cached, Some((path, _)) if path.as_slice() == rel);
        if !hit {
            let fd = match self.open_path(rel, OFlags::PATH) {
                Ok(fd) => fd,
                // A missing component is created; a non-directory one may be a whiteout
                // of this same layer, which a directory replaces (see `create_path`).
                Err(WalkError::Missing | WalkError::NotDir) => self.create_path(rel)?,
                Err(error) => return Err(error),
            };
            self.cached = Some((rel.to_vec(), fd));
        }
        match &self.cached {
            Some((_, fd)) => Ok(fd.as_fd()),
            None => Err(WalkError::Missing),
        }
    }

    /// Opens the existing directory at `rel` with `flags` (`O_PATH` for a dir fd to use with
    /// `*at` calls, `O_RDONLY` where the fd must carry xattrs or times). Never creates.
    pub(super) fn open_path(&self, rel: &[u8], flags: OFlags) -> Result<OwnedFd, WalkError> {
        let rel: &[u8] = if rel.is_empty() { b"." } else { rel };
        loop {
            match openat2(
                &self.root,
                rel,
                flags | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
                WALK,
            ) {
                Ok(fd) => return Ok(fd),
                // openat2 asks for a retry when a concurrent rename raced the walk.
                Err(Errno::AGAIN | Errno::INTR) => continue,
                Err(errno) => return Err(WalkError::from_errno(errno)),
            }
        }
    }

    /// Walks `rel` one component at a time, creating what is missing. A component that is a
    /// whiteout device (an earlier `.wh.<name>` of this layer) is replaced by an *opaque*
    /// directory: the layer deleted the lower `<name>` and then put new files under that
    /// name, so nothing of the lower directory may show through.
    fn create_path(&self, rel: &[u8]) -> Result<OwnedFd, WalkError> {
        let mut current: Option<OwnedFd> = None;
        for component in rel.split(|&b| b == b'/') {
            let base = current.as_ref().map_or(self.root.as_fd(), |fd| fd.as_fd());
            let open = || {
                openat2(
                    base,
                    component,
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                    WALK,
                )
            };
            let next = match open() {
                Ok(fd) => fd,
                Err(Errno::NOENT) => {
                    match mkdirat(base, component, Mode::from_raw_mode(IMPLIED_DIR_MODE)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(errno) => return Err(WalkError::Io(errno.into())),
                    }
                    open().map_err(WalkError::from_errno)?
                }
                Err(Errno::NOTDIR) if is_whiteout(base, component) => {
                    replace_whiteout_with_dir(base, component, IMPLIED_DIR_MODE)
                        .map_err(WalkError::Io)?;
                    open().map_err(WalkError::from_errno)?
                }
                Err(errno) => return Err(WalkError::from_errno(errno)),
            };
            current = Some(next);
        }
        current.ok_or(WalkError::Missing)
    }
}

/// Whether `name` in `parent` is an overlay whiteout (a 0/0 character device).
pub(super) fn is_whiteout(parent: BorrowedFd<'_>, name: &[u8]) -> bool {
    statat(parent, name, AtFlags::SYMLINK_NOFOLLOW).is_ok_and(|stat| {
        FileType::from_raw_mode(stat.st_mode) == FileType::CharacterDevice && stat.st_rdev == 0
    })
}

/// Replaces the whiteout `name` in `parent` by an opaque directory of `mode`.
pub(super) fn replace_whiteout_with_dir(
    parent: BorrowedFd<'_>,
    name: &[u8],
    mode: u32,
) -> io::Result<()> {
    unlinkat(parent, name, AtFlags::empty())?;
    mkdirat(parent, name, Mode::from_raw_mode(mode))?;
    let dir = openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    whiteout::mark_opaque(dir.as_fd())?;
    Ok(())
}

/// The type of `name` in `parent` (not following a symlink). `None` if absent.
pub(super) fn kind_at(parent: BorrowedFd<'_>, name: &[u8]) -> io::Result<Option<FileType>> {
    match statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => Ok(Some(FileType::from_raw_mode(stat.st_mode))),
        Err(Errno::NOENT) => Ok(None),
        Err(errno) => Err(errno.into()),
    }
}

/// Removes whatever is at `name` in `parent` so a new entry can take its place, as tar
/// extraction does. Returns whether a directory tree was removed (the caller must then drop
/// cached directory fds).
pub(super) fn clear(parent: BorrowedFd<'_>, name: &[u8]) -> io::Result<bool> {
    match kind_at(parent, name)? {
        None => Ok(false),
        Some(FileType::Directory) => {
            remove_tree(parent, name)?;
            Ok(true)
        }
        Some(_) => {
            match unlinkat(parent, name, AtFlags::empty()) {
                Ok(()) | Err(Errno::NOENT) => {}
                Err(errno) => return Err(errno.into()),
            }
            Ok(false)
        }
    }
}

/// Removes the directory `name` in `parent` and everything below it, through fds only.
///
/// Iterative, with an explicit stack: a layer may nest directories thousands deep, and one
/// native stack frame per level overflowed the unpacking thread's stack (found by the fuzzer).
/// Each level still holds one fd while its children go; past the fd limit that is a clean
/// error, not a crash.
fn remove_tree(parent: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    /// A directory being emptied: its fd, its name in its parent, subdirectories left.
    struct Level {
        dir: OwnedFd,
        name: Vec<u8>,
        subdirs: Vec<Vec<u8>>,
    }
    let mut stack = vec![empty_files_of(parent, name)?];
    while let Some(top) = stack.last_mut() {
        if let Some(child) = top.subdirs.pop() {
            let level = empty_files_of(top.dir.as_fd(), &child)?;
            stack.push(level);
            continue;
        }
        let done = stack.pop().ok_or_else(|| io::Error::other("empty stack"))?;
        let holder = stack.last().map_or(parent, |level| level.dir.as_fd());
        drop(done.dir);
        unlinkat(holder, done.name.as_slice(), AtFlags::REMOVEDIR)?;
    }
    return Ok(());

    /// Opens `name`, unlinks every non-directory in it and lists its subdirectories.
    fn empty_files_of(parent: BorrowedFd<'_>, name: &[u8]) -> io::Result<Level> {
        let dir = openat(
            parent,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        // Collect first: unlinking while reading a directory stream may skip entries.
        let mut children = Vec::new();
        for entry in Dir::read_from(&dir)? {
            let entry = entry?;
            let child = entry.file_name().to_bytes();
            if child != b"." && child != b".." {
                children.push((child.to_vec(), entry.file_type()));
            }
        }
        let mut subdirs = Vec::new();
        for (child, file_type) in children {
            let is_dir = match file_type {
                FileType::Directory => true,
                FileType::Unknown => kind_at(dir.as_fd(), &child)? == Some(FileType::Directory),
                _ => false,
            };
            if is_dir {
                subdirs.push(child);
            } else {
                unlinkat(&dir, child.as_slice(), AtFlags::empty())?;
            }
        }
        Ok(Level {
            dir,
            name: name.to_vec(),
            subdirs,
        })
    }
}
