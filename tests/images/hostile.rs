//! The hostile-image suite: images built to break the rules of a pull, pushed to the
//! node's registry (or corrupted in its storage). Each pull must fail with a clear error,
//! leave no image, no committed layer and no ingest debris, write nothing outside the
//! layer directory, and leave the images already stored intact.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use tonic::Code;

use crate::support::hostile::{self, ESCAPE_MARK};
use crate::support::http::HttpServer;
use crate::support::images::{self, TestImage, media_type};
use crate::support::node::Node;
use crate::support::skip_unless_root;
use crate::{assert_status, ingest_leftovers, layer_dirs, list, pull, status};

/// A fake registry for what the real one refuses to store, on the node's loopback.
const FAKE_REGISTRY: &str = "127.0.0.1:5004";

/// The decompression-bomb limit the node runs with: above the busybox layer (~2 MB).
const MAX_LAYER_BYTES: u64 = 4 << 20;

/// How a case's blob is damaged in the registry's storage after the push (the registry
/// refuses such blobs through its API, so they are damaged behind its back).
#[derive(Debug, Clone, Copy)]
enum Damage {
    None,
    /// One byte of the layer blob changed: same size, other digest.
    FlipByte,
    /// The layer blob cut to half its size.
    Truncate,
}

struct Case {
    name: &'static str,
    image: TestImage,
    damage: Damage,
    code: Code,
    fragments: Vec<String>,
}

fn case(
    name: &'static str,
    image: std::io::Result<TestImage>,
    code: Code,
    fragments: &[&str],
) -> Case {
    Case {
        name,
        image: image.unwrap_or_else(|err| panic!("build hostile image {name}: {err}")),
        damage: Damage::None,
        code,
        fragments: fragments.iter().map(|f| (*f).to_owned()).collect(),
    }
}

/// Every file under `dir` with its size, mode and mtime, symlinks not followed.
fn fingerprint(dir: &Path) -> BTreeMap<PathBuf, (u64, u32, u64)> {
    let mut found = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&next) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                pending.push(path.clone());
            }
            let relative = path.strip_prefix(dir).unwrap_or(&path).to_path_buf();
            found.insert(relative, (meta.len(), meta.mode(), meta.mtime() as u64));
        }
    }
    found
}

/// Paths under `dir` whose name starts with [`ESCAPE_MARK`], symlinks not followed.
fn escapees(dir: &Path) -> Vec<PathBuf> {
    fingerprint(dir)
        .into_keys()
        .filter(|path| {
            path.file_name()
                .is_some_and(|name| name.to_string_lossy().starts_with(ESCAPE_MARK))
        })
        .map(|path| dir.join(path))
        .collect()
}

/// What must hold after every hostile pull.
struct Baseline {
    id: String,
    image: carrack::proto::Image,
    layers: Vec<PathBuf>,
    layer_content: BTreeMap<PathBuf, (u64, u32, u64)>,
    victim: PathBuf,
    victim_bytes: Vec<u8>,
}

impl Baseline {
    /// Pulls busybox and records what must not change; the victim is a file outside
    /// every layer that hostile links and symlinks aim at.
    async fn pull(node: &Node, cri: &mut crate::support::client::CriClient) -> Baseline {
        let victim = node.base_dir().join("registry").join("config.yml");
        node.push(images::busybox(), "library/busybox:latest")
            .expect("push busybox");
        let id = pull(cri, "busybox").await.expect("pull the baseline");
        let layers = layer_dirs(node);
        assert_eq!(layers.len(), 1);
        let baseline = Baseline {
            image: status(cri, &id).await.expect("baseline status"),
            id,
            layer_content: fingerprint(&layers[0].join("fs")),
            layers,
            victim_bytes: std::fs::read(&victim).expect("read victim"),
            victim,
        };
        baseline.check(node, cri, "the baseline pull").await;
        baseline
    }

    async fn check(&self, node: &Node, cri: &mut crate::support::client::CriClient, after: &str) {
        let listed = list(cri).await;
        assert_eq!(
            listed,
            vec![self.image.clone()],
            "after {after}: only the baseline image"
        );
        assert_eq!(
            status(cri, &self.id).await.as_ref(),
            Some(&self.image),
            "after {after}: baseline status unchanged"
        );
        assert_eq!(
            layer_dirs(node),
            self.layers,
            "after {after}: no layer committed or lost"
        );
        assert!(
            ingest_leftovers(node).is_empty(),
            "after {after}: ingest debris {:?}",
            ingest_leftovers(node)
        );
        let content = self.layers[0].join("fs");
        assert_eq!(
            fingerprint(&content),
            self.layer_content,
            "after {after}: the stored busybox layer changed"
        );
        let victim = std::fs::metadata(&self.victim).expect("victim file");
        assert_eq!(
            victim.nlink(),
            1,
            "after {after}: someone hard-linked the victim"
        );
        assert_eq!(
            std::fs::read(&self.victim).expect("read victim"),
            self.victim_bytes,
            "after {after}: the victim file was written"
        );
        assert!(
            escapees(node.base_dir()).is_empty(),
            "after {after}: files written outside the layer: {:?}",
            escapees(node.base_dir())
        );
        for host_path in ["/etc", "/tmp", "/"] {
            assert!(
                escapees_flat(Path::new(host_path)).is_empty(),
                "after {after}: escaped onto the host in {host_path}"
            );
        }
    }
}

