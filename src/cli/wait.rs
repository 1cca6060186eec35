//! Container status queries the verbs share: one container's status, and waiting for it to
//! exit while its log is printed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::client::Cri;
use super::cri_log::{self, Follower, Printer, Record};
use super::error::CliError;
use crate::proto;

/// How often a followed container's state is asked for. CRI has no exit notification that
/// every runtime serves, so clients poll (as `crictl` does).
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// A container's status.
pub async fn status(cri: &mut Cri, id: &str) -> Result<proto::ContainerStatus, CliError> {
    cri.runtime
        .container_status(proto::ContainerStatusRequest {
            container_id: id.to_owned(),
            verbose: false,
        })
        .await
        .map_err(CliError::rpc("ContainerStatus"))?
        .into_inner()
        .status
        .ok_or_else(|| CliError::Reply {
            rpc: "ContainerStatus",
            reason: format!("no status for container {id}"),
        })
}

/// Whether the status is final (the container will not run again).
pub fn has_exited(status: &proto::ContainerStatus) -> bool {
    status.state == i32::from(proto::ContainerState::ContainerExited)
}

/// Prints the container's log as it is written until the container exits, then what is
/// left; returns the final status. `tail` limits what was already in the log to its last
/// lines. With `stop_on_interrupt`, Ctrl-C stops the container (and the wait goes on until
/// it has exited).
pub async fn follow_until_exit(
    cri: &mut Cri,
    id: &str,
    tail: Option<usize>,
    timestamps: bool,
    stop_on_interrupt: bool,
) -> Result<proto::ContainerStatus, CliError> {
    let mut printer = Printer::new(std::io::stdout(), std::io::stderr(), timestamps);
    let mut follower: Option<Follower> = None;
    let mut log_path = PathBuf::new();
    let interrupt = tokio::signal::ctrl_c();
    tokio::pin!(interrupt);
    let mut interrupted = false;
    loop {
        let status = status(cri, id).await?;
        let exited = has_exited(&status);
        if follower.is_none() && !status.log_path.is_empty() {
            log_path = PathBuf::from(&status.log_path);
            // The runtime creates the file when the container starts; until then, wait.
            match Follower::open(&log_path) {
                Ok(mut opened) => {
                    let existing = read_records(&mut opened, &log_path)?;
                    let shown = tail.map_or(&existing[..], |lines| cri_log::tail(&existing, lines));
                    for record in shown {
                        printer.print(record).map_err(CliError::Output)?;
                    }
                    follower = Some(opened);
                }
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(CliError::io("open log", &log_path)(err)),
            }
        } else if let Some(follower) = follower.as_mut() {
            follower
                .read_available(|record| printer.print(&record))
                .map_err(CliError::io("read log", &log_path))?;
        }
        if exited {
            return Ok(status);
        }
        tokio::select! {
            () = tokio::time::sleep(POLL_INTERVAL) => {}
            _ = &mut interrupt, if stop_on_interrupt && !interrupted => {
                interrupted = true;
                cri.runtime
                    .stop_container(proto::StopContainerRequest {
                        container_id: id.to_owned(),
                        timeout: 10,
                    })
                    .await
                    .map_err(CliError::rpc("StopContainer"))?;
            }
        }
    }
}

/// Every complete record the follower can read now.
pub fn read_records(follower: &mut Follower, path: &Path) -> Result<Vec<Record>, CliError> {
    let mut records = Vec::new();
    follower
        .read_available(|record| {
            records.push(record);
            Ok(())
        })
        .map_err(CliError::io("read log", path))?;
    Ok(records)
}
