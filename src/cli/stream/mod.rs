//! Interactive sessions (`exec -i/-t`, `run -i/-t`) over a CRI streaming URL: the URL the
//! runtime returns from `Exec`/`Attach` is opened as a WebSocket speaking Kubernetes'
//! channel protocol (`v5.channel.k8s.io`, else `v4.channel.k8s.io`), what kubelet's and
//! containerd's streaming servers serve.
//!
//! Each binary frame starts with a channel byte: 0 stdin, 1 stdout, 2 stderr, 3 the error
//! channel (the final status, see `status`), 4 terminal resize (JSON `{"Width","Height"}`);
//! v5 adds 255, the close signal (`[255, 0]` closes stdin).

mod status;
mod terminal;

use std::io::Write;

use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncReadExt;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use super::error::CliError;

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

/// The subprotocols offered, best first.
const PROTOCOLS: &str = "v5.channel.k8s.io, v4.channel.k8s.io";

/// What the session carries.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Send this process's stdin.
    pub stdin: bool,
    /// The remote side has a terminal: put ours in raw mode and report its size.
    pub tty: bool,
}

fn failed(reason: impl std::fmt::Display) -> CliError {
    CliError::Reply {
        rpc: "streaming session",
        reason: reason.to_string(),
    }
}

/// `http://host/exec/token` → `ws://host/exec/token`.
pub fn websocket_url(url: &str) -> Result<String, CliError> {
    if let Some(rest) = url.strip_prefix("http://") {
        Ok(format!("ws://{rest}"))
    } else if url.starts_with("ws://") {
        Ok(url.to_owned())
    } else {
        Err(CliError::Unsupported(format!(
            "the runtime's streaming URL {url} is not plain http (TLS streaming is not supported \
             by this client)"
        )))
    }
}

/// How a session ended.
#[derive(Debug)]
pub struct Ended {
    /// The exit code the error channel reported, or why the session failed.
    pub exit: Result<i32, CliError>,
    /// Whether any of the process's output arrived (an attach that began after the
    /// container's last output gets none: it is all in the log).
    pub output_seen: bool,
}

/// Runs the session at the runtime's streaming `url` until the remote side ends it.
pub async fn run(url: &str, options: Options) -> Ended {
    let mut output_seen = false;
    let exit = session(url, options, &mut output_seen).await;
    Ended { exit, output_seen }
}

/// [`run`]'s session; sets `output_seen` as output arrives.
async fn session(url: &str, options: Options, output_seen: &mut bool) -> Result<i32, CliError> {
    let mut request = websocket_url(url)?
        .into_client_request()
        .map_err(|err| failed(format!("bad streaming URL {url}: {err}")))?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static(PROTOCOLS),
    );
    let (socket, response) = tokio_tungstenite::connect_async(request)
        .await
        .map_err(|err| failed(format!("connecting to {url}: {err}")))?;
    let v5 = response
        .headers()
        .get("Sec-WebSocket-Protocol")
        .is_some_and(|value| value.as_bytes() == b"v5.channel.k8s.io");
    let (mut sink, mut frames) = socket.split();

    let _raw = if options.tty {
        terminal::RawMode::enter()
    } else {
        None
    };
    let (outgoing, mut queue) = mpsc::channel::<Vec<u8>>(16);
    if options.tty {
        spawn_resizer(outgoing.clone());
    }
    if options.stdin {
        spawn_stdin(outgoing.clone(), v5);
    }
    drop(outgoing);

    let mut error_channel = Vec::new();
    let mut stdout = std::io::stdout();
    let mut stderr = std::io::stderr();
    let mut queue_open = true;
    loop {
        tokio::select! {
            frame = frames.next() => {
                let data = match frame {
                    None | Some(Ok(Message::Close(_))) => break,
                    Some(Ok(Message::Binary(data))) => data.to_vec(),
                    Some(Ok(Message::Text(text))) => text.as_bytes().to_vec(),
                    Some(Ok(_)) => continue,
                    // The server may drop the connection right after the status.
                    Some(Err(_)) if !error_channel.is_empty() => break,
                    Some(Err(err)) => return Err(failed(err)),
                };
                let Some((channel, payload)) = data.split_first() else { continue };
                if matches!(*channel, STDOUT | STDERR) && !payload.is_empty() {
                    *output_seen = true;
                }
                match *channel {
                    STDOUT => stdout.write_all(payload).and_then(|()| stdout.flush()).map_err(CliError::Output)?,
                    STDERR => stderr.write_all(payload).and_then(|()| stderr.flush()).map_err(CliError::Output)?,
                    ERROR => error_channel.extend_from_slice(payload),
                    _ => {}
                }
            }
            next = queue.recv(), if queue_open => match next {
                Some(frame) => {
                    if sink.send(Message::binary(frame)).await.is_err() {
                        queue_open = false;
                    }
                }
                None => queue_open = false,
            },
        }
    }
    drop(_raw);
    status::exit_code(&error_channel).map_err(failed)
}

/// Sends stdin as channel-0 frames; at its end, v5's close signal for stdin.
fn spawn_stdin(outgoing: mpsc::Sender<Vec<u8>>, v5: bool) {
    tokio::spawn(async move {
        let mut stdin = tokio::io::stdin();
        let mut buffer = vec![0u8; 32 * 1024];
        loop {
            match stdin.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let mut frame = Vec::with_capacity(n + 1);
                    frame.push(STDIN);
                    frame.extend_from_slice(&buffer[..n]);
                    if outgoing.send(frame).await.is_err() {
                        return;
                    }
                }
            }
        }
        if v5 {
            let _ = outgoing.send(vec![CLOSE, STDIN]).await;
        }
    });
}

/// Reports the terminal size now and after every SIGWINCH.
fn spawn_resizer(outgoing: mpsc::Sender<Vec<u8>>) {
    tokio::spawn(async move {
        let mut changes = signal(SignalKind::window_change()).ok();
        loop {
            if let Some((width, height)) = terminal::size() {
                let mut frame = vec![RESIZE];
                frame.extend_from_slice(
                    format!(r#"{{"Width":{width},"Height":{height}}}"#).as_bytes(),
                );
                if outgoing.send(frame).await.is_err() {
                    return;
                }
            }
            match changes.as_mut() {
                Some(changes) => {
                    if changes.recv().await.is_none() {
                        return;
                    }
                }
                None => return,
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streaming_urls_become_websocket_urls() {
        assert_eq!(
            websocket_url("http://127.0.0.1:3456/exec/abc").unwrap(),
            "ws://127.0.0.1:3456/exec/abc"
        );
        assert!(websocket_url("https://node:10250/exec/abc").is_err());
    }
}
