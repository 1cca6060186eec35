//! Mount options as OCI specs write them (`mount(8)` words), sorted into what the new mount
//! API wants: per-mount attributes (`MOUNT_ATTR_*`), recursive ones, propagation, superblock
//! flags and filesystem parameters for `fsconfig`.

/// `MOUNT_ATTR_*` values (from `<linux/mount.h>`).
pub mod attr {
    /// Read-only.
    pub const RDONLY: u64 = 0x1;
    /// Ignore suid and sgid bits.
    pub const NOSUID: u64 = 0x2;
    /// Disallow access to device special files.
    pub const NODEV: u64 = 0x4;
    /// Disallow program execution.
    pub const NOEXEC: u64 = 0x8;
    /// Mask of the atime mode.
    pub const ATIME_MASK: u64 = 0x70;
    /// Update atime relative to mtime/ctime (the default; zero).
    pub const RELATIME: u64 = 0x0;
    /// Do not update access times.
    pub const NOATIME: u64 = 0x10;
    /// Always update access times.
    pub const STRICTATIME: u64 = 0x20;
    /// Do not update directory access times.
    pub const NODIRATIME: u64 = 0x80;
    /// Do not follow symlinks.
    pub const NOSYMFOLLOW: u64 = 0x0020_0000;
}

/// Attributes to set and clear.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Attributes {
    /// `MOUNT_ATTR_*` to set.
    pub set: u64,
    /// `MOUNT_ATTR_*` to clear.
    pub clear: u64,
}

impl Attributes {
    fn set(&mut self, bits: u64) {
        self.set |= bits;
        self.clear &= !bits;
    }

    fn clear(&mut self, bits: u64) {
        self.clear |= bits;
        self.set &= !bits;
    }

    fn atime(&mut self, mode: u64) {
        self.clear |= attr::ATIME_MASK;
        self.set = (self.set & !attr::ATIME_MASK) | mode;
    }

    /// Whether nothing is to change.
    pub fn is_empty(&self) -> bool {
        self.set == 0 && self.clear == 0
    }
}

/// Parsed mount options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountOptions {
    /// `Some(recursive)` for `bind` / `rbind`.
    pub bind: Option<bool>,
    /// Attributes of the mount itself.
    pub attributes: Attributes,
    /// Attributes applied to the mount and everything below it (`rro`, `rnosuid`, ...).
    pub recursive: Attributes,
    /// `MS_SHARED`, `MS_SLAVE`, `MS_PRIVATE` or `MS_UNBINDABLE`, and whether recursive.
    pub propagation: Option<(u64, bool)>,
    /// Superblock flags, for `fsconfig` as flags (`sync`, `dirsync`, `lazytime`, `mand`, `silent`).
    pub superblock: Vec<&'static str>,
    /// Filesystem parameters: `key` or `key=value`.
    pub data: Vec<(String, Option<String>)>,
}

/// Parses `options`; the error says which option is refused and why.
pub fn parse(options: &[String]) -> Result<MountOptions, String> {
    let mut out = MountOptions::default();
    for option in options {
        let option = option.as_str();
        let (attributes, word) = match option.strip_prefix('r') {
            Some(word) if is_attribute(word) => (&mut out.recursive, word),
            _ => (&mut out.attributes, option),
        };
        match word {
            "ro" => attributes.set(attr::RDONLY),
            "rw" => attributes.clear(attr::RDONLY),
            "nosuid" => attributes.set(attr::NOSUID),
            "suid" => attributes.clear(attr::NOSUID),
            "nodev" => attributes.set(attr::NODEV),
            "dev" => attributes.clear(attr::NODEV),
            "noexec" => attributes.set(attr::NOEXEC),
            "exec" => attributes.clear(attr::NOEXEC),
            "noatime" => attributes.atime(attr::NOATIME),
            "relatime" | "atime" | "nostrictatime" => attributes.atime(attr::RELATIME),
            "strictatime" | "norelatime" => attributes.atime(attr::STRICTATIME),
            "nodiratime" => attributes.set(attr::NODIRATIME),
            "diratime" => attributes.clear(attr::NODIRATIME),
            "nosymfollow" => attributes.set(attr::NOSYMFOLLOW),
            "symfollow" => attributes.clear(attr::NOSYMFOLLOW),
            _ => match option {
                "defaults" | "async" | "nolazytime" | "nomand" | "loud" => {}
                "bind" => out.bind = Some(false),
                "rbind" => out.bind = Some(true),
                "sync" => out.superblock.push("sync"),
                "dirsync" => out.superblock.push("dirsync"),
                "lazytime" => out.superblock.push("lazytime"),
                "mand" => out.superblock.push("mand"),
                "silent" => out.superblock.push("silent"),
                "private" => out.propagation = Some((libc::MS_PRIVATE, false)),
                "rprivate" => out.propagation = Some((libc::MS_PRIVATE, true)),
                "shared" => out.propagation = Some((libc::MS_SHARED, false)),
                "rshared" => out.propagation = Some((libc::MS_SHARED, true)),
                "slave" => out.propagation = Some((libc::MS_SLAVE, false)),
                "rslave" => out.propagation = Some((libc::MS_SLAVE, true)),
                "unbindable" => out.propagation = Some((libc::MS_UNBINDABLE, false)),
                "runbindable" => out.propagation = Some((libc::MS_UNBINDABLE, true)),
                "idmap" | "ridmap" => {
                    return Err(format!("{option}: idmapped mounts are not supported yet"));
                }
                "tmpcopyup" | "remount" | "move" => {
                    return Err(format!("{option}: not supported"));
                }
                // Options for userspace mount helpers; the kernel never sees them.
                other if other.starts_with("x-") || other.starts_with("X-") => {}
                "" => return Err("empty option".to_owned()),
                other => match other.split_once('=') {
                    Some((key, value)) => out.data.push((key.to_owned(), Some(value.to_owned()))),
                    None => out.data.push((other.to_owned(), None)),
                },
            },
        }
    }
    Ok(out)
}

