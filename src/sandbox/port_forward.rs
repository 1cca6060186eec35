//! Port-forward's connections: a TCP connection to `localhost:<port>` inside a pod's network
//! namespace (the host's for host-network pods). The socket is created by a short-lived thread
//! that joins the pod's netns; once connected it belongs to no namespace in particular and the
//! caller uses it from anywhere.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Arc;

use super::{PodRecord, SandboxError, SandboxService};
use crate::store::PodState;

impl SandboxService {
    /// Pod `id` if it is ready (port-forward needs its network).
    pub fn require_ready(&self, id: &str) -> Result<Arc<PodRecord>, SandboxError> {
        let pod = self.require(id)?;
        if pod.state != PodState::Ready {
            return Err(SandboxError::NotReady {
                id: pod.id.clone(),
                reason: "its network is gone",
            });
        }
        Ok(pod)
    }

    /// Connects to `localhost:port` in pod `id`'s network: IPv4 first, then IPv6 (blocking).
    pub fn connect_port(&self, id: &str, port: u16) -> Result<TcpStream, SandboxError> {
        let pod = self.require_ready(id)?;
        let failed = |source| SandboxError::Connect {
            id: pod.id.clone(),
            port,
            source,
        };
        let connect = || {
            TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).or_else(|v4| {
                TcpStream::connect(SocketAddr::from((Ipv6Addr::LOCALHOST, port))).map_err(|_| v4)
            })
        };
        match pod.netns_path.as_deref() {
            None => connect().map_err(failed),
            Some(netns) => in_netns(Path::new(netns), connect).map_err(failed),
        }
    }
}

/// Runs `work` on a short-lived thread that joined the network namespace pinned at `netns`
/// (sockets it makes and `/proc/thread-self/net` it reads are that namespace's).
pub(super) fn in_netns<T: Send>(
    netns: &Path,
    work: impl FnOnce() -> std::io::Result<T> + Send,
) -> std::io::Result<T> {
    let file = std::fs::File::open(netns)?;
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                rustix::thread::move_into_link_name_space(
                    file.as_fd(),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )?;
                work()
            })
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("netns worker panicked")))
    })
}
