//! The log filter, changeable while the daemon runs: SIGUSR1 makes the log one level more
//! verbose, SIGUSR2 one level quieter, and SIGHUP applies the config file's `[log] level`.

use std::sync::Mutex;

use tracing_subscriber::{EnvFilter, Registry, reload};

use crate::config::LogConfig;

/// The levels stepped through by [`LogLevel::raise`] and [`LogLevel::lower`], quietest first.
const LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

/// The filter the daemon's log lines pass, with its reload handle.
#[derive(Debug)]
pub struct LogLevel {
    handle: reload::Handle<EnvFilter, Registry>,
    /// Index into [`LEVELS`] of the level in force (a directive list counts as its base).
    current: Mutex<usize>,
}

/// The starting filter: `RUST_LOG` when set and valid (an operator raising verbosity for one
/// run without editing the file), else the configured level.
pub(super) fn initial_filter(config: &LogConfig) -> (EnvFilter, String) {
    if let Ok(env) = std::env::var("RUST_LOG")
        && let Ok(filter) = EnvFilter::try_new(&env)
    {
        return (filter, env);
    }
    match EnvFilter::try_new(&config.level) {
        Ok(filter) => (filter, config.level.clone()),
        Err(_) => (EnvFilter::new("info"), "info".to_owned()),
    }
}

impl LogLevel {
    pub(super) fn new(handle: reload::Handle<EnvFilter, Registry>, filter: &str) -> Self {
        Self {
            handle,
            current: Mutex::new(base_level(filter)),
        }
    }

    /// One level more verbose (`info` → `debug` → `trace`); returns the new level.
    pub fn raise(&self) -> &'static str {
        self.step(|index| (index + 1).min(LEVELS.len() - 1))
    }

    /// One level quieter (`info` → `warn` → `error`); returns the new level.
    pub fn lower(&self) -> &'static str {
        self.step(|index| index.saturating_sub(1))
    }

    /// Replaces the filter with `filter` (a level or directives, as in `[log] level`); the
    /// steps of [`Self::raise`]/[`Self::lower`] go on from its base level. A filter that does
    /// not parse changes nothing.
    pub fn set(&self, filter: &str) -> Result<(), tracing_subscriber::filter::ParseError> {
        let parsed = EnvFilter::try_new(filter)?;
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        *current = base_level(filter);
        // Fails only when the subscriber is gone (process exit); nothing to log to then.
        let _ = self.handle.reload(parsed);
        Ok(())
    }

    fn step(&self, next: impl Fn(usize) -> usize) -> &'static str {
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        *current = next(*current);
        let level = LEVELS[*current];
        // Fails only when the subscriber is gone (process exit); nothing to log to then.
        let _ = self.handle.reload(EnvFilter::new(level));
        level
    }
}

/// The level a filter starts from: a plain level as such, a directive list
/// (`carrack=debug,h2=warn`) from its most verbose directive, anything else from `info`.
fn base_level(filter: &str) -> usize {
    filter
        .split(',')
        .filter_map(|directive| {
            let level = directive.rsplit('=').next()?.trim().to_ascii_lowercase();
            LEVELS.iter().position(|known| *known == level)
        })
        .max()
        .unwrap_or(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_level_of_plain_levels_and_directives() {
        assert_eq!(LEVELS[base_level("warn")], "warn");
        assert_eq!(LEVELS[base_level("carrack=debug,h2=warn")], "debug");
        assert_eq!(LEVELS[base_level("bogus")], "info");
    }

    #[test]
    fn raise_and_lower_step_and_saturate() {
        let (_layer, handle) = reload::Layer::new(EnvFilter::new("info"));
        let level = LogLevel::new(handle, "info");
        assert_eq!(level.raise(), "debug");
        assert_eq!(level.raise(), "trace");
        assert_eq!(level.raise(), "trace");
        assert_eq!(level.lower(), "debug");
        for _ in 0..5 {
            level.lower();
        }
        assert_eq!(level.lower(), "error");
    }

    #[test]
    fn set_replaces_the_filter_and_rebases_the_steps() {
        let (_layer, handle) = reload::Layer::new(EnvFilter::new("info"));
        let level = LogLevel::new(handle, "info");
        level.set("carrack=warn,h2=error").unwrap();
        assert_eq!(level.raise(), "info");
        assert!(level.set("carrack=loud[").is_err());
        assert_eq!(level.lower(), "warn");
    }
}
