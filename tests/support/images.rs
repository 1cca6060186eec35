//! Test images built here from Debian's `busybox-static`, and a pusher that
//! uploads them to the node's registry over the OCI distribution API.
//!
//! Nothing is downloaded: every layer is a tar written by [`LayerBuilder`]
//! (gzip, sha256 digests and diff_ids computed here), and the config and
//! manifest are written with `serde_json`. Output is deterministic (fixed
//! owners and mtimes, sorted applets), so an image has the same digest in
//! every run. Built layers and images are cached per process.
//!
//! Images:
//! - [`busybox`]: `/bin/busybox` with every applet as a hard link in `/bin`,
//!   `/etc/passwd` (root, nobody 65534), `/etc/group`, `/tmp` (1777), `/root`;
//!   `Cmd ["sh"]`.
//! - [`long_running`]: the same root filesystem, running until SIGTERM.
//! - [`layers`]: busybox plus three layers with whiteouts and an opaque
//!   directory; [`LAYERS_EXPECTED`] is what the unpacked `/layers` must hold.
//!
//! Hard links rather than symlinks matter: with a symlink to the multi-call
//! binary, masking `/bin/ls` would mask busybox itself.

use std::io::{self, Write};
use std::sync::{Arc, OnceLock};

use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tar::{EntryType, Header};

use super::node::Node;
use super::registry::Registry;

/// The busybox-static binary every test image is made from.
pub const BUSYBOX_BIN: &str = "/bin/busybox";

/// The `PATH` every test image sets.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Modification time of every entry (2024-01-01T00:00:00Z), for reproducible digests.
const ENTRY_MTIME: u64 = 1_704_067_200;

/// `created` of every image config, matching [`ENTRY_MTIME`].
const CREATED: &str = "2024-01-01T00:00:00Z";

/// OCI media types.
pub mod media_type {
    /// OCI image manifest.
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// OCI image index.
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// OCI image config.
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    /// OCI gzip layer.
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    /// Docker schema 2 manifest.
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    /// Docker manifest list.
    pub const DOCKER_MANIFEST_LIST: &str =
        "application/vnd.docker.distribution.manifest.list.v2+json";
    /// Docker image config.
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    /// Docker gzip layer.
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
}

/// Which family of media types a manifest uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ManifestFormat {
    /// OCI image manifest, config and layers.
    #[default]
    Oci,
    /// Docker schema 2 manifest, config and layers (what most registries serve).
    Docker,
}

impl ManifestFormat {
    fn manifest(self) -> &'static str {
        match self {
            ManifestFormat::Oci => media_type::OCI_MANIFEST,
            ManifestFormat::Docker => media_type::DOCKER_MANIFEST,
        }
    }

    fn config(self) -> &'static str {
        match self {
            ManifestFormat::Oci => media_type::OCI_CONFIG,
            ManifestFormat::Docker => media_type::DOCKER_CONFIG,
        }
    }

    fn layer(self) -> &'static str {
        match self {
            ManifestFormat::Oci => media_type::OCI_LAYER_GZIP,
            ManifestFormat::Docker => media_type::DOCKER_LAYER_GZIP,
        }
    }
}

/// A blob as stored in a registry.
#[derive(Debug, Clone)]
pub struct Blob {
    /// Media type its descriptor carries.
    pub media_type: &'static str,
    /// `sha256:<hex>` of `data`.
    pub digest: String,
    /// The bytes.
    pub data: Vec<u8>,
}

impl Blob {
    /// A blob of `data` with its digest computed.
    pub fn new(media_type: &'static str, data: Vec<u8>) -> Blob {
        Blob {
            media_type,
            digest: sha256_digest(&data),
            data,
        }
    }

    /// The OCI descriptor of this blob.
    pub fn descriptor(&self) -> Value {
        json!({
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.data.len(),
        })
    }
}

/// One gzip-compressed layer.
#[derive(Debug)]
pub struct Layer {
    /// The compressed tar; its media type is set per manifest format.
    pub gzip: Vec<u8>,
    /// `sha256:<hex>` of [`Layer::gzip`] (the blob digest).
    pub digest: String,
    /// `sha256:<hex>` of the uncompressed tar (the config's diff_id).
    pub diff_id: String,
    /// What the layer holds, for the config's history.
    pub description: String,
}

