//! `carrack stop [-t SECONDS] CONTAINER…`: the stop signal, then SIGKILL after the grace time.

use super::client::Cri;
use super::error::CliError;
use crate::proto;

/// Arguments of `carrack stop`.
#[derive(Debug, clap::Args)]
pub struct StopArgs {
    /// Seconds to wait after the stop signal before killing.
    #[arg(short, long, default_value_t = 10)]
    time: i64,
    /// Containers (names, ids or id prefixes).
    #[arg(required = true)]
    containers: Vec<String>,
}

/// Stops each container and prints what was asked for, as Docker does.
pub async fn stop(cri: &mut Cri, args: StopArgs) -> Result<(), CliError> {
    for wanted in &args.containers {
        let container = super::resolve::container(cri, wanted).await?;
        stop_one(cri, &container.id, args.time).await?;
        super::output::print(&format!("{wanted}\n"))?;
    }
    Ok(())
}

/// Stops one container by id.
pub async fn stop_one(cri: &mut Cri, id: &str, timeout: i64) -> Result<(), CliError> {
    cri.runtime
        .stop_container(proto::StopContainerRequest {
            container_id: id.to_owned(),
            timeout,
        })
        .await
        .map_err(CliError::rpc("StopContainer"))?;
    Ok(())
}
