//! Registry authentication: pull credentials, `WWW-Authenticate` challenges and the cache of
//! bearer tokens.
//!
//! The flow (Docker's token protocol) is: request anonymously; on 401 read the challenge;
//! `Basic` → repeat with the credentials; `Bearer realm=…,service=…,scope=…` → get a token
//! from the realm (with the credentials, if any) and repeat with it. Tokens are cached per
//! endpoint, scope and credentials, so one pod's pull secret never lends its token to another
//! pull. Secrets never reach a log: [`Credentials`] and the cache redact them in `Debug`.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::header::HeaderValue;
use sha2::Digest as _;

use super::endpoints::{Endpoint, same_registry};

/// How long a token lives when the token service does not say (`expires_in`).
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

/// A token this close to expiry is not reused.
const EXPIRY_MARGIN: Duration = Duration::from_secs(5);

/// At most this many tokens are cached; past it, expired ones go, then everything.
const MAX_CACHED_TOKENS: usize = 1024;

/// Pull credentials, as CRI's `AuthConfig` carries them. Empty strings mean absent.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// User name for basic auth (and the `account` of token requests).
    pub username: Option<String>,
    /// Password for basic auth.
    pub password: Option<String>,
    /// Base64 of `user:password`, used when `username` is absent.
    pub auth: Option<String>,
    /// The registry these credentials are for (`docker.io`, `https://index.docker.io/v1/`,
    /// `registry.example.com:5000`). When set, they are only sent to that registry's upstream
    /// and to a mirror whose host it names; when absent, only to the upstream of the image's
    /// registry, never to mirrors.
    pub server_address: Option<String>,
    /// An OAuth2 refresh token, exchanged at the realm for an access token.
    pub identity_token: Option<String>,
    /// A bearer token sent to the registry as is.
    pub registry_token: Option<String>,
}

impl Credentials {
    /// Builds credentials from CRI `AuthConfig` fields, `None` when all are empty.
    pub fn from_auth_config(
        username: &str,
        password: &str,
        auth: &str,
        server_address: &str,
        identity_token: &str,
        registry_token: &str,
    ) -> Option<Self> {
        let some = |value: &str| (!value.is_empty()).then(|| value.to_owned());
        let credentials = Self {
            username: some(username),
            password: some(password),
            auth: some(auth.trim()),
            server_address: some(server_address.trim()),
            identity_token: some(identity_token),
            registry_token: some(registry_token),
        };
        credentials.has_secret().then_some(credentials)
    }

    /// Whether there is anything to authenticate with.
    pub fn has_secret(&self) -> bool {
        self.username.is_some()
            || self.auth.is_some()
            || self.identity_token.is_some()
            || self.registry_token.is_some()
    }

    /// Whether these credentials may be sent to `endpoint` while pulling from `registry`.
    pub(super) fn applies_to(&self, endpoint: &Endpoint, registry: &str) -> bool {
        match self.server_host() {
            Some(server) if endpoint.is_mirror() => server == endpoint.host(),
            Some(server) => same_registry(&server, registry) || server == endpoint.host(),
            None => !endpoint.is_mirror(),
        }
    }

    /// The `host[:port]` of `server_address`, lowercase.
    fn server_host(&self) -> Option<String> {
        let address = self.server_address.as_deref()?;
        let rest = address
            .strip_prefix("https://")
            .or_else(|| address.strip_prefix("http://"))
            .unwrap_or(address);
        let host = rest.split('/').next().unwrap_or_default();
        (!host.is_empty()).then(|| host.to_ascii_lowercase())
    }

    /// The `Authorization: Basic` value, from `username`/`password` or `auth`.
    pub(super) fn basic(&self) -> Option<Authorization> {
        if let Some(username) = &self.username {
            return Some(Authorization::Basic {
                username: username.clone(),
                password: self.password.clone().unwrap_or_default(),
            });
        }
        let auth = self.auth.as_deref()?;
        let base64 = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=');
        if !auth.bytes().all(base64) {
            return None;
        }
        let mut value = HeaderValue::from_str(&format!("Basic {auth}")).ok()?;
        value.set_sensitive(true);
        Some(Authorization::Header(value))
    }

