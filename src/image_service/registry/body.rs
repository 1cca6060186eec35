//! Reading response bodies: bounded reads for small documents and the streaming blob body,
//! both aborted when the data stops coming for the stall timeout.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use tokio::io::AsyncRead;
use tokio::time::{Instant, Sleep};

use super::error::{RegistryError, Target};

/// Most of an error body that is read, to find the registry's explanation.
const MAX_ERROR_BODY: usize = 1 << 20;

/// The longest wait for the next chunk of an error body.
const MAX_ERROR_BODY_STALL: Duration = Duration::from_secs(10);

/// Most of a registry's explanation that goes into an error message.
const MAX_DETAIL: usize = 300;

/// Who an HTTP exchange was with and about, for building errors.
#[derive(Debug, Clone)]
pub(super) struct Exchange {
    /// The endpoint (or realm) spoken to.
    pub endpoint: String,
    /// The repository.
    pub repository: String,
    /// What was requested.
    pub target: Target,
}

impl Exchange {
    /// A failed send or body read.
    pub(super) fn transport(&self, cause: reqwest::Error, waited: Duration) -> RegistryError {
        if cause.is_timeout() {
            return self.timeout(waited);
        }
        RegistryError::Transport {
            endpoint: self.endpoint.clone(),
            repository: self.repository.clone(),
            target: self.target.clone(),
            cause: cause.without_url(),
        }
    }

    /// No response in time.
    pub(super) fn timeout(&self, waited: Duration) -> RegistryError {
        RegistryError::Timeout {
            endpoint: self.endpoint.clone(),
            repository: self.repository.clone(),
            target: self.target.clone(),
            waited,
        }
    }

    /// A body that stopped.
    pub(super) fn stalled(&self, stall: Duration) -> RegistryError {
        RegistryError::Stalled {
            endpoint: self.endpoint.clone(),
            repository: self.repository.clone(),
            target: self.target.clone(),
            stall,
        }
    }

    /// A body over `limit` bytes.
    pub(super) fn too_large(&self, limit: usize) -> RegistryError {
        RegistryError::TooLarge {
            endpoint: self.endpoint.clone(),
            repository: self.repository.clone(),
            target: self.target.clone(),
            limit: limit as u64,
        }
    }

    /// A protocol violation.
    pub(super) fn protocol(&self, reason: impl Into<String>) -> RegistryError {
        RegistryError::Protocol {
            endpoint: self.endpoint.clone(),
            repository: self.repository.clone(),
            target: self.target.clone(),
            reason: reason.into(),
        }
    }

    /// Bytes that hash to `actual` instead of `expected`.
    pub(super) fn mismatch(
        &self,
        expected: crate::image_service::digest::Digest,
        actual: crate::image_service::digest::Digest,
    ) -> RegistryError {
        RegistryError::DigestMismatch {
            endpoint: self.endpoint.clone(),
            repository: self.repository.clone(),
            expected,
            actual,
        }
    }

    /// The error for a non-success status, with the registry's explanation read from the
    /// body (bounded in size and time).
    pub(super) async fn status_error(
        &self,
        response: reqwest::Response,
        stall: Duration,
        authenticated: bool,
    ) -> RegistryError {
        let status = response.status().as_u16();
        let detail = error_detail(response, stall).await;
        let (endpoint, repository, target) = (
            self.endpoint.clone(),
            self.repository.clone(),
            self.target.clone(),
        );
        match status {
            404 => RegistryError::NotFound {
                endpoint,
                repository,
                target,
                detail,
            },
            401 | 403 => RegistryError::Denied {
                endpoint,
                repository,
                target,
                status,
                authenticated,
                detail,
            },
            _ => RegistryError::Status {
                endpoint,
                repository,
                target,
                status,
                detail,
            },
        }
    }
}

