//! Our SPDY/3.1 implementation, as Kubernetes' exec, attach and port-forward clients speak
//! it (Go's `github.com/moby/spdystream` after an HTTP/1.1 `Upgrade: SPDY/3.1`): framing,
//! the zlib-compressed header blocks, and a connection driver giving each stream as a tokio
//! `AsyncRead + AsyncWrite`.
//!
//! - [`frame`]: frame types and the pure encoding/decoding of one frame, with size limits.
//! - [`headers`]: header blocks, the SPDY/3 zlib dictionary, the per-direction contexts.
//! - `connection`: [`serve`] / [`connect`] and the [`ConnectionHandle`].
//! - `stream`: [`Stream`], one stream's reads and writes.
//! - `state` and `driver`: the shared connection state and the task that runs the transport;
//!   the flow-control policy towards spdystream (which ignores it) is described in `state`.

mod config;
mod connection;
mod driver;
mod error;
pub mod frame;
pub mod headers;
mod state;
mod stream;

pub use config::ConnectionConfig;
pub use connection::{ConnectionHandle, connect, serve};
pub use error::SpdyError;
pub use frame::Limits;
pub use headers::Headers;
pub use stream::Stream;

#[cfg(test)]
mod tests;
