//! Human-readable numbers and tables for the CLI's views (`status`, `watch`) and the monitor:
//! durations like `3m12s`, byte counts and rates in binary units, aligned text tables with
//! optional colour, and the colours of line states ([`state_paint`]: one table for the ANSI
//! styles and the monitor's ratatui colours).

use std::io::IsTerminal;

use ratatui::style::Color;

use crate::control::LineState;

/// A duration to the second, two units at most: `0s`, `59s`, `3m12s`, `2h05m`, `3d04h`.
/// Negative durations (clock steps) show as `0s`.
pub fn duration(seconds: f64) -> String {
    let s = if seconds.is_finite() && seconds > 0.0 {
        seconds as u64
    } else {
        0
    };
    let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    if d > 0 {
        format!("{d}d{h:02}h")
    } else if h > 0 {
        format!("{h}h{m:02}m")
    } else if m > 0 {
        format!("{m}m{s:02}s")
    } else {
        format!("{s}s")
    }
}

/// A byte count in binary units: `0 B`, `1023 B`, `1.0 KiB`, `12.3 MiB`, `1.5 GiB`.
pub fn bytes(n: f64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let n = if n.is_finite() && n > 0.0 { n } else { 0.0 };
    if n < 1024.0 {
        return format!("{} B", n.round() as u64);
    }
    let mut value = n / 1024.0;
    let mut unit = 0;
    // Round first, so 1023.96 KiB becomes 1.0 MiB rather than 1024.0 KiB.
    while (value * 10.0).round() / 10.0 >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A rate in bytes per second: `0 B/s`, `5.3 KiB/s`.
pub fn rate(bytes_per_second: f64) -> String {
    format!("{}/s", bytes(bytes_per_second))
}

/// A share 0.0-1.0 as a whole percentage: `62%`.
pub fn percent(share: f64) -> String {
    let p = if share.is_finite() {
        (share * 100.0).clamp(0.0, 100.0)
    } else {
        0.0
    };
    format!("{}%", p.round() as u64)
}

/// Local wall-clock time of a Unix timestamp: `12:34:56`.
pub fn clock(unix_seconds: f64) -> String {
    let t = if unix_seconds.is_finite() {
        unix_seconds as libc::time_t
    } else {
        0
    };
    // Neither std nor nix has localtime: libc's is used directly.
    // SAFETY: `tm` is integers and one pointer (tm_zone), for which all zeroes (null) is a
    // valid value.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: localtime_r reads `t` and writes only into `tm`, both valid for the call; what
    // tm_zone comes to point at is static storage, never freed.
    if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
        return "??:??:??".into();
    }
    format!("{:02}:{:02}:{:02}", tm.tm_hour, tm.tm_min, tm.tm_sec)
}

/// ANSI styles for table cells (used only when colour is on).
pub mod style {
    pub const GREEN: &str = "\x1b[32m";
    pub const YELLOW: &str = "\x1b[33m";
    pub const RED: &str = "\x1b[31m";
    pub const DIM: &str = "\x1b[2m";
    pub const BOLD: &str = "\x1b[1m";
    pub const RESET: &str = "\x1b[0m";
}

/// How a line state is painted: the same colour as an ANSI style (tables, `watch`) and as a
/// ratatui colour (the monitor).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paint {
    pub ansi: &'static str,
    pub colour: Color,
}

/// The colour of a line state: green up, red failed or up without the Internet, dim held
/// down or disabled, yellow for everything in between (degraded among them).
pub fn state_paint(state: &LineState) -> Paint {
    let (ansi, colour) = match state {
        LineState::Up => (style::GREEN, Color::Green),
        LineState::Failed | LineState::NoInternet => (style::RED, Color::Red),
        LineState::Down | LineState::Disabled => (style::DIM, Color::DarkGray),
        _ => (style::YELLOW, Color::Yellow),
    };
    Paint { ansi, colour }
}

/// The ANSI style of a line state ([`state_paint`]).
pub fn state_style(state: &LineState) -> &'static str {
    state_paint(state).ansi
}

/// The ratatui colour of a line state ([`state_paint`]).
pub fn state_colour(state: &LineState) -> Color {
    state_paint(state).colour
}

/// Whether to colour stdout: a terminal, and no `NO_COLOR`.
pub fn colour_stdout() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// `text` in an ANSI `style` (then reset), or as it is without one.
pub fn paint(text: &str, style: Option<&str>) -> String {
    match style {
        Some(s) => format!("{s}{text}{}", style::RESET),
        None => text.to_string(),
    }
}

/// One table cell: text and an optional style.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    pub text: String,
    pub style: Option<&'static str>,
}

impl From<String> for Cell {
    fn from(text: String) -> Cell {
        Cell { text, style: None }
    }
}

impl From<&str> for Cell {
    fn from(text: &str) -> Cell {
        Cell::from(text.to_string())
    }
}

