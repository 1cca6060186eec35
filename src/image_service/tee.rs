//! A reader that writes a copy of every byte it reads: a pull keeps each layer's compressed
//! blob (for `carrack image export`) while the same stream is inflated and unpacked, so the
//! blob is written once and never read back.

use std::io::{BufWriter, Read, Write};

/// Bytes buffered before a write to the copy (the unpacker reads in small pieces).
const COPY_BUFFER: usize = 256 * 1024;

/// Reads from `inner` and writes what it read to `copy`.
#[derive(Debug)]
pub(super) struct TeeReader<R, W: Write> {
    inner: R,
    copy: BufWriter<W>,
    /// The first failed write: the read failed with it too, but the caller must be able to
    /// tell it from a failure of the stream (a full disk is not a corrupt download).
    write_error: Option<std::io::Error>,
}

impl<R: Read, W: Write> TeeReader<R, W> {
    /// Copies what is read from `inner` into `copy`.
    pub(super) fn new(inner: R, copy: W) -> Self {
        Self {
            inner,
            copy: BufWriter::with_capacity(COPY_BUFFER, copy),
            write_error: None,
        }
    }

    /// Flushes the copy and returns its writer, or the error that a write of the copy met.
    pub(super) fn finish(self) -> std::io::Result<W> {
        if let Some(err) = self.write_error {
            return Err(err);
        }
        self.copy.into_inner().map_err(|err| err.into_error())
    }
}

impl<R: Read, W: Write> Read for TeeReader<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.write_error.is_some() {
            return Err(std::io::Error::other("the blob copy could not be written"));
        }
        let read = self.inner.read(buf)?;
        // A copy that cannot be written fails the read: the blob would be incomplete.
        if let Err(err) = self.copy.write_all(&buf[..read]) {
            let kind = err.kind();
            self.write_error = Some(err);
            return Err(std::io::Error::new(
                kind,
                "the blob copy could not be written",
            ));
        }
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_holds_every_byte_read() {
        let data: Vec<u8> = (0..1_000_000u32).map(|n| (n % 251) as u8).collect();
        let mut tee = TeeReader::new(&data[..], Vec::new());
        let mut read = Vec::new();
        let mut chunk = [0u8; 1000];
        loop {
            let n = tee.read(&mut chunk).unwrap();
            if n == 0 {
                break;
            }
            read.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(read, data);
        assert_eq!(tee.finish().unwrap(), data);
    }

    /// A writer whose every write fails as a full disk does.
    #[derive(Debug)]
    struct Full;

    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::from_raw_os_error(libc::ENOSPC))
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_failed_copy_fails_the_read_and_finish_returns_its_error() {
        let data = vec![7u8; 4 * COPY_BUFFER];
        let mut tee = TeeReader::new(&data[..], Full);
        let failed = std::io::copy(&mut tee, &mut std::io::sink());
        assert!(failed.is_err());
        let err = tee.finish().unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
    }
}
