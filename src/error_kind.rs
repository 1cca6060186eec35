//! The small vocabulary every module's error uses to say what *kind* of failure it is.
//!
//! Leaves must not know about gRPC, yet the wire layer needs one mapping from domain errors to
//! status codes. Each module's error type implements `kind()` returning an [`ErrorKind`];
//! `cri::status` turns that into a `tonic::Code` in exactly one place.

/// What went wrong, in terms a caller can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed or names something impossible.
    InvalidArgument,
    /// The named object does not exist.
    NotFound,
    /// The object (or its name) already exists.
    AlreadyExists,
    /// The object is not in a state that allows the operation.
    FailedPrecondition,
    /// The caller's deadline passed.
    DeadlineExceeded,
    /// The operation was cancelled.
    Cancelled,
    /// A disk, memory or quota limit was reached.
    ResourceExhausted,
    /// A dependency (registry, plugin, peer) could not be reached; retrying may help.
    Unavailable,
    /// The operation is refused for lack of permission.
    PermissionDenied,
    /// The operation is not supported (yet).
    Unimplemented,
    /// A bug or an unexpected system failure.
    Internal,
}
