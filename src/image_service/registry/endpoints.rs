//! Which URLs serve a registry's content, in the order they are tried.
//!
//! For a registry host the list is its configured mirrors, in order, then the upstream
//! registry itself unless the mirror table says `use_upstream = false`. The upstream of
//! `docker.io` is `https://registry-1.docker.io`; a loopback registry (`localhost:5000`,
//! `127.0.0.1:5000`, `[::1]`) is spoken to in plain HTTP, as containerd's CRI plugin does;
//! every other upstream is HTTPS. A mirror URL may carry a path prefix: requests go to
//! `<endpoint>/v2/<repository>/…` with `?ns=<registry>` (containerd's convention, which lets
//! one mirror serve several registries).

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use reqwest::Url;

use super::RegistryError;
use crate::config::RegistryConfig;

/// The host that serves Docker Hub's registry API.
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";

/// The names Docker Hub goes by.
const DOCKER_HUB_ALIASES: [&str; 3] = ["docker.io", "index.docker.io", DOCKER_HUB_API_HOST];

/// One base URL serving a registry's `/v2/` API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `scheme://host[:port]/`, no user info, query or fragment.
    base: Url,
    /// The path prefix without trailing `/`: `""` or `/prefix`.
    prefix: String,
    /// Whether this is a mirror (not the registry itself).
    mirror: bool,
    /// The registry a mirror stands in for, sent as `?ns=`.
    namespace: Option<String>,
}

impl Endpoint {
    /// The registry itself: HTTPS, except plain HTTP for loopback hosts.
    pub fn upstream(registry: &str) -> Result<Self, RegistryError> {
        let text = if is_docker_hub(registry) {
            format!("https://{DOCKER_HUB_API_HOST}")
        } else if is_loopback(registry) {
            format!("http://{registry}")
        } else {
            format!("https://{registry}")
        };
        let base = Url::parse(&text).map_err(|_| RegistryError::InvalidEndpoint {
            registry: registry.to_owned(),
            endpoint: text.clone(),
            reason: "not a valid URL",
        })?;
        Ok(Self {
            base,
            prefix: String::new(),
            mirror: false,
            namespace: None,
        })
    }

