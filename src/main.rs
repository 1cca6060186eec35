//! The `carrack` binary: argument parsing and dispatch. The only place `anyhow` is used.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use carrack::config::{Config, DEFAULT_CONFIG_PATH};
use carrack::monitor::exec_helper::ExecInArgs;

/// Carrack, a Kubernetes CRI v1 container runtime.
#[derive(Debug, Parser)]
#[command(name = "carrack", version, disable_version_flag = true)]
struct Cli {
    /// Configuration file (TOML). A missing file means all defaults.
    #[arg(long, global = true, env = "CARRACK_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the CRI RuntimeService and ImageService on the configured socket.
    Daemon,
    /// Inspect the configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Print the version.
    Version,
    /// Run as the monitor of one container (started by the daemon, not by people): start the
    /// container described in the runtime directory, then stay its parent until it exits.
    #[command(hide = true)]
    Monitor {
        /// The container's runtime directory (`config.json`, `monitor.json`).
        dir: PathBuf,
    },
    /// Run as the init of a pod's shared PID namespace (started by the daemon): prints the
    /// init's pid and exits; the init reaps until it is killed.
    #[command(hide = true)]
    PodInit,
    /// Run a process in a running container and exit with its exit code (126: it could not
    /// be started, 127: its program does not exist). Started by the daemon for exec.
    #[command(hide = true)]
    ExecIn {
        /// The container's runtime directory (with its `config.json`).
        container_dir: PathBuf,
        /// The container's init pid.
        #[arg(long)]
        pid: i32,
        /// Stdio is a terminal.
        #[arg(long)]
        tty: bool,
        /// The program and its arguments (after `--`).
        #[arg(last = true, required = true)]
        argv: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print the full default configuration as TOML.
    Default,
    /// Print the effective configuration (file plus defaults) as TOML.
    Show,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("carrack: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        // Single-threaded, without an async runtime or the daemon's logging: the monitor
        // forks containers.
        Command::Monitor { dir } => return Ok(carrack::monitor::run(&dir)),
        Command::PodInit => return Ok(carrack::monitor::pod_init::run()),
        Command::ExecIn {
            container_dir,
            pid,
            tty,
            argv,
        } => {
            // Single-threaded and without logging: it forks into the container, and its
            // stderr is the exec's.
            let code = carrack::monitor::exec_helper::run(ExecInArgs {
                container_dir,
                pid,
                tty,
                argv,
            });
            return Ok(ExitCode::from(code));
        }
        Command::Version => {
            println!("carrack {}", env!("CARGO_PKG_VERSION"));
            println!("CRI API v1 (cri-api v0.36)");
        }
        Command::Config {
            command: ConfigCommand::Default,
        } => {
            print!("{}", Config::default().to_toml());
        }
        Command::Config {
            command: ConfigCommand::Show,
        } => {
            print!("{}", Config::load(&cli.config)?.to_toml());
        }
        Command::Daemon => {
            let config = Config::load(&cli.config)?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("carrack")
                .build()
                .context("cannot start the async runtime")?;
            runtime.block_on(async {
                // Inside the runtime: the trace export task runs on it.
                let telemetry = carrack::telemetry::init(&config)?;
                carrack::daemon::run(config, telemetry).await?;
                anyhow::Ok(())
            })?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
