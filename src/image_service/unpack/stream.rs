//! The byte stream under the tar reader: decompression, the size limit, and telling apart
//! where a read failure came from.
//!
//! The tar crate flattens every read failure into an `io::Error`, so a corrupt gzip member,
//! a dropped registry connection and a decompression bomb would all look alike by the time
//! they surface. Each layer of this stack therefore records the first failure it saw, and
//! [`Metered::classify`] turns the tar crate's error back into the right [`UnpackError`].

use std::fmt;
use std::io::{self, BufRead, BufReader, Read};

use super::UnpackError;

/// Capacity of the buffer on the compressed side. Large reads keep the number of read calls
/// into the caller's (possibly network-backed, hashing) reader low.
const COMPRESSED_BUFFER: usize = 256 * 1024;

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// A plain tar stream.
    None,
    /// gzip (one or more concatenated members, as Go's reader accepts).
    Gzip,
    /// zstd (one or more frames).
    Zstd,
}

impl Compression {
    /// The compression of a layer from its OCI or Docker media type, or `None` if the media
    /// type is not a layer type this runtime can unpack.
    pub fn from_media_type(media_type: &str) -> Option<Self> {
        // Media types may carry parameters (`; foo=bar`) that do not change the encoding.
        let media_type = media_type.split(';').next().unwrap_or_default().trim();
        match media_type {
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.docker.image.rootfs.diff.tar" => Some(Self::None),
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Some(Self::Gzip),
            "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
            | "application/vnd.docker.image.rootfs.diff.tar.zstd" => Some(Self::Zstd),
            _ => None,
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::None => "tar",
            Self::Gzip => "gzip",
            Self::Zstd => "zstd",
        })
    }
}

/// A copy of an I/O error to hand upwards while the original is kept for the report.
fn copy_error(error: &io::Error) -> io::Error {
    io::Error::new(error.kind(), error.to_string())
}

/// Wraps the caller's reader and keeps the first error it returned, so that a failing
/// source is reported as such rather than as corrupt compressed data.
#[derive(Debug)]
pub(super) struct SourceTap<R> {
    inner: R,
    error: Option<io::Error>,
}

impl<R: Read> Read for SourceTap<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Err(error) if error.kind() != io::ErrorKind::Interrupted => {
                let copy = copy_error(&error);
                self.error.get_or_insert(error);
                Err(copy)
            }
            other => other,
        }
    }
}

/// The decompressor for one layer.
pub(super) enum Decoder<R: Read> {
    /// No compression: the tap is read directly (the tar side is buffered already).
    Plain(SourceTap<R>),
    /// gzip, over a large buffer. (Boxed: decoder state is large, and built once a layer.)
    Gzip(Box<flate2::bufread::MultiGzDecoder<BufReader<SourceTap<R>>>>),
    /// zstd, over a large buffer.
    Zstd(Box<zstd::stream::read::Decoder<'static, BufReader<SourceTap<R>>>>),
}

impl<R: Read> fmt::Debug for Decoder<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::Plain(_) => "Plain",
            Self::Gzip(_) => "Gzip",
            Self::Zstd(_) => "Zstd",
        };
        f.debug_tuple(name).finish_non_exhaustive()
    }
}

impl<R: Read> Decoder<R> {
    /// A decoder for `compression` over `source`.
    pub(super) fn new(compression: Compression, source: R) -> Result<Self, UnpackError> {
        let tap = SourceTap {
            inner: source,
            error: None,
        };
        Ok(match compression {
            Compression::None => Self::Plain(tap),
            Compression::Gzip => Self::Gzip(Box::new(flate2::bufread::MultiGzDecoder::new(
                BufReader::with_capacity(COMPRESSED_BUFFER, tap),
            ))),
            Compression::Zstd => {
                let buffered = BufReader::with_capacity(COMPRESSED_BUFFER, tap);
                let decoder =
                    zstd::stream::read::Decoder::with_buffer(buffered).map_err(|source| {
                        UnpackError::Decompress {
                            compression,
                            source,
                        }
                    })?;
                Self::Zstd(Box::new(decoder))
            }
        })
    }

