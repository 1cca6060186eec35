//! `ExecSync`: run a command in a running container (its namespaces, cgroup and security
//! context) through the `carrack exec-in` helper, collect its output up to a cap, and give up
//! after the timeout.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

use super::start::state_name;
use super::{ContainerError, ContainerService};
use crate::store::{ContainerRecord, ContainerState};

/// Most output kept per stream; the rest is read and dropped so the command never blocks on a
/// full pipe (an unbounded buffer is a memory DoS on the runtime: CVE-2022-31030).
pub const MAX_EXEC_OUTPUT: usize = 16 << 20;

/// Most output of both streams together: a reply must fit in one gRPC message, and kubelet
/// (like Carrack) accepts at most 16 MiB; the rest of the message needs a few bytes.
pub const MAX_EXEC_REPLY_OUTPUT: usize = (16 << 20) - 1024;

/// How long the exec helper gets to kill and reap a timed-out command.
const HELPER_GRACE: Duration = Duration::from_secs(5);

/// What an exec'd command produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOutput {
    /// Its stdout, capped at [`MAX_EXEC_OUTPUT`].
    pub stdout: Vec<u8>,
    /// Its stderr, capped at [`MAX_EXEC_OUTPUT`].
    pub stderr: Vec<u8>,
    /// Its exit code (128 + signal when killed).
    pub exit_code: i32,
}

impl ContainerService {
    /// Runs `command` in container `id`; `timeout` zero means no limit.
    pub async fn exec_sync(
        self: &Arc<Self>,
        id: &str,
        command: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, ContainerError> {
        if command.is_empty() {
            return Err(ContainerError::InvalidConfig {
                reason: "cmd is required".to_owned(),
            });
        }
        let container = self.require_running(id, "commands can only run in a running container")?;
        let id = container.id.clone();
        let dir = self.runtime_dir(&id);
        let mut child = self
            .exec_helper(&container, false, command)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(ContainerError::io(
                &id,
                "spawn exec helper",
                &self.settings.binary,
            ))?;
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let run = async {
            let (stdout, stderr, status) =
                tokio::join!(read_capped(stdout), read_capped(stderr), child.wait());
            (stdout, stderr, status)
        };
        let outcome = if timeout.is_zero() {
            Some(run.await)
        } else {
            tokio::time::timeout(timeout, run).await.ok()
        };
        let Some((stdout, stderr, status)) = outcome else {
            stop_helper(&mut child).await;
            return Err(ContainerError::ExecTimeout {
                id,
                seconds: timeout.as_secs(),
            });
        };
        let status = status.map_err(ContainerError::io(&id, "wait for exec helper", &dir))?;
        let exit_code = exit_code_of(status);
        let (stdout, stderr) = fit_in_reply(stdout, stderr);
        Ok(ExecOutput {
            stdout,
            stderr,
            exit_code,
        })
    }
}

impl ContainerService {
    /// The `carrack exec-in` command running `command` in running `container`; the caller
    /// sets its stdio.
    pub(super) fn exec_helper(
        &self,
        container: &ContainerRecord,
        tty: bool,
        command: &[String],
    ) -> tokio::process::Command {
        let mut helper = tokio::process::Command::new(&self.settings.binary);
        helper
            .arg("exec-in")
            .arg(self.runtime_dir(&container.id))
            .arg("--pid")
            .arg(container.pid.to_string());
        if tty {
            helper.arg("--tty");
        }
        helper.arg("--").args(command).kill_on_drop(true);
        helper
    }

    /// Container `id` if it is running (and its exit not yet noticed); else `WrongState`
    /// with `reason`.
    pub fn require_running(
        &self,
        id: &str,
        reason: &'static str,
    ) -> Result<Arc<ContainerRecord>, ContainerError> {
        let container = self.require(id)?;
        if container.state != ContainerState::Running || self.exit_pending(&container) {
            return Err(ContainerError::WrongState {
                id: container.id.clone(),
                state: state_name(if container.state == ContainerState::Running {
                    ContainerState::Exited
                } else {
                    container.state
                }),
                reason,
            });
        }
        Ok(container)
    }
}

/// Stops an exec helper: SIGTERM asks it to kill the command and reap it (no zombie is left
/// in the container, and the caller goes on after the command is gone, as kubelet's probes
/// expect); SIGKILL if it does not, and the command dies with its parent.
pub(super) async fn stop_helper(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id().and_then(|pid| i32::try_from(pid).ok())
        && let Some(pid) = rustix::process::Pid::from_raw(pid)
    {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    if tokio::time::timeout(HELPER_GRACE, child.wait())
        .await
        .is_err()
    {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
}

/// The exit code of the helper (the command's: see `monitor::exec_helper`), 128 + the signal
/// when the helper itself was killed.
pub(super) fn exit_code_of(status: std::process::ExitStatus) -> i32 {
    match (
        status.code(),
        std::os::unix::process::ExitStatusExt::signal(&status),
    ) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => 255,
    }
}

/// Cuts the streams so that together they fit [`MAX_EXEC_REPLY_OUTPUT`]: stderr gives way
/// first, as the output a caller asked for is on stdout.
fn fit_in_reply(mut stdout: Vec<u8>, mut stderr: Vec<u8>) -> (Vec<u8>, Vec<u8>) {
    stdout.truncate(MAX_EXEC_REPLY_OUTPUT);
    stderr.truncate(MAX_EXEC_REPLY_OUTPUT - stdout.len());
    (stdout, stderr)
}

/// Reads `stream` to its end, keeping at most [`MAX_EXEC_OUTPUT`] bytes.
async fn read_capped(stream: Option<impl AsyncRead + Unpin>) -> Vec<u8> {
    let Some(mut stream) = stream else {
        return Vec::new();
    };
    let mut kept = Vec::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => {
                let room = MAX_EXEC_OUTPUT.saturating_sub(kept.len());
                kept.extend_from_slice(&buffer[..read.min(room)]);
            }
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_streams_together_fit_one_reply() {
        let (out, err) = fit_in_reply(vec![1; MAX_EXEC_OUTPUT], vec![2; 10]);
        assert_eq!(out.len(), MAX_EXEC_REPLY_OUTPUT);
        assert!(err.is_empty());
        let (out, err) = fit_in_reply(vec![1; 100], vec![2; MAX_EXEC_OUTPUT]);
        assert_eq!(out.len() + err.len(), MAX_EXEC_REPLY_OUTPUT);
        assert_eq!(out.len(), 100);
    }

    #[tokio::test]
    async fn output_beyond_the_cap_is_dropped_but_read() {
        let big = vec![b'x'; MAX_EXEC_OUTPUT + 1000];
        let kept = read_capped(Some(big.as_slice())).await;
        assert_eq!(kept.len(), MAX_EXEC_OUTPUT);
    }
}