    /// A configured mirror of `registry`.
    fn mirror(registry: &str, text: &str) -> Result<Self, RegistryError> {
        let invalid = |reason| RegistryError::InvalidEndpoint {
            registry: registry.to_owned(),
            endpoint: redact_user_info(text),
            reason,
        };
        let url = Url::parse(text).map_err(|_| invalid("not a valid URL"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(invalid("no host"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid(
                "user info in the URL is not supported; use pull credentials",
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("a query or fragment is not supported"));
        }
        let path = url.path().trim_end_matches('/');
        let prefix = path.strip_suffix("/v2").unwrap_or(path).to_owned();
        let mut base = url.clone();
        base.set_path("/");
        Ok(Self {
            base,
            prefix,
            mirror: true,
            namespace: Some(registry.to_owned()),
        })
    }

    /// Whether this is a mirror rather than the registry itself.
    pub fn is_mirror(&self) -> bool {
        self.mirror
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &str {
        self.base.scheme()
    }

    /// `host[:port]`, lowercase, the port only when written.
    pub fn host(&self) -> String {
        let host = self.base.host_str().unwrap_or_default();
        match self.base.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        }
    }

    /// `scheme://host[:port]`, the key of per-endpoint auth state.
    pub fn origin(&self) -> String {
        self.base.origin().ascii_serialization()
    }

    /// The URL of `/v2/<repository>/<tail>` (`tail` like `manifests/latest`) on this
    /// endpoint. Both parts must have been validated by the reference grammar.
    pub fn url(&self, repository: &str, tail: &str) -> Url {
        let mut url = self.base.clone();
        url.set_path(&format!("{}/v2/{repository}/{tail}", self.prefix));
        if let Some(namespace) = &self.namespace {
            url.query_pairs_mut().append_pair("ns", namespace);
        }
        url
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.origin(), self.prefix)
    }
}

/// The parsed mirror table: every registry's endpoints, ready to list.
#[derive(Debug, Clone, Default)]
pub struct Endpoints {
    mirrors: BTreeMap<String, (Vec<Endpoint>, bool)>,
}

impl Endpoints {
    /// Parses every configured mirror, so that a bad one is reported at start.
    pub fn from_config(config: &RegistryConfig) -> Result<Self, RegistryError> {
        let mut mirrors = BTreeMap::new();
        for (registry, mirror) in &config.mirrors {
            let endpoints = mirror
                .endpoints
                .iter()
                .map(|text| Endpoint::mirror(registry, text))
                .collect::<Result<Vec<_>, _>>()?;
            mirrors.insert(registry.clone(), (endpoints, mirror.use_upstream));
        }
        Ok(Self { mirrors })
    }

    /// The endpoints of `registry`, in the order to try them.
    pub fn for_registry(&self, registry: &str) -> Result<Vec<Endpoint>, RegistryError> {
        let (mut endpoints, use_upstream) = match self.mirrors.get(registry) {
            Some((mirrors, use_upstream)) => (mirrors.clone(), *use_upstream),
            None => (Vec::new(), true),
        };
        if use_upstream {
            endpoints.push(Endpoint::upstream(registry)?);
        }
        if endpoints.is_empty() {
            return Err(RegistryError::NoEndpoints {
                registry: registry.to_owned(),
            });
        }
        Ok(endpoints)
    }
}

/// Whether two registry names (`host[:port]`, any case) are the same registry, counting
/// Docker Hub's aliases as one.
pub(super) fn same_registry(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b) || (is_docker_hub(a) && is_docker_hub(b))
}

fn is_docker_hub(registry: &str) -> bool {
    DOCKER_HUB_ALIASES
        .iter()
        .any(|alias| registry.eq_ignore_ascii_case(alias))
}

/// `localhost`, `127.0.0.0/8` or `::1`, with or without a port.
fn is_loopback(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => registry.split(':').next().unwrap_or_default(),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}

/// `scheme://host…` without any `user:password@`, for error messages.
fn redact_user_info(text: &str) -> String {
    match text.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{scheme}://<redacted>@{}", &rest[at + 1..]),
                None => text.to_owned(),
            }
        }
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MirrorConfig;

    fn config(entries: &[(&str, &[&str], bool)]) -> RegistryConfig {
        let mut config = RegistryConfig::default();
        for (host, endpoints, use_upstream) in entries {
            config.mirrors.insert(
                (*host).to_owned(),
                MirrorConfig {
                    endpoints: endpoints.iter().map(|e| (*e).to_owned()).collect(),
                    use_upstream: *use_upstream,
                },
            );
        }
        config
    }

    fn list(config: &RegistryConfig, registry: &str) -> Vec<String> {
        Endpoints::from_config(config)
            .unwrap()
            .for_registry(registry)
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn upstream_only_without_mirrors() {
        let config = RegistryConfig::default();
        assert_eq!(list(&config, "docker.io"), ["https://registry-1.docker.io"]);
        assert_eq!(
            list(&config, "registry.k8s.io"),
            ["https://registry.k8s.io"]
        );
        assert_eq!(
            list(&config, "registry.example.com:5000"),
            ["https://registry.example.com:5000"]
        );
        assert_eq!(list(&config, "localhost:5000"), ["http://localhost:5000"]);
        assert_eq!(list(&config, "127.0.0.1:5000"), ["http://127.0.0.1:5000"]);
        assert_eq!(list(&config, "[::1]:5000"), ["http://[::1]:5000"]);
        assert_eq!(list(&config, "127.1.2.3"), ["http://127.1.2.3"]);
        assert_eq!(list(&config, "10.0.0.1:5000"), ["https://10.0.0.1:5000"]);
    }

    #[test]
    fn mirrors_first_then_upstream() {
        let config = config(&[(
            "docker.io",
            &["http://127.0.0.1:5000", "https://mirror.example.com/cache/"],
            true,
        )]);
        assert_eq!(
            list(&config, "docker.io"),
            [
                "http://127.0.0.1:5000",
                "https://mirror.example.com/cache",
                "https://registry-1.docker.io"
            ]
        );
        // Other registries are unaffected.
        assert_eq!(list(&config, "quay.io"), ["https://quay.io"]);
    }

    #[test]
    fn use_upstream_false_drops_upstream() {
        let config = config(&[("registry.k8s.io", &["http://10.0.0.1:5000"], false)]);
        assert_eq!(list(&config, "registry.k8s.io"), ["http://10.0.0.1:5000"]);
        let config = self::config(&[("registry.k8s.io", &[], false)]);
        let err = Endpoints::from_config(&config)
            .unwrap()
            .for_registry("registry.k8s.io")
            .unwrap_err();
        assert!(matches!(err, RegistryError::NoEndpoints { .. }), "{err}");
    }

    #[test]
    fn request_urls() {
        let config = config(&[(
            "docker.io",
            &["http://127.0.0.1:5000", "https://m.example.com/prefix/v2/"],
            true,
        )]);
        let endpoints = Endpoints::from_config(&config)
            .unwrap()
            .for_registry("docker.io")
            .unwrap();
        let urls: Vec<String> = endpoints
            .iter()
            .map(|e| e.url("library/busybox", "manifests/latest").to_string())
            .collect();
        assert_eq!(
            urls,
            [
                "http://127.0.0.1:5000/v2/library/busybox/manifests/latest?ns=docker.io",
                "https://m.example.com/prefix/v2/library/busybox/manifests/latest?ns=docker.io",
                "https://registry-1.docker.io/v2/library/busybox/manifests/latest",
            ]
        );
        assert!(endpoints[0].is_mirror() && !endpoints[2].is_mirror());
        assert_eq!(endpoints[0].host(), "127.0.0.1:5000");
        assert_eq!(endpoints[1].host(), "m.example.com");
        assert_eq!(endpoints[1].origin(), "https://m.example.com");
        assert_eq!(endpoints[2].scheme(), "https");
    }

    #[test]
    fn bad_mirrors_are_refused_without_echoing_secrets() {
        for (endpoint, fragment) in [
            ("ftp://m.example.com", "scheme"),
            ("not a url", "URL"),
            ("http://user:secret@m.example.com", "user info"),
            ("http://m.example.com/?x=1", "query"),
        ] {
            let config = config(&[("docker.io", &[endpoint], true)]);
            let err = Endpoints::from_config(&config).unwrap_err().to_string();
            assert!(err.contains(fragment), "{err}");
            assert!(!err.contains("secret"), "{err}");
        }
    }

    #[test]
    fn registry_names() {
        assert!(same_registry("docker.io", "registry-1.docker.io"));
        assert!(same_registry("Index.Docker.io", "docker.io"));
        assert!(same_registry("Quay.io", "quay.io"));
        assert!(!same_registry("quay.io", "docker.io"));
        assert!(is_loopback("localhost"));
        assert!(is_loopback("[::1]"));
        assert!(!is_loopback("localhost.example.com"));
        assert!(!is_loopback("[::2]:5000"));
    }
}
