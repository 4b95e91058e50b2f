//! Presentation: the human formatting of numbers, tables and state colours ([`format`]), the
//! status report as text for `status` and `watch` ([`status_view`]), and the full-screen
//! terminal interfaces: the `monitor` ([`monitor`]) and the terminal handling it shares with
//! any later one ([`terminal`]). Nothing here parses arguments or imports `cmd`.

#[cfg(test)]
mod fixtures;
pub mod format;
pub mod monitor;
pub mod progress;
pub mod status_view;
pub mod terminal;
