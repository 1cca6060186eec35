//! Attach: the attach socket ([`ATTACH_SOCKET_FILE`](super::protocol::ATTACH_SOCKET_FILE)),
//! through which clients get the container's output as it is produced, write its stdin and
//! resize its terminal, in [`frame`](super::frame)s.
//!
//! The monitor never blocks on a client: sockets are non-blocking, each client's unsent
//! output is buffered up to [`MAX_BACKLOG`] and a client that falls further behind is dropped
//! (the CRI log still gets everything). Input waiting for a container that does not read is
//! buffered up to [`MAX_PENDING_INPUT`]; beyond that the clients are not read (back-pressure
//! through their sockets). With `stdin_once`, the container's stdin is closed once the first
//! client that sent input ends its input or goes away; with a terminal, whose master cannot be
//! closed without ending the output, input is then no longer passed on.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use rustix::io::Errno;
use rustix::net::SendFlags;

use super::diag::note;
use super::error::{MonitorError, io_at};
use super::frame::{self, Kind};
use super::log::Stream;
use super::output::timespec;

/// Unsent output one client may have before it is dropped as too slow.
pub(super) const MAX_BACKLOG: usize = 1024 * 1024;

/// Input waiting for the container beyond which clients are not read.
const MAX_PENDING_INPUT: usize = 64 * 1024;

/// Most clients attached at once; further connections are closed at once.
const MAX_CLIENTS: usize = 64;

/// Size of one read from a client.
const READ_CHUNK: usize = 16 * 1024;

/// One attached client.
#[derive(Debug)]
struct Client {
    stream: UnixStream,
    /// Received bytes not yet parsed into frames.
    received: Vec<u8>,
    /// Output frames not yet sent.
    backlog: Vec<u8>,
    /// It said (in its hello) that it sends input.
    sends_input: bool,
    /// Its input has ended.
    input_ended: bool,
    /// Gone, too slow or broken: removed after the current pass.
    dead: bool,
}

/// The attach side of a running container.
#[derive(Debug)]
pub(super) struct Attach {
    listener: UnixListener,
    path: PathBuf,
    clients: Vec<Client>,
    /// Where input goes: the stdin pipe's write end or the terminal master (non-blocking);
    /// `None` without stdin or once closed.
    input: Option<OwnedFd>,
    /// Input not yet written.
    pending: Vec<u8>,
    /// Close `input` once `pending` is written (`stdin_once`).
    close_input: bool,
    stdin_once: bool,
    /// The terminal master, for resizes.
    terminal: Option<OwnedFd>,
}

impl Attach {
    /// Binds the attach socket at `path` (removing a stale one). `input` is where clients'
    /// input goes, `terminal` the master to resize.
    pub(super) fn bind(
        path: &Path,
        input: Option<OwnedFd>,
        terminal: Option<OwnedFd>,
        stdin_once: bool,
    ) -> Result<Self, MonitorError> {
        let listener = super::control::bind_listener(path)?;
        if let Some(input) = &input {
            rustix::io::ioctl_fionbio(input, true)
                .map_err(|errno| io_at("set non-blocking stdin of", path)(errno.into()))?;
        }
        Ok(Attach {
            listener,
            path: path.to_owned(),
            clients: Vec::new(),
            input,
            pending: Vec::new(),
            close_input: false,
            stdin_once,
            terminal,
        })
    }

    /// Whether clients may be read (input is not backed up).
    fn reading(&self) -> bool {
        self.pending.len() < MAX_PENDING_INPUT
    }

    /// Whether the input descriptor is polled for writability.
    fn input_polled(&self) -> bool {
        self.input.is_some() && !self.pending.is_empty()
    }

