//! Exec and attach over a [`StdioSession`]: copy the client's input to the process and its
//! output to the client, apply resize events, and write the final status on the error stream.
//! If the client goes away first, the process is stopped (exec: killed and reaped).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

use super::runtime::{Process, Resizer};
use super::session::{Input, Output, StdioSession, parse_resize_events};
use super::status::Outcome;

/// How long output still in flight may take to reach the client after the process ended
/// (a background child holding the output open must not keep the stream forever).
const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// Serves `session` with `process` until it ends; `cmd` names an exec in the status (`None`
/// for an attach).
pub async fn serve(process: Process, mut session: StdioSession, cmd: Option<&[String]>) {
    let Process {
        stdin,
        stdout,
        stderr,
        resizer,
        mut control,
    } = process;
    if let (Some(from), Some(to)) = (session.stdin.take(), stdin) {
        tokio::spawn(copy_input(from, to));
    }
    if let (Some(events), Some(resizer)) = (session.resize.take(), resizer) {
        tokio::spawn(apply_resizes(events, resizer));
    }
    let mut outputs: Vec<JoinHandle<()>> = Vec::new();
    for (from, to) in [
        (stdout, session.stdout.take()),
        (stderr, session.stderr.take()),
    ] {
        if let Some(from) = from {
            outputs.push(tokio::spawn(copy_output(from, to)));
        }
    }
    let ended = tokio::select! {
        result = control.wait() => Some(result),
        () = &mut session.closed => None,
    };
    let Some(result) = ended else {
        tracing::debug!("stream client gone; stopping the process");
        control.stop().await;
        for output in outputs {
            output.abort();
        }
        return;
    };
    let drained = async {
        for output in &mut outputs {
            let _ = output.await;
        }
    };
    if tokio::time::timeout(DRAIN_GRACE, drained).await.is_err() {
        for output in &outputs {
            output.abort();
        }
    }
    let outcome = match (result, cmd) {
        (Ok(0), _) | (Ok(_), None) => Outcome::Success,
        (Ok(code), Some(cmd)) => Outcome::ExitCode {
            cmd: cmd.to_vec(),
            code,
        },
        (Err(err), _) => Outcome::Internal(err.to_string()),
    };
    let bytes = outcome.encode(session.status);
    if !bytes.is_empty() {
        let _ = session.error.write_all(&bytes).await;
    }
    let _ = session.error.shutdown().await;
}

/// Copies the client's input to the process; at its end the process's input is closed.
async fn copy_input(mut from: Input, mut to: Output) {
    let _ = tokio::io::copy(&mut from, &mut to).await;
    let _ = to.shutdown().await;
}

/// Copies one output of the process to the client (or drops it when the client did not ask
/// for it), then closes the client's stream.
async fn copy_output(mut from: Input, to: Option<Output>) {
    match to {
        Some(mut to) => {
            let _ = tokio::io::copy(&mut from, &mut to).await;
            let _ = to.shutdown().await;
        }
        None => {
            let _ = tokio::io::copy(&mut from, &mut tokio::io::sink()).await;
        }
    }
}

/// Reads resize events and applies them to the terminal.
async fn apply_resizes(mut events: Input, resizer: Box<dyn Resizer>) {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let read = match events.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        buffer.extend_from_slice(&chunk[..read]);
        let (sizes, used) = parse_resize_events(&buffer);
        buffer.drain(..used);
        for size in sizes {
            if let Err(err) = resizer.resize(size) {
                tracing::debug!(error = %err, "terminal resize failed");
            }
        }
        if buffer.len() > 64 * 1024 {
            // No valid event is this long: a client sending garbage.
            buffer.clear();
        }
    }
}