/// [`ESCAPE_MARK`] files directly in `dir` (host directories are not walked).
fn escapees_flat(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|entry| entry.file_name().to_string_lossy().starts_with(ESCAPE_MARK))
                .map(|entry| entry.path())
                .collect()
        })
        .unwrap_or_default()
}

fn damage(node: &Node, case: &Case) {
    let Some(layer) = case.image.layers.last() else {
        return;
    };
    let path = node.registry().blob_data_path(&layer.digest);
    match case.damage {
        Damage::None => {}
        Damage::FlipByte => {
            let mut bytes = std::fs::read(&path).expect("read the stored blob");
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0xff;
            std::fs::write(&path, bytes).expect("damage the stored blob");
        }
        Damage::Truncate => {
            let bytes = std::fs::read(&path).expect("read the stored blob");
            std::fs::write(&path, &bytes[..bytes.len() / 2]).expect("truncate the stored blob");
        }
    }
}

/// Pushes `case`, damages it, pulls it: the pull must fail as the case says and leave
/// everything as `baseline` recorded it.
async fn refuse(
    node: &Node,
    cri: &mut crate::support::client::CriClient,
    baseline: &Baseline,
    case: &Case,
) {
    let repository = format!("hostile/{}", case.name);
    node.push(&case.image, &format!("{repository}:1"))
        .unwrap_or_else(|err| panic!("push {}: {err}", case.name));
    damage(node, case);
    let reference = format!("carrack.test/{repository}:1");
    let err = pull(cri, &reference)
        .await
        .expect_err(&format!("{} must be refused", case.name));
    eprintln!("{}: {}", case.name, err.message());
    let named = format!("carrack.test/{repository}");
    let mut fragments: Vec<&str> = case.fragments.iter().map(String::as_str).collect();
    fragments.push(&named);
    assert_status(&err, case.code, &fragments);
    assert!(status(cri, &reference).await.is_none(), "{}", case.name);
    baseline.check(node, cri, case.name).await;
}

