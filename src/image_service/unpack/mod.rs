//! Safe, streaming extraction of one image layer into an empty directory.
//!
//! The layer blob is read once, front to back: decompressed ([`Compression`]), metered against
//! a decompression-bomb limit, hashed into the DiffID, and parsed as tar, with every entry
//! written as it arrives. Nothing is buffered beyond one 256 KiB copy buffer.
//!
//! Safety rules, which hold for any input:
//! - the layer directory is opened once; every entry is created relative to that fd, with
//!   parents reached by `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | ...)` (see `tree`),
//!   so neither `..`, nor an absolute name, nor a symlink planted by an earlier entry can
//!   lead a write outside it;
//! - names are normalised (leading `/` and `./` dropped, so absolute names land inside the
//!   layer as Docker does) and `..`, NUL bytes and overlong names are refused (see `name`);
//! - a hard link's target is resolved by the same walk and must already exist in the layer;
//! - device nodes are created only when the caller allows it.
//!
//! Whiteouts are recorded for overlayfs, never applied (see `whiteout`), because each layer
//! gets its own directory and overlayfs stacks them.
//!
//! Known difference from Docker/containerd: an entry *below* a symlink of the same layer
//! (`lib -> usr/lib`, then `lib/x`) is refused rather than followed; standard image builders
//! never produce one, and refusing is what keeps the walk simple and escape-proof.

mod apply;
mod error;
mod name;
mod stream;
mod tree;
mod whiteout;

#[cfg(test)]
mod tests;

use std::io::{self, BufReader, Read};
use std::path::Path;

pub use error::UnpackError;
pub use stream::Compression;

use self::apply::{Applier, ApplyError, COPY_BUFFER};
use self::stream::{Decoder, Metered};
use crate::image_service::digest::{Algorithm, Digest, HashingReader};

/// Default decompression-bomb limit: 64 GiB, far above any real layer.
pub const DEFAULT_MAX_UNCOMPRESSED_BYTES: u64 = 64 << 30;

/// How to unpack a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackOptions {
    /// Create character and block device entries (privileged images need them); when false
    /// they are skipped with a debug log. FIFOs are always created.
    pub allow_device_nodes: bool,
    /// Refuse the layer once its uncompressed stream exceeds this many bytes.
    pub max_uncompressed_bytes: u64,
    /// The algorithm of the DiffID to compute (the image config's `rootfs.diff_ids` says).
    pub diff_id_algorithm: Algorithm,
}

impl Default for UnpackOptions {
    fn default() -> Self {
        Self {
            allow_device_nodes: false,
            max_uncompressed_bytes: DEFAULT_MAX_UNCOMPRESSED_BYTES,
            diff_id_algorithm: Algorithm::Sha256,
        }
    }
}

/// What unpacking a layer produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackedLayer {
    /// The digest of the whole uncompressed stream, trailing bytes after the tar
    /// end-of-archive included: compare it with the config's DiffID.
    pub diff_id: Digest,
    /// Length of the uncompressed stream.
    pub uncompressed_bytes: u64,
    /// Number of tar entries read (skipped ones included).
    pub entries: u64,
}

/// Unpacks the layer read from `compressed` into `dest`, an existing empty directory.
///
/// `compressed` is read to its end, even past the tar end-of-archive, so a caller hashing
/// it (e.g. through a [`HashingReader`]) sees the whole blob. Runs synchronously: call it
/// from a blocking thread. On error `dest` holds a partial layer that the caller discards.
pub fn unpack_layer<R: Read>(
    compressed: R,
    compression: Compression,
    dest: &Path,
    options: &UnpackOptions,
) -> Result<UnpackedLayer, UnpackError> {
    let mut applier = Applier::new(
        dest,
        options.allow_device_nodes,
        options.max_uncompressed_bytes,
    )?;
    let decoder = Decoder::new(compression, compressed)?;
    let metered = Metered::new(decoder, compression, options.max_uncompressed_bytes);
    let hashing = HashingReader::new(metered, options.diff_id_algorithm);
    let mut archive = tar::Archive::new(BufReader::with_capacity(COPY_BUFFER, hashing));

    let extracted = extract(&mut archive, &mut applier);
    let mut rest = archive.into_inner();
    // The tar end-of-archive is not the end of the stream: padding and anything after it
    // belong to the DiffID too.
    let drained = extracted.and_then(|entries| {
        io::copy(&mut rest, &mut io::sink())
            .map(|_| entries)
            .map_err(|source| Failure::Stream {
                entry: None,
                source,
            })
    });
    let (diff_id, mut metered) = rest.into_inner().finish();
    let entries = match drained {
        Ok(entries) => entries,
        Err(Failure::Unpack(error)) => return Err(error),
        Err(Failure::Stream { entry, source }) => return Err(metered.classify(entry, source)),
    };
    let uncompressed_bytes = metered.uncompressed_bytes();
    let leftover = metered
        .into_decoder()
        .drain_source()
        .map_err(|source| UnpackError::Read { source })?;
    if leftover > 0 {
        tracing::debug!(
            bytes = leftover,
            "compressed stream continued after its end"
        );
    }
    applier.finish()?;
    Ok(UnpackedLayer {
        diff_id,
        uncompressed_bytes,
        entries,
    })
}

/// A failure inside the entry loop, before it is classified.
enum Failure {
    /// Reading failed; the stream stack says whether it was the source, the decompressor,
    /// the size limit or the tar format.
    Stream {
        entry: Option<String>,
        source: io::Error,
    },
    /// Already a final error.
    Unpack(UnpackError),
}

fn extract<R: Read>(archive: &mut tar::Archive<R>, applier: &mut Applier) -> Result<u64, Failure> {
    let stream = |entry: Option<String>| move |source| Failure::Stream { entry, source };
    let mut count = 0;
    for entry in archive.entries().map_err(stream(None))? {
        let mut entry = entry.map_err(stream(None))?;
        count += 1;
        match applier.apply(&mut entry) {
            Ok(()) => {}
            Err(ApplyError::Unpack(error)) => return Err(Failure::Unpack(error)),
            Err(ApplyError::Stream(source)) => {
                let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
                return Err(Failure::Stream {
                    entry: Some(name),
                    source,
                });
            }
        }
    }
    Ok(count)
}
