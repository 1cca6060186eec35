//! URL minting: the absolute `http(s)://host:port/{exec,attach,portforward}/<token>` URLs the
//! CRI RPCs return, on the advertised host and the port the server really bound (port 0
//! resolved).

use std::sync::Arc;
use std::time::Duration;

use super::StreamingError;
use super::requests::{AttachRequest, ExecRequest, PendingRequest, PortForwardRequest};
use super::tokens::TokenCache;

/// Hands out streaming URLs; shared by the CRI layer (which mints) and the server (which
/// consumes the tokens).
#[derive(Debug, Clone)]
pub struct StreamingUrls {
    base: Arc<str>,
    pending: Arc<TokenCache<PendingRequest>>,
}

impl StreamingUrls {
    /// URLs on `host` (an IPv6 address in brackets) and `port`, `https` when `tls`; each
    /// token lives `ttl` unused.
    pub fn new(host: &str, port: u16, tls: bool, ttl: Duration) -> Self {
        let scheme = if tls { "https" } else { "http" };
        Self {
            base: format!("{scheme}://{host}:{port}").into(),
            pending: Arc::new(TokenCache::new(ttl)),
        }
    }

    /// The URL serving `request` (validated here).
    pub fn exec(&self, request: ExecRequest) -> Result<String, StreamingError> {
        request.streams.validate()?;
        if request.cmd.is_empty() {
            return Err(StreamingError::InvalidRequest {
                reason: "cmd is required",
            });
        }
        self.mint(PendingRequest::Exec(request))
    }

    /// The URL serving `request` (validated here).
    pub fn attach(&self, request: AttachRequest) -> Result<String, StreamingError> {
        request.streams.validate()?;
        self.mint(PendingRequest::Attach(request))
    }

    /// The URL serving `request`.
    pub fn port_forward(&self, request: PortForwardRequest) -> Result<String, StreamingError> {
        self.mint(PendingRequest::PortForward(request))
    }

    /// The request of `token`, once.
    pub(super) fn take(&self, token: &str) -> Option<PendingRequest> {
        self.pending.consume(token)
    }

    fn mint(&self, request: PendingRequest) -> Result<String, StreamingError> {
        let kind = request.kind();
        let token = self.pending.insert(request)?;
        Ok(format!("{}/{kind}/{token}", self.base))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::streaming::requests::StreamOptions;

    fn exec() -> ExecRequest {
        ExecRequest {
            container_id: "c1".to_owned(),
            cmd: vec!["ls".to_owned()],
            streams: StreamOptions {
                stdout: true,
                ..Default::default()
            },
        }
    }

    #[test]
    fn urls_are_absolute_and_name_the_kind() {
        let urls = StreamingUrls::new("127.0.0.1", 34567, false, Duration::from_secs(60));
        let url = urls.exec(exec()).unwrap();
        let token = url.strip_prefix("http://127.0.0.1:34567/exec/").unwrap();
        assert!(matches!(urls.take(token), Some(PendingRequest::Exec(_))));
        assert!(urls.take(token).is_none());

        let urls = StreamingUrls::new("[::1]", 443, true, Duration::from_secs(60));
        let url = urls
            .port_forward(PortForwardRequest {
                pod_id: "p".to_owned(),
                ports: vec![80],
            })
            .unwrap();
        assert!(url.starts_with("https://[::1]:443/portforward/"), "{url}");
    }

    #[test]
    fn invalid_requests_get_no_url() {
        let urls = StreamingUrls::new("127.0.0.1", 1, false, Duration::from_secs(1));
        let mut bad = exec();
        bad.cmd.clear();
        assert!(urls.exec(bad).is_err());
        let mut bad = exec();
        bad.streams.stdout = false;
        assert!(urls.exec(bad).is_err());
    }
}
