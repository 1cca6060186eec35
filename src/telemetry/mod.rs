//! The daemon's observability: logs, traces and metrics.
//!
//! - Logs: a `tracing` subscriber writing text or JSON to stderr, its level changeable at
//!   runtime (SIGUSR1 more verbose, SIGUSR2 quieter, SIGHUP re-reads the config file's level).
//! - Traces: `tracing` spans exported over OTLP (gRPC or HTTP/protobuf) through a bounded queue
//!   that drops rather than waits; a caller's W3C `traceparent` is continued.
//! - Metrics: a Prometheus registry served at `/metrics` when an address is configured.
//!
//! Initialised once by `main`/`daemon`; every other module only uses `tracing` macros (plus
//! [`phases::record`] for phases timed in other processes).

mod error;
mod export;
mod http_client;
mod logging;
pub mod metrics;
pub mod phases;
pub mod process;
mod serve;
pub mod span_metrics;
pub mod traceparent;
pub mod traces;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinHandle;
use tracing::Level;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{Layer, Registry, reload};

pub use error::TelemetryError;
pub use export::Flusher;
pub use logging::LogLevel;
pub use serve::spawn as serve_metrics;
pub use traces::TraceSettings;

use crate::config::{Config, LogFormat};

/// What [`init`] set up; the daemon keeps it for the log-level signals and the final flush.
#[derive(Debug)]
pub struct Telemetry {
    level: Option<Arc<LogLevel>>,
    /// The config file SIGHUP re-reads.
    config_path: PathBuf,
    traces: Option<(SdkTracerProvider, Flusher)>,
}

/// Installs the global subscriber (logs, and trace export when configured or asked for by
/// the `OTEL_*` variables). Must run inside the tokio runtime: the export task starts on it.
/// `config_path` is the file `config` came from, re-read on SIGHUP for its log level.
///
/// A second call in one process (tests running the daemon in-process) keeps the first
/// subscriber and returns a handle without log-level control.
pub fn init(config: &Config, config_path: &Path) -> Result<Telemetry, TelemetryError> {
    let (filter, filter_text) = logging::initial_filter(&config.log);
    let (filter, handle) = reload::Layer::new(filter);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let fmt: Box<dyn Layer<Registry> + Send + Sync> = match config.log.format {
        LogFormat::Text => fmt.with_target(false).boxed(),
        LogFormat::Json => fmt.json().with_current_span(true).boxed(),
    };
    let traces = TraceSettings::resolve(&config.traces, |name| std::env::var(name).ok())
        .map(|settings| settings.build().map(|built| (settings, built)))
        .transpose()?;
    let otel = traces.as_ref().map(|(_, (provider, _))| {
        opentelemetry::global::set_tracer_provider(provider.clone());
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("carrack"))
            .with_filter(filter_fn(|metadata| {
                metadata.target().starts_with("carrack") && *metadata.level() <= Level::INFO
            }))
    });
    let subscriber = Registry::default()
        .with(fmt.with_filter(filter))
        .with(otel)
        .with(span_metrics::SpanMetrics.with_filter(filter_fn(span_metrics::wants)));
    let installed = tracing::subscriber::set_global_default(subscriber).is_ok();
    if let Some((settings, _)) = &traces {
        tracing::info!(
            endpoint = %settings.endpoint,
            protocol = ?settings.protocol,
            sampler = %settings.sampler,
            "exporting traces"
        );
    }
    Ok(Telemetry {
        level: installed.then(|| Arc::new(LogLevel::new(handle, &filter_text))),
        config_path: config_path.to_owned(),
        traces: traces.map(|(_, built)| built),
    })
}

impl Telemetry {
    /// Steps the log level on SIGUSR1 (more verbose) and SIGUSR2 (quieter), and on SIGHUP
    /// applies the `[log] level` of the re-read config file, until aborted. Other settings
    /// of the file take effect at the next start (they size or bind things made at start).
    pub fn spawn_level_signals(&self) -> Option<JoinHandle<()>> {
        let level = Arc::clone(self.level.as_ref()?);
        let config_path = self.config_path.clone();
        let (Ok(mut raise), Ok(mut lower), Ok(mut hangup)) = (
            signal(SignalKind::user_defined1()),
            signal(SignalKind::user_defined2()),
            signal(SignalKind::hangup()),
        ) else {
            tracing::warn!("cannot install SIGUSR1/SIGUSR2/SIGHUP handlers; log level is fixed");
            return None;
        };
        Some(tokio::spawn(async move {
            loop {
                // Changes are logged at warn so that they show at the usual levels.
                tokio::select! {
                    _ = raise.recv() => tracing::warn!(level = level.raise(), "log level changed"),
                    _ = lower.recv() => tracing::warn!(level = level.lower(), "log level changed"),
                    _ = hangup.recv() => reload_level(&level, &config_path).await,
                }
            }
        }))
    }

    /// Sends the spans still queued (at most `timeout`), before the process exits.
    pub async fn flush(&self, timeout: Duration) {
        if let Some((_, flusher)) = &self.traces {
            flusher.flush(timeout).await;
        }
    }
}

/// Re-reads `path` and applies its `[log] level`; a file that does not load changes nothing.
async fn reload_level(level: &LogLevel, path: &Path) {
    let load = {
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || Config::load(&path)).await
    };
    match load {
        Ok(Ok(config)) => {
            // Logged before the change: a quieter level could hide the line.
            tracing::warn!(
                path = %path.display(),
                level = %config.log.level,
                "config reloaded: log level changed"
            );
            if let Err(err) = level.set(&config.log.level) {
                tracing::error!(level = %config.log.level, error = %err, "log level not applied");
            }
        }
        Ok(Err(err)) => tracing::error!(error = %err, "config reload failed; log level kept"),
        Err(err) => tracing::error!(error = %err, "config reload failed; log level kept"),
    }
}
