//! Why an event subscription ended early.

use crate::error_kind::ErrorKind;

/// A failure of an event subscription.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    /// The subscriber did not read fast enough and its queue overflowed; it missed events.
    #[error(
        "event subscriber {subscriber} fell behind ({capacity} events queued unread) and was dropped; subscribe again"
    )]
    Lagged {
        /// The subscription's id (as logged when it was dropped).
        subscriber: u64,
        /// The queue's capacity that was exceeded.
        capacity: usize,
    },
}

impl EventsError {
    /// The kind of failure, for the gRPC mapping in `cri::status`.
    pub fn kind(&self) -> ErrorKind {
        match self {
            // The client can recover by subscribing again (and relisting).
            Self::Lagged { .. } => ErrorKind::ResourceExhausted,
        }
    }
}
