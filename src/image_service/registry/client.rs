//! The registry client: manifests and blobs over the OCI distribution API, through mirrors
//! and upstream, with authentication, size limits, digest checks and stall timeouts.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use reqwest::Url;
use reqwest::header::{ACCEPT, CONTENT_TYPE, WWW_AUTHENTICATE};
use tracing::Instrument;

use super::auth::{
    Authorization, CacheKey, Challenge, Credentials, DEFAULT_TOKEN_LIFETIME, Scheme, TokenCache,
    TokenResponse, form_encode, parse_www_authenticate,
};
use super::body::{BlobStream, Exchange, read_limited};
use super::endpoints::{Endpoint, Endpoints};
use super::error::{RegistryError, Target};
use crate::config::RegistryConfig;
use crate::image_service::digest::{Digest, Hasher};
use crate::image_service::reference::Reference;

/// The largest manifest or index accepted; larger bodies are refused while reading.
pub const MAX_MANIFEST_SIZE: usize = 4 << 20;

/// The largest token-service response accepted.
pub const MAX_TOKEN_RESPONSE_SIZE: usize = 1 << 20;

/// The most redirects followed for one request.
pub const MAX_REDIRECTS: usize = 10;

/// What `Accept` says when the caller names no media types: OCI and Docker manifests and
/// indexes.
pub const DEFAULT_MANIFEST_ACCEPT: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// The OAuth2 client id sent when exchanging an identity token.
const OAUTH_CLIENT_ID: &str = "carrack";

/// How the client behaves on the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    /// The `User-Agent` header.
    pub user_agent: String,
    /// How long to wait for a TCP (and TLS) connection.
    pub connect_timeout: Duration,
    /// How long a response may go without progress: waiting for headers (after the
    /// connection is up) or for the next chunk of a body. Default 60 s.
    pub stall_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            user_agent: format!("carrack/{}", env!("CARGO_PKG_VERSION")),
            connect_timeout: Duration::from_secs(30),
            stall_timeout: Duration::from_secs(60),
        }
    }
}

/// A manifest or index as the registry served it, verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedManifest {
    /// Its media type (`Content-Type`, or the document's `mediaType` when the header is
    /// missing or generic).
    pub media_type: String,
    /// The digest of `bytes`: the reference's digest when it pinned one (and the bytes were
    /// checked against it), else their SHA-256.
    pub digest: Digest,
    /// The document, at most [`MAX_MANIFEST_SIZE`] bytes.
    pub bytes: Bytes,
    /// The endpoint that served it.
    pub endpoint: String,
}

/// A client for the OCI distribution API, shared by all pulls of a node.
#[derive(Debug)]
pub struct RegistryClient {
    http: reqwest::Client,
    endpoints: Endpoints,
    options: ClientOptions,
    tokens: TokenCache,
}

type Attempt<'a, T> = Pin<Box<dyn Future<Output = Result<T, RegistryError>> + Send + 'a>>;

