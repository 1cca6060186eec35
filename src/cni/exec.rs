//! Running one plugin binary: environment, stdin, output capture, timeout and kill.
//!
//! The crate's tokio has no `process` feature, and a blocking `wait()` per plugin would pin a
//! blocking-pool thread per concurrent pod, so a run is driven without threads, the way tokio's
//! own process support works: the plugin is started with `std::process::Command` (fork + exec,
//! no waiting), its pipes are handed to tokio as non-blocking `pipe::Sender`/`Receiver`, and
//! its exit is noticed by `try_wait` after each SIGCHLD (a `tokio::signal` stream created
//! before the spawn, so none is missed; a slow periodic re-check guards against a lost
//! wake-up). Exit is detected this way rather than by EOF on stdout because a plugin's own
//! children (iptables, a forked helper) may keep its pipes open after it exited.
//!
//! Each plugin runs as the leader of its own process group. On timeout the whole group gets
//! SIGKILL, so helper processes die with it; the group is only signalled while the leader is
//! not yet reaped, which keeps its id from being reused under us. Dropping a run midway (a
//! cancelled future) kills and reaps the same way.

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tracing::Instrument;

use super::error::{CniCommand, CniError, PluginContext, PluginErrorReply};

/// A result larger than this is refused (real results are a few KiB).
const MAX_STDOUT_BYTES: usize = 4 * 1024 * 1024;
/// How much of the end of stderr is kept for error messages.
const STDERR_TAIL_BYTES: usize = 4096;
/// After the plugin exited, how long its pipes may stay open (held by a leftover child)
/// before the output is taken as complete.
const DRAIN_GRACE: Duration = Duration::from_millis(500);
/// How long to wait for a SIGKILLed plugin to be reaped before leaving it to a background task.
const KILL_REAP_WAIT: Duration = Duration::from_secs(5);
/// How often a waiting run re-checks its child without a SIGCHLD.
const SIGCHLD_RECHECK: Duration = Duration::from_millis(250);
/// Attempts when exec fails with ETXTBSY (a binary being installed while we start it).
const TEXT_BUSY_ATTEMPTS: u32 = 5;

/// The per-run CNI environment (besides `CNI_COMMAND` and `CNI_PATH`).
#[derive(Debug, Clone, Default)]
pub(crate) struct PluginEnv {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_NETNS`; empty when the netns is gone (allowed for `DEL`).
    pub netns: OsString,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_ARGS`.
    pub args: String,
}

/// Runs plugins with a fixed search path, timeout and optional exec prefix.
#[derive(Debug, Clone)]
pub(crate) struct PluginRunner {
    /// `CNI_PATH`: the bin dirs joined by `:`.
    pub cni_path: OsString,
    /// Limit per plugin run.
    pub timeout: Duration,
    /// A wrapper the binary is run through (e.g. `nsenter --net=...`); empty = run directly.
    pub exec_prefix: Vec<OsString>,
}

/// The environment variables this runtime sets; inherited copies are removed first.
const CNI_VARS: [&str; 6] = [
    "CNI_COMMAND",
    "CNI_CONTAINERID",
    "CNI_NETNS",
    "CNI_IFNAME",
    "CNI_ARGS",
    "CNI_PATH",
];

impl PluginRunner {
    /// Runs `binary` with `command`, `env` and `stdin`; returns its stdout when it exits 0.
    /// The run is a `cni.plugin` span (its duration and failures become metrics).
    pub async fn run(
        &self,
        binary: &Path,
        command: CniCommand,
        env: &PluginEnv,
        stdin: Vec<u8>,
        context: PluginContext,
    ) -> Result<Vec<u8>, CniError> {
        let span = tracing::info_span!(
            "cni.plugin",
            plugin = %context.plugin,
            command = %command,
            error = tracing::field::Empty,
        );
        let result = self
            .run_plugin(binary, command, env, stdin, context)
            .instrument(span.clone())
            .await;
        if let Err(err) = &result {
            span.record("error", tracing::field::display(err));
        }
        result
    }

