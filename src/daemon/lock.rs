//! The root-directory lock: one daemon per root dir, enforced with `flock`.
//!
//! The lock file holds the owner's pid so the refusal message can name it. `flock` is released
//! by the kernel when the holder dies, so a crashed daemon never blocks its successor.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};

use super::DaemonError;

/// Holds the lock for as long as it lives.
#[derive(Debug)]
pub struct RootLock {
    _file: File,
    path: PathBuf,
}

impl RootLock {
    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Takes `<root_dir>/carrack.lock`, failing at once (never waiting) if another process has it.
pub fn acquire(root_dir: &Path) -> Result<RootLock, DaemonError> {
    let path = root_dir.join("carrack.lock");
    let io = |action, source| DaemonError::Io {
        action,
        path: path.clone(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|err| io("open lock file", err))?;
    if let Err(err) = flock(&file, FlockOperation::NonBlockingLockExclusive) {
        if err == rustix::io::Errno::WOULDBLOCK {
            let mut text = String::new();
            let holder = file
                .read_to_string(&mut text)
                .ok()
                .and_then(|_| text.trim().parse().ok());
            return Err(DaemonError::AlreadyRunning {
                root_dir: root_dir.to_owned(),
                lock_path: path,
                holder,
            });
        }
        return Err(io("lock", err.into()));
    }
    file.set_len(0)
        .map_err(|err| io("truncate lock file", err))?;
    file.rewind().map_err(|err| io("rewind lock file", err))?;
    writeln!(file, "{}", std::process::id()).map_err(|err| io("write lock file", err))?;
    Ok(RootLock { _file: file, path })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_on_same_root_is_refused_with_pid() {
        let root = tempfile::tempdir().unwrap();
        let first = acquire(root.path()).unwrap();
        let err = acquire(root.path()).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains(&format!("pid {}", std::process::id())),
            "{message}"
        );
        assert!(message.contains("carrack.lock"), "{message}");
        drop(first);
        acquire(root.path()).unwrap();
    }
}
