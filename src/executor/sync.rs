//! The parent↔child sync protocol: typed messages over a `SOCK_SEQPACKET` socket pair.
//!
//! 1. The child waits for [`Message::Go`] before anything that depends on its cgroup (a new
//!    cgroup namespace, the cgroup mount) or that runs the container's program: the parent
//!    first puts it into its cgroups (and, later, writes its id maps). A new container's
//!    mounts overlap that wait (see `child`); their kernel memory is then accounted to the
//!    monitor's cgroup.
//! 2. The child sets itself up. On failure it sends [`Message::Failed`] with the step, the
//!    item index and the errno, and exits. On success it calls `execve`; the socket is
//!    close-on-exec, so the parent reads end-of-file. The same end-of-file comes if the
//!    child dies without a word, which the parent tells apart by reaping it.
//!
//! Messages are fixed-size byte arrays: the child encodes them without allocating.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

use super::error::{ChildFailure, Step};

/// Encoded size of the largest message.
const MESSAGE_LEN: usize = 13;
/// Tag of [`Message::Go`].
const TAG_GO: u8 = 1;
/// Tag of [`Message::Failed`].
const TAG_FAILED: u8 = 2;
/// Tag of [`Message::PhaseDone`].
const TAG_PHASE: u8 = 3;

/// A step of the child's setup whose end it reports (for the start's trace).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetupPhase {
    /// Joining and creating namespaces.
    Namespaces = 1,
    /// Mounts, devices and `pivot_root`.
    Rootfs = 2,
    /// rlimits, stdio, user, capabilities, cwd: everything up to seccomp.
    Process = 3,
}

impl SetupPhase {
    /// The span name of the phase.
    pub fn name(self) -> &'static str {
        match self {
            Self::Namespaces => "executor.namespaces",
            Self::Rootfs => "executor.rootfs",
            Self::Process => "executor.process",
        }
    }

    fn from_code(code: u32) -> Option<Self> {
        match code {
            1 => Some(Self::Namespaces),
            2 => Some(Self::Rootfs),
            3 => Some(Self::Process),
            _ => None,
        }
    }
}

/// A message on the sync socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Message {
    /// Parent → child: setup may begin.
    Go,
    /// Child → parent: a setup step failed; the child exits next.
    Failed(ChildFailure),
    /// Child → parent: a setup phase ended at this wall-clock time (ns since the epoch).
    PhaseDone(SetupPhase, i64),
}

impl Message {
    fn encode(self) -> ([u8; MESSAGE_LEN], usize) {
        let mut buf = [0u8; MESSAGE_LEN];
        match self {
            Message::Go => {
                buf[0] = TAG_GO;
                (buf, 1)
            }
            Message::Failed(failure) => {
                buf[0] = TAG_FAILED;
                buf[1..5].copy_from_slice(&(failure.step as u32).to_le_bytes());
                buf[5..9].copy_from_slice(&failure.index.to_le_bytes());
                buf[9..13].copy_from_slice(&failure.errno.to_le_bytes());
                (buf, MESSAGE_LEN)
            }
            Message::PhaseDone(phase, at_ns) => {
                buf[0] = TAG_PHASE;
                buf[1..5].copy_from_slice(&(phase as u32).to_le_bytes());
                buf[5..13].copy_from_slice(&at_ns.to_le_bytes());
                (buf, MESSAGE_LEN)
            }
        }
    }

    fn decode(buf: &[u8]) -> Option<Message> {
        let word = |at: usize| -> Option<[u8; 4]> { buf.get(at..at + 4)?.try_into().ok() };
        match (buf.first()?, buf.len()) {
            (&TAG_GO, 1) => Some(Message::Go),
            (&TAG_FAILED, MESSAGE_LEN) => Some(Message::Failed(ChildFailure {
                step: Step::from_code(u32::from_le_bytes(word(1)?))?,
                index: u32::from_le_bytes(word(5)?),
                errno: i32::from_le_bytes(word(9)?),
            })),
            (&TAG_PHASE, MESSAGE_LEN) => Some(Message::PhaseDone(
                SetupPhase::from_code(u32::from_le_bytes(word(1)?))?,
                i64::from_le_bytes(buf.get(5..13)?.try_into().ok()?),
            )),
            _ => None,
        }
    }
}

/// What one end read.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Received {
    /// A message.
    Message(Message),
    /// The other end is closed (exec'd or dead).
    Closed,
    /// Bytes that are no message.
    Garbage(usize),
}

/// One end of the sync socket.
#[derive(Debug)]
pub(super) struct SyncSocket {
    fd: OwnedFd,
}

