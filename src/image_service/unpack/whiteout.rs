//! OCI whiteouts, recorded in overlayfs' own vocabulary.
//!
//! Each layer is unpacked into its own empty directory and overlayfs stacks the directories,
//! so a whiteout is never *applied* (nothing below exists here); it is written down the way
//! overlayfs reads it: `.wh.<name>` becomes a 0/0 character device `<name>`, and
//! `.wh..wh..opq` becomes the `trusted.overlay.opaque=y` xattr on its directory.

use std::os::fd::BorrowedFd;

use rustix::fs::{FileType, Mode, XattrFlags, fsetxattr, makedev, mknodat};
use rustix::io::Errno;

use super::name::EntryPath;

/// Prefix marking a whiteout.
const PREFIX: &[u8] = b".wh.";
/// Prefix of aufs bookkeeping entries (`.wh..wh.plnk`, `.wh..wh.aufs`), which carry nothing
/// a container sees.
const META_PREFIX: &[u8] = b".wh..wh.";
/// The opaque-directory marker.
const OPAQUE: &[u8] = b".wh..wh..opq";

/// The xattr overlayfs reads to hide everything below a directory.
pub(super) const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// What a layer entry means with respect to whiteouts.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Special<'a> {
    /// An ordinary entry.
    None,
    /// `.wh..wh..opq`: the parent directory is opaque.
    Opaque,
    /// `.wh.<name>`: `<name>` in the parent directory is deleted.
    Whiteout(&'a [u8]),
    /// aufs bookkeeping to skip.
    AufsMeta,
}

/// Classifies `path`, refusing whiteouts that name nothing, `.` or `..`, or that are used as
/// a directory (`a/.wh.b/c`: a whiteout name with a `/` after it).
pub(super) fn classify(path: &EntryPath) -> Result<Special<'_>, &'static str> {
    for component in path.parent().split(|&b| b == b'/') {
        if component.starts_with(META_PREFIX) {
            return Ok(Special::AufsMeta);
        }
        if component.starts_with(PREFIX) {
            return Err("a whiteout name is used as a directory");
        }
    }
    let name = path.name();
    if name == OPAQUE {
        return Ok(Special::Opaque);
    }
    if name.starts_with(META_PREFIX) {
        return Ok(Special::AufsMeta);
    }
    match name.strip_prefix(PREFIX) {
        None => Ok(Special::None),
        Some(b"") => Err("whiteout names nothing"),
        Some(b"." | b"..") => Err("whiteout of `.` or `..`"),
        Some(target) => Ok(Special::Whiteout(target)),
    }
}

/// Creates the overlay whiteout device for `name` in `parent`. Returns `false` if something
/// of that name already exists: it came from this same layer, and the OCI spec says a
/// whiteout only hides lower layers, so the layer's own entry wins.
pub(super) fn create_whiteout(parent: BorrowedFd<'_>, name: &[u8]) -> Result<bool, Errno> {
    match mknodat(
        parent,
        name,
        FileType::CharacterDevice,
        Mode::empty(),
        makedev(0, 0),
    ) {
        Ok(()) => Ok(true),
        Err(Errno::EXIST) => Ok(false),
        Err(errno) => Err(errno),
    }
}

/// Marks the directory open at `dir` (not `O_PATH`: xattrs need a real fd) opaque.
pub(super) fn mark_opaque(dir: BorrowedFd<'_>) -> Result<(), Errno> {
    fsetxattr(dir, OPAQUE_XATTR, b"y", XattrFlags::empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(raw: &str) -> Result<Special<'static>, &'static str> {
        let path = Box::leak(Box::new(EntryPath::parse(raw.as_bytes()).unwrap()));
        classify(path)
    }

    #[test]
    fn unpack_whiteout_classification() {
        assert_eq!(class("a/b"), Ok(Special::None));
        assert_eq!(class("a/.wh.b"), Ok(Special::Whiteout(b"b")));
        assert_eq!(class(".wh.etc"), Ok(Special::Whiteout(b"etc")));
        assert_eq!(class("a/.wh..wh..opq"), Ok(Special::Opaque));
        assert_eq!(class(".wh..wh.plnk/123.4"), Ok(Special::AufsMeta));
        assert_eq!(class("a/.wh..wh.aufs"), Ok(Special::AufsMeta));
        assert!(class("a/.wh..").is_err());
        assert!(class("a/.wh...").is_err());
        assert!(class("a/.wh.").is_err());
        assert!(class("a/.wh.b/c").is_err());
    }
}
