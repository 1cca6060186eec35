//! `carrack ps [-a]`: the containers, as a table or JSON.

use std::time::Duration;

use super::client::Cri;
use super::error::CliError;
use super::output::{self, Format, Table};
use crate::proto;

/// Arguments of `carrack ps`.
#[derive(Debug, clap::Args)]
pub struct PsArgs {
    /// Show all containers (default: only running ones).
    #[arg(short, long)]
    all: bool,
    /// Print only container ids.
    #[arg(short, long)]
    quiet: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

/// How a container's image is shown: the name it was asked for, else a short id.
pub fn image_name(spec: Option<&proto::ImageSpec>, image_ref: &str) -> String {
    let name = spec
        .map(|spec| {
            if spec.user_specified_image.is_empty() {
                spec.image.as_str()
            } else {
                spec.user_specified_image.as_str()
            }
        })
        .filter(|name| !name.is_empty())
        .unwrap_or(image_ref);
    if name.starts_with("sha256:") {
        output::short_id(name)
    } else {
        name.to_owned()
    }
}

/// Docker's status column: `Up 5 seconds`, `Exited (0) 3 seconds ago`, `Created`.
pub fn status_text(status: &proto::ContainerStatus) -> String {
    match proto::ContainerState::try_from(status.state) {
        Ok(proto::ContainerState::ContainerRunning) => {
            let started = u64::try_from(status.started_at).unwrap_or(0);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            let up = now.saturating_sub(Duration::from_nanos(started));
            format!("Up {}", output::duration(up))
        }
        Ok(proto::ContainerState::ContainerExited) => {
            format!(
                "Exited ({}) {}",
                status.exit_code,
                output::ago(status.finished_at)
            )
        }
        Ok(proto::ContainerState::ContainerCreated) => "Created".to_owned(),
        _ => "Unknown".to_owned(),
    }
}

/// Lists containers.
pub async fn ps(cri: &mut Cri, args: PsArgs) -> Result<(), CliError> {
    let filter = (!args.all).then(|| proto::ContainerFilter {
        state: Some(proto::ContainerStateValue {
            state: proto::ContainerState::ContainerRunning.into(),
        }),
        ..proto::ContainerFilter::default()
    });
    let mut containers = cri
        .runtime
        .list_containers(proto::ListContainersRequest { filter })
        .await
        .map_err(CliError::rpc("ListContainers"))?
        .into_inner()
        .containers;
    containers.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
    if args.quiet {
        let ids: String = containers
            .iter()
            .map(|c| format!("{}\n", output::short_id(&c.id)))
            .collect();
        return output::print(&ids);
    }
    if args.format == Format::Json {
        return output::print_json("containers", &containers);
    }
    let mut table = Table::new(&[
        "CONTAINER ID",
        "IMAGE",
        "CREATED",
        "STATUS",
        "NAME",
        "POD ID",
    ]);
    for container in &containers {
        let status = match super::wait::status(cri, &container.id).await {
            Ok(status) => status_text(&status),
            // Removed between the list and the status: it no longer exists, skip it.
            Err(err) if err.is_not_found() => continue,
            Err(err) => return Err(err),
        };
        table.row(vec![
            output::short_id(&container.id),
            image_name(container.image.as_ref(), &container.image_ref),
            output::ago(container.created_at),
            status,
            container
                .metadata
                .as_ref()
                .map(|m| m.name.clone())
                .unwrap_or_default(),
            output::short_id(&container.pod_sandbox_id),
        ]);
    }
    output::print(&table.render())
}
