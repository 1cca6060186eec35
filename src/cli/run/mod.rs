//! `carrack run`: pull the image if needed, make a pod and a container in it, start it, then
//! either print its id (`-d`) or print its output until it exits and exit with its code.
//!
//! Each container gets its own pod (labelled [`labels::RUN`]), named like the container, so
//! `carrack rm` can remove both. Its log goes to a pod log directory under `--log-dir`,
//! which this client creates, as kubelet creates `/var/log/pods/…`.

mod flags;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use super::client::Cri;
use super::error::CliError;
use super::labels;
use super::wait;
use crate::proto;

/// The container's log file inside its pod log directory.
const LOG_FILE: &str = "container.log";

/// Arguments of `carrack run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Run in the background and print the container id.
    #[arg(short, long)]
    detach: bool,
    /// Remove the container and its pod when it exits.
    #[arg(long)]
    rm: bool,
    /// Keep stdin open and attach it (needs the runtime's streaming server).
    #[arg(short, long)]
    interactive: bool,
    /// Allocate a terminal (needs the runtime's streaming server).
    #[arg(short, long)]
    tty: bool,
    /// The container's (and its pod's) name; default a generated one.
    #[arg(long)]
    name: Option<String>,
    /// Set an environment variable (KEY=VALUE, or KEY to pass this shell's value).
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Bind-mount a host path (HOST:CONTAINER[:ro]).
    #[arg(short, long = "volume", value_name = "HOST:CONTAINER[:ro]")]
    volume: Vec<String>,
    /// Publish a container port on the node ([IP:]HOSTPORT:CONTAINERPORT[/udp]).
    #[arg(short, long = "publish", value_name = "HOSTPORT:CONTAINERPORT")]
    publish: Vec<String>,
    /// Memory limit (e.g. 512m, 1g).
    #[arg(short, long)]
    memory: Option<String>,
    /// CPU limit in CPUs (e.g. 1.5).
    #[arg(long)]
    cpus: Option<f64>,
    /// User to run as (UID[:GID] or a name from the image).
    #[arg(short, long)]
    user: Option<String>,
    /// Network: `host` shares the node's network; default a pod network from CNI.
    #[arg(long, value_parser = ["host", "pod"], default_value = "pod")]
    network: String,
    /// Override the image's entrypoint.
    #[arg(long)]
    entrypoint: Option<String>,
    /// Working directory inside the container.
    #[arg(short, long)]
    workdir: Option<String>,
    /// The pod's cgroup parent (default: the runtime's).
    #[arg(long)]
    cgroup_parent: Option<String>,
    /// Where pod log directories are made.
    #[arg(long, env = "CARRACK_LOG_DIR", default_value = "/var/log/carrack/pods")]
    log_dir: PathBuf,
    /// The image to run.
    image: String,
    /// The command and its arguments (default the image's).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// A random lowercase hex string of `bytes` bytes.
fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

/// The pod and container configs for `args`.
struct Plan {
    pod: proto::PodSandboxConfig,
    container: proto::ContainerConfig,
    log_dir: PathBuf,
}

