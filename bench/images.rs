//! Image figures: cold pull + unpack of the small and the big bench image, and the pause
//! stand-in containerd needs before it can run pods.
//!
//! "Cold" means the runtime holds none of the image's content: before every pull the image
//! is removed over CRI; for containerd, whose garbage collector may keep content, `ctr` then
//! removes any of the image's blobs, image records or layer snapshots still present.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use carrack::proto;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::client::{Runtime, bounded};
use crate::report::{Writer, median};

/// What an image is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// containerd's sandbox image (a shell that sleeps until SIGTERM).
    Pause,
    /// The ~1 MB image.
    Small,
    /// The multi-layer image of several hundred MB.
    Big,
}

/// One pushed image.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchImage {
    /// What the image is for.
    pub role: Role,
    /// Reference the runtimes pull (their mirrors send it to the node's registry).
    pub reference: String,
    /// `sha256:` of the manifest.
    pub manifest_digest: String,
    /// `sha256:` of the config: the image ID.
    pub image_id: String,
    /// Every blob digest: layers, config, manifest.
    pub blobs: Vec<String>,
    /// The layers' uncompressed digests, lowest first.
    pub diff_ids: Vec<String>,
    /// Number of layers.
    pub layers: usize,
    /// Sum of the gzip layer sizes.
    pub compressed_bytes: u64,
    /// Sum of the uncompressed layer sizes.
    pub uncompressed_bytes: u64,
}

/// The file `push` writes and `measure` reads.
#[derive(Debug, Serialize, Deserialize)]
pub struct ImagesFile {
    /// The pushed images.
    pub images: Vec<BenchImage>,
}

impl ImagesFile {
    /// The image with `role`.
    pub fn get(&self, role: Role) -> Result<&BenchImage> {
        self.images
            .iter()
            .find(|image| image.role == role)
            .with_context(|| format!("no {role:?} image in the images file"))
    }
}

/// Reads the images file.
pub fn load(path: &Path) -> Result<ImagesFile> {
    let text = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    serde_json::from_slice(&text).with_context(|| format!("parse {}", path.display()))
}

/// Settings of the pull measurements.
#[derive(Debug, Clone)]
pub struct PullSettings {
    /// Cold pulls per image and runtime.
    pub runs: usize,
    /// Limit of one pull.
    pub timeout: Duration,
    /// containerd's `ctr` binary.
    pub ctr: String,
}

fn spec(reference: &str) -> proto::ImageSpec {
    proto::ImageSpec {
        image: reference.to_owned(),
        ..Default::default()
    }
}

/// The image ID the runtime reports for `reference`, if it has the image.
async fn image_id(runtime: &mut Runtime, reference: &str) -> Result<Option<String>> {
    let reply = bounded(
        "ImageStatus",
        Duration::from_secs(30),
        runtime.image.image_status(proto::ImageStatusRequest {
            image: Some(spec(reference)),
            verbose: false,
        }),
    )
    .await?;
    Ok(reply.image.map(|image| image.id))
}

/// Pulls `reference`; returns the time `PullImage` took.
async fn pull(runtime: &mut Runtime, reference: &str, limit: Duration) -> Result<Duration> {
    let start = Instant::now();
    bounded(
        "PullImage",
        limit,
        runtime.image.pull_image(proto::PullImageRequest {
            image: Some(spec(reference)),
            auth: None,
            sandbox_config: None,
        }),
    )
    .await?;
    Ok(start.elapsed())
}

/// Removes `reference` over CRI (absent is fine).
async fn remove(runtime: &mut Runtime, reference: &str) -> Result<()> {
    let result = bounded(
        "RemoveImage",
        Duration::from_secs(120),
        runtime.image.remove_image(proto::RemoveImageRequest {
            image: Some(spec(reference)),
        }),
    )
    .await;
    match result {
        Ok(_) => Ok(()),
        // Older runtimes answer NotFound for an absent image.
        Err(err) if format!("{err:#}").contains("NotFound") => Ok(()),
        Err(err) => Err(err),
    }
}

/// Pulls containerd's sandbox image if it is missing (Carrack runs pods without one).
pub async fn ensure_sandbox_images(
    runtimes: &mut [Runtime],
    images: &ImagesFile,
    out: &mut Writer,
) -> Result<()> {
    let pause = images.get(Role::Pause)?;
    for runtime in runtimes.iter_mut().filter(|r| r.name == "containerd") {
        if image_id(runtime, &pause.reference).await?.is_none() {
            let took = pull(runtime, &pause.reference, Duration::from_secs(120))
                .await
                .context("pulling the sandbox image")?;
            out.note(
                &runtime.name,
                &format!(
                    "sandbox image {} pulled before the pod steps ({:.0} ms, not counted)",
                    pause.reference,
                    took.as_secs_f64() * 1000.0
                ),
            )?;
        }
    }
    Ok(())
}

