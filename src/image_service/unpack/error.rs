//! Errors of layer extraction.
//!
//! Every failure caused by the archive names the entry (as written in the archive, lossily
//! decoded) so an operator can find the offending file in the layer.

use std::io;
use std::path::PathBuf;

use super::Compression;
use crate::error_kind::ErrorKind;

/// Why a layer could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The destination directory could not be opened or inspected.
    #[error("cannot open layer directory {path}: {source}")]
    OpenDest {
        /// The layer directory.
        path: PathBuf,
        /// The I/O failure.
        source: io::Error,
    },
    /// Reading the caller's (compressed) stream failed.
    #[error("reading the layer stream failed: {source}")]
    Read {
        /// The reader's failure.
        source: io::Error,
    },
    /// The compressed stream is corrupt or truncated.
    #[error("layer is not a valid {compression} stream: {source}")]
    Decompress {
        /// The compression the caller declared.
        compression: Compression,
        /// The decompressor's complaint.
        source: io::Error,
    },
    /// The layer expands to more bytes than allowed (a decompression bomb, or a limit set too
    /// low).
    #[error("layer expands beyond the limit of {limit} uncompressed bytes")]
    TooLarge {
        /// The configured limit.
        limit: u64,
    },
    /// The tar stream itself is malformed (bad checksum, truncated entry, bad sparse map).
    #[error("malformed layer archive{}: {source}", at_entry(.entry))]
    Archive {
        /// The entry being read, if the failure happened inside one.
        entry: Option<String>,
        /// The tar reader's complaint.
        source: io::Error,
    },
    /// An entry's header carries a value that cannot be applied (uid out of range, bad
    /// number field).
    #[error("layer entry {entry:?}: invalid header: {reason}")]
    InvalidHeader {
        /// The entry name.
        entry: String,
        /// What is wrong.
        reason: String,
    },
    /// An entry's name cannot be used (empty, `..`, NUL byte, too long).
    #[error("layer entry {entry:?}: invalid name: {reason}")]
    InvalidName {
        /// The entry name as in the archive.
        entry: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An entry's path would leave the layer directory (through a symlink or otherwise).
    #[error("layer entry {entry:?}: refused, path escapes the layer: {reason}")]
    Escape {
        /// The entry name.
        entry: String,
        /// How it would escape.
        reason: &'static str,
    },
    /// A hard link's target is outside the layer, missing, or not linkable.
    #[error("layer entry {entry:?}: bad hard link target {target:?}: {reason}")]
    HardlinkTarget {
        /// The link entry's name.
        entry: String,
        /// The target as in the archive.
        target: String,
        /// What is wrong with the target.
        reason: &'static str,
    },
    /// A whiteout entry is malformed (`.wh..`, `.wh.`, whiteout used as a directory).
    #[error("layer entry {entry:?}: invalid whiteout: {reason}")]
    InvalidWhiteout {
        /// The entry name.
        entry: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The entry type is not one a layer may contain.
    #[error("layer entry {entry:?}: unsupported tar entry type {entry_type:#04x}")]
    UnsupportedType {
        /// The entry name.
        entry: String,
        /// The raw type flag.
        entry_type: u8,
    },
    /// A filesystem operation inside the layer directory failed.
    #[error("layer entry {entry:?}: {op} in {layer}: {source}")]
    Write {
        /// The entry name.
        entry: String,
        /// The layer directory.
        layer: PathBuf,
        /// The operation that failed (`create file`, `mknod`, `set xattr`...).
        op: &'static str,
        /// The I/O failure.
        source: io::Error,
    },
}

fn at_entry(entry: &Option<String>) -> String {
    entry
        .as_ref()
        .map(|entry| format!(" at entry {entry:?}"))
        .unwrap_or_default()
}

impl UnpackError {
    /// The kind of failure, for the one place that maps errors to gRPC codes.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::TooLarge { .. } => ErrorKind::ResourceExhausted,
            Self::Write { source, .. } | Self::OpenDest { source, .. }
                if matches!(
                    source.raw_os_error(),
                    Some(libc::ENOSPC | libc::EDQUOT | libc::EMFILE | libc::ENFILE)
                ) =>
            {
                ErrorKind::ResourceExhausted
            }
            Self::Write { .. } | Self::OpenDest { .. } => ErrorKind::Internal,
            // The registry connection or blob file failed; a retry may succeed.
            Self::Read { .. } => ErrorKind::Unavailable,
            Self::Decompress { .. }
            | Self::Archive { .. }
            | Self::InvalidHeader { .. }
            | Self::InvalidName { .. }
            | Self::Escape { .. }
            | Self::HardlinkTarget { .. }
            | Self::InvalidWhiteout { .. }
            | Self::UnsupportedType { .. } => ErrorKind::InvalidArgument,
        }
    }
}