/// The runtime part of an image config (`config` in the OCI image config).
#[derive(Debug, Clone, Default)]
pub struct ImageConfig {
    /// `Env`, e.g. `PATH=...`.
    pub env: Vec<String>,
    /// `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `Cmd`.
    pub cmd: Vec<String>,
    /// `User` (`uid`, `name`, `uid:gid`, ...); empty means unset.
    pub user: String,
    /// `WorkingDir`; empty means unset.
    pub working_dir: String,
    /// `Labels`.
    pub labels: Vec<(String, String)>,
}

impl ImageConfig {
    /// The usual test image config: busybox `PATH` and the given `Cmd`.
    pub fn with_cmd(cmd: &[&str]) -> ImageConfig {
        ImageConfig {
            env: vec![DEFAULT_PATH.to_owned()],
            cmd: cmd.iter().map(|arg| (*arg).to_owned()).collect(),
            ..ImageConfig::default()
        }
    }
}

/// A complete single-platform image: layers, config blob and manifest blob.
#[derive(Debug, Clone)]
pub struct TestImage {
    /// The layers, lowest first (shared with other images through the cache).
    pub layers: Vec<Arc<Layer>>,
    /// The config blob.
    pub config: Blob,
    /// The manifest blob; its digest is the image's manifest digest.
    pub manifest: Blob,
    /// The media type family used.
    pub format: ManifestFormat,
}

impl TestImage {
    /// Assembles an image for this machine's architecture from layers and a runtime config.
    pub fn new(layers: Vec<Arc<Layer>>, config: &ImageConfig, format: ManifestFormat) -> TestImage {
        TestImage::for_arch(layers, config, format, go_arch())
    }

    /// Assembles an image whose config says it is for `linux/<arch>` (a Go
    /// architecture name); for the entries of a multi-platform index.
    pub fn for_arch(
        layers: Vec<Arc<Layer>>,
        config: &ImageConfig,
        format: ManifestFormat,
        arch: &str,
    ) -> TestImage {
        let config_json = TestImage::config_json(&layers, config, arch);
        TestImage::assemble(layers, &config_json, format)
    }

    /// The image config document of `layers` and `config`.
    pub fn config_json(layers: &[Arc<Layer>], config: &ImageConfig, arch: &str) -> Value {
        let mut runtime = serde_json::Map::new();
        if !config.env.is_empty() {
            runtime.insert("Env".into(), json!(config.env));
        }
        if !config.entrypoint.is_empty() {
            runtime.insert("Entrypoint".into(), json!(config.entrypoint));
        }
        if !config.cmd.is_empty() {
            runtime.insert("Cmd".into(), json!(config.cmd));
        }
        if !config.user.is_empty() {
            runtime.insert("User".into(), json!(config.user));
        }
        if !config.working_dir.is_empty() {
            runtime.insert("WorkingDir".into(), json!(config.working_dir));
        }
        if !config.labels.is_empty() {
            let labels: serde_json::Map<String, Value> = config
                .labels
                .iter()
                .map(|(key, value)| (key.clone(), json!(value)))
                .collect();
            runtime.insert("Labels".into(), Value::Object(labels));
        }
        json!({
            "architecture": arch,
            "os": "linux",
            "created": CREATED,
            "config": runtime,
            "rootfs": {
                "type": "layers",
                "diff_ids": layers.iter().map(|layer| layer.diff_id.clone()).collect::<Vec<_>>(),
            },
            "history": layers.iter().map(|layer| json!({
                "created": CREATED,
                "created_by": format!("carrack test harness: {}", layer.description),
            })).collect::<Vec<_>>(),
        })
    }

    /// An image from layers and any config document (which may lie about the
    /// layers: hostile images use this), with a manifest naming them.
    pub fn assemble(
        layers: Vec<Arc<Layer>>,
        config_json: &Value,
        format: ManifestFormat,
    ) -> TestImage {
        let config_blob = Blob::new(format.config(), to_json_bytes(config_json));

        let manifest_json = json!({
            "schemaVersion": 2,
            "mediaType": format.manifest(),
            "config": config_blob.descriptor(),
            "layers": layers.iter().map(|layer| json!({
                "mediaType": format.layer(),
                "digest": layer.digest,
                "size": layer.gzip.len(),
            })).collect::<Vec<_>>(),
        });
        let manifest = Blob::new(format.manifest(), to_json_bytes(&manifest_json));
        TestImage {
            layers,
            config: config_blob,
            manifest,
            format,
        }
    }

    /// The manifest digest, `sha256:<hex>`.
    pub fn digest(&self) -> &str {
        &self.manifest.digest
    }

    /// The image ID as runtimes report it: the config digest.
    pub fn id(&self) -> &str {
        &self.config.digest
    }
}

