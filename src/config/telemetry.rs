//! The `[traces]` and `[metrics]` tables: OpenTelemetry trace export and the Prometheus
//! endpoint. Both are off by default. The standard `OTEL_*` variables are applied on top by
//! `telemetry` (they describe the process environment, not the file).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// OpenTelemetry trace export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracesConfig {
    /// Export spans. Also switched on by `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`).
    pub enabled: bool,
    /// The collector: `http://host:4317` for gRPC, `http://host:4318` for HTTP (the
    /// `/v1/traces` path is added). Empty: the OTLP default for the protocol.
    pub endpoint: String,
    /// The wire protocol.
    pub protocol: OtlpProtocol,
    /// `service.name` of the exported resource (`OTEL_SERVICE_NAME` wins).
    pub service_name: String,
    /// An `OTEL_TRACES_SAMPLER` value: `always_on`, `always_off`, `traceidratio`,
    /// `parentbased_always_on`, `parentbased_always_off`, `parentbased_traceidratio`.
    pub sampler: String,
    /// The ratio for the `traceidratio` samplers, `0.0`..=`1.0` (`OTEL_TRACES_SAMPLER_ARG`).
    pub sampler_arg: String,
    /// Finished spans waiting for export; when full, new spans are dropped (and counted) so
    /// that a slow or absent collector never holds up an RPC.
    pub queue_size: usize,
    /// Most spans sent in one export request.
    pub max_batch_size: usize,
    /// How long finished spans may wait before a partial batch is sent, in milliseconds.
    pub export_interval_ms: u64,
    /// How long one export request may take, in milliseconds.
    pub export_timeout_ms: u64,
}

/// The OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OtlpProtocol {
    /// OTLP/gRPC (port 4317).
    #[serde(rename = "grpc")]
    Grpc,
    /// OTLP/HTTP with protobuf bodies (port 4318).
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
}

/// The Prometheus endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// `ip:port` serving `/metrics` in the Prometheus text format; empty: no endpoint.
    pub address: String,
}

/// The samplers `OTEL_TRACES_SAMPLER` defines (the `jaeger_remote` and `xray` ones need
/// services we do not speak to).
pub const SAMPLERS: [&str; 6] = [
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
];

impl Default for TracesConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            endpoint: String::new(),
            protocol: OtlpProtocol::Grpc,
            service_name: "carrack".to_owned(),
            sampler: "parentbased_always_on".to_owned(),
            sampler_arg: String::new(),
            queue_size: 2048,
            max_batch_size: 512,
            export_interval_ms: 1000,
            export_timeout_ms: 5000,
        }
    }
}

impl TracesConfig {
    /// Why the table is unusable, as `(key, reason)`.
    pub(super) fn problem(&self) -> Option<(&'static str, String)> {
        if !SAMPLERS.contains(&self.sampler.as_str()) {
            return Some((
                "traces.sampler",
                format!("`{}` is not one of {}", self.sampler, SAMPLERS.join(", ")),
            ));
        }
        if !self.sampler_arg.is_empty() && parse_ratio(&self.sampler_arg).is_none() {
            return Some((
                "traces.sampler_arg",
                format!("`{}` is not a ratio between 0 and 1", self.sampler_arg),
            ));
        }
        let has_scheme =
            self.endpoint.starts_with("http://") || self.endpoint.starts_with("https://");
        if !self.endpoint.is_empty() && !has_scheme {
            return Some((
                "traces.endpoint",
                format!("`{}` must start with http:// or https://", self.endpoint),
            ));
        }
        for (key, value) in [
            ("traces.queue_size", self.queue_size as u64),
            ("traces.max_batch_size", self.max_batch_size as u64),
            ("traces.export_interval_ms", self.export_interval_ms),
            ("traces.export_timeout_ms", self.export_timeout_ms),
        ] {
            if value == 0 {
                return Some((key, "must be at least 1".to_owned()));
            }
        }
        None
    }
}

impl MetricsConfig {
    /// The listen address, `None` when the endpoint is off.
    pub fn listen_address(&self) -> Result<Option<SocketAddr>, String> {
        if self.address.is_empty() {
            return Ok(None);
        }
        self.address
            .parse()
            .map(Some)
            .map_err(|err| format!("`{}` is not an ip:port address: {err}", self.address))
    }
}

/// A sampling ratio, `0.0..=1.0`.
pub fn parse_ratio(text: &str) -> Option<f64> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|ratio| (0.0..=1.0).contains(ratio))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::Config;
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, Path::new("/etc/carrack/test.toml")).map_err(|err| err.to_string())
    }

    #[test]
    fn telemetry_is_off_by_default() {
        let config = parse("").unwrap();
        assert!(!config.traces.enabled);
        assert_eq!(config.metrics.listen_address(), Ok(None));
    }

    #[test]
    fn traces_and_metrics_tables_parse() {
        let config = parse(
            "[traces]\nenabled = true\nendpoint = \"http://127.0.0.1:4318\"\n\
             protocol = \"http/protobuf\"\nsampler = \"traceidratio\"\nsampler_arg = \"0.25\"\n\
             [metrics]\naddress = \"127.0.0.1:9464\"\n",
        )
        .unwrap();
        assert!(config.traces.enabled);
        assert_eq!(config.traces.protocol, OtlpProtocol::HttpProtobuf);
        assert_eq!(parse_ratio(&config.traces.sampler_arg), Some(0.25));
        assert_eq!(
            config.metrics.listen_address().unwrap().unwrap().port(),
            9464
        );
    }

    #[test]
    fn bad_telemetry_values_name_their_key() {
        for (text, key) in [
            ("[traces]\nsampler = \"sometimes\"\n", "traces.sampler"),
            ("[traces]\nsampler_arg = \"2\"\n", "traces.sampler_arg"),
            (
                "[traces]\nendpoint = \"127.0.0.1:4317\"\n",
                "traces.endpoint",
            ),
            ("[traces]\nqueue_size = 0\n", "traces.queue_size"),
            ("[traces]\nprotocol = \"http/json\"\n", "protocol"),
            ("[metrics]\naddress = \"localhost\"\n", "metrics.address"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(key), "{text}: {err}");
        }
    }
}
