//! Image archives: Docker `save` tarballs (`manifest.json`) and OCI image layouts in a tar
//! (`oci-layout` + `index.json` + `blobs/`), as `docker save`, `ctr images export` and
//! `kind load` produce them.
//!
//! `entries` indexes a tar file on disk so members can be read in any order without
//! extracting it; `layout` finds the images an archive holds; `write` produces an archive
//! for export. Importing and exporting (the verbs) are `super::import` and `super::export`.

mod entries;
mod layout;
mod write;

use std::path::PathBuf;

pub use entries::Entries;
pub use layout::{ArchivedImage, ArchivedLayer, find_images};
pub use write::{ExportedImage, write_archive};

use crate::error_kind::ErrorKind;

/// An archive that cannot be read or is not an image archive.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// Reading or writing the archive file failed.
    #[error("image archive i/o on {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// The archive names a member it does not contain.
    #[error("image archive has no member {member:?}")]
    Missing {
        /// The member path.
        member: String,
    },
    /// The client's upload of the archive broke off.
    #[error("receiving the image archive failed: {reason}")]
    Upload {
        /// Why.
        reason: String,
    },
    /// The archive's structure is wrong.
    #[error("image archive: {reason}")]
    Invalid {
        /// What is wrong.
        reason: String,
    },
}

impl ArchiveError {
    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Io { source, .. } if source.raw_os_error() == Some(libc::ENOSPC) => {
                ErrorKind::ResourceExhausted
            }
            Self::Io { .. } => ErrorKind::Internal,
            Self::Missing { .. } | Self::Invalid { .. } => ErrorKind::InvalidArgument,
            Self::Upload { .. } => ErrorKind::Cancelled,
        }
    }

    pub(crate) fn invalid(reason: impl Into<String>) -> Self {
        Self::Invalid {
            reason: reason.into(),
        }
    }
}
