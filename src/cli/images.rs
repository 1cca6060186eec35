//! `carrack images`: the images, one row per tag (untagged images as `<none>`).

use super::client::Cri;
use super::error::CliError;
use super::output::{self, Format, Table};

/// Arguments of `carrack images`.
#[derive(Debug, clap::Args)]
pub struct ImagesArgs {
    /// Print only image ids.
    #[arg(short, long)]
    quiet: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

/// `registry/repo:tag` → (`registry/repo`, `tag`); a port's colon is not a tag's.
pub fn split_tag(reference: &str) -> (&str, &str) {
    match reference.rsplit_once(':') {
        Some((repository, tag)) if !tag.contains('/') => (repository, tag),
        _ => (reference, "<none>"),
    }
}

/// Lists images.
pub async fn images(cri: &mut Cri, args: ImagesArgs) -> Result<(), CliError> {
    let mut images = super::resolve::all_images(cri).await?;
    images.sort_by(|a, b| a.repo_tags.cmp(&b.repo_tags).then(a.id.cmp(&b.id)));
    if args.quiet {
        let ids: String = images
            .iter()
            .map(|i| format!("{}\n", output::short_id(&i.id)))
            .collect();
        return output::print(&ids);
    }
    if args.format == Format::Json {
        return output::print_json("images", &images);
    }
    let mut table = Table::new(&["REPOSITORY", "TAG", "IMAGE ID", "SIZE"]);
    for image in &images {
        let id = output::short_id(&image.id);
        let size = output::size(image.size);
        if image.repo_tags.is_empty() {
            // An untagged image may still be known by digest.
            let repository = image
                .repo_digests
                .first()
                .and_then(|digest| digest.split_once('@'))
                .map_or("<none>", |(repository, _)| repository);
            table.row(vec![
                repository.to_owned(),
                "<none>".to_owned(),
                id.clone(),
                size.clone(),
            ]);
        }
        for tag in &image.repo_tags {
            let (repository, tag) = split_tag(tag);
            table.row(vec![
                repository.to_owned(),
                tag.to_owned(),
                id.clone(),
                size.clone(),
            ]);
        }
    }
    output::print(&table.render())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_split_at_the_last_colon_outside_the_host() {
        assert_eq!(
            split_tag("docker.io/library/busybox:1.36"),
            ("docker.io/library/busybox", "1.36")
        );
        assert_eq!(
            split_tag("localhost:5000/app"),
            ("localhost:5000/app", "<none>")
        );
        assert_eq!(
            split_tag("localhost:5000/app:v1"),
            ("localhost:5000/app", "v1")
        );
    }
}
