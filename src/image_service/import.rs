//! Importing image archives (`carrack image import`, what `kind load` does on a node): the
//! images of a Docker `save` archive or an OCI layout tar go into the same stores as pulled
//! images, verified the same way.
//!
//! Every document of an OCI layout is checked against its digest; every layer is unpacked
//! through the same safe unpacker as pulls, its DiffID checked against the config and (OCI)
//! its blob digest and size against the manifest. Unlike pulls, the layer blobs are kept in
//! the content store, so the image can be exported again byte for byte (same image id).
//! Docker archives have no manifest: an OCI manifest is made for them from the config and
//! the blobs' digests. Commit order is the pull's: layers, then blobs and documents, then
//! the image record.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::ImageService;
use super::archive::{self, ArchiveError, ArchivedImage, Entries};
use super::digest::{Algorithm, Digest, HashingReader};
use super::error::ImageError;
use super::manifest::{self, Descriptor, ImageConfig, MAX_DOCUMENT_BYTES, Manifest, OCI_MANIFEST};
use super::reference::Reference;
use super::unpack::{Compression, unpack_layer};
use crate::snapshot::LayerMeta;
use crate::store::ImageRecord;

/// The OCI config media type, for manifests made for Docker archives.
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// An image the import stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedImage {
    /// The image id (config digest).
    pub id: String,
    /// The tags it got.
    pub repo_tags: Vec<String>,
}

/// A layer blob written to the content store's ingest directory, committed with the record;
/// removed if dropped before (an import or pull that failed later).
#[derive(Debug)]
pub(super) struct PendingBlob {
    pub(super) digest: Digest,
    pub(super) temp: PathBuf,
}

impl Drop for PendingBlob {
    fn drop(&mut self) {
        // After the commit the file has been renamed away and this does nothing.
        let _ = std::fs::remove_file(&self.temp);
    }
}

/// Removes a temporary file when dropped.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Copies what is read into a file (the blob being kept).
struct Tee<R> {
    inner: R,
    copy: std::io::BufWriter<File>,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.copy.write_all(&buf[..n])?;
        Ok(n)
    }
}

fn sniff(head: &[u8]) -> Compression {
    match head {
        [0x1f, 0x8b, ..] => Compression::Gzip,
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
        _ => Compression::None,
    }
}

fn layer_media_type(compression: Compression) -> &'static str {
    match compression {
        Compression::None => "application/vnd.oci.image.layer.v1.tar",
        Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
        Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
    }
}

impl ImageService {
    /// Receives an archive as a stream of chunks into a temporary file, then imports it
    /// ([`ImageService::import_archive`]); the file is removed either way.
    pub async fn import_stream<S, E>(
        self: &Arc<Self>,
        mut chunks: S,
    ) -> Result<Vec<ImportedImage>, ImageError>
    where
        S: futures_util::Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        use futures_util::StreamExt;
        use tokio::io::AsyncWriteExt;