    /// The descriptors to poll, in the order [`Attach::on_ready`] expects their events.
    pub(super) fn poll_fds(&self) -> Vec<PollFd<'_>> {
        let mut fds = Vec::with_capacity(2 + self.clients.len());
        fds.push(PollFd::new(&self.listener, PollFlags::IN));
        if let (true, Some(input)) = (self.input_polled(), &self.input) {
            fds.push(PollFd::new(input, PollFlags::OUT));
        }
        let read = if self.reading() {
            PollFlags::IN
        } else {
            PollFlags::empty()
        };
        for client in &self.clients {
            let write = if client.backlog.is_empty() {
                PollFlags::empty()
            } else {
                PollFlags::OUT
            };
            fds.push(PollFd::new(&client.stream, read | write));
        }
        fds
    }

    /// Acts on the events `poll` returned for [`Attach::poll_fds`].
    pub(super) fn on_ready(&mut self, events: &[PollFlags]) {
        let mut events = events.iter().copied();
        let accept = events.next().is_some_and(|ready| !ready.is_empty());
        if self.input_polled() && events.next().is_some_and(|ready| !ready.is_empty()) {
            self.write_input();
        }
        let reading = self.reading();
        let mut buf = [0u8; READ_CHUNK];
        for index in 0..self.clients.len() {
            let ready = events.next().unwrap_or_else(PollFlags::empty);
            if ready.contains(PollFlags::OUT) {
                send_backlog(&mut self.clients[index]);
            }
            if ready.intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR) {
                if reading {
                    self.receive(index, &mut buf);
                } else if ready.intersects(PollFlags::HUP | PollFlags::ERR) {
                    // Gone while its input is held back: what it still sent is lost with it.
                    self.clients[index].dead = true;
                }
            }
        }
        self.remove_dead();
        self.write_input();
        if accept {
            self.accept();
        }
    }

    /// Accepts every pending connection.
    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if self.clients.len() >= MAX_CLIENTS {
                        note!("attach: {MAX_CLIENTS} clients already attached; refusing another");
                        continue;
                    }
                    if let Err(err) = stream.set_nonblocking(true) {
                        note!("attach: set client non-blocking: {err}");
                        continue;
                    }
                    self.clients.push(Client {
                        stream,
                        received: Vec::new(),
                        backlog: Vec::new(),
                        sends_input: false,
                        input_ended: false,
                        dead: false,
                    });
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) => {
                    note!("attach: accept: {err}");
                    return;
                }
            }
        }
    }

    /// Reads once from client `index` and acts on its complete frames.
    fn receive(&mut self, index: usize, buf: &mut [u8]) {
        let client = &mut self.clients[index];
        match rustix::io::read(client.stream.as_fd(), &mut *buf) {
            Ok(0) => client.dead = true,
            Ok(len) => client.received.extend_from_slice(&buf[..len]),
            Err(Errno::AGAIN | Errno::INTR) => {}
            Err(_) => client.dead = true,
        }
        let received = std::mem::take(&mut client.received);
        let mut used = 0;
        loop {
            match frame::parse(&received[used..]) {
                Ok(Some(frame)) => {
                    used += frame.len;
                    self.act(index, frame.kind, frame.payload);
                }
                Ok(None) => break,
                Err(err) => {
                    note!("attach: {err}; dropping the client");
                    self.clients[index].dead = true;
                    break;
                }
            }
        }
        self.clients[index].received = received[used..].to_vec();
    }

    /// Acts on one frame from client `index`.
    fn act(&mut self, index: usize, kind: Kind, payload: &[u8]) {
        let client = &mut self.clients[index];
        match kind {
            Kind::Hello => client.sends_input = payload.first() == Some(&1),
            Kind::Stdin => {
                if self.input.is_some() && !self.close_input {
                    self.pending.extend_from_slice(payload);
                }
            }
            Kind::StdinEnd => {
                if client.sends_input && !client.input_ended {
                    client.input_ended = true;
                    self.input_session_ended();
                }
            }
            Kind::Resize => {
                if let (Some((width, height)), Some(terminal)) =
                    (frame::parse_resize(payload), &self.terminal)
                    && let Err(message) = super::stdio::resize(terminal, width, height)
                {
                    note!("attach: {message}");
                }
            }
            Kind::Stdout | Kind::Stderr => {
                note!("attach: a client sent output frames; dropping it");
                client.dead = true;
            }
        }
    }

    /// A client's input ended: with `stdin_once`, the container's stdin closes (after what is
    /// pending).
    fn input_session_ended(&mut self) {
        if self.stdin_once && self.input.is_some() {
            self.close_input = true;
            self.write_input();
        }
    }

    /// Writes pending input; closes the input when asked to and done, or when the container's
    /// end is gone.
    fn write_input(&mut self) {
        let Some(input) = &self.input else {
            self.pending.clear();
            return;
        };
        while !self.pending.is_empty() {
            match rustix::io::write(input, &self.pending) {
                Ok(written) => {
                    self.pending.drain(..written);
                }
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => return,
                Err(errno) => {
                    // EPIPE: the container closed its stdin; nothing will read it any more.
                    if errno != Errno::PIPE {
                        note!("attach: write stdin: {}", io::Error::from(errno));
                    }
                    self.pending.clear();
                    self.input = None;
                    return;
                }
            }
        }
        if self.close_input {
            self.input = None;
        }
    }

    /// Removes dead clients; one that sent input and had not ended it counts as ending it.
    fn remove_dead(&mut self) {
        let mut ended = false;
        self.clients.retain(|client| {
            if client.dead && client.sends_input && !client.input_ended {
                ended = true;
            }
            !client.dead
        });
        if ended {
            self.input_session_ended();
        }
    }

    /// Passes output of `stream` to every client.
    pub(super) fn broadcast(&mut self, stream: Stream, data: &[u8]) {
        if self.clients.is_empty() {
            return;
        }
        let kind = match stream {
            Stream::Stdout => Kind::Stdout,
            Stream::Stderr => Kind::Stderr,
        };
        for client in &mut self.clients {
            frame::encode_data(kind, data, &mut client.backlog);
            send_backlog(client);
            if client.backlog.len() > MAX_BACKLOG {
                note!("attach: a client fell {MAX_BACKLOG} bytes behind; dropping it");
                client.dead = true;
            }
        }
        self.remove_dead();
    }

    /// After the exit: sends what the clients still have to get, for at most `limit`, then
    /// closes them.
    pub(super) fn finish(&mut self, limit: Duration) {
        self.input = None;
        let deadline = Instant::now() + limit;
        loop {
            self.clients
                .retain(|client| !client.dead && !client.backlog.is_empty());
            let now = Instant::now();
            if self.clients.is_empty() || now >= deadline {
                break;
            }
            let mut fds: Vec<PollFd<'_>> = self
                .clients
                .iter()
                .map(|client| PollFd::new(&client.stream, PollFlags::OUT))
                .collect();
            match rustix::event::poll(&mut fds, Some(&timespec(deadline - now))) {
                Ok(0) => break,
                Ok(_) | Err(Errno::INTR) => {}
                Err(_) => break,
            }
            drop(fds);
            for client in &mut self.clients {
                send_backlog(client);
            }
        }
        self.clients.clear();
    }
}

