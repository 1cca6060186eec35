//! The CRI socket: a unix socket, mode 0660, owned by root, in a 0711 directory.
//!
//! A socket file left by a dead daemon is replaced; one that still accepts connections belongs
//! to a live server and is never touched.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

use rustix::fs::{Mode, chown};
use rustix::process::{Gid, Uid, umask};
use tokio::net::UnixListener;

use super::DaemonError;

/// Binds the CRI socket at `path`, replacing a stale socket file.
pub fn bind(path: &Path) -> Result<UnixListener, DaemonError> {
    let io = |action, source| DaemonError::Io {
        action,
        path: path.to_owned(),
        source,
    };
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|err| io("create socket directory", err))?;
        fs::set_permissions(parent, fs::Permissions::from_mode(0o711))
            .map_err(|err| io("set mode of socket directory", err))?;
    }
    remove_if_stale(path)?;
    // Bind under a umask that leaves no group/other bits, so the socket is never reachable
    // with wider permissions than 0660, not even between bind and chmod.
    let previous = umask(Mode::from_raw_mode(0o177));
    let bound = UnixListener::bind(path);
    umask(previous);
    let listener = bound.map_err(|err| io("bind socket", err))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o660))
        .map_err(|err| io("set mode of socket", err))?;
    // Only root can hand a file to root; an unprivileged daemon (unit tests) keeps its own.
    if rustix::process::geteuid().is_root() {
        chown(path, Some(Uid::ROOT), Some(Gid::ROOT))
            .map_err(|err| io("set owner of socket", err.into()))?;
    }
    Ok(listener)
}

fn remove_if_stale(path: &Path) -> Result<(), DaemonError> {
    let metadata = match fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(err) if err.kind() == ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(DaemonError::Io {
                action: "inspect socket",
                path: path.to_owned(),
                source,
            });
        }
    };
    if !metadata.file_type().is_socket() {
        return Err(DaemonError::NotASocket {
            path: path.to_owned(),
        });
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(DaemonError::SocketInUse {
            path: path.to_owned(),
        }),
        Err(_) => {
            tracing::info!(path = %path.display(), "replacing stale socket of a dead daemon");
            fs::remove_file(path).map_err(|source| DaemonError::Io {
                action: "remove stale socket",
                path: path.to_owned(),
                source,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn binds_with_restricted_modes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run").join("carrack.sock");
        let _listener = bind(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        let parent_mode = fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(parent_mode, 0o711);
    }

    #[tokio::test]
    async fn stale_socket_is_replaced_live_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("carrack.sock");
        let stale = std::os::unix::net::UnixListener::bind(&path).unwrap();
        drop(stale); // the file stays, nobody listens
        let live = bind(&path).unwrap();
        let err = bind(&path).unwrap_err();
        assert!(matches!(err, DaemonError::SocketInUse { .. }), "{err}");
        drop(live);
    }

    #[tokio::test]
    async fn regular_file_is_never_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("carrack.sock");
        fs::write(&path, b"precious").unwrap();
        assert!(matches!(bind(&path), Err(DaemonError::NotASocket { .. })));
        assert_eq!(fs::read(&path).unwrap(), b"precious");
    }
}
