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
use tonic::{Response, Status};

/// The boxed stream type used by server-streaming RPCs.
pub type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Answers an RPC that is not built yet with `UNIMPLEMENTED`, inside a span naming it.
async fn not_built<T>(rpc: &'static str) -> Result<Response<T>, Status> {
    let span = tracing::debug_span!("cri.unimplemented", rpc);
    instrument::rpc(span, async { Err(status::not_built(rpc)) }).await
}
