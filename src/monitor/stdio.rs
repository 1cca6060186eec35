//! The container's stdio: the descriptors handed to the executor, and the ends the monitor
//! keeps (output to read, stdin to write, the terminal to resize).
//!
//! Without a terminal, stdout and stderr are two pipes and stdin is `/dev/null` or a pipe.
//! With one, a pseudo-terminal's slave is all three, and the monitor keeps the master: the
//! terminal merges the streams, so all output is logged as `stdout`.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{Mode, OFlags};
use rustix::pty::OpenptFlags;
use rustix::termios::Winsize;

use super::error::MonitorError;
use crate::executor::Stdio;

/// The monitor's ends of the container's stdio.
#[derive(Debug)]
pub(super) struct Held {
    /// Read end of the stdout pipe, or the terminal master (non-blocking).
    pub stdout: OwnedFd,
    /// Read end of the stderr pipe (non-blocking); `None` with a terminal.
    pub stderr: Option<OwnedFd>,
    /// Write end of the stdin pipe, kept for attach; `None` with `/dev/null` or a terminal
    /// (whose input is written to the master).
    pub stdin: Option<OwnedFd>,
    /// `stdout` is a terminal master.
    pub tty: bool,
}

/// Creates the container's stdio: the executor's [`Stdio`] and the monitor's [`Held`] ends.
pub(super) fn create(tty: bool, stdin: bool) -> Result<(Stdio, Held), MonitorError> {
    if tty {
        return terminal();
    }
    let (stdin_child, stdin_held) = if stdin {
        let (reader, writer) = std::io::pipe().map_err(stdio_err("create stdin pipe"))?;
        (OwnedFd::from(reader), Some(OwnedFd::from(writer)))
    } else {
        let null = File::open("/dev/null").map_err(stdio_err("open /dev/null"))?;
        (OwnedFd::from(null), None)
    };
    let (stdout_reader, stdout_writer) =
        std::io::pipe().map_err(stdio_err("create stdout pipe"))?;
    let (stderr_reader, stderr_writer) =
        std::io::pipe().map_err(stdio_err("create stderr pipe"))?;
    let stdout = OwnedFd::from(stdout_reader);
    let stderr = OwnedFd::from(stderr_reader);
    set_nonblocking(&stdout, "set stdout pipe non-blocking")?;
    set_nonblocking(&stderr, "set stderr pipe non-blocking")?;
    Ok((
        Stdio {
            stdin: Some(stdin_child),
            stdout: Some(stdout_writer.into()),
            stderr: Some(stderr_writer.into()),
        },
        Held {
            stdout,
            stderr: Some(stderr),
            stdin: stdin_held,
            tty: false,
        },
    ))
}

/// A pseudo-terminal: the slave (opened without becoming the monitor's controlling terminal)
/// as the container's stdin, stdout and stderr, the master for the monitor.
fn terminal() -> Result<(Stdio, Held), MonitorError> {
    let master =
        rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)
            .map_err(errno_err("open terminal master"))?;
    rustix::pty::grantpt(&master).map_err(errno_err("grantpt"))?;
    rustix::pty::unlockpt(&master).map_err(errno_err("unlockpt"))?;
    let name = rustix::pty::ptsname(&master, Vec::new()).map_err(errno_err("ptsname"))?;
    let slave = rustix::fs::open(
        name.as_c_str(),
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(errno_err("open terminal slave"))?;
    set_nonblocking(&master, "set terminal master non-blocking")?;
    let stdout = slave
        .try_clone()
        .map_err(stdio_err("duplicate terminal slave"))?;
    let stderr = slave
        .try_clone()
        .map_err(stdio_err("duplicate terminal slave"))?;
    Ok((
        Stdio {
            stdin: Some(slave),
            stdout: Some(stdout),
            stderr: Some(stderr),
        },
        Held {
            stdout: master,
            stderr: None,
            stdin: None,
            tty: true,
        },
    ))
}

/// Sets the window size of the terminal whose master (or slave) is `fd` (the foreground
/// process group gets `SIGWINCH`).
pub(super) fn resize(fd: &impl AsFd, width: u16, height: u16) -> Result<(), String> {
    let size = Winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    rustix::termios::tcsetwinsize(fd, size)
        .map_err(|errno| format!("resize terminal: {}", std::io::Error::from(errno)))
}

fn set_nonblocking(fd: &OwnedFd, what: &'static str) -> Result<(), MonitorError> {
    rustix::io::ioctl_fionbio(fd, true).map_err(errno_err(what))
}

fn stdio_err(what: &'static str) -> impl FnOnce(std::io::Error) -> MonitorError {
    move |source| MonitorError::Stdio { what, source }
}

fn errno_err(what: &'static str) -> impl FnOnce(rustix::io::Errno) -> MonitorError {
    move |errno| MonitorError::Stdio {
        what,
        source: errno.into(),
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    #[test]
    fn pipes_carry_output_to_the_held_ends() {
        let (stdio, held) = create(false, true).expect("stdio");
        assert!(!held.tty);
        let mut out = File::from(stdio.stdout.expect("stdout"));
        out.write_all(b"out").expect("write");
        drop(out);
        drop(stdio.stderr);
        let mut read = String::new();
        File::from(held.stdout)
            .read_to_string(&mut read)
            .expect("read");
        assert_eq!(read, "out");
        let mut buf = [0u8; 4];
        // Non-blocking, and at EOF once the writer is gone.
        let stderr = held.stderr.expect("stderr");
        assert_eq!(rustix::io::read(&stderr, &mut buf), Ok(0));
        let mut stdin = File::from(held.stdin.expect("stdin pipe"));
        stdin.write_all(b"in").expect("write stdin");
        drop(stdin);
        let mut read = String::new();
        File::from(stdio.stdin.expect("stdin"))
            .read_to_string(&mut read)
            .expect("read stdin");
        assert_eq!(read, "in");
    }

    #[test]
    fn without_stdin_the_container_reads_dev_null() {
        let (stdio, held) = create(false, false).expect("stdio");
        assert!(held.stdin.is_none());
        let mut read = Vec::new();
        File::from(stdio.stdin.expect("stdin"))
            .read_to_end(&mut read)
            .expect("read");
        assert!(read.is_empty());
    }

    #[test]
    fn a_terminal_merges_output_into_the_master() {
        let (stdio, held) = create(true, true).expect("terminal");
        assert!(held.tty && held.stderr.is_none() && held.stdin.is_none());
        let stderr = stdio.stderr.expect("slave");
        assert!(rustix::termios::isatty(&stderr));
        rustix::io::write(&stderr, b"x\n").expect("write slave");
        let mut buf = [0u8; 16];
        let n = rustix::io::read(&held.stdout, &mut buf).expect("read master");
        // The terminal's default output processing turns "\n" into "\r\n".
        assert_eq!(&buf[..n], b"x\r\n");
    }
}
