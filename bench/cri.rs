//! The CRI benchmark client: Carrack against containerd, measured in the same run.
//!
//! `bench/run` sets up the node (network namespace, registry, CNI config, both daemons) and
//! calls this binary, inside the node's network namespace, once per phase:
//!
//! - `push`: builds the bench images (a pause stand-in for containerd, a ~1 MB image and a
//!   multi-layer image of several hundred MB) and pushes them to the node's registry over the
//!   distribution HTTP API; the generated layers are cached on disk between runs.
//! - `measure --phase pods|containers|rss|images`: drives each daemon over its CRI socket,
//!   alternating between the runtimes step by step so that machine noise hits both alike, and
//!   appends one JSON record per figure to the results file.
//! - `report`: prints the table (step | carrack | containerd | ratio) and one pasteable line
//!   per figure.
//! - `cleanup`: stops and removes every container, pod and bench image on the given sockets
//!   (best effort;
//!   `bench/run` calls it on the way out, also after a failure).
//!
//! It also runs through `cargo bench --bench cri -- <subcommand> ...`; without a subcommand it
//! only says how to run the whole benchmark. See `bench/README.md` for what each figure means.

mod client;
mod containers;
mod imagegen;
mod images;
mod pods;
mod procs;
mod push;
mod report;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

use client::Runtime;

/// Command line of the bench client.
#[derive(Debug, Parser)]
#[command(
    name = "cri-bench",
    about = "CRI benchmark client (driven by bench/run)"
)]
struct Cli {
    /// What to do; none prints how to run the benchmark.
    #[command(subcommand)]
    command: Option<Command>,
    /// Added by `cargo bench`; ignored.
    #[arg(long, global = true, hide = true)]
    bench: bool,
}

/// The subcommands `bench/run` calls.
#[derive(Debug, Subcommand)]
enum Command {
    /// Build the bench images and push them to the registry (run inside the node netns).
    Push(PushArgs),
    /// Measure one phase against each runtime and append the figures to the results file.
    Measure(MeasureArgs),
    /// Print the table and the pasteable lines from a results file.
    Report {
        /// JSON-lines file written by `measure`.
        #[arg(long)]
        results: PathBuf,
    },
    /// Wait until a runtime answers `Version` and reports RuntimeReady and NetworkReady.
    Ready {
        /// The runtime as `name=socket`.
        #[arg(long)]
        runtime: String,
        /// Seconds to wait.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
    /// Append a remark to the results file (printed under the table).
    Note {
        /// JSON-lines results file.
        #[arg(long)]
        results: PathBuf,
        /// Runtime the remark is about.
        #[arg(long)]
        runtime: String,
        /// The remark.
        #[arg(long)]
        text: String,
    },
    /// Stop and remove every container, pod and bench image on the given runtimes (best effort).
    Cleanup {
        /// Runtimes as `name=socket[,pid]`.
        #[arg(long = "runtime")]
        runtimes: Vec<String>,
        /// The images file written by `push`, to remove the bench images too.
        #[arg(long)]
        images: Option<PathBuf>,
    },
}

/// Arguments of `push`.
#[derive(Debug, clap::Args)]
struct PushArgs {
    /// `host:port` of the registry, reached from the current network namespace.
    #[arg(long, default_value = "127.0.0.1:5000")]
    registry: String,
    /// Where generated layers are cached between runs.
    #[arg(long)]
    cache_dir: PathBuf,
    /// Where to write the description of the pushed images (read by `measure`).
    #[arg(long)]
    out: PathBuf,
    /// Registry host the runtimes are told to mirror to the registry (image references use it).
    #[arg(long, default_value = "docker.io")]
    image_host: String,
    /// Generated layers of the big image (a busybox base layer comes on top of these).
    #[arg(long, default_value_t = 5)]
    big_layers: usize,
    /// Uncompressed MiB of each generated layer.
    #[arg(long, default_value_t = 72)]
    layer_mib: u64,
}

/// Which part of the benchmark `measure` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Phase {
    /// Sequential pod lifecycles and the concurrent burst.
    Pods,
    /// Sequential container lifecycles (one container per pod) and the concurrent burst.
    Containers,
    /// Daemon memory idle, with pods and with pods running a container each.
    Rss,
    /// Cold pulls of the small and the big image.
    Images,
}

