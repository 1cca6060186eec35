//! Image archives built from test images, as `docker save` (legacy layout: `<hex>.json`,
//! `<n>/layer.tar` uncompressed, `manifest.json`) and as an OCI layout tar (`oci-layout`,
//! `index.json` with the containerd name annotation, gzip layers under `blobs/sha256/`).

use std::io::{self, Read};

use serde_json::json;

use super::images::TestImage;

fn append(builder: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]) -> io::Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_cksum();
    builder.append_data(&mut header, name, data)
}

fn hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

/// A `docker save` archive of `image` tagged `tags`.
pub fn docker_save(image: &TestImage, tags: &[&str]) -> io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    let config_name = format!("{}.json", hex(&image.config.digest));
    append(&mut builder, &config_name, &image.config.data)?;
    let mut layer_names = Vec::new();
    for (index, layer) in image.layers.iter().enumerate() {
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(&layer.gzip[..]).read_to_end(&mut tar)?;
        let name = format!("layer{index}/layer.tar");
        append(&mut builder, &name, &tar)?;
        layer_names.push(name);
    }
    let manifest = json!([{"Config": config_name, "RepoTags": tags, "Layers": layer_names}]);
    append(
        &mut builder,
        "manifest.json",
        manifest.to_string().as_bytes(),
    )?;
    builder.into_inner()
}

/// An OCI layout archive of `image` named `name` (a full reference).
pub fn oci_layout(image: &TestImage, name: &str) -> io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    append(
        &mut builder,
        "oci-layout",
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    for blob in [&image.config, &image.manifest] {
        append(
            &mut builder,
            &format!("blobs/sha256/{}", hex(&blob.digest)),
            &blob.data,
        )?;
    }
    for layer in &image.layers {
        append(
            &mut builder,
            &format!("blobs/sha256/{}", hex(&layer.digest)),
            &layer.gzip,
        )?;
    }
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": image.manifest.media_type,
            "digest": image.manifest.digest,
            "size": image.manifest.data.len(),
            "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": "1.0"},
        }],
    });
    append(&mut builder, "index.json", index.to_string().as_bytes())?;
    builder.into_inner()
}

/// `archive` with the member named `member` replaced by what `change` makes of its bytes
/// (other members unchanged, in order): a tampered archive.
pub fn rewrite_member(
    archive: &[u8],
    member: &str,
    change: impl Fn(&[u8]) -> Vec<u8>,
) -> io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut found = false;
    for entry in tar::Archive::new(archive).entries()? {
        let mut entry = entry?;
        let name = entry.path()?.to_string_lossy().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data)?;
        if name == member {
            found = true;
            data = change(&data);
        }
        append(&mut builder, &name, &data)?;
    }
    if !found {
        return Err(io::Error::other(format!("no member {member}")));
    }
    builder.into_inner()
}
