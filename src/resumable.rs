//! Creates that outlive their client: kubelet gives `RunPodSandbox` and `CreateContainer` a
//! deadline, and a slow create whose client gave up must neither be torn down half-way nor
//! leave its name reserved in an endless `ALREADY_EXISTS` loop. [`Resumable::run`] runs the
//! create in its own task, so it finishes whatever the client does; a result nobody received
//! is kept under the object's name, and the client's retry with the same name gets it (or
//! waits for the create still in flight), as CRI-O's resource store does.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use tokio::sync::{oneshot, watch};
use tracing::Instrument;

/// One name's create.
#[derive(Debug)]
enum Entry {
    /// Still running; the sender is dropped when it ends.
    Running(watch::Receiver<()>),
    /// Finished after its client went away: the id it created.
    Unclaimed(String),
}

/// In-flight and unclaimed creates, by name.
#[derive(Debug, Default, Clone)]
pub struct Resumable {
    entries: Arc<Mutex<HashMap<String, Entry>>>,
}

impl Resumable {
    /// Runs `work` (creating the object named `name`) to completion in its own task and
    /// returns its id. If an earlier create of `name` finished after its client left, returns
    /// that id instead when `still_exists` confirms it; if one is still running, waits for it
    /// first. A result that arrives after the client's `deadline` is kept for the retry as
    /// well (the reply is sent, but the client has stopped listening).
    pub async fn run<E, F>(
        &self,
        name: String,
        deadline: Option<Instant>,
        still_exists: impl Fn(&str) -> bool,
        work: F,
    ) -> Result<String, E>
    where
        E: Send + 'static,
        F: Future<Output = Result<String, E>> + Send + 'static,
    {
        loop {
            let waiting = {
                let mut entries = self.lock();
                match entries.get(&name) {
                    Some(Entry::Unclaimed(id)) => {
                        let id = id.clone();
                        entries.remove(&name);
                        if still_exists(&id) {
                            tracing::info!(%name, %id, "retry gets the object its earlier create made");
                            return Ok(id);
                        }
                        None
                    }
                    Some(Entry::Running(done)) => Some(done.clone()),
                    None => None,
                }
            };
            match waiting {
                // Wait for the other create, then look again.
                Some(mut done) => {
                    let _ = done.changed().await;
                }
                None => break,
            }
        }

        let (done_tx, done_rx) = watch::channel(());
        let (result_tx, result_rx) = oneshot::channel();
        self.lock().insert(name.clone(), Entry::Running(done_rx));
        let entries = Arc::clone(&self.entries);
        let task_name = name.clone();
        // The work's phase spans stay children of the RPC that started it.
        let span = tracing::Span::current();
        tokio::spawn(async move {
            let name = task_name;
            let result = work.instrument(span).await;
            let mut entries = entries.lock().unwrap_or_else(PoisonError::into_inner);
            match result_tx.send(result) {
                Ok(()) => {
                    entries.remove(&name);
                }
                Err(Ok(id)) => {
                    tracing::info!(%name, %id, "create finished after its client left; kept for the retry");
                    entries.insert(name, Entry::Unclaimed(id));
                }
                Err(Err(_)) => {
                    entries.remove(&name);
                }
            }
            drop(done_tx);
        });
        match result_rx.await {
            Ok(Ok(id)) if deadline.is_some_and(|deadline| Instant::now() >= deadline) => {
                tracing::info!(%name, %id, "create finished after the client's deadline; kept for the retry");
                self.lock().insert(name, Entry::Unclaimed(id.clone()));
                Ok(id)
            }
            Ok(result) => result,
            // The task panicked: nothing to hand back but the fact.
            Err(_) => std::future::pending().await,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_retry_gets_what_the_abandoned_create_made() {
        let resumable = Resumable::default();
        let first = {
            let resumable = resumable.clone();
            tokio::spawn(async move {
                resumable
                    .run::<(), _>("pod".to_owned(), None, |_| true, async {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Ok("id-1".to_owned())
                    })
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        // The client gives up.
        first.abort();
        // Its retry waits for the create in flight and gets its id, without running again.
        let retry = resumable
            .run::<(), _>("pod".to_owned(), None, |_| true, async {
                Ok("id-2".to_owned())
            })
            .await;
        assert_eq!(retry, Ok("id-1".to_owned()));
        // Claimed once: the next create runs normally.
        let next = resumable
            .run::<(), _>("pod".to_owned(), None, |_| true, async {
                Ok("id-3".to_owned())
            })
            .await;
        assert_eq!(next, Ok("id-3".to_owned()));
    }

    #[tokio::test]
    async fn a_result_past_the_deadline_is_kept_for_the_retry() {
        let resumable = Resumable::default();
        let past = Instant::now();
        let first = resumable
            .run::<(), _>("x".to_owned(), Some(past), |_| true, async {
                Ok("made".to_owned())
            })
            .await;
        assert_eq!(first, Ok("made".to_owned()));
        let retry = resumable
            .run::<(), _>("x".to_owned(), None, |_| true, async {
                Ok("again".to_owned())
            })
            .await;
        assert_eq!(retry, Ok("made".to_owned()));
    }

    #[tokio::test]
    async fn an_unclaimed_object_that_is_gone_is_not_handed_out() {
        let resumable = Resumable::default();
        let first = {
            let resumable = resumable.clone();
            tokio::spawn(async move {
                resumable
                    .run::<(), _>("c".to_owned(), None, |_| true, async {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok("old".to_owned())
                    })
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        first.abort();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let retry = resumable
            .run::<(), _>("c".to_owned(), None, |_| false, async {
                Ok("new".to_owned())
            })
            .await;
        assert_eq!(retry, Ok("new".to_owned()));
    }
}
