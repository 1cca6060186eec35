//! The undo stack of a transactional create (a pod's run, a container's create): each
//! acquired resource pushes the step that releases it; on failure the steps run in reverse,
//! and on success the stack is disarmed.

use std::fmt;

/// One release step. It reports its own failure; the stack logs it and goes on.
type Undo = Box<dyn FnOnce() -> Result<(), String> + Send>;

/// Steps to run, newest first, unless [`Rollback::commit`] is called.
#[derive(Default)]
pub struct Rollback {
    steps: Vec<(&'static str, Undo)>,
}

impl fmt::Debug for Rollback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.steps.iter().map(|(name, _)| *name).collect();
        f.debug_struct("Rollback").field("steps", &names).finish()
    }
}

impl Rollback {
    /// Pushes the step undoing `what`.
    pub fn push(
        &mut self,
        what: &'static str,
        undo: impl FnOnce() -> Result<(), String> + Send + 'static,
    ) {
        self.steps.push((what, Box::new(undo)));
    }

    /// Runs every step, newest first. Returns the names of steps that failed, so the caller
    /// can record the object as needing cleanup.
    pub fn run(mut self) -> Vec<&'static str> {
        let mut failed = Vec::new();
        while let Some((what, undo)) = self.steps.pop() {
            if let Err(err) = undo() {
                tracing::error!(step = what, error = %err, "undo step failed");
                failed.push(what);
            }
        }
        failed
    }

    /// Keeps everything: the create succeeded.
    pub fn commit(mut self) {
        self.steps.clear();
    }
}

impl Drop for Rollback {
    fn drop(&mut self) {
        // A create that returns early without deciding (a panic, a forgotten path) must not
        // leak what it acquired.
        while let Some((what, undo)) = self.steps.pop() {
            if let Err(err) = undo() {
                tracing::error!(step = what, error = %err, "undo step failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn runs_newest_first_and_reports_failures() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut rollback = Rollback::default();
        for name in ["first", "second", "third"] {
            let log = Arc::clone(&log);
            rollback.push(name, move || {
                log.lock().unwrap().push(name);
                if name == "second" {
                    Err("busy".to_owned())
                } else {
                    Ok(())
                }
            });
        }
        assert_eq!(rollback.run(), vec!["second"]);
        assert_eq!(*log.lock().unwrap(), vec!["third", "second", "first"]);
    }

    #[test]
    fn commit_disarms_and_drop_undoes() {
        let ran = Arc::new(Mutex::new(0));
        let mut kept = Rollback::default();
        let counter = Arc::clone(&ran);
        kept.push("x", move || {
            *counter.lock().unwrap() += 1;
            Ok(())
        });
        kept.commit();
        assert_eq!(*ran.lock().unwrap(), 0);
        let mut dropped = Rollback::default();
        let counter = Arc::clone(&ran);
        dropped.push("y", move || {
            *counter.lock().unwrap() += 1;
            Ok(())
        });
        drop(dropped);
        assert_eq!(*ran.lock().unwrap(), 1);
    }
}
