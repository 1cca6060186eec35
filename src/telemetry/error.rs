//! Errors raised while starting telemetry.

use std::net::SocketAddr;

/// A telemetry piece that could not start; each names what it was set up for.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The OTLP exporter refused its settings (a malformed endpoint, usually).
    #[error("cannot set up trace export to {endpoint}: {source}")]
    Exporter {
        /// The collector endpoint.
        endpoint: String,
        /// The exporter's reason.
        source: opentelemetry_otlp::ExporterBuildError,
    },
    /// The metrics address could not be bound.
    #[error("cannot listen for metrics on {address}: {source}")]
    Bind {
        /// The configured address.
        address: SocketAddr,
        /// The socket error.
        source: std::io::Error,
    },
}
