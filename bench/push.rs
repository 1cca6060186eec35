//! `push`: builds the bench images and uploads them to the node's registry with the OCI
//! distribution API (monolithic blob uploads, then the manifest), from inside the node's
//! network namespace.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::PushArgs;
use crate::imagegen::{self, LayerFile};
use crate::images::{BenchImage, ImagesFile, Role};

const MANIFEST_TYPE: &str = "application/vnd.docker.distribution.manifest.v2+json";
const CONFIG_TYPE: &str = "application/vnd.docker.container.image.v1+json";
const LAYER_TYPE: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const CREATED: &str = "2024-01-01T00:00:00Z";
const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Repository namespace of the bench images in the registry.
pub const REPOSITORY_PREFIX: &str = "carrackbench";

/// The pause stand-in's command: sleeps until SIGTERM, then exits 0.
const PAUSE_COMMAND: &str = "trap 'exit 0' TERM; while :; do sleep 3600 & wait; done";

/// Builds (or takes from the cache) every layer, pushes the three images and writes the
/// images file.
pub fn run(args: &PushArgs) -> Result<()> {
    let dir = args.cache_dir.join(imagegen::GEN_VERSION);
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let registry = Registry::new(&args.registry);
    registry.wait_ready(Duration::from_secs(15))?;

    let mut big_layers = vec![imagegen::busybox_layer(&dir, "bench-big")?];
    let started = Instant::now();
    big_layers.extend(imagegen::generated_layers(
        &dir,
        args.big_layers,
        args.layer_mib,
    )?);
    eprintln!("bench: big image layers ready in {:.1?}", started.elapsed());

    let images = [
        (
            Role::Pause,
            "pause",
            vec![imagegen::busybox_layer(&dir, "bench-pause")?],
            json!({
                "Env": [PATH_ENV],
                "Entrypoint": ["/bin/sh", "-c", PAUSE_COMMAND],
            }),
        ),
        (
            Role::Small,
            "small",
            vec![imagegen::busybox_layer(&dir, "bench-small")?],
            json!({"Env": [PATH_ENV], "Cmd": ["sh"]}),
        ),
        (
            Role::Big,
            "big",
            big_layers,
            json!({"Env": [PATH_ENV], "Cmd": ["sh"]}),
        ),
    ];
    let mut pushed = Vec::new();
    for (role, name, layers, runtime_config) in images {
        let started = Instant::now();
        let repository = format!("{REPOSITORY_PREFIX}/{name}");
        let image = registry.push_image(
            &repository,
            "v1",
            &layers,
            runtime_config,
            role,
            &args.image_host,
        )?;
        eprintln!(
            "bench: pushed {} ({} layers, {:.1} MB gzip, {:.1} MB uncompressed) in {:.1?}",
            image.reference,
            image.layers,
            image.compressed_bytes as f64 / 1e6,
            image.uncompressed_bytes as f64 / 1e6,
            started.elapsed()
        );
        pushed.push(image);
    }
    let file = ImagesFile { images: pushed };
    std::fs::write(&args.out, serde_json::to_vec_pretty(&file)?)
        .with_context(|| format!("write {}", args.out.display()))?;
    Ok(())
}

/// A registry reached over plain HTTP.
#[derive(Debug)]
struct Registry {
    base: String,
    agent: ureq::Agent,
}

impl Registry {
    fn new(address: &str) -> Registry {
        let agent = ureq::Agent::config_builder()
            .proxy(None)
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into();
        Registry {
            base: format!("http://{address}"),
            agent,
        }
    }

