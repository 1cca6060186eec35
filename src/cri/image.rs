//! The ImageService adapter. Pulling and managing images is the image issue's work; until it
//! lands every RPC answers `UNIMPLEMENTED` naming itself.

use tonic::{Request, Response, Status};

use super::{ResponseStream, not_built};
use crate::proto;

/// Serves `runtime.v1.ImageService`.
#[derive(Debug, Clone, Default)]
pub struct ImageServer {}

#[tonic::async_trait]
impl proto::image_service_server::ImageService for ImageServer {
    async fn list_images(
        &self,
        _request: Request<proto::ListImagesRequest>,
    ) -> Result<Response<proto::ListImagesResponse>, Status> {
        not_built("ListImages").await
    }

    type StreamImagesStream = ResponseStream<proto::StreamImagesResponse>;

    async fn stream_images(
        &self,
        _request: Request<proto::StreamImagesRequest>,
    ) -> Result<Response<Self::StreamImagesStream>, Status> {
        not_built("StreamImages").await
    }

    async fn image_status(
        &self,
        _request: Request<proto::ImageStatusRequest>,
    ) -> Result<Response<proto::ImageStatusResponse>, Status> {
        not_built("ImageStatus").await
    }

    async fn pull_image(
        &self,
        _request: Request<proto::PullImageRequest>,
    ) -> Result<Response<proto::PullImageResponse>, Status> {
        not_built("PullImage").await
    }

    async fn remove_image(
        &self,
        _request: Request<proto::RemoveImageRequest>,
    ) -> Result<Response<proto::RemoveImageResponse>, Status> {
        not_built("RemoveImage").await
    }

    async fn image_fs_info(
        &self,
        _request: Request<proto::ImageFsInfoRequest>,
    ) -> Result<Response<proto::ImageFsInfoResponse>, Status> {
        not_built("ImageFsInfo").await
    }
}
