//! Image references (`busybox`, `registry.k8s.io/pause:3.9`, `name@sha256:…`): parsing,
//! validation and the `docker.io` normalisation that Docker and containerd apply.
//!
//! The grammar is the one of the distribution project's reference package:
//!
//! ```text
//! reference  := name [ ":" tag ] [ "@" digest ]
//! name       := [ domain "/" ] path
//! domain     := host [ ":" port ]            host: DNS name, IPv4 or "[" IPv6 "]"
//! path       := component ( "/" component )*
//! component  := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
//! tag        := [A-Za-z0-9_] [A-Za-z0-9_.-]{0,127}
//! ```
//!
//! The first `/`-separated part of a name is a registry host when it contains `.` or `:`, is
//! `localhost`, or has an uppercase letter (which a path component never may); otherwise the
//! registry is `docker.io`, and a single-component Docker Hub path gains the `library/`
//! prefix. A name without tag or digest gets the tag `latest`; a name with both keeps both.
//! The 255-character limit applies to the normalised name (`docker.io/library/busybox`), as in
//! Docker, so that every parsed reference parses again from its `Display` form.
//! Everything parsed here ends up in registry URLs and store keys, so nothing outside the
//! grammar (spaces, `..`, uppercase paths, non-ASCII) is accepted.

use std::fmt;
use std::str::FromStr;

use crate::error_kind::ErrorKind;
use crate::image_service::digest::{Digest, DigestError};

/// The registry of names that name none (`busybox`, `user/app`).
pub const DEFAULT_REGISTRY: &str = "docker.io";

/// The tag of references that name neither a tag nor a digest.
pub const DEFAULT_TAG: &str = "latest";

/// The longest name (registry and path, once normalised) the grammar allows.
pub const NAME_TOTAL_MAX: usize = 255;

/// The longest tag the grammar allows.
pub const TAG_MAX: usize = 128;

/// The Docker Hub path prefix of official images (`busybox` → `library/busybox`).
const OFFICIAL_PREFIX: &str = "library/";

/// Another spelling of `docker.io` that Docker normalises away.
const LEGACY_DEFAULT_REGISTRY: &str = "index.docker.io";

/// How much of a refused input an error message repeats.
const ECHO_MAX: usize = 300;

/// A parsed, normalised image reference.
///
/// The fields are public for reading; [`Reference::parse`] is the way to make one, and code
/// that builds one by hand must call [`Reference::validate`] before using it in a URL or a
/// file name (the registry client does so itself).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    /// The registry host with an optional port, e.g. `docker.io`, `localhost:5000`.
    pub registry: String,
    /// The repository path inside the registry, e.g. `library/busybox`.
    pub repository: String,
    /// The tag, e.g. `latest`. `None` only when a digest is given.
    pub tag: Option<String>,
    /// The manifest digest, when the reference pins one.
    pub digest: Option<Digest>,
}

/// Why a string is not an image reference. Every variant is the caller's mistake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// The input is empty.
    #[error("image reference is empty")]
    Empty,
    /// The input breaks the grammar.
    #[error("invalid image reference {reference:?}: {reason}")]
    Invalid {
        /// The refused input (truncated).
        reference: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// The name is longer than [`NAME_TOTAL_MAX`].
    #[error(
        "invalid image reference {reference:?}: the name is {length} characters long, \
         more than {NAME_TOTAL_MAX}"
    )]
    NameTooLong {
        /// The refused input (truncated).
        reference: String,
        /// The length of its name part.
        length: usize,
    },
    /// The part after `@` is not a supported digest.
    #[error("invalid image reference {reference:?}: {source}")]
    Digest {
        /// The refused input (truncated).
        reference: String,
        /// What is wrong with the digest.
        source: DigestError,
    },
    /// The input is a bare 64-character hex string: an image ID, not a repository name.
    #[error(
        "invalid image reference {reference:?}: a 64-character hex string is an image id, \
         not a repository name"
    )]
    ImageId {
        /// The refused input.
        reference: String,
    },
}

