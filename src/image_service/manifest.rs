//! Manifests, indexes and image configs: the JSON documents of an image, parsed leniently
//! (Docker schema2 and OCI share a shape) but validated strictly where it matters (digests,
//! sizes, media types, layer/diff-id agreement).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::digest::Digest;

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker schema 2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker schema 2 manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Largest manifest, index or config accepted (bytes).
pub const MAX_DOCUMENT_BYTES: usize = 4 * 1024 * 1024;

/// The media types sent in `Accept` when resolving a reference, best first.
pub const MANIFEST_ACCEPT: &[&str] = &[
    OCI_INDEX,
    DOCKER_MANIFEST_LIST,
    OCI_MANIFEST,
    DOCKER_MANIFEST,
];

/// Why a document was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Schema 1 or an unknown media type.
    #[error(
        "unsupported manifest media type {media_type:?} (carrack supports OCI and Docker schema 2)"
    )]
    UnsupportedMediaType {
        /// The refused media type.
        media_type: String,
    },
    /// The JSON does not have the expected shape.
    #[error("malformed {what}: {source}")]
    Malformed {
        /// Which document (`manifest`, `index`, `image config`).
        what: &'static str,
        /// The parser's explanation.
        source: serde_json::Error,
    },
    /// The document is inconsistent.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// Which document.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// No manifest of the index fits the wanted platform.
    #[error("no manifest for platform {platform} in index (available: {available})")]
    NoMatchingPlatform {
        /// The wanted platform.
        platform: String,
        /// What the index offers.
        available: String,
    },
}

/// A content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// What the target is.
    #[serde(default)]
    pub media_type: String,
    /// The target's digest.
    pub digest: Digest,
    /// The target's size in bytes.
    pub size: i64,
    /// Foreign-layer URLs; never followed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    /// Platform of an index entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

/// An OS/architecture pair (plus variant), as in index entries and configs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Platform {
    /// CPU architecture in GOARCH terms (`amd64`, `arm64`).
    #[serde(default)]
    pub architecture: String,
    /// OS in GOOS terms (`linux`).
    #[serde(default)]
    pub os: String,
    /// Architecture variant (`v7`, `v8`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// The platform this node runs: `linux/<GOARCH of this build>`.
    pub fn host() -> Self {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "arm" => "arm",
            "powerpc64" => "ppc64le",
            "s390x" => "s390x",
            "riscv64" => "riscv64",
            other => other,
        };
        Self {
            architecture: architecture.to_owned(),
            os: "linux".to_owned(),
            variant: None,
        }
    }

    fn matches(&self, other: &Platform) -> bool {
        self.os == other.os
            && self.architecture == other.architecture
            && (self.variant.is_none() || self.variant == other.variant)
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

/// A single-platform manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always 2.
    pub schema_version: u32,
    /// The manifest's own media type, when it states one.
    #[serde(default)]
    pub media_type: Option<String>,
    /// The image config.
    pub config: Descriptor,
    /// Layers, bottom first.
    pub layers: Vec<Descriptor>,
}

/// A multi-platform index (OCI) or manifest list (Docker).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// Always 2.
    pub schema_version: u32,
    /// The index's own media type, when it states one.
    #[serde(default)]
    pub media_type: Option<String>,
    /// One entry per platform (or nested index).
    pub manifests: Vec<Descriptor>,
}

/// A parsed manifest document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Document {
    /// A single-platform manifest.
    Manifest(Manifest),
    /// An index of manifests.
    Index(Index),
}

