//! Port-forward over a [`ForwardSession`]: each forwarded stream gets its own TCP connection
//! to `localhost:<port>` in the pod's network namespace, copied both ways until the pod side
//! closes (a client's end of input half-closes the pod side). A port that cannot be reached
//! is reported on the stream's error stream in kubelet's words.

use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::task::JoinSet;

use super::runtime::StreamRuntime;
use super::session::{ForwardSession, ForwardStream};

/// Serves `session` for pod `pod_id` until the client is gone or every stream ended.
pub async fn serve(runtime: Arc<dyn StreamRuntime>, pod_id: String, mut session: ForwardSession) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            stream = session.streams.recv() => match stream {
                Some(stream) => {
                    connections.spawn(forward(Arc::clone(&runtime), pod_id.clone(), stream));
                }
                None => break,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            () = &mut session.closed => {
                connections.abort_all();
                return;
            }
        }
    }
    tokio::select! {
        () = async { while connections.join_next().await.is_some() {} } => {}
        () = &mut session.closed => connections.abort_all(),
    }
}

/// Forwards one stream.
async fn forward(runtime: Arc<dyn StreamRuntime>, pod_id: String, stream: ForwardStream) {
    let ForwardStream {
        port,
        mut data_in,
        mut data_out,
        mut error,
    } = stream;
    let connected = match port {
        Ok(port) => {
            let pod = pod_id.clone();
            let result = tokio::task::spawn_blocking(move || runtime.connect(&pod, port))
                .await
                .map_err(|err| err.to_string())
                .and_then(|result| result.map_err(|err| err.to_string()))
                .and_then(|socket| {
                    socket
                        .set_nonblocking(true)
                        .map_err(|err| err.to_string())?;
                    tokio::net::TcpStream::from_std(socket).map_err(|err| err.to_string())
                });
            result.map_err(|err| forward_error(port, &pod_id, &err))
        }
        Err(reason) => Err(reason),
    };
    let socket = match connected {
        Ok(socket) => socket,
        Err(message) => {
            tracing::debug!(pod_id, %message, "port-forward failed");
            let _ = error.write_all(message.as_bytes()).await;
            let _ = error.shutdown().await;
            let _ = data_out.shutdown().await;
            return;
        }
    };
    let (mut from_pod, mut to_pod) = socket.into_split();
    let upstream = async move {
        let _ = tokio::io::copy(&mut data_in, &mut to_pod).await;
        // The client is done sending: half-close, the server may still answer.
        let _ = to_pod.shutdown().await;
        std::future::pending::<()>().await;
    };
    let downstream = async {
        let _ = tokio::io::copy(&mut from_pod, &mut data_out).await;
        let _ = data_out.shutdown().await;
    };
    tokio::select! {
        () = upstream => {}
        () = downstream => {}
    }
    let _ = error.shutdown().await;
}

/// kubelet's message for a failed forward (the pod uid is not known at this level).
pub fn forward_error(port: u16, pod_id: &str, reason: &str) -> String {
    format!("error forwarding port {port} to pod {pod_id}, uid : {reason}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_worded_as_kubelet_does() {
        assert_eq!(
            forward_error(80, "abc", "connection refused"),
            "error forwarding port 80 to pod abc, uid : connection refused"
        );
    }
}
