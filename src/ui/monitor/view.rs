//! The monitor's screen: [`MonitorState::render`] draws the model into a ratatui [`Buffer`].

use std::collections::HashMap;

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, RenderDirection, Sparkline, Widget};

use super::state::{
    Connection, HISTORY, History, MessageKind, MonitorState, clean, counts_in_total,
};
use crate::control::{LineState, LineStatus};
use crate::ui::format;
use crate::ui::status_view::{or_dash, rtt_text, signal_bars, state_text};

/// Below this many columns the sparklines and addresses are dropped.
pub const NARROW_WIDTH: u16 = 60;

/// Below this many rows each line gets one row, without titles or total rows.
pub const COMPACT_HEIGHT: u16 = 10;

/// The keys, for the status bar.
const KEYS_HELP: &str = "↑↓ select  h hang up  u up  q quit";

impl MonitorState {
    /// Draws the whole screen into `area` of `buf`.
    pub fn render(&mut self, area: Rect, buf: &mut Buffer) {
        Clear.render(area, buf);
        if area.is_empty() {
            return;
        }
        let compact = area.height < COMPACT_HEIGHT;
        let narrow = area.width < NARROW_WIDTH;
        let row = |y: u16| Rect::new(area.x, area.y + y, area.width, 1);
        self.render_header(row(0), buf);
        if area.height == 1 {
            return;
        }
        let status_y = area.height - 1;
        self.render_status_bar(row(status_y), buf);
        // Rows between the header and the status bar.
        let (mut top, mut bottom) = (1u16, status_y);
        let show_titles = !compact;
        let show_total = !compact && self.report.is_some();
        if show_titles && bottom > top {
            top += 1;
        }
        if show_total && bottom >= top + 2 {
            bottom -= 2;
        }
        let body = Rect::new(area.x, area.y + top, area.width, bottom.saturating_sub(top));
        let columns = Columns::new(self.lines(), self.report_time(), narrow);
        let per_line: u16 = if compact { 1 } else { 2 };
        self.scroll(usize::from(body.height / per_line));
        if show_titles && top > 1 {
            self.render_titles(row(1), &columns, usize::from(body.height / per_line), buf);
        }
        self.render_lines(body, &columns, per_line, narrow, buf);
        if show_total && status_y >= 3 + 2 {
            self.render_total(
                Rect::new(area.x, area.y + status_y - 2, area.width, 2),
                narrow,
                buf,
            );
        }
        if let Some((action, line)) = &self.confirm {
            render_popup(area, &action.question(line), buf);
        }
    }

    fn render_header(&self, area: Rect, buf: &mut Buffer) {
        let base = Style::new().add_modifier(Modifier::REVERSED);
        let mut spans = vec![Span::styled(" eqlplus-dialer monitor", base.bold())];
        match (&self.connection, &self.report) {
            (Connection::Lost(why), _) => {
                spans.push(Span::styled(
                    format!("  daemon not running, retrying: {why}"),
                    base.fg(Color::Red).bold(),
                ));
            }
            (Connection::Connecting, None) => {
                spans.push(Span::styled("  connecting…", base));
            }
            (_, Some(r)) => {
                let up = r.lines.iter().filter(|l| l.state == LineState::Up).count();
                let rx: f64 = r.lines.iter().map(|l| clean(l.rx_rate)).sum();
                let tx: f64 = r.lines.iter().map(|l| clean(l.tx_rate)).sum();
                let policy = or_dash(r.policy.as_str());
                spans.push(Span::styled(
                    format!(
                        "  policy {policy}  {up}/{} up  rx {}  tx {}",
                        r.lines.len(),
                        format::rate(rx),
                        format::rate(tx)
                    ),
                    base,
                ));
            }
            (Connection::Connected, None) => {}
        }
        let clock = self
            .report
            .as_ref()
            .map(|r| format!("{} ", format::clock(r.time)))
            .unwrap_or_default();
        fill_row(area, spans, &clock, base, buf);
    }

