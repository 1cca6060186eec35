//! SPDY tunneled through a WebSocket: port-forward over WebSockets as kubectl and critest's
//! `--websocket-portforward` speak it (KEP-4006). The client offers the subprotocol
//! `SPDY/3.1+portforward.k8s.io` and then runs an ordinary SPDY/3.1 port-forward connection
//! whose bytes travel in binary WebSocket messages; this file turns the WebSocket back into
//! a byte stream for the SPDY transport.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

/// The prefix a tunneling client puts before the SPDY protocol it speaks.
pub const TUNNEL_PREFIX: &str = "SPDY/3.1+";

/// Bytes in flight between the WebSocket and the SPDY connection, each way.
const TUNNEL_BUFFER: usize = 256 * 1024;

/// The SPDY protocol a negotiated tunneling subprotocol carries, if it is one.
pub fn tunneled_protocol(subprotocol: &str) -> Option<&str> {
    subprotocol.strip_prefix(TUNNEL_PREFIX)
}

/// Turns `socket` into a byte stream: what the client sends in binary messages is read from
/// it, and what is written to it goes to the client as binary messages. The stream ends when
/// the client closes the WebSocket; shutting it down closes the WebSocket.
pub fn byte_stream<S>(socket: WebSocketStream<S>) -> DuplexStream
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (ours, theirs) = tokio::io::duplex(TUNNEL_BUFFER);
    let (mut from_spdy, mut to_spdy) = tokio::io::split(ours);
    let (mut sink, mut messages) = socket.split();
    tokio::spawn(async move {
        while let Some(Ok(message)) = messages.next().await {
            match message {
                Message::Binary(data) if to_spdy.write_all(&data).await.is_err() => break,
                Message::Close(_) => break,
                // Pings are answered by the WebSocket layer; text is not part of the tunnel.
                _ => {}
            }
        }
        let _ = to_spdy.shutdown().await;
    });
    tokio::spawn(async move {
        let mut chunk = vec![0u8; 32 * 1024];
        loop {
            match from_spdy.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(len) => {
                    let data = Bytes::copy_from_slice(&chunk[..len]);
                    if sink.send(Message::Binary(data)).await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = sink.close().await;
    });
    theirs
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::protocol::Role;

    #[test]
    fn only_prefixed_protocols_are_tunnels() {
        assert_eq!(
            tunneled_protocol("SPDY/3.1+portforward.k8s.io"),
            Some("portforward.k8s.io")
        );
        assert_eq!(tunneled_protocol("v4.channel.k8s.io"), None);
    }

    #[tokio::test]
    async fn bytes_cross_the_websocket_both_ways() {
        let (server_io, client_io) = tokio::io::duplex(4096);
        let server = WebSocketStream::from_raw_socket(server_io, Role::Server, None).await;
        let mut client = WebSocketStream::from_raw_socket(client_io, Role::Client, None).await;
        let mut stream = byte_stream(server);
        client
            .send(Message::Binary(Bytes::from_static(b"abc")))
            .await
            .unwrap();
        client
            .send(Message::Binary(Bytes::from_static(b"def")))
            .await
            .unwrap();
        let mut got = [0u8; 6];
        stream.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"abcdef");
        stream.write_all(b"back").await.unwrap();
        let Some(Ok(Message::Binary(data))) = client.next().await else {
            panic!("no binary message");
        };
        assert_eq!(&data[..], b"back");
        stream.shutdown().await.unwrap();
        drop(stream);
        let mut closed = false;
        while let Some(message) = client.next().await {
            if matches!(message, Ok(Message::Close(_)) | Err(_)) {
                closed = true;
                break;
            }
        }
        assert!(closed);
    }
}
