//! The CRI log writer: turns a container's stdout and stderr bytes into the line format kubelet
//! reads (`<timestamp> <stream> <tag> <content>\n`).
//!
//! The format, as kubelet's parser expects it and containerd writes it:
//! - the timestamp is RFC 3339 with nanoseconds, in UTC (`2016-10-06T00:17:09.669794202Z`;
//!   always nine digits, so lines sort as text);
//! - the stream is `stdout` or `stderr`;
//! - the tag is `F` for a full line (its `\n` stripped; a `\r` before it is kept as content,
//!   where containerd drops it: a terminal's `\r\n` reaches `kubectl logs` unchanged) or
//!   `P` for a part of a line: a line longer than [`MAX_LINE`] is cut into `P` chunks of that
//!   size followed by an `F` for the rest, and bytes without a newline left when a stream ends
//!   are written as `P` (what containerd's `redirectLogs` does at EOF);
//! - an empty line is an `F` record with empty content.
//!
//! [`CriLog`] is pure: it writes to any [`Write`] sink and takes its clock as a function, so the
//! tests pin both. It holds at most one unfinished line per stream (up to [`MAX_LINE`] bytes,
//! allocated once) and one output buffer that is flushed whenever it passes [`FLUSH_AT`];
//! complete lines are formatted straight from the caller's read buffer.

use std::io::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

/// The longest content of one record (kubelet's and containerd's default
/// `max_container_log_line_size`, 16 KiB); longer lines become `P` chunks.
pub const MAX_LINE: usize = 16 * 1024;

/// The output buffer is written to the sink once it holds this many bytes (and at the end of
/// every [`CriLog::write`]).
pub const FLUSH_AT: usize = 32 * 1024;

/// Length of a formatted timestamp, `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
pub const TIMESTAMP_LEN: usize = 30;

/// One of the container's output streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The process's fd 1 (and, with a terminal, everything).
    Stdout,
    /// The process's fd 2.
    Stderr,
}

impl Stream {
    /// The stream's name in a log record.
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    /// 0 for stdout, 1 for stderr.
    pub fn index(self) -> usize {
        match self {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        }
    }
}

/// The record tag: a full line or a part of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    Full,
    Partial,
}

impl Tag {
    fn as_bytes(self) -> &'static [u8] {
        match self {
            Tag::Full => b"F",
            Tag::Partial => b"P",
        }
    }
}

/// A CRI log writer over the sink `W`, stamping records with the time `C` returns.
pub struct CriLog<W, C> {
    sink: W,
    clock: C,
    /// The unfinished line of each stream (stdout, stderr), never longer than [`MAX_LINE`].
    pending: [Vec<u8>; 2],
    /// Formatted records not yet written to the sink.
    out: Vec<u8>,
    /// The first write error since the last [`CriLog::write`] or [`CriLog::close`] returned.
    error: Option<io::Error>,
}

impl<W, C> std::fmt::Debug for CriLog<W, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CriLog")
            .field("pending_stdout", &self.pending[0].len())
            .field("pending_stderr", &self.pending[1].len())
            .field("buffered", &self.out.len())
            .finish_non_exhaustive()
    }
}

impl<W: Write, C: FnMut() -> SystemTime> CriLog<W, C> {
    /// A writer that appends records to `sink`, stamped with `clock()`.
    pub fn new(sink: W, clock: C) -> Self {
        CriLog {
            sink,
            clock,
            pending: [Vec::new(), Vec::new()],
            out: Vec::new(),
            error: None,
        }
    }

    /// Logs `data`, read from `stream`: every completed line becomes a record, the rest waits
    /// for more. All records of one call carry the same timestamp.
    ///
    /// On a sink error the records that could not be written are dropped (the container's
    /// output must keep flowing) and the first error is returned.
    pub fn write(&mut self, stream: Stream, mut data: &[u8]) -> io::Result<()> {
        let stamp = timestamp(&(self.clock)());
        let index = stream.index();
        while !data.is_empty() {
            let pending_len = self.pending[index].len();
            let room = MAX_LINE - pending_len;
            match data.iter().position(|&byte| byte == b'\n') {
                Some(end) if end <= room => {
                    self.emit(&stamp, stream, Tag::Full, &data[..end]);
                    data = &data[end + 1..];
                }
                _ if data.len() <= room => {
                    // No newline yet, and the line still fits: wait for the rest. The buffer
                    // is allocated once, at its final size.
                    let pending = &mut self.pending[index];
                    if pending.capacity() == 0 {
                        pending.reserve_exact(MAX_LINE);
                    }
                    pending.extend_from_slice(data);
                    data = &[];
                }
                _ => {
                    // The line goes on past MAX_LINE bytes (the byte at `room` is not its
                    // newline, or the first arm would have taken it): cut a part here.
                    self.emit(&stamp, stream, Tag::Partial, &data[..room]);
                    data = &data[room..];
                }
            }
        }
        self.flush_out();
        self.take_error()
    }