/// Pulls `image` on every runtime that does not hold it yet (not timed; noted).
pub async fn ensure_image(
    runtimes: &mut [Runtime],
    image: &BenchImage,
    why: &str,
    out: &mut Writer,
) -> Result<()> {
    for runtime in runtimes.iter_mut() {
        if image_id(runtime, &image.reference).await?.is_none() {
            let took = pull(runtime, &image.reference, Duration::from_secs(120))
                .await
                .with_context(|| format!("pulling {}", image.reference))?;
            out.note(
                &runtime.name,
                &format!(
                    "{} pulled {why} ({:.0} ms, not counted)",
                    image.reference,
                    took.as_secs_f64() * 1000.0
                ),
            )?;
        }
    }
    Ok(())
}

/// Runs `ctr` against the runtime's socket in the `k8s.io` namespace; returns stdout.
fn ctr(settings: &PullSettings, runtime: &Runtime, args: &[&str]) -> Result<String> {
    let output = Command::new(&settings.ctr)
        .arg("--address")
        .arg(&runtime.socket)
        .args(["--namespace", "k8s.io"])
        .args(args)
        .output()
        .with_context(|| format!("run {}", settings.ctr))?;
    if !output.status.success() {
        bail!(
            "ctr {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The snapshot keys containerd gives an image's layers: their chain IDs, lowest first.
fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut chain: Vec<String> = Vec::new();
    for diff_id in diff_ids {
        let next = match chain.last() {
            None => diff_id.clone(),
            Some(parent) => format!(
                "sha256:{}",
                hex::encode(Sha256::digest(format!("{parent} {diff_id}").as_bytes()))
            ),
        };
        chain.push(next);
    }
    chain
}

/// Removes whatever containerd still holds of `image` after the CRI removal; returns what
/// it found (empty when the CRI removal had left nothing).
fn containerd_leftovers(
    settings: &PullSettings,
    runtime: &Runtime,
    image: &BenchImage,
) -> Result<Vec<String>> {
    let mut found = Vec::new();
    let repository = image
        .reference
        .rsplit_once(':')
        .map_or(image.reference.as_str(), |(repo, _)| repo);
    let refs: Vec<String> = ctr(settings, runtime, &["images", "ls", "-q"])?
        .lines()
        .filter(|line| line.contains(repository) || line.contains(&image.manifest_digest))
        .map(str::to_owned)
        .collect();
    if !refs.is_empty() {
        let mut args = vec!["images", "rm", "--sync"];
        args.extend(refs.iter().map(String::as_str));
        ctr(settings, runtime, &args)?;
        found.extend(refs.iter().map(|r| format!("image record {r}")));
    }
    let snapshots = ctr(settings, runtime, &["snapshots", "ls"])?;
    for chain_id in chain_ids(&image.diff_ids).iter().rev() {
        if snapshots
            .lines()
            .any(|line| line.starts_with(chain_id.as_str()))
        {
            ctr(settings, runtime, &["snapshots", "rm", chain_id])?;
            found.push(format!("snapshot {chain_id}"));
        }
    }
    let content = ctr(settings, runtime, &["content", "ls", "-q"])?;
    let blobs: Vec<&str> = image
        .blobs
        .iter()
        .map(String::as_str)
        .filter(|blob| content.lines().any(|line| line.trim() == *blob))
        .collect();
    if !blobs.is_empty() {
        let mut args = vec!["content", "rm"];
        args.extend(blobs.iter().copied());
        ctr(settings, runtime, &args)?;
        found.extend(blobs.iter().map(|b| format!("blob {b}")));
    }
    Ok(found)
}

/// Makes `image` cold on `runtime`: removed over CRI, and for containerd nothing of it left
/// in its content store or snapshotter. Returns a remark when leftovers had to be removed.
async fn make_cold(
    runtime: &mut Runtime,
    image: &BenchImage,
    settings: &PullSettings,
    baseline: u64,
) -> Result<Option<String>> {
    remove(runtime, &image.reference).await?;
    if let Some(id) = image_id(runtime, &image.reference).await? {
        bail!(
            "{} still present as {id} after RemoveImage",
            image.reference
        );
    }
    if runtime.name != "containerd" {
        // Nothing of the image may stay behind: its layers would make the next pull warm.
        let used = image_fs_used(runtime).await?;
        let allowed = baseline + image.uncompressed_bytes / 20;
        if used > allowed {
            bail!(
                "not cold after RemoveImage of {}: ImageFsInfo says {:.1} MB used, {:.1} MB before \
                 the first pull (its layers were left behind)",
                image.reference,
                used as f64 / 1e6,
                baseline as f64 / 1e6
            );
        }
        return Ok(None);
    }
    let found = containerd_leftovers(settings, runtime, image)?;
    Ok((!found.is_empty()).then(|| {
        format!(
            "after RemoveImage of {} containerd still held {} (removed with ctr before the pull)",
            image.reference,
            found.join(", ")
        )
    }))
}

/// Bytes the runtime reports used on its image filesystems (`ImageFsInfo`).
async fn image_fs_used(runtime: &mut Runtime) -> Result<u64> {
    let reply = bounded(
        "ImageFsInfo",
        Duration::from_secs(60),
        runtime.image.image_fs_info(proto::ImageFsInfoRequest {}),
    )
    .await?;
    Ok(reply
        .image_filesystems
        .iter()
        .filter_map(|fs| fs.used_bytes.as_ref().map(|used| used.value))
        .sum())
}

/// Flushes dirty pages, so that one pull's write-back does not slow the next.
fn sync_disks() {
    let _ = Command::new("sync").status();
}

/// Cold pulls of the small and the big image, `runs` per runtime, taking turns.
pub async fn measure(
    runtimes: &mut [Runtime],
    images: &ImagesFile,
    settings: &PullSettings,
    out: &mut Writer,
) -> Result<()> {
    for role in [Role::Small, Role::Big] {
        let image = images.get(role)?;
        let what = match role {
            Role::Small => format!(
                "cold pull, small image ({:.1} MB gzip)",
                image.compressed_bytes as f64 / 1e6
            ),
            _ => format!(
                "cold pull+unpack, {} layers, {:.0} MB raw / {:.0} MB gzip",
                image.layers,
                image.uncompressed_bytes as f64 / 1e6,
                image.compressed_bytes as f64 / 1e6
            ),
        };
        let step = format!("{what} (median of {})", settings.runs);
        let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); runtimes.len()];
        let mut failures: Vec<Option<String>> = vec![None; runtimes.len()];
        let mut remarks: Vec<Option<String>> = vec![None; runtimes.len()];
        // What each runtime's image filesystem holds without the image, for the cold check.
        let mut baselines: Vec<u64> = vec![0; runtimes.len()];
        for (index, runtime) in runtimes.iter_mut().enumerate() {
            let before = async {
                make_cold(runtime, image, settings, u64::MAX / 2).await?;
                image_fs_used(runtime).await
            };
            match before.await {
                Ok(used) => baselines[index] = used,
                Err(err) => failures[index] = Some(format!("before the first pull: {err:#}")),
            }
        }
        for run in 0..settings.runs {
            for (index, runtime) in runtimes.iter_mut().enumerate() {
                if failures[index].is_some() {
                    continue;
                }
                let attempt = async {
                    if let Some(remark) =
                        make_cold(runtime, image, settings, baselines[index]).await?
                    {
                        remarks[index].get_or_insert(remark);
                    }
                    sync_disks();
                    let took = pull(runtime, &image.reference, settings.timeout).await?;
                    match image_id(runtime, &image.reference).await? {
                        Some(id) if id == image.image_id => Ok(took),
                        Some(id) => bail!("pulled image has id {id}, expected {}", image.image_id),
                        None => bail!("ImageStatus finds nothing after the pull"),
                    }
                };
                match attempt.await {
                    Ok(took) => {
                        eprintln!(
                            "bench: {}: {what}: run {run}: {:.2} s",
                            runtime.name,
                            took.as_secs_f64()
                        );
                        samples[index].push(took);
                    }
                    Err(err) => failures[index] = Some(format!("run {run}: {err:#}")),
                }
            }
        }
        for (index, runtime) in runtimes.iter_mut().enumerate() {
            let values = &samples[index];
            let (value, unit) = if role == Role::Small {
                (median(values).as_secs_f64() * 1000.0, "ms")
            } else {
                (median(values).as_secs_f64(), "s")
            };
            match &failures[index] {
                Some(why) if values.is_empty() => out.failed(&step, &runtime.name, why)?,
                Some(why) => out.partial(
                    &step,
                    &runtime.name,
                    value,
                    unit,
                    &format!(
                        "median of the {} of {} runs done before: {why}",
                        values.len(),
                        settings.runs
                    ),
                )?,
                None => out.value(&step, &runtime.name, value, unit)?,
            }
            if !values.is_empty() {
                let all: Vec<String> = values
                    .iter()
                    .map(|v| format!("{:.2} s", v.as_secs_f64()))
                    .collect();
                out.note(&runtime.name, &format!("{what}: runs {}", all.join(", ")))?;
            }
            if let Some(remark) = &remarks[index] {
                out.note(&runtime.name, remark)?;
            }
            if let Err(err) = make_cold(runtime, image, settings, baselines[index]).await {
                eprintln!(
                    "bench: {}: removing {}: {err:#}",
                    runtime.name, image.reference
                );
            }
        }
    }
    Ok(())
}

/// Removes every bench image from the runtime (the end-of-run cleanup).
pub async fn remove_all(runtime: &mut Runtime, images: &ImagesFile) {
    for image in &images.images {
        if let Err(err) = remove(runtime, &image.reference).await {
            eprintln!(
                "bench cleanup: {}: removing {}: {err:#}",
                runtime.name, image.reference
            );
        }
    }
}