fn plan(args: &RunArgs, name: &str) -> Result<Plan, CliError> {
    let cwd = std::env::current_dir().map_err(CliError::io("read current directory", "."))?;
    let mounts = args
        .volume
        .iter()
        .map(|value| flags::volume(value, &cwd))
        .collect::<Result<Vec<_>, _>>()?;
    let port_mappings = args
        .publish
        .iter()
        .map(|value| flags::publish(value))
        .collect::<Result<Vec<_>, _>>()?;
    let mut envs = Vec::new();
    for value in &args.env {
        envs.extend(flags::env(value)?);
    }
    let mut resources = proto::LinuxContainerResources::default();
    if let Some(memory) = &args.memory {
        resources.memory_limit_in_bytes = flags::memory(memory)?;
    }
    if let Some(cpus) = args.cpus {
        resources.cpu_period = flags::CPU_PERIOD_US;
        resources.cpu_quota = flags::cpus(cpus)?;
    }
    let namespaces = proto::NamespaceOption {
        network: if args.network == "host" {
            proto::NamespaceMode::Node.into()
        } else {
            proto::NamespaceMode::Pod.into()
        },
        // kubelet's and Docker's default: the container has its own PID namespace (CRI's
        // zero value, POD, would share one across the pod).
        pid: proto::NamespaceMode::Container.into(),
        ..proto::NamespaceOption::default()
    };
    let mut security = proto::LinuxContainerSecurityContext {
        namespace_options: Some(namespaces.clone()),
        ..proto::LinuxContainerSecurityContext::default()
    };
    if let Some(user) = &args.user {
        flags::user(user, &mut security)?;
    }

    let uid = random_hex(16);
    let log_dir = args
        .log_dir
        .join(format!("{}_{name}_{uid}", labels::POD_NAMESPACE));
    let run_labels = HashMap::from([(labels::RUN.to_owned(), name.to_owned())]);
    // Hostnames allow neither '_' nor more than 63 bytes.
    let hostname: String = name.replace('_', "-").chars().take(63).collect();
    let pod = proto::PodSandboxConfig {
        metadata: Some(proto::PodSandboxMetadata {
            name: name.to_owned(),
            uid,
            namespace: labels::POD_NAMESPACE.to_owned(),
            attempt: 0,
        }),
        hostname: if args.network == "host" {
            String::new()
        } else {
            hostname.trim_end_matches(['-', '.']).to_owned()
        },
        log_directory: log_dir.display().to_string(),
        port_mappings,
        labels: run_labels.clone(),
        linux: Some(proto::LinuxPodSandboxConfig {
            cgroup_parent: args.cgroup_parent.clone().unwrap_or_default(),
            security_context: Some(proto::LinuxSandboxSecurityContext {
                namespace_options: Some(namespaces),
                ..proto::LinuxSandboxSecurityContext::default()
            }),
            ..proto::LinuxPodSandboxConfig::default()
        }),
        ..proto::PodSandboxConfig::default()
    };
    let container = proto::ContainerConfig {
        metadata: Some(proto::ContainerMetadata {
            name: name.to_owned(),
            attempt: 0,
        }),
        // The name, not the id: runtimes show a container's image as it was asked for
        // (the pull just made sure the name resolves).
        image: Some(proto::ImageSpec {
            image: args.image.clone(),
            user_specified_image: args.image.clone(),
            ..proto::ImageSpec::default()
        }),
        command: args.entrypoint.iter().cloned().collect(),
        args: args.command.clone(),
        working_dir: args.workdir.clone().unwrap_or_default(),
        envs,
        mounts,
        labels: run_labels,
        log_path: LOG_FILE.to_owned(),
        stdin: args.interactive,
        stdin_once: args.interactive,
        tty: args.tty,
        linux: Some(proto::LinuxContainerConfig {
            resources: Some(resources),
            security_context: Some(security),
        }),
        ..proto::ContainerConfig::default()
    };
    Ok(Plan {
        pod,
        container,
        log_dir,
    })
}

/// Runs a container; the exit code is the container's (or 0 with `-d`).
pub async fn run(cri: &mut Cri, args: RunArgs) -> Result<ExitCode, CliError> {
    if args.detach && (args.interactive || args.tty) {
        return Err(CliError::Unsupported(
            "-d cannot be combined with -i/-t (attach later is not offered)".to_owned(),
        ));
    }
    if args.detach && args.rm {
        return Err(CliError::Unsupported(
            "--rm cannot be combined with -d: nothing would be left to remove it".to_owned(),
        ));
    }
    let name = match &args.name {
        Some(name) => {
            flags::name(name)?;
            name.clone()
        }
        None => format!("carrack-{}", random_hex(4)),
    };
    super::pull::ensure(cri, &args.image).await?;
    let plan = plan(&args, &name)?;
    std::fs::create_dir_all(&plan.log_dir)
        .map_err(CliError::io("create log directory", &plan.log_dir))?;

    let pod_id = match cri
        .runtime
        .run_pod_sandbox(proto::RunPodSandboxRequest {
            config: Some(plan.pod.clone()),
            runtime_handler: String::new(),
        })
        .await
    {
        Ok(reply) => reply.into_inner().pod_sandbox_id,
        Err(status) => {
            let _ = std::fs::remove_dir_all(&plan.log_dir);
            return Err(CliError::rpc("RunPodSandbox")(status));
        }
    };
    let started = start_container(cri, &pod_id, &plan).await;
    let container_id = match started {
        Ok(id) => id,
        Err(err) => {
            // Leave nothing behind of a run that did not start.
            let _ = remove_pod(cri, &pod_id, Some(&plan.log_dir)).await;
            return Err(err);
        }
    };
    if args.detach {
        super::output::print(&format!("{container_id}\n"))?;
        return Ok(ExitCode::SUCCESS);
    }
    let result = if args.interactive || args.tty {
        attach(cri, &container_id, &args).await
    } else {
        wait::follow_until_exit(cri, &container_id, None, false, true).await
    };
    if args.rm {
        remove_pod(cri, &pod_id, Some(&plan.log_dir)).await?;
    }
    let status = result?;
    Ok(super::exit_code(status.exit_code))
}