        let path = self.content.temp_path("import");
        let _guard = TempFile(path.clone());
        let io = |source| {
            ImageError::Archive(ArchiveError::Io {
                path: path.clone(),
                source,
            })
        };
        let mut file = tokio::fs::File::create(&path).await.map_err(io)?;
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|err| ArchiveError::Upload {
                reason: err.to_string(),
            })?;
            file.write_all(&chunk).await.map_err(io)?;
        }
        file.flush().await.map_err(io)?;
        drop(file);
        self.import_archive(&path).await
    }

    /// Imports every image of the archive at `path` (a tar, or a gzip-compressed tar).
    pub async fn import_archive(
        self: &Arc<Self>,
        path: &Path,
    ) -> Result<Vec<ImportedImage>, ImageError> {
        let service = Arc::clone(self);
        let path = path.to_owned();
        let prepared = tokio::task::spawn_blocking(move || service.prepare_import(&path))
            .await
            .map_err(|err| ImageError::Task {
                image: "archive".to_owned(),
                reason: err.to_string(),
            })??;
        let mut imported = Vec::new();
        for (record, documents, blobs) in prepared {
            let tags = record.repo_tags.clone();
            let id = record.id.clone();
            self.commit_record_with_blobs(record, &documents, blobs)
                .await?;
            tracing::info!(id = %id, tags = ?tags, "image imported");
            imported.push(ImportedImage {
                id,
                repo_tags: tags,
            });
        }
        Ok(imported)
    }

    /// Verifies and unpacks everything (blocking); returns what to commit per image.
    #[allow(clippy::type_complexity)]
    fn prepare_import(
        &self,
        path: &Path,
    ) -> Result<Vec<(ImageRecord, Vec<(Digest, Bytes)>, Vec<PendingBlob>)>, ImageError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| ImageError::Archive(ArchiveError::Io { path, source })
        };
        let mut head = [0u8; 2];
        let read = File::open(path)
            .and_then(|mut file| file.read(&mut head))
            .map_err(io(path))?;
        // `docker save | gzip` is common: decompress to a plain tar first, so members can be
        // read in any order.
        let _plain_guard;
        let tar_path = if read == 2 && head == [0x1f, 0x8b] {
            let plain = self.content.temp_path("import-tar");
            _plain_guard = TempFile(plain.clone());
            let mut decoder = flate2::read::MultiGzDecoder::new(BufReader::new(
                File::open(path).map_err(io(path))?,
            ));
            let mut out = File::create(&plain).map_err(io(&plain))?;
            std::io::copy(&mut decoder, &mut out).map_err(io(path))?;
            plain
        } else {
            path.to_owned()
        };
        let entries = Entries::open(&tar_path)?;
        let images = archive::find_images(&entries, &self.platform)?;
        images
            .iter()
            .map(|image| self.prepare_image(&entries, image))
            .collect()
    }

    #[allow(clippy::type_complexity)]
    fn prepare_image(
        &self,
        entries: &Entries,
        image: &ArchivedImage,
    ) -> Result<(ImageRecord, Vec<(Digest, Bytes)>, Vec<PendingBlob>), ImageError> {
        let label = image
            .names
            .first()
            .cloned()
            .unwrap_or_else(|| image.config_member.clone());
        let config_bytes = entries.read_small(&image.config_member, MAX_DOCUMENT_BYTES)?;
        let config_digest = Digest::sha256_of(&config_bytes);
        if let Some(stated) = &image.config_digest
            && !stated.matches(&config_bytes)
        {
            return Err(ArchiveError::invalid(format!(
                "{label}: config does not match its digest {stated}"
            ))
            .into());
        }
        let config: ImageConfig =
            serde_json::from_slice(&config_bytes).map_err(|source| ImageError::Manifest {
                image: label.clone(),
                source: manifest::ManifestError::Malformed {
                    what: "image config",
                    source,
                },
            })?;
        if config.rootfs.diff_ids.len() != image.layers.len() {
            return Err(ArchiveError::invalid(format!(
                "{label}: the config has {} diff ids for {} layers",
                config.rootfs.diff_ids.len(),
                image.layers.len()
            ))
            .into());
        }
        let chain_ids = manifest::chain_ids(&config.rootfs.diff_ids);
        let _lease = self.leases.acquire(&chain_ids);
        let mut pending = Vec::new();
        let mut descriptors = Vec::new();
        for (index, layer) in image.layers.iter().enumerate() {
            let (descriptor, blob) = self.import_layer(
                &label,
                entries,
                layer,
                &config.rootfs.diff_ids[index],
                &chain_ids[index],
                index.checked_sub(1).map(|parent| &chain_ids[parent]),
            )?;
            descriptors.push(descriptor);
            pending.push(blob);
        }
        let (manifest_digest, manifest_bytes) = match &image.manifest {
            Some((digest, bytes, _)) => (digest.clone(), bytes.clone()),
            None => {
                let made = Manifest {
                    schema_version: 2,
                    media_type: Some(OCI_MANIFEST.to_owned()),
                    config: Descriptor {
                        media_type: OCI_CONFIG.to_owned(),
                        digest: config_digest.clone(),
                        size: i64::try_from(config_bytes.len()).unwrap_or(i64::MAX),
                        urls: None,
                        platform: None,
                    },
                    layers: descriptors,
                };
                let bytes = serde_json::to_vec(&made).map_err(|err| {
                    ArchiveError::invalid(format!("{label}: encoding its manifest: {err}"))
                })?;
                (Digest::sha256_of(&bytes), bytes)
            }
        };
        let mut repo_tags = Vec::new();
        let mut repo_digests = Vec::new();
        for name in &image.names {
            let reference = Reference::parse(name)?;
            repo_tags.extend(reference.repo_tag());
            if image.manifest.is_some() {
                repo_digests.push(reference.repo_digest(&manifest_digest));
            }
        }
        let record = self.new_record(
            &config_digest,
            &config,
            &manifest_digest,
            &chain_ids,
            repo_tags,
            repo_digests,
        );
        let documents = vec![
            (manifest_digest, Bytes::from(manifest_bytes)),
            (config_digest, Bytes::from(config_bytes)),
        ];
        Ok((record, documents, pending))
    }

    /// Unpacks one layer (verifying DiffID and, for OCI, digest and size) while copying its
    /// blob to the ingest directory.
    fn import_layer(
        &self,
        image: &str,
        entries: &Entries,
        layer: &archive::ArchivedLayer,
        diff_id: &Digest,
        chain_id: &Digest,
        parent: Option<&Digest>,
    ) -> Result<(Descriptor, PendingBlob), ImageError> {
        if let Some(descriptor) = &layer.descriptor
            && Compression::from_media_type(&descriptor.media_type).is_none()
        {
            return Err(ImageError::UnsupportedLayer {
                image: image.to_owned(),
                layer: descriptor.digest.clone(),
                media_type: descriptor.media_type.clone(),
            });
        }
        let mut reader = BufReader::new(entries.reader(&layer.member)?);
        let compression = sniff(reader.fill_buf().map_err(|source| ArchiveError::Io {
            path: layer.member.clone().into(),
            source,
        })?);
        let algorithm = layer
            .descriptor
            .as_ref()
            .map_or(Algorithm::Sha256, |d| d.digest.algorithm());
        let temp = self.content.temp_path("blob");
        // From here the pending blob owns the file: any early return removes it.
        let mut pending = PendingBlob {
            digest: Digest::sha256_of(b""),
            temp: temp.clone(),
        };
        let copy = File::create(&temp).map_err(|source| ArchiveError::Io {
            path: temp.clone(),
            source,
        })?;
        let mut hashing = HashingReader::new(
            Tee {
                inner: reader,
                copy: std::io::BufWriter::new(copy),
            },
            algorithm,
        );
        let ingest = self.snapshots.begin_layer(&chain_id.to_string())?;
        let unpacked = unpack_layer(
            &mut hashing,
            compression,
            ingest.path(),
            &self.unpack_options,
        );
        let bytes = hashing.bytes_read();
        let (digest, tee) = hashing.finish();
        tee.copy
            .into_inner()
            .map_err(|err| err.into_error())
            .and_then(|file| file.sync_all())
            .map_err(|source| ArchiveError::Io {
                path: temp.clone(),
                source,
            })?;
        let verification = |reason: String| ImageError::LayerVerification {
            image: image.to_owned(),
            layer: digest.clone(),
            reason,
        };
        if let Some(descriptor) = &layer.descriptor {
            if digest != descriptor.digest {
                return Err(verification(format!(
                    "blob digest is {digest}, the manifest says {}",
                    descriptor.digest
                )));
            }
            if i64::try_from(bytes).ok() != Some(descriptor.size) {
                return Err(verification(format!(
                    "blob has {bytes} bytes, the manifest says {}",
                    descriptor.size
                )));
            }
        }
        let unpacked = unpacked.map_err(|source| ImageError::Unpack {
            image: image.to_owned(),
            layer: digest.clone(),
            source: Box::new(source),
        })?;
        if unpacked.diff_id != *diff_id {
            return Err(verification(format!(
                "uncompressed digest {} does not match the config's diff id {diff_id}",
                unpacked.diff_id
            )));
        }
        ingest.commit(LayerMeta {
            parent: parent.map(ToString::to_string),
            diff_id: diff_id.to_string(),
            size: unpacked.uncompressed_bytes,
        })?;
        let descriptor = layer.descriptor.clone().unwrap_or_else(|| Descriptor {
            media_type: layer_media_type(compression).to_owned(),
            digest: digest.clone(),
            size: i64::try_from(bytes).unwrap_or(i64::MAX),
            urls: None,
            platform: None,
        });
        pending.digest = digest;
        Ok((descriptor, pending))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_is_sniffed_from_magic_bytes() {
        assert_eq!(sniff(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(sniff(&[0x28, 0xb5, 0x2f, 0xfd]), Compression::Zstd);
        assert_eq!(sniff(b"usr/"), Compression::None);
        assert_eq!(sniff(b""), Compression::None);
    }
}