    fn render_titles(&self, area: Rect, columns: &Columns, rows: usize, buf: &mut Buffer) {
        let mut text = format!(
            "  {}  {}",
            pad("LINE", columns.name),
            pad("STATE", columns.state)
        );
        if columns.addresses > 0 {
            text.push_str(&format!("  {}", pad("LOCAL → PEER", columns.addresses)));
        }
        text.push_str(&format!(
            "  {:>6}  {:>6}  {:>7}  LAST ERROR",
            "SPEED", "RTT", "REDIALS"
        ));
        let count = self.lines().len();
        let end = (self.offset + rows).min(count);
        let scroll = if self.offset > 0 || end < count {
            format!("lines {}-{end} of {count} ", self.offset + 1)
        } else {
            String::new()
        };
        let bold = Style::new().add_modifier(Modifier::BOLD);
        fill_row(area, vec![Span::styled(text, bold)], &scroll, bold, buf);
    }

    fn render_lines(
        &mut self,
        body: Rect,
        columns: &Columns,
        per_line: u16,
        narrow: bool,
        buf: &mut Buffer,
    ) {
        if body.height == 0 {
            return;
        }
        let Some(report) = &self.report else {
            let text = format!("connecting to {}…", self.socket.display());
            Paragraph::new(text).render(body, buf);
            return;
        };
        if report.lines.is_empty() {
            Paragraph::new("no lines configured").render(body, buf);
            return;
        }
        let compact = per_line == 1;
        let rows = usize::from((body.height / per_line).max(1));
        let scale = Scale::of(&self.history);
        for (i, line) in report.lines.iter().enumerate().skip(self.offset).take(rows) {
            let y = body.y + (i - self.offset) as u16 * per_line;
            if y >= body.bottom() {
                break;
            }
            let selected = i == self.selected;
            let history = self.history.get(&line.name);
            let first = Rect::new(body.x, y, body.width, 1);
            if compact {
                render_compact_row(first, line, columns, selected, narrow, report.time, buf);
            } else {
                render_line_row(first, line, columns, selected, report.time, buf);
                if y + 1 < body.bottom() {
                    let second = Rect::new(body.x, y + 1, body.width, 1);
                    let bar = share_bar(line);
                    let rates = (clean(line.rx_rate), clean(line.tx_rate));
                    render_traffic_row(second, &bar, rates, history, scale, narrow, selected, buf);
                }
            }
        }
    }

    fn render_total(&self, area: Rect, narrow: bool, buf: &mut Buffer) {
        let lines: Vec<&LineStatus> = self.lines().iter().filter(|l| counts_in_total(l)).collect();
        let rx: f64 = lines.iter().map(|l| clean(l.rx_rate)).sum();
        let tx: f64 = lines.iter().map(|l| clean(l.tx_rate)).sum();
        // Capacity: the CONNECT speeds of the lines that are up, in bytes per second.
        let capacity: f64 = lines
            .iter()
            .filter(|l| l.state == LineState::Up)
            .filter_map(|l| l.connect_speed)
            .map(|s| f64::from(s) / 8.0)
            .sum();
        let bold = Style::new().add_modifier(Modifier::BOLD);
        let head = if capacity > 0.0 {
            format!(
                "  TOTAL  {} of {} CONNECT speed in use",
                format::rate(rx + tx),
                format::rate(capacity)
            )
        } else {
            format!("  TOTAL  {}", format::rate(rx + tx))
        };
        fill_row(
            Rect::new(area.x, area.y, area.width, 1),
            vec![Span::styled(head, bold)],
            "",
            Style::new(),
            buf,
        );
        let bar = if capacity > 0.0 {
            Bar {
                rx: rx / capacity,
                tx: tx / capacity,
            }
        } else {
            Bar { rx: 0.0, tx: 0.0 }
        };
        let scale = Scale::of_one(&self.total);
        render_traffic_row(
            Rect::new(area.x, area.y + 1, area.width, 1),
            &bar,
            (rx, tx),
            Some(&self.total),
            scale,
            narrow,
            false,
            buf,
        );
    }

    fn render_status_bar(&self, area: Rect, buf: &mut Buffer) {
        let base = Style::new().add_modifier(Modifier::REVERSED);
        let spans = match &self.message {
            Some(m) => {
                let colour = match m.kind {
                    MessageKind::Info => base,
                    MessageKind::Ok => base.fg(Color::Green),
                    MessageKind::Error => base.fg(Color::Red),
                };
                vec![Span::styled(format!(" {}", m.text), colour)]
            }
            None => vec![Span::styled(" ", base)],
        };
        let used: usize = spans.iter().map(Span::width).sum();
        let help = if used + KEYS_HELP.chars().count() + 3 <= usize::from(area.width) {
            format!("{KEYS_HELP} ")
        } else {
            String::new()
        };
        fill_row(area, spans, &help, base, buf);
    }
}

