//! `StopContainer`: the stop signal, then SIGKILL once the timeout has passed; returns when the
//! container has exited and that is recorded. Idempotent: an unknown or not-running container
//! succeeds.

use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument;

use super::watch::{open_pidfd, wait_for_exit};
use super::{ContainerError, ContainerService};
use crate::cgroups::CgroupPath;
use crate::monitor::client;
use crate::monitor::protocol::{Request, Response};
use crate::store::ContainerState;

/// How long a killed container may take to be gone before stop reports failure.
const KILL_GRACE: Duration = Duration::from_secs(10);
/// How long a control request to a monitor may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

impl ContainerService {
    /// Stops container `id`, giving it `timeout` before SIGKILL.
    pub async fn stop(self: &Arc<Self>, id: &str, timeout: Duration) -> Result<(), ContainerError> {
        let Some(container) = self.find(id)? else {
            return Ok(());
        };
        let id = container.id.clone();
        if container.state != ContainerState::Running {
            return Ok(());
        }
        let Some(pidfd) = open_pidfd(container.monitor_pid) else {
            return self.record_exit(&id).await;
        };
        // The pidfd may name a process that reused the pid after the monitor's exit; the exit
        // record tells, as the monitor writes it before it exits.
        if client::read_exit(&self.runtime_dir(&id))
            .ok()
            .flatten()
            .is_some()
        {
            return self.record_exit(&id).await;
        }
        let dir = self.runtime_dir(&id);
        let mut exited = false;
        if !timeout.is_zero() && self.signal(&id, container.stop_signal).await.is_ok() {
            let pidfd = pidfd
                .try_clone()
                .map_err(ContainerError::io(&id, "dup pidfd", &dir))?;
            exited = wait_for_exit(pidfd, Some(timeout))
                .instrument(tracing::info_span!(
                    "container.wait_exit",
                    signal = container.stop_signal
                ))
                .await
                .map_err(ContainerError::io(&id, "watch monitor", &dir))?;
        }
        crate::failpoint::hit(crate::failpoint::STOP_CONTAINER_AFTER_SIGNAL);
        if !exited {
            tracing::info!(container = %id, "killing container");
            let _ = self.signal(&id, libc::SIGKILL).await;
            // Everything in the cgroup, too: processes the container forked or exec'd into it.
            if let Ok(path) = CgroupPath::parse(&container.cgroup_path) {
                let cgroups = Arc::clone(&self.cgroups);
                let _ = tokio::task::spawn_blocking(move || cgroups.kill_all(&path)).await;
            }
            exited = wait_for_exit(pidfd, Some(KILL_GRACE))
                .instrument(tracing::info_span!(
                    "container.wait_exit",
                    signal = libc::SIGKILL
                ))
                .await
                .map_err(ContainerError::io(&id, "watch monitor", &dir))?;
        }
        if !exited {
            return Err(ContainerError::Io {
                id,
                action: "stop",
                path: dir,
                source: std::io::Error::other("the container did not exit after SIGKILL"),
            });
        }
        self.record_exit(&id)
            .instrument(tracing::info_span!("container.record"))
            .await
    }

    /// Asks the monitor to send `signal` to the container's process.
    pub(super) async fn signal(&self, id: &str, signal: i32) -> Result<(), ContainerError> {
        self.monitor_request(id, Request::Signal { signal }).await
    }

    /// Sends a control request to the monitor of container `id`.
    pub(super) async fn monitor_request(
        &self,
        id: &str,
        request: Request,
    ) -> Result<(), ContainerError> {
        let dir = self.runtime_dir(id);
        let answer =
            tokio::task::spawn_blocking(move || client::request(&dir, &request, REQUEST_TIMEOUT))
                .await
                .map_err(|err| ContainerError::Io {
                    id: id.to_owned(),
                    action: "monitor request",
                    path: self.runtime_dir(id),
                    source: std::io::Error::other(err),
                })?
                .map_err(|source| ContainerError::Monitor {
                    id: id.to_owned(),
                    source,
                })?;
        match answer {
            Response::Ok => Ok(()),
            Response::Error { message } => Err(ContainerError::Io {
                id: id.to_owned(),
                action: "monitor request",
                path: self.runtime_dir(id),
                source: std::io::Error::other(message),
            }),
        }
    }
}
