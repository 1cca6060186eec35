//! Hostile images for the unpack and verification suite: each one breaks one
//! rule a pull must enforce (no write outside the layer directory, every
//! digest and size verified, limits on documents and on decompression).
//!
//! Every name that could land outside the layer if it were followed is
//! `carrack-escaped-*` and aims inside the node's temp dir (`base`), so a
//! regression writes where the test looks for it and where the node's
//! teardown removes it, never elsewhere on the host. From a layer being
//! unpacked, `<base>/root/snapshots/ingest/<tmp>/fs`, five `..` reach `base`.

use std::io;
use std::path::Path;
use std::sync::Arc;

use flate2::Compression;
use serde_json::json;
use tar::EntryType;

use super::images::{ImageConfig, Layer, LayerBuilder, ManifestFormat, TestImage, sha256_digest};

/// Prefix of every file a hostile image tries to write outside its layer.
pub const ESCAPE_MARK: &str = "carrack-escaped";

/// Five `..`: from a layer directory being unpacked up to the node's temp dir.
const UP_TO_BASE: &str = "../../../../..";

fn image_of(layer: Layer) -> TestImage {
    TestImage::new(
        vec![Arc::new(layer)],
        &ImageConfig::with_cmd(&["sh"]),
        ManifestFormat::Docker,
    )
}

fn layer_with(
    description: &str,
    build: impl FnOnce(&mut LayerBuilder) -> io::Result<()>,
) -> io::Result<TestImage> {
    let mut layer = LayerBuilder::new(description);
    layer
        .dir("ok", 0o755)?
        .file("ok/first.txt", 0o644, b"a harmless first entry\n")?;
    build(&mut layer)?;
    Ok(image_of(layer.finish()?))
}

/// `../../etc/carrack-escaped-dotdot`: a `..` name.
pub fn path_traversal() -> io::Result<TestImage> {
    layer_with("hostile: .. in a name", |layer| {
        layer.raw_entry(
            EntryType::Regular,
            format!("../../etc/{ESCAPE_MARK}-dotdot").as_bytes(),
            b"",
            0o644,
            b"escaped\n",
        )?;
        Ok(())
    })
}

/// `ok/../../../../../../carrack-escaped-deep`: `..` after a real directory.
pub fn deep_traversal() -> io::Result<TestImage> {
    layer_with("hostile: .. inside a name", |layer| {
        layer.raw_entry(
            EntryType::Regular,
            format!("ok/../{UP_TO_BASE}/{ESCAPE_MARK}-deep").as_bytes(),
            b"",
            0o644,
            b"escaped\n",
        )?;
        Ok(())
    })
}

/// `/<base>/carrack-escaped-absolute`: an absolute name. Runtimes take it as
/// relative to the layer root (Docker and containerd do), so the file must
/// land inside the layer, never at that absolute path.
pub fn absolute_path(base: &Path) -> io::Result<TestImage> {
    let name = format!("{}/{ESCAPE_MARK}-absolute", base.display());
    layer_with("hostile: absolute name", |layer| {
        layer.raw_entry(
            EntryType::Regular,
            name.as_bytes(),
            b"",
            0o644,
            b"contained\n",
        )?;
        Ok(())
    })
}

/// A symlink to `base`, then a file below it.
pub fn symlink_parent_absolute(base: &Path) -> io::Result<TestImage> {
    let target = base.display().to_string();
    layer_with("hostile: write through an absolute symlink", |layer| {
        layer.symlink("evil", &target)?.raw_entry(
            EntryType::Regular,
            format!("evil/{ESCAPE_MARK}-symlink").as_bytes(),
            b"",
            0o644,
            b"escaped\n",
        )?;
        Ok(())
    })
}

/// A symlink up the tree (`evil -> ../../../../..`), then a file below it.
pub fn symlink_parent_relative() -> io::Result<TestImage> {
    layer_with("hostile: write through a relative symlink", |layer| {
        layer.symlink("evil", UP_TO_BASE)?.raw_entry(
            EntryType::Regular,
            format!("evil/{ESCAPE_MARK}-relsymlink").as_bytes(),
            b"",
            0o644,
            b"escaped\n",
        )?;
        Ok(())
    })
}

/// A symlink to a file outside (`victim`), then a regular file of the same
/// name: the file must replace the link, never write through it. Succeeds.
pub fn symlink_then_file(victim: &Path) -> io::Result<TestImage> {
    let target = victim.display().to_string();
    layer_with("hostile: symlink, then a file of the same name", |layer| {
        layer.symlink("victim", &target)?.file(
            "victim",
            0o644,
            b"overwritten through a symlink\n",
        )?;
        Ok(())
    })
}

/// A hard link to a file outside the layer by absolute name.
pub fn hardlink_absolute(victim: &Path) -> io::Result<TestImage> {
    let target = victim.display().to_string();
    layer_with("hostile: hard link to an absolute path", |layer| {
        layer.raw_entry(
            EntryType::Link,
            format!("{ESCAPE_MARK}-hardlink").as_bytes(),
            target.as_bytes(),
            0o644,
            b"",
        )?;
        Ok(())
    })
}

