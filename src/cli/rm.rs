//! `carrack rm [-f] CONTAINER…`: removes containers; a pod that `carrack run` made for a
//! container goes with it (with its log directory) once it holds no other container.

use std::path::Path;

use super::client::Cri;
use super::error::CliError;
use super::labels;
use crate::proto;

/// Arguments of `carrack rm`.
#[derive(Debug, clap::Args)]
pub struct RmArgs {
    /// Stop running containers first (immediately, no grace time).
    #[arg(short, long)]
    force: bool,
    /// Containers (names, ids or id prefixes).
    #[arg(required = true)]
    containers: Vec<String>,
}

/// Removes each container and prints what was asked for.
pub async fn rm(cri: &mut Cri, args: RmArgs) -> Result<(), CliError> {
    for wanted in &args.containers {
        let container = super::resolve::container(cri, wanted).await?;
        let status = super::wait::status(cri, &container.id).await?;
        if status.state == i32::from(proto::ContainerState::ContainerRunning) {
            if !args.force {
                return Err(CliError::Unsupported(format!(
                    "container {wanted} is running: stop it first or use rm -f"
                )));
            }
            super::stop::stop_one(cri, &container.id, 0).await?;
        }
        cri.runtime
            .remove_container(proto::RemoveContainerRequest {
                container_id: container.id.clone(),
            })
            .await
            .map_err(CliError::rpc("RemoveContainer"))?;
        if labels::made_by_run(&container.labels) {
            remove_run_pod(cri, &container.pod_sandbox_id, &status.log_path).await?;
        }
        super::output::print(&format!("{wanted}\n"))?;
    }
    Ok(())
}

/// Removes the pod `carrack run` made, unless someone put other containers into it.
async fn remove_run_pod(cri: &mut Cri, pod_id: &str, log_path: &str) -> Result<(), CliError> {
    let pod = match super::resolve::pod(cri, pod_id).await {
        Ok(pod) => pod,
        Err(err) if err.is_not_found() => return Ok(()),
        Err(err) => return Err(err),
    };
    if !labels::made_by_run(&pod.labels) {
        return Ok(());
    }
    let others = cri
        .runtime
        .list_containers(proto::ListContainersRequest {
            filter: Some(proto::ContainerFilter {
                pod_sandbox_id: pod_id.to_owned(),
                ..proto::ContainerFilter::default()
            }),
        })
        .await
        .map_err(CliError::rpc("ListContainers"))?
        .into_inner()
        .containers;
    if !others.is_empty() {
        return Ok(());
    }
    // The log directory is the one `run` made for this pod: the log file's parent.
    let log_dir = Path::new(log_path)
        .parent()
        .filter(|_| !log_path.is_empty());
    super::run::remove_pod(cri, pod_id, log_dir).await
}
