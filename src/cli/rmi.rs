//! `carrack rmi IMAGE…`: removes images (every tag of each).

use super::client::Cri;
use super::error::CliError;
use crate::proto;

/// Arguments of `carrack rmi`.
#[derive(Debug, clap::Args)]
pub struct RmiArgs {
    /// Images (tags, ids or id prefixes).
    #[arg(required = true)]
    images: Vec<String>,
}

/// Removes each image and prints its id.
pub async fn rmi(cri: &mut Cri, args: RmiArgs) -> Result<(), CliError> {
    for wanted in &args.images {
        let image = super::resolve::image(cri, wanted).await?;
        cri.image
            .remove_image(proto::RemoveImageRequest {
                image: Some(proto::ImageSpec {
                    image: image.id.clone(),
                    ..proto::ImageSpec::default()
                }),
            })
            .await
            .map_err(CliError::rpc("RemoveImage"))?;
        super::output::print(&format!("Deleted: {}\n", image.id))?;
    }
    Ok(())
}
