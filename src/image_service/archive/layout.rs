//! Finding the images an archive holds: OCI layouts (`index.json`, blobs by digest, names in
//! the `io.containerd.image.name` / `org.opencontainers.image.ref.name` annotations) and
//! Docker `save` archives (`manifest.json` with `Config`, `RepoTags`, `Layers`).
//!
//! Every document read from an OCI layout is checked against its digest here; layers are
//! verified while they are imported.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{ArchiveError, Entries};
use crate::image_service::digest::Digest;
use crate::image_service::manifest::{
    self, Descriptor, Document, MAX_DOCUMENT_BYTES, Manifest, Platform,
};

/// The annotation containerd (and Docker's OCI export) put the full image name in.
const CONTAINERD_NAME: &str = "io.containerd.image.name";
/// The OCI annotation for a reference name (a full name or only a tag).
const OCI_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// One layer of an archived image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedLayer {
    /// The archive member holding the layer blob.
    pub member: String,
    /// The manifest's descriptor (OCI layouts), checked against the blob on import; Docker
    /// archives have none, the blob's digest is computed instead.
    pub descriptor: Option<Descriptor>,
}

/// One image in an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedImage {
    /// The names it is tagged with (may be empty).
    pub names: Vec<String>,
    /// The member holding the config.
    pub config_member: String,
    /// The config digest the manifest states (OCI layouts).
    pub config_digest: Option<Digest>,
    /// The manifest exactly as stored (OCI layouts), with its digest.
    pub manifest: Option<(Digest, Vec<u8>, Manifest)>,
    /// The layers, base first.
    pub layers: Vec<ArchivedLayer>,
}

#[derive(Deserialize)]
struct OciIndex {
    manifests: Vec<IndexEntry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IndexEntry {
    #[serde(default)]
    media_type: String,
    digest: Digest,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// The member path of a blob in an OCI layout.
pub fn blob_member(digest: &Digest) -> String {
    let text = digest.to_string();
    let algorithm = text
        .split_once(':')
        .map_or("sha256", |(algorithm, _)| algorithm);
    format!("blobs/{algorithm}/{}", digest.hex())
}

/// Reads a document blob of an OCI layout and checks its digest.
fn read_blob(entries: &Entries, digest: &Digest) -> Result<Vec<u8>, ArchiveError> {
    let bytes = entries.read_small(&blob_member(digest), MAX_DOCUMENT_BYTES)?;
    if !digest.matches(&bytes) {
        return Err(ArchiveError::invalid(format!(
            "blob {digest} does not match its digest"
        )));
    }
    Ok(bytes)
}

fn parse_json<T: for<'de> Deserialize<'de>>(what: &str, bytes: &[u8]) -> Result<T, ArchiveError> {
    serde_json::from_slice(bytes).map_err(|err| ArchiveError::invalid(format!("{what}: {err}")))
}

/// The images in the archive; for multi-platform entries, the `platform` one.
pub fn find_images(
    entries: &Entries,
    platform: &Platform,
) -> Result<Vec<ArchivedImage>, ArchiveError> {
    let images = if entries.contains("index.json") {
        oci_images(entries, platform)?
    } else if entries.contains("manifest.json") {
        docker_images(entries)?
    } else {
        return Err(ArchiveError::invalid(
            "neither index.json (OCI layout) nor manifest.json (docker save) found: not an image archive",
        ));
    };
    if images.is_empty() {
        return Err(ArchiveError::invalid("the archive holds no image"));
    }
    Ok(images)
}

fn oci_images(entries: &Entries, platform: &Platform) -> Result<Vec<ArchivedImage>, ArchiveError> {
    let index: OciIndex = parse_json(
        "index.json",
        &entries.read_small("index.json", MAX_DOCUMENT_BYTES)?,
    )?;
    let mut images: Vec<ArchivedImage> = Vec::new();
    for entry in index.manifests {
        let mut names = Vec::new();
        if let Some(name) = entry.annotations.get(CONTAINERD_NAME) {
            names.push(name.clone());
        } else if let Some(name) = entry.annotations.get(OCI_REF_NAME) {
            // A bare tag ("latest") names no repository, so it cannot tag the image.
            if name.contains(['/', ':']) {
                names.push(name.clone());
            }
        }
        let bytes = read_blob(entries, &entry.digest)?;
        let document = manifest::parse_document(&entry.media_type, &bytes)
            .map_err(|err| ArchiveError::invalid(format!("manifest {}: {err}", entry.digest)))?;
        let (digest, bytes, manifest) = match document {
            Document::Manifest(manifest) => (entry.digest, bytes, manifest),
            Document::Index(index) => {
                let chosen = manifest::select_platform(&index, platform).map_err(|err| {
                    ArchiveError::invalid(format!("index {}: {err}", entry.digest))
                })?;
                let digest = chosen.digest.clone();
                let bytes = read_blob(entries, &digest)?;
                match manifest::parse_document(&chosen.media_type, &bytes) {
                    Ok(Document::Manifest(manifest)) => (digest, bytes, manifest),
                    Ok(Document::Index(_)) => {
                        return Err(ArchiveError::invalid(format!(
                            "index {digest} nests another index"
                        )));
                    }
                    Err(err) => {
                        return Err(ArchiveError::invalid(format!("manifest {digest}: {err}")));
                    }
                }
            }
        };
        if let Some(existing) = images.iter_mut().find(|image| {
            image
                .manifest
                .as_ref()
                .is_some_and(|(d, _, _)| *d == digest)
        }) {
            existing.names.extend(names);
            continue;
        }
        images.push(ArchivedImage {
            names,
            config_member: blob_member(&manifest.config.digest),
            config_digest: Some(manifest.config.digest.clone()),
            layers: manifest
                .layers
                .iter()
                .map(|layer| ArchivedLayer {
                    member: blob_member(&layer.digest),
                    descriptor: Some(layer.clone()),
                })
                .collect(),
            manifest: Some((digest, bytes, manifest)),
        });
    }
    Ok(images)
}

fn docker_images(entries: &Entries) -> Result<Vec<ArchivedImage>, ArchiveError> {
    let list: Vec<DockerEntry> = parse_json(
        "manifest.json",
        &entries.read_small("manifest.json", MAX_DOCUMENT_BYTES)?,
    )?;
    Ok(list
        .into_iter()
        .map(|entry| ArchivedImage {
            names: entry.repo_tags.unwrap_or_default(),
            config_member: entry.config,
            config_digest: None,
            manifest: None,
            layers: entry
                .layers
                .into_iter()
                .map(|member| ArchivedLayer {
                    member,
                    descriptor: None,
                })
                .collect(),
        })
        .collect())
}