    async fn run_plugin(
        &self,
        binary: &Path,
        command: CniCommand,
        env: &PluginEnv,
        stdin: Vec<u8>,
        context: PluginContext,
    ) -> Result<Vec<u8>, CniError> {
        let started = Instant::now();
        let mut cmd = self.command(binary, command, env);
        // Before the spawn, so that the child's SIGCHLD cannot come before we listen.
        let sigchld = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child()).ok();
        let child = spawn_retrying(&mut cmd)
            .await
            .map_err(|source| CniError::Spawn {
                path: self
                    .exec_prefix
                    .first()
                    .map_or_else(|| binary.to_owned(), PathBuf::from),
                context: Box::new(context.clone()),
                source,
            })?;
        let mut running = RunningPlugin::new(child, sigchld);
        let io_error = |source: std::io::Error| CniError::PluginIo {
            context: Box::new(context.clone()),
            source,
        };
        let deadline = tokio::time::Instant::now() + self.timeout;
        let outcome = tokio::time::timeout_at(deadline, running.communicate(stdin, deadline)).await;
        let output = match outcome {
            Ok(output) => output.map_err(io_error)?,
            Err(_) => {
                running.kill_and_reap().await;
                return Err(CniError::Timeout {
                    context: Box::new(context),
                    timeout: self.timeout,
                });
            }
        };
        tracing::debug!(
            plugin = %context.plugin,
            command = %command,
            container_id = %context.container_id,
            elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
            status = %output.status,
            "cni plugin finished"
        );
        if !output.stderr.is_empty() {
            tracing::debug!(plugin = %context.plugin, stderr = %output.stderr, "cni plugin stderr");
        }
        let reply = parse_error_reply(&output.stdout);
        if !output.status.success() || reply.is_some() {
            return Err(CniError::PluginFailed {
                context: Box::new(context),
                exit_code: output.status.code(),
                signal: output.status.signal(),
                error: reply.map(Box::new),
                stderr: output.stderr,
            });
        }
        if output.stdout_truncated {
            return Err(CniError::InvalidResult {
                context: Box::new(context),
                reason: format!("output larger than {MAX_STDOUT_BYTES} bytes"),
            });
        }
        Ok(output.stdout)
    }

    fn command(&self, binary: &Path, command: CniCommand, env: &PluginEnv) -> Command {
        let mut cmd = match self.exec_prefix.split_first() {
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(binary);
                cmd
            }
            None => Command::new(binary),
        };
        for var in CNI_VARS {
            cmd.env_remove(var);
        }
        cmd.env("CNI_COMMAND", command.as_str())
            .env("CNI_PATH", &self.cni_path);
        if !matches!(command, CniCommand::Version | CniCommand::Status) {
            cmd.env("CNI_CONTAINERID", &env.container_id)
                .env("CNI_NETNS", &env.netns)
                .env("CNI_IFNAME", &env.ifname)
                .env("CNI_ARGS", &env.args);
        }
        cmd.current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        cmd
    }
}