impl ReferenceError {
    /// The kind of failure: always [`ErrorKind::InvalidArgument`].
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::InvalidArgument
    }
}

fn echo(input: &str) -> String {
    input.chars().take(ECHO_MAX).collect()
}

impl Reference {
    /// Parses and normalises `input` (see the module documentation for the rules).
    pub fn parse(input: &str) -> Result<Self, ReferenceError> {
        let invalid = |reason| ReferenceError::Invalid {
            reference: echo(input),
            reason,
        };
        if input.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if is_hex64(input) {
            return Err(ReferenceError::ImageId {
                reference: input.to_owned(),
            });
        }

        let (rest, digest) = match input.split_once('@') {
            Some((rest, digest)) => {
                let digest = digest
                    .parse::<Digest>()
                    .map_err(|source| ReferenceError::Digest {
                        reference: echo(input),
                        source,
                    })?;
                (rest, Some(digest))
            }
            None => (input, None),
        };

        // A `:` after the last `/` starts the tag; one before it belongs to a port.
        let (name, tag) = match rest.rfind(':') {
            Some(colon) if !rest[colon + 1..].contains('/') => {
                (&rest[..colon], Some(&rest[colon + 1..]))
            }
            _ => (rest, None),
        };
        if let Some(tag) = tag {
            check_tag(tag).map_err(invalid)?;
        }

        if name.is_empty() {
            return Err(invalid("the name is empty"));
        }

        let (registry, path) = split_registry(name);
        check_registry(registry).map_err(invalid)?;
        check_path(path).map_err(invalid)?;

        let registry = if registry == LEGACY_DEFAULT_REGISTRY {
            DEFAULT_REGISTRY
        } else {
            registry
        };
        let repository = if registry == DEFAULT_REGISTRY && !path.contains('/') {
            format!("{OFFICIAL_PREFIX}{path}")
        } else {
            path.to_owned()
        };
        // Measured once normalised: `Display` writes this form, which must parse again.
        let length = registry.len() + 1 + repository.len();
        if length > NAME_TOTAL_MAX {
            return Err(ReferenceError::NameTooLong {
                reference: echo(input),
                length,
            });
        }
        let tag = match (tag, &digest) {
            (Some(tag), _) => Some(tag.to_owned()),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_TAG.to_owned()),
        };
        Ok(Self {
            registry: registry.to_owned(),
            repository,
            tag,
            digest,
        })
    }

    /// Checks that every field obeys the grammar, for references built by hand.
    pub fn validate(&self) -> Result<(), ReferenceError> {
        let invalid = |reason| ReferenceError::Invalid {
            reference: echo(&self.to_string()),
            reason,
        };
        check_registry(&self.registry).map_err(invalid)?;
        check_path(&self.repository).map_err(invalid)?;
        if let Some(tag) = &self.tag {
            check_tag(tag).map_err(invalid)?;
        }
        if self.tag.is_none() && self.digest.is_none() {
            return Err(invalid("neither a tag nor a digest"));
        }
        let length = self.registry.len() + 1 + self.repository.len();
        if length > NAME_TOTAL_MAX {
            return Err(ReferenceError::NameTooLong {
                reference: echo(&self.to_string()),
                length,
            });
        }
        Ok(())
    }

    /// The registry host (same as the field; for callers that prefer accessors).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path (same as the field).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if any (same as the field).
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The pinned digest, if any (same as the field).
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The repository name with its registry: `docker.io/library/busybox`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The name with the tag (`docker.io/library/busybox:latest`), if there is a tag.
    pub fn repo_tag(&self) -> Option<String> {
        self.tag
            .as_ref()
            .map(|tag| format!("{}/{}:{tag}", self.registry, self.repository))
    }

    /// The name with `digest`: `docker.io/library/busybox@sha256:…`.
    pub fn repo_digest(&self, digest: &Digest) -> String {
        format!("{}/{}@{digest}", self.registry, self.repository)
    }

    /// The same repository pinned to `digest`, without a tag (for fetching the manifests an
    /// index lists).
    pub fn with_digest(&self, digest: Digest) -> Self {
        Self {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: None,
            digest: Some(digest),
        }
    }

    /// What a registry's `/manifests/<reference>` path wants: the digest if pinned, else the
    /// tag.
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => digest.to_string(),
            (None, Some(tag)) => tag.clone(),
            (None, None) => DEFAULT_TAG.to_owned(),
        }
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        Self::parse(input)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl serde::Serialize for Reference {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Reference {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Whether `input` names an image by ID (a bare 64-hex string or `sha256:<64 hex>`) rather
/// than by reference. See [`parse_image_id`].
pub fn looks_like_image_id(input: &str) -> bool {
    parse_image_id(input).is_some()
}

/// The image ID `input` spells, if it is a bare 64-hex string or a `sha256:` digest.
pub fn parse_image_id(input: &str) -> Option<Digest> {
    if is_hex64(input) {
        return format!("sha256:{input}").parse().ok();
    }
    if input.starts_with("sha256:") {
        return input.parse().ok();
    }
    None
}

fn is_hex64(input: &str) -> bool {
    input.len() == 64
        && input
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Splits a name into (registry, path), defaulting the registry to `docker.io`.
fn split_registry(name: &str) -> (&str, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (first, rest)
        }
        _ => (DEFAULT_REGISTRY, name),
    }
}

fn check_tag(tag: &str) -> Result<(), &'static str> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    match tag.as_bytes() {
        [] => Err("the tag is empty"),
        bytes if bytes.len() > TAG_MAX => Err("the tag is longer than 128 characters"),
        [first, ..] if !word(*first) => Err("the tag must start with a letter, digit or `_`"),
        bytes if !bytes.iter().all(|&b| word(b) || b == b'.' || b == b'-') => {
            Err("the tag may only contain letters, digits, `_`, `.` and `-`")
        }
        _ => Ok(()),
    }
}

