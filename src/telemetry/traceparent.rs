//! Continues the caller's trace: a tower layer in front of the gRPC services that reads the
//! W3C `traceparent`/`tracestate` headers and makes the remote span the current OpenTelemetry
//! context while the request is served, so the RPC span becomes its child.

use std::task::{Context as TaskContext, Poll};

use hyper::http;

use opentelemetry::Context;
use opentelemetry::context::{FutureExt, WithContext};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry_http::HeaderExtractor;
use opentelemetry_sdk::propagation::TraceContextPropagator;

/// The caller's trace context in `headers`; an empty context without (valid) headers.
pub fn extract(headers: &http::HeaderMap) -> Context {
    TraceContextPropagator::new().extract(&HeaderExtractor(headers))
}

/// Wraps a service in [`TraceParent`].
#[derive(Debug, Clone, Copy, Default)]
pub struct TraceParentLayer;

impl<S> tower::Layer<S> for TraceParentLayer {
    type Service = TraceParent<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TraceParent { inner }
    }
}

/// Serves each request inside the trace context its headers carry.
#[derive(Debug, Clone)]
pub struct TraceParent<S> {
    inner: S,
}

impl<S, B> tower::Service<http::Request<B>> for TraceParent<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = WithContext<S::Future>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let parent = extract(request.headers());
        self.inner.call(request).with_context(parent)
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::TraceContextExt;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> http::HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| {
                (
                    http::HeaderName::from_static(name),
                    http::HeaderValue::from_static(value),
                )
            })
            .collect()
    }

    #[test]
    fn traceparent_header_becomes_the_remote_parent() {
        let cx = extract(&headers(&[(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )]));
        let span = cx.span();
        let remote = span.span_context();
        assert!(remote.is_valid());
        assert!(remote.is_remote());
        assert!(remote.is_sampled());
        assert_eq!(
            remote.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(remote.span_id().to_string(), "00f067aa0ba902b7");
    }

    #[test]
    fn missing_or_malformed_traceparent_gives_no_parent() {
        assert!(!extract(&headers(&[])).span().span_context().is_valid());
        for bad in [
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            let cx = extract(&headers(&[("traceparent", bad)]));
            assert!(!cx.span().span_context().is_valid(), "{bad}");
        }
    }
}