/// Writes one layer tar with reproducible metadata (root-owned, fixed mtime).
/// Paths are relative to the image root, without a leading `/`.
pub struct LayerBuilder {
    /// The uncompressed tar being written, in memory.
    tar: tar::Builder<Vec<u8>>,
    /// What the layer holds, for the image history.
    description: String,
}

impl LayerBuilder {
    /// An empty layer; `description` goes into the image history.
    pub fn new(description: &str) -> LayerBuilder {
        LayerBuilder {
            tar: tar::Builder::new(Vec::new()),
            description: description.to_owned(),
        }
    }

    /// A directory entry with `mode` (permission bits, sticky bit included).
    pub fn dir(&mut self, path: &str, mode: u32) -> io::Result<&mut Self> {
        let mut header = header(EntryType::Directory, mode, 0);
        self.tar.append_data(&mut header, path, io::empty())?;
        Ok(self)
    }

    /// A regular file with `contents` and `mode`.
    pub fn file(&mut self, path: &str, mode: u32, contents: &[u8]) -> io::Result<&mut Self> {
        let mut header = header(EntryType::Regular, mode, contents.len() as u64);
        self.tar.append_data(&mut header, path, contents)?;
        Ok(self)
    }

    /// A hard link at `path` to the earlier entry `target` of this layer.
    pub fn hard_link(&mut self, path: &str, target: &str) -> io::Result<&mut Self> {
        let mut header = header(EntryType::Link, 0o755, 0);
        self.tar.append_link(&mut header, path, target)?;
        Ok(self)
    }

    /// A symbolic link at `path` pointing to `target`.
    pub fn symlink(&mut self, path: &str, target: &str) -> io::Result<&mut Self> {
        let mut header = header(EntryType::Symlink, 0o777, 0);
        self.tar.append_link(&mut header, path, target)?;
        Ok(self)
    }

    /// A whiteout: deletes `path` (file or whole directory) of lower layers,
    /// written as an empty `.wh.<name>` file beside it.
    pub fn whiteout(&mut self, path: &str) -> io::Result<&mut Self> {
        let (parent, name) = match path.rsplit_once('/') {
            Some((parent, name)) => (format!("{parent}/"), name),
            None => (String::new(), path),
        };
        self.file(&format!("{parent}.wh.{name}"), 0o644, b"")
    }

    /// An opaque-directory marker: hides everything lower layers put in `dir`
    /// (entries this layer adds to `dir` stay).
    pub fn opaque(&mut self, dir: &str) -> io::Result<&mut Self> {
        self.file(&format!("{dir}/.wh..wh..opq"), 0o644, b"")
    }

    /// Any entry, with the name and link name bytes written into the header
    /// as given (at most 100 bytes each). The tar crate refuses to write `..`
    /// or absolute names; hostile layers need exactly those.
    pub fn raw_entry(
        &mut self,
        kind: EntryType,
        name: &[u8],
        link_name: &[u8],
        mode: u32,
        contents: &[u8],
    ) -> io::Result<&mut Self> {
        let mut header = header(kind, mode, contents.len() as u64);
        let gnu = header
            .as_gnu_mut()
            .ok_or_else(|| io::Error::other("not a GNU header"))?;
        if name.len() > gnu.name.len() || link_name.len() > gnu.linkname.len() {
            return Err(io::Error::other("raw entry names are limited to 100 bytes"));
        }
        gnu.name[..name.len()].copy_from_slice(name);
        gnu.linkname[..link_name.len()].copy_from_slice(link_name);
        header.set_cksum();
        self.tar.append(&header, contents)?;
        Ok(self)
    }

    /// The uncompressed tar written so far, finished (for layers that are then
    /// compressed or mangled by hand).
    pub fn into_tar(self) -> io::Result<Vec<u8>> {
        self.tar.into_inner()
    }

    /// Finishes the tar, compresses it and computes both digests.
    pub fn finish(self) -> io::Result<Layer> {
        // A fast level: the busybox layer is built in debug builds of the tests.
        self.finish_with(Compression::fast())
    }

    /// Finishes the tar, compresses it at `level` (`Compression::none()` for
    /// big incompressible layers) and computes both digests.
    pub fn finish_with(self, level: Compression) -> io::Result<Layer> {
        let description = self.description.clone();
        let tar = self.into_tar()?;
        Layer::from_tar(&tar, level, &description)
    }
}

