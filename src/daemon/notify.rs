//! systemd readiness (`Type=notify`): one datagram to `$NOTIFY_SOCKET` saying `READY=1` once
//! the CRI socket accepts connections, and `STOPPING=1` when a stop begins.
//!
//! The protocol is a single `sendto` of text, so it is written here rather than pulled in as
//! a crate. `$NOTIFY_SOCKET` is a path, or an abstract socket name starting with `@`.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Sends `state` (e.g. `READY=1`) to the notify socket `address`; does nothing without one
/// (not started by systemd). Failures are logged, never fatal: readiness is a courtesy to the
/// service manager, and a daemon that serves must not stop over it.
pub fn notify(address: Option<&OsStr>, state: &str) {
    let Some(address) = address.filter(|address| !address.is_empty()) else {
        return;
    };
    if let Err(err) = send(address, state) {
        tracing::warn!(error = %err, socket = ?address, state, "notifying systemd failed");
    }
}

fn send(address: &OsStr, state: &str) -> std::io::Result<()> {
    let bytes = address.as_bytes();
    let target = match bytes.strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name)?
        }
        None => SocketAddr::from_pathname(std::path::Path::new(address))?,
    };
    let socket = UnixDatagram::unbound()?;
    socket.send_to_addr(state.as_bytes(), &target)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_reaches_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        notify(Some(path.as_os_str()), "READY=1");
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }

    #[test]
    fn readiness_reaches_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("carrack-notify-test-{}", std::process::id());
        let listener =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        notify(Some(OsStr::new(&format!("@{name}"))), "STOPPING=1");
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");
    }

    #[test]
    fn no_socket_means_no_notification() {
        notify(None, "READY=1");
        notify(Some(OsStr::new("")), "READY=1");
        // A socket that is gone is logged, not fatal.
        notify(Some(OsStr::new("/nonexistent/notify.sock")), "READY=1");
    }
}
