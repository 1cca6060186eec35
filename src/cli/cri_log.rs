//! Reading a CRI container log: parsing its records and following the file as it grows and
//! as it is rotated (renamed away and recreated at the same path).
//!
//! A record is `<RFC 3339 time> <stdout|stderr> <F|P> <content>\n`; `P` marks a partial line
//! whose rest follows in the next record of the same stream.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Which stream a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The container's stdout.
    Stdout,
    /// The container's stderr.
    Stderr,
}

/// One log record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The time as written, RFC 3339 with nanoseconds.
    pub timestamp: String,
    /// The stream.
    pub stream: Stream,
    /// The line continues in the next record.
    pub partial: bool,
    /// The bytes, without the newline.
    pub content: Vec<u8>,
}

/// Parses one record (the line without its `\n`); `None` for a malformed line.
pub fn parse(line: &[u8]) -> Option<Record> {
    let mut parts = line.splitn(4, |byte| *byte == b' ');
    let timestamp = std::str::from_utf8(parts.next()?).ok()?.to_owned();
    let stream = match parts.next()? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    // Old kubelets wrote records without the tag; treat them as full lines.
    let (partial, content) = match (parts.next(), parts.next()) {
        (Some(b"P"), content) => (true, content.unwrap_or_default()),
        (Some(b"F"), content) => (false, content.unwrap_or_default()),
        (Some(first), Some(rest)) => {
            let mut content = first.to_vec();
            content.push(b' ');
            content.extend_from_slice(rest);
            return Some(Record {
                timestamp,
                stream,
                partial: false,
                content,
            });
        }
        (Some(first), None) => (false, first),
        (None, _) => (false, &b""[..]),
    };
    Some(Record {
        timestamp,
        stream,
        partial,
        content: content.to_vec(),
    })
}

/// The records after which at most `lines` whole lines remain (`--tail`).
pub fn tail(records: &[Record], lines: usize) -> &[Record] {
    let mut seen = 0;
    for (index, record) in records.iter().enumerate().rev() {
        if !record.partial {
            if seen == lines {
                return &records[index + 1..];
            }
            seen += 1;
        }
    }
    records
}

/// Writes records to stdout and stderr as the container wrote them.
#[derive(Debug)]
pub struct Printer<O: Write, E: Write> {
    stdout: O,
    stderr: E,
    timestamps: bool,
    /// Per stream, whether the last record ended its line.
    at_line_start: [bool; 2],
}

impl<O: Write, E: Write> Printer<O, E> {
    /// A printer to `stdout` and `stderr`, prefixing lines with their time if `timestamps`.
    pub fn new(stdout: O, stderr: E, timestamps: bool) -> Self {
        Self {
            stdout,
            stderr,
            timestamps,
            at_line_start: [true, true],
        }
    }

    /// Prints one record.
    pub fn print(&mut self, record: &Record) -> io::Result<()> {
        let (sink, start): (&mut dyn Write, &mut bool) = match record.stream {
            Stream::Stdout => (&mut self.stdout, &mut self.at_line_start[0]),
            Stream::Stderr => (&mut self.stderr, &mut self.at_line_start[1]),
        };
        if self.timestamps && *start {
            write!(sink, "{} ", record.timestamp)?;
        }
        sink.write_all(&record.content)?;
        if !record.partial {
            sink.write_all(b"\n")?;
        }
        *start = !record.partial;
        sink.flush()
    }

    /// The sinks, for tests.
    pub fn into_inner(self) -> (O, E) {
        (self.stdout, self.stderr)
    }
}

/// Follows a log file: reads what is there, then what is appended, and switches to the new
/// file when the log is rotated.
#[derive(Debug)]
pub struct Follower {
    path: PathBuf,
    reader: BufReader<File>,
    inode: (u64, u64),
    /// Bytes of a line whose newline has not been written yet.
    pending: Vec<u8>,
}

fn identity(file: &File) -> io::Result<(u64, u64)> {
    let meta = file.metadata()?;
    Ok((meta.dev(), meta.ino()))
}