impl Layer {
    /// A layer from an uncompressed tar stream, gzip-compressed at `level`.
    pub fn from_tar(tar: &[u8], level: Compression, description: &str) -> io::Result<Layer> {
        let diff_id = sha256_digest(tar);
        let mut gzip = GzEncoder::new(Vec::new(), level);
        gzip.write_all(tar)?;
        let gzip = gzip.finish()?;
        Ok(Layer {
            digest: sha256_digest(&gzip),
            diff_id,
            gzip,
            description: description.to_owned(),
        })
    }
}

impl std::fmt::Debug for LayerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // tar::Builder has no Debug; the description identifies the layer.
        f.debug_struct("LayerBuilder")
            .field("description", &self.description)
            .finish_non_exhaustive()
    }
}

/// A root-owned tar header with the fixed mtime.
fn header(kind: EntryType, mode: u32, size: u64) -> Header {
    let mut header = Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(ENTRY_MTIME);
    header
}

/// `/etc/passwd` of the busybox image.
pub const BUSYBOX_PASSWD: &str =
    "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n";

/// `/etc/group` of the busybox image.
pub const BUSYBOX_GROUP: &str = "root:x:0:\nnobody:x:65534:\n";

/// The busybox root filesystem layer (built once per process).
///
/// Panics if `/bin/busybox` cannot be read or listed: no image test can run
/// without it (CI installs `busybox-static`).
pub fn busybox_layer() -> Arc<Layer> {
    static LAYER: OnceLock<Arc<Layer>> = OnceLock::new();
    LAYER
        .get_or_init(|| {
            Arc::new(build_busybox_layer().expect("build the busybox layer from /bin/busybox"))
        })
        .clone()
}

fn build_busybox_layer() -> io::Result<Layer> {
    let binary = std::fs::read(BUSYBOX_BIN)?;
    let list = std::process::Command::new(BUSYBOX_BIN)
        .arg("--list")
        .output()?;
    if !list.status.success() {
        return Err(io::Error::other(format!(
            "{BUSYBOX_BIN} --list: {}",
            list.status
        )));
    }
    let mut applets: Vec<String> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .map(str::trim)
        .filter(|name| !name.is_empty() && !name.contains('/') && *name != "busybox")
        .map(str::to_owned)
        .collect();
    applets.sort();
    applets.dedup();
    if !applets.iter().any(|name| name == "sh") {
        return Err(io::Error::other(format!("{BUSYBOX_BIN} has no sh applet")));
    }

    let mut layer = LayerBuilder::new("busybox-static root filesystem");
    // Empty mount-point directories like the upstream busybox image.
    for (dir, mode) in [
        ("bin", 0o755),
        ("dev", 0o755),
        ("etc", 0o755),
        ("home", 0o755),
        ("proc", 0o555),
        ("root", 0o700),
        ("sys", 0o555),
        ("tmp", 0o1777),
        ("usr", 0o755),
        ("var", 0o755),
    ] {
        layer.dir(dir, mode)?;
    }
    layer.file("bin/busybox", 0o755, &binary)?;
    for applet in &applets {
        layer.hard_link(&format!("bin/{applet}"), "bin/busybox")?;
    }
    layer
        .file("etc/passwd", 0o644, BUSYBOX_PASSWD.as_bytes())?
        .file("etc/group", 0o644, BUSYBOX_GROUP.as_bytes())?;
    layer.finish()
}

/// The `busybox` image: busybox root filesystem, `Cmd ["sh"]`.
pub fn busybox() -> &'static TestImage {
    static IMAGE: OnceLock<TestImage> = OnceLock::new();
    IMAGE.get_or_init(|| {
        TestImage::new(
            vec![busybox_layer()],
            &ImageConfig::with_cmd(&["sh"]),
            ManifestFormat::Oci,
        )
    })
}

/// Command of [`long_running`]: runs until SIGTERM and exits 0 at once on it.
///
/// Not plain `sleep`: as PID 1 of a PID namespace a process without a handler
/// ignores SIGTERM, so every stop would wait out the grace period. The trap
/// gives `sh` a handler, and `wait` returns as soon as the signal arrives.
pub const LONG_RUNNING_CMD: &[&str] = &[
    "sh",
    "-c",
    "trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done",
];

/// The `long-running` image: busybox root filesystem, runs until stopped.
pub fn long_running() -> &'static TestImage {
    static IMAGE: OnceLock<TestImage> = OnceLock::new();
    IMAGE.get_or_init(|| {
        TestImage::new(
            vec![busybox_layer()],
            &ImageConfig::with_cmd(LONG_RUNNING_CMD),
            ManifestFormat::Oci,
        )
    })
}

