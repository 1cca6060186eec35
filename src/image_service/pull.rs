//! Pulling an image: resolve, verify, download and unpack layers while they stream, commit.
//!
//! Order of commitment (so a crash leaves the old state or the new one): layers are unpacked
//! into ingest directories and committed one by one only after both their compressed digest
//! and their DiffID are verified; manifest and config go to the content store; the image
//! record, which is what makes the image visible, is written last.
//!
//! The compressed blob of each layer is kept too (as containerd does), written to a temporary
//! file as it streams past the unpacker and moved into the content store with the record, so
//! that a pulled image can be exported unchanged (same manifest, same id). A layer already
//! unpacked by an earlier pull or import is not downloaded again, and so adds no blob here.
//!
//! Layers are fetched concurrently (`images.max_concurrent_downloads`) in spawned tasks: a
//! client whose deadline passes stops waiting, but the download carries on and its retry
//! finds the layers done. A per-layer lock makes concurrent pulls of a shared layer share
//! one download.

use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::{Semaphore, mpsc};
use tracing::Instrument;

use super::ImageService;
use super::content::ContentError;
use super::digest::{Digest, HashingReader};
use super::error::ImageError;
use super::import::PendingBlob;
use super::manifest::{self, Descriptor, Document, ImageConfig, Manifest};
use super::progress::{LayerCounter, Registration};
use super::reference::Reference;
use super::registry::Credentials;
use super::tee::TeeReader;
use super::unpack::{Compression, unpack_layer};
use crate::snapshot::LayerMeta;

/// Chunks buffered between the download and the unpacking thread.
const PIPE_CHUNKS: usize = 32;

/// What a layer task needs, owned so it can run in a spawned task.
struct LayerJob {
    image: String,
    reference: Reference,
    descriptor: Descriptor,
    diff_id: Digest,
    chain_id: Digest,
    parent: Option<Digest>,
    credentials: Option<Credentials>,
    /// Where the download counts its bytes for progress readers.
    progress: Option<Arc<LayerCounter>>,
}

impl ImageService {
    /// Pulls `name` and returns the image id (the config digest).
    pub async fn pull(
        self: &Arc<Self>,
        name: &str,
        credentials: Option<Credentials>,
    ) -> Result<String, ImageError> {
        let reference = Reference::parse(name)?;
        let image = reference.to_string();
        let top = self
            .registry
            .fetch_manifest(&reference, manifest::MANIFEST_ACCEPT, credentials.as_ref())
            .instrument(tracing::info_span!("pull.resolve", image = %image))
            .await?;
        let resolved_digest = top.digest.clone();
        let mut documents = vec![(top.digest.clone(), top.bytes.clone())];
        let manifest = match self.parse(&image, &top.media_type, &top.bytes)? {
            Document::Manifest(manifest) => manifest,
            Document::Index(index) => {
                let entry =
                    manifest::select_platform(&index, &self.platform).map_err(|source| {
                        ImageError::Manifest {
                            image: image.clone(),
                            source,
                        }
                    })?;
                let by_digest = reference.with_digest(entry.digest.clone());
                let fetched = self
                    .registry
                    .fetch_manifest(&by_digest, manifest::MANIFEST_ACCEPT, credentials.as_ref())
                    .instrument(tracing::info_span!("pull.manifest", digest = %entry.digest))
                    .await?;
                documents.push((fetched.digest.clone(), fetched.bytes.clone()));
                match self.parse(&image, &fetched.media_type, &fetched.bytes)? {
                    Document::Manifest(manifest) => manifest,
                    Document::Index(_) => {
                        return Err(ImageError::Manifest {
                            image,
                            source: manifest::ManifestError::Invalid {
                                what: "index",
                                reason: "an index entry for the platform is itself an index"
                                    .to_owned(),
                            },
                        });
                    }
                }
            }
        };
        let manifest_digest = documents
            .last()
            .map(|(digest, _)| digest.clone())
            .unwrap_or_else(|| resolved_digest.clone());

        let config_bytes = self
            .registry
            .fetch_blob_bytes(
                &reference,
                &manifest.config.digest,
                credentials.as_ref(),
                manifest::MAX_DOCUMENT_BYTES,
            )
            .instrument(tracing::info_span!("pull.config", digest = %manifest.config.digest))
            .await?;
        let config = ImageConfig::parse(&config_bytes, &manifest).map_err(|source| {
            ImageError::Manifest {
                image: image.clone(),
                source,
            }
        })?;
        let chain_ids = manifest::chain_ids(&config.rootfs.diff_ids);
        let lease = self.leases.acquire(&chain_ids);
        let progress = self.progress.register(
            &image,
            manifest.layers.iter().map(|layer| {
                (
                    layer.digest.to_string(),
                    u64::try_from(layer.size).unwrap_or(0),
                )
            }),
        );

        let blobs = self
            .fetch_layers(
                &image,
                &reference,
                &manifest,
                &config,
                &chain_ids,
                credentials,
                &progress,
            )
            .instrument(tracing::info_span!(
                "pull.layers",
                layers = manifest.layers.len()
            ))
            .await?;

        crate::failpoint::hit(crate::failpoint::PULL_AFTER_LAYERS);
        documents.push((manifest.config.digest.clone(), config_bytes));
        let record = self.new_record(
            &manifest.config.digest,
            &config,
            &manifest_digest,
            &chain_ids,
            reference.repo_tag().into_iter().collect(),
            vec![reference.repo_digest(&resolved_digest)],
        );
        let id = record.id.clone();
        self.commit_record_with_blobs(record, &documents, blobs)
            .instrument(tracing::info_span!("pull.commit", id = %id))
            .await?;
        drop(lease);
        drop(progress);
        tracing::info!(image = %image, id = %id, layers = chain_ids.len(), "image pulled");
        Ok(id)
    }

