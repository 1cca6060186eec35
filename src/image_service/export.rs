//! Exporting images to an archive (`carrack image export`): an OCI layout tar that also
//! carries Docker's `manifest.json` (see `archive::write`).
//!
//! The archive holds the image's own manifest, config and layer blobs, so importing it gives
//! the same image id. Imports and pulls keep every layer blob they bring (a pull writes the
//! compressed stream to a file as it unpacks it). A layer another image had already unpacked
//! is not fetched again, so its blob exists only if that image brought it; when one is
//! missing (an image pulled by an older Carrack, or sharing a layer with one) the export fails
//! with a message saying so rather than inventing different layers.

use std::io::Write;

use super::ImageService;
use super::archive::{self, ExportedImage};
use super::digest::Digest;
use super::error::ImageError;
use super::manifest::{self, Document};

impl ImageService {
    /// Writes the images `names` names (tags, ids or id prefixes) to `out` as an archive.
    /// Blocking: call it from a blocking thread.
    pub fn export_archive<W: Write>(&self, names: &[String], out: W) -> Result<W, ImageError> {
        let mut images = Vec::new();
        for name in names {
            let record = self.status(name)?.ok_or_else(|| ImageError::NotFound {
                image: name.clone(),
            })?;
            let unexportable = |reason: &str| ImageError::NotExportable {
                image: name.clone(),
                reason: reason.to_owned(),
            };
            let manifest_digest: Digest = record
                .manifest_digest
                .parse()
                .map_err(|_| unexportable("its record names no manifest"))?;
            let manifest_bytes = self
                .content
                .get(&manifest_digest)?
                .ok_or_else(|| unexportable("its manifest is not in the content store"))?;
            let manifest = match manifest::parse_document("", &manifest_bytes) {
                Ok(Document::Manifest(manifest)) => manifest,
                _ => return Err(unexportable("its stored manifest does not parse")),
            };
            let config_bytes = self
                .content
                .get(&manifest.config.digest)?
                .ok_or_else(|| unexportable("its config is not in the content store"))?;
            for layer in &manifest.layers {
                if self.content.open_blob(&layer.digest)?.is_none() {
                    return Err(unexportable(&format!(
                        "the blob of its layer {} is not kept (the layer was unpacked by an \
                         image pulled before layer blobs were kept); remove the images using \
                         it and pull again, or pull it where it is needed",
                        layer.digest
                    )));
                }
            }
            images.push(ExportedImage {
                names: record.repo_tags.clone(),
                manifest_digest,
                manifest_bytes,
                manifest,
                config_bytes,
            });
        }
        let out = archive::write_archive(out, &images, |digest| {
            let missing = || archive::ArchiveError::Missing {
                member: digest.to_string(),
            };
            let file = self
                .content
                .open_blob(digest)
                .map_err(|_| missing())?
                .ok_or_else(missing)?;
            let size = file
                .metadata()
                .map_err(|source| archive::ArchiveError::Io {
                    path: digest.to_string().into(),
                    source,
                })?
                .len();
            Ok((file, size))
        })?;
        Ok(out)
    }
}
