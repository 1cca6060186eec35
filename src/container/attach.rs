//! Streaming `Attach`: a connection to the attach socket of the container's monitor, which
//! holds the container's stdio (so attach works across daemon restarts), turned into plain
//! async streams for the caller: the container's stdout and stderr as it produces them, its
//! stdin (when it was created with `stdin`), and terminal resizes.
//!
//! Two tasks per attach: one splits the monitor's frames into the output streams, one frames
//! the caller's input and resizes. The output streams are bounded; a caller that stops reading
//! backs up into the socket, and the monitor drops such a client rather than wait for it.

use std::io;
use std::os::unix::net::UnixStream as StdUnixStream;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::exec::ExecStreams;
use super::{ContainerError, ContainerService};
use crate::monitor::frame::{self, Kind};
use crate::monitor::protocol::{ATTACH_SOCKET_FILE, with_socket_path};

/// Bytes of output or input in flight between the socket and the caller, per stream.
const STREAM_BUFFER: usize = 64 * 1024;

/// Resize events queued for the monitor; more are dropped (a later one follows anyway).
const RESIZE_QUEUE: usize = 16;

/// A live attach to a container's stdio.
#[derive(Debug)]
pub struct Attached {
    /// Input for the container: write to it, shut it down to end this attach's input.
    /// `None` unless asked for and the container was created with `stdin`.
    pub stdin: Option<DuplexStream>,
    /// The container's stdout (all of a terminal's output), when asked for.
    pub stdout: Option<DuplexStream>,
    /// The container's stderr, when asked for (a terminal has none).
    pub stderr: Option<DuplexStream>,
    /// Resizes the container's terminal; `None` without one.
    pub resizer: Option<AttachResizer>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

/// Sends terminal sizes to the container's monitor.
#[derive(Debug, Clone)]
pub struct AttachResizer(mpsc::Sender<(u16, u16)>);

impl AttachResizer {
    /// Asks for the terminal to be `width` × `height` (queued; never blocks).
    pub fn resize(&self, width: u16, height: u16) -> io::Result<()> {
        match self.0.try_send((width, height)) {
            Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the attach connection has ended",
            )),
        }
    }
}

impl Attached {
    /// Waits until the attach ends: the container exited (its monitor closed the connection)
    /// or the monitor dropped this client.
    pub async fn wait(&mut self) {
        let _ = (&mut self.reader).await;
        self.writer.abort();
    }

    /// Detaches (the caller went away); the container runs on. With `stdin_once`, an attach
    /// that sent input closes the container's stdin by going.
    pub fn stop(&mut self) {
        self.reader.abort();
        self.writer.abort();
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        self.stop();
    }
}

impl ContainerService {
    /// Attaches to the stdio of running container `id`: the streams asked for in `streams`
    /// (`tty` is the container's own setting; stdin only if it was created with `stdin`).
    /// Must be called within the async runtime.
    pub fn attach(&self, id: &str, streams: ExecStreams) -> Result<Attached, ContainerError> {
        let container = self.require_running(id, "attach needs a running container")?;
        let id = container.id.clone();
        let path = self.runtime_dir(&id).join(ATTACH_SOCKET_FILE);
        let io = |action| ContainerError::io(&id, action, &path);
        let socket = with_socket_path(&path, |short| StdUnixStream::connect(short))
            .map_err(io("connect to attach socket"))?;
        socket
            .set_nonblocking(true)
            .map_err(io("set non-blocking attach socket"))?;
        let socket = UnixStream::from_std(socket).map_err(io("register attach socket"))?;
        let (from_monitor, to_monitor) = socket.into_split();

        let sends_input = streams.stdin && container.stdin;
        let (stdin, input) = pipe_if(sends_input);
        let (stdout, stdout_sink) = pipe_if(streams.stdout);
        let (stderr, stderr_sink) = pipe_if(streams.stderr && !container.tty);
        let (resizer, resizes) = if container.tty {
            let (sender, receiver) = mpsc::channel(RESIZE_QUEUE);
            (Some(AttachResizer(sender)), Some(receiver))
        } else {
            (None, None)
        };
        let reader = tokio::spawn(split_output(from_monitor, stdout_sink, stderr_sink));
        let writer = tokio::spawn(send_input(to_monitor, sends_input, input, resizes));
        Ok(Attached {
            stdin,
            stdout,
            stderr,
            resizer,
            reader,
            writer,
        })
    }
}

