//! The streaming server's runtime side: [`StreamRuntime`] over the container and sandbox
//! services, so that `streaming` knows neither.

use std::sync::Arc;

use crate::container::{
    AttachResizer, Attached, ContainerService, ExecIo, ExecProcess, ExecStreams, TerminalControl,
};
use crate::sandbox::SandboxService;
use crate::streaming::runtime::{BoxFuture, Process, ProcessControl, Resizer};
use crate::streaming::session::{Input, Output, TerminalSize};
use crate::streaming::{BackendError, ProcessIo, StreamRuntime};

/// The runtime behind the streams.
#[derive(Debug)]
pub struct RuntimeBridge {
    /// Exec and attach.
    pub containers: Arc<ContainerService>,
    /// Port-forward.
    pub sandboxes: Arc<SandboxService>,
}

impl StreamRuntime for RuntimeBridge {
    fn exec(
        &self,
        container_id: &str,
        cmd: &[String],
        io: ProcessIo,
    ) -> Result<Process, BackendError> {
        let mut process = self
            .containers
            .exec(container_id, cmd, exec_streams(io))
            .map_err(BackendError::new)?;
        let empty = ExecIo::Pipes {
            stdin: None,
            stdout: None,
            stderr: None,
        };
        let (stdin, stdout, stderr, resizer) = match std::mem::replace(&mut process.io, empty) {
            ExecIo::Pipes {
                stdin,
                stdout,
                stderr,
            } => (
                stdin.map(|pipe| Box::new(pipe) as Output),
                stdout.map(|pipe| Box::new(pipe) as Input),
                stderr.map(|pipe| Box::new(pipe) as Input),
                None,
            ),
            ExecIo::Terminal(terminal) => (
                io.stdin.then(|| Box::new(terminal.input) as Output),
                Some(Box::new(terminal.output) as Input),
                None,
                Some(Box::new(terminal.control) as Box<dyn Resizer>),
            ),
        };
        Ok(Process {
            stdin,
            stdout,
            stderr,
            resizer,
            control: Box::new(process),
        })
    }

    fn attach(&self, container_id: &str, io: ProcessIo) -> Result<Process, BackendError> {
        let mut attached = self
            .containers
            .attach(container_id, exec_streams(io))
            .map_err(BackendError::new)?;
        Ok(Process {
            stdin: attached.stdin.take().map(|pipe| Box::new(pipe) as Output),
            stdout: attached.stdout.take().map(|pipe| Box::new(pipe) as Input),
            stderr: attached.stderr.take().map(|pipe| Box::new(pipe) as Input),
            resizer: attached
                .resizer
                .take()
                .map(|resizer| Box::new(resizer) as Box<dyn Resizer>),
            control: Box::new(attached),
        })
    }

    fn connect(&self, pod_id: &str, port: u16) -> Result<std::net::TcpStream, BackendError> {
        self.sandboxes
            .connect_port(pod_id, port)
            .map_err(BackendError::new)
    }
}

/// The container service's form of the streams asked for.
fn exec_streams(io: ProcessIo) -> ExecStreams {
    ExecStreams {
        stdin: io.stdin,
        stdout: io.stdout,
        stderr: io.stderr,
        tty: io.tty,
    }
}

impl Resizer for TerminalControl {
    fn resize(&self, size: TerminalSize) -> std::io::Result<()> {
        TerminalControl::resize(self, size.width, size.height)
    }
}

impl ProcessControl for ExecProcess {
    fn wait(&mut self) -> BoxFuture<'_, Result<i32, BackendError>> {
        Box::pin(async move { ExecProcess::wait(self).await.map_err(BackendError::new) })
    }

    fn stop(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(ExecProcess::stop(self))
    }
}

impl Resizer for AttachResizer {
    fn resize(&self, size: TerminalSize) -> std::io::Result<()> {
        AttachResizer::resize(self, size.width, size.height)
    }
}

impl ProcessControl for Attached {
    fn wait(&mut self) -> BoxFuture<'_, Result<i32, BackendError>> {
        Box::pin(async move {
            Attached::wait(self).await;
            Ok(0)
        })
    }

    fn stop(&mut self) -> BoxFuture<'_, ()> {
        Attached::stop(self);
        Box::pin(std::future::ready(()))
    }
}
