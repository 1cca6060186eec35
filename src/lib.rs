//! Carrack: a Kubernetes CRI v1 node container runtime.
//!
//! The module tree is the architecture (see `../shared/ARCHITECTURE.md` in the team's
//! shared notes): `cri` is the thin gRPC layer, the domain modules own their resources,
//! and leaves (`store`, `config`) depend only on crates and their own error types.
//!
//! Unsafe inventory: `#![deny(unsafe_code)]` holds for the whole crate; a module that needs
//! raw syscalls gets an `#[allow(unsafe_code)]` line on its declaration, and each block a
//! `// SAFETY:` comment. The inventory: `executor::sys` (declared in `executor/mod.rs`) and `container::pidfd`
//! (registering a pidfd with tokio's reactor; declared in `container/mod.rs`).
#![deny(unsafe_code)]

pub mod cgroups;
pub mod cli;
pub mod cni;
pub mod config;
pub mod container;
pub mod cri;
pub mod daemon;
pub mod error_kind;
pub mod events;
pub mod executor;
pub mod failpoint;
pub mod image_service;
pub mod monitor;
pub mod proto;
pub mod resumable;
pub mod rollback;
pub mod sandbox;
pub mod snapshot;
pub mod store;
pub mod streaming;
pub mod telemetry;
