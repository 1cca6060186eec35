//! The ImageService adapter: validates requests, calls the image service, converts back.

use std::collections::HashMap;
use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{ResponseStream, batch, instrument, lists};
use crate::image_service::registry::Credentials;
use crate::image_service::{FsUsage, ImageService};
use crate::proto;
use crate::store::ImageRecord;

/// Serves `runtime.v1.ImageService`.
#[derive(Debug, Clone)]
pub struct ImageServer {
    images: Arc<ImageService>,
    /// The largest reply message (`grpc.max_message_bytes`).
    max_message_bytes: usize,
}

impl ImageServer {
    /// A server over the node's image service whose replies stay under `max_message_bytes`.
    pub fn new(images: Arc<ImageService>, max_message_bytes: usize) -> Self {
        Self {
            images,
            max_message_bytes,
        }
    }

    /// The `ListImages` items for `filter`.
    fn image_items(&self, filter: Option<proto::ImageFilter>) -> Result<Vec<proto::Image>, Status> {
        let filter = filter
            .and_then(|filter| filter.image)
            .map(|spec| spec.image);
        let images = self.images.list(filter.as_deref())?;
        Ok(images.iter().map(|image| to_proto_image(image)).collect())
    }
}

/// The image name of a request, which must be present.
fn requested_image(spec: Option<&proto::ImageSpec>) -> Result<&str, Status> {
    spec.map(|spec| spec.image.trim())
        .filter(|image| !image.is_empty())
        .ok_or_else(|| Status::invalid_argument("image name is required (ImageSpec.image)"))
}

/// CRI credentials as the registry client takes them; `None` when the request has none.
fn credentials(auth: Option<&proto::AuthConfig>) -> Option<Credentials> {
    let auth = auth?;
    Credentials::from_auth_config(
        &auth.username,
        &auth.password,
        &auth.auth,
        &auth.server_address,
        &auth.identity_token,
        &auth.registry_token,
    )
}

/// The image a list filter names, for the span.
fn filter_name(filter: Option<&proto::ImageFilter>) -> String {
    filter
        .and_then(|filter| filter.image.as_ref())
        .map(|spec| spec.image.clone())
        .unwrap_or_default()
}

fn to_proto_image(image: &ImageRecord) -> proto::Image {
    proto::Image {
        id: image.id.clone(),
        repo_tags: image.repo_tags.clone(),
        repo_digests: image.repo_digests.clone(),
        size: image.size,
        uid: image.uid.map(|value| proto::Int64Value { value }),
        username: image.username.clone(),
        spec: Some(proto::ImageSpec {
            image: image.id.clone(),
            ..proto::ImageSpec::default()
        }),
        pinned: image.pinned,
    }
}

fn to_proto_usage(usage: &FsUsage, timestamp: i64) -> proto::FilesystemUsage {
    proto::FilesystemUsage {
        timestamp,
        fs_id: Some(proto::FilesystemIdentifier {
            mountpoint: usage.mountpoint.display().to_string(),
        }),
        used_bytes: Some(proto::UInt64Value {
            value: usage.used_bytes,
        }),
        inodes_used: Some(proto::UInt64Value {
            value: usage.inodes_used,
        }),
    }
}

impl ImageServer {
    fn verbose_info(&self, image: &ImageRecord) -> Result<HashMap<String, String>, Status> {
        let config = self
            .images
            .config_of(image)?
            .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
            .unwrap_or(serde_json::Value::Null);
        // Unpacked layer sizes (base first) let clients show `history` with sizes; the
        // config's history has none.
        let layers: Vec<serde_json::Value> = self
            .images
            .layers_of(image)
            .into_iter()
            .map(|(chain_id, diff_id, size)| {
                serde_json::json!({"chainID": chain_id, "diffID": diff_id, "size": size})
            })
            .collect();
        let info = serde_json::json!({
            "id": image.id,
            "manifestDigest": image.manifest_digest,
            "chainIDs": image.chain_ids,
            "layers": layers,
            "imageSpec": config,
        });
        Ok(HashMap::from([("info".to_owned(), info.to_string())]))
    }
}