    fn tap_mut(&mut self) -> &mut SourceTap<R> {
        match self {
            Self::Plain(tap) => tap,
            Self::Gzip(decoder) => decoder.get_mut().get_mut(),
            Self::Zstd(decoder) => decoder.get_mut().get_mut(),
        }
    }

    /// Reads whatever compressed bytes the decoder left unread, so that a caller hashing the
    /// compressed stream sees all of it. Returns how many there were.
    pub(super) fn drain_source(self) -> io::Result<u64> {
        let mut sink = io::sink();
        match self {
            Self::Plain(mut tap) => io::copy(&mut tap, &mut sink),
            Self::Gzip(decoder) => drain_buffered((*decoder).into_inner()),
            Self::Zstd(decoder) => drain_buffered((*decoder).finish()),
        }
    }
}

fn drain_buffered<R: Read>(mut reader: BufReader<R>) -> io::Result<u64> {
    let buffered = reader.buffer().len() as u64;
    reader.consume(buffered as usize);
    let rest = io::copy(&mut reader, &mut io::sink())?;
    Ok(buffered + rest)
}

impl<R: Read> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Plain(tap) => tap.read(buf),
            Self::Gzip(decoder) => decoder.read(buf),
            Self::Zstd(decoder) => decoder.read(buf),
        }
    }
}

/// The first failure seen below the tar reader.
#[derive(Debug)]
enum StreamFailure {
    /// The caller's reader failed.
    Source(io::Error),
    /// The decompressor refused the data.
    Decode(io::Error),
    /// More uncompressed bytes than allowed.
    TooLarge,
}

/// Counts uncompressed bytes, enforces the decompression-bomb limit and remembers the first
/// failure. Failures are sticky: once one happened every later read repeats it, so nothing
/// downstream can mistake a broken stream for a short one.
#[derive(Debug)]
pub(super) struct Metered<R: Read> {
    decoder: Decoder<R>,
    compression: Compression,
    limit: u64,
    bytes: u64,
    failure: Option<StreamFailure>,
}

impl<R: Read> Metered<R> {
    /// Meters `decoder`, allowing at most `limit` uncompressed bytes.
    pub(super) fn new(decoder: Decoder<R>, compression: Compression, limit: u64) -> Self {
        Self {
            decoder,
            compression,
            limit,
            bytes: 0,
            failure: None,
        }
    }

    /// Uncompressed bytes read so far.
    pub(super) fn uncompressed_bytes(&self) -> u64 {
        self.bytes
    }

    /// The decoder, to drain the compressed tail.
    pub(super) fn into_decoder(self) -> Decoder<R> {
        self.decoder
    }

    /// Turns an error the tar reader reported into the precise [`UnpackError`], using what
    /// this stack recorded. `entry` names the tar entry being read, if any.
    pub(super) fn classify(&mut self, entry: Option<String>, source: io::Error) -> UnpackError {
        match self.failure.take() {
            Some(StreamFailure::TooLarge) => UnpackError::TooLarge { limit: self.limit },
            Some(StreamFailure::Source(source)) => UnpackError::Read { source },
            Some(StreamFailure::Decode(source)) => UnpackError::Decompress {
                compression: self.compression,
                source,
            },
            None => UnpackError::Archive { entry, source },
        }
    }

    fn failure_error(&self) -> io::Error {
        match &self.failure {
            Some(StreamFailure::Source(error) | StreamFailure::Decode(error)) => copy_error(error),
            Some(StreamFailure::TooLarge) | None => io::Error::other(format!(
                "layer expands beyond {} uncompressed bytes",
                self.limit
            )),
        }
    }
}

impl<R: Read> Read for Metered<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.failure.is_some() {
            return Err(self.failure_error());
        }
        match self.decoder.read(buf) {
            Ok(read) => {
                self.bytes += read as u64;
                if self.bytes > self.limit {
                    self.failure = Some(StreamFailure::TooLarge);
                    return Err(self.failure_error());
                }
                Ok(read)
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => Err(error),
            Err(error) => {
                // The tap holds the original error if the caller's reader failed; anything
                // else came from the decompressor itself.
                self.failure = Some(match self.decoder.tap_mut().error.take() {
                    Some(source) => StreamFailure::Source(source),
                    None => StreamFailure::Decode(error),
                });
                Err(self.failure_error())
            }
        }
    }
}
