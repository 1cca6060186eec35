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
}

impl<R: Read, W: Write> TeeReader<R, W> {
    /// Copies what is read from `inner` into `copy`.
    pub(super) fn new(inner: R, copy: W) -> Self {
        Self {
            inner,
            copy: BufWriter::with_capacity(COPY_BUFFER, copy),
        }
    }

    /// Flushes the copy and returns its writer.
    pub(super) fn finish(self) -> std::io::Result<W> {
        self.copy.into_inner().map_err(|err| err.into_error())
    }
}

impl<R: Read, W: Write> Read for TeeReader<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buf)?;
        // A copy that cannot be written fails the read: the blob would be incomplete.
        self.copy.write_all(&buf[..read])?;
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
}
