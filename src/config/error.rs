//! Errors raised while loading and validating the configuration file.

use std::path::PathBuf;

use crate::error_kind::ErrorKind;

/// A configuration problem; every variant names the file, and the key where one is at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file exists but could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// The I/O failure.
        source: std::io::Error,
    },
    /// The file is not valid TOML for Carrack's schema (unknown key, wrong type, bad enum value).
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The config file.
        path: PathBuf,
        /// The parser's explanation, which quotes the offending key and line.
        message: String,
    },
    /// A key parsed but holds a value Carrack cannot use.
    #[error("invalid value for `{key}` in {path}: {reason}")]
    Invalid {
        /// The config file (or `<defaults>`).
        path: PathBuf,
        /// Dotted path of the key, e.g. `registry.mirrors."docker.io".endpoints`.
        key: String,
        /// Why the value is refused.
        reason: String,
    },
}

impl ConfigError {
    /// The kind of failure, for the one place that maps errors to gRPC codes.
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::InvalidArgument
    }
}
