//! The narrow seam between the streaming server and the runtime: what exec, attach and
//! port-forward need from containers and pods. The composition root implements it over the
//! container and sandbox services; tests implement it with fakes.

use std::future::Future;
use std::pin::Pin;

use super::BackendError;
use super::session::{Input, Output, TerminalSize};

/// A boxed future, for the trait to stay object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The runtime side of the streams.
pub trait StreamRuntime: Send + Sync + 'static {
    /// Starts `cmd` in container `container_id`, with a terminal when `tty`, and pipes for
    /// the streams asked for.
    fn exec(
        &self,
        container_id: &str,
        cmd: &[String],
        io: ProcessIo,
    ) -> Result<Process, BackendError>;

    /// Connects to the stdio of container `container_id`.
    fn attach(&self, container_id: &str, io: ProcessIo) -> Result<Process, BackendError>;

    /// Connects to `localhost:port` in pod `pod_id`'s network (blocking: run it off the
    /// async threads).
    fn connect(&self, pod_id: &str, port: u16) -> Result<std::net::TcpStream, BackendError>;
}

/// Which of a process's streams the client uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProcessIo {
    /// Input is sent.
    pub stdin: bool,
    /// Stdout is read.
    pub stdout: bool,
    /// Stderr is read.
    pub stderr: bool,
    /// A terminal (one output, resizable).
    pub tty: bool,
}

/// A running exec (or an attach connection) as the runtime hands it over.
pub struct Process {
    /// Its input, when asked for.
    pub stdin: Option<Output>,
    /// Its stdout (the terminal's output with `tty`), when asked for.
    pub stdout: Option<Input>,
    /// Its stderr, when asked for (never with `tty`).
    pub stderr: Option<Input>,
    /// Applies terminal sizes, with `tty`.
    pub resizer: Option<Box<dyn Resizer>>,
    /// Waits for it and stops it.
    pub control: Box<dyn ProcessControl>,
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process").finish_non_exhaustive()
    }
}

/// Applies terminal size changes (a quick, non-blocking call).
pub trait Resizer: Send + Sync {
    /// Sets the terminal to `size`.
    fn resize(&self, size: TerminalSize) -> std::io::Result<()>;
}

/// The life of a process behind a stream.
pub trait ProcessControl: Send {
    /// Waits until it ended: its exit code (exec), or 0 when an attach ends.
    fn wait(&mut self) -> BoxFuture<'_, Result<i32, BackendError>>;
    /// Stops it because the client went away (exec: kill and reap; attach: detach).
    fn stop(&mut self) -> BoxFuture<'_, ()>;
}
