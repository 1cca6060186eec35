//! Waiting for a process to exit without a thread: a pidfd polls readable once its process has
//! exited, so tokio's reactor can watch it. Registering a raw descriptor with the reactor is
//! the one `unsafe` step (tokio cannot check that the descriptor stays open); this module is
//! its entry in the crate's unsafe inventory.

use std::os::fd::OwnedFd;
use std::time::Duration;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// Waits until the process behind `pidfd` has exited; `Ok(false)` if `timeout` passed first.
pub(super) async fn wait_for_exit(
    pidfd: OwnedFd,
    timeout: Option<Duration>,
) -> std::io::Result<bool> {
    // SAFETY: the `OwnedFd` is moved into the `AsyncFd`, which owns it until it is dropped at
    // the end of this function; nothing else can close it or make its number refer to another
    // file meanwhile, and `OwnedFd::as_raw_fd` always returns that same descriptor.
    let fd = unsafe { AsyncFd::register_with_interest(pidfd, Interest::READABLE) }
        .map_err(std::io::Error::from)?;
    let readable = fd.readable();
    match timeout {
        None => {
            readable.await?.retain_ready();
            Ok(true)
        }
        Some(limit) => match tokio::time::timeout(limit, readable).await {
            Ok(guard) => {
                guard?.retain_ready();
                Ok(true)
            }
            Err(_) => Ok(false),
        },
    }
}