/// Whether `word` is an attribute option (one that has a recursive `r` form).
fn is_attribute(word: &str) -> bool {
    matches!(
        word,
        "ro" | "rw"
            | "nosuid"
            | "suid"
            | "nodev"
            | "dev"
            | "noexec"
            | "exec"
            | "noatime"
            | "relatime"
            | "atime"
            | "strictatime"
            | "nostrictatime"
            | "norelatime"
            | "nodiratime"
            | "diratime"
            | "nosymfollow"
            | "symfollow"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(options: &[&str]) -> Result<MountOptions, String> {
        parse(&options.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn attribute_words_become_mount_attributes() {
        let parsed = parse_all(&["nosuid", "noexec", "nodev", "ro", "strictatime"]).expect("ok");
        assert_eq!(
            parsed.attributes.set,
            attr::NOSUID | attr::NOEXEC | attr::NODEV | attr::RDONLY | attr::STRICTATIME
        );
        assert_eq!(parsed.attributes.clear, attr::ATIME_MASK);
        assert!(parsed.recursive.is_empty());
        assert!(parsed.data.is_empty());
    }

    #[test]
    fn later_words_win_and_negations_clear() {
        let parsed = parse_all(&["ro", "rw", "suid"]).expect("ok");
        assert_eq!(parsed.attributes.set, 0);
        assert_eq!(parsed.attributes.clear, attr::RDONLY | attr::NOSUID);
    }

    #[test]
    fn binds_propagation_and_recursive_read_only() {
        let parsed = parse_all(&["rbind", "rro", "rslave"]).expect("ok");
        assert_eq!(parsed.bind, Some(true));
        assert_eq!(parsed.recursive.set, attr::RDONLY);
        assert_eq!(parsed.propagation, Some((libc::MS_SLAVE, true)));
        let parsed = parse_all(&["bind", "private"]).expect("ok");
        assert_eq!(parsed.bind, Some(false));
        assert_eq!(parsed.propagation, Some((libc::MS_PRIVATE, false)));
    }

    #[test]
    fn the_rest_is_filesystem_data() {
        let parsed =
            parse_all(&["newinstance", "ptmxmode=0666", "mode=0620", "gid=5", "sync"]).expect("ok");
        assert_eq!(
            parsed.data,
            [
                ("newinstance".to_owned(), None),
                ("ptmxmode".to_owned(), Some("0666".to_owned())),
                ("mode".to_owned(), Some("0620".to_owned())),
                ("gid".to_owned(), Some("5".to_owned())),
            ]
        );
        assert_eq!(parsed.superblock, ["sync"]);
    }

    #[test]
    fn unsupported_options_are_named() {
        let err = parse_all(&["rbind", "idmap"]).expect_err("idmap refused");
        assert!(err.starts_with("idmap:"), "{err}");
        assert!(
            parse_all(&["x-systemd.automount"])
                .expect("ignored")
                .data
                .is_empty()
        );
    }
}
