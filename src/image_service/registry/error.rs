//! The registry client's error type: what failed, at which endpoint, for which repository.

use std::fmt;
use std::time::Duration;

use crate::error_kind::ErrorKind;
use crate::image_service::digest::Digest;
use crate::image_service::reference::ReferenceError;

/// What a request was after: a manifest (by tag or digest) or a blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A manifest or index, by the tag or digest used in the URL.
    Manifest(String),
    /// A blob (layer or config), by digest.
    Blob(Digest),
}

impl Target {
    /// The digest, when the target is named by one.
    pub fn digest(&self) -> Option<Digest> {
        match self {
            Self::Blob(digest) => Some(digest.clone()),
            Self::Manifest(reference) => reference.parse().ok(),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Manifest(reference) => write!(f, "manifest {reference}"),
            Self::Blob(digest) => write!(f, "blob {digest}"),
        }
    }
}

/// Why talking to a registry failed.
///
/// Endpoint fields hold the base URL that was spoken to (`https://registry-1.docker.io`,
/// `http://127.0.0.1:5000/prefix`, or a token realm); they never contain credentials.
/// Repository fields hold the full name with its registry (`docker.io/library/busybox`).
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The reference handed to the client does not obey the grammar.
    #[error(transparent)]
    Reference(#[from] ReferenceError),

    /// A configured mirror endpoint cannot be used.
    #[error("mirror endpoint {endpoint:?} of {registry}: {reason}")]
    InvalidEndpoint {
        /// The registry host the mirror stands in for.
        registry: String,
        /// The configured endpoint (as written, minus any user info).
        endpoint: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// The configuration leaves no endpoint for the registry.
    #[error("no endpoint for {registry}: no mirrors are configured and use_upstream is false")]
    NoEndpoints {
        /// The registry host.
        registry: String,
    },

    /// The HTTP client could not be built (TLS setup).
    #[error("building the registry HTTP client: {}", chain(cause))]
    Client {
        /// The underlying error.
        cause: reqwest::Error,
    },

    /// The request could not be sent or its response not read: connection refused, DNS,
    /// TLS, reset, refused redirect.
    #[error(
        "{endpoint}: request for {target} of {repository} failed: {}",
        chain(cause)
    )]
    Transport {
        /// The endpoint spoken to.
        endpoint: String,
        /// The repository.
        repository: String,
        /// What was requested.
        target: Target,
        /// The underlying error.
        cause: reqwest::Error,
    },

    /// Connecting, or waiting for the response headers, took too long.
    #[error("{endpoint}: no response for {target} of {repository} within {waited:?}")]
    Timeout {
        /// The endpoint spoken to.
        endpoint: String,
        /// The repository.
        repository: String,
        /// What was requested.
        target: Target,
        /// How long the client waited.
        waited: Duration,
    },

    /// A response body made no progress for the stall timeout.
    #[error("{endpoint}: download of {target} of {repository} stalled: no data for {stall:?}")]
    Stalled {
        /// The endpoint spoken to.
        endpoint: String,
        /// The repository.
        repository: String,
        /// What was being downloaded.
        target: Target,
        /// The stall timeout.
        stall: Duration,
    },

    /// The registry does not have it (HTTP 404).
    #[error("{endpoint}: {target} not found in {repository}{detail}")]
    NotFound {
        /// The endpoint spoken to.
        endpoint: String,
        /// The repository.
        repository: String,
        /// What was requested.
        target: Target,
        /// The registry's own explanation, if it gave one (`: CODE: message`).
        detail: String,
    },

    /// The registry refused access (HTTP 401 or 403), anonymously or with the credentials.
    #[error(
        "{endpoint}: access to {target} of {repository} denied (HTTP {status}, {}){detail}",
        if *.authenticated { "with credentials" } else { "anonymously" }
    )]
    Denied {
        /// The endpoint (or token realm) that refused.
        endpoint: String,
        /// The repository.
        repository: String,
        /// What was requested.
        target: Target,
        /// The HTTP status.
        status: u16,
        /// Whether credentials or a token were sent.
        authenticated: bool,
        /// The registry's own explanation, if it gave one.
        detail: String,
    },

    /// Any other unexpected HTTP status.
    #[error("{endpoint}: HTTP {status} for {target} of {repository}{detail}")]
    Status {
        /// The endpoint spoken to.
        endpoint: String,
        /// The repository.
        repository: String,
        /// What was requested.
        target: Target,
        /// The HTTP status.
        status: u16,
        /// The registry's own explanation, if it gave one.
        detail: String,
    },

    /// A body is larger than the limit for its kind; it was refused while reading.
    #[error("{endpoint}: {target} of {repository} is larger than the {limit}-byte limit")]
    TooLarge {
        /// The endpoint spoken to.
        endpoint: String,
        /// The repository.
        repository: String,
        /// What was requested.
        target: Target,
        /// The limit in bytes.
        limit: u64,
    },

    /// The bytes received do not hash to the digest they were requested by, or to the
    /// `Docker-Content-Digest` the registry announced.
    ///
    /// Kind [`ErrorKind::FailedPrecondition`], as containerd's content store reports a commit
    /// whose digest differs from the expected one: the request was fine, the content is not.
    #[error("{endpoint}: content from {repository} has digest {actual}, expected {expected}")]
    DigestMismatch {
        /// The endpoint that served the bytes.
        endpoint: String,
        /// The repository.
        repository: String,
        /// The digest the bytes should have (the requested one, or the announced one).
        expected: Digest,
        /// The digest they have.
        actual: Digest,
    },

    /// The registry's response breaks the protocol (unusable challenge, token or headers).
    #[error("{endpoint}: bad response for {target} of {repository}: {reason}")]
    Protocol {
        /// The endpoint (or token realm) spoken to.
        endpoint: String,
        /// The repository.
        repository: String,
        /// What was requested.
        target: Target,
        /// What is wrong.
        reason: String,
    },

    /// Getting a bearer token from the endpoint's auth realm failed.
    #[error("{endpoint}: getting a token: {source}")]
    Token {
        /// The registry endpoint that asked for the token.
        endpoint: String,
        /// The token service URL (without query).
        realm: String,
        /// Why it failed.
        source: Box<RegistryError>,
    },

    /// Every endpoint was tried and failed; the errors are in the order tried.
    #[error(
        "{target} of {repository}: all {} endpoints failed: {}",
        attempts.len(),
        join(attempts)
    )]
    AllEndpointsFailed {
        /// The repository.
        repository: String,
        /// What was requested.
        target: Target,
        /// One error per endpoint, in order.
        attempts: Vec<RegistryError>,
    },
}

