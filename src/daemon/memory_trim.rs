//! Gives back the memory a burst of lifecycle RPCs leaves resident.
//!
//! Running, creating, stopping and removing pods and containers, and pulling, fault in code
//! (and grow the heap) that a node's steady state does not touch: between bursts kubelet
//! only lists and polls. Once no lifecycle RPC has ended for [`QUIET`], the daemon drops the
//! code pages of its executable that still hold the file's bytes and returns its free heap to
//! the kernel (`executor::sys::memory`, as the monitors do when idle); the polls then fault
//! back only what they use. One trim costs about a millisecond of CPU, once per burst, next
//! to the tens of milliseconds each lifecycle RPC takes.

use std::time::Duration;

use tokio::sync::Notify;

/// How long after the last lifecycle RPC the daemon trims.
pub const QUIET: Duration = Duration::from_secs(1);

/// Trims after every burst of `ended` notifications, forever (spawn it).
pub async fn trim_after_bursts(ended: &'static Notify) {
    loop {
        ended.notified().await;
        wait_for_quiet(ended, QUIET).await;
        let released =
            tokio::task::spawn_blocking(crate::executor::sys::memory::release_start_up_memory)
                .await;
        match released {
            Ok(Ok(bytes)) => {
                tracing::debug!(bytes, "memory released after a burst of lifecycle RPCs")
            }
            Ok(Err(err)) => tracing::debug!(error = %err, "releasing memory failed"),
            Err(err) => tracing::debug!(error = %err, "the memory release task failed"),
        }
    }
}

/// Returns once `quiet` has passed without a notification.
async fn wait_for_quiet(ended: &Notify, quiet: Duration) {
    while tokio::time::timeout(quiet, ended.notified()).await.is_ok() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_wait_ends_only_after_a_quiet_period() {
        static ENDED: Notify = Notify::const_new();
        let quiet = Duration::from_millis(200);
        let started = std::time::Instant::now();
        let notifier = tokio::spawn(async {
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                ENDED.notify_one();
            }
        });
        wait_for_quiet(&ENDED, quiet).await;
        // Notifications at 0.1, 0.2 and 0.3 s each restart the 0.2 s of quiet.
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(500), "{waited:?}");
        assert!(waited < Duration::from_secs(5), "{waited:?}");
        notifier.await.expect("notifier");
    }
}
