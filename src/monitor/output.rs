//! The container's output: reading its streams (pipes or the terminal master) as they become
//! readable, feeding the CRI log writer, and the log file behind it, reopened on request.
//!
//! The log file is opened `O_APPEND|O_CREAT` with mode 0640, its directory created when
//! missing. When it cannot be opened or written, output is read and dropped, so a full disk
//! never blocks the container on a full pipe; each change between working and failing is
//! noted once in `monitor.log`.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::io::Errno;

use super::diag::note;
use super::log::{CriLog, Stream};
use super::stdio::Held;

/// Size of the one read buffer.
const READ_BUFFER: usize = 32 * 1024;

/// The CRI log file, or nothing (output discarded).
#[derive(Debug)]
pub(super) struct LogFile {
    path: Option<PathBuf>,
    file: Option<File>,
}

impl Write for LogFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.file {
            Some(file) => file.write(buf),
            None => Ok(buf.len()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Opens the log file for appending, creating it and its directory.
fn open_log(path: &Path) -> io::Result<File> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
}

/// The output side of a running container.
pub(super) struct Output {
    /// The open streams: stdout (or the terminal master) and stderr; `None` once at EOF.
    streams: [Option<OwnedFd>; 2],
    /// `streams[0]` is a terminal master.
    tty: bool,
    log: CriLog<LogFile, fn() -> SystemTime>,
    buf: Box<[u8]>,
    /// The last write to the log failed (noted once until a write succeeds).
    failing: bool,
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Output")
            .field("streams", &self.streams)
            .field("tty", &self.tty)
            .field("log", &self.log)
            .field("failing", &self.failing)
            .finish_non_exhaustive()
    }
}

impl Output {
    /// Takes the held output ends and opens the log at `log_path` (`None`: discard output).
    pub(super) fn new(held: Held, log_path: Option<PathBuf>) -> Self {
        let file = log_path.as_deref().and_then(|path| match open_log(path) {
            Ok(file) => Some(file),
            Err(err) => {
                note!(
                    "cannot open log {}: {err}; dropping output until it is reopened",
                    path.display()
                );
                None
            }
        });
        let failing = log_path.is_some() && file.is_none();
        Output {
            streams: [Some(held.stdout), held.stderr],
            tty: held.tty,
            log: CriLog::new(
                LogFile {
                    path: log_path,
                    file,
                },
                SystemTime::now,
            ),
            buf: vec![0; READ_BUFFER].into_boxed_slice(),
            failing,
        }
    }

    /// The open streams, to poll.
    pub(super) fn open_streams(&self) -> impl Iterator<Item = (Stream, BorrowedFd<'_>)> {
        [Stream::Stdout, Stream::Stderr]
            .into_iter()
            .zip(&self.streams)
            .filter_map(|(stream, fd)| fd.as_ref().map(|fd| (stream, fd.as_fd())))
    }

    /// Reads once from `stream`, logs what came and hands it to `tap` (the attached clients);
    /// closes the stream at its end.
    pub(super) fn read(&mut self, stream: Stream, tap: &mut impl FnMut(Stream, &[u8])) {
        let index = stream.index();
        let Some(fd) = &self.streams[index] else {
            return;
        };
        let result = match rustix::io::read(fd, &mut self.buf[..]) {
            Ok(0) => Err(None),
            Ok(len) => Ok(len),
            Err(Errno::AGAIN | Errno::INTR) => return,
            // A terminal master reads EIO once every slave descriptor is closed.
            Err(Errno::IO) if self.tty => Err(None),
            Err(errno) => Err(Some(errno)),
        };
        match result {
            Ok(len) => {
                tap(stream, &self.buf[..len]);
                let written = self.log.write(stream, &self.buf[..len]);
                self.track(written);
            }
            Err(errno) => {
                if let Some(errno) = errno {
                    note!("read {}: {}", stream.name(), io::Error::from(errno));
                }
                self.streams[index] = None;
                let written = self.log.close(stream);
                self.track(written);
            }
        }
    }

    /// After the container has exited: reads what is left in the streams until they end, no
    /// data came for `idle`, or `limit` has passed (processes that escaped the container may
    /// hold a pipe open forever). What is read also goes to `tap`.
    pub(super) fn drain(
        &mut self,
        idle: Duration,
        limit: Duration,
        tap: &mut impl FnMut(Stream, &[u8]),
    ) {
        let deadline = Instant::now() + limit;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            let wait = idle.min(deadline - now);
            let (streams, mut fds): (Vec<Stream>, Vec<PollFd<'_>>) = self
                .open_streams()
                .map(|(stream, fd)| (stream, PollFd::from_borrowed_fd(fd, PollFlags::IN)))
                .unzip();
            if fds.is_empty() {
                return;
            }
            match rustix::event::poll(&mut fds, Some(&timespec(wait))) {
                Ok(0) => return,
                Ok(_) => {}
                Err(Errno::INTR) => continue,
                Err(errno) => {
                    note!("poll output: {}", io::Error::from(errno));
                    return;
                }
            }
            let ready: Vec<Stream> = streams
                .into_iter()
                .zip(&fds)
                .filter(|(_, fd)| !fd.revents().is_empty())
                .map(|(stream, _)| stream)
                .collect();
            drop(fds);
            for stream in ready {
                self.read(stream, tap);
            }
        }
    }

    /// Ends both streams' logs (a last unfinished line is written as a partial record).
    pub(super) fn finish(&mut self) {
        for stream in [Stream::Stdout, Stream::Stderr] {
            self.streams[stream.index()] = None;
            let written = self.log.close(stream);
            self.track(written);
        }
    }

    /// Reopens the log file at its path (after log rotation moved it away). When that fails
    /// the old file stays in use.
    pub(super) fn reopen_log(&mut self) -> Result<(), String> {
        let sink = self.log.sink_mut();
        let Some(path) = &sink.path else {
            return Ok(());
        };
        let file = open_log(path).map_err(|err| format!("reopen log {}: {err}", path.display()))?;
        sink.file = Some(file);
        if self.failing {
            note!("log {} reopened", path.display());
            self.failing = false;
        }
        Ok(())
    }

    /// Sets the terminal's window size.
    pub(super) fn resize(&self, width: u16, height: u16) -> Result<(), String> {
        if !self.tty {
            return Err("the container has no terminal".to_owned());
        }
        let Some(master) = &self.streams[0] else {
            return Err("the container's terminal is closed".to_owned());
        };
        super::stdio::resize(master, width, height)
    }

    /// Notes a change between a working and a failing log.
    fn track(&mut self, written: io::Result<()>) {
        let path = self.log.sink().path.as_deref().unwrap_or(Path::new(""));
        match written {
            Ok(()) if self.failing => {
                note!("log {} writable again", path.display());
                self.failing = false;
            }
            Ok(()) => {}
            Err(err) if !self.failing => {
                note!(
                    "cannot write log {}: {err}; dropping output until it works again",
                    path.display()
                );
                self.failing = true;
            }
            Err(_) => {}
        }
    }
}

/// `duration` as a poll timeout.
pub(super) fn timespec(duration: Duration) -> Timespec {
    Timespec {
        tv_sec: i64::try_from(duration.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(duration.subsec_nanos()),
    }
}
