//! `carrack pull IMAGE…`, and pulling on demand for `carrack run`.
//!
//! The pull itself is CRI's `PullImage`; while it runs, `pull_progress` shows a bar per layer
//! from the runtime's progress reports (Carrack's), or one spinner when it has none.

use std::time::Instant;

use super::client::Cri;
use super::error::CliError;
use super::pull_progress::PullDisplay;
use crate::proto;

/// Arguments of `carrack pull`.
#[derive(Debug, clap::Args)]
pub struct PullArgs {
    /// Images to pull (`busybox`, `registry.k8s.io/pause:3.10`, `name@sha256:…`).
    #[arg(required = true)]
    images: Vec<String>,
    /// Print only the image ids.
    #[arg(short, long)]
    quiet: bool,
}

/// Pulls each image in turn and prints its id.
pub async fn pull(cri: &mut Cri, args: PullArgs) -> Result<(), CliError> {
    for image in &args.images {
        let id = pull_one(cri, image, args.quiet).await?;
        super::output::print(&format!("{id}\n"))?;
    }
    Ok(())
}

fn spec(image: &str) -> proto::ImageSpec {
    proto::ImageSpec {
        image: image.to_owned(),
        user_specified_image: image.to_owned(),
        ..proto::ImageSpec::default()
    }
}

/// Pulls `image` with its progress on stderr; returns the image id (`image_ref`).
pub async fn pull_one(cri: &mut Cri, image: &str, quiet: bool) -> Result<String, CliError> {
    let started = Instant::now();
    let mut display = PullDisplay::new(image, quiet);
    let mut snapshots = display.open(cri.channel.clone()).await;
    let pulled = cri.image.pull_image(proto::PullImageRequest {
        image: Some(spec(image)),
        auth: None,
        sandbox_config: None,
    });
    tokio::pin!(pulled);
    // The progress reports run alongside the pull; a runtime without them (or one that stops
    // sending) leaves the spinner until the pull is done.
    let reply = match snapshots.as_mut() {
        Some(stream) => tokio::select! {
            reply = &mut pulled => reply,
            () = display.follow(stream) => pulled.await,
        },
        None => pulled.await,
    };
    if let (Ok(_), Some(stream)) = (&reply, snapshots.as_mut()) {
        display.settle(stream).await;
    }
    display.finish();
    let image_ref = reply
        .map_err(CliError::rpc("PullImage"))?
        .into_inner()
        .image_ref;
    if !quiet {
        eprintln!(
            "Pulled {image} ({}) in {:.1}s",
            super::output::short_id(&image_ref),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(image_ref)
}

/// The id of `image`, pulled first if the runtime does not have it.
pub async fn ensure(cri: &mut Cri, image: &str) -> Result<String, CliError> {
    let present = cri
        .image
        .image_status(proto::ImageStatusRequest {
            image: Some(spec(image)),
            verbose: false,
        })
        .await
        .map_err(CliError::rpc("ImageStatus"))?
        .into_inner()
        .image;
    match present {
        Some(found) => Ok(found.id),
        None => {
            eprintln!("Unable to find image '{image}' locally");
            pull_one(cri, image, false).await
        }
    }
}
