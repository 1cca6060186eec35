//! The monitor's files in the runtime directory: its pid before it reports, and the exit
//! record once the container has ended (or failed to start), each replaced atomically so the
//! daemon never reads half a file (not fsynced: the runtime directory is stale after a reboot).

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use super::error::MonitorError;
use super::protocol::{EXIT_FILE, ExitRecord, PID_FILE, START_FILE, StartReport};
use crate::store::replace_runtime_file;

/// Now, in nanoseconds since the epoch (0 before it, `i64::MAX` after 2262).
pub(super) fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| i64::try_from(since.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Writes [`PID_FILE`] with `pid`.
pub(super) fn write_pid(dir: &Path, pid: i32) -> Result<(), MonitorError> {
    replace(dir, PID_FILE, pid.to_string().as_bytes())
}

/// Writes [`START_FILE`] with `report`.
pub(super) fn write_start(dir: &Path, report: &StartReport) -> Result<(), MonitorError> {
    write_json(dir, START_FILE, report)
}

/// Writes [`EXIT_FILE`] with `record`.
pub(super) fn write_exit(dir: &Path, record: &ExitRecord) -> Result<(), MonitorError> {
    write_json(dir, EXIT_FILE, record)
}

/// Replaces `dir/name` with `value` as JSON.
fn write_json<T: serde::Serialize>(dir: &Path, name: &str, value: &T) -> Result<(), MonitorError> {
    let json = serde_json::to_vec(value).map_err(|err| MonitorError::Parse {
        path: dir.join(name),
        reason: err.to_string(),
    })?;
    replace(dir, name, &json)
}

/// Replaces `dir/name` with `bytes` through the temp file `dir/.name.tmp` (a stale one, left
/// by a crash, is removed first).
fn replace(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), MonitorError> {
    let temp = dir.join(format!(".{name}.tmp"));
    let _ = std::fs::remove_file(&temp);
    // The runtime directory does not outlive a boot: no fsync on the start path.
    replace_runtime_file(&temp, &dir.join(name), bytes).map_err(|(path, source)| MonitorError::Io {
        what: "write",
        path,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_replace_their_files_through_a_temp_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join(".exit.json.tmp"), "stale").expect("stale temp");
        let record = ExitRecord {
            exit_code: 143,
            signal: Some(15),
            finished_at_ns: now_ns(),
            oom_killed: false,
            start_error: None,
        };
        write_exit(dir.path(), &record).expect("write exit");
        let read: ExitRecord =
            serde_json::from_slice(&std::fs::read(dir.path().join(EXIT_FILE)).expect("read"))
                .expect("parse");
        assert_eq!(read, record);
        write_pid(dir.path(), 42).expect("write pid");
        assert_eq!(
            std::fs::read_to_string(dir.path().join(PID_FILE)).expect("read"),
            "42"
        );
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|entry| entry.expect("entry").file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }
}
