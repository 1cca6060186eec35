//! The Docker-like command line (`carrack run`, `ps`, `logs`, `images`, …): a CRI client for
//! people.
//!
//! It talks to a runtime's socket like any client — Carrack's, containerd's or any other CRI
//! runtime's — and shares only the generated proto types with the rest of the crate: it never
//! reads or writes the runtime's state (`tests/check-layering.sh` keeps it so). The only
//! files it touches are the ones a CRI client owns: the pod log directory it asks the
//! runtime to log into (as kubelet owns `/var/log/pods`), and the archives of `image
//! import`/`export`.
//!
//! One file per verb; `client` connects, `resolve` turns names and id prefixes into objects,
//! `output` prints tables and JSON, `cri_log` reads and follows CRI log files.

pub mod client;
pub mod cri_log;
mod error;
mod exec;
mod history;
mod image;
mod images;
mod info;
mod inspect;
mod labels;
mod logs;
pub mod output;
mod pods;
mod ps;
mod pull;
mod pull_progress;
pub mod resolve;
mod rm;
mod rmi;
mod run;
mod stats;
mod stop;
mod stream;
mod version;
mod wait;

use std::process::ExitCode;

pub use error::CliError;

/// The client verbs.
#[derive(Debug, clap::Subcommand)]
pub enum Verb {
    /// Run a command in a new container (pulling the image if needed).
    Run(Box<run::RunArgs>),
    /// Run a command in a running container.
    Exec(exec::ExecArgs),
    /// List containers.
    Ps(ps::PsArgs),
    /// List pods.
    Pods(pods::PodsArgs),
    /// Print a container's logs.
    Logs(logs::LogsArgs),
    /// Stop running containers.
    Stop(stop::StopArgs),
    /// Remove containers (and the pods `carrack run` made for them).
    Rm(rm::RmArgs),
    /// List images.
    Images(images::ImagesArgs),
    /// Import or export image archives.
    Image {
        /// What to do.
        #[command(subcommand)]
        command: image::ImageCommand,
    },
    /// Pull images from a registry.
    Pull(pull::PullArgs),
    /// Remove images.
    Rmi(rmi::RmiArgs),
    /// Print a container, pod or image as JSON.
    Inspect(inspect::InspectArgs),
    /// Show an image's layers and the steps that made them.
    History(history::HistoryArgs),
    /// Show containers' resource usage.
    Stats(stats::StatsArgs),
    /// Show the runtime's status and configuration.
    Info(info::InfoArgs),
}

/// Runs `verb` against the runtime at `endpoint`; the exit code is the command's (for `run`
/// and `exec`, the container command's).
pub async fn execute(verb: Verb, endpoint: &str) -> Result<ExitCode, CliError> {
    let mut cri = client::connect(endpoint).await?;
    match verb {
        Verb::Run(args) => return run::run(&mut cri, *args).await,
        Verb::Exec(args) => return exec::exec(&mut cri, args).await,
        Verb::Ps(args) => ps::ps(&mut cri, args).await?,
        Verb::Pods(args) => pods::pods(&mut cri, args).await?,
        Verb::Logs(args) => logs::logs(&mut cri, args).await?,
        Verb::Stop(args) => stop::stop(&mut cri, args).await?,
        Verb::Rm(args) => rm::rm(&mut cri, args).await?,
        Verb::Images(args) => images::images(&mut cri, args).await?,
        Verb::Image { command } => image::image(&mut cri, command).await?,
        Verb::Pull(args) => pull::pull(&mut cri, args).await?,
        Verb::Rmi(args) => rmi::rmi(&mut cri, args).await?,
        Verb::Inspect(args) => inspect::inspect(&mut cri, args).await?,
        Verb::History(args) => history::history(&mut cri, args).await?,
        Verb::Stats(args) => stats::stats(&mut cri, args).await?,
        Verb::Info(args) => info::info(&mut cri, args).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// A command's exit code as this process's (codes outside 0..=255, such as a runtime's -1
/// for "unknown", become 255).
fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(u8::MAX))
}

/// The runtime's version line for `carrack version` (`None` with the reason when the
/// runtime cannot be reached).
pub async fn runtime_version(endpoint: &str) -> Result<String, CliError> {
    version::runtime(endpoint).await
}
