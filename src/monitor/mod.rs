//! The container monitor: the small, long-lived process (`carrack monitor <dir>`) that is the
//! parent of a container's process, outlives daemon restarts, writes the container's CRI log
//! and records how it exited.
//!
//! [`protocol`] is what the daemon and the monitor share: the runtime directory's files, the
//! start report, the exit record and the control-socket requests. [`exec_helper`] is the
//! `carrack exec-in` helper that runs one more process in a running container.

pub mod client;
mod error;
pub mod exec_helper;
pub mod protocol;

pub use error::MonitorError;
