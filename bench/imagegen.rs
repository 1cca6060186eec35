//! Generated image layers: gzip tars written to a cache dir, with their blob digest and
//! diff id computed while they are written.
//!
//! The big image's layers must be as costly to unpack as a real image's: many files of
//! mixed sizes, and content that compresses like real software does (text like source and
//! docs, byte streams like machine code, some already-compressed data), not zeros. Content
//! comes from a seeded generator, so every run (and machine) builds the same bytes.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result, anyhow};
use flate2::Compression;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tar::{EntryType, Header};

/// Bump when the generator changes, so cached layers are rebuilt.
pub const GEN_VERSION: &str = "v1";

/// mtime of every entry (2024-01-01T00:00:00Z).
const MTIME: u64 = 1_704_067_200;

/// The busybox binary the runnable layers are made of (Debian's `busybox-static`).
const BUSYBOX: &str = "/bin/busybox";

const MIB: u64 = 1024 * 1024;

/// One finished layer blob on disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayerFile {
    /// The gzip blob.
    pub path: PathBuf,
    /// `sha256:` of the blob.
    pub digest: String,
    /// `sha256:` of the uncompressed tar.
    pub diff_id: String,
    /// Bytes of the blob.
    pub size: u64,
    /// Bytes of the uncompressed tar.
    pub uncompressed: u64,
    /// What the layer holds (image history).
    pub description: String,
}

/// A writer that hashes and counts what passes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Hashing<W> {
    fn new(inner: W) -> Self {
        Hashing {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// The inner writer, `sha256:<hex>` and the byte count.
    fn finish(self) -> (W, String, u64) {
        let digest = format!("sha256:{}", hex::encode(self.hasher.finalize()));
        (self.inner, digest, self.bytes)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.hasher.update(&buf[..written]);
        self.bytes += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

type LayerTar = tar::Builder<Hashing<GzEncoder<Hashing<BufWriter<File>>>>>;

/// Writes a layer to `path` through `fill` (atomically: temp file, then rename).
fn write_layer(
    path: &Path,
    description: &str,
    fill: impl FnOnce(&mut LayerTar) -> io::Result<()>,
) -> Result<LayerFile> {
    let temp = path.with_extension("partial");
    let file = File::create(&temp).with_context(|| format!("create {}", temp.display()))?;
    let gzip = GzEncoder::new(
        Hashing::new(BufWriter::with_capacity(1 << 20, file)),
        Compression::default(),
    );
    let mut tar = tar::Builder::new(Hashing::new(gzip));
    tar.mode(tar::HeaderMode::Deterministic);
    fill(&mut tar).with_context(|| format!("write {}", temp.display()))?;
    let (gzip, diff_id, uncompressed) = tar.into_inner()?.finish();
    let (buffered, digest, size) = gzip.finish()?.finish();
    buffered
        .into_inner()
        .map_err(|err| anyhow!("flush {}: {}", temp.display(), err.error()))?
        .sync_all()?;
    std::fs::rename(&temp, path)?;
    Ok(LayerFile {
        path: path.to_path_buf(),
        digest,
        diff_id,
        size,
        uncompressed,
        description: description.to_owned(),
    })
}

fn header(kind: EntryType, mode: u32, size: u64) -> Header {
    let mut header = Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(MTIME);
    header
}

fn add_dir(tar: &mut LayerTar, path: &str) -> io::Result<()> {
    tar.append_data(
        &mut header(EntryType::Directory, 0o755, 0),
        path,
        io::empty(),
    )
}

fn add_file(tar: &mut LayerTar, path: &str, mode: u32, data: &[u8]) -> io::Result<()> {
    tar.append_data(
        &mut header(EntryType::Regular, mode, data.len() as u64),
        path,
        data,
    )
}

/// A runnable base layer: `/bin/busybox` with `sh` and `sleep` as hard links, `/etc/passwd`,
/// `/tmp`, and `/etc/<marker>` so that each image gets a layer of its own (a layer shared
/// with an image pulled earlier would not be a cold pull).
pub fn busybox_layer(dir: &Path, marker: &str) -> Result<LayerFile> {
    let busybox = std::fs::read(BUSYBOX)
        .with_context(|| format!("read {BUSYBOX} (Debian package busybox-static)"))?;
    let path = dir.join(format!("busybox-{marker}.tar.gz"));
    write_layer(&path, &format!("busybox base ({marker})"), |tar| {
        for dir in ["bin", "etc", "tmp", "root"] {
            add_dir(tar, dir)?;
        }
        add_file(tar, "bin/busybox", 0o755, &busybox)?;
        for applet in ["sh", "sleep", "true", "cat", "ls"] {
            tar.append_link(
                &mut header(EntryType::Link, 0o755, 0),
                format!("bin/{applet}"),
                "bin/busybox",
            )?;
        }
        add_file(
            tar,
            "etc/passwd",
            0o644,
            b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        )?;
        add_file(tar, "etc/group", 0o644, b"root:x:0:\nnogroup:x:65534:\n")?;
        add_file(tar, &format!("etc/{marker}"), 0o644, marker.as_bytes())
    })
}

/// What a cache dir holds, to tell whether its layers fit the request.
#[derive(Debug, Serialize, Deserialize)]
struct CacheIndex {
    version: String,
    count: usize,
    mib: u64,
    layers: Vec<LayerFile>,
}

/// `count` generated layers of `mib` uncompressed MiB each, from the cache in `dir` when it
/// holds them, else built there (in parallel, one thread per core).
pub fn generated_layers(dir: &Path, count: usize, mib: u64) -> Result<Vec<LayerFile>> {
    let index_path = dir.join("generated.json");
    if let Ok(text) = std::fs::read_to_string(&index_path)
        && let Ok(index) = serde_json::from_str::<CacheIndex>(&text)
        && index.version == GEN_VERSION
        && index.count == count
        && index.mib == mib
        && index
            .layers
            .iter()
            .all(|layer| std::fs::metadata(&layer.path).is_ok_and(|meta| meta.len() == layer.size))
    {
        eprintln!("bench: using cached layers in {}", dir.display());
        return Ok(index.layers);
    }

    eprintln!(
        "bench: generating {count} layers of {mib} MiB in {} (cached for later runs)",
        dir.display()
    );
    let threads = std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(1)
        .min(count)
        .max(1);
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<LayerFile>>>> =
        Mutex::new((0..count).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let layer = next.fetch_add(1, Ordering::Relaxed);
                    if layer >= count {
                        break;
                    }
                    let result = generate_layer(dir, layer, mib * MIB);
                    if let Ok(mut results) = results.lock() {
                        results[layer] = Some(result);
                    }
                }
            });
        }
    });
    let results = results
        .into_inner()
        .map_err(|_| anyhow!("a layer generator thread panicked"))?;
    let mut layers = Vec::new();
    for (index, result) in results.into_iter().enumerate() {
        layers.push(result.with_context(|| format!("layer {index} was not generated"))??);
    }
    let index = CacheIndex {
        version: GEN_VERSION.to_owned(),
        count,
        mib,
        layers: layers.clone(),
    };
    std::fs::write(&index_path, serde_json::to_vec_pretty(&index)?)?;
    Ok(layers)
}