/// `host[:port]` with host a DNS name, an IPv4 address or a bracketed IPv6 address.
fn check_registry(registry: &str) -> Result<(), &'static str> {
    let (host, port) = if let Some(rest) = registry.strip_prefix('[') {
        let (inside, after) = rest
            .split_once(']')
            .ok_or("the registry's IPv6 address lacks `]`")?;
        if inside.is_empty() || !inside.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return Err("the registry's IPv6 address is malformed");
        }
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or("unexpected text after the registry's IPv6 address")?,
            ),
        };
        (None, port)
    } else {
        match registry.split_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(registry), None),
        }
    };
    if let Some(host) = host {
        let component_ok = |c: &str| {
            let bytes = c.as_bytes();
            !bytes.is_empty()
                && bytes
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || b == b'-')
                && bytes.first() != Some(&b'-')
                && bytes.last() != Some(&b'-')
        };
        if !host.split('.').all(component_ok) {
            return Err("the registry host is not a valid host name");
        }
    }
    if let Some(port) = port
        && (port.is_empty()
            || port.len() > 5
            || !port.bytes().all(|b| b.is_ascii_digit())
            || port.parse::<u16>().is_err())
    {
        return Err("the registry port is not a number from 0 to 65535");
    }
    Ok(())
}

fn check_path(path: &str) -> Result<(), &'static str> {
    if path.is_empty() {
        return Err("the repository path is empty");
    }
    if path.split('/').all(valid_path_component) {
        Ok(())
    } else {
        Err(
            "each repository path component must be lowercase letters and digits joined by \
             `.`, `_`, `__` or dashes",
        )
    }
}

