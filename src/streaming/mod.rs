//! The streaming server: kubelet's exec, attach and port-forward URLs.
//!
//! `Exec`, `Attach` and `PortForward` validate their request and mint a one-time URL
//! ([`StreamingUrls`]); the client then connects to it and upgrades to WebSocket (kubelet's
//! `channel.k8s.io` framing) or SPDY. Both transports feed the same protocol-neutral session
//! layer ([`session`]), served by [`stdio`] (exec, attach) and [`forward`] (port-forward),
//! which reach the runtime only through the narrow [`StreamRuntime`] trait implemented at the
//! composition root.

mod advertise;
mod error;
mod forward;
pub mod negotiate;
pub mod requests;
pub mod runtime;
mod server;
pub mod session;
pub mod spdy;
mod spdy_transport;
pub mod status;
mod stdio;
mod tls;
pub mod tokens;
pub mod tunnel;
mod urls;
pub mod websocket;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use error::{BackendError, StreamingError};
pub use requests::{AttachRequest, ExecRequest, PortForwardRequest, StreamOptions};
pub use runtime::{ProcessIo, StreamRuntime};
pub use tls::TlsSource;
pub use urls::StreamingUrls;

/// How the server is set up.
#[derive(Debug, Clone)]
pub struct StreamingSettings {
    /// Where to listen; port 0 picks a free one.
    pub address: SocketAddr,
    /// The host the URLs name; empty derives it from `address` (see `advertise`).
    pub advertise_address: String,
    /// Plain HTTP or where the certificate comes from.
    pub tls: TlsSource,
    /// A stream with no traffic for this long is closed.
    pub idle_timeout: Duration,
    /// A URL unused for this long expires.
    pub token_ttl: Duration,
}

/// The running server.
#[derive(Debug)]
pub struct StreamingServer {
    /// Mints the URLs the CRI RPCs return.
    pub urls: StreamingUrls,
    /// The address really bound.
    pub address: SocketAddr,
    task: JoinHandle<()>,
}

impl StreamingServer {
    /// Binds and starts serving with `runtime` behind the streams.
    pub async fn start(
        settings: StreamingSettings,
        runtime: Arc<dyn StreamRuntime>,
    ) -> Result<Self, StreamingError> {
        let bind = |source| StreamingError::Bind {
            address: settings.address,
            source,
        };
        let listener = TcpListener::bind(settings.address).await.map_err(bind)?;
        let address = listener.local_addr().map_err(bind)?;
        let host = advertise::url_host(address, &settings.advertise_address);
        // The self-signed certificate names the advertised host (without IPv6 brackets).
        let tls = tls::acceptor(&settings.tls, host.trim_matches(['[', ']']))?;
        let urls = StreamingUrls::new(&host, address.port(), tls.is_some(), settings.token_ttl);
        let state = Arc::new(server::State {
            urls: urls.clone(),
            runtime,
            idle_timeout: settings.idle_timeout,
        });
        let task = tokio::spawn(server::accept_loop(listener, tls, state));
        Ok(Self {
            urls,
            address,
            task,
        })
    }
}

impl Drop for StreamingServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
