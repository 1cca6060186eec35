//! `carrack image import|export|verify`: image archives through Carrack's image transfer extension
//! (`carrack.images.v1`, on the same socket as CRI). Only Carrack serves it: against another
//! runtime these verbs say so.

mod export;
mod import;
mod verify;

use super::client::Cri;
use super::error::CliError;
use crate::proto::images::images_client::ImagesClient;

/// Chunk size of an archive upload (well under the 16 MiB message limit).
const CHUNK_BYTES: usize = 1 << 20;

/// The `image` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ImageCommand {
    /// Import images from a Docker `save` or OCI archive (a file, or `-` for stdin).
    Import(import::ImportArgs),
    /// Export images to an archive (OCI layout with Docker's manifest.json).
    Export(export::ExportArgs),
    /// Verify the whole image store (every blob re-hashed, every image's documents and
    /// layers, nothing stored that no image owns); exits non-zero on any problem.
    Verify,
}

/// Runs an `image` subcommand.
pub async fn image(cri: &mut Cri, command: ImageCommand) -> Result<(), CliError> {
    match command {
        ImageCommand::Import(args) => import::import(cri, args).await,
        ImageCommand::Export(args) => export::export(cri, args).await,
        ImageCommand::Verify => verify::verify(cri).await,
    }
}

/// The extension's client on the runtime's connection.
fn client(cri: &Cri) -> ImagesClient<tonic::transport::Channel> {
    ImagesClient::new(cri.channel.clone())
        .max_decoding_message_size(16 << 20)
        .max_encoding_message_size(16 << 20)
}

/// An RPC error, with a clearer message when the runtime does not have the extension.
fn rpc_error(rpc: &'static str, endpoint: &str) -> impl FnOnce(tonic::Status) -> CliError + use<> {
    let endpoint = endpoint.to_owned();
    move |status| {
        if status.code() == tonic::Code::Unimplemented {
            CliError::Unsupported(format!(
                "the runtime at {endpoint} does not serve image archives (carrack.images.v1): \
                 only Carrack does; with containerd use `ctr images import`/`export`"
            ))
        } else {
            CliError::rpc(rpc)(status)
        }
    }
}
