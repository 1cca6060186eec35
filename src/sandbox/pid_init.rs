//! The init of a pod's shared PID namespace (`carrack pod-init`, see
//! [`crate::monitor::pod_init`]): started for pods whose containers share one PID namespace,
//! put in the pod's cgroup, killed when the pod stops (which ends every process in that
//! namespace).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;

/// How long the init's launcher may take to report.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts a pod init with `binary` for the pod whose directory is `pod_dir` (which its command
/// line carries, see [`owner_of`]); returns its pid.
pub(super) async fn start(binary: &Path, pod_dir: &Path) -> std::io::Result<i32> {
    let mut child = tokio::process::Command::new(binary)
        .arg("pod-init")
        .arg(pod_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdout = String::new();
    let mut stderr = String::new();
    let (mut out, mut err) = (child.stdout.take(), child.stderr.take());
    let read = async {
        if let Some(out) = out.as_mut() {
            out.read_to_string(&mut stdout).await?;
        }
        if let Some(err) = err.as_mut() {
            err.read_to_string(&mut stderr).await?;
        }
        child.wait().await
    };
    let status = tokio::time::timeout(START_TIMEOUT, read)
        .await
        .map_err(|_| std::io::Error::other("pod-init did not report in time"))??;
    match stdout.trim().parse::<i32>() {
        Ok(pid) if status.success() && pid > 0 => Ok(pid),
        _ => Err(std::io::Error::other(format!(
            "pod-init failed ({status}): {}",
            stderr.trim()
        ))),
    }
}

/// The pod directory named by a pod init's command line (`carrack pod-init <pod_dir>`, NUL
/// separated as in `/proc/<pid>/cmdline`), or `None` when it is not a pod init.
pub(super) fn owner_of(cmdline: &[u8]) -> Option<std::path::PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let mut args = cmdline.split(|byte| *byte == 0).skip(1);
    if args.next() != Some(b"pod-init".as_slice()) {
        return None;
    }
    args.next()
        .filter(|dir| !dir.is_empty())
        .map(|dir| std::path::PathBuf::from(std::ffi::OsStr::from_bytes(dir)))
}

/// Kills the pod init `pid` if it is still ours (its command line says `pod-init`), and with
/// it every process of the pod's PID namespace.
pub(super) fn kill(pid: i32) -> std::io::Result<()> {
    let Some(pid_value) = rustix::process::Pid::from_raw(pid) else {
        return Ok(());
    };
    let Ok(pidfd) = rustix::process::pidfd_open(pid_value, rustix::process::PidfdFlags::empty())
    else {
        return Ok(());
    };
    // Checked after pinning: a reused pid is never signalled.
    let ours = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|cmdline| {
            cmdline
                .split(|byte| *byte == 0)
                .nth(1)
                .is_some_and(|arg| arg == b"pod-init")
        })
        .unwrap_or(false);
    if !ours {
        return Ok(());
    }
    match rustix::process::pidfd_send_signal(&pidfd, rustix::process::Signal::KILL) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
        Err(errno) => Err(errno.into()),
    }
}
