//! Errors of the streaming server: refused requests (kind for the CRI layer) and start-up
//! failures (listen address, TLS material).

use std::path::PathBuf;

use crate::error_kind::ErrorKind;

/// A streaming failure, naming the request field, address or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum StreamingError {
    /// The `Exec`/`Attach`/`PortForward` request cannot be served as asked.
    #[error("invalid streaming request: {reason}")]
    InvalidRequest {
        /// What is wrong.
        reason: &'static str,
    },
    /// Too many URLs were handed out and not used yet.
    #[error(transparent)]
    CacheFull(#[from] super::tokens::CacheFull),
    /// The listen address could not be bound.
    #[error("streaming server: bind {address}: {source}")]
    Bind {
        /// The configured address.
        address: std::net::SocketAddr,
        /// The failure.
        source: std::io::Error,
    },
    /// A TLS certificate or key could not be read or used.
    #[error("streaming server TLS: {}: {reason}", .path.display())]
    Tls {
        /// The file (or `<self-signed>`).
        path: PathBuf,
        /// Why it is unusable.
        reason: String,
    },
}

impl StreamingError {
    /// The kind of failure, for the one place that maps errors to gRPC codes.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::InvalidRequest { .. } => ErrorKind::InvalidArgument,
            Self::CacheFull(_) => ErrorKind::ResourceExhausted,
            Self::Bind { .. } | Self::Tls { .. } => ErrorKind::Internal,
        }
    }
}

/// A failure of the runtime behind a stream (the container or pod side), passed to the client
/// as text on the error stream.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct BackendError(#[from] pub Box<dyn std::error::Error + Send + Sync>);

impl BackendError {
    /// Wraps any error of the runtime.
    pub fn new(err: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Box::new(err))
    }
}