    /// Ends `stream`: a line left without its newline is written as a `P` record.
    pub fn close(&mut self, stream: Stream) -> io::Result<()> {
        if !self.pending[stream.index()].is_empty() {
            let stamp = timestamp(&(self.clock)());
            self.emit(&stamp, stream, Tag::Partial, &[]);
        }
        self.flush_out();
        self.take_error()
    }

    /// The sink.
    pub fn sink(&self) -> &W {
        &self.sink
    }

    /// The sink, to change.
    pub fn sink_mut(&mut self) -> &mut W {
        &mut self.sink
    }

    /// Consumes the writer and returns the sink; unfinished lines are dropped.
    pub fn into_sink(self) -> W {
        self.sink
    }

    /// Appends one record with the stream's pending bytes followed by `tail` as content, and
    /// clears the pending bytes.
    fn emit(&mut self, stamp: &[u8; TIMESTAMP_LEN], stream: Stream, tag: Tag, tail: &[u8]) {
        let pending = &mut self.pending[stream.index()];
        self.out.extend_from_slice(stamp);
        self.out.push(b' ');
        self.out.extend_from_slice(stream.name().as_bytes());
        self.out.push(b' ');
        self.out.extend_from_slice(tag.as_bytes());
        self.out.push(b' ');
        self.out.extend_from_slice(pending);
        self.out.extend_from_slice(tail);
        self.out.push(b'\n');
        pending.clear();
        if self.out.len() >= FLUSH_AT {
            self.flush_out();
        }
    }

    /// Writes the output buffer to the sink; on failure drops it and remembers the error.
    fn flush_out(&mut self) {
        if self.out.is_empty() {
            return;
        }
        let result = self
            .sink
            .write_all(&self.out)
            .and_then(|()| self.sink.flush());
        self.out.clear();
        if let Err(err) = result
            && self.error.is_none()
        {
            self.error = Some(err);
        }
    }

