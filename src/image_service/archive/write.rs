//! Writing an image archive: an OCI image layout in a tar (`oci-layout`, `index.json`,
//! `blobs/<alg>/<hex>`) that also carries Docker's `manifest.json`, so both `docker load`
//! and OCI tools (`ctr images import`, `carrack image import`) read it. Headers are fixed
//! (mode 0644, uid 0, mtime 0), so the same images give the same bytes.

use std::collections::HashSet;
use std::io::{Read, Write};

use serde_json::json;

use super::ArchiveError;
use super::layout::blob_member;
use crate::image_service::digest::Digest;
use crate::image_service::manifest::{Manifest, OCI_MANIFEST};

/// One image to write.
#[derive(Debug, Clone)]
pub struct ExportedImage {
    /// Its names (`docker.io/library/busybox:latest`).
    pub names: Vec<String>,
    /// The manifest's digest and bytes, as stored.
    pub manifest_digest: Digest,
    /// The manifest bytes.
    pub manifest_bytes: Vec<u8>,
    /// The parsed manifest (config and layer descriptors).
    pub manifest: Manifest,
    /// The config bytes (their digest is the manifest's config digest).
    pub config_bytes: Vec<u8>,
}

/// Where an archive being written goes wrong: the output stream.
fn output_error(source: std::io::Error) -> ArchiveError {
    ArchiveError::Io {
        path: "<export stream>".into(),
        source,
    }
}

fn append(
    builder: &mut tar::Builder<impl Write>,
    member: &str,
    size: u64,
    data: impl Read,
) -> Result<(), ArchiveError> {
    let mut header = tar::Header::new_ustar();
    header.set_size(size);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    builder
        .append_data(&mut header, member, data)
        .map_err(output_error)
}

/// The tag part of a name (`latest` of `docker.io/library/busybox:latest`).
fn tag_of(name: &str) -> Option<&str> {
    let (_, tag) = name.rsplit_once(':')?;
    (!tag.contains('/')).then_some(tag)
}

/// Writes the images to `out`; `blob` opens a layer blob (with its size) by digest.
pub fn write_archive<W: Write, R: Read>(
    out: W,
    images: &[ExportedImage],
    mut blob: impl FnMut(&Digest) -> Result<(R, u64), ArchiveError>,
) -> Result<W, ArchiveError> {
    let mut builder = tar::Builder::new(out);
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
    append(&mut builder, "oci-layout", layout.len() as u64, &layout[..])?;
    let mut written: HashSet<Digest> = HashSet::new();
    let mut index_entries = Vec::new();
    let mut docker_entries = Vec::new();
    for image in images {
        let documents = [
            (&image.manifest_digest, &image.manifest_bytes),
            (&image.manifest.config.digest, &image.config_bytes),
        ];
        for (digest, bytes) in documents {
            if written.insert(digest.clone()) {
                append(
                    &mut builder,
                    &blob_member(digest),
                    bytes.len() as u64,
                    &bytes[..],
                )?;
            }
        }
        for layer in &image.manifest.layers {
            if written.insert(layer.digest.clone()) {
                let (reader, size) = blob(&layer.digest)?;
                append(&mut builder, &blob_member(&layer.digest), size, reader)?;
            }
        }
        let media_type = image
            .manifest
            .media_type
            .clone()
            .unwrap_or_else(|| OCI_MANIFEST.to_owned());
        let descriptor = |annotations: serde_json::Value| {
            json!({
                "mediaType": media_type,
                "digest": image.manifest_digest.to_string(),
                "size": image.manifest_bytes.len(),
                "annotations": annotations,
            })
        };
        if image.names.is_empty() {
            index_entries.push(descriptor(json!({})));
        }
        for name in &image.names {
            let mut annotations = json!({"io.containerd.image.name": name});
            if let Some(tag) = tag_of(name) {
                annotations["org.opencontainers.image.ref.name"] = json!(tag);
            }
            index_entries.push(descriptor(annotations));
        }
        docker_entries.push(json!({
            "Config": blob_member(&image.manifest.config.digest),
            "RepoTags": image.names,
            "Layers": image.manifest.layers.iter().map(|l| blob_member(&l.digest)).collect::<Vec<_>>(),
        }));
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": index_entries,
    });
    for (member, value) in [
        ("index.json", index),
        ("manifest.json", json!(docker_entries)),
    ] {
        let bytes = serde_json::to_vec(&value)
            .map_err(|err| ArchiveError::invalid(format!("encoding {member}: {err}")))?;
        append(&mut builder, member, bytes.len() as u64, &bytes[..])?;
    }
    builder.into_inner().map_err(output_error)
}