    /// The user name for token requests' `account` parameter.
    pub(super) fn account(&self) -> Option<&str> {
        self.username.as_deref()
    }

    /// A hash standing for the secret parts, to key cached tokens by credentials without
    /// keeping the secrets themselves in the key.
    pub(super) fn fingerprint(&self) -> String {
        let mut hasher = sha2::Sha256::new();
        for part in [
            &self.username,
            &self.password,
            &self.auth,
            &self.identity_token,
            &self.registry_token,
        ] {
            let part = part.as_deref().unwrap_or_default();
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part.as_bytes());
        }
        hex::encode(hasher.finalize())
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |value: &Option<String>| value.as_ref().map(|_| "<redacted>");
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &redacted(&self.password))
            .field("auth", &redacted(&self.auth))
            .field("server_address", &self.server_address)
            .field("identity_token", &redacted(&self.identity_token))
            .field("registry_token", &redacted(&self.registry_token))
            .finish()
    }
}

/// What goes into a request's `Authorization` header.
#[derive(Clone, PartialEq, Eq)]
pub(super) enum Authorization {
    /// Basic auth from a user name and password (reqwest encodes it, marked sensitive).
    Basic { username: String, password: String },
    /// A ready header value (`Basic <base64>` or `Bearer <token>`), marked sensitive.
    Header(HeaderValue),
}

impl Authorization {
    /// `Bearer <token>`, or `None` if the token cannot be a header value.
    pub(super) fn bearer(token: &str) -> Option<Self> {
        let mut value = HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
        value.set_sensitive(true);
        Some(Self::Header(value))
    }

    /// Adds the header to a request.
    pub(super) fn apply(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Self::Basic { username, password } => request.basic_auth(username, Some(password)),
            Self::Header(value) => request.header(reqwest::header::AUTHORIZATION, value.clone()),
        }
    }
}

impl fmt::Debug for Authorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Authorization(<redacted>)")
    }
}

/// The scheme of a challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scheme {
    /// `Basic`: send the user name and password.
    Basic,
    /// `Bearer`: get a token from the realm.
    Bearer,
    /// Anything else (lowercased), which this client cannot answer.
    Other(String),
}

/// One challenge of a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The auth scheme.
    pub scheme: Scheme,
    /// The parameters, names lowercased, values unquoted.
    pub params: Vec<(String, String)>,
}

impl Challenge {
    /// The value of parameter `name` (lowercase).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Parses a `WWW-Authenticate` value (RFC 9110 §11.6.1): one or more challenges, each a
/// scheme followed by `name=value` parameters (values plain or quoted) or a token68.
/// Malformed tails are dropped rather than failing the whole header.
pub fn parse_www_authenticate(header: &str) -> Vec<Challenge> {
    let mut parser = Parser {
        text: header.as_bytes(),
        pos: 0,
    };
    let mut challenges = Vec::new();
    loop {
        parser.skip_separators();
        let Some(scheme) = parser.token() else {
            break;
        };
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "basic" => Scheme::Basic,
            "bearer" => Scheme::Bearer,
            other => Scheme::Other(other.to_owned()),
        };
        let mut params = Vec::new();
        loop {
            parser.skip_spaces();
            let start = parser.pos;
            let Some(name) = parser.token() else {
                // A token68 (`Negotiate abc==`) or junk: skip to the next comma.
                parser.skip_until_comma();
                break;
            };
            parser.skip_spaces();
            if !parser.eat(b'=') {
                // The next challenge's scheme.
                parser.pos = start;
                break;
            }
            parser.skip_spaces();
            let value = if parser.peek() == Some(b'"') {
                parser.quoted()
            } else {
                parser.token()
            };
            let Some(value) = value else {
                parser.skip_until_comma();
                break;
            };
            params.push((name.to_ascii_lowercase(), value));
            parser.skip_spaces();
            if !parser.eat(b',') {
                break;
            }
        }
        challenges.push(Challenge { scheme, params });
    }
    challenges
}