    fn parse(&self, image: &str, media_type: &str, bytes: &Bytes) -> Result<Document, ImageError> {
        manifest::parse_document(media_type, bytes).map_err(|source| ImageError::Manifest {
            image: image.to_owned(),
            source,
        })
    }

    // The pull's parts, each needed by every layer task: a struct would only rename them.
    #[allow(clippy::too_many_arguments)]
    async fn fetch_layers(
        self: &Arc<Self>,
        image: &str,
        reference: &Reference,
        manifest: &Manifest,
        config: &ImageConfig,
        chain_ids: &[Digest],
        credentials: Option<Credentials>,
        progress: &Registration<'_>,
    ) -> Result<Vec<PendingBlob>, ImageError> {
        let slots = Arc::new(Semaphore::new(self.max_concurrent_downloads));
        // Plain spawned tasks, not a JoinSet: a JoinSet would abort the downloads when a client's
        // deadline drops this future, and the retry would start over.
        let mut tasks = Vec::with_capacity(manifest.layers.len());
        for (index, descriptor) in manifest.layers.iter().enumerate() {
            let job = LayerJob {
                image: image.to_owned(),
                reference: reference.clone(),
                descriptor: descriptor.clone(),
                diff_id: config.rootfs.diff_ids[index].clone(),
                chain_id: chain_ids[index].clone(),
                parent: index.checked_sub(1).map(|parent| chain_ids[parent].clone()),
                credentials: credentials.clone(),
                progress: progress.layer(index),
            };
            let service = Arc::clone(self);
            let slots = Arc::clone(&slots);
            let span = tracing::info_span!(
                "pull.layer",
                digest = %job.descriptor.digest,
                compressed_bytes = tracing::field::Empty,
                unpacked_bytes = tracing::field::Empty,
            );
            tasks.push(tokio::spawn(
                async move {
                    // A closed semaphore cannot happen (we never close it); run unthrottled then.
                    let _slot = slots.acquire_owned().await.ok();
                    service.fetch_layer(job).await
                }
                .instrument(span),
            ));
        }
        let mut first_error = None;
        let mut blobs = Vec::with_capacity(tasks.len());
        for task in tasks {
            let result = task.await.unwrap_or_else(|err| {
                Err(ImageError::Task {
                    image: image.to_owned(),
                    reason: err.to_string(),
                })
            });
            match result {
                Ok(blob) => blobs.extend(blob),
                Err(err) => {
                    first_error.get_or_insert(err);
                }
            }
        }
        first_error.map_or(Ok(blobs), Err)
    }

