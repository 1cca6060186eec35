//! The `carrack` binary: argument parsing and dispatch. The only place `anyhow` is used.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};

use carrack::config::{Config, DEFAULT_CONFIG_PATH};
use carrack::monitor::exec_helper::ExecInArgs;

/// Carrack, a Kubernetes CRI v1 container runtime.
#[derive(Debug, Parser)]
#[command(name = "carrack", version, disable_version_flag = true)]
struct Cli {
    /// Configuration file (TOML). A missing file means all defaults.
    #[arg(long, global = true, env = "CARRACK_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    /// The CRI runtime the client verbs talk to (`unix:///path.sock`; any CRI runtime).
    /// Default: the socket of the configuration file (`/run/carrack/carrack.sock`).
    #[arg(long, short = 'r', global = true, env = "CARRACK_RUNTIME_ENDPOINT")]
    runtime_endpoint: Option<String>,
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
    /// Print the client's and the runtime's versions.
    Version,
    /// Print a shell completion script (e.g. `carrack completion bash > /etc/bash_completion.d/carrack`).
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
    #[command(flatten)]
    Client(carrack::cli::Verb),
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
    PodInit {
        /// The pod's directory: it names the pod in the process list so the daemon's
        /// reconciler can tell whose init it is after a crash; the init joins the pod's user
        /// namespace pinned there, if any.
        pod_dir: Option<PathBuf>,
    },
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

/// The runtime endpoint: `--runtime-endpoint`, else the configured socket (the defaults'
/// when the config file cannot be read: the client verbs must not need it).
fn endpoint(config: &std::path::Path, explicit: Option<String>) -> String {
    explicit.unwrap_or_else(|| {
        let socket = Config::load(config)
            .map(|config| config.socket_path)
            .unwrap_or_else(|_| Config::default().socket_path);
        format!("unix://{}", socket.display())
    })
}

/// The client verbs' async runtime: one thread is plenty for one connection.
fn client_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        // Single-threaded, without an async runtime or the daemon's logging: the monitor
        // forks containers.
        Command::Monitor { dir } => return Ok(carrack::monitor::run(&dir)),
        Command::PodInit { pod_dir } => {
            return Ok(carrack::monitor::pod_init::run(pod_dir.as_deref()));
        }
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
            // Written without panicking on a closed pipe (`carrack version | head -1`).
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "carrack {}", env!("CARGO_PKG_VERSION"));
            let _ = writeln!(out, "CRI API v1 (cri-api v0.36)");
            let _ = out.flush();
            drop(out);
            // The runtime's half is informational: the client's version prints without one.
            let endpoint = endpoint(&cli.config, cli.runtime_endpoint.clone());
            match client_runtime()?.block_on(carrack::cli::runtime_version(&endpoint)) {
                Ok(line) => {
                    let _ = writeln!(std::io::stdout(), "{line}");
                }
                Err(err) => eprintln!("Runtime: not reachable ({err})"),
            }
        }
        Command::Completion { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "carrack",
                &mut std::io::stdout(),
            );
        }
        Command::Client(verb) => {
            let endpoint = endpoint(&cli.config, cli.runtime_endpoint.clone());
            let runtime = client_runtime()?;
            let result = runtime.block_on(carrack::cli::execute(verb, &endpoint));
            // Do not wait for a read of stdin still pending on a blocking thread (an
            // interactive session's terminal): the command is over.
            runtime.shutdown_background();
            return Ok(result?);
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
                let telemetry = carrack::telemetry::init(&config, &cli.config)?;
                carrack::daemon::run(config, telemetry).await?;
                anyhow::Ok(())
            })?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