impl RegistryClient {
    /// Builds the client over the mirror table; a malformed mirror endpoint is an error.
    pub fn new(config: &RegistryConfig, options: ClientOptions) -> Result<Self, RegistryError> {
        // Another part of the process may have installed it first; either way there is one.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let redirects = reqwest::redirect::Policy::custom(|attempt| {
            if attempt.previous().len() > MAX_REDIRECTS {
                attempt.error("too many redirects")
            } else if !matches!(attempt.url().scheme(), "http" | "https") {
                attempt.error("redirect to a URL that is neither http nor https")
            } else {
                // reqwest drops `Authorization` when the redirect leaves the origin.
                attempt.follow()
            }
        });
        let http = reqwest::Client::builder()
            .user_agent(options.user_agent.clone())
            .connect_timeout(options.connect_timeout)
            .redirect(redirects)
            .referer(false)
            .build()
            .map_err(|cause| RegistryError::Client { cause })?;
        Ok(Self {
            http,
            endpoints: Endpoints::from_config(config)?,
            options,
            tokens: TokenCache::default(),
        })
    }

    /// The endpoints tried for `registry`, in order.
    pub fn endpoints(&self, registry: &str) -> Result<Vec<Endpoint>, RegistryError> {
        self.endpoints.for_registry(registry)
    }

    /// Fetches the manifest or index `reference` names (its digest if pinned, else its tag),
    /// asking for the media types in `accept` (or [`DEFAULT_MANIFEST_ACCEPT`] when empty).
    ///
    /// The bytes are checked against the reference's digest and against the
    /// `Docker-Content-Digest` header when present; a mismatch is refused.
    pub async fn fetch_manifest(
        &self,
        reference: &Reference,
        accept: &[&str],
        credentials: Option<&Credentials>,
    ) -> Result<FetchedManifest, RegistryError> {
        let accept = if accept.is_empty() {
            DEFAULT_MANIFEST_ACCEPT.join(", ")
        } else {
            accept.join(", ")
        };
        let target = Target::Manifest(reference.manifest_reference());
        let accept = accept.as_str();
        self.try_endpoints(reference, &target, credentials, |endpoint, credentials| {
            Box::pin(self.manifest_from(endpoint, reference, accept, credentials))
        })
        .await
    }

    /// Starts downloading blob `digest` of `reference`'s repository. The caller hashes the
    /// stream and compares with `digest` (and the expected size) as it consumes it.
    pub async fn fetch_blob(
        &self,
        reference: &Reference,
        digest: &Digest,
        credentials: Option<&Credentials>,
    ) -> Result<BlobStream, RegistryError> {
        let target = Target::Blob(digest.clone());
        self.try_endpoints(reference, &target, credentials, |endpoint, credentials| {
            Box::pin(async move {
                let (response, exchange) = self
                    .blob_response(&endpoint, reference, digest, credentials)
                    .await?;
                Ok(BlobStream::new(
                    response,
                    self.options.stall_timeout,
                    exchange,
                ))
            })
        })
        .await
    }

    /// Downloads a small blob (an image config) of at most `max` bytes whole, and checks its
    /// digest. A larger body is refused while reading.
    pub async fn fetch_blob_bytes(
        &self,
        reference: &Reference,
        digest: &Digest,
        credentials: Option<&Credentials>,
        max: usize,
    ) -> Result<Bytes, RegistryError> {
        let target = Target::Blob(digest.clone());
        self.try_endpoints(reference, &target, credentials, |endpoint, credentials| {
            Box::pin(async move {
                let (response, exchange) = self
                    .blob_response(&endpoint, reference, digest, credentials)
                    .await?;
                let bytes =
                    read_limited(response, max, self.options.stall_timeout, &exchange).await?;
                let actual = digest_with(digest, &bytes);
                if actual != *digest {
                    return Err(exchange.mismatch(digest.clone(), actual));
                }
                Ok(bytes)
            })
        })
        .await
    }

    /// Runs `attempt` against each endpoint of the reference's registry in order, until one
    /// succeeds or an error says trying further is pointless.
    async fn try_endpoints<'a, T>(
        &'a self,
        reference: &'a Reference,
        target: &Target,
        credentials: Option<&'a Credentials>,
        attempt: impl Fn(Endpoint, Option<&'a Credentials>) -> Attempt<'a, T>,
    ) -> Result<T, RegistryError> {
        reference.validate()?;
        let endpoints = self.endpoints.for_registry(&reference.registry)?;
        let mut failures = Vec::new();
        for endpoint in endpoints {
            let name = endpoint.to_string();
            let credentials = credentials
                .filter(|credentials| credentials.applies_to(&endpoint, &reference.registry));
            match attempt(endpoint, credentials).await {
                Ok(value) => return Ok(value),
                Err(err) if !err.try_next_endpoint() => return Err(err),
                Err(err) => {
                    tracing::debug!(endpoint = %name, %target, error = %err, "registry endpoint failed");
                    failures.push(err);
                }
            }
        }
        Err(RegistryError::from_attempts(
            &reference.name(),
            target,
            failures,
        ))
    }

    async fn manifest_from(
        &self,
        endpoint: Endpoint,
        reference: &Reference,
        accept: &str,
        credentials: Option<&Credentials>,
    ) -> Result<FetchedManifest, RegistryError> {
        let name = reference.manifest_reference();
        let exchange = Exchange {
            endpoint: endpoint.to_string(),
            repository: reference.name(),
            target: Target::Manifest(name.clone()),
        };
        let url = endpoint.url(&reference.repository, &format!("manifests/{name}"));
        let response = self
            .get(
                &endpoint,
                reference,
                &exchange,
                credentials,
                url,
                Some(accept),
            )
            .await?;
        let stall = self.options.stall_timeout;
        if !response.status().is_success() {
            return Err(exchange.status_error(response, stall, false).await);
        }
        let content_type = header_text(&response, CONTENT_TYPE.as_str());
        let announced = header_text(&response, "docker-content-digest");
        let bytes = read_limited(response, MAX_MANIFEST_SIZE, stall, &exchange).await?;

        if let Some(announced) = announced {
            match announced.parse::<Digest>() {
                Ok(announced) => {
                    let actual = digest_with(&announced, &bytes);
                    if actual != announced {
                        return Err(exchange.mismatch(announced, actual));
                    }
                }
                Err(err) => {
                    tracing::debug!(endpoint = %exchange.endpoint, error = %err, "ignoring unusable Docker-Content-Digest");
                }
            }
        }
        let digest = match &reference.digest {
            Some(expected) => {
                let actual = digest_with(expected, &bytes);
                if actual != *expected {
                    return Err(exchange.mismatch(expected.clone(), actual));
                }
                actual
            }
            None => Digest::sha256_of(&bytes),
        };
        let media_type = media_type(content_type.as_deref(), &bytes)
            .ok_or_else(|| exchange.protocol("the manifest has no media type"))?;
        Ok(FetchedManifest {
            media_type,
            digest,
            bytes,
            endpoint: exchange.endpoint,
        })
    }

    /// A successful response for a blob, or the error.
    async fn blob_response(
        &self,
        endpoint: &Endpoint,
        reference: &Reference,
        digest: &Digest,
        credentials: Option<&Credentials>,
    ) -> Result<(reqwest::Response, Exchange), RegistryError> {
        let exchange = Exchange {
            endpoint: endpoint.to_string(),
            repository: reference.name(),
            target: Target::Blob(digest.clone()),
        };
        let url = endpoint.url(&reference.repository, &format!("blobs/{digest}"));
        let response = self
            .get(endpoint, reference, &exchange, credentials, url, None)
            .await?;
        if !response.status().is_success() {
            let stall = self.options.stall_timeout;
            return Err(exchange.status_error(response, stall, false).await);
        }
        Ok((response, exchange))
    }

    /// GETs `url`, answering authentication challenges: returns any response but 401/403,
    /// which become [`RegistryError::Denied`].
    async fn get(
        &self,
        endpoint: &Endpoint,
        reference: &Reference,
        exchange: &Exchange,
        credentials: Option<&Credentials>,
        url: Url,
        accept: Option<&str>,
    ) -> Result<reqwest::Response, RegistryError> {
        let stall = self.options.stall_timeout;
        let key = CacheKey {
            origin: endpoint.origin(),
            scope: format!("repository:{}:pull", reference.repository),
            credentials: credentials
                .map(Credentials::fingerprint)
                .unwrap_or_default(),
        };
        let mut authorization = self.tokens.token(&key).or_else(|| {
            credentials
                .filter(|_| self.tokens.wants_basic(&key.origin))
                .and_then(Credentials::basic)
        });
        let mut challenged = false;
        loop {
            let mut request = self.http.get(url.clone());
            if let Some(accept) = accept {
                request = request.header(ACCEPT, accept);
            }
            if let Some(authorization) = &authorization {
                request = authorization.apply(request);
            }
            let response = self.send(exchange, request).await?;
            let status = response.status().as_u16();
            if status != 401 || challenged {
                if status == 401 || status == 403 {
                    let authenticated = authorization.is_some();
                    return Err(exchange.status_error(response, stall, authenticated).await);
                }
                return Ok(response);
            }
            challenged = true;
            self.tokens.forget(&key);
            let challenges: Vec<Challenge> = response
                .headers()
                .get_all(WWW_AUTHENTICATE)
                .iter()
                .filter_map(|value| value.to_str().ok())
                .flat_map(parse_www_authenticate)
                .collect();
            let bearer = challenges.iter().find(|c| c.scheme == Scheme::Bearer);
            let basic = challenges.iter().any(|c| c.scheme == Scheme::Basic);
            authorization = match (bearer, credentials.and_then(Credentials::basic)) {
                (Some(challenge), _) => {
                    drop(response);
                    Some(
                        self.bearer_token(endpoint, exchange, credentials, challenge, &key)
                            .instrument(tracing::info_span!("pull.token"))
                            .await?,
                    )
                }
                (None, Some(basic_auth)) if basic => {
                    self.tokens.note_basic(&key.origin);
                    Some(basic_auth)
                }
                _ => {
                    let authenticated = authorization.is_some();
                    return Err(exchange.status_error(response, stall, authenticated).await);
                }
            };
        }
    }

    /// Answers a `Bearer` challenge: the caller's registry token as is, or a token from the
    /// realm (anonymous, basic auth, or an OAuth2 refresh-token exchange), cached.
    async fn bearer_token(
        &self,
        endpoint: &Endpoint,
        exchange: &Exchange,
        credentials: Option<&Credentials>,
        challenge: &Challenge,
        key: &CacheKey,
    ) -> Result<Authorization, RegistryError> {
        if let Some(token) = credentials.and_then(|c| c.registry_token.as_deref()) {
            let authorization = Authorization::bearer(token).ok_or_else(|| {
                exchange.protocol("the registry token is not a valid header value")
            })?;
            // Keyed by the credentials' fingerprint, so only this caller's pulls reuse it.
            self.tokens
                .store(key.clone(), authorization.clone(), DEFAULT_TOKEN_LIFETIME);
            return Ok(authorization);
        }
        let realm = challenge
            .param("realm")
            .ok_or_else(|| exchange.protocol("bearer challenge without a realm"))?;
        let realm = Url::parse(realm)
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https") && url.username().is_empty())
            .ok_or_else(|| exchange.protocol("the bearer realm is not an http(s) URL"))?;
        let mut realm_name = realm.clone();
        realm_name.set_query(None);
        let realm_exchange = Exchange {
            endpoint: realm_name.to_string(),
            ..exchange.clone()
        };
        let wrap = |source: RegistryError| RegistryError::Token {
            endpoint: exchange.endpoint.clone(),
            realm: realm_exchange.endpoint.clone(),
            source: Box::new(source),
        };

        // Secrets go to the realm the registry names, but never from HTTPS down to HTTP.
        let credentials =
            credentials.filter(|_| realm.scheme() == "https" || endpoint.scheme() == "http");
        let mut scopes = vec![key.scope.clone()];
        if let Some(scope) = challenge.param("scope")
            && scope != key.scope
        {
            scopes.push(scope.to_owned());
        }
        let service = challenge.param("service");

        let refresh = credentials.and_then(|c| c.identity_token.as_deref());
        let basic = credentials.and_then(Credentials::basic);
        let request = if let Some(refresh) = refresh {
            let scope = scopes.join(" ");
            let mut pairs = vec![
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh),
                ("client_id", OAUTH_CLIENT_ID),
                ("scope", scope.as_str()),
            ];
            if let Some(service) = service {
                pairs.push(("service", service));
            }
            self.http
                .post(realm.clone())
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(form_encode(&pairs))
        } else {
            let mut url = realm.clone();
            {
                let mut query = url.query_pairs_mut();
                if let Some(service) = service {
                    query.append_pair("service", service);
                }
                for scope in &scopes {
                    query.append_pair("scope", scope);
                }
                if let Some(account) = credentials.and_then(Credentials::account) {
                    query.append_pair("account", account);
                }
            }
            let request = self.http.get(url);
            match &basic {
                Some(basic) => basic.apply(request),
                None => request,
            }
        };
        let authenticated = refresh.is_some() || basic.is_some();

        let stall = self.options.stall_timeout;
        let response = self.send(&realm_exchange, request).await.map_err(wrap)?;
        if !response.status().is_success() {
            return Err(wrap(
                realm_exchange
                    .status_error(response, stall, authenticated)
                    .await,
            ));
        }
        let body = read_limited(response, MAX_TOKEN_RESPONSE_SIZE, stall, &realm_exchange)
            .await
            .map_err(wrap)?;
        let (token, lifetime) = serde_json::from_slice::<TokenResponse>(&body)
            .ok()
            .and_then(TokenResponse::into_token)
            .ok_or_else(|| wrap(realm_exchange.protocol("the token response holds no token")))?;
        let authorization = Authorization::bearer(&token).ok_or_else(|| {
            wrap(realm_exchange.protocol("the token is not a valid header value"))
        })?;
        self.tokens
            .store(key.clone(), authorization.clone(), lifetime);
        Ok(authorization)
    }

    /// Sends a request, waiting at most the connect timeout plus the stall timeout for the
    /// response headers.
    async fn send(
        &self,
        exchange: &Exchange,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, RegistryError> {
        let budget = self.options.connect_timeout + self.options.stall_timeout;
        match tokio::time::timeout(budget, request.send()).await {
            Err(_) => Err(exchange.timeout(budget)),
            Ok(Err(cause)) => Err(exchange.transport(cause, self.options.connect_timeout)),
            Ok(Ok(response)) => Ok(response),
        }
    }
}

