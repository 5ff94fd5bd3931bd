//! Entering and leaving the terminal: raw mode and the alternate screen,
//! restored on every exit path (guard drop, panic hook, signals).

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crossterm::cursor::{Hide, Show};
use crossterm::execute;
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};

static LOG_FILE: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Restores the terminal when dropped.
pub struct TerminalGuard {
    _private: (),
}

impl TerminalGuard {
    pub fn enter() -> io::Result<TerminalGuard> {
        enable_raw_mode()?;
        let guard = TerminalGuard { _private: () };
        execute!(io::stdout(), EnterAlternateScreen, Hide)?;
        Ok(guard)
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore();
    }
}

/// Leaves raw mode and the alternate screen. Safe to call more than once.
pub fn restore() {
    let _ = disable_raw_mode();
    let _ = execute!(io::stdout(), LeaveAlternateScreen, Show);
    let _ = io::stdout().flush();
}

/// A panic hook that restores the terminal, writes the panic to the log
/// file, and wakes the console loop so that it ends (a panic in a spawned
/// task must not leave a hung, raw terminal).
pub fn install_panic_hook(log: &Path) {
    if let Ok(mut l) = LOG_FILE.lock() {
        *l = Some(log.to_path_buf());
    }
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore();
        let bt = std::backtrace::Backtrace::force_capture();
        let text = format!("{} PANIC {info}\n{bt}\n", chrono::Utc::now().to_rfc3339());
        let path = LOG_FILE.lock().ok().and_then(|l| l.clone());
        let logged = path.as_ref().is_some_and(|p| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .and_then(|mut f| f.write_all(text.as_bytes()))
                .is_ok()
        });
        if !logged {
            previous(info);
        }
        super::runtime::PANICKED.notify_one();
    }));
}