struct Parser<'a> {
    text: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        if self.peek() == Some(byte) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn skip_spaces(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn skip_separators(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
            self.pos += 1;
        }
    }

    fn skip_until_comma(&mut self) {
        while let Some(byte) = self.peek() {
            if byte == b',' {
                break;
            }
            self.pos += 1;
        }
    }

    /// An RFC 9110 token (`tchar`s).
    fn token(&mut self) -> Option<String> {
        let start = self.pos;
        while let Some(byte) = self.peek() {
            let tchar = byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte);
            if !tchar {
                break;
            }
            self.pos += 1;
        }
        (self.pos > start).then(|| String::from_utf8_lossy(&self.text[start..self.pos]).into())
    }

    /// A quoted string with `\` escapes; `None` if unterminated.
    fn quoted(&mut self) -> Option<String> {
        let start = self.pos;
        self.pos += 1;
        let mut value = Vec::new();
        while let Some(byte) = self.peek() {
            self.pos += 1;
            match byte {
                b'"' => return Some(String::from_utf8_lossy(&value).into()),
                b'\\' => {
                    if let Some(escaped) = self.peek() {
                        value.push(escaped);
                        self.pos += 1;
                    }
                }
                _ => value.push(byte),
            }
        }
        self.pos = start;
        self.skip_until_comma();
        None
    }
}

/// The JSON a token service answers with.
#[derive(Debug, serde::Deserialize)]
pub(super) struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

impl TokenResponse {
    /// The token (`token`, else `access_token`) and its lifetime.
    pub(super) fn into_token(self) -> Option<(String, Duration)> {
        let token = self
            .token
            .filter(|token| !token.is_empty())
            .or(self.access_token.filter(|token| !token.is_empty()))?;
        let lifetime = self
            .expires_in
            .and_then(|value| value.as_f64())
            .filter(|seconds| seconds.is_finite() && *seconds > 0.0)
            .map_or(DEFAULT_TOKEN_LIFETIME, |seconds| {
                Duration::from_secs_f64(seconds.min(86_400.0))
            });
        Some((token, lifetime))
    }
}

/// Who a cached authorization is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct CacheKey {
    /// `scheme://host:port` of the endpoint.
    pub origin: String,
    /// `repository:<name>:pull`.
    pub scope: String,
    /// [`Credentials::fingerprint`], empty when anonymous.
    pub credentials: String,
}

/// Bearer tokens by endpoint, scope and credentials, plus the endpoints known to want Basic.
#[derive(Default)]
pub(super) struct TokenCache {
    inner: Mutex<CacheInner>,
}

#[derive(Default)]
struct CacheInner {
    tokens: HashMap<CacheKey, (Authorization, Instant)>,
    basic_origins: std::collections::HashSet<String>,
}

impl TokenCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, CacheInner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A still-valid token for `key`.
    pub(super) fn token(&self, key: &CacheKey) -> Option<Authorization> {
        let now = Instant::now();
        let inner = self.lock();
        let (token, expires) = inner.tokens.get(key)?;
        (now + EXPIRY_MARGIN < *expires).then(|| token.clone())
    }

    /// Remembers a token for `lifetime`.
    pub(super) fn store(&self, key: CacheKey, token: Authorization, lifetime: Duration) {
        let now = Instant::now();
        let mut inner = self.lock();
        if inner.tokens.len() >= MAX_CACHED_TOKENS {
            inner.tokens.retain(|_, (_, expires)| *expires > now);
            if inner.tokens.len() >= MAX_CACHED_TOKENS {
                inner.tokens.clear();
            }
        }
        inner.tokens.insert(key, (token, now + lifetime));
    }

    /// Drops the token for `key` (it was refused).
    pub(super) fn forget(&self, key: &CacheKey) {
        self.lock().tokens.remove(key);
    }

    /// Whether `origin` answered with a Basic challenge before.
    pub(super) fn wants_basic(&self, origin: &str) -> bool {
        self.lock().basic_origins.contains(origin)
    }

    /// Notes that `origin` wants Basic, so later requests send it at once.
    pub(super) fn note_basic(&self, origin: &str) {
        let mut inner = self.lock();
        if inner.basic_origins.len() < MAX_CACHED_TOKENS {
            inner.basic_origins.insert(origin.to_owned());
        }
    }
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.lock();
        f.debug_struct("TokenCache")
            .field("tokens", &inner.tokens.len())
            .field("basic_origins", &inner.basic_origins)
            .finish()
    }
}