/// The digest of `bytes` with the algorithm of `like`.
fn digest_with(like: &Digest, bytes: &[u8]) -> Digest {
    let mut hasher = Hasher::new(like.algorithm());
    hasher.update(bytes);
    hasher.finish()
}

fn header_text(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(|value| value.trim().to_owned())
}

/// The media type from `Content-Type` (parameters dropped), or from the document's
/// `mediaType` when the header is absent or generic.
fn media_type(content_type: Option<&str>, bytes: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Document {
        #[serde(rename = "mediaType", default)]
        media_type: Option<String>,
    }
    let valid = |text: &str| {
        !text.is_empty()
            && text.len() <= 255
            && text.contains('/')
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-/".contains(&b))
    };
    let header = content_type
        .and_then(|value| value.split(';').next())
        .map(|value| value.trim().to_ascii_lowercase())
        .filter(|value| valid(value));
    let generic = |value: &str| {
        matches!(
            value,
            "application/json" | "text/plain" | "application/octet-stream"
        )
    };
    match header {
        Some(value) if !generic(&value) => Some(value),
        header => serde_json::from_slice::<Document>(bytes)
            .ok()
            .and_then(|document| document.media_type)
            .filter(|value| valid(value))
            .or(header),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_type_sources() {
        let oci = "application/vnd.oci.image.manifest.v1+json";
        let doc = format!(r#"{{"mediaType":"{oci}"}}"#);
        assert_eq!(media_type(Some(oci), b"{}").as_deref(), Some(oci));
        assert_eq!(
            media_type(Some(&format!("{oci}; charset=utf-8")), b"{}").as_deref(),
            Some(oci)
        );
        assert_eq!(
            media_type(Some("application/json"), doc.as_bytes()).as_deref(),
            Some(oci)
        );
        assert_eq!(media_type(None, doc.as_bytes()).as_deref(), Some(oci));
        assert_eq!(
            media_type(Some("application/json"), b"{}").as_deref(),
            Some("application/json")
        );
        assert_eq!(media_type(None, b"{}"), None);
        assert_eq!(media_type(None, br#"{"mediaType":"bad type\n"}"#), None);
    }
}
