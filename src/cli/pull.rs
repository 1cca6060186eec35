//! `carrack pull IMAGE…`, and pulling on demand for `carrack run`.
//!
//! CRI's `PullImage` reports nothing until it is done, so the progress shown is honest about
//! that: one spinner per image with the elapsed time (on a terminal; a plain line otherwise),
//! not invented per-layer percentages.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use super::client::Cri;
use super::error::CliError;
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

/// Pulls `image` with a spinner on stderr; returns the image id (`image_ref`).
pub async fn pull_one(cri: &mut Cri, image: &str, quiet: bool) -> Result<String, CliError> {
    let started = Instant::now();
    let spinner = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new_spinner()
    };
    spinner.set_style(
        ProgressStyle::with_template("{spinner} Pulling {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    spinner.set_message(image.to_owned());
    spinner.enable_steady_tick(Duration::from_millis(120));
    if !quiet && spinner.is_hidden() {
        eprintln!("Pulling {image}");
    }
    let reply = cri
        .image
        .pull_image(proto::PullImageRequest {
            image: Some(spec(image)),
            auth: None,
            sandbox_config: None,
        })
        .await;
    spinner.finish_and_clear();
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
