//! Containers: a container's life inside its pod, from the CRI container config to a running
//! process and back to nothing.
//!
//! [`spec`] turns the CRI container config, the image config and the pod's record into the
//! OCI runtime spec the executor runs (pure: the few host facts it needs come in as values).
//! The lifecycle verbs (create, start, stop, remove, status, exec) are added beside it, one
//! file each.

pub mod spec;