/// Attaches to the started container until the session ends, then waits for its exit.
async fn attach(
    cri: &mut Cri,
    id: &str,
    args: &RunArgs,
) -> Result<proto::ContainerStatus, CliError> {
    let attached = cri
        .runtime
        .attach(proto::AttachRequest {
            container_id: id.to_owned(),
            stdin: args.interactive,
            tty: args.tty,
            stdout: true,
            stderr: !args.tty,
        })
        .await;
    let url = match attached {
        Ok(reply) => reply.into_inner().url,
        Err(status) => {
            // A command quicker than the attach (`run -t` of one that reads nothing) has
            // already exited, all its output in the log: show it from there.
            if exits_within(cri, id, Duration::ZERO).await {
                return wait::follow_until_exit(cri, id, None, false, false).await;
            }
            // Nobody can reach the container's stdin: do not leave it waiting for one.
            let _ = super::stop::stop_one(cri, id, 0).await;
            return Err(super::exec::streaming_rpc("Attach", "run -i/-t")(status));
        }
    };
    let options = super::stream::Options {
        stdin: args.interactive,
        tty: args.tty,
    };
    let ended = super::stream::run(&url, options).await;
    match after_session(&ended) {
        AfterSession::WaitForExit => {}
        AfterSession::ShowLog => return wait::follow_until_exit(cri, id, None, false, false).await,
        AfterSession::ShowLogIfEnded => {
            if exits_within(cri, id, LATE_ATTACH_GRACE).await {
                return wait::follow_until_exit(cri, id, None, false, false).await;
            }
        }
    }
    ended.exit?;
    loop {
        let status = wait::status(cri, id).await?;
        if wait::has_exited(&status) {
            return Ok(status);
        }
        tokio::time::sleep(wait::POLL_INTERVAL).await;
    }
}

/// How long a failed attach waits for the container to be seen exited before the failure
/// counts: the monitor closes the attach socket just before it records the exit.
const LATE_ATTACH_GRACE: Duration = Duration::from_secs(2);

/// What `run -i/-t` does once its streaming session ended.
#[derive(Debug, PartialEq, Eq)]
enum AfterSession {
    /// The session carried the output: wait for the recorded exit.
    WaitForExit,
    /// The session ended without any output: it may have begun after the command's last
    /// output (a quick command), which is then all in the log; show the log until the exit.
    ShowLog,
    /// The session failed without output: if that is because the container ended before or
    /// during the attach, show the log; else the failure stands.
    ShowLogIfEnded,
}

fn after_session(ended: &super::stream::Ended) -> AfterSession {
    match (&ended.exit, ended.output_seen) {
        (_, true) => AfterSession::WaitForExit,
        (Ok(_), false) => AfterSession::ShowLog,
        (Err(_), false) => AfterSession::ShowLogIfEnded,
    }
}

/// Whether container `id` is seen exited within `grace` (checked at least once).
async fn exits_within(cri: &mut Cri, id: &str, grace: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + grace;
    loop {
        match wait::status(cri, id).await {
            Ok(status) if wait::has_exited(&status) => return true,
            Ok(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(wait::POLL_INTERVAL).await;
            }
            _ => return false,
        }
    }
}

async fn start_container(cri: &mut Cri, pod_id: &str, plan: &Plan) -> Result<String, CliError> {
    let container_id = cri
        .runtime
        .create_container(proto::CreateContainerRequest {
            pod_sandbox_id: pod_id.to_owned(),
            config: Some(plan.container.clone()),
            sandbox_config: Some(plan.pod.clone()),
        })
        .await
        .map_err(CliError::rpc("CreateContainer"))?
        .into_inner()
        .container_id;
    cri.runtime
        .start_container(proto::StartContainerRequest {
            container_id: container_id.clone(),
        })
        .await
        .map_err(CliError::rpc("StartContainer"))?;
    Ok(container_id)
}

/// Stops and removes a pod made by `run` (with its containers) and its log directory.
pub async fn remove_pod(
    cri: &mut Cri,
    pod_id: &str,
    log_dir: Option<&std::path::Path>,
) -> Result<(), CliError> {
    cri.runtime
        .stop_pod_sandbox(proto::StopPodSandboxRequest {
            pod_sandbox_id: pod_id.to_owned(),
        })
        .await
        .map_err(CliError::rpc("StopPodSandbox"))?;
    cri.runtime
        .remove_pod_sandbox(proto::RemovePodSandboxRequest {
            pod_sandbox_id: pod_id.to_owned(),
        })
        .await
        .map_err(CliError::rpc("RemovePodSandbox"))?;
    let Some(log_dir) = log_dir else {
        return Ok(());
    };
    match std::fs::remove_dir_all(log_dir) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(CliError::io("remove log directory", log_dir)(err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::stream::Ended;

    fn ended(exit: Result<i32, CliError>, output_seen: bool) -> Ended {
        Ended { exit, output_seen }
    }

    #[test]
    fn a_session_without_output_falls_back_to_the_log() {
        // The attach began after a quick command's output (CI saw `run -it … echo quick`
        // print nothing): the log has it.
        assert_eq!(after_session(&ended(Ok(0), false)), AfterSession::ShowLog);
        // The attach failed because the container had ended by the time it connected.
        let refused = CliError::Reply {
            rpc: "streaming session",
            reason: "attach needs a running container".to_owned(),
        };
        assert_eq!(
            after_session(&ended(Err(refused), false)),
            AfterSession::ShowLogIfEnded
        );
        // Output came through the session: it is not shown twice.
        assert_eq!(
            after_session(&ended(Ok(0), true)),
            AfterSession::WaitForExit
        );
    }
}