/// Parses a manifest or index. The media type comes from the body when it states one (it is
/// signed by the digest), else from the response's `Content-Type`.
pub fn parse_document(content_type: &str, bytes: &[u8]) -> Result<Document, ManifestError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        #[serde(default)]
        schema_version: Option<u32>,
        #[serde(default)]
        media_type: Option<String>,
        #[serde(default)]
        manifests: Option<serde_json::Value>,
    }
    let probe: Probe =
        serde_json::from_slice(bytes).map_err(|source| ManifestError::Malformed {
            what: "manifest",
            source,
        })?;
    let content_type = content_type.split(';').next().unwrap_or_default().trim();
    let media_type = match probe.media_type.as_deref() {
        Some(stated) if !stated.is_empty() => stated.to_owned(),
        _ if probe.schema_version == Some(1) => {
            "application/vnd.docker.distribution.manifest.v1+json".to_owned()
        }
        // Some registries answer OCI documents as plain JSON: decide by shape.
        _ if probe.manifests.is_some() => OCI_INDEX.to_owned(),
        _ if content_type.is_empty() || content_type == "application/json" => {
            OCI_MANIFEST.to_owned()
        }
        _ => content_type.to_owned(),
    };
    match media_type.as_str() {
        OCI_INDEX | DOCKER_MANIFEST_LIST => {
            let index: Index =
                serde_json::from_slice(bytes).map_err(|source| ManifestError::Malformed {
                    what: "index",
                    source,
                })?;
            check_schema_version("index", index.schema_version)?;
            Ok(Document::Index(index))
        }
        OCI_MANIFEST | DOCKER_MANIFEST => {
            let manifest: Manifest =
                serde_json::from_slice(bytes).map_err(|source| ManifestError::Malformed {
                    what: "manifest",
                    source,
                })?;
            check_schema_version("manifest", manifest.schema_version)?;
            for layer in &manifest.layers {
                if layer.size < 0 {
                    return Err(ManifestError::Invalid {
                        what: "manifest",
                        reason: format!("layer {} has a negative size", layer.digest),
                    });
                }
            }
            Ok(Document::Manifest(manifest))
        }
        _ => Err(ManifestError::UnsupportedMediaType { media_type }),
    }
}

fn check_schema_version(what: &'static str, version: u32) -> Result<(), ManifestError> {
    if version == 2 {
        Ok(())
    } else {
        Err(ManifestError::Invalid {
            what,
            reason: format!("schemaVersion {version}, expected 2"),
        })
    }
}

/// Picks the index entry for `platform`.
pub fn select_platform<'a>(
    index: &'a Index,
    platform: &Platform,
) -> Result<&'a Descriptor, ManifestError> {
    index
        .manifests
        .iter()
        .find(|entry| entry.platform.as_ref().is_some_and(|p| platform.matches(p)))
        .ok_or_else(|| ManifestError::NoMatchingPlatform {
            platform: platform.to_string(),
            available: index
                .manifests
                .iter()
                .filter_map(|entry| entry.platform.as_ref().map(ToString::to_string))
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// The image configuration (what `docker inspect` shows under `Config`, plus rootfs/history).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ImageConfig {
    /// GOARCH of the image.
    #[serde(default)]
    pub architecture: String,
    /// GOOS of the image.
    #[serde(default)]
    pub os: String,
    /// Creation time (RFC 3339), when stated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// The defaults for containers.
    #[serde(default)]
    pub config: Option<ContainerDefaults>,
    /// Layer diff ids.
    pub rootfs: RootFs,
    /// Build history.
    #[serde(default)]
    pub history: Vec<History>,
}

/// The container defaults an image carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerDefaults {
    /// `uid`, `name`, `uid:gid` or `name:group`.
    #[serde(default)]
    pub user: Option<String>,
    /// `KEY=value` pairs.
    #[serde(default)]
    pub env: Option<Vec<String>>,
    /// Entrypoint argv.
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    /// Default arguments.
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    /// Working directory.
    #[serde(default)]
    pub working_dir: Option<String>,
    /// Image labels.
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    /// Signal that stops the container.
    #[serde(default)]
    pub stop_signal: Option<String>,
    /// Declared volumes.
    #[serde(default)]
    pub volumes: Option<BTreeMap<String, serde_json::Value>>,
    /// Declared ports.
    #[serde(default)]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
}

/// The layer list of the config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RootFs {
    /// Always `layers`.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// Digest of each uncompressed layer, bottom first.
    pub diff_ids: Vec<Digest>,
}

/// One build step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct History {
    /// When the step ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// The command of the step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// Comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Whether the step added no layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_layer: Option<bool>,
}

impl ImageConfig {
    /// Parses a config and checks it against its manifest (one diff id per layer).
    pub fn parse(bytes: &[u8], manifest: &Manifest) -> Result<Self, ManifestError> {
        let config: Self =
            serde_json::from_slice(bytes).map_err(|source| ManifestError::Malformed {
                what: "image config",
                source,
            })?;
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(ManifestError::Invalid {
                what: "image config",
                reason: format!(
                    "{} diff ids for {} layers",
                    config.rootfs.diff_ids.len(),
                    manifest.layers.len()
                ),
            });
        }
        Ok(config)
    }

    /// The `User` of the config, or empty.
    pub fn user(&self) -> &str {
        self.config
            .as_ref()
            .and_then(|c| c.user.as_deref())
            .unwrap_or_default()
    }
}

/// Chain ids of a layer stack (OCI image spec): the first is the first diff id, each next one
/// is `sha256(<previous chain id> + " " + <diff id>)`. A chain id names a layer *with* all its
/// parents, which is what a committed snapshot directory is.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut chain: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let next = match chain.last() {
            None => diff_id.clone(),
            Some(parent) => Digest::sha256_of(format!("{parent} {diff_id}").as_bytes()),
        };
        chain.push(next);
    }
    chain
}

