//! The image transfer extension (`carrack.images.v1.Images`): import and export of image
//! archives for `carrack image import`/`export`, and layer progress of pulls in flight for
//! `carrack pull`'s progress bars, and a full verify of the image store for
//! `carrack image verify`. Served on the CRI socket, but a separate
//! service in its own proto package: CRI clients never see it.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::ResponseStream;
use super::instrument;
use crate::image_service::{ImageService, LayerProgress, LayerState};
use crate::proto::images as proto;

/// Chunk size of an exported archive's stream.
const CHUNK_BYTES: usize = 1 << 20;

/// Chunks buffered between the archive writer and the gRPC stream.
const CHUNKS_IN_FLIGHT: usize = 8;

/// Time between pull progress snapshots when the client names none.
const DEFAULT_PROGRESS_INTERVAL_MS: u64 = 100;

/// The shortest time between pull progress snapshots a client may ask for.
const MIN_PROGRESS_INTERVAL_MS: u64 = 20;

/// Serves `carrack.images.v1.Images`.
#[derive(Debug, Clone)]
pub struct ImageTransferServer {
    images: Arc<ImageService>,
}

impl ImageTransferServer {
    /// A server over the node's image service.
    pub fn new(images: Arc<ImageService>) -> Self {
        Self { images }
    }
}

/// A `Write` that sends 1 MiB chunks into the reply stream; it fails once the client has
/// gone, which stops the export.
struct ChunkSender {
    sender: mpsc::Sender<Result<proto::ExportResponse, Status>>,
    buffer: Vec<u8>,
}

impl ChunkSender {
    fn send_buffer(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let data = std::mem::replace(&mut self.buffer, Vec::with_capacity(CHUNK_BYTES));
        self.sender
            .blocking_send(Ok(proto::ExportResponse { data }))
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away")
            })
    }
}

impl Write for ChunkSender {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let room = CHUNK_BYTES - self.buffer.len();
        let taken = room.min(buf.len());
        self.buffer.extend_from_slice(&buf[..taken]);
        if self.buffer.len() == CHUNK_BYTES {
            self.send_buffer()?;
        }
        Ok(taken)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send_buffer()
    }
}

#[tonic::async_trait]
impl proto::images_server::Images for ImageTransferServer {
    async fn import(
        &self,
        request: Request<Streaming<proto::ImportRequest>>,
    ) -> Result<Response<proto::ImportResponse>, Status> {
        let chunks = request
            .into_inner()
            .map(|chunk| chunk.map(|chunk| Bytes::from(chunk.data)));
        let span = tracing::info_span!("images.Import");
        instrument::rpc(span, async {
            let imported = self.images.import_stream(chunks).await?;
            Ok(proto::ImportResponse {
                images: imported
                    .into_iter()
                    .map(|image| proto::ImportedImage {
                        id: image.id,
                        repo_tags: image.repo_tags,
                    })
                    .collect(),
            })
        })
        .await
    }

    type ExportStream = ResponseStream<proto::ExportResponse>;

    async fn export(
        &self,
        request: Request<proto::ExportRequest>,
    ) -> Result<Response<Self::ExportStream>, Status> {
        let names = request.into_inner().images;
        if names.is_empty() {
            return Err(Status::invalid_argument(
                "name at least one image to export",
            ));
        }
        let span = tracing::info_span!("images.Export", images = ?names);
        let (sender, receiver) = mpsc::channel(CHUNKS_IN_FLIGHT);
        let images = Arc::clone(&self.images);
        let errors = sender.clone();
        let task_span = span.clone();
        tokio::task::spawn_blocking(move || {
            let _entered = task_span.enter();
            let writer = ChunkSender {
                sender,
                buffer: Vec::with_capacity(CHUNK_BYTES),
            };
            let result = images
                .export_archive(&names, writer)
                .map_err(Status::from)
                .and_then(|mut writer| {
                    writer
                        .flush()
                        .map_err(|err| Status::unavailable(err.to_string()))
                });
            if let Err(status) = result {
                tracing::warn!(code = ?status.code(), message = status.message(), "export failed");
                let _ = errors.blocking_send(Err(status));
            }
        });
        instrument::rpc(span, async {
            Ok(Box::pin(ReceiverStream::new(receiver)) as Self::ExportStream)
        })
        .await
    }

    async fn verify(
        &self,
        _request: Request<proto::VerifyRequest>,
    ) -> Result<Response<proto::VerifyResponse>, Status> {
        let span = tracing::info_span!("images.Verify");
        instrument::rpc(span, async {
            let report = self.images.verify().await?;
            Ok(proto::VerifyResponse {
                images: report.images as u64,
                blobs: report.blobs as u64,
                layers: report.layers as u64,
                problems: report.problems,
            })
        })
        .await
    }

    type PullProgressStream = ResponseStream<proto::PullProgressResponse>;

    async fn pull_progress(
        &self,
        request: Request<proto::PullProgressRequest>,
    ) -> Result<Response<Self::PullProgressStream>, Status> {
        let request = request.into_inner();
        let interval = Duration::from_millis(match request.interval_ms {
            0 => DEFAULT_PROGRESS_INTERVAL_MS,
            ms => u64::from(ms).max(MIN_PROGRESS_INTERVAL_MS),
        });
        let images = Arc::clone(&self.images);
        // Checked once here, so a bad name is an error reply rather than an empty stream.
        images.pull_progress(&request.image).map_err(Status::from)?;
        let (sender, receiver) = mpsc::channel(1);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            loop {
                ticks.tick().await;
                let reply = match images.pull_progress(&request.image).ok().flatten() {
                    Some(snapshot) => proto::PullProgressResponse {
                        layers: snapshot.layers.into_iter().map(layer_progress).collect(),
                        pull: snapshot.pull,
                        finished: snapshot.finished,
                    },
                    None => proto::PullProgressResponse::default(),
                };
                // Ends when the client has gone.
                if sender.send(Ok(reply)).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(
            Box::pin(ReceiverStream::new(receiver)) as Self::PullProgressStream
        ))
    }
}

fn layer_progress(layer: LayerProgress) -> proto::LayerProgress {
    proto::LayerProgress {
        digest: layer.digest,
        total_bytes: layer.total_bytes,
        received_bytes: layer.received_bytes,
        state: match layer.state {
            LayerState::Waiting => "waiting",
            LayerState::Downloading => "downloading",
            LayerState::Done => "done",
        }
        .to_owned(),
    }
}