/// One thing [`LAYERS_EXPECTED`] says about the unpacked `layers` image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// A regular file with exactly these contents and permission bits.
    File {
        path: &'static str,
        contents: &'static str,
        mode: u32,
    },
    /// A directory.
    Dir { path: &'static str },
    /// A symbolic link with this target.
    Symlink {
        path: &'static str,
        target: &'static str,
    },
    /// Nothing at this path (deleted by a whiteout, hidden by an opaque dir,
    /// or a whiteout marker that must not itself be unpacked).
    Absent { path: &'static str },
}

/// The final state of `/layers` in the [`layers`] image, after unpacking its
/// layers in order. Paths are absolute inside the image.
pub const LAYERS_EXPECTED: &[Expected] = &[
    Expected::Dir { path: "/layers" },
    Expected::File {
        path: "/layers/keep.txt",
        contents: "kept from layer 1\n",
        mode: 0o644,
    },
    Expected::File {
        path: "/layers/script.sh",
        contents: "#!/bin/sh\necho layered\n",
        mode: 0o755,
    },
    Expected::Symlink {
        path: "/layers/link",
        target: "keep.txt",
    },
    Expected::File {
        path: "/layers/replaced.txt",
        contents: "layer 2 version\n",
        mode: 0o600,
    },
    Expected::Absent {
        path: "/layers/gone.txt",
    },
    Expected::Dir {
        path: "/layers/opaque",
    },
    Expected::File {
        path: "/layers/opaque/fresh.txt",
        contents: "added by layer 2 next to the opaque marker\n",
        mode: 0o644,
    },
    Expected::Absent {
        path: "/layers/opaque/old.txt",
    },
    Expected::Absent {
        path: "/layers/opaque/sub",
    },
    Expected::File {
        path: "/layers/recreated.txt",
        contents: "recreated by layer 3\n",
        mode: 0o644,
    },
    Expected::Absent {
        path: "/layers/dir-gone",
    },
    Expected::File {
        path: "/layers/late.txt",
        contents: "added by layer 3\n",
        mode: 0o644,
    },
    Expected::Absent {
        path: "/layers/.wh.gone.txt",
    },
    Expected::Absent {
        path: "/layers/.wh.recreated.txt",
    },
    Expected::Absent {
        path: "/layers/.wh.dir-gone",
    },
    Expected::Absent {
        path: "/layers/opaque/.wh..wh..opq",
    },
];

/// The three layers above busybox in [`layers`]:
/// 1. adds files, a script, a symlink and `opaque/` with old contents;
/// 2. whites out `gone.txt` and `recreated.txt`, makes `opaque/` opaque and
///    adds `fresh.txt` in it, replaces `replaced.txt`, adds `dir-gone/`;
/// 3. whites out the directory `dir-gone`, recreates `recreated.txt`, adds `late.txt`.
fn build_whiteout_layers() -> io::Result<Vec<Layer>> {
    let mut first = LayerBuilder::new("layers: base files");
    first
        .dir("layers", 0o755)?
        .file("layers/keep.txt", 0o644, b"kept from layer 1\n")?
        .file("layers/gone.txt", 0o644, b"deleted by layer 2\n")?
        .file("layers/replaced.txt", 0o644, b"layer 1 version\n")?
        .file("layers/recreated.txt", 0o644, b"layer 1 version\n")?
        .file("layers/script.sh", 0o755, b"#!/bin/sh\necho layered\n")?
        .symlink("layers/link", "keep.txt")?
        .dir("layers/opaque", 0o755)?
        .file("layers/opaque/old.txt", 0o644, b"hidden by layer 2\n")?
        .dir("layers/opaque/sub", 0o755)?
        .file("layers/opaque/sub/deep.txt", 0o644, b"hidden by layer 2\n")?;

    let mut second = LayerBuilder::new("layers: whiteouts and an opaque dir");
    second
        .dir("layers", 0o755)?
        .whiteout("layers/gone.txt")?
        .whiteout("layers/recreated.txt")?
        .file("layers/replaced.txt", 0o600, b"layer 2 version\n")?
        .dir("layers/opaque", 0o755)?
        .opaque("layers/opaque")?
        .file(
            "layers/opaque/fresh.txt",
            0o644,
            b"added by layer 2 next to the opaque marker\n",
        )?
        .dir("layers/dir-gone", 0o755)?
        .file(
            "layers/dir-gone/inner.txt",
            0o644,
            b"deleted with its dir by layer 3\n",
        )?;

    let mut third = LayerBuilder::new("layers: directory whiteout and re-creation");
    third
        .dir("layers", 0o755)?
        .whiteout("layers/dir-gone")?
        .file("layers/recreated.txt", 0o644, b"recreated by layer 3\n")?
        .file("layers/late.txt", 0o644, b"added by layer 3\n")?;

    [first, second, third]
        .into_iter()
        .map(LayerBuilder::finish)
        .collect()
}

/// The `layers` image: busybox plus three whiteout-exercising layers (so a
/// container of it can `cat` the results); see [`LAYERS_EXPECTED`].
pub fn layers() -> &'static TestImage {
    static IMAGE: OnceLock<TestImage> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let mut all = vec![busybox_layer()];
        all.extend(
            build_whiteout_layers()
                .expect("build the whiteout layers in memory")
                .into_iter()
                .map(Arc::new),
        );
        TestImage::new(all, &ImageConfig::with_cmd(&["sh"]), ManifestFormat::Oci)
    })
}

