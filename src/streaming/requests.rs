//! The validated requests a streaming URL stands for, as `Exec`, `Attach` and `PortForward`
//! hand them over, and their validation (the same rules as kubelet's streaming library).

use super::StreamingError;

/// Run a command in a container with streamed stdio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRequest {
    /// The container.
    pub container_id: String,
    /// The command and its arguments.
    pub cmd: Vec<String>,
    /// Which streams the client attaches, and whether the command gets a terminal.
    pub streams: StreamOptions,
}

/// Attach to a running container's stdio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachRequest {
    /// The container.
    pub container_id: String,
    /// Which streams the client attaches, and whether the container has a terminal.
    pub streams: StreamOptions,
}

/// Forward connections to ports inside a pod's network namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortForwardRequest {
    /// The pod.
    pub pod_id: String,
    /// The ports named in the request (websocket clients get one channel pair per port; SPDY
    /// clients name the port per stream).
    pub ports: Vec<u16>,
}

/// The stdio streams of an exec or attach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamOptions {
    /// The client sends input.
    pub stdin: bool,
    /// The client reads stdout.
    pub stdout: bool,
    /// The client reads stderr (never with `tty`: a terminal has one output).
    pub stderr: bool,
    /// The process's stdio is a terminal; the client may send resize events.
    pub tty: bool,
}

impl StreamOptions {
    /// Refuses what kubelet refuses: no stream at all, or a terminal with stderr.
    pub fn validate(&self) -> Result<(), StreamingError> {
        if self.tty && self.stderr {
            return Err(StreamingError::InvalidRequest {
                reason: "tty and stderr cannot both be true",
            });
        }
        if !self.stdin && !self.stdout && !self.stderr {
            return Err(StreamingError::InvalidRequest {
                reason: "one of stdin, stdout, or stderr must be set",
            });
        }
        Ok(())
    }
}

/// What a token stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PendingRequest {
    /// An exec.
    Exec(ExecRequest),
    /// An attach.
    Attach(AttachRequest),
    /// A port-forward.
    PortForward(PortForwardRequest),
}

impl PendingRequest {
    /// The URL path segment of this kind of request.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Exec(_) => "exec",
            Self::Attach(_) => "attach",
            Self::PortForward(_) => "portforward",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_options_follow_kubelet() {
        let ok = StreamOptions {
            stdout: true,
            tty: true,
            ..Default::default()
        };
        ok.validate().unwrap();
        let none = StreamOptions::default().validate().unwrap_err();
        assert!(none.to_string().contains("one of stdin"), "{none}");
        let tty_stderr = StreamOptions {
            stderr: true,
            tty: true,
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(tty_stderr.to_string().contains("tty and stderr"));
    }
}