    fn take_error(&mut self) -> io::Result<()> {
        match self.error.take() {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }
}

/// Formats `time` as `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` (UTC). Times before 1970 are written as
/// the epoch, and years past 9999 as 9999.
pub fn timestamp(time: &SystemTime) -> [u8; TIMESTAMP_LEN] {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since_epoch.as_secs();
    let days = seconds / 86_400;
    let in_day = seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    let mut out = *b"0000-00-00T00:00:00.000000000Z";
    put_digits(&mut out[0..4], u64::from(year.min(9999)));
    put_digits(&mut out[5..7], u64::from(month));
    put_digits(&mut out[8..10], u64::from(day));
    put_digits(&mut out[11..13], in_day / 3600);
    put_digits(&mut out[14..16], in_day % 3600 / 60);
    put_digits(&mut out[17..19], in_day % 60);
    put_digits(&mut out[20..29], u64::from(since_epoch.subsec_nanos()));
    out
}

/// Writes the low `digits.len()` decimal digits of `value`, zero-padded.
fn put_digits(digits: &mut [u8], mut value: u64) {
    for digit in digits.iter_mut().rev() {
        // `value % 10` is below 10, so the cast cannot truncate.
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// The proleptic Gregorian date `(year, month, day)` of the day `days` after 1970-01-01.
///
/// Counts in 400-year eras starting on a 1 March (so that the leap day ends a year): an era
/// has 146 097 days, its years have 365 days plus a leap day every 4th year except every
/// 100th, and a March-based year's months have a regular 153-days-per-5-months pattern.
fn civil_from_days(days: u64) -> (u32, u32, u32) {
    // Days from 0000-03-01 to 1970-01-01.
    const EPOCH_SHIFT: u64 = 719_468;
    const ERA_DAYS: u64 = 146_097;
    let days = days + EPOCH_SHIFT;
    let era = days / ERA_DAYS;
    let day_of_era = days % ERA_DAYS;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let march_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * march_month + 2) / 5 + 1;
    let month = if march_month < 10 {
        march_month + 3
    } else {
        march_month - 9
    };
    let year = era * 400 + year_of_era + u64::from(month <= 2);
    (
        u32::try_from(year).unwrap_or(u32::MAX),
        // Month is 1-12 and day 1-31 by construction.
        month as u32,
        day as u32,
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const T0: u64 = 1_475_713_029; // 2016-10-06T00:17:09Z

    fn at(seconds: u64, nanos: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(seconds, nanos)
    }

    fn fixed_clock() -> impl FnMut() -> SystemTime {
        || at(T0, 669_794_202)
    }

    /// A writer over a `Vec`, with the fixed clock.
    fn writer() -> CriLog<Vec<u8>, impl FnMut() -> SystemTime> {
        CriLog::new(Vec::new(), fixed_clock())
    }

    fn records(log: &[u8]) -> Vec<(String, String, String)> {
        String::from_utf8_lossy(log)
            .split_terminator('\n')
            .map(|line| {
                let mut fields = line.splitn(4, ' ');
                let stamp = fields.next().unwrap_or_default();
                assert_eq!(stamp, "2016-10-06T00:17:09.669794202Z");
                let stream = fields.next().unwrap_or_default().to_owned();
                let tag = fields.next().unwrap_or_default().to_owned();
                let content = fields.next().expect("content field").to_owned();
                (stream, tag, content)
            })
            .collect()
    }

    fn rec(stream: &str, tag: &str, content: &str) -> (String, String, String) {
        (stream.to_owned(), tag.to_owned(), content.to_owned())
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_nanoseconds() {
        assert_eq!(
            &timestamp(&at(T0, 669_794_202)),
            b"2016-10-06T00:17:09.669794202Z"
        );
        assert_eq!(&timestamp(&at(0, 0)), b"1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            &timestamp(&(UNIX_EPOCH - Duration::from_secs(5))),
            b"1970-01-01T00:00:00.000000000Z"
        );
        // Leap days, century rules and the last second of a year.
        assert_eq!(
            &timestamp(&at(951_782_400, 1)),
            b"2000-02-29T00:00:00.000000001Z"
        );
        assert_eq!(
            &timestamp(&at(4_107_542_400, 0)),
            b"2100-03-01T00:00:00.000000000Z"
        );
        assert_eq!(
            &timestamp(&at(1_735_689_599, 999_999_999)),
            b"2024-12-31T23:59:59.999999999Z"
        );
        assert_eq!(
            &timestamp(&at(1_709_210_096, 0)),
            b"2024-02-29T12:34:56.000000000Z"
        );
    }

    #[test]
    fn full_lines_are_f_records_without_their_newline() {
        let mut log = writer();
        log.write(Stream::Stdout, b"hello\nworld\n").expect("write");
        assert_eq!(
            log.sink_mut().as_slice(),
            b"2016-10-06T00:17:09.669794202Z stdout F hello\n\
              2016-10-06T00:17:09.669794202Z stdout F world\n"
        );
    }

    #[test]
    fn empty_lines_and_carriage_returns_are_content() {
        let mut log = writer();
        log.write(Stream::Stderr, b"\n\r\na b\r\n").expect("write");
        assert_eq!(
            records(log.sink_mut()),
            vec![
                rec("stderr", "F", ""),
                rec("stderr", "F", "\r"),
                rec("stderr", "F", "a b\r"),
            ]
        );
    }

    #[test]
    fn a_line_split_across_reads_is_one_record() {
        let mut log = writer();
        log.write(Stream::Stdout, b"hel").expect("write");
        log.write(Stream::Stdout, b"").expect("write");
        assert!(log.sink_mut().is_empty());
        log.write(Stream::Stdout, b"lo\nnext").expect("write");
        assert_eq!(records(log.sink_mut()), vec![rec("stdout", "F", "hello")]);
    }

    #[test]
    fn streams_keep_their_own_unfinished_lines() {
        let mut log = writer();
        log.write(Stream::Stdout, b"out-").expect("write");
        log.write(Stream::Stderr, b"err-").expect("write");
        log.write(Stream::Stdout, b"1\nout-2\n").expect("write");
        log.write(Stream::Stderr, b"1\n").expect("write");
        assert_eq!(
            records(log.sink_mut()),
            vec![
                rec("stdout", "F", "out-1"),
                rec("stdout", "F", "out-2"),
                rec("stderr", "F", "err-1"),
            ]
        );
    }

    #[test]
    fn a_trailing_partial_line_is_a_p_record_when_the_stream_ends() {
        let mut log = writer();
        log.write(Stream::Stdout, b"done\npartial").expect("write");
        log.close(Stream::Stdout).expect("close");
        // Closing again, or closing a stream with nothing pending, writes nothing.
        log.close(Stream::Stdout).expect("close");
        log.close(Stream::Stderr).expect("close");
        assert_eq!(
            records(log.sink_mut()),
            vec![rec("stdout", "F", "done"), rec("stdout", "P", "partial")]
        );
    }

    #[test]
    fn long_lines_are_cut_into_16k_partial_records() {
        let mut log = writer();
        let mut input = vec![b'a'; MAX_LINE];
        input.extend(vec![b'b'; MAX_LINE]);
        input.extend(b"ccc\n");
        // Fed in odd-sized pieces, so that cuts fall inside and across reads.
        for piece in input.chunks(5000) {
            log.write(Stream::Stdout, piece).expect("write");
        }
        assert_eq!(
            records(log.sink_mut()),
            vec![
                rec("stdout", "P", &"a".repeat(MAX_LINE)),
                rec("stdout", "P", &"b".repeat(MAX_LINE)),
                rec("stdout", "F", "ccc"),
            ]
        );
    }

    #[test]
    fn a_line_of_exactly_16k_is_one_full_record() {
        let mut log = writer();
        let mut input = vec![b'x'; MAX_LINE];
        input.push(b'\n');
        log.write(Stream::Stdout, &input[..MAX_LINE])
            .expect("write");
        log.write(Stream::Stdout, &input[MAX_LINE..])
            .expect("write");
        let mut twice = vec![b'y'; 2 * MAX_LINE];
        twice.push(b'\n');
        log.write(Stream::Stderr, &twice).expect("write");
        assert_eq!(
            records(log.sink_mut()),
            vec![
                rec("stdout", "F", &"x".repeat(MAX_LINE)),
                rec("stderr", "P", &"y".repeat(MAX_LINE)),
                rec("stderr", "F", &"y".repeat(MAX_LINE)),
            ]
        );
    }

    #[test]
    fn an_exactly_full_pending_line_ends_as_partial() {
        let mut log = writer();
        log.write(Stream::Stdout, &[b'z'; MAX_LINE]).expect("write");
        assert!(log.sink_mut().is_empty());
        log.close(Stream::Stdout).expect("close");
        assert_eq!(
            records(log.sink_mut()),
            vec![rec("stdout", "P", &"z".repeat(MAX_LINE))]
        );
    }

    #[test]
    fn many_short_lines_are_flushed_in_bounded_batches() {
        /// Records the size of each write.
        #[derive(Default)]
        struct Sizes(Vec<usize>);
        impl Write for Sizes {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.0.push(buf.len());
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut log = CriLog::new(Sizes::default(), fixed_clock());
        log.write(Stream::Stdout, &[b'\n'; 32 * 1024])
            .expect("write");
        let sizes = &log.sink_mut().0;
        assert!(sizes.len() > 1);
        assert!(sizes.iter().all(|&size| size < FLUSH_AT + MAX_LINE + 64));
        assert_eq!(sizes.iter().sum::<usize>(), 32 * 1024 * 41);
    }

    #[test]
    fn a_failing_sink_drops_output_and_recovers() {
        /// Fails while `broken` is set.
        struct Flaky {
            broken: bool,
            data: Vec<u8>,
        }
        impl Write for Flaky {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                if self.broken {
                    return Err(io::Error::from_raw_os_error(libc::ENOSPC));
                }
                self.data.extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let sink = Flaky {
            broken: true,
            data: Vec::new(),
        };
        let mut log = CriLog::new(sink, fixed_clock());
        let err = log.write(Stream::Stdout, b"lost\n").expect_err("disk full");
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
        log.sink_mut().broken = false;
        log.write(Stream::Stdout, b"kept\n").expect("write");
        assert_eq!(
            records(&log.into_sink().data),
            vec![rec("stdout", "F", "kept")]
        );
    }
}