/// busybox with `label=<value>` in its config: a distinct image (its own id)
/// sharing the busybox layer, for tests of tags moving between images.
pub fn labelled(value: &str) -> TestImage {
    let mut config = ImageConfig::with_cmd(&["sh"]);
    config.labels = vec![("carrack.test/label".to_owned(), value.to_owned())];
    TestImage::new(vec![busybox_layer()], &config, ManifestFormat::Oci)
}

/// busybox whose config says `User: <user>` (`1002`, `www-data`, `1003:1004`).
pub fn with_user(user: &str) -> TestImage {
    let mut config = ImageConfig::with_cmd(&["sh"]);
    config.user = user.to_owned();
    TestImage::new(vec![busybox_layer()], &config, ManifestFormat::Docker)
}

/// A fake image for `linux/<arch>`: one tiny layer naming the architecture and
/// a config saying so. Never run; it only has to be a valid index entry.
pub fn fake_for_arch(arch: &str, format: ManifestFormat) -> io::Result<TestImage> {
    let mut layer = LayerBuilder::new(&format!("fake {arch} root filesystem"));
    layer.file("arch", 0o644, arch.as_bytes())?;
    Ok(TestImage::for_arch(
        vec![Arc::new(layer.finish()?)],
        &ImageConfig::with_cmd(&["sh"]),
        format,
        arch,
    ))
}

/// An OCI index (`ManifestFormat::Oci`) or a Docker manifest list
/// (`ManifestFormat::Docker`) of `entries`, each `(image, go arch)`.
pub fn index(format: ManifestFormat, entries: &[(&TestImage, &str)]) -> Blob {
    let media_type = match format {
        ManifestFormat::Oci => media_type::OCI_INDEX,
        ManifestFormat::Docker => media_type::DOCKER_MANIFEST_LIST,
    };
    let manifests: Vec<Value> = entries
        .iter()
        .map(|(image, arch)| {
            json!({
                "mediaType": image.manifest.media_type,
                "digest": image.manifest.digest,
                "size": image.manifest.data.len(),
                "platform": {"architecture": arch, "os": "linux"},
            })
        })
        .collect();
    let index = json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": manifests,
    });
    Blob::new(media_type, to_json_bytes(&index))
}

/// Pushes every entry image by digest into repository `name`, then `index`
/// as `name:tag`; returns the index digest.
pub fn push_index(
    registry: &Registry,
    name: &str,
    tag: &str,
    entries: &[&TestImage],
    index: &Blob,
) -> io::Result<String> {
    for image in entries {
        push(registry, image, &format!("{name}@{}", image.digest()))?;
    }
    put_manifest(registry, name, tag, index)
}