impl Cell {
    pub fn styled(text: impl Into<String>, style: &'static str) -> Cell {
        Cell {
            text: text.into(),
            style: Some(style),
        }
    }
}

/// A text table: columns two spaces apart, numbers right-aligned, no trailing spaces.
#[derive(Debug, Clone, Default)]
pub struct Table {
    header: Vec<&'static str>,
    right: Vec<bool>,
    rows: Vec<Vec<Cell>>,
}

impl Table {
    /// Columns as (title, right-aligned).
    pub fn new(columns: &[(&'static str, bool)]) -> Table {
        Table {
            header: columns.iter().map(|(t, _)| *t).collect(),
            right: columns.iter().map(|(_, r)| *r).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<Cell>) {
        debug_assert_eq!(cells.len(), self.header.len());
        self.rows.push(cells);
    }

    /// The table as text, one `\n`-terminated line per row, the header first.
    pub fn render(&self, colour: bool) -> String {
        let width = |s: &str| s.chars().count();
        let mut widths: Vec<usize> = self.header.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(width(&cell.text));
            }
        }
        let header: Vec<Cell> = self
            .header
            .iter()
            .map(|h| Cell {
                text: h.to_string(),
                style: Some(style::BOLD),
            })
            .collect();
        let mut out = String::new();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                let pad = " ".repeat(widths[i] - width(&cell.text));
                let last = i + 1 == row.len();
                if self.right[i] {
                    line.push_str(&pad);
                }
                line.push_str(&paint(&cell.text, cell.style.filter(|_| colour)));
                if !self.right[i] && !last {
                    line.push_str(&pad);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration(0.0), "0s");
        assert_eq!(duration(-5.0), "0s");
        assert_eq!(duration(f64::NAN), "0s");
        assert_eq!(duration(59.9), "59s");
        assert_eq!(duration(60.0), "1m00s");
        assert_eq!(duration(192.0), "3m12s");
        assert_eq!(duration(3600.0 * 2.0 + 5.0 * 60.0 + 7.0), "2h05m");
        assert_eq!(duration(86_400.0 * 3.0 + 4.0 * 3600.0 + 59.0), "3d04h");
    }

    #[test]
    fn byte_counts() {
        assert_eq!(bytes(0.0), "0 B");
        assert_eq!(bytes(-1.0), "0 B");
        assert_eq!(bytes(1023.0), "1023 B");
        assert_eq!(bytes(1024.0), "1.0 KiB");
        assert_eq!(bytes(1536.0), "1.5 KiB");
        assert_eq!(bytes(12.3 * 1024.0 * 1024.0), "12.3 MiB");
        assert_eq!(bytes(1024.0 * 1024.0 - 1.0), "1.0 MiB");
        assert_eq!(bytes(1.5 * 1024.0 * 1024.0 * 1024.0), "1.5 GiB");
        assert_eq!(bytes(u64::MAX as f64), "16.0 EiB");
        assert_eq!(rate(5427.0), "5.3 KiB/s");
        assert_eq!(percent(0.624), "62%");
        assert_eq!(percent(1.7), "100%");
        assert_eq!(percent(f64::NAN), "0%");
    }

    #[test]
    fn table_alignment() {
        let mut t = Table::new(&[("LINE", false), ("RX", true), ("LAST ERROR", false)]);
        t.row(vec!["ttyS0".into(), "5.3 KiB".into(), "-".into()]);
        t.row(vec![
            Cell::styled("ttyUSB0", style::RED),
            "0 B".into(),
            "dial-chat: BUSY".into(),
        ]);
        assert_eq!(
            t.render(false),
            "LINE          RX  LAST ERROR\n\
             ttyS0    5.3 KiB  -\n\
             ttyUSB0      0 B  dial-chat: BUSY\n"
        );
        let coloured = t.render(true);
        assert!(
            coloured.contains("\x1b[31mttyUSB0\x1b[0m  "),
            "{coloured:?}"
        );
        assert!(coloured.starts_with("\x1b[1mLINE\x1b[0m"), "{coloured:?}");
    }

    #[test]
    fn state_colours_agree() {
        for (state, ansi, colour) in [
            ("up", style::GREEN, Color::Green),
            ("failed", style::RED, Color::Red),
            ("down", style::DIM, Color::DarkGray),
            ("disabled", style::DIM, Color::DarkGray),
            ("dial-chat", style::YELLOW, Color::Yellow),
        ] {
            let state = LineState::from(state);
            assert_eq!(state_style(&state), ansi, "{state}");
            assert_eq!(state_colour(&state), colour, "{state}");
        }
    }

    #[test]
    fn clock_format() {
        let c = clock(0.0);
        assert_eq!(c.len(), 8);
        assert_eq!(&c[2..3], ":");
        assert_eq!(&c[5..6], ":");
    }
}
