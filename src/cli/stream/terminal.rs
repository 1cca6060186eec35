//! The local terminal during an interactive session: raw mode (keys go to the container as
//! typed, Ctrl-C included) restored when the guard drops, and the window size to report.

use std::os::fd::AsFd;

use rustix::termios::{self, OptionalActions, Termios};

/// Puts stdin's terminal in raw mode until dropped.
#[derive(Debug)]
pub struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// Enters raw mode; `None` if stdin is not a terminal.
    pub fn enter() -> Option<Self> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        raw.make_raw();
        termios::tcsetattr(stdin.as_fd(), OptionalActions::Now, &raw).ok()?;
        Some(Self { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), OptionalActions::Now, &self.saved);
    }
}

/// The terminal's (columns, rows), if stdout is one.
pub fn size() -> Option<(u16, u16)> {
    let size = termios::tcgetwinsize(std::io::stdout().as_fd()).ok()?;
    Some((size.ws_col, size.ws_row))
}
