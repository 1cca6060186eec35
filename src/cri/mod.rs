//! The CRI gRPC layer: tonic adapters for RuntimeService and ImageService, and for Carrack's
//! image transfer extension (`image_transfer`, its own proto package).
//!
//! This layer validates and translates requests, calls the domain services and converts the
//! replies back. It performs no syscalls and no file I/O of its own; errors become gRPC codes
//! only in [`status`].

mod batch;
mod containers;
pub mod convert;
mod events;
pub mod image;
pub mod image_transfer;
pub mod instrument;
mod lists;
pub mod runtime;
pub mod status;
mod streaming;

use std::pin::Pin;

use tokio_stream::Stream;
use tonic::Status;

/// The boxed stream type used by server-streaming RPCs.
pub type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Answers an RPC that is not built yet with `UNIMPLEMENTED`, inside its `cri.<Rpc>` span like
/// every other RPC (so traces and the `rpc` metric label name it). A macro because span names
/// are static: the name is put together at compile time.
macro_rules! not_built {
    ($rpc:literal) => {
        $crate::cri::instrument::rpc(tracing::info_span!(concat!("cri.", $rpc)), async {
            Err($crate::cri::status::not_built($rpc))
        })
        .await
    };
}
use not_built;
