//! The monitor's own diagnostics: timestamped lines on its stderr, which is
//! `<dir>/monitor.log` once [`redirect_stderr`] has run (the daemon's pipe, if it gave one, is
//! let go at once so that the daemon never waits on a monitor that lives for days).

use std::fmt;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::SystemTime;

/// The monitor's diagnostics file in the runtime directory.
pub(super) const LOG_FILE: &str = "monitor.log";

/// Writes one diagnostic line: `<timestamp> <message>`.
macro_rules! note {
    ($($arg:tt)*) => {
        $crate::monitor::diag::write_note(format_args!($($arg)*))
    };
}
pub(super) use note;

/// Writes `message` as one timestamped line on stderr, ignoring failures (there is nowhere
/// else to report them).
pub(super) fn write_note(message: fmt::Arguments<'_>) {
    let stamp = super::log::timestamp(&SystemTime::now());
    let line = format!(
        "{} monitor[{}]: {message}\n",
        String::from_utf8_lossy(&stamp),
        std::process::id()
    );
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// Points stderr at `<dir>/monitor.log` (appending), or at `/dev/null` when that file cannot
/// be opened, and stdin at `/dev/null`.
pub(super) fn redirect_stderr(dir: &Path) {
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(dir.join(LOG_FILE))
        .or_else(|_| OpenOptions::new().write(true).open("/dev/null"));
    if let Ok(file) = file {
        let _ = rustix::stdio::dup2_stderr(&file);
    }
    if let Ok(null) = std::fs::File::open("/dev/null") {
        let _ = rustix::stdio::dup2_stdin(&null);
    }
}
