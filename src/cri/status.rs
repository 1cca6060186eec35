//! The single mapping from domain errors to gRPC status codes.
//!
//! Every module's error type reports an [`ErrorKind`]; this file is the only place that turns
//! kinds into `tonic::Code`s, so a code never depends on which RPC hit the error.

use tonic::{Code, Status};

use crate::config::ConfigError;
use crate::container::ContainerError;
use crate::error_kind::ErrorKind;
use crate::events::EventsError;
use crate::image_service::ImageError;
use crate::sandbox::SandboxError;
use crate::store::StoreError;
use crate::streaming::StreamingError;

/// The gRPC code for a kind of failure.
pub fn code_for(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::InvalidArgument => Code::InvalidArgument,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::AlreadyExists => Code::AlreadyExists,
        ErrorKind::FailedPrecondition => Code::FailedPrecondition,
        ErrorKind::DeadlineExceeded => Code::DeadlineExceeded,
        ErrorKind::Cancelled => Code::Cancelled,
        ErrorKind::ResourceExhausted => Code::ResourceExhausted,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::PermissionDenied => Code::PermissionDenied,
        ErrorKind::Unimplemented => Code::Unimplemented,
        ErrorKind::Internal => Code::Internal,
    }
}

/// The answer of an RPC whose issue has not landed yet: never a fake success.
pub fn not_built(rpc: &str) -> Status {
    Status::unimplemented(format!("{rpc} is not implemented by carrack yet"))
}

/// A unary list reply of `size` bytes over the `limit`: the client should use the streamed
/// twin, which cuts the same list into messages under the limit.
pub fn reply_too_large(rpc: &str, streamed: &str, size: usize, limit: usize) -> Status {
    Status::resource_exhausted(format!(
        "the {rpc} reply would be {size} bytes, over the {limit}-byte message limit; use {streamed}, which streams the same list in bounded messages"
    ))
}

/// The domain errors the CRI layer returns: each reports its kind, mapped by [`code_for`];
/// the message is the error's own (it names the object and the step).
macro_rules! status_from_domain_error {
    ($($error:ty),+ $(,)?) => {$(
        impl From<$error> for Status {
            fn from(err: $error) -> Self {
                Status::new(code_for(err.kind()), err.to_string())
            }
        }
    )+};
}

status_from_domain_error!(
    StoreError,
    ImageError,
    SandboxError,
    ConfigError,
    ContainerError,
    StreamingError,
    EventsError
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_map_to_their_codes() {
        let status = Status::from(StoreError::NameReserved {
            name: "web_default_u_0".to_owned(),
            holder: "abc".to_owned(),
        });
        assert_eq!(status.code(), Code::AlreadyExists);
        assert!(status.message().contains("abc"));
        let status = Status::from(StoreError::NotFound {
            kind: "pod",
            id: "x".to_owned(),
        });
        assert_eq!(status.code(), Code::NotFound);
    }

    #[test]
    fn full_disk_is_resource_exhausted() {
        let status = Status::from(StoreError::Io {
            path: "/var/lib/carrack/store".into(),
            source: std::io::Error::from_raw_os_error(libc::ENOSPC),
        });
        assert_eq!(status.code(), Code::ResourceExhausted);
    }

    #[test]
    fn a_dropped_event_subscriber_is_resource_exhausted() {
        let status = Status::from(EventsError::Lagged {
            subscriber: 7,
            capacity: 1024,
        });
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert!(status.message().contains("subscribe again"));
    }

    #[test]
    fn not_built_names_the_rpc() {
        let status = not_built("RunPodSandbox");
        assert_eq!(status.code(), Code::Unimplemented);
        assert!(status.message().contains("RunPodSandbox"));
    }
}