/// A big image of `layer_count` layers of `layer_bytes` each of incompressible
/// pseudo-random data (stored uncompressed inside gzip, so building it stays
/// cheap in debug builds): for pulls that take long enough to interrupt.
/// `seed` makes distinct images.
pub fn big(layer_count: usize, layer_bytes: usize, seed: u64) -> io::Result<TestImage> {
    let mut layers = Vec::with_capacity(layer_count);
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for index in 0..layer_count {
        let mut data = vec![0u8; layer_bytes];
        for chunk in data.chunks_mut(8) {
            // xorshift64: fast and good enough to defeat compression.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let bytes = state.to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        let mut layer = LayerBuilder::new(&format!("big layer {index}"));
        layer
            .dir("big", 0o755)?
            .file(&format!("big/{index}.bin"), 0o644, &data)?;
        layers.push(Arc::new(layer.finish_with(Compression::none())?));
    }
    let mut config = ImageConfig::with_cmd(&["sh"]);
    config.labels = vec![("carrack.test/seed".to_owned(), seed.to_string())];
    Ok(TestImage::new(layers, &config, ManifestFormat::Oci))
}

/// A registry reference split for the distribution API: repository name
/// (`library/busybox`) and tag or digest (`latest`, `sha256:...`).
pub fn split_reference(reference: &str) -> (&str, &str) {
    if let Some((name, digest)) = reference.split_once('@') {
        return (name, digest);
    }
    let last_slash = reference.rfind('/').map_or(0, |index| index + 1);
    match reference[last_slash..].rfind(':') {
        Some(colon) => (
            &reference[..last_slash + colon],
            &reference[last_slash + colon + 1..],
        ),
        None => (reference, "latest"),
    }
}

/// Pushes `image` to the node's registry as `reference` (`name:tag`, e.g.
/// `library/busybox:latest` or `e2e-test-images/busybox:1.29-2`; no tag means
/// `latest`) and returns the manifest digest. Blobs already present are skipped.
pub fn push(registry: &Registry, image: &TestImage, reference: &str) -> io::Result<String> {
    let (name, tag) = split_reference(reference);
    with_pusher(registry, name, |pusher| {
        for layer in &image.layers {
            pusher.ensure_blob(&layer.digest, &layer.gzip)?;
        }
        pusher.ensure_blob(&image.config.digest, &image.config.data)?;
        pusher.put_manifest(tag, &image.manifest)?;
        Ok(image.manifest.digest.clone())
    })
}

/// Uploads one blob into repository `name` unless it is already there. With
/// [`put_manifest`] this pushes what [`push`] does not cover (an image index,
/// a foreign-platform image, a deliberately corrupt blob).
pub fn push_blob(registry: &Registry, name: &str, digest: &str, data: &[u8]) -> io::Result<()> {
    with_pusher(registry, name, |pusher| pusher.ensure_blob(digest, data))
}

/// `PUT`s `manifest` (any manifest or index media type) as `name:reference`
/// and returns its digest; the blobs it refers to must already be pushed.
pub fn put_manifest(
    registry: &Registry,
    name: &str,
    reference: &str,
    manifest: &Blob,
) -> io::Result<String> {
    with_pusher(registry, name, |pusher| {
        pusher.put_manifest(reference, manifest)?;
        Ok(manifest.digest.clone())
    })
}

/// Runs `f` with a [`Pusher`] for repository `name` on a thread inside the
/// registry's network namespace.
fn with_pusher<T, F>(registry: &Registry, name: &str, f: F) -> io::Result<T>
where
    F: FnOnce(&Pusher<'_>) -> io::Result<T> + Send,
    T: Send,
{
    let base = registry.url();
    let authorization = registry.authorization(name);
    registry.run(|| {
        let pusher = Pusher {
            agent: Registry::agent(),
            base: &base,
            name,
            authorization: authorization.as_deref(),
        };
        f(&pusher)
    })?
}

impl Node {
    /// Pushes `image` to this node's registry as `reference`; see [`push`].
    pub fn push(&self, image: &TestImage, reference: &str) -> io::Result<String> {
        push(self.registry(), image, reference)
    }
}

/// A manifest as the registry serves it.
#[derive(Debug)]
pub struct FetchedManifest {
    /// HTTP status.
    pub status: u16,
    /// The `Docker-Content-Digest` header, if any.
    pub digest: Option<String>,
    /// The `Content-Type` header, if any.
    pub media_type: Option<String>,
    /// The body.
    pub body: Vec<u8>,
}

/// `GET /v2/<name>/manifests/<reference>` from the node's registry, accepting
/// every manifest and index media type.
pub fn fetch_manifest(
    registry: &Registry,
    name: &str,
    reference: &str,
) -> io::Result<FetchedManifest> {
    let url = format!("{}/v2/{name}/manifests/{reference}", registry.url());
    let accept = [
        media_type::OCI_MANIFEST,
        media_type::OCI_INDEX,
        media_type::DOCKER_MANIFEST,
        media_type::DOCKER_MANIFEST_LIST,
    ]
    .join(", ");
    let authorization = registry.authorization(name);
    registry.run(|| {
        let mut request = Registry::agent().get(&url).header("Accept", &accept);
        if let Some(value) = &authorization {
            request = request.header("Authorization", value);
        }
        let mut response = request.call().map_err(io::Error::other)?;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        };
        let digest = header("Docker-Content-Digest");
        let media_type = header("Content-Type");
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .read_to_vec()
            .map_err(io::Error::other)?;
        Ok(FetchedManifest {
            status,
            digest,
            media_type,
            body,
        })
    })?
}

/// Uploads over the distribution API for one repository.
struct Pusher<'a> {
    /// HTTP agent; used only on a thread inside the registry's netns.
    agent: ureq::Agent,
    /// Registry base URL, `http://127.0.0.1:5000`.
    base: &'a str,
    /// Repository name, e.g. `library/busybox`.
    name: &'a str,
    /// `Authorization` header value, when the registry wants one.
    authorization: Option<&'a str>,
}

