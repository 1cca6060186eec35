//! Streaming `Exec`: start a command in a running container through the `carrack exec-in`
//! helper (as `ExecSync` does) with its stdio handed to the caller: pipes for the streams the
//! client asked for, or a terminal whose master side the daemon keeps (for resize events).
//! The daemon never forks; the pseudo-terminal is opened here and its slave side given to the
//! helper as stdio.

use std::os::fd::{AsFd, OwnedFd};
use std::process::Stdio;

use rustix::fs::OFlags;
use rustix::pty::OpenptFlags;
use tokio::net::unix::pipe;
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout};

use super::exec_sync::{exit_code_of, stop_helper};
use super::{ContainerError, ContainerService};

/// Which streams the exec'd process gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExecStreams {
    /// A pipe for input.
    pub stdin: bool,
    /// A pipe for stdout.
    pub stdout: bool,
    /// A pipe for stderr.
    pub stderr: bool,
    /// A terminal for all three instead of pipes.
    pub tty: bool,
}

/// A running streaming exec.
#[derive(Debug)]
pub struct ExecProcess {
    id: String,
    child: Child,
    /// Its stdio.
    pub io: ExecIo,
}

/// The caller's ends of an exec's stdio.
#[derive(Debug)]
pub enum ExecIo {
    /// Pipes, for the streams asked for.
    Pipes {
        /// Input.
        stdin: Option<ChildStdin>,
        /// Stdout.
        stdout: Option<ChildStdout>,
        /// Stderr.
        stderr: Option<ChildStderr>,
    },
    /// A terminal.
    Terminal(Terminal),
}

/// The master side of an exec's terminal.
#[derive(Debug)]
pub struct Terminal {
    /// Reads what the process writes (EIO, seen as the end, once every slave fd is closed).
    pub output: pipe::Receiver,
    /// Writes what the process reads.
    pub input: pipe::Sender,
    /// Another handle of the master, for resizes.
    pub control: TerminalControl,
}

/// Changes a terminal's settings through its master.
#[derive(Debug)]
pub struct TerminalControl(OwnedFd);

impl TerminalControl {
    /// Sets the terminal size (`TIOCSWINSZ`; the process gets SIGWINCH).
    pub fn resize(&self, width: u16, height: u16) -> std::io::Result<()> {
        rustix::termios::tcsetwinsize(
            &self.0,
            rustix::termios::Winsize {
                ws_row: height,
                ws_col: width,
                ws_xpixel: 0,
                ws_ypixel: 0,
            },
        )
        .map_err(std::io::Error::from)
    }
}

impl ExecProcess {
    /// Waits for the command: its exit code (128 + signal when killed).
    pub async fn wait(&mut self) -> Result<i32, ContainerError> {
        let status = self
            .child
            .wait()
            .await
            .map_err(|source| ContainerError::Io {
                id: self.id.clone(),
                action: "wait for exec helper",
                path: std::path::PathBuf::from("exec-in"),
                source,
            })?;
        Ok(exit_code_of(status))
    }

    /// Kills the command and reaps it (the client went away).
    pub async fn stop(&mut self) {
        stop_helper(&mut self.child).await;
    }
}

impl ContainerService {
    /// Starts `command` in running container `id` with `streams`.
    pub fn exec(
        &self,
        id: &str,
        command: &[String],
        streams: ExecStreams,
    ) -> Result<ExecProcess, ContainerError> {
        if command.is_empty() {
            return Err(ContainerError::InvalidConfig {
                reason: "cmd is required".to_owned(),
            });
        }
        let container = self.require_running(id, "commands can only run in a running container")?;
        let id = container.id.clone();
        let dir = self.runtime_dir(&id);
        let io = |action| ContainerError::io(&id, action, &self.settings.binary);
        let mut command_line = self.exec_helper(&container, streams.tty, command);
        let terminal = if streams.tty {
            let (master, slave) = open_terminal().map_err(io("open a pseudo-terminal"))?;
            let duplicate = |fd: &OwnedFd| fd.try_clone();
            command_line
                .stdin(Stdio::from(duplicate(&slave).map_err(io("duplicate pty"))?))
                .stdout(Stdio::from(duplicate(&slave).map_err(io("duplicate pty"))?))
                .stderr(Stdio::from(slave));
            Some(master)
        } else {
            let pipe_or_null = |wanted: bool| {
                if wanted {
                    Stdio::piped()
                } else {
                    Stdio::null()
                }
            };
            command_line
                .stdin(pipe_or_null(streams.stdin))
                .stdout(pipe_or_null(streams.stdout))
                .stderr(pipe_or_null(streams.stderr));
            None
        };
        let mut child = command_line.spawn().map_err(io("spawn exec helper"))?;
        // The slave copies held by the command must go: the process's end of output is
        // seen only when no one but it holds the slave.
        drop(command_line);
        let io = match terminal {
            Some(master) => ExecIo::Terminal(
                terminal_ends(master).map_err(ContainerError::io(&id, "use pty", &dir))?,
            ),
            None => ExecIo::Pipes {
                stdin: child.stdin.take(),
                stdout: child.stdout.take(),
                stderr: child.stderr.take(),
            },
        };
        Ok(ExecProcess { id, child, io })
    }
}

/// A new pseudo-terminal: (master, slave).
fn open_terminal() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let master =
        rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
    rustix::pty::grantpt(&master)?;
    rustix::pty::unlockpt(&master)?;
    let name = rustix::pty::ptsname(&master, Vec::new())?;
    let slave = rustix::fs::open(
        name.as_c_str(),
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    Ok((master, slave))
}

/// Non-blocking async ends of a terminal master.
fn terminal_ends(master: OwnedFd) -> std::io::Result<Terminal> {
    let flags = rustix::fs::fcntl_getfl(&master)?;
    rustix::fs::fcntl_setfl(&master, flags | OFlags::NONBLOCK)?;
    let output = pipe::Receiver::from_owned_fd_unchecked(master.as_fd().try_clone_to_owned()?)?;
    let input = pipe::Sender::from_owned_fd_unchecked(master.as_fd().try_clone_to_owned()?)?;
    Ok(Terminal {
        output,
        input,
        control: TerminalControl(master),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_terminal_echoes_and_resizes() {
        let (master, slave) = open_terminal().unwrap();
        let mut terminal = terminal_ends(master).unwrap();
        terminal.control.resize(100, 40).unwrap();
        let size = rustix::termios::tcgetwinsize(&slave).unwrap();
        assert_eq!((size.ws_col, size.ws_row), (100, 40));
        terminal.input.write_all(b"hi\n").await.unwrap();
        let mut echoed = [0u8; 4];
        terminal.output.read_exact(&mut echoed).await.unwrap();
        assert_eq!(&echoed, b"hi\r\n", "the line discipline echoes");
        drop(slave);
        let mut rest = Vec::new();
        // Closing the last slave fd ends the output (EIO).
        assert!(terminal.output.read_to_end(&mut rest).await.is_err() || rest.is_empty());
    }
}