/// Reads a whole body of at most `limit` bytes, refusing a larger one as soon as the
/// `Content-Length` or the bytes received say so.
pub(super) async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
    stall: Duration,
    exchange: &Exchange,
) -> Result<Bytes, RegistryError> {
    if let Some(length) = response.content_length()
        && length > limit as u64
    {
        return Err(exchange.too_large(limit));
    }
    let capacity = response
        .content_length()
        .map_or(0, |length| usize::try_from(length).unwrap_or(limit));
    let mut body = BytesMut::with_capacity(capacity.min(limit));
    loop {
        let chunk = match tokio::time::timeout(stall, response.chunk()).await {
            Err(_) => return Err(exchange.stalled(stall)),
            Ok(Err(cause)) => return Err(exchange.transport(cause, stall)),
            Ok(Ok(None)) => break,
            Ok(Ok(Some(chunk))) => chunk,
        };
        if body.len() + chunk.len() > limit {
            return Err(exchange.too_large(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// `: CODE: message` from a registry error body (`{"errors":[{"code":…,"message":…}]}`),
/// or nothing. Non-JSON bodies (HTML error pages) are not repeated.
async fn error_detail(response: reqwest::Response, stall: Duration) -> String {
    #[derive(serde::Deserialize)]
    struct Body {
        #[serde(default)]
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    let exchange = Exchange {
        endpoint: String::new(),
        repository: String::new(),
        target: Target::Manifest(String::new()),
    };
    // The explanation is a courtesy: a failing endpoint gets less patience than a download.
    let stall = stall.min(MAX_ERROR_BODY_STALL);
    let Ok(bytes) = read_limited(response, MAX_ERROR_BODY, stall, &exchange).await else {
        return String::new();
    };
    let Ok(body) = serde_json::from_slice::<Body>(&bytes) else {
        return String::new();
    };
    let Some(first) = body.errors.first() else {
        return String::new();
    };
    let text = match (first.code.is_empty(), first.message.is_empty()) {
        (false, false) => format!("{}: {}", first.code, first.message),
        (false, true) => first.code.clone(),
        (true, _) => first.message.clone(),
    };
    // Registry text is untrusted: keep it short and on one line.
    let text: String = text.escape_debug().take(MAX_DETAIL).collect();
    if text.is_empty() {
        text
    } else {
        format!(": {text}")
    }
}

/// A blob's body as a stream of chunks.
///
/// Each chunk must arrive within the stall timeout of the consumer asking for it (time the
/// consumer spends elsewhere does not count); otherwise the stream yields
/// [`RegistryError::Stalled`] and ends. The bytes are not verified here: the consumer hashes
/// them as it goes and checks the digest (and size) at the end.
pub struct BlobStream {
    inner: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    timer: Pin<Box<Sleep>>,
    waiting: bool,
    done: bool,
    stall: Duration,
    content_length: Option<u64>,
    exchange: Exchange,
}

impl BlobStream {
    pub(super) fn new(response: reqwest::Response, stall: Duration, exchange: Exchange) -> Self {
        Self {
            content_length: response.content_length(),
            inner: Box::pin(response.bytes_stream()),
            timer: Box::pin(tokio::time::sleep(stall)),
            waiting: false,
            done: false,
            stall,
            exchange,
        }
    }

    /// The size the registry announced (`Content-Length`), if it did.
    pub fn content_length(&self) -> Option<u64> {
        self.content_length
    }

    /// The endpoint serving the blob.
    pub fn endpoint(&self) -> &str {
        &self.exchange.endpoint
    }

    /// The stream as an [`AsyncRead`]; errors become `std::io::Error`s wrapping the
    /// [`RegistryError`] (get it back with `get_ref`/`into_inner` and `downcast`).
    pub fn into_async_read(self) -> impl AsyncRead + Send + Unpin {
        tokio_util::io::StreamReader::new(self.map(|chunk| chunk.map_err(std::io::Error::other)))
    }
}

impl Stream for BlobStream {
    type Item = Result<Bytes, RegistryError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if !this.waiting {
            // The wait for this chunk starts now, when the consumer asks for it.
            this.timer.as_mut().reset(Instant::now() + this.stall);
            this.waiting = true;
        }
        loop {
            match this.inner.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) if chunk.is_empty() => continue,
                Poll::Ready(Some(Ok(chunk))) => {
                    this.waiting = false;
                    return Poll::Ready(Some(Ok(chunk)));
                }
                Poll::Ready(Some(Err(cause))) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(this.exchange.transport(cause, this.stall))));
                }
                Poll::Ready(None) => {
                    this.done = true;
                    return Poll::Ready(None);
                }
                Poll::Pending => break,
            }
        }
        match this.timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                this.done = true;
                Poll::Ready(Some(Err(this.exchange.stalled(this.stall))))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl fmt::Debug for BlobStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobStream")
            .field("endpoint", &self.exchange.endpoint)
            .field("repository", &self.exchange.repository)
            .field("target", &self.exchange.target)
            .field("content_length", &self.content_length)
            .field("stall", &self.stall)
            .finish_non_exhaustive()
    }
}
