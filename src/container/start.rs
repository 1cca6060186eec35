//! `StartContainer`: run `carrack monitor <runtime dir>`, which launches the container process
//! and stays its parent; read its one-line start report; watch it.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tracing::Instrument;

use super::create::RESOURCES_FILE;
use super::{ContainerError, ContainerService};
use crate::cgroups::{CgroupPath, Created, Resources};
use crate::events::ContainerEventKind;
use crate::monitor::protocol::{PLACED, StartReport};
use crate::store::{ContainerRecord, ContainerState, now_ns};

/// How long a start may take before the monitor is given up on (image rootfs is already
/// mounted; this covers a slow, loaded node).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Exit code recorded for a container that never ran (as containerd does).
pub(super) const START_FAILED_EXIT_CODE: i32 = 128;

impl ContainerService {
    /// Starts a created container.
    pub async fn start(self: &Arc<Self>, id: &str) -> Result<(), ContainerError> {
        let container = self.require(id)?;
        let id = container.id.clone();
        let _guard = self.locks.lock(&id).await;
        let container = self.require(&id)?;
        if container.state != ContainerState::Created {
            return Err(ContainerError::WrongState {
                id,
                state: state_name(container.state),
                reason: "only a created container can be started",
            });
        }
        if let Some(pod) = self.store.pods.get(&container.pod_id)
            && pod.state != crate::store::PodState::Ready
        {
            return Err(ContainerError::PodNotReady {
                pod_id: pod.id.clone(),
                reason: "it was stopped",
            });
        }
        let dir = self.runtime_dir(&id);
        // A systemd scope is created around the container's first process: the monitor hands
        // us the waiting process and we answer on its stdin.
        let scope = CgroupPath::parse(&container.cgroup_path)
            .ok()
            .filter(|path| self.cgroups.needs_process(path));
        let phase = tracing::info_span!("container.monitor_spawn").entered();
        let mut child = tokio::process::Command::new(&self.settings.binary)
            .arg("monitor")
            .arg(&dir)
            .stdin(if scope.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(ContainerError::io(
                &id,
                "spawn monitor",
                &self.settings.binary,
            ))?;
        // Pin the monitor before it can be reaped, so its pid cannot be reused under us.
        let pidfd = child.id().and_then(|pid| {
            let pid = rustix::process::Pid::from_raw(i32::try_from(pid).ok()?)?;
            rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()
        });
        drop(phase);
        let stdout = child.stdout.take();
        let mut stdin = child.stdin.take();
        let mut report = Vec::new();
        let mut placed = None;
        let read = async {
            let Some(stdout) = stdout else {
                return Ok(0);
            };
            let mut stdout = tokio::io::BufReader::new(stdout);
            if let (Some(path), Some(stdin)) = (&scope, stdin.as_mut()) {
                let mut line = String::new();
                stdout.read_line(&mut line).await?;
                match serde_json::from_str(&line) {
                    Ok(StartReport::Placing { pid }) => {
                        let answer = match self.place(&id, path, pid).await {
                            Ok(created) => {
                                placed = Some(created);
                                PLACED.to_owned()
                            }
                            Err(err) => err.to_string().replace('\n', " "),
                        };
                        stdin.write_all(format!("{answer}\n").as_bytes()).await?;
                    }
                    // Failed before the process existed: this line is the report.
                    _ => report.extend_from_slice(line.as_bytes()),
                }
            }
            drop(stdin.take());
            stdout.read_to_end(&mut report).await
        };
        // The monitor's own start (executor setup up to the container's exec); the steps it
        // reports become this span's children.
        let monitor_span = tracing::info_span!("monitor.start");
        let read_result = tokio::time::timeout(START_TIMEOUT, read)
            .instrument(monitor_span.clone())
            .await;
        let monitor_phases = crate::telemetry::phases::Parent::of(&monitor_span);
        drop(monitor_span);
        // The monitor lives on after its report; tokio reaps it whenever it exits.
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
        let report: Option<StartReport> = match read_result {
            Ok(Ok(_)) => std::str::from_utf8(&report)
                .ok()
                .and_then(|text| text.lines().next().map(str::to_owned))
                .and_then(|line| serde_json::from_str(&line).ok()),
            Ok(Err(err)) => {
                tracing::warn!(container = %id, error = %err, "reading the monitor's report failed");
                None
            }
            Err(_) => {
                tracing::warn!(container = %id, "the monitor did not report within {START_TIMEOUT:?}");
                None
            }
        };

        let mut record: ContainerRecord = (*container).clone();
        if let Some(created) = placed {
            record.cgroup_created = created
                .dirs()
                .iter()
                .map(|dir| dir.to_string_lossy().into_owned())
                .collect();
        }
        match report {
            Some(StartReport::Started {
                pid,
                monitor_pid,
                started_at_ns,
                phases,
            }) => {
                crate::failpoint::hit(crate::failpoint::START_CONTAINER_AFTER_SPAWN);
                monitor_phases.record(
                    phases
                        .iter()
                        .map(|phase| (phase.name.as_str(), phase.start_ns, phase.end_ns)),
                );
                record.state = ContainerState::Running;
                record.pid = pid;
                record.monitor_pid = monitor_pid;
                record.started_at_ns = started_at_ns;
                tracing::info_span!("container.record")
                    .in_scope(|| self.store.containers.put(record))?;
                tracing::info!(container = %id, pid, monitor_pid, "container started");
                self.publish_current(ContainerEventKind::Started, &id);
                match pidfd {
                    Some(pidfd) => self.watch(id, pidfd),
                    None => self.watch_pid(id, monitor_pid),
                }
                Ok(())
            }
            Some(StartReport::Failed { message }) => {
                self.record_start_failure(record, &message)?;
                Err(ContainerError::StartFailed { id, message })
            }
            // A start that stopped at placing (the daemon's answer was a refusal).
            Some(StartReport::Placing { .. }) | None => {
                // No report: whatever the monitor left says more than we know.
                let message = match crate::monitor::client::read_exit(&dir) {
                    Ok(Some(exit)) => exit
                        .start_error
                        .unwrap_or_else(|| "the monitor exited without a start report".to_owned()),
                    _ => "the monitor exited without a start report".to_owned(),
                };
                // A monitor that hung must not run the container behind our back.
                if let Ok(path) = CgroupPath::parse(&record.cgroup_path) {
                    let _ = self.cgroups.kill_all(&path);
                }
                self.record_start_failure(record, &message)?;
                Err(ContainerError::StartFailed { id, message })
            }
        }
    }

    /// Creates the container's scope around the waiting process `pid`, with the resources
    /// kept since create (and any update since).
    async fn place(
        &self,
        id: &str,
        path: &CgroupPath,
        pid: i32,
    ) -> Result<Created, ContainerError> {
        let resources: Resources = std::fs::read(self.runtime_dir(id).join(RESOURCES_FILE))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        let cgroups = Arc::clone(&self.cgroups);
        let scope = path.clone();
        tokio::task::spawn_blocking(move || cgroups.create_with(&scope, &resources, Some(pid)))
            .instrument(tracing::info_span!("container.cgroup", pid))
            .await
            .map_err(|err| ContainerError::Io {
                id: id.to_owned(),
                action: "join cgroup task",
                path: path.as_str().into(),
                source: std::io::Error::other(err),
            })?
            .map_err(|source| ContainerError::Cgroup {
                id: id.to_owned(),
                source,
            })
    }

    fn record_start_failure(
        &self,
        mut record: ContainerRecord,
        message: &str,
    ) -> Result<(), ContainerError> {
        record.state = ContainerState::Exited;
        record.exit_code = START_FAILED_EXIT_CODE;
        record.reason = "StartError".to_owned();
        record.message = message.to_owned();
        let now = now_ns();
        record.started_at_ns = now;
        record.finished_at_ns = now;
        tracing::warn!(container = %record.id, %message, "container start failed");
        let id = record.id.clone();
        self.store.containers.put(record)?;
        self.publish_current(ContainerEventKind::Stopped, &id);
        Ok(())
    }
}

/// CRI's name for a state, for messages.
pub(super) fn state_name(state: ContainerState) -> &'static str {
    match state {
        ContainerState::Created => "created",
        ContainerState::Running => "running",
        ContainerState::Exited => "exited",
        ContainerState::Unknown => "in an unknown state",
    }
}
