//! Shared fixtures for carrack's root integration tests.
//!
//! Each test binary in `tests/` declares `mod support;` and uses what it needs:
//!
//! - [`node::Node`]: one test node — a network namespace, a cgroup parent, temp
//!   directories, a local registry and a running `carrack daemon` inside that
//!   namespace — torn down on `Drop`, including when the test panics.
//! - [`registry::Registry`]: Debian's `docker-registry` on `127.0.0.1:5000` in the
//!   node's network namespace, anonymous or with basic or token auth ([`token`]).
//! - [`http`]: a tiny HTTP server in a node's namespace, for token services and
//!   fake registries that misbehave on purpose.
//! - [`images`]: test images built from Debian's `busybox-static` and pushed over
//!   the OCI distribution API.
//! - [`hostile`]: images that break the rules a pull must enforce.
//! - [`archive`]: `docker save` and OCI layout archives of test images.
//! - [`client`]: CRI gRPC clients over the node's unix socket.
//! - [`cni`]: a bridge network for the node, and its IP leases.
//! - [`leaks`]: what a node's runtime holds outside the objects a test expects.
//! - [`netns`]: named network namespaces, and running code inside one.
//! - [`cleanup`]: teardown of namespaces, cgroups and mounts, and the sweep of
//!   what crashed test processes left behind.
//! - [`process`]: bounded waits and SIGTERM-then-SIGKILL for child processes.
//! - [`workload`]: the CRI steps of pod and container tests (pull busybox, run a pod, create,
//!   start, stop, remove containers).
//!
//! These tests need root (namespaces, cgroups, mounts); every test starts with
//! [`skip_unless_root`] so that an unprivileged `cargo test` passes by skipping.

// Not every test binary uses every helper.
#![allow(dead_code)]

pub mod archive;
pub mod cleanup;
pub mod client;
pub mod cni;
pub mod hostile;
pub mod http;
pub mod images;
pub mod leaks;
pub mod netns;
pub mod node;
pub mod process;
pub mod registry;
pub mod token;
pub mod workload;

/// Says that a test cannot run here because `what` is missing: prints the skip notice, or,
/// when `CARRACK_REQUIRE_ALL` (set by `tests/run.sh`) or `CI` is set, fails the test: there
/// `deploy/packages.sh` has installed every tool, so a missing one is a broken set-up that
/// must not pass as a skip.
pub fn missing(what: &str) {
    if std::env::var_os("CARRACK_REQUIRE_ALL").is_some() || std::env::var_os("CI").is_some() {
        panic!("{what} (deploy/packages.sh installs it; CARRACK_REQUIRE_ALL or CI is set)");
    }
    eprintln!("skipped: {what}");
}

/// Returns true when the tests can do root work; otherwise prints the skip
/// notice and returns false, so a test reads `if !support::skip_unless_root() { return; }`.
pub fn skip_unless_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        true
    } else {
        eprintln!("skipped: needs root");
        false
    }
}

/// Name prefix of everything a test node creates on the host (network namespace,
/// cgroup parent, temp directory); the full name is `carrack-test-<pid>-<n>`, so
/// leftovers of a crashed run can be traced back to a pid that no longer exists.
pub const NAME_PREFIX: &str = "carrack-test-";
