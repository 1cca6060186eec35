//! Docker's token authentication for the test registry: a signing key with a
//! self-signed certificate (the registry's `rootcertbundle`), ES256 JWTs in
//! the shape CNCF distribution 2.8 verifies, and a token service answering
//! `GET /token?service=…&scope=…` on the node's loopback.
//!
//! distribution checks a token's `iss` against its configured issuer, `aud`
//! against its service, `exp`/`nbf`, the signature with the key of the
//! certificate in the `x5c` header (which must chain to the bundle; ours *is*
//! the bundle), and that the `access` claim grants every action the request
//! needs. The harness mints push tokens for itself directly; the token
//! service grants only `pull`, as a read-only pull secret would.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use serde_json::json;

use super::http::{Exchange, HttpServer};

/// Where the token service listens, inside the node's network namespace.
pub const TOKEN_ADDR: &str = "127.0.0.1:5001";

/// The registry's `service` (the tokens' audience).
pub const TOKEN_SERVICE: &str = "carrack-test-registry";

/// The tokens' issuer, as the registry is told to expect.
pub const TOKEN_ISSUER: &str = "carrack-test-token-service";

/// How long a minted token is valid.
const TOKEN_LIFETIME: Duration = Duration::from_secs(300);

/// A signing key and its self-signed certificate.
pub struct TokenIssuer {
    key: EcdsaKeyPair,
    cert_der: Vec<u8>,
    cert_pem: String,
    rng: SystemRandom,
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer").finish_non_exhaustive()
    }
}

impl TokenIssuer {
    /// A fresh P-256 key and a certificate for it.
    pub fn new() -> io::Result<TokenIssuer> {
        let key_pair = rcgen::KeyPair::generate().map_err(io::Error::other)?;
        let params = rcgen::CertificateParams::new(vec!["carrack-test-token-service".to_owned()])
            .map_err(io::Error::other)?;
        let cert = params.self_signed(&key_pair).map_err(io::Error::other)?;
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &key_pair.serialize_der(),
            &rng,
        )
        .map_err(|err| io::Error::other(format!("load the token key: {err}")))?;
        Ok(TokenIssuer {
            key,
            cert_der: cert.der().to_vec(),
            cert_pem: cert.pem(),
            rng,
        })
    }

    /// The certificate, PEM-encoded: the registry's `rootcertbundle`.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A JWT granting `actions` on repository `repository` to `subject`.
    pub fn mint(&self, subject: &str, repository: &str, actions: &[&str]) -> io::Result<String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(io::Error::other)?
            .as_secs();
        let header = json!({
            "typ": "JWT",
            "alg": "ES256",
            "x5c": [STANDARD.encode(&self.cert_der)],
        });
        let claims = json!({
            "iss": TOKEN_ISSUER,
            "sub": subject,
            "aud": TOKEN_SERVICE,
            "exp": now + TOKEN_LIFETIME.as_secs(),
            // A little slack for clock reads in two processes.
            "nbf": now.saturating_sub(10),
            "iat": now,
            "jti": format!("{now}-{}", std::process::id()),
            "access": [{
                "type": "repository",
                "name": repository,
                "actions": actions,
            }],
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self
            .key
            .sign(&self.rng, signing_input.as_bytes())
            .map_err(|err| io::Error::other(format!("sign a token: {err}")))?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        ))
    }
}

/// Who the token service gives pull tokens to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenPolicy {
    /// The only user name accepted (Basic auth on the token request).
    pub username: String,
    /// Its password.
    pub password: String,
    /// Whether a request without credentials gets a token too (a public registry).
    pub anonymous: bool,
}

/// The running token service and what it counted.
#[derive(Debug)]
pub struct TokenServer {
    /// The HTTP server; stopped on drop.
    server: HttpServer,
    /// Tokens handed out.
    issued: Arc<AtomicUsize>,
    /// Requests refused.
    refused: Arc<AtomicUsize>,
}

impl TokenServer {
    /// Starts the token service on [`TOKEN_ADDR`] in the namespace at `netns_path`.
    pub fn start(
        netns_path: &Path,
        issuer: Arc<TokenIssuer>,
        policy: TokenPolicy,
    ) -> io::Result<TokenServer> {
        let issued = Arc::new(AtomicUsize::new(0));
        let refused = Arc::new(AtomicUsize::new(0));
        let (issued_count, refused_count) = (Arc::clone(&issued), Arc::clone(&refused));
        let server = HttpServer::start(netns_path, TOKEN_ADDR, move |exchange| {
            let answered = answer(exchange, &issuer, &policy)?;
            match answered {
                true => issued_count.fetch_add(1, Ordering::Relaxed),
                false => refused_count.fetch_add(1, Ordering::Relaxed),
            };
            Ok(())
        })?;
        Ok(TokenServer {
            server,
            issued,
            refused,
        })
    }

    /// The realm URL the registry sends clients to.
    pub fn realm() -> String {
        format!("http://{TOKEN_ADDR}/token")
    }

    /// How many tokens were handed out.
    pub fn issued(&self) -> usize {
        self.issued.load(Ordering::Relaxed)
    }

    /// How many token requests were refused.
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::Relaxed)
    }

    /// Every request the service received.
    pub fn requests(&self) -> Vec<super::http::Request> {
        self.server.requests()
    }
}

/// Answers one token request; returns whether a token was issued.
fn answer(
    exchange: &mut Exchange<'_>,
    issuer: &TokenIssuer,
    policy: &TokenPolicy,
) -> io::Result<bool> {
    let request = exchange.request;
    if request.path() != "/token" {
        exchange.respond(404, &[], b"")?;
        return Ok(false);
    }
    let denied = |exchange: &mut Exchange<'_>, message: &str| {
        exchange.json(
            401,
            &json!({"errors": [{"code": "UNAUTHORIZED", "message": message}]}),
        )
    };
    let subject = match request.header("authorization").map(decode_basic) {
        Some(Some((user, password))) if user == policy.username && password == policy.password => {
            user
        }
        Some(_) => {
            denied(exchange, "invalid credentials")?;
            return Ok(false);
        }
        None if policy.anonymous => String::new(),
        None => {
            denied(exchange, "authentication required")?;
            return Ok(false);
        }
    };
    if request.query_all("service") != [TOKEN_SERVICE] {
        exchange.json(
            400,
            &json!({"errors": [{"code": "DENIED", "message": "unknown service"}]}),
        )?;
        return Ok(false);
    }
    // `repository:<name>:<actions>`; only pull is granted here.
    let repositories: Vec<String> = request
        .query_all("scope")
        .iter()
        .filter_map(|scope| {
            let rest = scope.strip_prefix("repository:")?;
            let (name, actions) = rest.rsplit_once(':')?;
            actions
                .split(',')
                .any(|action| action == "pull")
                .then(|| name.to_owned())
        })
        .collect();
    let Some(repository) = repositories.first() else {
        exchange.json(
            400,
            &json!({"errors": [{"code": "DENIED", "message": "no pull scope"}]}),
        )?;
        return Ok(false);
    };
    let token = issuer.mint(&subject, repository, &["pull"])?;
    exchange.json(200, &json!({"token": token, "expires_in": 300}))?;
    Ok(true)
}

/// `Basic base64(user:password)` → `(user, password)`.
fn decode_basic(header: &str) -> Option<(String, String)> {
    let encoded = header.strip_prefix("Basic ")?.trim();
    let decoded = STANDARD.decode(encoded).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}