impl RegistryError {
    /// The kind of failure, for the gRPC status.
    ///
    /// When several endpoints failed, the last one's kind counts: that is the upstream
    /// registry (or the last mirror), whose answer is authoritative.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Reference(err) => err.kind(),
            Self::InvalidEndpoint { .. } | Self::NoEndpoints { .. } => {
                ErrorKind::FailedPrecondition
            }
            Self::Client { .. } => ErrorKind::Internal,
            Self::Transport { .. } | Self::Protocol { .. } => ErrorKind::Unavailable,
            Self::Timeout { .. } | Self::Stalled { .. } => ErrorKind::DeadlineExceeded,
            Self::NotFound { .. } => ErrorKind::NotFound,
            Self::Denied { .. } => ErrorKind::PermissionDenied,
            Self::Status { status, .. } => match status {
                400 | 422 => ErrorKind::InvalidArgument,
                _ => ErrorKind::Unavailable,
            },
            Self::TooLarge { .. } => ErrorKind::ResourceExhausted,
            Self::DigestMismatch { .. } => ErrorKind::FailedPrecondition,
            Self::Token { source, .. } => source.kind(),
            Self::AllEndpointsFailed { attempts, .. } => attempts
                .last()
                .map_or(ErrorKind::Unavailable, RegistryError::kind),
        }
    }

    /// The endpoint the error came from, when it came from one.
    pub fn endpoint(&self) -> Option<&str> {
        match self {
            Self::Transport { endpoint, .. }
            | Self::Timeout { endpoint, .. }
            | Self::Stalled { endpoint, .. }
            | Self::NotFound { endpoint, .. }
            | Self::Denied { endpoint, .. }
            | Self::Status { endpoint, .. }
            | Self::TooLarge { endpoint, .. }
            | Self::DigestMismatch { endpoint, .. }
            | Self::Protocol { endpoint, .. }
            | Self::Token { endpoint, .. } => Some(endpoint),
            _ => None,
        }
    }

    /// Whether the next endpoint is worth trying after this error. Only errors about the
    /// request or the node's setup end the search early; any failure of a mirror moves on.
    pub(super) fn try_next_endpoint(&self) -> bool {
        !matches!(
            self,
            Self::Reference(_)
                | Self::InvalidEndpoint { .. }
                | Self::NoEndpoints { .. }
                | Self::Client { .. }
        )
    }

    /// One error from the per-endpoint failures: the only one, or all of them.
    pub(super) fn from_attempts(
        repository: &str,
        target: &Target,
        mut attempts: Vec<RegistryError>,
    ) -> Self {
        if attempts.len() == 1
            && let Some(only) = attempts.pop()
        {
            return only;
        }
        Self::AllEndpointsFailed {
            repository: repository.to_owned(),
            target: target.clone(),
            attempts,
        }
    }
}

/// An error and its sources, `: `-joined, so that the root cause (e.g. "connection refused")
/// shows in the message.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let next = cause.to_string();
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = cause.source();
    }
    text
}

fn join(attempts: &[RegistryError]) -> String {
    attempts
        .iter()
        .map(|attempt| format!("[{attempt}]"))
        .collect::<Vec<_>>()
        .join("; ")
}