/// The kinds of file content, with their rough gzip ratios.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Source code and documentation (≈ 0.3).
    Text,
    /// Executables and libraries (≈ 0.5).
    Binary,
    /// Already compressed data: archives, images (≈ 1.0).
    Packed,
}

/// One generated layer: files of mixed kinds and sizes under `opt/bench<layer>/`.
fn generate_layer(dir: &Path, layer: usize, target: u64) -> Result<LayerFile> {
    let path = dir.join(format!("generated-{layer}.tar.gz"));
    let mut rng = Rng::new(0x00C0_FFEE_u64 ^ ((layer as u64 + 1) << 32));
    let words = vocabulary(&mut rng, 3000);
    let opcodes: Vec<Vec<u8>> = (0..64)
        .map(|_| {
            let len = 1 + rng.below(3) as usize;
            (0..len).map(|_| rng.next() as u8).collect()
        })
        .collect();
    let root = format!("opt/bench{layer}");
    write_layer(&path, &format!("generated content, layer {layer}"), |tar| {
        add_dir(tar, "opt")?;
        add_dir(tar, &root)?;
        let mut made_dirs = std::collections::BTreeSet::new();
        let mut written = 0u64;
        let mut buf = Vec::new();
        let mut file = 0usize;
        while written < target {
            let (kind, size) = match rng.below(100) {
                0..40 => (Kind::Text, rng.log_uniform(512, 256 * 1024)),
                40..88 => (Kind::Binary, rng.log_uniform(8 * 1024, 8 * 1024 * 1024)),
                _ => (Kind::Packed, rng.log_uniform(4 * 1024, 2 * 1024 * 1024)),
            };
            let size = size.min(target - written).max(1);
            buf.clear();
            let (sub, ext, mode) = match kind {
                Kind::Text => {
                    text(&mut rng, &words, size as usize, &mut buf);
                    ("share", "txt", 0o644)
                }
                Kind::Binary => {
                    binary(&mut rng, &words, &opcodes, size as usize, &mut buf);
                    ("lib", "so", 0o755)
                }
                Kind::Packed => {
                    buf.resize(size as usize, 0);
                    rng.fill(&mut buf);
                    ("data", "pak", 0o644)
                }
            };
            let sub_dir = format!("{root}/{sub}/d{:03}", file / 150);
            if made_dirs.insert(format!("{root}/{sub}")) {
                add_dir(tar, &format!("{root}/{sub}"))?;
            }
            if made_dirs.insert(sub_dir.clone()) {
                add_dir(tar, &sub_dir)?;
            }
            add_file(tar, &format!("{sub_dir}/f{file:05}.{ext}"), mode, &buf)?;
            written += buf.len() as u64;
            file += 1;
        }
        Ok(())
    })
}

