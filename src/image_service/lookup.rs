//! Finding an image by what a client calls it: its id, an id prefix, a tag or a digest
//! reference. `ImageStatus`, `RemoveImage` and container creation all resolve names here.

use std::sync::Arc;

use super::error::ImageError;
use super::reference::Reference;
use crate::store::{ImageRecord, RecordStore};

/// Shortest hex prefix accepted as an abbreviated image id (as `docker images` prints 12).
const MIN_ID_PREFIX: usize = 3;

/// The image `name` refers to, or `None`. Names are tried as an exact id, then as a
/// reference (tag or digest, normalised), then as a unique id prefix.
pub fn find(
    images: &RecordStore<ImageRecord>,
    name: &str,
) -> Result<Option<Arc<ImageRecord>>, ImageError> {
    let name = name.trim();
    if let Some(image) = images.get(name) {
        return Ok(Some(image));
    }
    if let Some(hex) = name.strip_prefix("sha256:") {
        return find_by_id_prefix(images, hex);
    }
    if let Ok(reference) = Reference::parse(name) {
        if let Some(digest) = reference.digest() {
            let wanted = reference.repo_digest(digest);
            let found = images
                .list()
                .into_iter()
                .find(|image| image.repo_digests.contains(&wanted));
            if found.is_some() {
                return Ok(found);
            }
        } else if let Some(tag) = reference.repo_tag() {
            let found = images
                .list()
                .into_iter()
                .find(|image| image.repo_tags.contains(&tag));
            if found.is_some() {
                return Ok(found);
            }
        }
    }
    find_by_id_prefix(images, name)
}

fn find_by_id_prefix(
    images: &RecordStore<ImageRecord>,
    prefix: &str,
) -> Result<Option<Arc<ImageRecord>>, ImageError> {
    if prefix.len() < MIN_ID_PREFIX || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    let wanted = format!("sha256:{prefix}");
    let matches: Vec<_> = images
        .list()
        .into_iter()
        .filter(|image| image.id.starts_with(&wanted))
        .collect();
    match matches.len() {
        0 => Ok(None),
        1 => Ok(matches.into_iter().next()),
        count => Err(ImageError::AmbiguousId {
            prefix: prefix.to_owned(),
            count,
        }),
    }
}