    /// Polls `GET /v2/` until the registry answers 200.
    fn wait_ready(&self, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        let url = format!("{}/v2/", self.base);
        loop {
            match self.agent.get(&url).call() {
                Ok(response) if response.status().as_u16() == 200 => return Ok(()),
                Ok(response) if Instant::now() >= deadline => {
                    bail!("GET {url}: status {}", response.status())
                }
                Err(err) if Instant::now() >= deadline => bail!("GET {url}: {err}"),
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Uploads a blob unless the repository has it already.
    fn push_blob(&self, repository: &str, digest: &str, data: &[u8]) -> Result<()> {
        let head = format!("{}/v2/{repository}/blobs/{digest}", self.base);
        let response = self.agent.head(&head).call()?;
        if response.status().as_u16() == 200 {
            return Ok(());
        }
        let start = format!("{}/v2/{repository}/blobs/uploads/", self.base);
        let response = self.agent.post(&start).send_empty()?;
        if response.status().as_u16() != 202 {
            bail!("POST {start}: status {}", response.status());
        }
        let location = response
            .headers()
            .get("location")
            .and_then(|value| value.to_str().ok())
            .context("upload start gave no Location")?;
        let mut url = if location.starts_with("http://") || location.starts_with("https://") {
            location.to_owned()
        } else {
            format!("{}{location}", self.base)
        };
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(&format!("digest={digest}"));
        let response = self
            .agent
            .put(&url)
            .header("Content-Type", "application/octet-stream")
            .send(data)?;
        if response.status().as_u16() != 201 {
            bail!(
                "PUT blob {digest} to {repository}: status {}",
                response.status()
            );
        }
        Ok(())
    }

    /// Pushes layers, config and manifest; returns what the benchmark needs to know.
    fn push_image(
        &self,
        repository: &str,
        tag: &str,
        layers: &[LayerFile],
        runtime_config: Value,
        role: Role,
        image_host: &str,
    ) -> Result<BenchImage> {
        for layer in layers {
            let data = std::fs::read(&layer.path)
                .with_context(|| format!("read {}", layer.path.display()))?;
            self.push_blob(repository, &layer.digest, &data)
                .with_context(|| {
                    format!(
                        "push {} (delete the cache dir if it is damaged)",
                        layer.path.display()
                    )
                })?;
        }
        let config = json!({
            "architecture": go_arch(),
            "os": "linux",
            "created": CREATED,
            "config": runtime_config,
            "rootfs": {
                "type": "layers",
                "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>(),
            },
            "history": layers.iter().map(|l| json!({
                "created": CREATED,
                "created_by": format!("carrack bench: {}", l.description),
            })).collect::<Vec<_>>(),
        });
        let config = serde_json::to_vec(&config)?;
        let config_digest = sha256(&config);
        self.push_blob(repository, &config_digest, &config)?;

        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {"mediaType": CONFIG_TYPE, "size": config.len(), "digest": config_digest},
            "layers": layers.iter().map(|l| json!({
                "mediaType": LAYER_TYPE, "size": l.size, "digest": l.digest,
            })).collect::<Vec<_>>(),
        });
        let manifest = serde_json::to_vec(&manifest)?;
        let url = format!("{}/v2/{repository}/manifests/{tag}", self.base);
        let response = self
            .agent
            .put(&url)
            .header("Content-Type", MANIFEST_TYPE)
            .send(&manifest[..])?;
        if response.status().as_u16() != 201 {
            bail!("PUT {url}: status {}", response.status());
        }

        let mut blobs: Vec<String> = layers.iter().map(|l| l.digest.clone()).collect();
        blobs.push(config_digest.clone());
        blobs.push(sha256(&manifest));
        Ok(BenchImage {
            role,
            reference: format!("{image_host}/{repository}:{tag}"),
            manifest_digest: sha256(&manifest),
            image_id: config_digest,
            blobs,
            diff_ids: layers.iter().map(|l| l.diff_id.clone()).collect(),
            layers: layers.len(),
            compressed_bytes: layers.iter().map(|l| l.size).sum(),
            uncompressed_bytes: layers.iter().map(|l| l.uncompressed).sum(),
        })
    }
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// The Go architecture name of this machine, as image configs spell it.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}
