//! CRI gRPC clients for tests, over the daemon's unix socket.
//!
//! The connection is the command line's (`carrack::cli::client::unix_channel`: a
//! placeholder URI and a connector that dials the socket). The generated types
//! come from the library (`carrack::proto`), the same ones the daemon serves.
//!
//! Tests that use these clients must run on a multi-threaded runtime,
//! `#[tokio::test(flavor = "multi_thread")]`: the node fixture blocks the test
//! thread (start, stop, drop), and the connection's background task has to
//! keep running meanwhile, or the daemon's graceful shutdown waits for a
//! connection nobody services until its grace period runs out.

use std::path::Path;

use carrack::proto::image_service_client::ImageServiceClient;
use carrack::proto::runtime_service_client::RuntimeServiceClient;
use tokio::runtime::RuntimeFlavor;
use tonic::transport::Channel;

use super::node::Node;

/// Both CRI services of one daemon, sharing one connection.
#[derive(Debug, Clone)]
pub struct CriClient {
    /// `runtime.v1.RuntimeService`.
    pub runtime: RuntimeServiceClient<Channel>,
    /// `runtime.v1.ImageService`.
    pub image: ImageServiceClient<Channel>,
}

/// Opens a channel to the CRI server listening on the unix socket `socket` (the command
/// line's connector).
pub async fn connect_channel(socket: &Path) -> Result<Channel, tonic::transport::Error> {
    carrack::cli::client::unix_channel(socket).await
}

/// Connects both CRI services to the daemon listening on `socket`.
pub async fn connect(socket: &Path) -> Result<CriClient, tonic::transport::Error> {
    let channel = connect_channel(socket).await?;
    Ok(CriClient {
        // kubelet's limit, 16 MiB (tonic's default is 4 MiB).
        runtime: RuntimeServiceClient::new(channel.clone()).max_decoding_message_size(16 << 20),
        image: ImageServiceClient::new(channel).max_decoding_message_size(16 << 20),
    })
}

impl Node {
    /// CRI clients connected to this node's daemon; panics (with the daemon
    /// log) if the socket does not take the connection.
    pub async fn cri(&self) -> CriClient {
        assert!(
            tokio::runtime::Handle::current().runtime_flavor() != RuntimeFlavor::CurrentThread,
            "CRI tests must use #[tokio::test(flavor = \"multi_thread\")]: the node fixture \
             blocks the test thread, which would stall a current-thread runtime's connections"
        );
        match connect(&self.socket_path()).await {
            Ok(client) => client,
            Err(err) => panic!(
                "connecting to {}: {err:?}; daemon log:\n{}",
                self.socket_path().display(),
                self.daemon_log()
            ),
        }
    }
}
