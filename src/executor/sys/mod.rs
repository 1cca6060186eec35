//! Raw syscall wrappers that need `unsafe`. This module is on the crate's unsafe inventory
//! (`#[allow(unsafe_code)]` in `executor/mod.rs`); every block says why it is sound.

use std::io;
use std::os::fd::AsRawFd;

use rustix::thread::UnshareFlags;

/// Namespaces a thread can leave into fresh ones without affecting the rest of the process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NewNamespaces {
    /// A new network namespace.
    pub net: bool,
    /// A new IPC namespace.
    pub ipc: bool,
    /// A new UTS (hostname) namespace.
    pub uts: bool,
}

/// Moves the *calling thread* into new network/IPC/UTS namespaces.
///
/// Only call this on a dedicated thread that exits afterwards: the namespaces belong to the
/// thread, and a pooled thread would carry them into unrelated work.
pub fn unshare_thread(namespaces: NewNamespaces) -> io::Result<()> {
    let mut flags = UnshareFlags::empty();
    if namespaces.net {
        flags |= UnshareFlags::NEWNET;
    }
    if namespaces.ipc {
        flags |= UnshareFlags::NEWIPC;
    }
    if namespaces.uts {
        flags |= UnshareFlags::NEWUTS;
    }
    if flags.is_empty() {
        return Ok(());
    }
    // SAFETY: `unshare_unsafe` is unsafe only because CLONE_FILES would split the fd table and
    // leave other threads holding fds this thread can no longer see. We pass only NEWNET,
    // NEWIPC and NEWUTS, which change no file descriptor table.
    unsafe { rustix::thread::unshare_unsafe(flags) }.map_err(io::Error::from)
}

/// Brings the loopback interface of the calling thread's network namespace up.
///
/// Done in-process with one ioctl instead of exec'ing the CNI `loopback` plugin, which costs a
/// process start (several milliseconds) per pod.
pub fn set_loopback_up() -> io::Result<()> {
    let socket = rustix::net::socket(
        rustix::net::AddressFamily::INET,
        rustix::net::SocketType::DGRAM,
        None,
    )?;
    // SAFETY: `ifreq` is a plain C struct for which all-zero bytes are a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(b"lo\0") {
        *slot = *byte as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the name and writes the flags union member of `request`, a
    // valid, exclusively borrowed `ifreq` that outlives the call; the fd is an open socket.
    let got = unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut request) };
    if got < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just filled `ifru_flags` (the active union member for SIOCGIFFLAGS).
    let flags = unsafe { request.ifr_ifru.ifru_flags };
    request.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
    // SAFETY: as above; SIOCSIFFLAGS only reads the name and the flags we set.
    let set = unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &request) };
    if set < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_comes_up_in_a_fresh_namespace() {
        if !rustix::process::geteuid().is_root() {
            return;
        }
        let up = std::thread::spawn(|| {
            unshare_thread(NewNamespaces {
                net: true,
                ..NewNamespaces::default()
            })?;
            set_loopback_up()?;
            let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
            std::net::TcpStream::connect(listener.local_addr()?).map(drop)
        })
        .join()
        .expect("thread");
        up.expect("loopback reachable in the new netns");
    }
}