/// Arguments of `measure`.
#[derive(Debug, clap::Args)]
struct MeasureArgs {
    /// The phase to run.
    #[arg(long, value_enum)]
    phase: Phase,
    /// JSON-lines file the figures are appended to.
    #[arg(long)]
    results: PathBuf,
    /// Runtimes as `name=socket,pid` (`carrack=/tmp/x/carrack.sock,1234`), in the order measured.
    #[arg(long = "runtime", required = true)]
    runtimes: Vec<String>,
    /// Label of the CNI variant the daemons run with, part of each pod step's name.
    #[arg(long, default_value = "")]
    variant: String,
    /// The images file written by `push`.
    #[arg(long)]
    images: Option<PathBuf>,
    /// Cgroup path under which pods of runtime R get `<base>/<R>/<pod>` as their cgroup parent.
    #[arg(long)]
    cgroup_base: String,
    /// Where the cgroup hierarchies are mounted.
    #[arg(long, default_value = "/sys/fs/cgroup")]
    cgroup_root: PathBuf,
    /// Pods run one after another (each: run, status, stop, remove).
    #[arg(long, default_value_t = 30)]
    pods: usize,
    /// Unmeasured pod lifecycles before the sequential ones.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Containers run one after another, each in a fresh pod (create, start, stop, remove).
    #[arg(long, default_value_t = 30)]
    containers: usize,
    /// Where pods that run containers get their log directories (`<dir>/<runtime>/<pod>`);
    /// the containers phase needs it, and the rss phase measures containers only with it.
    #[arg(long)]
    log_dir: Option<PathBuf>,
    /// Pods started at once in the burst.
    #[arg(long, default_value_t = 20)]
    burst: usize,
    /// Repetitions of the burst (the median is reported).
    #[arg(long, default_value_t = 3)]
    burst_reps: usize,
    /// Pods running while the daemon's memory is read.
    #[arg(long, default_value_t = 10)]
    rss_pods: usize,
    /// Cold pulls of each image per runtime (the median is reported).
    #[arg(long, default_value_t = 3)]
    pull_runs: usize,
    /// containerd's `ctr`, used to make its content store cold between pulls.
    #[arg(long, default_value = "ctr")]
    ctr: String,
    /// Seconds one pod RPC may take before the step counts as failed.
    #[arg(long, default_value_t = 60)]
    rpc_timeout: u64,
    /// Seconds one pull may take.
    #[arg(long, default_value_t = 300)]
    pull_timeout: u64,
}

