//! `eqlplus-dialer monitor`: the xeqlinfo successor, a full-screen view of the daemon's lines.
//!
//! [`MonitorState`] is the whole screen as a model: it is fed status reports
//! ([`MonitorState::on_report`]), connection losses ([`MonitorState::on_disconnected`]), key
//! presses ([`MonitorState::handle_key`], which answers with an [`Effect`]: nothing, quit, or
//! a request to send) and the daemon's answers ([`MonitorState::on_answer`]), and renders
//! into a ratatui [`Buffer`] ([`MonitorState::render`]). It does no I/O, so it is tested with
//! ratatui's `TestBackend`.
//!
//! [`run`] is the thin driver around it: it subscribes to the daemon's reports over the
//! control socket, reads the keyboard, sends the requests, and owns the terminal (raw mode and
//! the alternate screen, restored on every way out: see [`super::terminal`]). When the daemon
//! goes away the monitor keeps the last report on screen, says "daemon not running" in the
//! header and tries to subscribe again every second (or every `--interval` if longer), so it
//! can be left open across daemon restarts.
//!
//! Layout, from the top: a header (policy, lines up, total rates, the report's time), the
//! column titles, two rows per line (name, state, addresses, CONNECT speed, redials, last
//! error; then a bar of the line's share of the traffic, rx `█` and tx `▓`, and rx/tx rate
//! sparklines of the last [`HISTORY`] reports), the total (a bar of the lines' total rate
//! against their summed CONNECT speeds, and total sparklines), and a status bar (the daemon's
//! answer to the last command, and the keys). Narrower than [`NARROW_WIDTH`] columns the
//! sparklines and addresses go; lower than [`COMPACT_HEIGHT`] rows each line gets a single
//! row and the titles and total rows go. Lines that do not fit scroll with the selection.
//!
//! The parts: [`state`] (the model and its keys), [`view`] (the drawing), [`driver`] (the
//! terminal and the daemon).

pub mod driver;
pub mod state;
pub mod view;

pub use driver::{Exit, retry_delay, run};
pub use state::{Action, Connection, Effect, HISTORY, MessageKind, MonitorState, StatusMessage};
pub use view::{COMPACT_HEIGHT, NARROW_WIDTH};

#[cfg(test)]
mod tests;
