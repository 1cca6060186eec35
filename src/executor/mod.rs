//! The executor: turns a prepared environment into running processes. Synchronous, no tokio,
//! knows nothing about CRI.
//!
//! So far it provides the namespace primitives pods need (`sys`); the container half (mounts,
//! pivot_root, users, capabilities, seccomp, exec) arrives with the container issue.

#[allow(unsafe_code)]
pub mod sys;
