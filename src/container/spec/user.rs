//! The process's user: the CRI `run_as_*` fields or the image's `User`, resolved in the
//! container's own `/etc/passwd` and `/etc/group`, and its supplemental groups.
//!
//! Rules (containerd's, which kubelet's tests encode):
//! - `run_as_username` wins over `run_as_user`; either replaces the image's `User` entirely
//!   (the image's group part too); `run_as_group` needs one of them;
//! - the image's `User` is `uid`, `name`, `uid:gid`, `name:gid`, `uid:group` or `name:group`;
//! - a name must exist in `/etc/passwd` (`/etc/group` for a group name); a numeric uid need
//!   not, and then its primary group is 0; otherwise the primary group is the passwd entry's;
//! - the supplemental groups are the primary group, the requested ones, and with the `Merge`
//!   policy the groups `/etc/group` lists the user as a member of, in that order, without
//!   repeats.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use super::{SecurityContext, SpecError, SupplementalGroupsPolicy};

/// Largest `/etc/passwd` or `/etc/group` read (a hostile image could ship a huge one).
const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Most symlinks followed while resolving a path inside the rootfs (the kernel's limit).
const MAX_SYMLINKS: u32 = 40;

/// Reads the account files of a container's root filesystem.
pub trait PasswdSource {
    /// The text of `/etc/passwd`, or `None` when the image has none.
    fn passwd(&self) -> io::Result<Option<String>>;
    /// The text of `/etc/group`, or `None` when the image has none.
    fn group(&self) -> io::Result<Option<String>>;
}

/// Account files held in memory (tests, or a caller that already read them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PasswdFiles {
    /// `/etc/passwd`, if present.
    pub passwd: Option<String>,
    /// `/etc/group`, if present.
    pub group: Option<String>,
}

impl PasswdSource for PasswdFiles {
    fn passwd(&self) -> io::Result<Option<String>> {
        Ok(self.passwd.clone())
    }

    fn group(&self) -> io::Result<Option<String>> {
        Ok(self.group.clone())
    }
}

/// The account files of a rootfs on disk. Symlinks are resolved as they would be inside the
/// container, so an image whose `/etc/passwd` links to `/../../etc/shadow` reads its own file
/// (or nothing), never the host's; only regular files are read, and at most 4 MiB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootfsFiles {
    /// The container's root directory on the host.
    pub root: PathBuf,
}

impl RootfsFiles {
    /// The account files below `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn read(&self, path: &str) -> io::Result<Option<String>> {
        let resolved = match resolve_in_root(&self.root, Path::new(path)) {
            Ok(resolved) => resolved,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(err),
        };
        let file = match fs::OpenOptions::new()
            .read(true)
            // Never follow a link swapped in since resolution, never block on a FIFO.
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&resolved)
        {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(err),
        };
        if !file.metadata()?.is_file() {
            return Err(io::Error::other("not a regular file"));
        }
        let mut bytes = Vec::new();
        file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes)?;
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(io::Error::other(format!(
                "larger than {MAX_FILE_BYTES} bytes"
            )));
        }
        Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
    }
}

impl PasswdSource for RootfsFiles {
    fn passwd(&self) -> io::Result<Option<String>> {
        self.read("/etc/passwd")
    }

    fn group(&self) -> io::Result<Option<String>> {
        self.read("/etc/group")
    }
}

/// `path` resolved below `root` as if `root` were `/`: `..` stops at the root and symlinks
/// (absolute ones from the root) are followed inside it.
fn resolve_in_root(root: &Path, path: &Path) -> io::Result<PathBuf> {
    // Components still to walk, last first.
    let mut pending: Vec<PathBuf> = Vec::new();
    push_components(&mut pending, path);
    let mut resolved = PathBuf::new();
    let mut links = 0;
    while let Some(part) = pending.pop() {
        if part.as_os_str() == ".." {
            resolved.pop();
            continue;
        }
        let candidate = resolved.join(&part);
        let full = root.join(&candidate);
        let metadata = fs::symlink_metadata(&full)?;
        if metadata.file_type().is_symlink() {
            links += 1;
            if links > MAX_SYMLINKS {
                return Err(io::Error::from_raw_os_error(libc::ELOOP));
            }
            let target = fs::read_link(&full)?;
            if target.is_absolute() {
                resolved = PathBuf::new();
            }
            push_components(&mut pending, &target);
        } else {
            resolved = candidate;
        }
    }
    Ok(root.join(resolved))
}