/// The uid and username a config's `User` names: a numeric user part is a uid, anything else a
/// name; a group part is ignored (CRI reports only the user).
pub fn user_of(user: &str) -> (Option<i64>, String) {
    let user_part = user.split(':').next().unwrap_or_default();
    if user_part.is_empty() {
        return (None, String::new());
    }
    match user_part.parse::<i64>() {
        Ok(uid) => (Some(uid), String::new()),
        Err(_) => (None, user_part.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(n: u8) -> Digest {
        Digest::sha256_of(&[n])
    }

    fn manifest_json(media_type: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{media_type}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":10}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":20}}]}}"#,
            digest(1),
            digest(2)
        )
    }

    #[test]
    fn parses_oci_and_docker_manifests() {
        for media_type in [OCI_MANIFEST, DOCKER_MANIFEST] {
            let doc = parse_document("", manifest_json(media_type).as_bytes()).unwrap();
            let Document::Manifest(manifest) = doc else {
                panic!("expected a manifest");
            };
            assert_eq!(manifest.layers.len(), 1);
            assert_eq!(manifest.config.digest, digest(1));
        }
    }

    #[test]
    fn refuses_schema1_and_unknown_types_naming_them() {
        let err = parse_document(
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
            br#"{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("manifest.v1"), "{err}");
        let err =
            parse_document("", br#"{"schemaVersion":2,"mediaType":"text/weird"}"#).unwrap_err();
        assert!(err.to_string().contains("text/weird"), "{err}");
    }

    #[test]
    fn refuses_bad_digest_in_descriptor() {
        let bad = manifest_json(OCI_MANIFEST).replace(&digest(2).to_string(), "sha256:nothex");
        assert!(parse_document("", bad.as_bytes()).is_err());
    }

    #[test]
    fn selects_platform_from_index() {
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST_LIST}","manifests":[
                {{"mediaType":"{DOCKER_MANIFEST}","digest":"{}","size":1,"platform":{{"architecture":"arm64","os":"linux","variant":"v8"}}}},
                {{"mediaType":"{DOCKER_MANIFEST}","digest":"{}","size":1,"platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#,
            digest(3),
            digest(4)
        );
        let Document::Index(index) = parse_document("", index.as_bytes()).unwrap() else {
            panic!("expected an index");
        };
        let amd64 = Platform {
            architecture: "amd64".into(),
            os: "linux".into(),
            variant: None,
        };
        assert_eq!(select_platform(&index, &amd64).unwrap().digest, digest(4));
        let s390x = Platform {
            architecture: "s390x".into(),
            os: "linux".into(),
            variant: None,
        };
        let err = select_platform(&index, &s390x).unwrap_err().to_string();
        assert!(err.contains("linux/arm64/v8"), "{err}");
    }

    #[test]
    fn config_must_match_layer_count() {
        let Document::Manifest(manifest) =
            parse_document("", manifest_json(OCI_MANIFEST).as_bytes()).unwrap()
        else {
            panic!("expected a manifest");
        };
        let good = format!(
            r#"{{"architecture":"amd64","os":"linux","config":{{"User":"1002","Cmd":["sh"]}},"rootfs":{{"type":"layers","diff_ids":["{}"]}}}}"#,
            digest(5)
        );
        let config = ImageConfig::parse(good.as_bytes(), &manifest).unwrap();
        assert_eq!(config.user(), "1002");
        let bad = r#"{"rootfs":{"type":"layers","diff_ids":[]}}"#;
        assert!(ImageConfig::parse(bad.as_bytes(), &manifest).is_err());
    }

    #[test]
    fn chain_ids_follow_the_spec() {
        let diff_ids = [digest(1), digest(2)];
        let chain = chain_ids(&diff_ids);
        assert_eq!(chain[0], digest(1));
        assert_eq!(
            chain[1],
            Digest::sha256_of(format!("{} {}", digest(1), digest(2)).as_bytes())
        );
    }

    #[test]
    fn user_of_splits_uid_and_name() {
        assert_eq!(user_of("1002"), (Some(1002), String::new()));
        assert_eq!(user_of("1003:1004"), (Some(1003), String::new()));
        assert_eq!(user_of("www-data"), (None, "www-data".to_owned()));
        assert_eq!(user_of("www-data:1004"), (None, "www-data".to_owned()));
        assert_eq!(user_of(""), (None, String::new()));
    }
}