/// A hard link to a file outside the layer through `..` (`victim` is given
/// relative to the node's temp dir).
pub fn hardlink_relative(victim_in_base: &str) -> io::Result<TestImage> {
    layer_with("hostile: hard link through ..", |layer| {
        layer.raw_entry(
            EntryType::Link,
            format!("{ESCAPE_MARK}-relhardlink").as_bytes(),
            format!("{UP_TO_BASE}/{victim_in_base}").as_bytes(),
            0o644,
            b"",
        )?;
        Ok(())
    })
}

/// A whiteout of `..` (`.wh...`), which would delete the layer's parent.
pub fn whiteout_dotdot() -> io::Result<TestImage> {
    layer_with("hostile: whiteout of ..", |layer| {
        layer.file("ok/.wh..", 0o644, b"")?;
        Ok(())
    })
}

/// A name component longer than `NAME_MAX` (written with a GNU long name).
pub fn overlong_name() -> io::Result<TestImage> {
    let long = "n".repeat(300);
    layer_with("hostile: 300-byte name component", |layer| {
        layer.file(&format!("ok/{long}"), 0o644, b"long\n")?;
        Ok(())
    })
}

/// A valid layer whose config names another diff id.
pub fn wrong_diff_id() -> io::Result<TestImage> {
    let mut layer = LayerBuilder::new("hostile: config lies about the diff id");
    layer.file("lying.txt", 0o644, b"the config names another diff id\n")?;
    let layers = vec![Arc::new(layer.finish()?)];
    let mut config = TestImage::config_json(
        &layers,
        &ImageConfig::with_cmd(&["sh"]),
        super::images::go_arch(),
    );
    config["rootfs"]["diff_ids"] = json!([sha256_digest(b"some other layer")]);
    Ok(TestImage::assemble(layers, &config, ManifestFormat::Docker))
}

/// A gzip stream cut in half (its blob digest is that of the cut bytes, so the
/// registry serves it faithfully).
pub fn truncated_gzip() -> io::Result<TestImage> {
    let mut builder = LayerBuilder::new("hostile: truncated gzip");
    let noise: Vec<u8> = (0..256 * 1024u32)
        .map(|n| (n.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    builder.file("noise.bin", 0o644, &noise)?;
    let full = builder.finish()?;
    let mut cut = full.gzip;
    cut.truncate(cut.len() / 2);
    let layer = Layer {
        digest: sha256_digest(&cut),
        gzip: cut,
        diff_id: full.diff_id,
        description: full.description,
    };
    Ok(image_of(layer))
}

/// A small gzip that expands to `expanded_bytes` of zeros.
pub fn decompression_bomb(expanded_bytes: usize) -> io::Result<TestImage> {
    let mut layer = LayerBuilder::new("hostile: decompression bomb");
    layer.file("zeros.bin", 0o644, &vec![0u8; expanded_bytes])?;
    Ok(image_of(layer.finish_with(Compression::fast())?))
}

/// A small valid layer, unique to `seed`: for blobs the test then corrupts in
/// the registry's storage.
pub fn small_unique(seed: &str) -> io::Result<TestImage> {
    let mut layer = LayerBuilder::new(&format!("small layer {seed}"));
    let noise: Vec<u8> = (0..64 * 1024u32)
        .map(|n| (n.wrapping_mul(2_654_435_761) >> 7) as u8 ^ seed.len() as u8)
        .collect();
    layer
        .file("seed.txt", 0o644, seed.as_bytes())?
        .file("noise.bin", 0o644, &noise)?;
    Ok(image_of(layer.finish()?))
}

/// A manifest over `bytes` long (padded with an annotation) for a valid image.
pub fn oversized_manifest(bytes: usize) -> io::Result<TestImage> {
    let mut image = small_unique("oversized manifest")?;
    let mut manifest: serde_json::Value = serde_json::from_slice(&image.manifest.data)?;
    manifest["annotations"] = json!({"carrack.test/padding": "p".repeat(bytes)});
    image.manifest =
        super::images::Blob::new(image.manifest.media_type, serde_json::to_vec(&manifest)?);
    Ok(image)
}

/// A config over `bytes` long (padded with a label).
pub fn oversized_config(bytes: usize) -> io::Result<TestImage> {
    let mut layer = LayerBuilder::new("hostile: oversized config");
    layer.file("big-config.txt", 0o644, b"the config is huge\n")?;
    let mut config = ImageConfig::with_cmd(&["sh"]);
    config.labels = vec![("carrack.test/padding".to_owned(), "p".repeat(bytes))];
    Ok(TestImage::new(
        vec![Arc::new(layer.finish()?)],
        &config,
        ManifestFormat::Docker,
    ))
}