#[tonic::async_trait]
impl proto::image_service_server::ImageService for ImageServer {
    async fn list_images(
        &self,
        request: Request<proto::ListImagesRequest>,
    ) -> Result<Response<proto::ListImagesResponse>, Status> {
        let filter = request.into_inner().filter;
        let span = tracing::info_span!("cri.ListImages", filter = filter_name(filter.as_ref()));
        instrument::rpc(span, async {
            let images = self.image_items(filter)?;
            batch::fits(
                proto::ListImagesResponse { images },
                self.max_message_bytes,
                "ListImages",
                "StreamImages",
            )
        })
        .await
    }

    type StreamImagesStream = ResponseStream<proto::StreamImagesResponse>;

    async fn stream_images(
        &self,
        request: Request<proto::StreamImagesRequest>,
    ) -> Result<Response<Self::StreamImagesStream>, Status> {
        let filter = request.into_inner().filter;
        let span = tracing::info_span!("cri.StreamImages", filter = filter_name(filter.as_ref()));
        instrument::rpc(span, async {
            let images = self.image_items(filter)?;
            Ok(lists::batched(images, self.max_message_bytes, |images| {
                proto::StreamImagesResponse { images }
            }))
        })
        .await
    }

    async fn image_status(
        &self,
        request: Request<proto::ImageStatusRequest>,
    ) -> Result<Response<proto::ImageStatusResponse>, Status> {
        let request = request.into_inner();
        let name = requested_image(request.image.as_ref())?.to_owned();
        let span = tracing::info_span!("cri.ImageStatus", image = %name);
        instrument::rpc(span, async {
            let Some(image) = self.images.status(&name)? else {
                return Ok(proto::ImageStatusResponse::default());
            };
            let info = if request.verbose {
                self.verbose_info(&image)?
            } else {
                HashMap::new()
            };
            Ok(proto::ImageStatusResponse {
                image: Some(to_proto_image(&image)),
                info,
            })
        })
        .await
    }

    async fn pull_image(
        &self,
        request: Request<proto::PullImageRequest>,
    ) -> Result<Response<proto::PullImageResponse>, Status> {
        let request = request.into_inner();
        let name = requested_image(request.image.as_ref())?.to_owned();
        let credentials = credentials(request.auth.as_ref());
        let span = tracing::info_span!("cri.PullImage", image = %name);
        instrument::rpc(span, async {
            let image_ref = self.images.pull(&name, credentials).await?;
            Ok(proto::PullImageResponse { image_ref })
        })
        .await
    }

    async fn remove_image(
        &self,
        request: Request<proto::RemoveImageRequest>,
    ) -> Result<Response<proto::RemoveImageResponse>, Status> {
        let request = request.into_inner();
        let name = requested_image(request.image.as_ref())?.to_owned();
        let span = tracing::info_span!("cri.RemoveImage", image = %name);
        instrument::rpc(span, async {
            self.images.remove(&name).await?;
            Ok(proto::RemoveImageResponse {})
        })
        .await
    }

    async fn image_fs_info(
        &self,
        _request: Request<proto::ImageFsInfoRequest>,
    ) -> Result<Response<proto::ImageFsInfoResponse>, Status> {
        let span = tracing::info_span!("cri.ImageFsInfo");
        instrument::rpc(span, async {
            let images = Arc::clone(&self.images);
            let (image_fs, container_fs) = tokio::task::spawn_blocking(move || images.fs_usage())
                .await
                .map_err(|err| {
                    Status::internal(format!("filesystem usage task failed: {err}"))
                })??;
            let now = crate::store::now_ns();
            Ok(proto::ImageFsInfoResponse {
                image_filesystems: vec![to_proto_usage(&image_fs, now)],
                container_filesystems: vec![to_proto_usage(&container_fs, now)],
            })
        })
        .await
    }
}