impl Follower {
    /// Opens the log at `path` from its start.
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = File::open(path)?;
        Ok(Self {
            path: path.to_owned(),
            inode: identity(&file)?,
            reader: BufReader::new(file),
            pending: Vec::new(),
        })
    }

    /// Opens the log and skips what it holds now (follow only new output).
    pub fn open_at_end(path: &Path) -> io::Result<Self> {
        let mut follower = Self::open(path)?;
        follower.reader.seek(SeekFrom::End(0))?;
        Ok(follower)
    }

    /// Hands every complete record available now to `each`; on reaching the end of a file
    /// that has been rotated away, continues with the new file at the path.
    pub fn read_available(
        &mut self,
        mut each: impl FnMut(Record) -> io::Result<()>,
    ) -> io::Result<()> {
        loop {
            self.drain(&mut each)?;
            match File::open(&self.path) {
                Ok(file) if identity(&file)? != self.inode => {
                    // Rotated: the old file is finished (a writer reopens before writing
                    // more), so what it held has been read; carry on with the new one.
                    self.inode = identity(&file)?;
                    self.reader = BufReader::new(file);
                    self.pending.clear();
                }
                // Same file, or no file yet at the path (mid-rotation): wait for more.
                _ => return Ok(()),
            }
        }
    }

    fn drain(&mut self, each: &mut impl FnMut(Record) -> io::Result<()>) -> io::Result<()> {
        loop {
            let read = self.reader.read_until(b'\n', &mut self.pending)?;
            if read == 0 || self.pending.last() != Some(&b'\n') {
                return Ok(());
            }
            self.pending.pop();
            if let Some(record) = parse(&self.pending) {
                each(record)?;
            }
            self.pending.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(stream: Stream, partial: bool, content: &str) -> Record {
        Record {
            timestamp: "2026-11-23T14:00:00.000000001Z".to_owned(),
            stream,
            partial,
            content: content.as_bytes().to_vec(),
        }
    }

    #[test]
    fn records_parse_with_and_without_tags() {
        assert_eq!(
            parse(b"2026-11-23T14:00:00.000000001Z stdout F hello world").unwrap(),
            rec(Stream::Stdout, false, "hello world")
        );
        assert_eq!(
            parse(b"2026-11-23T14:00:00.000000001Z stderr P part").unwrap(),
            rec(Stream::Stderr, true, "part")
        );
        assert_eq!(
            parse(b"2026-11-23T14:00:00.000000001Z stdout F ").unwrap(),
            rec(Stream::Stdout, false, "")
        );
        assert_eq!(
            parse(b"2026-11-23T14:00:00.000000001Z stdout untagged line").unwrap(),
            rec(Stream::Stdout, false, "untagged line")
        );
        assert!(parse(b"garbage").is_none());
        assert!(parse(b"2026 stdin F x").is_none());
    }

    #[test]
    fn partial_records_join_and_timestamps_prefix_lines() {
        let mut printer = Printer::new(Vec::new(), Vec::new(), true);
        for record in [
            rec(Stream::Stdout, true, "hel"),
            rec(Stream::Stderr, false, "oops"),
            rec(Stream::Stdout, false, "lo"),
        ] {
            printer.print(&record).unwrap();
        }
        let (out, err) = printer.into_inner();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2026-11-23T14:00:00.000000001Z hello\n"
        );
        assert_eq!(
            String::from_utf8(err).unwrap(),
            "2026-11-23T14:00:00.000000001Z oops\n"
        );
    }

    #[test]
    fn tail_counts_whole_lines() {
        let records = [
            rec(Stream::Stdout, false, "1"),
            rec(Stream::Stdout, true, "2a"),
            rec(Stream::Stdout, false, "2b"),
            rec(Stream::Stdout, false, "3"),
        ];
        assert_eq!(tail(&records, 0).len(), 0);
        assert_eq!(tail(&records, 1), &records[3..]);
        assert_eq!(tail(&records, 2), &records[1..]);
        assert_eq!(tail(&records, 10), &records[..]);
    }

    #[test]
    fn following_reads_appends_and_rotations() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let line = |text: &str| format!("2026-11-23T14:00:00.000000001Z stdout F {text}\n");
        std::fs::write(&path, line("one")).unwrap();
        let mut follower = Follower::open(&path).unwrap();
        let mut seen = Vec::new();
        let mut collect = |follower: &mut Follower| {
            follower
                .read_available(|record| {
                    seen.push(String::from_utf8(record.content).unwrap());
                    Ok(())
                })
                .unwrap();
        };
        collect(&mut follower);
        // An unfinished line waits for its newline.
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(b"2026-11-23T14:00:00.000000001Z stdout F tw")
            .unwrap();
        collect(&mut follower);
        file.write_all(b"o\n").unwrap();
        collect(&mut follower);
        // Rotation: the old file is renamed (with a last line), a new one appears.
        file.write_all(line("three").as_bytes()).unwrap();
        std::fs::rename(&path, dir.path().join("c.log.1")).unwrap();
        collect(&mut follower);
        std::fs::write(&path, line("four")).unwrap();
        collect(&mut follower);
        assert_eq!(seen, ["one", "two", "three", "four"]);
    }
}