impl Drop for Attach {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Sends as much of the client's backlog as its socket takes now.
fn send_backlog(client: &mut Client) {
    while !client.backlog.is_empty() {
        match rustix::net::send(&client.stream, &client.backlog, SendFlags::NOSIGNAL) {
            Ok(sent) => {
                client.backlog.drain(..sent);
            }
            Err(Errno::INTR) => {}
            Err(Errno::AGAIN) => return,
            Err(_) => {
                client.dead = true;
                client.backlog.clear();
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    fn attach(dir: &Path, stdin_once: bool) -> (Attach, io::PipeReader) {
        let (reader, writer) = io::pipe().expect("pipe");
        let attach = Attach::bind(
            &dir.join("attach.sock"),
            Some(OwnedFd::from(writer)),
            None,
            stdin_once,
        )
        .expect("bind");
        (attach, reader)
    }

    /// Polls and acts once (with a short timeout).
    fn turn(attach: &mut Attach) {
        let mut fds = attach.poll_fds();
        rustix::event::poll(&mut fds, Some(&timespec(Duration::from_millis(200)))).expect("poll");
        let events: Vec<PollFlags> = fds.iter().map(PollFd::revents).collect();
        drop(fds);
        attach.on_ready(&events);
    }

    /// Connects and sends the hello, then `more` (in one write, so one read gets it all).
    fn connect(dir: &Path, sends_input: bool, more: &[(Kind, &[u8])]) -> UnixStream {
        let mut stream = UnixStream::connect(dir.join("attach.sock")).expect("connect");
        let mut bytes = Vec::new();
        frame::encode(Kind::Hello, &[u8::from(sends_input)], &mut bytes);
        for (kind, payload) in more {
            frame::encode(*kind, payload, &mut bytes);
        }
        stream.write_all(&bytes).expect("hello");
        stream
    }

    fn frames(stream: &mut UnixStream, want: usize) -> Vec<(Kind, Vec<u8>)> {
        let mut buf = Vec::new();
        let mut out = Vec::new();
        let mut chunk = [0u8; 256];
        while out.len() < want {
            let len = stream.read(&mut chunk).expect("read");
            assert!(len > 0, "closed early");
            buf.extend_from_slice(&chunk[..len]);
            while let Some(frame) = frame::parse(&buf).expect("frame") {
                out.push((frame.kind, frame.payload.to_vec()));
                let used = frame.len;
                buf.drain(..used);
            }
        }
        out
    }

    /// Turns until `done`.
    fn turn_until(attach: &mut Attach, done: impl Fn(&Attach) -> bool) {
        while !done(attach) {
            turn(attach);
        }
    }

    #[test]
    fn every_client_gets_output_and_input_reaches_the_container() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut attach, mut stdin) = attach(dir.path(), false);
        let input: [(Kind, &[u8]); 2] = [(Kind::Stdin, b"hi\n"), (Kind::StdinEnd, b"")];
        let first = connect(dir.path(), true, &input);
        let mut second = connect(dir.path(), false, &[]);
        turn_until(&mut attach, |a| a.clients.len() == 2);
        turn_until(&mut attach, |a| a.clients[0].input_ended);
        let mut got = [0u8; 3];
        stdin.read_exact(&mut got).expect("container stdin");
        assert_eq!(&got, b"hi\n");
        // Not stdin_once: the input stays open after a session ended.
        assert!(attach.input.is_some());
        drop(first);
        turn_until(&mut attach, |a| a.clients.len() == 1);
        assert!(attach.input.is_some());
        attach.broadcast(Stream::Stdout, b"out");
        attach.broadcast(Stream::Stderr, b"err");
        assert_eq!(
            frames(&mut second, 2),
            vec![
                (Kind::Stdout, b"out".to_vec()),
                (Kind::Stderr, b"err".to_vec())
            ]
        );
        attach.finish(Duration::from_millis(100));
        let mut rest = Vec::new();
        second.read_to_end(&mut rest).expect("closed");
        assert!(rest.is_empty());
    }

    #[test]
    fn stdin_once_closes_the_input_when_the_first_session_goes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut attach, mut stdin) = attach(dir.path(), true);
        // An output-only client coming and going does not count.
        let watcher = connect(dir.path(), false, &[]);
        turn_until(&mut attach, |a| a.clients.len() == 1);
        drop(watcher);
        turn_until(&mut attach, |a| a.clients.is_empty());
        assert!(attach.input.is_some());
        let writer = connect(dir.path(), true, &[(Kind::Stdin, b"bye")]);
        turn_until(&mut attach, |a| a.clients.len() == 1);
        turn_until(&mut attach, |a| a.clients[0].sends_input);
        drop(writer);
        turn_until(&mut attach, |a| a.clients.is_empty());
        assert!(attach.input.is_none(), "stdin closed");
        let mut got = Vec::new();
        stdin.read_to_end(&mut got).expect("stdin ends");
        assert_eq!(got, b"bye");
    }

    #[test]
    fn a_client_that_does_not_read_is_dropped() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut attach, _stdin) = attach(dir.path(), false);
        let _sleeper = connect(dir.path(), false, &[]);
        turn_until(&mut attach, |a| a.clients.len() == 1);
        let chunk = vec![b'x'; 32 * 1024];
        for _ in 0..(4 * MAX_BACKLOG / chunk.len()) {
            attach.broadcast(Stream::Stdout, &chunk);
        }
        assert!(attach.clients.is_empty());
    }
}