fn valid_path_component(component: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = component.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(&first), Some(&last)) if alnum(first) && alnum(last) => {}
        _ => return false,
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let separator = &component[start..i];
        let ok = matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn digest() -> Digest {
        format!("sha256:{HEX}").parse().unwrap()
    }

    fn parsed(input: &str) -> Reference {
        Reference::parse(input).unwrap_or_else(|err| panic!("{input}: {err}"))
    }

    #[test]
    fn normalises_docker_hub_names() {
        let cases = [
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("library/busybox", "docker.io/library/busybox:latest"),
            ("user/app", "docker.io/user/app:latest"),
            ("user/app/sub", "docker.io/user/app/sub:latest"),
            ("docker.io/busybox", "docker.io/library/busybox:latest"),
            (
                "docker.io/library/busybox",
                "docker.io/library/busybox:latest",
            ),
            (
                "index.docker.io/busybox",
                "docker.io/library/busybox:latest",
            ),
            ("index.docker.io/user/app:v1", "docker.io/user/app:v1"),
            ("docker.io", "docker.io/library/docker.io:latest"),
            ("localhost", "docker.io/library/localhost:latest"),
            ("localhost:5000", "docker.io/library/localhost:5000"),
        ];
        for (input, want) in cases {
            assert_eq!(parsed(input).to_string(), want, "{input}");
        }
    }

    #[test]
    fn recognises_registry_hosts() {
        let cases = [
            ("localhost/x", "localhost", "x"),
            ("localhost:5000/x", "localhost:5000", "x"),
            ("registry.k8s.io/pause:3.9", "registry.k8s.io", "pause"),
            ("127.0.0.1:5000/a/b", "127.0.0.1:5000", "a/b"),
            ("[::1]:5000/a", "[::1]:5000", "a"),
            ("[fe80::1]/a", "[fe80::1]", "a"),
            ("host:1/a", "host:1", "a"),
            ("Example.com/a", "Example.com", "a"),
            ("Registry/a", "Registry", "a"),
            ("quay.io/coreos/etcd:v3.5.0", "quay.io", "coreos/etcd"),
        ];
        for (input, registry, repository) in cases {
            let reference = parsed(input);
            assert_eq!(reference.registry, registry, "{input}");
            assert_eq!(reference.repository, repository, "{input}");
        }
    }

    #[test]
    fn parts_and_accessors() {
        let reference = parsed("busybox");
        assert_eq!(reference.registry, "docker.io");
        assert_eq!(reference.repository, "library/busybox");
        assert_eq!(reference.tag.as_deref(), Some("latest"));
        assert_eq!(reference.digest, None);
        assert_eq!(reference.name(), "docker.io/library/busybox");
        assert_eq!(
            reference.repo_tag().as_deref(),
            Some("docker.io/library/busybox:latest")
        );
        assert_eq!(
            reference.repo_digest(&digest()),
            format!("docker.io/library/busybox@sha256:{HEX}")
        );
        assert_eq!(reference.manifest_reference(), "latest");
        assert_eq!(reference.registry(), "docker.io");
        assert_eq!(reference.repository(), "library/busybox");
        assert_eq!(reference.tag(), Some("latest"));
        assert_eq!(reference.digest(), None);
    }

    #[test]
    fn digest_only_has_no_tag() {
        let reference = parsed(&format!("busybox@sha256:{HEX}"));
        assert_eq!(reference.tag, None);
        assert_eq!(reference.digest, Some(digest()));
        assert_eq!(reference.repo_tag(), None);
        assert_eq!(
            reference.to_string(),
            format!("docker.io/library/busybox@sha256:{HEX}")
        );
        assert_eq!(reference.manifest_reference(), format!("sha256:{HEX}"));
    }

    #[test]
    fn tag_and_digest_are_both_kept() {
        let input = format!("registry.k8s.io/pause:3.9@sha256:{HEX}");
        let reference = parsed(&input);
        assert_eq!(reference.tag.as_deref(), Some("3.9"));
        assert_eq!(reference.digest, Some(digest()));
        assert_eq!(reference.to_string(), input);
        // The digest wins when fetching.
        assert_eq!(reference.manifest_reference(), format!("sha256:{HEX}"));
        let pinned = reference.with_digest(Digest::sha256_of(b"x"));
        assert_eq!(pinned.tag, None);
        assert_eq!(pinned.name(), "registry.k8s.io/pause");
    }

    #[test]
    fn port_is_not_mistaken_for_a_tag() {
        let reference = parsed("localhost:5000/app");
        assert_eq!(reference.tag.as_deref(), Some("latest"));
        let reference = parsed("localhost:5000/app:v2");
        assert_eq!(reference.registry, "localhost:5000");
        assert_eq!(reference.tag.as_deref(), Some("v2"));
    }

    #[test]
    fn separators_in_paths() {
        for ok in [
            "a.b/c",
            "a/b.c",
            "a/b_c",
            "a/b__c",
            "a/b-c",
            "a/b---c",
            "a/b.c_d__e-f",
            "a/0",
            "a/b-c.d-e",
        ] {
            parsed(ok);
        }
        for bad in [
            "a/b..c", "a/b___c", "a/b._c", "a/-b", "a/b-", "a/.b", "a/b.", "a/_b", "a/b_",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tags() {
        parsed("a:_");
        parsed("a:V1.2-rc_3");
        parsed(&format!("a:{}", "t".repeat(TAG_MAX)));
        for bad in [
            "a:",
            "a:.x",
            "a:-x",
            "a:x+y",
            "a:x/y:z",
            "a:x y",
            "a:é",
            &format!("a:{}", "t".repeat(TAG_MAX + 1)),
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn refuses_hostile_strings() {
        let long_path = format!("a/{}", "b".repeat(NAME_TOTAL_MAX));
        for bad in [
            "",
            " ",
            " busybox",
            "busybox ",
            "busy box",
            "BusyBox",
            "user/App",
            "docker.io/Library/busybox",
            "../etc/passwd",
            "a/../b",
            "a/./b",
            "a/..",
            "..",
            ".",
            "/",
            "/busybox",
            "busybox/",
            "a//b",
            "registry.example.com/",
            ":tag",
            "@sha256:abc",
            "busybox@",
            "busybox@sha256:",
            "busybox@sha256:abc",
            "busybox@md5:d41d8cd98f00b204e9800998ecf8427e",
            "busybox@SHA256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "a@b@c",
            "busybox:latest:latest",
            "bus\0ybox",
            "bus\nybox",
            "busy\tbox",
            "büsybox",
            "example.com/büsybox",
            "exämple.com/busybox",
            "ｂｕｓｙｂｏｘ",
            "busybox\u{202e}",
            "-example.com/a",
            "example-.com/a",
            "exa_mple.com/a",
            "example..com/a",
            "example.com:/a",
            "example.com:99999/a",
            "example.com:12a/a",
            "example.com:-1/a",
            "[::1/a",
            "[zz::1]/a",
            "[]/a",
            "[::1]x/a",
            "http://example.com/a",
            "example.com/a?x=y",
            "example.com/a#frag",
            "example.com/a%2fb",
            "a\\b",
            &long_path,
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn name_length_limit() {
        let max = format!("example.com/{}", "b".repeat(NAME_TOTAL_MAX - 12));
        parsed(&max);
        let over = format!("example.com/{}", "b".repeat(NAME_TOTAL_MAX - 11));
        assert!(matches!(
            Reference::parse(&over),
            Err(ReferenceError::NameTooLong { length: 256, .. })
        ));
        // The limit holds for the normalised name, `docker.io/library/` included.
        let official = "b".repeat(NAME_TOTAL_MAX - "docker.io/library/".len());
        assert_eq!(parsed(&official).name().len(), NAME_TOTAL_MAX);
        assert!(matches!(
            Reference::parse(&format!("{official}b")),
            Err(ReferenceError::NameTooLong { length: 256, .. })
        ));
        let user = format!(
            "a/{}",
            "b".repeat(NAME_TOTAL_MAX - "docker.io/a/".len() + 1)
        );
        assert!(matches!(
            Reference::parse(&user),
            Err(ReferenceError::NameTooLong { length: 256, .. })
        ));
        // `index.docker.io` is shortened to `docker.io` before the limit applies.
        let legacy = format!("index.docker.io/a/{}", "b".repeat(NAME_TOTAL_MAX - 12));
        assert_eq!(parsed(&legacy).name().len(), NAME_TOTAL_MAX);
        // A huge input is refused, and the error does not repeat all of it.
        let huge = "a".repeat(1 << 20);
        let err = Reference::parse(&huge).unwrap_err();
        assert!(err.to_string().len() < 1000);
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    }

    #[test]
    fn bare_image_id_is_not_a_name() {
        assert!(matches!(
            Reference::parse(HEX),
            Err(ReferenceError::ImageId { .. })
        ));
        // With a registry or tag it is a valid (if odd) name, as in Docker.
        parsed(&format!("example.com/{HEX}"));
        parsed(&format!("{HEX}:v1"));
    }

    #[test]
    fn image_ids() {
        assert!(looks_like_image_id(HEX));
        assert!(looks_like_image_id(&format!("sha256:{HEX}")));
        assert_eq!(parse_image_id(HEX), Some(digest()));
        assert_eq!(parse_image_id(&format!("sha256:{HEX}")), Some(digest()));
        for not_id in [
            "busybox",
            "",
            &HEX[..63],
            &format!("{HEX}0"),
            &HEX.to_uppercase(),
            &format!("sha256:{}", &HEX[..63]),
            &format!("sha512:{HEX}"),
            &format!("busybox@sha256:{HEX}"),
            &format!("SHA256:{HEX}"),
        ] {
            assert!(!looks_like_image_id(not_id), "{not_id}");
        }
    }

    #[test]
    fn errors_are_readable_and_escaped() {
        let err = Reference::parse("bus\nybox").unwrap_err().to_string();
        assert!(!err.contains('\n'), "{err}");
        assert!(err.contains("bus\\nybox"), "{err}");
        let err = Reference::parse("busybox@sha256:abc").unwrap_err();
        assert!(matches!(err, ReferenceError::Digest { .. }), "{err}");
        assert_eq!(
            Reference::parse("").unwrap_err().to_string(),
            "image reference is empty"
        );
    }

    #[test]
    fn display_round_trips() {
        for input in [
            "busybox",
            "user/app:v1",
            "localhost:5000/a/b:c",
            "[::1]:5000/a",
            &format!("registry.k8s.io/pause:3.9@sha256:{HEX}"),
            &format!("quay.io/a/b@sha256:{HEX}"),
        ] {
            let once = parsed(input);
            let twice = parsed(&once.to_string());
            assert_eq!(once, twice, "{input}");
            once.validate().unwrap();
        }
    }

    #[test]
    fn validate_catches_hand_built_references() {
        let mut reference = parsed("busybox");
        reference.repository = "../../v2/other".to_owned();
        assert!(reference.validate().is_err());
        let mut reference = parsed("busybox");
        reference.registry = "evil.com/path".to_owned();
        assert!(reference.validate().is_err());
        let mut reference = parsed("busybox");
        reference.tag = Some("x/y".to_owned());
        assert!(reference.validate().is_err());
        let mut reference = parsed("busybox");
        reference.tag = None;
        assert!(reference.validate().is_err());
    }

    #[test]
    fn serde_as_string() {
        let reference = parsed("busybox");
        let json = serde_json::to_string(&reference).unwrap();
        assert_eq!(json, "\"docker.io/library/busybox:latest\"");
        assert_eq!(serde_json::from_str::<Reference>(&json).unwrap(), reference);
        assert!(serde_json::from_str::<Reference>("\"Bad\"").is_err());
    }
}