/// `spawn`, retried briefly on ETXTBSY: an installer may be writing a plugin binary (or, in a
/// multi-threaded parent, a concurrently forked child may still hold a just-written file open).
async fn spawn_retrying(cmd: &mut Command) -> std::io::Result<Child> {
    let mut attempt = 1;
    loop {
        match cmd.spawn() {
            Err(err)
                if err.raw_os_error() == Some(libc::ETXTBSY) && attempt < TEXT_BUSY_ATTEMPTS =>
            {
                tokio::time::sleep(Duration::from_millis(10 * u64::from(attempt))).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// A plugin's stdout as an error object (`code` + `msg`), if it is one. Checked even on exit 0,
/// since an error object must never be taken for an (empty) result.
fn parse_error_reply(stdout: &[u8]) -> Option<PluginErrorReply> {
    let value: Value = serde_json::from_slice(stdout).ok()?;
    let object = value.as_object()?;
    let code = object.get("code")?.as_u64()?;
    let msg = object.get("msg").and_then(Value::as_str)?;
    Some(PluginErrorReply {
        code: u32::try_from(code).unwrap_or(u32::MAX),
        msg: msg.to_owned(),
        details: object
            .get("details")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
    })
}

/// What a finished plugin produced.
struct PluginOutput {
    status: ExitStatus,
    stdout: Vec<u8>,
    stdout_truncated: bool,
    /// The trimmed, lossily decoded tail of stderr.
    stderr: String,
}

/// A started plugin that is killed and reaped if dropped before it was reaped.
struct RunningPlugin {
    /// Always `Some` until `drop` hands it to a reaper.
    child: Option<Child>,
    /// The child's pid (its process group id too).
    pid: Option<rustix::process::Pid>,
    /// Wakes on every SIGCHLD of the daemon; `None` if it could not be registered (polling).
    sigchld: Option<tokio::signal::unix::Signal>,
    /// Set once the child has been reaped; from then on its pid must not be signalled.
    status: Option<ExitStatus>,
}

impl RunningPlugin {
    fn new(child: Child, sigchld: Option<tokio::signal::unix::Signal>) -> Self {
        let pid = i32::try_from(child.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw);
        Self {
            child: Some(child),
            pid,
            sigchld,
            status: None,
        }
    }

    fn child(&mut self) -> std::io::Result<&mut Child> {
        self.child
            .as_mut()
            .ok_or_else(|| std::io::Error::other("plugin process handle already released"))
    }

    /// Feeds stdin, collects stdout and the stderr tail, and waits for the exit.
    async fn communicate(
        &mut self,
        input: Vec<u8>,
        deadline: tokio::time::Instant,
    ) -> std::io::Result<PluginOutput> {
        let (stdin, mut stdout, mut stderr) = self.take_pipes()?;
        let write = async move {
            let mut stdin = stdin;
            let written = stdin.write_all(&input).await;
            drop(stdin);
            match written {
                // The plugin may exit without reading its config (VERSION, early errors).
                Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                other => other,
            }
        };
        tokio::pin!(write);
        let mut write_done = false;
        let mut out = Vec::new();
        let mut out_truncated = false;
        let mut err_tail = Vec::new();
        let mut scratch = vec![0_u8; 16 * 1024];
        let mut err_scratch = vec![0_u8; 4 * 1024];
        let (mut out_open, mut err_open) = (true, true);
        let mut drain_until: Option<tokio::time::Instant> = None;
        while out_open || err_open || self.status.is_none() {
            let grace = drain_until.unwrap_or(deadline);
            tokio::select! {
                written = &mut write, if !write_done => {
                    write_done = true;
                    written?;
                }
                read = stdout.read(&mut scratch), if out_open => {
                    let n = read?;
                    if n == 0 {
                        out_open = false;
                    } else if out.len() + n > MAX_STDOUT_BYTES {
                        out_truncated = true;
                    } else {
                        out.extend_from_slice(&scratch[..n]);
                    }
                }
                read = stderr.read(&mut err_scratch), if err_open => {
                    let n = read?;
                    if n == 0 {
                        err_open = false;
                    } else {
                        push_tail(&mut err_tail, &err_scratch[..n]);
                    }
                }
                status = self.wait(), if self.status.is_none() => {
                    status?;
                    drain_until = Some(tokio::time::Instant::now() + DRAIN_GRACE);
                }
                () = tokio::time::sleep_until(grace), if drain_until.is_some() => {
                    // Exited, but a leftover child of the plugin holds the pipes open. What
                    // the plugin itself wrote was in them when it exited and has been read.
                    break;
                }
            }
        }
        let status = self.wait().await?;
        Ok(PluginOutput {
            status,
            stdout: out,
            stdout_truncated: out_truncated,
            stderr: String::from_utf8_lossy(&err_tail).trim().to_owned(),
        })
    }

    fn take_pipes(&mut self) -> std::io::Result<(pipe::Sender, pipe::Receiver, pipe::Receiver)> {
        let child = self.child()?;
        let missing = || std::io::Error::other("plugin pipe missing");
        let stdin = child.stdin.take().ok_or_else(missing)?;
        let stdout = child.stdout.take().ok_or_else(missing)?;
        let stderr = child.stderr.take().ok_or_else(missing)?;
        Ok((
            pipe::Sender::from_owned_fd(OwnedFd::from(stdin))?,
            pipe::Receiver::from_owned_fd(OwnedFd::from(stdout))?,
            pipe::Receiver::from_owned_fd(OwnedFd::from(stderr))?,
        ))
    }

    /// Waits for (and reaps) the child. Cancel-safe.
    async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        let mut poll_interval = Duration::from_millis(1);
        loop {
            if let Some(status) = self.child()?.try_wait()? {
                self.status = Some(status);
                return Ok(status);
            }
            match &mut self.sigchld {
                Some(sigchld) => {
                    // Any child's exit wakes every waiter; each checks its own child. The
                    // timeout is only a guard against a wake-up lost to a foreign handler.
                    let _ = tokio::time::timeout(SIGCHLD_RECHECK, sigchld.recv()).await;
                }
                None => {
                    tokio::time::sleep(poll_interval).await;
                    poll_interval = (poll_interval * 2).min(Duration::from_millis(50));
                }
            }
        }
    }

    /// SIGKILLs the plugin's process group, only while the leader is unreaped (its zombie keeps
    /// the group id from being reused).
    fn kill_group(&self) {
        if self.status.is_some() {
            return;
        }
        if let Some(pid) = self.pid {
            // ESRCH (already gone) is fine.
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }

    /// Kills the process group and waits (bounded) for the leader to be reaped; a process stuck
    /// in the kernel is left to the reaper in `Drop`.
    async fn kill_and_reap(&mut self) {
        self.kill_group();
        if tokio::time::timeout(KILL_REAP_WAIT, self.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                pid = self.child.as_ref().map(Child::id),
                "cni plugin not reaped {KILL_REAP_WAIT:?} after SIGKILL"
            );
        }
    }
}

impl Drop for RunningPlugin {
    fn drop(&mut self) {
        if self.status.is_some() {
            return;
        }
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        self.kill_group();
        // After SIGKILL the wait is short unless the process is stuck in the kernel; either
        // way it must not block an async worker, and the child must not stay a zombie.
        let mut reap = move || {
            if let Err(err) = child.wait() {
                tracing::warn!(error = %err, "cannot reap killed cni plugin");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => drop(handle.spawn_blocking(reap)),
            Err(_) => reap(),
        }
    }
}

/// Appends `bytes` to `tail`, keeping only the last [`STDERR_TAIL_BYTES`].
fn push_tail(tail: &mut Vec<u8>, bytes: &[u8]) {
    tail.extend_from_slice(bytes);
    if tail.len() > STDERR_TAIL_BYTES {
        let excess = tail.len() - STDERR_TAIL_BYTES;
        tail.drain(..excess);
    }
}
