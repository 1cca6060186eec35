//! `carrack image import FILE|-`: streams the archive to the runtime, which verifies and
//! stores it; prints what was loaded as `docker load` does.

use std::path::PathBuf;

use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{CHUNK_BYTES, client, rpc_error};
use crate::cli::client::Cri;
use crate::cli::error::CliError;
use crate::cli::output;
use crate::proto::images as proto;

/// Arguments of `carrack image import`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The archive (`docker save`, `ctr images export`, OCI layout tar; may be gzip'd), or `-`.
    archive: PathBuf,
}

/// Imports an archive.
pub async fn import(cri: &mut Cri, args: ImportArgs) -> Result<(), CliError> {
    let source: Box<dyn tokio::io::AsyncRead + Unpin + Send> = if args.archive.as_os_str() == "-" {
        Box::new(tokio::io::stdin())
    } else {
        Box::new(
            tokio::fs::File::open(&args.archive)
                .await
                .map_err(CliError::io("open archive", &args.archive))?,
        )
    };
    let (sender, receiver) = mpsc::channel(4);
    let path = args.archive.clone();
    // Reads the archive while the upload runs; a read error ends the stream early and is
    // reported after the RPC (whose own error is then only a consequence).
    let reader = tokio::spawn(async move {
        let mut source = source;
        loop {
            let mut data = vec![0u8; CHUNK_BYTES];
            let read = source
                .read(&mut data)
                .await
                .map_err(CliError::io("read archive", &path))?;
            if read == 0 {
                return Ok::<(), CliError>(());
            }
            data.truncate(read);
            if sender.send(proto::ImportRequest { data }).await.is_err() {
                return Ok(());
            }
        }
    });
    let reply = client(cri).import(ReceiverStream::new(receiver)).await;
    if let Ok(Err(err)) = reader.await {
        return Err(err);
    }
    let reply = reply
        .map_err(rpc_error("Import", &cri.endpoint))?
        .into_inner();
    let mut text = String::new();
    for image in reply.images {
        if image.repo_tags.is_empty() {
            text.push_str(&format!("Loaded image ID: {}\n", image.id));
        }
        for tag in image.repo_tags {
            text.push_str(&format!("Loaded image: {tag}\n"));
        }
    }
    output::print(&text)
}