impl SyncSocket {
    /// A connected pair: `(parent end, child end)`, both close-on-exec, both numbered above
    /// stdio so the child's `dup2` onto 0-2 cannot clobber them.
    pub fn pair() -> io::Result<(SyncSocket, SyncSocket)> {
        let (a, b) = rustix::net::socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )?;
        let above_stdio =
            |fd: OwnedFd| -> io::Result<OwnedFd> { Ok(rustix::io::fcntl_dupfd_cloexec(&fd, 3)?) };
        Ok((
            SyncSocket {
                fd: above_stdio(a)?,
            },
            SyncSocket {
                fd: above_stdio(b)?,
            },
        ))
    }

    /// Sends `message`; allocation-free, usable in the child.
    pub fn send(&self, message: Message) -> rustix::io::Result<()> {
        let (buf, len) = message.encode();
        loop {
            match rustix::net::send(self.fd.as_fd(), &buf[..len], SendFlags::NOSIGNAL) {
                Err(rustix::io::Errno::INTR) => continue,
                Err(errno) => return Err(errno),
                Ok(_) => return Ok(()),
            }
        }
    }

    /// Whether the other end is closed (its process exited), without blocking and without
    /// consuming a message; allocation-free, usable in the child.
    pub fn peer_closed(&self) -> rustix::io::Result<bool> {
        let mut buf = [0u8; 1];
        loop {
            match rustix::net::recv(
                self.fd.as_fd(),
                &mut buf,
                RecvFlags::PEEK | RecvFlags::DONTWAIT,
            ) {
                Err(rustix::io::Errno::INTR) => continue,
                Err(rustix::io::Errno::AGAIN) => return Ok(false),
                // The peer closed while a message of ours sat unread on its side.
                Err(rustix::io::Errno::CONNRESET) => return Ok(true),
                Err(errno) => return Err(errno),
                Ok((0, _)) => return Ok(true),
                Ok(_) => return Ok(false),
            }
        }
    }

    /// Blocks for the next message; allocation-free, usable in the child.
    ///
    /// A peer that closes its end while a message of ours is still unread on its side (a
    /// child that failed before it read the go-ahead) makes the kernel report `ECONNRESET`
    /// once, *before* the messages it sent us. That error is consumed by the read that
    /// reports it, so reading on yields the peer's last messages and then the end.
    pub fn receive(&self) -> rustix::io::Result<Received> {
        let mut buf = [0u8; MESSAGE_LEN + 1];
        let mut reset_seen = false;
        loop {
            match rustix::net::recv(self.fd.as_fd(), &mut buf, RecvFlags::empty()) {
                Err(rustix::io::Errno::INTR) => continue,
                Err(rustix::io::Errno::CONNRESET) if !reset_seen => reset_seen = true,
                Err(errno) => return Err(errno),
                Ok((0, _)) => return Ok(Received::Closed),
                Ok((len, _)) => {
                    return Ok(match buf.get(..len).and_then(Message::decode) {
                        Some(message) => Received::Message(message),
                        None => Received::Garbage(len),
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_cross_the_socket_intact() {
        let (parent, child) = SyncSocket::pair().expect("socketpair");
        parent.send(Message::Go).expect("send go");
        assert_eq!(
            child.receive().expect("receive"),
            Received::Message(Message::Go)
        );
        let failure = ChildFailure {
            step: Step::Mount,
            index: 7,
            errno: libc::EPERM,
        };
        let mark = Message::PhaseDone(SetupPhase::Rootfs, 1_795_000_000_123_456_789);
        child.send(mark).expect("send phase mark");
        assert_eq!(parent.receive().expect("receive"), Received::Message(mark));
        child.send(Message::Failed(failure)).expect("send failure");
        assert_eq!(
            parent.receive().expect("receive"),
            Received::Message(Message::Failed(failure))
        );
        assert!(
            !parent.peer_closed().expect("peek"),
            "the child end is open"
        );
        drop(child);
        assert!(
            parent.peer_closed().expect("peek"),
            "the child end is closed"
        );
        assert_eq!(parent.receive().expect("receive"), Received::Closed);
    }

    #[test]
    fn a_peer_that_exits_without_reading_still_delivers_its_failure() {
        // The child failed before it read the go-ahead: its end closes with our message
        // unread, and the kernel reports a reset before the child's last message.
        let (parent, child) = SyncSocket::pair().expect("socketpair");
        parent.send(Message::Go).expect("send go");
        let failure = ChildFailure {
            step: Step::Mount,
            index: 6,
            errno: libc::ENODEV,
        };
        child.send(Message::Failed(failure)).expect("send failure");
        drop(child);
        assert_eq!(
            parent.receive().expect("receive"),
            Received::Message(Message::Failed(failure))
        );
        assert_eq!(parent.receive().expect("receive"), Received::Closed);
    }

    #[test]
    fn unknown_bytes_are_garbage() {
        assert_eq!(Message::decode(&[9]), None);
        assert_eq!(Message::decode(&[TAG_FAILED, 0, 0]), None);
        let mut bad_step = [0u8; MESSAGE_LEN];
        bad_step[0] = TAG_FAILED;
        assert_eq!(Message::decode(&bad_step), None);
    }
}
