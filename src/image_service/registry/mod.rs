//! The registry client: fetching manifests and blobs over the OCI distribution API.
//!
//! * `endpoints` — for a registry host, the URLs to try: configured mirrors, then upstream.
//! * `auth` — pull credentials, `WWW-Authenticate` challenges, the bearer token cache.
//! * `client` — [`RegistryClient`]: the requests, fallback between endpoints, digest checks.
//! * `body` — bounded body reads and the [`BlobStream`], both under the stall timeout.
//! * `error` — [`RegistryError`], naming the endpoints tried.
//!
//! Limits: manifests, indexes and configs are read whole but refused past 4 MiB (or the
//! caller's limit) while reading; token and error bodies past 1 MiB; at most 10 redirects, to
//! `http`/`https` only, and `Authorization` never follows a redirect to another origin.
//! Foreign-layer `urls` in manifests are never fetched here: there is no API for fetching an
//! arbitrary URL.

mod auth;
mod body;
mod client;
mod endpoints;
mod error;

#[cfg(test)]
mod test_server;
#[cfg(test)]
mod tests;

pub use auth::{Challenge, Credentials, DEFAULT_TOKEN_LIFETIME, Scheme, parse_www_authenticate};
pub use body::BlobStream;
pub use client::{
    ClientOptions, DEFAULT_MANIFEST_ACCEPT, FetchedManifest, MAX_MANIFEST_SIZE, MAX_REDIRECTS,
    MAX_TOKEN_RESPONSE_SIZE, RegistryClient,
};
pub use endpoints::{DOCKER_HUB_API_HOST, Endpoint, Endpoints};
pub use error::{RegistryError, Target};