/// Fills one row with `style`, then `spans` from the left and `right` at the right end (when
/// there is room for it).
fn fill_row(area: Rect, spans: Vec<Span<'_>>, right: &str, style: Style, buf: &mut Buffer) {
    buf.set_style(area, style);
    let left: usize = spans.iter().map(Span::width).sum();
    Paragraph::new(Line::from(spans)).render(area, buf);
    let right_width = right.chars().count();
    if !right.is_empty() && left + right_width < usize::from(area.width) {
        let x = area.right() - right_width as u16;
        buf.set_string(x, area.y, right, style);
    }
}

/// `text` cut or padded to `width` characters.
fn pad(text: &str, width: usize) -> String {
    let mut s: String = text.chars().take(width).collect();
    let n = s.chars().count();
    s.extend(std::iter::repeat_n(' ', width - n));
    s
}

/// The ratatui style of a line state: [`format::state_colour`], the colour `status` and
/// `watch` use.
pub(super) fn state_style(state: &LineState) -> Style {
    Style::new().fg(format::state_colour(state))
}

/// Column widths of the line rows, from the lines' contents.
#[derive(Debug, Clone, Copy)]
struct Columns {
    name: usize,
    state: usize,
    /// The width of the states without the holdoff countdown.
    bare_state: usize,
    /// 0: no address column.
    addresses: usize,
}

impl Columns {
    fn new(lines: &[LineStatus], now: f64, narrow: bool) -> Columns {
        let width = |f: &dyn Fn(&LineStatus) -> String| {
            lines
                .iter()
                .map(|l| f(l).chars().count())
                .max()
                .unwrap_or(0)
        };
        Columns {
            name: width(&|l| l.name.clone()).clamp(4, 16),
            state: width(&|l| state_text(l, now)).clamp(5, 20),
            bare_state: width(&|l| l.state.to_string()).clamp(5, 20),
            addresses: if narrow {
                0
            } else {
                width(&addresses).max("LOCAL → PEER".chars().count())
            },
        }
    }
}

fn addresses(l: &LineStatus) -> String {
    match (l.local, l.peer) {
        (None, None) => "-".into(),
        (local, peer) => format!(
            "{} → {}",
            local.map_or_else(|| "-".into(), |a| a.to_string()),
            peer.map_or_else(|| "-".into(), |a| a.to_string())
        ),
    }
}

fn speed(l: &LineStatus) -> String {
    l.connect_speed
        .map_or_else(|| "-".into(), |s| s.to_string())
}

fn marker(selected: bool) -> &'static str {
    if selected { "▶ " } else { "  " }
}

fn selected_style(selected: bool) -> Style {
    if selected {
        Style::new().bg(Color::Indexed(236))
    } else {
        Style::new()
    }
}

/// A cellular line's network and signal: `SimNet LTE ▂▄__ -96dBm`.
fn cellular_summary(c: &crate::cellular::CellStatus) -> String {
    let mut parts = Vec::new();
    match (c.network(), c.registration) {
        (Some(network), _) => parts.push(network),
        (None, Some(r)) => parts.push(r.as_str().to_string()),
        (None, None) => {}
    }
    if let Some(s) = c.signal {
        parts.push(format!("{} {}dBm", signal_bars(s.bars), s.dbm));
    }
    if let Some(sim) = c
        .sim
        .as_ref()
        .filter(|s| **s != crate::cellular::SimState::Ready)
    {
        parts.push(format!("SIM {sim}"));
    }
    parts.join(" ")
}

/// A Multilink bundle's members (`bundle of ttyS1, ttyS2`), or the bundle a member line is
/// in (`in bundle isp`).
fn bundle_summary(l: &LineStatus) -> Option<String> {
    match (&l.members, &l.bundle) {
        (Some(m), _) if m.is_empty() => Some("bundle, no member up".into()),
        (Some(m), _) => Some(format!("bundle of {}", m.join(", "))),
        (None, Some(b)) => Some(format!("in bundle {b}")),
        (None, None) => None,
    }
}