impl Pusher<'_> {
    /// Adds the auth header when the registry needs one.
    fn authorize<B>(&self, request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match self.authorization {
            Some(value) => request.header("Authorization", value),
            None => request,
        }
    }

    /// Uploads a blob unless the repository already has it: `HEAD`, then
    /// `POST /blobs/uploads/` and a monolithic `PUT <location>?digest=`.
    fn ensure_blob(&self, digest: &str, data: &[u8]) -> io::Result<()> {
        let blob_url = format!("{}/v2/{}/blobs/{digest}", self.base, self.name);
        let head = self
            .authorize(self.agent.head(&blob_url))
            .call()
            .map_err(|err| io::Error::other(format!("HEAD {blob_url}: {err}")))?;
        if head.status() == 200 {
            return Ok(());
        }

        let start_url = format!("{}/v2/{}/blobs/uploads/", self.base, self.name);
        let mut started = self
            .authorize(self.agent.post(&start_url))
            .send_empty()
            .map_err(|err| io::Error::other(format!("POST {start_url}: {err}")))?;
        if started.status() != 202 {
            return Err(unexpected("POST", &start_url, &mut started));
        }
        let location = started
            .headers()
            .get("Location")
            .and_then(|value| value.to_str().ok())
            .ok_or_else(|| io::Error::other(format!("POST {start_url}: 202 without Location")))?;
        // The Location may be absolute or a path, and usually has a query already.
        let mut upload_url = if location.starts_with("http://") || location.starts_with("https://")
        {
            location.to_owned()
        } else {
            format!("{}{location}", self.base)
        };
        upload_url.push(if upload_url.contains('?') { '&' } else { '?' });
        upload_url.push_str("digest=");
        upload_url.push_str(digest);

        let mut done = self
            .authorize(self.agent.put(&upload_url))
            .header("Content-Type", "application/octet-stream")
            .send(data)
            .map_err(|err| io::Error::other(format!("PUT {upload_url}: {err}")))?;
        if done.status() != 201 {
            return Err(unexpected("PUT", &upload_url, &mut done));
        }
        Ok(())
    }

    /// `PUT /v2/<name>/manifests/<tag>`, checking the digest the registry computed.
    fn put_manifest(&self, tag: &str, manifest: &Blob) -> io::Result<()> {
        let url = format!("{}/v2/{}/manifests/{tag}", self.base, self.name);
        let mut response = self
            .authorize(self.agent.put(&url))
            .header("Content-Type", manifest.media_type)
            .send(&manifest.data[..])
            .map_err(|err| io::Error::other(format!("PUT {url}: {err}")))?;
        if response.status() != 201 {
            return Err(unexpected("PUT", &url, &mut response));
        }
        let served = response
            .headers()
            .get("Docker-Content-Digest")
            .and_then(|value| value.to_str().ok());
        if let Some(served) = served
            && served != manifest.digest
        {
            return Err(io::Error::other(format!(
                "PUT {url}: registry digest {served} differs from ours {}",
                manifest.digest
            )));
        }
        Ok(())
    }
}

/// An error for an unexpected registry answer, with its body (the
/// distribution API puts its error codes there).
fn unexpected(method: &str, url: &str, response: &mut http::Response<ureq::Body>) -> io::Error {
    let status = response.status();
    let body = response.body_mut().read_to_string().unwrap_or_default();
    io::Error::other(format!("{method} {url}: {status}: {body}"))
}

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    let hash = Sha256::digest(data);
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for byte in hash {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// The Go architecture name of this machine (what image configs carry).
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "arm" => "arm",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

/// Serialises JSON compactly; serde_json's maps are sorted, so this is stable.
fn to_json_bytes(value: &Value) -> Vec<u8> {
    // Serialising a Value held in memory cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}
