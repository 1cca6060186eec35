//! Crash-safe file replacement: write a temp file, rename it over the target. A crash leaves
//! the old file or the new one, plus at most a temp file that its owner's start-up scan
//! removes. [`write_atomically`] also fsyncs the file and the target's directory, so the
//! result survives a power loss (records under the root dir); [`replace_runtime_file`] does
//! not, for runtime state under the state dir, which a reboot makes stale anyway (the daemon
//! discards it on a new boot id), so that the container start path waits on no disk flush.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Writes `bytes` to `temp` (which must not exist), fsyncs it, renames it over `target` and
/// fsyncs the directory. On failure the temp file is removed (best effort) and the error
/// names the path that failed.
pub fn write_atomically(
    temp: &Path,
    target: &Path,
    bytes: &[u8],
) -> Result<(), (PathBuf, io::Error)> {
    replace(temp, target, bytes, true)
}

/// As [`write_atomically`] without the fsyncs: readers see the old file or the new one, and a
/// process crash cannot tear it, but a power loss may lose it. Only for runtime state that
/// does not outlive a boot.
pub fn replace_runtime_file(
    temp: &Path,
    target: &Path,
    bytes: &[u8],
) -> Result<(), (PathBuf, io::Error)> {
    replace(temp, target, bytes, false)
}

fn replace(
    temp: &Path,
    target: &Path,
    bytes: &[u8],
    durable: bool,
) -> Result<(), (PathBuf, io::Error)> {
    let at = |path: &Path| {
        let path = path.to_owned();
        move |err| (path, err)
    };
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(temp)
            .map_err(at(temp))?;
        file.write_all(bytes).map_err(at(temp))?;
        if durable {
            file.sync_all().map_err(at(temp))?;
        }
        fs::rename(temp, target).map_err(at(target))?;
        if !durable {
            return Ok(());
        }
        let dir = target.parent().unwrap_or(Path::new("/"));
        File::open(dir)
            .and_then(|dir| dir.sync_all())
            .map_err(at(dir))
    })();
    if result.is_err() {
        let _ = fs::remove_file(temp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_target_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("record.json");
        let temp = dir.path().join(".record.tmp");
        fs::write(&target, b"old").unwrap();
        write_atomically(&temp, &target, b"new").unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"new");
        assert!(!temp.exists());
        replace_runtime_file(&temp, &target, b"newer").unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"newer");
        assert!(!temp.exists());
    }

    #[test]
    fn failure_names_the_path_and_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("missing-dir").join("record.json");
        let temp = dir.path().join(".record.tmp");
        let (path, _) = write_atomically(&temp, &target, b"new").unwrap_err();
        assert_eq!(path, target);
        assert!(!temp.exists());
    }
}