/// `application/x-www-form-urlencoded` text of `pairs` (the URL crate's encoder, reached
/// through reqwest's `Url` so that no other dependency is needed).
pub(super) fn form_encode(pairs: &[(&str, &str)]) -> String {
    match reqwest::Url::parse("http://form.invalid/") {
        Ok(mut url) => {
            url.query_pairs_mut().extend_pairs(pairs);
            url.query().unwrap_or_default().to_owned()
        }
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{MirrorConfig, RegistryConfig};
    use crate::image_service::registry::endpoints::Endpoints;

    fn params(challenge: &Challenge) -> Vec<(&str, &str)> {
        challenge
            .params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    #[test]
    fn parses_docker_hub_bearer_challenge() {
        let challenges = parse_www_authenticate(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        );
        assert_eq!(challenges.len(), 1);
        assert_eq!(challenges[0].scheme, Scheme::Bearer);
        assert_eq!(
            params(&challenges[0]),
            [
                ("realm", "https://auth.docker.io/token"),
                ("service", "registry.docker.io"),
                ("scope", "repository:library/busybox:pull"),
            ]
        );
    }

    #[test]
    fn parses_basic_and_case_and_spacing() {
        let challenges = parse_www_authenticate(r#"BASIC  Realm = "Registry Realm" "#);
        assert_eq!(challenges[0].scheme, Scheme::Basic);
        assert_eq!(challenges[0].param("realm"), Some("Registry Realm"));
        let challenges = parse_www_authenticate("basic");
        assert_eq!(challenges.len(), 1);
        assert_eq!(challenges[0].scheme, Scheme::Basic);
        assert!(challenges[0].params.is_empty());
    }

    #[test]
    fn commas_inside_quotes_and_escapes() {
        let challenges = parse_www_authenticate(
            r#"Bearer realm="https://r/t",scope="repository:a:pull,push",error="say \"hi\"""#,
        );
        assert_eq!(challenges.len(), 1);
        assert_eq!(challenges[0].param("scope"), Some("repository:a:pull,push"));
        assert_eq!(challenges[0].param("error"), Some(r#"say "hi""#));
    }

    #[test]
    fn several_challenges_in_one_header() {
        let challenges = parse_www_authenticate(
            r#"Negotiate abc==, Basic realm="x", Bearer realm="https://r/t", service=s"#,
        );
        let schemes: Vec<_> = challenges.iter().map(|c| c.scheme.clone()).collect();
        assert_eq!(
            schemes,
            [
                Scheme::Other("negotiate".into()),
                Scheme::Basic,
                Scheme::Bearer
            ]
        );
        assert_eq!(challenges[1].param("realm"), Some("x"));
        assert_eq!(challenges[2].param("realm"), Some("https://r/t"));
        assert_eq!(challenges[2].param("service"), Some("s"));
    }

    #[test]
    fn survives_garbage() {
        for junk in [
            "",
            ",,,",
            "=",
            "Bearer realm=",
            "Bearer realm=\"unterminated",
            "Bearer ===",
            "Bearer realm=\"a\" junk junk",
            "\u{0}\u{1}",
            "Bearer réalm=\"x\"",
        ] {
            let _ = parse_www_authenticate(junk);
        }
        let challenges = parse_www_authenticate("Bearer realm=\"unterminated, service=x");
        assert_eq!(challenges[0].scheme, Scheme::Bearer);
        assert_eq!(challenges[0].param("realm"), None);
    }

    #[test]
    fn credentials_debug_is_redacted() {
        let credentials = Credentials::from_auth_config(
            "bob",
            "hunter2",
            "Ym9iOmh1bnRlcjI=",
            "docker.io",
            "refresh-secret",
            "registry-secret",
        )
        .unwrap();
        let text = format!("{credentials:?}");
        for secret in [
            "hunter2",
            "Ym9iOmh1bnRlcjI=",
            "refresh-secret",
            "registry-secret",
        ] {
            assert!(!text.contains(secret), "{text}");
        }
        assert!(text.contains("bob"), "{text}");
        let header = credentials.basic().unwrap();
        assert!(!format!("{header:?}").contains("hunter2"));
    }

    #[test]
    fn empty_auth_config_is_no_credentials() {
        assert_eq!(
            Credentials::from_auth_config("", "", "", "docker.io", "", ""),
            None
        );
        let only_auth = Credentials::from_auth_config("", "", "Ym9iOng=", "", "", "").unwrap();
        assert!(matches!(only_auth.basic(), Some(Authorization::Header(_))));
        let bad_auth = Credentials::from_auth_config("", "", "not base64!\n", "", "", "").unwrap();
        assert!(bad_auth.basic().is_none());
    }

    #[test]
    fn credentials_go_only_where_they_belong() {
        let mut config = RegistryConfig::default();
        config.mirrors.insert(
            "docker.io".to_owned(),
            MirrorConfig {
                endpoints: vec!["https://mirror.example.com:5000".to_owned()],
                use_upstream: true,
            },
        );
        let endpoints = Endpoints::from_config(&config)
            .unwrap()
            .for_registry("docker.io")
            .unwrap();
        let (mirror, upstream) = (&endpoints[0], &endpoints[1]);
        let with_server = |server: &str| Credentials {
            username: Some("u".into()),
            server_address: (!server.is_empty()).then(|| server.to_owned()),
            ..Credentials::default()
        };
        let anywhere = with_server("");
        assert!(anywhere.applies_to(upstream, "docker.io"));
        assert!(!anywhere.applies_to(mirror, "docker.io"));
        for hub in [
            "docker.io",
            "https://index.docker.io/v1/",
            "registry-1.docker.io",
        ] {
            assert!(with_server(hub).applies_to(upstream, "docker.io"), "{hub}");
            assert!(!with_server(hub).applies_to(mirror, "docker.io"), "{hub}");
        }
        let for_mirror = with_server("https://Mirror.example.com:5000");
        assert!(for_mirror.applies_to(mirror, "docker.io"));
        assert!(!for_mirror.applies_to(upstream, "docker.io"));
        assert!(!with_server("quay.io").applies_to(upstream, "docker.io"));
    }

    #[test]
    fn token_response_forms() {
        let parse = |json: &str| {
            serde_json::from_str::<TokenResponse>(json)
                .unwrap()
                .into_token()
        };
        assert_eq!(
            parse(r#"{"token":"a","expires_in":300}"#),
            Some(("a".into(), Duration::from_secs(300)))
        );
        assert_eq!(
            parse(r#"{"access_token":"b"}"#),
            Some(("b".into(), DEFAULT_TOKEN_LIFETIME))
        );
        assert_eq!(
            parse(r#"{"token":"","access_token":"c","expires_in":-1}"#),
            Some(("c".into(), DEFAULT_TOKEN_LIFETIME))
        );
        assert_eq!(parse(r#"{"token":""}"#), None);
        assert_eq!(parse("{}"), None);
    }

    #[test]
    fn token_cache_expires_and_is_keyed_by_credentials() {
        let cache = TokenCache::default();
        let key = |credentials: &str| CacheKey {
            origin: "https://r".into(),
            scope: "repository:a:pull".into(),
            credentials: credentials.into(),
        };
        let token = Authorization::bearer("t").unwrap();
        cache.store(key(""), token.clone(), Duration::from_secs(60));
        assert_eq!(cache.token(&key("")), Some(token.clone()));
        assert_eq!(cache.token(&key("other")), None);
        cache.store(key("x"), token, Duration::from_secs(1));
        assert_eq!(cache.token(&key("x")), None, "inside the expiry margin");
        cache.forget(&key(""));
        assert_eq!(cache.token(&key("")), None);
        assert!(!format!("{cache:?}").contains("Bearer"));
    }

    #[test]
    fn form_encoding() {
        assert_eq!(
            form_encode(&[("a", "b c"), ("scope", "repository:x/y:pull"), ("t", "&=+")]),
            "a=b+c&scope=repository%3Ax%2Fy%3Apull&t=%26%3D%2B"
        );
    }
}