/// Pushes the components of `path` onto `stack` so that the first is popped first; `.` and
/// the root are dropped, `..` kept as a marker.
fn push_components(stack: &mut Vec<PathBuf>, path: &Path) {
    let parts: Vec<PathBuf> = path
        .components()
        .filter_map(|component| match component {
            Component::Normal(name) => Some(PathBuf::from(name)),
            Component::ParentDir => Some(PathBuf::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect();
    stack.extend(parts.into_iter().rev());
}

/// A user or group as requested: a number, or a name to look up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum IdOrName {
    Id(u32),
    Name(String),
}

/// Who the process should run as, before lookup. `user: None` is the image default (root).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct UserRequest {
    pub user: Option<IdOrName>,
    pub group: Option<IdOrName>,
}

/// A CRI id (int64) as a kernel id.
pub(super) fn id(value: i64, field: &str) -> Result<u32, SpecError> {
    u32::try_from(value)
        .ok()
        .filter(|id| *id != u32::MAX)
        .ok_or_else(|| SpecError::invalid(field, format!("{value} is not a valid id")))
}

/// `1000` as an id, `www-data` as a name.
fn id_or_name(value: &str, field: &str) -> Result<IdOrName, SpecError> {
    if value.is_empty() {
        return Err(SpecError::invalid(field, "empty user or group"));
    }
    if value.contains(':') || value.contains('\0') || value.contains('\n') {
        return Err(SpecError::invalid(
            field,
            format!("{value:?} is not a user or group name"),
        ));
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        let number: i64 = value
            .parse()
            .map_err(|_| SpecError::invalid(field, format!("{value} is out of range")))?;
        return id(number, field).map(IdOrName::Id);
    }
    Ok(IdOrName::Name(value.to_owned()))
}

impl UserRequest {
    /// The request from the security context, falling back to the image's `User`.
    pub fn new(security: &SecurityContext, image_user: &str) -> Result<UserRequest, SpecError> {
        let group = security
            .run_as_group
            .map(|gid| id(gid, "security_context.run_as_group").map(IdOrName::Id))
            .transpose()?;
        if !security.run_as_username.is_empty() {
            return Ok(UserRequest {
                user: Some(id_or_name(
                    &security.run_as_username,
                    "security_context.run_as_username",
                )?),
                group,
            });
        }
        if let Some(uid) = security.run_as_user {
            return Ok(UserRequest {
                user: Some(IdOrName::Id(id(uid, "security_context.run_as_user")?)),
                group,
            });
        }
        if let Some(gid) = security.run_as_group {
            return Err(SpecError::GroupWithoutUser { gid });
        }
        let image_user = image_user.trim();
        if image_user.is_empty() {
            return Ok(UserRequest {
                user: None,
                group: None,
            });
        }
        let field = "image config User";
        let (user, group) = match image_user.split_once(':') {
            Some((user, group)) => (user, Some(id_or_name(group, field)?)),
            None => (image_user, None),
        };
        Ok(UserRequest {
            user: Some(id_or_name(user, field)?),
            group,
        })
    }
}

/// The resolved identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    /// The primary group first, then the supplemental groups.
    pub additional_gids: Vec<u32>,
}

/// One `/etc/passwd` line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
}

/// One `/etc/group` line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// The usable lines of a passwd file (comments, NIS `+`/`-` lines and malformed lines skipped,
/// as libc does).
fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|line| !line.starts_with(['#', '+', '-']))
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next().filter(|name| !name.is_empty())?;
            let _password = fields.next()?;
            let uid = fields.next()?.trim().parse().ok()?;
            let gid = fields.next()?.trim().parse().ok()?;
            Some(PasswdEntry {
                name: name.to_owned(),
                uid,
                gid,
            })
        })
        .collect()
}

