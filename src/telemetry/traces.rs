//! Trace export settings (the `[traces]` table with the standard `OTEL_*` variables on top)
//! and the OpenTelemetry tracer provider built from them.

use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, SpanExporter as _};

use super::error::TelemetryError;
use super::export::{ExportQueue, Flusher, QueueSettings};
use super::http_client::ReqwestClient;
use crate::config::{OtlpProtocol, SAMPLERS, TracesConfig, parse_ratio};

/// Trace export as resolved from the config file and the environment.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceSettings {
    /// The collector URL (for HTTP without the `/v1/traces` path).
    pub endpoint: String,
    /// gRPC or HTTP/protobuf.
    pub protocol: OtlpProtocol,
    /// The resource's `service.name`.
    pub service_name: String,
    /// The sampler name (one of [`SAMPLERS`]).
    pub sampler: String,
    /// The ratio for the ratio samplers.
    pub ratio: f64,
    /// The export queue.
    pub queue: QueueSettings,
}

impl TraceSettings {
    /// Applies the standard variables over `config`; `None` when export is off.
    ///
    /// Export is on when the file enables it or an endpoint variable is set, and off when
    /// `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`. The variables win over the
    /// file, as an operator running the daemon by hand expects.
    pub fn resolve(config: &TracesConfig, env: impl Fn(&str) -> Option<String>) -> Option<Self> {
        let env = |name: &str| env(name).filter(|value| !value.trim().is_empty());
        if env("OTEL_SDK_DISABLED").is_some_and(|value| value.eq_ignore_ascii_case("true"))
            || env("OTEL_TRACES_EXPORTER").is_some_and(|value| value == "none")
        {
            return None;
        }
        let env_endpoint = env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .or_else(|| env("OTEL_EXPORTER_OTLP_ENDPOINT"));
        if !config.enabled && env_endpoint.is_none() {
            return None;
        }
        let protocol = match env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL"))
            .as_deref()
        {
            Some("grpc") => OtlpProtocol::Grpc,
            Some("http/protobuf") => OtlpProtocol::HttpProtobuf,
            _ => config.protocol,
        };
        let endpoint = env_endpoint
            .or_else(|| Some(config.endpoint.clone()).filter(|endpoint| !endpoint.is_empty()))
            .unwrap_or_else(|| match protocol {
                OtlpProtocol::Grpc => "http://localhost:4317".to_owned(),
                OtlpProtocol::HttpProtobuf => "http://localhost:4318".to_owned(),
            });
        let sampler = env("OTEL_TRACES_SAMPLER")
            .filter(|name| SAMPLERS.contains(&name.as_str()))
            .unwrap_or_else(|| config.sampler.clone());
        let ratio = env("OTEL_TRACES_SAMPLER_ARG")
            .and_then(|arg| parse_ratio(&arg))
            .or_else(|| parse_ratio(&config.sampler_arg))
            .unwrap_or(1.0);
        Some(Self {
            endpoint,
            protocol,
            service_name: env("OTEL_SERVICE_NAME").unwrap_or_else(|| config.service_name.clone()),
            sampler,
            ratio,
            queue: QueueSettings {
                capacity: config.queue_size,
                max_batch: config.max_batch_size,
                interval: Duration::from_millis(config.export_interval_ms),
                timeout: Duration::from_millis(config.export_timeout_ms),
            },
        })
    }

    /// The sampler for [`Self::sampler`].
    pub fn sampler(&self) -> Sampler {
        let parent_based = |root| Sampler::ParentBased(Box::new(root));
        match self.sampler.as_str() {
            "always_on" => Sampler::AlwaysOn,
            "always_off" => Sampler::AlwaysOff,
            "traceidratio" => Sampler::TraceIdRatioBased(self.ratio),
            "parentbased_always_off" => parent_based(Sampler::AlwaysOff),
            "parentbased_traceidratio" => parent_based(Sampler::TraceIdRatioBased(self.ratio)),
            _ => parent_based(Sampler::AlwaysOn),
        }
    }

    /// Builds the exporter and the provider; the export task starts on the current tokio
    /// runtime, so this must run inside one.
    pub(super) fn build(&self) -> Result<(SdkTracerProvider, Flusher), TelemetryError> {
        let timeout = self.queue.timeout;
        let build_error = |source| TelemetryError::Exporter {
            endpoint: self.endpoint.clone(),
            source,
        };
        let mut exporter = match self.protocol {
            OtlpProtocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(&self.endpoint)
                .with_timeout(timeout)
                .build()
                .map_err(build_error)?,
            OtlpProtocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_http_client(ReqwestClient::new(timeout))
                .with_endpoint(format!("{}/v1/traces", self.endpoint.trim_end_matches('/')))
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_timeout(timeout)
                .build()
                .map_err(build_error)?,
        };
        let resource = Resource::builder_empty()
            .with_attributes([
                KeyValue::new("service.name", self.service_name.clone()),
                KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            ])
            .build();
        exporter.set_resource(&resource);
        let queue = ExportQueue::start(exporter, self.queue.clone());
        let flusher = queue.flusher();
        let provider = SdkTracerProvider::builder()
            .with_sampler(self.sampler())
            .with_resource(resource)
            .with_span_processor(queue)
            .build();
        Ok((provider, flusher))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn resolve(config: &TracesConfig, vars: &[(&str, &str)]) -> Option<TraceSettings> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        TraceSettings::resolve(config, |name| vars.get(name).cloned())
    }

    #[test]
    fn off_unless_enabled_or_endpoint_variable_set() {
        let config = TracesConfig::default();
        assert_eq!(resolve(&config, &[]), None);
        let on = resolve(
            &config,
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://10.0.0.1:4317")],
        )
        .unwrap();
        assert_eq!(on.endpoint, "http://10.0.0.1:4317");
        assert_eq!(on.protocol, OtlpProtocol::Grpc);
        assert_eq!(on.service_name, "carrack");
        let disabled = resolve(
            &config,
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://10.0.0.1:4317"),
                ("OTEL_SDK_DISABLED", "true"),
            ],
        );
        assert_eq!(disabled, None);
    }

    #[test]
    fn variables_win_over_the_file() {
        let config = TracesConfig {
            enabled: true,
            endpoint: "http://collector:4317".to_owned(),
            sampler: "always_on".to_owned(),
            ..TracesConfig::default()
        };
        let from_file = resolve(&config, &[]).unwrap();
        assert_eq!(from_file.endpoint, "http://collector:4317");
        assert!(matches!(from_file.sampler(), Sampler::AlwaysOn));
        let settings = resolve(
            &config,
            &[
                ("OTEL_SERVICE_NAME", "node-7"),
                ("OTEL_TRACES_SAMPLER", "traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "0.1"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ],
        )
        .unwrap();
        assert_eq!(settings.service_name, "node-7");
        assert_eq!(settings.protocol, OtlpProtocol::HttpProtobuf);
        assert!(matches!(settings.sampler(), Sampler::TraceIdRatioBased(r) if r == 0.1));
    }

    #[test]
    fn default_endpoint_follows_protocol() {
        let config = TracesConfig {
            enabled: true,
            protocol: OtlpProtocol::HttpProtobuf,
            ..TracesConfig::default()
        };
        assert_eq!(
            resolve(&config, &[]).unwrap().endpoint,
            "http://localhost:4318"
        );
    }
}
