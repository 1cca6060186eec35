//! Container events: the fan-out behind `GetContainerEvents`.
//!
//! The container service publishes a [`ContainerEvent`] on every lifecycle transition
//! (created, started, stopped — by a stop, by the process ending on its own, or found at a
//! daemon restart — and deleted) through the [`EventHub`] it is given; the CRI layer
//! subscribes once per `GetContainerEvents` stream and converts each event to the wire type.
//! Events carry store records only (no wire types): the pod's record and the pod's
//! containers' records as they were when the event happened.
//!
//! Delivery: every subscriber gets every event published after it subscribed, in publish
//! order (hence in order per container, whose transitions are serialised by its lock). Each
//! subscriber has a bounded queue; one that falls behind is dropped with a warning and its
//! stream ends with an error, so a slow reader never blocks or grows the runtime.

mod error;
mod event;
mod hub;

pub use error::EventsError;
pub use event::{ContainerEvent, ContainerEventKind, ContainerSnapshot};
pub use hub::{DEFAULT_SUBSCRIBER_CAPACITY, EventHub, Subscription};
