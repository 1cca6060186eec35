//! The broadcast hub: publishers never wait, each subscriber has its own bounded queue.
//!
//! Design choice: one `mpsc` queue per subscriber filled with `try_send` under the hub's lock
//! (rather than one shared `broadcast` ring). A full queue is noticed the moment it happens,
//! so the slow subscriber is dropped and logged right then, not whenever it next reads; and
//! publishing under the lock gives every subscriber the same order.
//!
//! Events published before anyone ever subscribed (the exits recovery finds while the daemon
//! starts, before the socket serves) are kept in a bounded backlog handed to the first
//! subscriber, so kubelet reconnecting after a restart still learns of them.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::mpsc;

use super::{ContainerEvent, EventsError};

/// How many unread events a subscriber may have queued before it is dropped.
pub const DEFAULT_SUBSCRIBER_CAPACITY: usize = 1024;

/// The container-event fan-out.
#[derive(Debug)]
pub struct EventHub {
    capacity: usize,
    state: Mutex<HubState>,
}

#[derive(Debug)]
struct HubState {
    subscribers: Vec<Subscriber>,
    next_id: u64,
    /// Events from before the first subscription; `None` once someone subscribed.
    backlog: Option<VecDeque<Arc<ContainerEvent>>>,
}

#[derive(Debug)]
struct Subscriber {
    id: u64,
    queue: mpsc::Sender<Arc<ContainerEvent>>,
    lagged: Arc<AtomicBool>,
}

/// One subscriber's end: the events published since it subscribed, in order.
#[derive(Debug)]
pub struct Subscription {
    id: u64,
    capacity: usize,
    queue: mpsc::Receiver<Arc<ContainerEvent>>,
    lagged: Arc<AtomicBool>,
}

impl Default for EventHub {
    fn default() -> Self {
        Self::new(DEFAULT_SUBSCRIBER_CAPACITY)
    }
}

