//! The command line's errors: each prints as one line naming what failed and why.

use std::path::PathBuf;

/// A failed command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The endpoint is not a `unix://` URL or a socket path.
    #[error("unsupported runtime endpoint {endpoint:?}: expected unix:///path/to.sock")]
    Endpoint {
        /// What was given.
        endpoint: String,
    },
    /// The runtime's socket does not take connections.
    #[error("cannot connect to the runtime at {endpoint}: {reason}")]
    Connect {
        /// The endpoint dialled.
        endpoint: String,
        /// Why, from the transport.
        reason: String,
    },
    /// The runtime answered an RPC with an error.
    #[error("{rpc}: {message} ({code:?})")]
    Rpc {
        /// The RPC, e.g. `CreateContainer`.
        rpc: &'static str,
        /// The gRPC status code.
        code: tonic::Code,
        /// The runtime's message.
        message: String,
    },
    /// No container, pod or image has that name, id or id prefix.
    #[error("no such {kind}: {name}")]
    NotFound {
        /// `container`, `pod` or `image`.
        kind: &'static str,
        /// What was asked for.
        name: String,
    },
    /// An id prefix or name matches more than one object.
    #[error("{name} names more than one {kind}: {candidates}")]
    Ambiguous {
        /// `container`, `pod` or `image`.
        kind: &'static str,
        /// What was asked for.
        name: String,
        /// The matching ids, comma separated.
        candidates: String,
    },
    /// A flag's value is malformed.
    #[error("invalid {flag} value {value:?}: {reason}")]
    Flag {
        /// The flag, e.g. `-v`.
        flag: &'static str,
        /// What was given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading or writing a local file failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done, e.g. `read log`.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// Writing to the terminal or a pipe failed.
    #[error("writing output: {0}")]
    Output(#[source] std::io::Error),
    /// A reply could not be turned into JSON.
    #[error("encoding {what} as JSON: {source}")]
    Json {
        /// What was being encoded.
        what: &'static str,
        /// The failure.
        source: serde_json::Error,
    },
    /// The runtime does not offer something the command needs.
    #[error("{0}")]
    Unsupported(String),
    /// A verify found problems (they were printed).
    #[error("{what}: {count} problem(s) found")]
    Damaged {
        /// What was verified.
        what: &'static str,
        /// How many problems.
        count: usize,
    },
    /// The runtime answered with something the command cannot use.
    #[error("unexpected reply from {rpc}: {reason}")]
    Reply {
        /// The RPC.
        rpc: &'static str,
        /// What was missing or wrong.
        reason: String,
    },
}

impl CliError {
    /// An RPC failure from its status.
    pub fn rpc(rpc: &'static str) -> impl FnOnce(tonic::Status) -> Self {
        move |status| Self::Rpc {
            rpc,
            code: status.code(),
            message: status.message().to_owned(),
        }
    }

    /// An i/o failure on `path`.
    pub fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io {
            action,
            path,
            source,
        }
    }

    /// Whether the runtime answered "not found" (an object removed meanwhile).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Self::Rpc {
                code: tonic::Code::NotFound,
                ..
            } | Self::NotFound { .. }
        )
    }
}