/// The first row of a line: name, state, addresses, speed, redials, cellular network and
/// signal, bundle, last error.
fn render_line_row(
    area: Rect,
    l: &LineStatus,
    columns: &Columns,
    selected: bool,
    now: f64,
    buf: &mut Buffer,
) {
    let name_style = if selected {
        Style::new().add_modifier(Modifier::BOLD)
    } else {
        Style::new()
    };
    let mut spans = vec![
        Span::raw(marker(selected)),
        Span::styled(pad(&l.name, columns.name), name_style),
        Span::raw("  "),
        Span::styled(
            pad(&state_text(l, now), columns.state),
            state_style(&l.state),
        ),
    ];
    if columns.addresses > 0 {
        spans.push(Span::raw(format!(
            "  {}",
            pad(&addresses(l), columns.addresses)
        )));
    }
    spans.push(Span::raw(format!(
        "  {:>6}  {:>6}  {:>7}  ",
        speed(l),
        rtt_text(l),
        l.redials
    )));
    if let Some(cell) = &l.cellular {
        spans.push(Span::styled(
            format!("{}  ", cellular_summary(cell)),
            Style::new().fg(Color::Cyan),
        ));
    }
    if let Some(bundle) = bundle_summary(l) {
        spans.push(Span::styled(
            format!("{bundle}  "),
            Style::new().fg(Color::Cyan),
        ));
    }
    spans.push(Span::styled(
        l.last_error.clone().unwrap_or_else(|| "-".into()),
        if l.last_error.is_some() {
            Style::new().fg(Color::Red)
        } else {
            Style::new()
        },
    ));
    fill_row(area, spans, "", selected_style(selected), buf);
}

/// A line on one row (compact layout): name, state, share bar, rates.
fn render_compact_row(
    area: Rect,
    l: &LineStatus,
    columns: &Columns,
    selected: bool,
    narrow: bool,
    now: f64,
    buf: &mut Buffer,
) {
    let bar_width = if narrow {
        8
    } else {
        usize::from(area.width / 4).clamp(8, 30)
    };
    // Narrow: the bare state, without the holdoff countdown.
    let (state, state_width) = if narrow {
        (l.state.to_string(), columns.bare_state)
    } else {
        (state_text(l, now), columns.state)
    };
    let mut spans = vec![
        Span::raw(marker(selected)),
        Span::raw(pad(&l.name, columns.name)),
        Span::raw(" "),
        Span::styled(pad(&state, state_width), state_style(&l.state)),
        Span::raw(" "),
    ];
    spans.extend(share_bar(l).spans(bar_width));
    spans.push(Span::raw(format!(
        " {:>4}  rx {}  tx {}",
        format::percent(clean(l.share)),
        format::rate(clean(l.rx_rate)),
        format::rate(clean(l.tx_rate))
    )));
    if let Some(error) = &l.last_error {
        spans.push(Span::styled(
            format!("  {error}"),
            Style::new().fg(Color::Red),
        ));
    }
    fill_row(area, spans, "", selected_style(selected), buf);
}

/// Fractions of a bar filled with rx and with tx traffic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Bar {
    pub(super) rx: f64,
    pub(super) tx: f64,
}

/// A line's share of all the lines' traffic, split into its rx and tx parts.
pub(super) fn share_bar(l: &LineStatus) -> Bar {
    let (rx, tx) = (clean(l.rx_rate), clean(l.tx_rate));
    let share = clean(l.share).min(1.0);
    let both = rx + tx;
    if both > 0.0 && both.is_finite() {
        Bar {
            rx: share * rx / both,
            tx: share * tx / both,
        }
    } else {
        Bar { rx: share, tx: 0.0 }
    }
}

impl Bar {
    /// The filled fraction, 0.0-1.0.
    fn fraction(&self) -> f64 {
        (clean(self.rx) + clean(self.tx)).min(1.0)
    }

    /// `width` cells: rx `█`, tx `▓`, the rest `░`.
    pub(super) fn spans(&self, width: usize) -> Vec<Span<'static>> {
        let rx_frac = clean(self.rx).min(1.0);
        let all = self.fraction();
        let rx = ((rx_frac * width as f64).round() as usize).min(width);
        let filled = ((all * width as f64).round() as usize).clamp(rx, width);
        vec![
            Span::styled("█".repeat(rx), Style::new().fg(Color::Cyan)),
            Span::styled("▓".repeat(filled - rx), Style::new().fg(Color::Magenta)),
            Span::styled("░".repeat(width - filled), Style::new().fg(Color::DarkGray)),
        ]
    }
}