impl EventHub {
    /// A hub whose subscribers may each fall `capacity` events behind (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            state: Mutex::new(HubState {
                subscribers: Vec::new(),
                next_id: 1,
                backlog: Some(VecDeque::new()),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, HubState> {
        // A panic while holding the lock leaves the state consistent (every step is a push or
        // a retain), so a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Delivers `event` to every subscriber without waiting; drops those whose queue is full.
    pub fn publish(&self, event: ContainerEvent) {
        let event = Arc::new(event);
        let mut state = self.state();
        let capacity = self.capacity;
        if let Some(backlog) = state.backlog.as_mut() {
            if backlog.len() == capacity {
                backlog.pop_front();
                tracing::warn!(
                    capacity,
                    "container event backlog full before any subscriber; dropping the oldest"
                );
            }
            backlog.push_back(Arc::clone(&event));
        }
        state.subscribers.retain(|subscriber| {
            match subscriber.queue.try_send(Arc::clone(&event)) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    subscriber.lagged.store(true, Ordering::Release);
                    tracing::warn!(
                        subscriber = subscriber.id,
                        capacity,
                        "container event subscriber is not reading; dropping it"
                    );
                    false
                }
                // The stream ended (client gone): forget it quietly.
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
    }

    /// A new subscription; the first one also gets the events published before it.
    pub fn subscribe(&self) -> Subscription {
        let mut state = self.state();
        let backlog = state.backlog.take().unwrap_or_default();
        let (queue, receiver) = mpsc::channel(self.capacity + backlog.len());
        for event in backlog {
            // Cannot fail: the queue has room for the backlog and nobody else has
            // the sender yet.
            let _ = queue.try_send(event);
        }
        let id = state.next_id;
        state.next_id += 1;
        let lagged = Arc::new(AtomicBool::new(false));
        state.subscribers.push(Subscriber {
            id,
            queue,
            lagged: Arc::clone(&lagged),
        });
        tracing::debug!(subscriber = id, "container event subscriber added");
        Subscription {
            id,
            capacity: self.capacity,
            queue: receiver,
            lagged,
        }
    }

    /// How many subscribers are attached.
    pub fn subscribers(&self) -> usize {
        self.state().subscribers.len()
    }
}

impl Subscription {
    /// The subscription's id, as the hub logs it.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The next event; `Err` once when the subscriber was dropped for falling behind (after
    /// the events it had queued), `None` when the hub is gone.
    pub async fn next(&mut self) -> Option<Result<Arc<ContainerEvent>, EventsError>> {
        match self.queue.recv().await {
            Some(event) => Some(Ok(event)),
            None if self.lagged.swap(false, Ordering::AcqRel) => Some(Err(EventsError::Lagged {
                subscriber: self.id,
                capacity: self.capacity,
            })),
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::ContainerEventKind;

    fn event(id: &str, kind: ContainerEventKind) -> ContainerEvent {
        ContainerEvent {
            container_id: id.to_owned(),
            kind,
            at_ns: 1,
            pod: None,
            containers: Vec::new(),
        }
    }

    async fn drain(
        subscription: &mut Subscription,
        count: usize,
    ) -> Vec<(String, ContainerEventKind)> {
        let mut seen = Vec::new();
        for _ in 0..count {
            let event = subscription.next().await.unwrap().unwrap();
            seen.push((event.container_id.clone(), event.kind));
        }
        seen
    }

    #[tokio::test]
    async fn every_subscriber_gets_every_event_in_order() {
        let hub = EventHub::new(16);
        let mut first = hub.subscribe();
        let mut second = hub.subscribe();
        let kinds = [
            ContainerEventKind::Created,
            ContainerEventKind::Started,
            ContainerEventKind::Stopped,
            ContainerEventKind::Deleted,
        ];
        for kind in kinds {
            hub.publish(event("a", kind));
        }
        let expected: Vec<_> = kinds.iter().map(|kind| ("a".to_owned(), *kind)).collect();
        assert_eq!(drain(&mut first, 4).await, expected);
        assert_eq!(drain(&mut second, 4).await, expected);
    }

    #[tokio::test]
    async fn a_subscriber_that_does_not_read_is_dropped_without_blocking() {
        let hub = EventHub::new(4);
        let mut slow = hub.subscribe();
        let mut fast = hub.subscribe();
        for round in 0..10 {
            hub.publish(event(&format!("c{round}"), ContainerEventKind::Created));
            // The fast one keeps up.
            let got = fast.next().await.unwrap().unwrap();
            assert_eq!(got.container_id, format!("c{round}"));
        }
        assert_eq!(hub.subscribers(), 1, "the slow subscriber is gone");
        // The slow one reads what it had queued, then learns it was dropped.
        assert_eq!(drain(&mut slow, 4).await.len(), 4);
        let err = slow.next().await.unwrap().unwrap_err();
        assert!(
            matches!(err, EventsError::Lagged { capacity: 4, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("subscribe again"));
    }

    #[tokio::test]
    async fn closed_subscribers_are_forgotten() {
        let hub = EventHub::new(4);
        drop(hub.subscribe());
        let _kept = hub.subscribe();
        hub.publish(event("a", ContainerEventKind::Created));
        assert_eq!(hub.subscribers(), 1);
    }

    #[tokio::test]
    async fn events_before_the_first_subscriber_go_to_it_only() {
        let hub = EventHub::new(2);
        for id in ["a", "b", "c"] {
            hub.publish(event(id, ContainerEventKind::Stopped));
        }
        let mut first = hub.subscribe();
        let mut second = hub.subscribe();
        hub.publish(event("d", ContainerEventKind::Deleted));
        // Bounded: the oldest was dropped.
        let ids: Vec<_> = drain(&mut first, 3)
            .await
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(ids, ["b", "c", "d"]);
        let ids: Vec<_> = drain(&mut second, 1)
            .await
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(ids, ["d"]);
    }
}
