//! The CRI client: both CRI services (and Carrack's image extension) over one connection to
//! a runtime's unix socket — Carrack's, containerd's or any other CRI runtime's.

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint};

use super::error::CliError;
use crate::proto::image_service_client::ImageServiceClient;
use crate::proto::runtime_service_client::RuntimeServiceClient;

/// kubelet's gRPC message limit (tonic's default of 4 MiB is too small for big lists).
const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// A connection to one runtime.
#[derive(Debug, Clone)]
pub struct Cri {
    /// `runtime.v1.RuntimeService`.
    pub runtime: RuntimeServiceClient<Channel>,
    /// `runtime.v1.ImageService`.
    pub image: ImageServiceClient<Channel>,
    /// The connection itself, for extension services on the same socket.
    pub channel: Channel,
    /// The endpoint, for messages.
    pub endpoint: String,
}

/// The socket path of `unix:///path` or a bare `/path`.
pub fn socket_path(endpoint: &str) -> Result<PathBuf, CliError> {
    let path = endpoint.strip_prefix("unix://").unwrap_or(endpoint);
    if path.starts_with('/') {
        Ok(PathBuf::from(path))
    } else {
        Err(CliError::Endpoint {
            endpoint: endpoint.to_owned(),
        })
    }
}

/// Opens a gRPC channel to the server listening on the unix socket `socket` (also used by
/// the tests and the benchmark client).
pub async fn unix_channel(socket: &Path) -> Result<Channel, tonic::transport::Error> {
    let socket = socket.to_owned();
    // tonic wants a URI; it is never dialled: the connector always opens the socket.
    Endpoint::from_static("http://[::]:50051")
        .connect_with_connector(tower::service_fn(move |_uri| {
            let socket = socket.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(socket).await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        }))
        .await
}

/// Connects to the runtime at `endpoint` (`unix:///run/carrack/carrack.sock`).
pub async fn connect(endpoint: &str) -> Result<Cri, CliError> {
    let socket = socket_path(endpoint)?;
    let channel = unix_channel(&socket)
        .await
        .map_err(|err| CliError::Connect {
            endpoint: endpoint.to_owned(),
            reason: source_chain(&err),
        })?;
    Ok(Cri {
        runtime: RuntimeServiceClient::new(channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES),
        image: ImageServiceClient::new(channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES),
        channel,
        endpoint: endpoint.to_owned(),
    })
}

/// The innermost cause of a transport error (tonic's own text is only "transport error").
fn source_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut innermost: &dyn std::error::Error = err;
    while let Some(source) = innermost.source() {
        innermost = source;
    }
    innermost.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_unix_urls_or_paths() {
        assert_eq!(
            socket_path("unix:///run/carrack/carrack.sock").unwrap(),
            PathBuf::from("/run/carrack/carrack.sock")
        );
        assert_eq!(
            socket_path("/run/containerd/containerd.sock").unwrap(),
            PathBuf::from("/run/containerd/containerd.sock")
        );
        assert!(socket_path("tcp://127.0.0.1:1234").is_err());
        assert!(socket_path("relative.sock").is_err());
    }
}