/// A connected pair of in-memory streams when `wanted`: (the caller's end, ours).
fn pipe_if(wanted: bool) -> (Option<DuplexStream>, Option<DuplexStream>) {
    if wanted {
        let (caller, ours) = tokio::io::duplex(STREAM_BUFFER);
        (Some(caller), Some(ours))
    } else {
        (None, None)
    }
}

/// Reads the monitor's frames into the output streams until the monitor closes the
/// connection; then the streams end.
async fn split_output(
    mut from: OwnedReadHalf,
    mut stdout: Option<DuplexStream>,
    mut stderr: Option<DuplexStream>,
) {
    let mut received = Vec::new();
    let mut chunk = vec![0u8; STREAM_BUFFER];
    'connection: loop {
        let len = match from.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(len) => len,
        };
        received.extend_from_slice(&chunk[..len]);
        let mut used = 0;
        loop {
            match frame::parse(&received[used..]) {
                Ok(Some(frame)) => {
                    used += frame.len;
                    let sink = match frame.kind {
                        Kind::Stdout => &mut stdout,
                        Kind::Stderr => &mut stderr,
                        _ => continue,
                    };
                    if let Some(to) = sink
                        && to.write_all(frame.payload).await.is_err()
                    {
                        // The caller dropped this stream; keep serving the other.
                        *sink = None;
                    }
                }
                Ok(None) => break,
                Err(err) => {
                    tracing::warn!(error = %err, "bad frame on a monitor's attach socket");
                    break 'connection;
                }
            }
        }
        received.drain(..used);
    }
    for sink in [stdout, stderr].into_iter().flatten() {
        let mut sink = sink;
        let _ = sink.shutdown().await;
    }
}

/// Sends the hello, then the caller's input (and its end) and resizes as they come; keeps the
/// connection open afterwards, since the monitor takes a closed connection for a client that
/// went away.
async fn send_input(
    mut to: OwnedWriteHalf,
    sends_input: bool,
    mut input: Option<DuplexStream>,
    mut resizes: Option<mpsc::Receiver<(u16, u16)>>,
) {
    let mut frames = Vec::new();
    frame::encode(Kind::Hello, &[u8::from(sends_input)], &mut frames);
    let mut chunk = vec![0u8; STREAM_BUFFER];
    loop {
        if !frames.is_empty() && to.write_all(&frames).await.is_err() {
            return;
        }
        frames.clear();
        tokio::select! {
            read = read_some(&mut input, &mut chunk) => match read {
                Some(len) => frame::encode_data(Kind::Stdin, &chunk[..len], &mut frames),
                None => {
                    input = None;
                    frame::encode(Kind::StdinEnd, &[], &mut frames);
                }
            },
            size = next_resize(&mut resizes) => match size {
                Some((width, height)) => {
                    frame::encode(Kind::Resize, &frame::resize_payload(width, height), &mut frames);
                }
                None => resizes = None,
            },
        }
    }
}

/// One read from `input`; `None` at its end; never resolves without input.
async fn read_some(input: &mut Option<DuplexStream>, chunk: &mut [u8]) -> Option<usize> {
    match input {
        Some(input) => match input.read(chunk).await {
            Ok(0) | Err(_) => None,
            Ok(len) => Some(len),
        },
        None => std::future::pending().await,
    }
}

/// The next resize; `None` once the resizers are gone; never resolves without a terminal.
async fn next_resize(resizes: &mut Option<mpsc::Receiver<(u16, u16)>>) -> Option<(u16, u16)> {
    match resizes {
        Some(resizes) => resizes.recv().await,
        None => std::future::pending().await,
    }
}