fn main() {
    if let Err(err) = run(Cli::parse()) {
        // One line, so that bench/run can quote it.
        eprintln!("cri-bench: {err:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let Some(command) = cli.command else {
        println!(
            "cri bench: run the whole benchmark as root with `bash bench/run` (see bench/README.md);\n\
             this binary only measures (subcommands: push, measure, report, cleanup)."
        );
        return Ok(());
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("tokio runtime")?;
    match command {
        Command::Push(args) => push::run(&args),
        Command::Measure(args) => runtime.block_on(measure(args)),
        Command::Report { results } => report::print(&results),
        Command::Ready {
            runtime: spec,
            timeout,
        } => runtime.block_on(client::wait_ready(&spec, Duration::from_secs(timeout))),
        Command::Note {
            results,
            runtime,
            text,
        } => report::Writer::open(&results)?.note(&runtime, &text),
        Command::Cleanup { runtimes, images } => {
            runtime.block_on(cleanup(&runtimes, images.as_deref()))
        }
    }
}

/// Connects to each runtime and runs one phase, appending records to the results file.
async fn measure(args: MeasureArgs) -> Result<()> {
    let mut out = report::Writer::open(&args.results)?;
    let mut runtimes = Vec::new();
    for spec in &args.runtimes {
        match Runtime::connect(spec).await {
            Ok(runtime) => {
                if args.phase == Phase::Rss {
                    out.note(&runtime.name, &format!("version {}", runtime.version))?;
                }
                runtimes.push(runtime);
            }
            Err(err) => {
                let name = spec.split('=').next().unwrap_or(spec).to_owned();
                let message = format!("{err:#}");
                eprintln!("bench: {name}: cannot connect: {message}");
                out.note(&name, &format!("{name} not measured: {message}"))?;
            }
        }
    }
    if runtimes.is_empty() {
        anyhow::bail!("no runtime could be reached");
    }
    let settings = pods::Settings {
        cgroup_base: args.cgroup_base.clone(),
        variant: args.variant.clone(),
        rpc_timeout: Duration::from_secs(args.rpc_timeout),
    };
    match args.phase {
        Phase::Pods => {
            if let Some(images) = &args.images {
                images::ensure_sandbox_images(&mut runtimes, &images::load(images)?, &mut out)
                    .await?;
            }
            pods::sequential(&mut runtimes, &settings, args.warmup, args.pods, &mut out).await?;
            pods::burst(
                &mut runtimes,
                &settings,
                args.burst,
                args.burst_reps,
                &mut out,
            )
            .await?;
        }
        Phase::Containers => {
            let images = images::load(
                args.images
                    .as_deref()
                    .context("--images is required for the containers phase")?,
            )?;
            let log_dir = args
                .log_dir
                .as_deref()
                .context("--log-dir is required for the containers phase")?;
            images::ensure_sandbox_images(&mut runtimes, &images, &mut out).await?;
            let image = images.get(images::Role::Small)?;
            images::ensure_image(&mut runtimes, image, "for the containers", &mut out).await?;
            let workload = containers::Workload::new(image, log_dir);
            containers::sequential(
                &mut runtimes,
                &settings,
                &workload,
                args.warmup,
                args.containers,
                &mut out,
            )
            .await?;
            containers::burst(
                &mut runtimes,
                &settings,
                &workload,
                args.burst,
                args.burst_reps,
                &mut out,
            )
            .await?;
        }
        Phase::Rss => {
            let images = args.images.as_deref().map(images::load).transpose()?;
            if let Some(images) = &images {
                images::ensure_sandbox_images(&mut runtimes, images, &mut out).await?;
            }
            procs::measure(
                &mut runtimes,
                &settings,
                &args.cgroup_root,
                args.rss_pods,
                &mut out,
            )
            .await?;
            if let (Some(images), Some(log_dir)) = (&images, &args.log_dir) {
                let image = images.get(images::Role::Small)?;
                images::ensure_image(&mut runtimes, image, "for the containers", &mut out).await?;
                let workload = containers::Workload::new(image, log_dir);
                procs::measure_containers(
                    &mut runtimes,
                    &settings,
                    &workload,
                    &args.cgroup_root,
                    args.rss_pods,
                    &mut out,
                )
                .await?;
            }
        }
        Phase::Images => {
            let images = args
                .images
                .as_deref()
                .context("--images is required for the images phase")?;
            let images = images::load(images)?;
            let pulls = images::PullSettings {
                runs: args.pull_runs,
                timeout: Duration::from_secs(args.pull_timeout),
                ctr: args.ctr.clone(),
            };
            images::measure(&mut runtimes, &images, &pulls, &mut out).await?;
        }
    }
    Ok(())
}

/// Stops and removes every container and pod (and the bench images) on each reachable
/// runtime.
async fn cleanup(specs: &[String], images: Option<&std::path::Path>) -> Result<()> {
    let images = match images {
        Some(path) if path.exists() => images::load(path).ok(),
        _ => None,
    };
    for spec in specs {
        let mut runtime = match Runtime::connect(spec).await {
            Ok(runtime) => runtime,
            Err(err) => {
                eprintln!("bench cleanup: {spec}: {err:#}");
                continue;
            }
        };
        containers::remove_all(&mut runtime).await;
        pods::remove_all(&mut runtime).await;
        if let Some(images) = &images {
            images::remove_all(&mut runtime, images).await;
        }
    }
    Ok(())
}
