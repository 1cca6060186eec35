//! `carrack info`: the runtime's version, conditions, cgroup driver, object counts and image
//! filesystem, from `Version`, `Status`, `RuntimeConfig`, the list RPCs and `ImageFsInfo`.

use serde_json::json;

use super::client::Cri;
use super::error::CliError;
use super::output::{self, Format};
use crate::proto;

/// Arguments of `carrack info`.
#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

/// Prints the runtime's information.
pub async fn info(cri: &mut Cri, args: InfoArgs) -> Result<(), CliError> {
    let version = super::version::query(cri).await?;
    let status = cri
        .runtime
        .status(proto::StatusRequest { verbose: false })
        .await
        .map_err(CliError::rpc("Status"))?
        .into_inner();
    // Runtimes older than Kubernetes 1.28's CRI do not serve RuntimeConfig.
    let runtime_config = cri
        .runtime
        .runtime_config(proto::RuntimeConfigRequest {})
        .await
        .ok()
        .map(tonic::Response::into_inner);
    let image_fs = cri
        .image
        .image_fs_info(proto::ImageFsInfoRequest {})
        .await
        .map_err(CliError::rpc("ImageFsInfo"))?
        .into_inner();
    let containers = super::resolve::all_containers(cri).await?;
    let pods = super::resolve::all_pods(cri).await?;
    let images = super::resolve::all_images(cri).await?;

    if args.format == Format::Json {
        return output::print_json(
            "info",
            &json!({
                "endpoint": cri.endpoint,
                "version": version,
                "status": status.status,
                "runtimeConfig": runtime_config,
                "imageFilesystems": image_fs.image_filesystems,
                "containers": containers.len(),
                "pods": pods.len(),
                "images": images.len(),
            }),
        );
    }
    let count = |state: proto::ContainerState| {
        containers
            .iter()
            .filter(|c| c.state == i32::from(state))
            .count()
    };
    let ready = pods
        .iter()
        .filter(|p| p.state == i32::from(proto::PodSandboxState::SandboxReady))
        .count();
    let conditions = status
        .status
        .map(|status| {
            status
                .conditions
                .iter()
                .map(|c| {
                    let mut text = format!("{}={}", c.r#type, c.status);
                    if !c.status && !c.message.is_empty() {
                        text.push_str(&format!(" ({})", c.message));
                    }
                    text
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let driver = runtime_config
        .and_then(|config| config.linux)
        .and_then(|linux| proto::CgroupDriver::try_from(linux.cgroup_driver).ok())
        .map_or(
            "unknown (RuntimeConfig not served)",
            |driver| match driver {
                proto::CgroupDriver::Systemd => "systemd",
                proto::CgroupDriver::Cgroupfs => "cgroupfs",
            },
        );
    let mut text = format!(
        "Runtime:          {} {} (CRI {})\n\
         Endpoint:         {}\n\
         Conditions:       {conditions}\n\
         Cgroup driver:    {driver}\n\
         Pods:             {} ({ready} ready)\n\
         Containers:       {} ({} running, {} exited, {} created)\n\
         Images:           {}\n",
        version.runtime_name,
        version.runtime_version,
        version.runtime_api_version,
        cri.endpoint,
        pods.len(),
        containers.len(),
        count(proto::ContainerState::ContainerRunning),
        count(proto::ContainerState::ContainerExited),
        count(proto::ContainerState::ContainerCreated),
        images.len(),
    );
    for fs in &image_fs.image_filesystems {
        let mountpoint = fs
            .fs_id
            .as_ref()
            .map(|id| id.mountpoint.as_str())
            .unwrap_or_default();
        let used = fs.used_bytes.as_ref().map_or(0, |v| v.value);
        let inodes = fs.inodes_used.as_ref().map_or(0, |v| v.value);
        text.push_str(&format!(
            "Image filesystem: {mountpoint} ({} used, {inodes} inodes)\n",
            output::size(used)
        ));
    }
    output::print(&text)
}