/// `count` made-up words of 2–11 lowercase letters.
fn vocabulary(rng: &mut Rng, count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|_| {
            let len = 2 + rng.below(10) as usize;
            (0..len).map(|_| b'a' + rng.below(26) as u8).collect()
        })
        .collect()
}

/// A word, the frequent ones far more often (roughly Zipf-like).
fn word<'a>(rng: &mut Rng, words: &'a [Vec<u8>]) -> &'a [u8] {
    let u = rng.unit();
    &words[((u * u * u) * words.len() as f64) as usize % words.len()]
}

/// Text like source code: indented lines of words and punctuation.
fn text(rng: &mut Rng, words: &[Vec<u8>], size: usize, out: &mut Vec<u8>) {
    const PUNCT: [&[u8]; 10] = [
        b" ", b" ", b" ", b", ", b".", b"(", b") ", b" = ", b"_", b"::",
    ];
    while out.len() < size {
        for _ in 0..rng.below(4) {
            out.extend_from_slice(b"    ");
        }
        for _ in 0..2 + rng.below(10) {
            out.extend_from_slice(word(rng, words));
            out.extend_from_slice(PUNCT[rng.below(PUNCT.len() as u64) as usize]);
        }
        out.extend_from_slice(if rng.below(3) == 0 { b";\n" } else { b"\n" });
    }
    out.truncate(size);
}

/// Bytes like machine code: frequent opcodes with small or address-like operands,
/// repeats of earlier sequences, alignment padding, symbol names and some noise.
fn binary(rng: &mut Rng, words: &[Vec<u8>], opcodes: &[Vec<u8>], size: usize, out: &mut Vec<u8>) {
    let base = rng.next() as u32 & 0xfff0_0000;
    while out.len() < size {
        match rng.below(100) {
            0..58 => {
                let u = rng.unit();
                out.extend_from_slice(&opcodes[((u * u) * opcodes.len() as f64) as usize]);
                match rng.below(10) {
                    0..3 => {}
                    3..6 => out.push(rng.below(32) as u8),
                    6..8 => out.extend_from_slice(&(rng.below(4096) as u32).to_le_bytes()),
                    _ => out.extend_from_slice(&(base | rng.below(1 << 20) as u32).to_le_bytes()),
                }
            }
            58..72 if out.len() > 4096 => {
                let distance = 16 + rng.below(4000) as usize;
                let len = 8 + rng.below(56) as usize;
                let from = out.len() - distance;
                for offset in 0..len {
                    out.push(out[from + offset]);
                }
            }
            72..80 => out.extend(std::iter::repeat_n(0u8, 1 + rng.below(15) as usize)),
            80..90 => {
                out.extend_from_slice(b"_Z");
                out.extend_from_slice(word(rng, words));
                out.push(b'_');
                out.extend_from_slice(word(rng, words));
                out.push(0);
            }
            _ => {
                for _ in 0..4 + rng.below(20) {
                    out.push(rng.next() as u8);
                }
            }
        }
    }
    out.truncate(size);
}

/// SplitMix64: fast, seedable, good enough for filler content.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (bound > 0).
    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Log-uniform in `low..high`: as many small files as big ones per size decade.
    fn log_uniform(&mut self, low: u64, high: u64) -> u64 {
        let (low, high) = ((low as f64).ln(), (high as f64).ln());
        (low + (high - low) * self.unit()).exp() as u64
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let bytes = self.next().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}