/// The sparklines' maxima: one for rx and one for tx, shared by all lines so that they can be
/// compared.
#[derive(Debug, Clone, Copy, Default)]
struct Scale {
    rx: u64,
    tx: u64,
}

impl Scale {
    fn of(history: &HashMap<String, History>) -> Scale {
        history.values().fold(Scale::default(), |s, h| Scale {
            rx: s.rx.max(h.rx.iter().copied().max().unwrap_or(0)),
            tx: s.tx.max(h.tx.iter().copied().max().unwrap_or(0)),
        })
    }

    fn of_one(h: &History) -> Scale {
        Scale {
            rx: h.rx.iter().copied().max().unwrap_or(0),
            tx: h.tx.iter().copied().max().unwrap_or(0),
        }
    }
}

/// The second row of a line (or of the total): the bar with its percentage, and each
/// direction's rate with its sparkline (the newest sample at the right end).
#[allow(clippy::too_many_arguments)]
fn render_traffic_row(
    area: Rect,
    bar: &Bar,
    (rx, tx): (f64, f64),
    history: Option<&History>,
    scale: Scale,
    narrow: bool,
    selected: bool,
    buf: &mut Buffer,
) {
    const INDENT: usize = 4;
    const RATE: usize = 11;
    let width = usize::from(area.width);
    // indent, bar, " 100%", "  rx ", rate, " ", spark, "  tx ", rate, " ", spark
    let fixed = INDENT + 5 + 5 + RATE + 1 + 5 + RATE + 1;
    let room = width.saturating_sub(fixed);
    let (bar_width, spark_width) = if narrow || room < 20 {
        (width.saturating_sub(fixed).clamp(4, 40), 0)
    } else {
        let bar = (room * 2 / 5).clamp(10, 40);
        (bar, ((room - bar) / 2).min(HISTORY))
    };
    let mut spans = vec![Span::raw(" ".repeat(INDENT))];
    spans.extend(bar.spans(bar_width));
    spans.push(Span::raw(format!(
        " {:>4}  rx {:>RATE$} ",
        format::percent(bar.fraction()),
        format::rate(rx)
    )));
    let rx_x = spans.iter().map(Span::width).sum::<usize>();
    spans.push(Span::raw(" ".repeat(spark_width)));
    spans.push(Span::raw(format!("  tx {:>RATE$} ", format::rate(tx))));
    let tx_x = spans.iter().map(Span::width).sum::<usize>();
    fill_row(area, spans, "", selected_style(selected), buf);
    if spark_width == 0 {
        return;
    }
    let Some(h) = history else { return };
    for (x, data, max, colour) in [
        (rx_x, &h.rx, scale.rx, Color::Cyan),
        (tx_x, &h.tx, scale.tx, Color::Magenta),
    ] {
        let Ok(x) = u16::try_from(x) else { continue };
        if x >= area.width {
            continue;
        }
        let w = (spark_width as u16).min(area.width - x);
        let newest_first: Vec<u64> = data.iter().rev().take(usize::from(w)).copied().collect();
        Sparkline::default()
            .data(&newest_first)
            .max(max.max(1))
            .direction(RenderDirection::RightToLeft)
            .style(Style::new().fg(colour))
            .render(Rect::new(area.x + x, area.y, w, 1), buf);
    }
}

/// The confirmation popup, centred.
fn render_popup(area: Rect, question: &str, buf: &mut Buffer) {
    let text = format!("{question}  [y]es / [n]o");
    let want = text.chars().count() as u16 + 4;
    let width = want.min(area.width);
    let height = if area.height >= 5 { 3 } else { 1 };
    let x = area.x + (area.width - width) / 2;
    let y = area.y + area.height.saturating_sub(height) / 2;
    let popup = Rect::new(x, y, width, height);
    Clear.render(popup, buf);
    let style = Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD);
    if height == 3 {
        Paragraph::new(format!(" {text}"))
            .style(style)
            .block(Block::bordered().title(" confirm ").border_style(style))
            .render(popup, buf);
    } else {
        Paragraph::new(format!("{text} "))
            .style(style.add_modifier(Modifier::REVERSED))
            .render(popup, buf);
    }
}