    /// Downloads and unpacks one layer; returns its compressed blob, to be committed with the
    /// image record (none when the layer was already there).
    async fn fetch_layer(&self, job: LayerJob) -> Result<Option<PendingBlob>, ImageError> {
        let chain_key = job.chain_id.to_string();
        let _held = self.layer_locks.lock(&chain_key).await;
        if self.snapshots.layer(&chain_key).is_some() {
            if let Some(progress) = &job.progress {
                progress.done();
            }
            return Ok(None);
        }
        let compression =
            Compression::from_media_type(&job.descriptor.media_type).ok_or_else(|| {
                ImageError::UnsupportedLayer {
                    image: job.image.clone(),
                    layer: job.descriptor.digest.clone(),
                    media_type: job.descriptor.media_type.clone(),
                }
            })?;
        let declared_size = u64::try_from(job.descriptor.size).unwrap_or(0);
        let mut blob = self
            .registry
            .fetch_blob(
                &job.reference,
                &job.descriptor.digest,
                job.credentials.as_ref(),
            )
            .instrument(tracing::info_span!("layer.fetch"))
            .await?;
        // Download, inflate and unpack run as one pipeline (the unpacker reads the stream).
        let unpack_span = tracing::info_span!("layer.unpack");
        let unpack_entered = unpack_span.clone();
        let ingest = self.snapshots.begin_layer(&chain_key)?;
        let target = ingest.path().to_owned();
        let options = self.unpack_options.clone();
        let algorithm = job.descriptor.digest.algorithm();
        // Removed on drop unless committed with the record.
        let blob_copy = PendingBlob {
            digest: job.descriptor.digest.clone(),
            temp: self.content.temp_path("layer"),
        };
        let copy_file =
            std::fs::File::create(&blob_copy.temp).map_err(|source| ContentError::Io {
                path: blob_copy.temp.clone(),
                source,
            })?;

        let (sender, receiver) = mpsc::channel::<Result<Bytes, std::io::Error>>(PIPE_CHUNKS);
        let unpacker = tokio::task::spawn_blocking(move || {
            let _unpack = unpack_entered.entered();
            let mut hashing = HashingReader::new(
                TeeReader::new(ChannelReader::new(receiver), copy_file),
                algorithm,
            );
            let unpacked = unpack_layer(&mut hashing, compression, &target, &options);
            // Read what is left so the compressed digest covers the whole blob.
            let drained = std::io::copy(&mut hashing, &mut std::io::sink());
            let bytes = hashing.bytes_read();
            let (digest, tee) = hashing.finish();
            (unpacked, drained, digest, bytes, tee.finish().map(drop))
        });

        let mut received: u64 = 0;
        let mut transfer_error = None;
        while let Some(chunk) = blob.next().instrument(unpack_span.clone()).await {
            match chunk {
                Ok(chunk) => {
                    received += chunk.len() as u64;
                    if let Some(progress) = &job.progress {
                        progress.received(chunk.len() as u64);
                    }
                    if received > declared_size {
                        transfer_error = Some(ImageError::LayerVerification {
                            image: job.image.clone(),
                            layer: job.descriptor.digest.clone(),
                            reason: format!(
                                "blob is larger than the {declared_size} bytes its descriptor declares"
                            ),
                        });
                        break;
                    }
                    if sender.send(Ok(chunk)).await.is_err() {
                        break; // the unpacker stopped early; its error says why
                    }
                }
                Err(err) => {
                    let message = err.to_string();
                    transfer_error = Some(ImageError::Registry(err));
                    let _ = sender.send(Err(std::io::Error::other(message))).await;
                    break;
                }
            }
        }
        drop(sender);
        let (unpacked, drained, digest, bytes, copied) = unpacker
            .instrument(unpack_span)
            .await
            .map_err(|err| ImageError::Task {
                image: job.image.clone(),
                reason: err.to_string(),
            })?;
        if let Some(err) = transfer_error {
            return Err(err);
        }
        // A blob copy that could not be written (a full disk) explains any read failure.
        copied.map_err(|source| ContentError::Io {
            path: blob_copy.temp.clone(),
            source,
        })?;
        // The blob's size and digest are checked before the unpacker's verdict: bytes that
        // are not the blob the manifest names make any unpack error a mere symptom (a
        // flipped byte reads as a corrupt gzip stream), and the mismatch is the cause.
        // The unpacker drains the stream even after a failure, so the digest covers it all.
        drained.map_err(|err| ImageError::LayerVerification {
            image: job.image.clone(),
            layer: job.descriptor.digest.clone(),
            reason: format!("reading the blob failed: {err}"),
        })?;
        let verification = |reason: String| ImageError::LayerVerification {
            image: job.image.clone(),
            layer: job.descriptor.digest.clone(),
            reason,
        };
        if bytes != declared_size {
            return Err(verification(format!(
                "blob has {bytes} bytes, its descriptor declares {declared_size}"
            )));
        }
        if digest != job.descriptor.digest {
            return Err(verification(format!("blob digest is {digest}")));
        }
        let unpacked = unpacked.map_err(|source| ImageError::Unpack {
            image: job.image.clone(),
            layer: job.descriptor.digest.clone(),
            source: Box::new(source),
        })?;
        if unpacked.diff_id != job.diff_id {
            return Err(verification(format!(
                "uncompressed digest {} does not match the config's diff id {}",
                unpacked.diff_id, job.diff_id
            )));
        }
        let layer = tracing::Span::current();
        layer.record("compressed_bytes", bytes);
        layer.record("unpacked_bytes", unpacked.uncompressed_bytes);
        tracing::info_span!("layer.commit").in_scope(|| {
            ingest.commit(LayerMeta {
                parent: job.parent.map(|parent| parent.to_string()),
                diff_id: job.diff_id.to_string(),
                size: unpacked.uncompressed_bytes,
            })
        })?;
        crate::failpoint::hit(crate::failpoint::PULL_AFTER_FIRST_LAYER);
        if let Some(progress) = &job.progress {
            progress.done();
        }
        tracing::debug!(layer = %job.descriptor.digest, bytes, "layer unpacked");
        Ok(Some(blob_copy))
    }
}

/// A blocking `Read` over chunks sent from the async download.
struct ChannelReader {
    receiver: mpsc::Receiver<Result<Bytes, std::io::Error>>,
    current: Bytes,
}

impl ChannelReader {
    fn new(receiver: mpsc::Receiver<Result<Bytes, std::io::Error>>) -> Self {
        Self {
            receiver,
            current: Bytes::new(),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.receiver.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(err)) => return Err(err),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}
