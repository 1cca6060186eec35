//! Kubelet's streaming side: exec, attach and port-forward over SPDY/3.1 and WebSocket.
pub mod spdy;
