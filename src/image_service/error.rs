//! Errors of the image service, wrapping those of its parts with the image or layer at fault.

use super::archive::ArchiveError;
use super::content::ContentError;
use super::digest::Digest;
use super::manifest::ManifestError;
use super::reference::ReferenceError;
use super::registry::RegistryError;
use super::unpack::UnpackError;
use crate::error_kind::ErrorKind;
use crate::snapshot::SnapshotError;
use crate::store::StoreError;

/// An image operation failure.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The image name does not parse.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// The registry refused, failed or could not be reached.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A manifest, index or config is unusable.
    #[error("image {image}: {source}")]
    Manifest {
        /// The image being pulled.
        image: String,
        /// What is wrong with the document.
        source: ManifestError,
    },
    /// A layer uses a media type we cannot unpack.
    #[error("image {image}: layer {layer} has unsupported media type {media_type:?}")]
    UnsupportedLayer {
        /// The image being pulled.
        image: String,
        /// The layer's digest.
        layer: Digest,
        /// Its media type.
        media_type: String,
    },
    /// Unpacking a layer failed (hostile or corrupt content).
    #[error("image {image}: layer {layer}: {source}")]
    Unpack {
        /// The image being pulled.
        image: String,
        /// The layer's digest.
        layer: Digest,
        /// Why unpacking failed (boxed: it is large and rare).
        source: Box<UnpackError>,
    },
    /// The registry sent a blob whose digest or size is not what the manifest promised.
    #[error("image {image}: layer {layer}: {reason}")]
    LayerVerification {
        /// The image being pulled.
        image: String,
        /// The layer's (compressed) digest.
        layer: Digest,
        /// What did not match.
        reason: String,
    },
    /// Content store failure.
    #[error(transparent)]
    Content(#[from] ContentError),
    /// Snapshot (layer directory) failure.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// Record store failure.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An image reference matches several images by id prefix.
    #[error("image id prefix {prefix:?} is ambiguous ({count} images match)")]
    AmbiguousId {
        /// The prefix given.
        prefix: String,
        /// How many images match.
        count: usize,
    },
    /// An image archive is unreadable or malformed.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// No image has that name.
    #[error("no such image: {image}")]
    NotFound {
        /// The name asked for.
        image: String,
    },
    /// The image cannot be exported.
    #[error("image {image} cannot be exported: {reason}")]
    NotExportable {
        /// The name asked for.
        image: String,
        /// Why.
        reason: String,
    },
    /// A background task of the pull died.
    #[error("image {image}: internal task failed: {reason}")]
    Task {
        /// The image being pulled.
        image: String,
        /// What happened.
        reason: String,
    },
}

impl ImageError {
    /// The kind of failure, for the one place that maps errors to gRPC codes.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Reference(err) => err.kind(),
            Self::Registry(err) => err.kind(),
            Self::Manifest { .. } | Self::UnsupportedLayer { .. } => ErrorKind::FailedPrecondition,
            Self::Unpack { source, .. } => source.kind(),
            Self::LayerVerification { .. } => ErrorKind::FailedPrecondition,
            Self::Content(err) => err.kind(),
            Self::Snapshot(err) => err.kind(),
            Self::Store(err) => err.kind(),
            Self::AmbiguousId { .. } => ErrorKind::InvalidArgument,
            Self::Task { .. } => ErrorKind::Internal,
            Self::Archive(err) => err.kind(),
            Self::NotFound { .. } => ErrorKind::NotFound,
            Self::NotExportable { .. } => ErrorKind::FailedPrecondition,
        }
    }
}
