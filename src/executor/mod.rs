//! The executor: turns an OCI runtime spec and a prepared root filesystem into a running,
//! isolated container process. Synchronous, no tokio, knows nothing about CRI.
//!
//! Entry point: [`launch`] with a [`LaunchRequest`] (spec, rootfs path, stdio descriptors,
//! cgroup files); it returns a [`Launched`] (pid and pidfd) once the process has exec'd, or an
//! [`ExecutorError`] naming the step, its subject and the errno (`mount /proc (proc): EPERM
//! (...)`, `exec /bin/nope: ENOENT (...)`). The caller must be single-threaded (the per-pod
//! monitor; never the daemon) and is the parent that reaps the process.
//!
//! Second entry point: [`exec_in`] with an [`ExecRequest`] (spec, the container's init pid,
//! stdio, cgroup files) runs one more process inside a running container, for `ExecSync` and
//! streaming exec; its caller is the short-lived `carrack exec-in` helper.
//!
//! Layout, in the order things happen:
//! - `plan`: the spec checked and turned into ready-to-use values before the clone (C
//!   strings, open namespace files, capability masks, compiled seccomp programs);
//!   `mount_options`, `capabilities`, `cgroup_mount` and `seccomp` hold the pure
//!   translations;
//! - `launch`: the parent: clone (with a pidfd), cgroup placement, the go-ahead, the outcome;
//! - `exec`: the same for a process in a running container: its namespaces joined through a
//!   pidfd, nothing of its environment rebuilt;
//! - `sync`: the typed parent↔child messages;
//! - `child` and `rootfs`: the new process's setup up to `execve`, allocation-free;
//! - [`sys`]: the raw system calls that need `unsafe` (this module's unsafe inventory entry).
//!
//! Also used by the sandbox: [`sys::unshare_thread`] and [`sys::set_loopback_up`] create a
//! pod's namespaces.

mod capabilities;
mod cgroup_mount;
mod child;
mod error;
mod exec;
mod id_map;
mod launch;
mod mount_options;
mod plan;
mod rootfs;
mod seccomp;
mod sync;
#[allow(unsafe_code)]
pub mod sys;

#[cfg(test)]
mod tests;

pub use error::{ExecutorError, errno_name};
pub use exec::{ExecRequest, exec_in};
pub use launch::{Exit, LaunchPhase, LaunchRequest, Launched, OWN_CGROUP_FILE, PlaceHook, launch};
pub use plan::Stdio;
