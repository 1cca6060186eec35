//! Protocol negotiation: which stream protocol a client and Carrack both speak, from SPDY's
//! `X-Stream-Protocol-Version` headers or WebSocket's `Sec-WebSocket-Protocol` list. The
//! client's order is its preference; the first one Carrack supports wins.

use super::status::StatusFormat;

/// SPDY protocols of exec and attach, newest first.
pub const SPDY_STDIO_PROTOCOLS: [&str; 4] = [
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];
/// SPDY protocol of port-forward.
pub const SPDY_FORWARD_PROTOCOLS: [&str; 1] = ["portforward.k8s.io"];
/// WebSocket subprotocols of exec and attach (binary channel framing), newest first; `""`
/// stands for a client that names none.
pub const WEBSOCKET_STDIO_PROTOCOLS: [&str; 4] = [
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "channel.k8s.io",
    "",
];
/// WebSocket subprotocols of port-forward: SPDY tunneled through the WebSocket (KEP-4006,
/// see [`super::tunnel`]), then kubelet's channel-pair-per-port form.
pub const WEBSOCKET_FORWARD_PROTOCOLS: [&str; 4] = [
    "SPDY/3.1+portforward.k8s.io",
    "v4.channel.k8s.io",
    "portforward.k8s.io",
    "",
];

/// What a negotiated exec/attach protocol implies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StdioProtocol {
    /// How the final status is written.
    pub status: StatusFormat,
    /// Whether resize events are carried (SPDY v3 on, every WebSocket protocol).
    pub resize: bool,
    /// Whether the client may close channels (WebSocket v5's channel 255).
    pub close_signal: bool,
}

/// The first of the client's `offered` protocols (each header value may list several, comma
/// separated) found in `supported`; `Some("")` when the client offers none and `""` is
/// supported (old clients before negotiation).
pub fn choose<'a>(offered: &[&str], supported: &[&'a str]) -> Option<&'a str> {
    let mut any = false;
    for protocol in offered
        .iter()
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|protocol| !protocol.is_empty())
    {
        any = true;
        if let Some(found) = supported.iter().find(|s| **s == protocol) {
            return Some(found);
        }
    }
    if any {
        None
    } else {
        supported.iter().copied().find(|s| s.is_empty())
    }
}

/// The properties of exec/attach protocol `name` (SPDY or WebSocket).
pub fn stdio_protocol(name: &str) -> StdioProtocol {
    let version = if name.starts_with("v5.") {
        5
    } else if name.starts_with("v4.") {
        4
    } else if name.starts_with("v3.") {
        3
    } else if name.starts_with("v2.") {
        2
    } else {
        1
    };
    StdioProtocol {
        status: if version >= 4 {
            StatusFormat::Json
        } else {
            StatusFormat::Text
        },
        resize: version >= 3,
        close_signal: version >= 5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clients_first_supported_choice_wins() {
        assert_eq!(
            choose(
                &["v5.channel.k8s.io", "v4.channel.k8s.io"],
                &SPDY_STDIO_PROTOCOLS
            ),
            Some("v4.channel.k8s.io")
        );
        assert_eq!(
            choose(
                &["channel.k8s.io, v4.channel.k8s.io"],
                &SPDY_STDIO_PROTOCOLS
            ),
            Some("channel.k8s.io")
        );
        assert_eq!(choose(&["bogus"], &SPDY_STDIO_PROTOCOLS), None);
        assert_eq!(choose(&[], &SPDY_STDIO_PROTOCOLS), None);
        assert_eq!(choose(&[], &WEBSOCKET_STDIO_PROTOCOLS), Some(""));
        assert_eq!(choose(&["bogus"], &WEBSOCKET_STDIO_PROTOCOLS), None);
        assert_eq!(
            choose(&["portforward.k8s.io"], &SPDY_FORWARD_PROTOCOLS),
            Some("portforward.k8s.io")
        );
    }

    #[test]
    fn versions_decide_status_resize_and_close() {
        let v5 = stdio_protocol("v5.channel.k8s.io");
        assert_eq!(v5.status, StatusFormat::Json);
        assert!(v5.resize && v5.close_signal);
        let v4 = stdio_protocol("v4.channel.k8s.io");
        assert!(v4.resize && !v4.close_signal);
        assert_eq!(v4.status, StatusFormat::Json);
        let v3 = stdio_protocol("v3.channel.k8s.io");
        assert!(v3.resize);
        assert_eq!(v3.status, StatusFormat::Text);
        assert!(!stdio_protocol("v2.channel.k8s.io").resize);
        assert!(!stdio_protocol("channel.k8s.io").resize);
    }
}
