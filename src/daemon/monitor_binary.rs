//! Which binary the per-container processes (monitor, pod init, exec helper) run from:
//! `carrack-monitor` beside the daemon's own binary, a small build of just the monitor and
//! the executor (every running container maps it, so its size is paid per pod); the daemon's
//! own binary, which takes the same sub-commands, when that one is not installed.

use std::path::{Path, PathBuf};

use super::DaemonError;

/// The small binary's file name, looked for in the daemon binary's directory.
pub const MONITOR_BINARY_NAME: &str = "carrack-monitor";

/// Resolves the binary once at start, so an upgrade that replaces the files on disk starts
/// new monitors from the new binary while the running ones go on.
pub(super) fn resolve() -> Result<PathBuf, DaemonError> {
    let own = std::env::current_exe().map_err(|source| DaemonError::Io {
        action: "resolve own binary",
        path: PathBuf::from("/proc/self/exe"),
        source,
    })?;
    let chosen = choose(&own, |path| path.is_file());
    if chosen == own {
        tracing::warn!(
            binary = %own.display(),
            "no {MONITOR_BINARY_NAME} beside the daemon: containers are monitored by the daemon's \
             own, larger binary"
        );
    } else {
        tracing::info!(binary = %chosen.display(), "container monitors run from this binary");
    }
    Ok(chosen)
}

/// `carrack-monitor` in `own`'s directory if `exists` says it is there, else `own`.
fn choose(own: &Path, exists: impl Fn(&Path) -> bool) -> PathBuf {
    own.parent()
        .map(|dir| dir.join(MONITOR_BINARY_NAME))
        .filter(|small| exists(small))
        .unwrap_or_else(|| own.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefers_the_small_binary_beside_the_daemon() {
        let own = Path::new("/usr/local/bin/carrack");
        assert_eq!(
            choose(own, |path| path
                == Path::new("/usr/local/bin/carrack-monitor")),
            PathBuf::from("/usr/local/bin/carrack-monitor")
        );
    }

    #[test]
    fn falls_back_to_the_daemon_binary() {
        let own = Path::new("/usr/local/bin/carrack");
        assert_eq!(choose(own, |_| false), own);
    }
}
