//! Errors of the durable state store.

use std::path::PathBuf;

use crate::error_kind::ErrorKind;

/// A store failure, naming the file or the id involved.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Reading, writing, syncing or renaming a record file failed.
    #[error("state store i/o on {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The I/O failure.
        source: std::io::Error,
    },
    /// A record could not be encoded as JSON.
    #[error("cannot encode {kind} record {id}: {source}")]
    Encode {
        /// Record kind (`pod`, `container`, `image`).
        kind: &'static str,
        /// Record id.
        id: String,
        /// The encoder's failure.
        source: serde_json::Error,
    },
    /// The id cannot be used as a record file name.
    #[error(
        "invalid {kind} id {id:?}: ids are 1-128 characters of [A-Za-z0-9_.:-], not starting with '.'"
    )]
    InvalidId {
        /// Record kind.
        kind: &'static str,
        /// The refused id.
        id: String,
    },
    /// The name is held by another object.
    #[error("name {name:?} is reserved for {holder}")]
    NameReserved {
        /// The CRI name key.
        name: String,
        /// The id holding it.
        holder: String,
    },
    /// No record with that id.
    #[error("{kind} {id} not found")]
    NotFound {
        /// Record kind.
        kind: &'static str,
        /// The id looked up.
        id: String,
    },
}

impl StoreError {
    /// The kind of failure, for the one place that maps errors to gRPC codes.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Io { source, .. } if source.raw_os_error() == Some(libc::ENOSPC) => {
                ErrorKind::ResourceExhausted
            }
            Self::Io { .. } | Self::Encode { .. } => ErrorKind::Internal,
            Self::InvalidId { .. } => ErrorKind::InvalidArgument,
            Self::NameReserved { .. } => ErrorKind::AlreadyExists,
            Self::NotFound { .. } => ErrorKind::NotFound,
        }
    }
}
