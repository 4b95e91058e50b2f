//! The full-screen terminal: raw mode, the alternate screen and a hidden cursor while a
//! [`TerminalGuard`] lives, and the terminal as it was on every way out:
//!
//! - a normal return drops the guard, which restores;
//! - a panic first runs the hook installed by [`TerminalGuard::enter`], which restores
//!   *before* the previous hook prints the panic message (so the message lands on the normal
//!   screen, readable, and the shell is not left in raw mode), then unwinding drops the guard
//!   (restoring twice is harmless: [`restore`] does its work only once per `enter`);
//! - SIGTERM, SIGHUP and SIGINT are caught by the monitor's driver, which returns normally.

use std::io::{self, Stdout, Write};
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};

use crossterm::cursor::{Hide, Show};
use crossterm::execute;
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;

/// Whether the terminal is in our full-screen mode (and needs restoring).
static ACTIVE: AtomicBool = AtomicBool::new(false);

static PANIC_HOOK: Once = Once::new();

/// Leaves raw mode and the alternate screen and shows the cursor, if [`TerminalGuard::enter`]
/// set them up and nobody restored them since. Safe to call from a panic hook.
pub fn restore() {
    if ACTIVE.swap(false, Ordering::SeqCst) {
        // Raw mode first: if the rest fails, at least the shell gets its line discipline back.
        let _ = disable_raw_mode();
        let mut out = io::stdout();
        let _ = execute!(out, LeaveAlternateScreen, Show);
        let _ = out.flush();
    }
}

/// Installs (once per process) a panic hook that restores the terminal, then runs the hook
/// that was there before (which prints the message).
fn install_panic_hook() {
    PANIC_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
    });
}

/// The terminal in full-screen mode; dropping it restores the terminal.
pub struct TerminalGuard {
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl TerminalGuard {
    /// Installs the panic hook, enters raw mode and the alternate screen, hides the cursor.
    pub fn enter() -> io::Result<TerminalGuard> {
        install_panic_hook();
        enable_raw_mode()?;
        ACTIVE.store(true, Ordering::SeqCst);
        let setup = (|| {
            execute!(io::stdout(), EnterAlternateScreen, Hide)?;
            let mut terminal = Terminal::new(CrosstermBackend::new(io::stdout()))?;
            terminal.clear()?;
            Ok(terminal)
        })();
        match setup {
            Ok(terminal) => Ok(TerminalGuard { terminal }),
            Err(e) => {
                restore();
                Err(e)
            }
        }
    }

    /// Draws a frame: `render` fills the buffer of the whole screen.
    pub fn draw(&mut self, render: impl FnOnce(Rect, &mut Buffer)) -> io::Result<()> {
        self.terminal.draw(|frame| {
            let area = frame.area();
            render(area, frame.buffer_mut());
        })?;
        Ok(())
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore();
    }
}
