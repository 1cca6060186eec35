//! Which host the streaming URLs name: the configured advertise address, else the bound IP,
//! else — when bound to `0.0.0.0`/`::`, which no client can dial — the node's IP.
//!
//! kubelet dials the URL the runtime returns, so it must name an address of this node.
//! containerd derives it the same way (`stream_server_address` empty or unspecified → the
//! IP of the interface holding the default route, kubelet's `ResolveBindAddress`). The node
//! IP is the source address the kernel picks for a route to a documentation address
//! (connecting a UDP socket sends nothing); with no such route, loopback, with a warning.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

/// TEST-NET-1 (RFC 5737) and the IPv6 documentation prefix (RFC 3849): routed by a default
/// route, never answered, and nothing is sent to them.
const PROBE_V4: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
const PROBE_V6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));

/// The `host` of the URLs (IPv6 in brackets) for a server bound to `bound`, with the
/// `configured` advertise address (empty: derive it).
pub fn url_host(bound: SocketAddr, configured: &str) -> String {
    if !configured.is_empty() {
        return match configured.parse::<Ipv6Addr>() {
            Ok(v6) => format!("[{v6}]"),
            Err(_) => configured.to_owned(),
        };
    }
    let ip = if bound.ip().is_unspecified() {
        node_ip(bound.ip())
    } else {
        bound.ip()
    };
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// The node's address of `unspecified`'s family, loopback when it has no route out.
fn node_ip(unspecified: IpAddr) -> IpAddr {
    let (probe, loopback) = match unspecified {
        IpAddr::V4(_) => (PROBE_V4, IpAddr::V4(Ipv4Addr::LOCALHOST)),
        IpAddr::V6(_) => (PROBE_V6, IpAddr::V6(Ipv6Addr::LOCALHOST)),
    };
    let routed = UdpSocket::bind(SocketAddr::new(unspecified, 0))
        .and_then(|socket| {
            socket.connect(SocketAddr::new(probe, 9))?;
            socket.local_addr()
        })
        .map(|local| local.ip());
    match routed {
        Ok(ip) if !ip.is_unspecified() => {
            tracing::info!(
                %ip,
                "streaming server bound to {unspecified}: URLs name the node's default-route address (set streaming.advertise_address to choose)"
            );
            ip
        }
        outcome => {
            tracing::warn!(
                ?outcome,
                "streaming server bound to {unspecified} and the node has no default route: URLs name {loopback} (set streaming.advertise_address)"
            );
            loopback
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertise_configured_bound_or_node_address() {
        let bound: SocketAddr = "0.0.0.0:10010".parse().unwrap();
        assert_eq!(url_host(bound, "node-1.example"), "node-1.example");
        assert_eq!(url_host(bound, "10.1.2.3"), "10.1.2.3");
        assert_eq!(url_host(bound, "fd00::1"), "[fd00::1]");
        assert_eq!(url_host("10.0.0.5:1".parse().unwrap(), ""), "10.0.0.5");
        assert_eq!(url_host("[::1]:1".parse().unwrap(), ""), "[::1]");
        // Unspecified: some dialable address of the node, never 0.0.0.0.
        let host = url_host(bound, "");
        let ip: IpAddr = host.parse().expect("an IPv4 address");
        assert!(!ip.is_unspecified(), "{host}");
        let host = url_host("[::]:1".parse().unwrap(), "");
        let ip: Ipv6Addr = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .expect("an IPv6 address");
        assert!(!ip.is_unspecified(), "{host}");
    }
}