/// The usable lines of a group file.
fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|line| !line.starts_with(['#', '+', '-']))
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next().filter(|name| !name.is_empty())?;
            let _password = fields.next()?;
            let gid = fields.next()?.trim().parse().ok()?;
            let members = fields
                .next()
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|member| !member.is_empty())
                .map(str::to_owned)
                .collect();
            Some(GroupEntry {
                name: name.to_owned(),
                gid,
                members,
            })
        })
        .collect()
}

/// Looks `request` up in the rootfs's account files.
pub(super) fn resolve(
    request: &UserRequest,
    supplemental: &[u32],
    policy: SupplementalGroupsPolicy,
    files: &dyn PasswdSource,
) -> Result<ResolvedUser, SpecError> {
    let merge = policy == SupplementalGroupsPolicy::Merge;
    let user = request.user.clone().unwrap_or(IdOrName::Id(0));
    let needs_passwd = merge || request.group.is_none() || matches!(user, IdOrName::Name(_));
    let passwd = if needs_passwd {
        let text = files.passwd().map_err(|source| SpecError::RootfsFile {
            file: "/etc/passwd",
            source,
        })?;
        parse_passwd(text.as_deref().unwrap_or_default())
    } else {
        Vec::new()
    };
    let (uid, primary_gid, name) = match &user {
        IdOrName::Id(uid) => match passwd.iter().find(|entry| entry.uid == *uid) {
            Some(entry) => (*uid, entry.gid, Some(entry.name.clone())),
            None => (*uid, 0, None),
        },
        IdOrName::Name(name) => {
            let entry = passwd
                .iter()
                .find(|entry| &entry.name == name)
                .ok_or_else(|| SpecError::UnknownUser { name: name.clone() })?;
            (entry.uid, entry.gid, Some(name.clone()))
        }
    };

    let needs_group_file =
        matches!(request.group, Some(IdOrName::Name(_))) || (merge && name.is_some());
    let groups = if needs_group_file {
        let text = files.group().map_err(|source| SpecError::RootfsFile {
            file: "/etc/group",
            source,
        })?;
        parse_group(text.as_deref().unwrap_or_default())
    } else {
        Vec::new()
    };
    let gid = match &request.group {
        None => primary_gid,
        Some(IdOrName::Id(gid)) => *gid,
        Some(IdOrName::Name(group)) => groups
            .iter()
            .find(|entry| &entry.name == group)
            .map(|entry| entry.gid)
            .ok_or_else(|| SpecError::UnknownGroup {
                name: group.clone(),
            })?,
    };

    let mut additional_gids = vec![gid];
    let mut add = |gid: u32| {
        if !additional_gids.contains(&gid) {
            additional_gids.push(gid);
        }
    };
    supplemental.iter().copied().for_each(&mut add);
    if let (true, Some(name)) = (merge, &name) {
        groups
            .iter()
            .filter(|group| group.members.iter().any(|member| member == name))
            .for_each(|group| add(group.gid));
    }
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Like the busybox-based test images: root, nobody, www-data, and critest's predefined
    /// group image (`default-user` 1000:1000, member of `group-defined-in-image` 50000).
    pub(crate) fn files() -> PasswdFiles {
        PasswdFiles {
            passwd: Some(
                "# comment\n\
                 root:x:0:0:root:/root:/bin/sh\n\
                 nobody:x:65534:65534:nobody:/home:/bin/false\n\
                 www-data:x:33:33:www-data:/var/www:/bin/false\n\
                 default-user:x:1000:1000:Linux User,,,:/home/default-user:/bin/sh\n\
                 broken-line\n\
                 bad:x:notanumber:0::/:/bin/sh\n"
                    .to_owned(),
            ),
            group: Some(
                "root:x:0:\n\
                 wheel:x:10:root\n\
                 nogroup:x:65534:\n\
                 www-data:x:33:\n\
                 staff:x:50:www-data,other\n\
                 default-user:x:1000:\n\
                 group-defined-in-image:x:50000:default-user\n"
                    .to_owned(),
            ),
        }
    }

    fn security() -> SecurityContext {
        SecurityContext::default()
    }

    fn resolve_with(
        security: &SecurityContext,
        image_user: &str,
        files: &dyn PasswdSource,
    ) -> Result<ResolvedUser, SpecError> {
        let request = UserRequest::new(security, image_user)?;
        let supplemental = security
            .supplemental_groups
            .iter()
            .map(|gid| id(*gid, "test"))
            .collect::<Result<Vec<_>, _>>()?;
        resolve(
            &request,
            &supplemental,
            security.supplemental_groups_policy,
            files,
        )
    }

    fn ids(image_user: &str) -> (u32, u32, Vec<u32>) {
        let user = resolve_with(&security(), image_user, &files()).expect(image_user);
        (user.uid, user.gid, user.additional_gids)
    }

    #[test]
    fn image_user_forms() {
        assert_eq!(ids(""), (0, 0, vec![0, 10]), "root, merged with wheel");
        assert_eq!(ids("33"), (33, 33, vec![33, 50]));
        assert_eq!(ids("www-data"), (33, 33, vec![33, 50]));
        assert_eq!(
            ids("1003:1004"),
            (1003, 1004, vec![1004]),
            "unknown uid: no lookup"
        );
        assert_eq!(ids("www-data:1004"), (33, 1004, vec![1004, 50]));
        assert_eq!(ids("1002"), (1002, 0, vec![0]), "unknown uid gets group 0");
        assert_eq!(ids("nobody:staff"), (65534, 50, vec![50]));
        assert_eq!(ids("33:nogroup"), (33, 65534, vec![65534, 50]));
    }

    #[test]
    fn unknown_names_are_errors() {
        let err = resolve_with(&security(), "ghost", &files()).expect_err("unknown user");
        assert!(matches!(&err, SpecError::UnknownUser { name } if name == "ghost"));
        assert_eq!(err.kind(), crate::error_kind::ErrorKind::InvalidArgument);
        let err = resolve_with(&security(), "root:ghosts", &files()).expect_err("unknown group");
        assert!(matches!(err, SpecError::UnknownGroup { name } if name == "ghosts"));
        let no_files = PasswdFiles::default();
        assert!(matches!(
            resolve_with(&security(), "root", &no_files),
            Err(SpecError::UnknownUser { .. })
        ));
        let user = resolve_with(&security(), "1001", &no_files).expect("numeric needs no file");
        assert_eq!((user.uid, user.gid), (1001, 0));
        for bad in [":1000", "root:", "99999999999", "a:b:c"] {
            assert!(
                matches!(
                    resolve_with(&security(), bad, &files()),
                    Err(SpecError::Invalid { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_security_context_replaces_the_image_user() {
        let mut sec = security();
        sec.run_as_user = Some(1001);
        let user = resolve_with(&sec, "www-data:staff", &files()).expect("uid");
        assert_eq!(
            (user.uid, user.gid),
            (1001, 0),
            "the image's group part is not used"
        );
        sec.run_as_group = Some(1002);
        let user = resolve_with(&sec, "www-data", &files()).expect("uid:gid");
        assert_eq!(
            (user.uid, user.gid, user.additional_gids),
            (1001, 1002, vec![1002])
        );
        sec.run_as_username = "nobody".to_owned();
        let user = resolve_with(&sec, "", &files()).expect("name wins over uid");
        assert_eq!((user.uid, user.gid), (65534, 1002));
        sec.run_as_username = "ghost".to_owned();
        assert!(matches!(
            resolve_with(&sec, "", &files()),
            Err(SpecError::UnknownUser { .. })
        ));
    }

    #[test]
    fn run_as_group_needs_a_user() {
        let mut sec = security();
        sec.run_as_group = Some(1002);
        let err = resolve_with(&sec, "www-data", &files()).expect_err("group alone");
        assert!(matches!(err, SpecError::GroupWithoutUser { gid: 1002 }));
        assert_eq!(err.kind(), crate::error_kind::ErrorKind::InvalidArgument);
        sec.run_as_user = Some(-1);
        assert!(matches!(
            resolve_with(&sec, "", &files()),
            Err(SpecError::Invalid { .. })
        ));
    }

    /// critest's SupplementalGroupsPolicy specs: image user 1000 (`default-user`), request
    /// groups [1234]; `id -G` must show `1000 1234 50000` (Merge) or `1000 1234` (Strict).
    #[test]
    fn supplemental_groups_merge_and_strict() {
        let mut sec = security();
        sec.supplemental_groups = vec![1234];
        let merged = resolve_with(&sec, "1000", &files()).expect("merge");
        assert_eq!((merged.uid, merged.gid), (1000, 1000));
        assert_eq!(merged.additional_gids, [1000, 1234, 50000]);
        sec.supplemental_groups_policy = SupplementalGroupsPolicy::Strict;
        let strict = resolve_with(&sec, "1000", &files()).expect("strict");
        assert_eq!(strict.additional_gids, [1000, 1234]);
        sec.supplemental_groups = vec![1234, 5678, 1234, 1000];
        let strict = resolve_with(&sec, "1000", &files()).expect("dedup");
        assert_eq!(strict.additional_gids, [1000, 1234, 5678]);
    }

    #[test]
    fn strict_numeric_user_and_group_read_nothing() {
        struct Failing;
        impl PasswdSource for Failing {
            fn passwd(&self) -> io::Result<Option<String>> {
                Err(io::Error::other("must not be read"))
            }
            fn group(&self) -> io::Result<Option<String>> {
                Err(io::Error::other("must not be read"))
            }
        }
        let mut sec = security();
        sec.run_as_user = Some(5);
        sec.run_as_group = Some(6);
        sec.supplemental_groups_policy = SupplementalGroupsPolicy::Strict;
        let user = resolve_with(&sec, "", &Failing).expect("no lookup");
        assert_eq!((user.uid, user.gid), (5, 6));
        sec.supplemental_groups_policy = SupplementalGroupsPolicy::Merge;
        let err = resolve_with(&sec, "", &Failing).expect_err("lookup fails");
        assert!(matches!(
            err,
            SpecError::RootfsFile {
                file: "/etc/passwd",
                ..
            }
        ));
        assert_eq!(err.kind(), crate::error_kind::ErrorKind::Internal);
    }

    #[test]
    fn rootfs_files_stay_inside_the_root() {
        let outside = tempfile::tempdir().expect("tempdir");
        fs::write(outside.path().join("secret"), "host:x:0:0::/:/bin/sh\n").expect("write");
        let root = tempfile::tempdir().expect("tempdir");
        let etc = root.path().join("etc");
        fs::create_dir(&etc).expect("mkdir");
        // An absolute link pointing at the host's file resolves inside the root instead.
        let escape = outside.path().join("secret");
        std::os::unix::fs::symlink(&escape, etc.join("passwd")).expect("symlink");
        let files = RootfsFiles::new(root.path());
        assert_eq!(
            files.passwd().expect("read"),
            None,
            "dangling inside the root"
        );
        // The same path inside the root is what gets read.
        let inside = root
            .path()
            .join(escape.strip_prefix("/").expect("absolute"));
        fs::create_dir_all(inside.parent().expect("parent")).expect("mkdir");
        fs::write(&inside, "image:x:7:7::/:/bin/sh\n").expect("write");
        assert_eq!(
            files.passwd().expect("read").as_deref(),
            Some("image:x:7:7::/:/bin/sh\n")
        );
        // Relative links climbing out stop at the root.
        fs::write(etc.join("real-group"), "g:x:9:image\n").expect("write");
        std::os::unix::fs::symlink("../../../../etc/real-group", etc.join("group"))
            .expect("symlink");
        assert_eq!(
            files.group().expect("read").as_deref(),
            Some("g:x:9:image\n")
        );
        // A directory is not a passwd file; a missing rootfs file is None.
        fs::remove_file(etc.join("group")).expect("rm");
        fs::create_dir(etc.join("group")).expect("mkdir");
        assert!(files.group().is_err());
        let empty = tempfile::tempdir().expect("tempdir");
        assert_eq!(RootfsFiles::new(empty.path()).passwd().expect("read"), None);
    }

    #[test]
    fn symlink_loops_are_errors() {
        let root = tempfile::tempdir().expect("tempdir");
        let etc = root.path().join("etc");
        fs::create_dir(&etc).expect("mkdir");
        std::os::unix::fs::symlink("/etc/passwd", etc.join("passwd")).expect("symlink");
        let err = RootfsFiles::new(root.path()).passwd().expect_err("loop");
        assert_eq!(err.raw_os_error(), Some(libc::ELOOP));
    }
}