/// Blobs whose bytes are not what the manifest names were reported by their symptom
/// ("not a valid gzip stream"), because the unpacker's verdict was checked before the
/// blob's digest and size. The mismatch is the cause, and is now what the error says.
#[tokio::test(flavor = "multi_thread")]
async fn damaged_layer_blobs_are_reported_as_digest_or_size_mismatches() {
    if !skip_unless_root() {
        return;
    }
    let node = Node::start();
    let mut cri = node.cri().await;
    let baseline = Baseline::pull(&node, &mut cri).await;
    let mut flipped = case(
        "wrong-layer-digest",
        hostile::small_unique("flipped"),
        Code::FailedPrecondition,
        &["blob digest is"],
    );
    flipped.damage = Damage::FlipByte;
    let mut truncated = case(
        "truncated-blob",
        hostile::small_unique("truncated"),
        Code::FailedPrecondition,
        &["its descriptor declares"],
    );
    truncated.damage = Damage::Truncate;
    for case in [flipped, truncated] {
        refuse(&node, &mut cri, &baseline, &case).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_images_are_refused_and_leave_nothing_behind() {
    if !skip_unless_root() {
        return;
    }
    let node = Node::builder()
        .config(&format!(
            "[images]\nmax_layer_bytes = {MAX_LAYER_BYTES}\n\
             [registry.mirrors.\"fake.test\"]\n\
             endpoints = [\"http://{FAKE_REGISTRY}\"]\nuse_upstream = false\n"
        ))
        .start();
    let base = node.base_dir().to_path_buf();
    let victim_in_base = "registry/config.yml";
    let mut cri = node.cri().await;
    let baseline = Baseline::pull(&node, &mut cri).await;

    let invalid = Code::InvalidArgument;
    let cases = vec![
        case(
            "traversal",
            hostile::path_traversal(),
            invalid,
            &["../../etc/", "`..`"],
        ),
        case(
            "deep-traversal",
            hostile::deep_traversal(),
            invalid,
            &["`..`"],
        ),
        case(
            "symlink-parent-absolute",
            hostile::symlink_parent_absolute(&base),
            invalid,
            &["evil/carrack-escaped-symlink", "escapes the layer"],
        ),
        case(
            "symlink-parent-relative",
            hostile::symlink_parent_relative(),
            invalid,
            &["evil/carrack-escaped-relsymlink", "escapes the layer"],
        ),
        case(
            "hardlink-absolute",
            hostile::hardlink_absolute(&baseline.victim),
            invalid,
            &["carrack-escaped-hardlink", "hard link"],
        ),
        case(
            "hardlink-relative",
            hostile::hardlink_relative(victim_in_base),
            invalid,
            &["carrack-escaped-relhardlink", "hard link"],
        ),
        case(
            "whiteout-dotdot",
            hostile::whiteout_dotdot(),
            invalid,
            &["ok/.wh.."],
        ),
        case("overlong-name", hostile::overlong_name(), invalid, &["255"]),
        case(
            "wrong-diff-id",
            hostile::wrong_diff_id(),
            Code::FailedPrecondition,
            &["diff id"],
        ),
        case(
            "truncated-gzip",
            hostile::truncated_gzip(),
            invalid,
            &["gzip"],
        ),
        case(
            "decompression-bomb",
            hostile::decompression_bomb(32 << 20),
            Code::ResourceExhausted,
            &["4194304"],
        ),
        case(
            "oversized-config",
            hostile::oversized_config(5 << 20),
            Code::ResourceExhausted,
            &["4194304"],
        ),
    ];
    for case in &cases {
        refuse(&node, &mut cri, &baseline, case).await;
    }

    // The registry refuses manifests over 4 MiB itself, so a fake one serves this.
    let oversized = hostile::oversized_manifest(5 << 20).expect("build the oversized manifest");
    let body = oversized.manifest.data.clone();
    let _fake = HttpServer::start(&node.netns_path(), FAKE_REGISTRY, move |exchange| {
        if exchange.request.path() == "/v2/hostile/oversized-manifest/manifests/1" {
            exchange.respond(200, &[("Content-Type", media_type::OCI_MANIFEST)], &body)
        } else {
            exchange.respond(404, &[], b"")
        }
    })
    .expect("start the fake registry");
    let reference = "fake.test/hostile/oversized-manifest:1";
    let err = pull(&mut cri, reference)
        .await
        .expect_err("oversized manifest");
    eprintln!("oversized-manifest: {}", err.message());
    assert_status(
        &err,
        Code::ResourceExhausted,
        &[
            "manifest 1 of fake.test/hostile/oversized-manifest",
            "4194304",
        ],
    );
    assert!(status(&mut cri, reference).await.is_none());
    baseline.check(&node, &mut cri, "oversized-manifest").await;
}

/// Entries that are refused by nobody but must stay inside the layer: an absolute name
/// (taken relative to the layer root, as Docker and containerd do) and a file replacing a
/// symlink to a file outside (the link is replaced, never written through).
#[tokio::test(flavor = "multi_thread")]
async fn absolute_names_and_replaced_symlinks_stay_inside_the_layer() {
    if !skip_unless_root() {
        return;
    }
    let node = Node::start();
    let base = node.base_dir().to_path_buf();
    let victim = base.join("registry").join("config.yml");
    let victim_bytes = std::fs::read(&victim).expect("read victim");
    let mut cri = node.cri().await;

    for (name, image) in [
        ("absolute", hostile::absolute_path(&base)),
        ("symlink-then-file", hostile::symlink_then_file(&victim)),
    ] {
        let image = image.expect("build the image");
        node.push(&image, &format!("contained/{name}:1"))
            .expect("push");
        let id = pull(&mut cri, &format!("carrack.test/contained/{name}:1"))
            .await
            .unwrap_or_else(|err| panic!("{name}: {err:?}"));
        assert_eq!(id, image.id());
    }
    assert_eq!(std::fs::read(&victim).expect("read victim"), victim_bytes);
    assert_eq!(std::fs::metadata(&victim).expect("victim").nlink(), 1);

    // The absolute name is inside the layer, under the same path relative to its root.
    let layers_root = node.root_dir().join("snapshots").join("layers");
    let inside: Vec<PathBuf> = escapees(node.base_dir())
        .into_iter()
        .filter(|path| !path.starts_with(&layers_root))
        .collect();
    assert!(inside.is_empty(), "written outside the layers: {inside:?}");
    let relative = base.strip_prefix("/").expect("absolute base");
    let contained = layer_dirs(&node)
        .iter()
        .map(|layer| {
            layer
                .join("fs")
                .join(relative)
                .join(format!("{ESCAPE_MARK}-absolute"))
        })
        .filter(|path| path.exists())
        .count();
    assert_eq!(contained, 1, "the absolute entry landed inside its layer");
    // The replaced symlink is a regular file with the layer's contents.
    let replaced = layer_dirs(&node)
        .iter()
        .map(|layer| layer.join("fs").join("victim"))
        .find(|path| path.exists())
        .expect("the victim entry");
    let meta = std::fs::symlink_metadata(&replaced).expect("victim entry");
    assert!(meta.is_file(), "{meta:?}");
    assert!(ingest_leftovers(&node).is_empty());
}
