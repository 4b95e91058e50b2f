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

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crossterm::event::{Event, EventStream, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use futures::StreamExt;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, RenderDirection, Sparkline, Widget};
use tokio::sync::mpsc;

use crate::cmd::format::{self, style as ansi};
use crate::cmd::status::state_text;
use crate::control::{ClientError, LineStatus, Request, Response, StatusReport, client};

/// How many reports the sparklines remember.
pub const HISTORY: usize = 60;

/// Below this many columns the sparklines and addresses are dropped.
pub const NARROW_WIDTH: u16 = 60;

/// Below this many rows each line gets one row, without titles or total rows.
pub const COMPACT_HEIGHT: u16 = 10;

/// The keys, for the status bar.
const KEYS_HELP: &str = "↑↓ select  h hang up  u up  q quit";

/// What a key press asks the driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Nothing beyond redrawing.
    None,
    /// Leave the monitor.
    Quit,
    /// Send this request to the daemon and hand its answer to [`MonitorState::on_answer`].
    Send(Request),
}

/// What the confirmation popup asks about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Hangup,
    Up,
}

impl Action {
    fn question(self, line: &str) -> String {
        match self {
            Action::Hangup => format!("Hang up {line}?"),
            Action::Up => format!("Bring {line} up?"),
        }
    }

    fn request(self, line: &str) -> Request {
        let lines = vec![line.to_string()];
        match self {
            Action::Hangup => Request::Hangup { lines },
            Action::Up => Request::Up { lines },
        }
    }

    fn doing(self, line: &str) -> String {
        match self {
            Action::Hangup => format!("hanging up {line}…"),
            Action::Up => format!("bringing {line} up…"),
        }
    }
}

/// The message in the status bar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusMessage {
    pub text: String,
    pub kind: MessageKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    Info,
    Ok,
    Error,
}

/// Where the subscription stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connection {
    /// No report yet.
    Connecting,
    /// Reports are coming.
    Connected,
    /// The daemon went away (or refused); why, in words. Retrying.
    Lost(String),
}

/// Rates of the last reports, oldest first.
#[derive(Debug, Clone, Default)]
struct History {
    rx: VecDeque<u64>,
    tx: VecDeque<u64>,
}

impl History {
    fn push(&mut self, rx: f64, tx: f64) {
        for (q, v) in [(&mut self.rx, rx), (&mut self.tx, tx)] {
            if q.len() == HISTORY {
                q.pop_front();
            }
            // `as` saturates: huge rates become u64::MAX, NaN never gets here.
            q.push_back(clean(v) as u64);
        }
    }
}

/// A rate or share as a finite, non-negative number no larger than 16 EiB (NaN, infinities
/// and negatives are 0), so that sums of them stay finite and print short.
fn clean(v: f64) -> f64 {
    if v.is_finite() && v > 0.0 {
        v.min(u64::MAX as f64)
    } else {
        0.0
    }
}

/// The monitor's whole state: the last report, the rate history, the selection, the popup
/// and the status bar.
#[derive(Debug, Clone)]
pub struct MonitorState {
    socket: PathBuf,
    report: Option<StatusReport>,
    history: HashMap<String, History>,
    total: History,
    selected: usize,
    /// The first line shown (scrolling); kept so the view does not jump.
    offset: usize,
    confirm: Option<(Action, String)>,
    message: Option<StatusMessage>,
    connection: Connection,
}

impl MonitorState {
    /// A monitor of the daemon at `socket` (shown while connecting).
    pub fn new(socket: &Path) -> MonitorState {
        MonitorState {
            socket: socket.to_path_buf(),
            report: None,
            history: HashMap::new(),
            total: History::default(),
            selected: 0,
            offset: 0,
            confirm: None,
            message: None,
            connection: Connection::Connecting,
        }
    }

    /// A new status report from the daemon.
    pub fn on_report(&mut self, report: StatusReport) {
        if matches!(self.connection, Connection::Lost(_)) {
            self.message = Some(StatusMessage {
                text: "connected to the daemon again".into(),
                kind: MessageKind::Info,
            });
        }
        self.connection = Connection::Connected;
        // Keep the selection on the same line when lines come and go.
        let selected_name = self.selected_line().map(|l| l.name.clone());
        self.history
            .retain(|name, _| report.lines.iter().any(|l| &l.name == name));
        let (mut rx, mut tx) = (0.0, 0.0);
        for l in &report.lines {
            self.history
                .entry(l.name.clone())
                .or_default()
                .push(l.rx_rate, l.tx_rate);
            rx += clean(l.rx_rate);
            tx += clean(l.tx_rate);
        }
        self.total.push(rx, tx);
        if let Some(i) =
            selected_name.and_then(|name| report.lines.iter().position(|l| l.name == name))
        {
            self.selected = i;
        }
        self.selected = self.selected.min(report.lines.len().saturating_sub(1));
        // The line asked about may be gone.
        if let Some((_, name)) = &self.confirm
            && !report.lines.iter().any(|l| &l.name == name)
        {
            self.confirm = None;
        }
        self.report = Some(report);
    }

    /// The subscription ended or could not be made; `why` in words. The last report stays.
    pub fn on_disconnected(&mut self, why: &str) {
        self.connection = Connection::Lost(why.to_string());
    }

    /// The daemon's answer to a request sent for [`Effect::Send`].
    pub fn on_answer(&mut self, answer: Result<Response, String>) {
        self.message = Some(match answer {
            Ok(Response::Ok { message }) => StatusMessage {
                text: message,
                kind: MessageKind::Ok,
            },
            Ok(Response::Error { message }) => StatusMessage {
                text: format!("refused: {message}"),
                kind: MessageKind::Error,
            },
            Ok(Response::Status(_)) => StatusMessage {
                text: "unexpected answer: a status report".into(),
                kind: MessageKind::Error,
            },
            Err(e) => StatusMessage {
                text: e,
                kind: MessageKind::Error,
            },
        });
    }

    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    pub fn message(&self) -> Option<&StatusMessage> {
        self.message.as_ref()
    }

    /// The popup's question, if one is open.
    pub fn confirming(&self) -> Option<(Action, &str)> {
        self.confirm.as_ref().map(|(a, l)| (*a, l.as_str()))
    }

    /// The index of the selected line.
    pub fn selected(&self) -> usize {
        self.selected
    }

    pub fn selected_line(&self) -> Option<&LineStatus> {
        self.lines().get(self.selected)
    }

    fn lines(&self) -> &[LineStatus] {
        self.report.as_ref().map_or(&[], |r| r.lines.as_slice())
    }

    /// A key press.
    pub fn handle_key(&mut self, key: KeyEvent) -> Effect {
        if key.kind == KeyEventKind::Release {
            return Effect::None;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && matches!(key.code, KeyCode::Char('c' | 'C')) {
            return Effect::Quit;
        }
        if let Some((action, line)) = self.confirm.take() {
            return match key.code {
                KeyCode::Char('y' | 'Y') | KeyCode::Enter => {
                    self.message = Some(StatusMessage {
                        text: action.doing(&line),
                        kind: MessageKind::Info,
                    });
                    Effect::Send(action.request(&line))
                }
                KeyCode::Char('n' | 'N' | 'q') | KeyCode::Esc => {
                    self.message = Some(StatusMessage {
                        text: "cancelled".into(),
                        kind: MessageKind::Info,
                    });
                    Effect::None
                }
                // Anything else: the question stays.
                _ => {
                    self.confirm = Some((action, line));
                    Effect::None
                }
            };
        }
        let count = self.lines().len();
        match key.code {
            KeyCode::Char('q' | 'Q') | KeyCode::Esc => Effect::Quit,
            KeyCode::Up | KeyCode::Char('k') => {
                self.selected = self.selected.saturating_sub(1);
                Effect::None
            }
            KeyCode::Down | KeyCode::Char('j') => {
                self.selected = (self.selected + 1).min(count.saturating_sub(1));
                Effect::None
            }
            KeyCode::Home | KeyCode::Char('g') => {
                self.selected = 0;
                Effect::None
            }
            KeyCode::End | KeyCode::Char('G') => {
                self.selected = count.saturating_sub(1);
                Effect::None
            }
            KeyCode::Char('h') => self.ask(Action::Hangup),
            KeyCode::Char('u') => self.ask(Action::Up),
            _ => Effect::None,
        }
    }

    fn ask(&mut self, action: Action) -> Effect {
        match self.selected_line() {
            Some(line) => self.confirm = Some((action, line.name.clone())),
            None => {
                self.message = Some(StatusMessage {
                    text: "no line selected".into(),
                    kind: MessageKind::Error,
                })
            }
        }
        Effect::None
    }

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

    fn report_time(&self) -> f64 {
        self.report.as_ref().map_or(0.0, |r| r.time)
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
                let up = r.lines.iter().filter(|l| l.state == "up").count();
                let rx: f64 = r.lines.iter().map(|l| clean(l.rx_rate)).sum();
                let tx: f64 = r.lines.iter().map(|l| clean(l.tx_rate)).sum();
                let policy = if r.policy.is_empty() { "-" } else { &r.policy };
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
        text.push_str(&format!("  {:>6}  {:>7}  LAST ERROR", "SPEED", "REDIALS"));
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

    /// Scrolls so that the selection is among the `rows` lines shown.
    fn scroll(&mut self, rows: usize) {
        let rows = rows.max(1);
        if self.selected < self.offset {
            self.offset = self.selected;
        } else if self.selected >= self.offset + rows {
            self.offset = self.selected + 1 - rows;
        }
        self.offset = self.offset.min(self.lines().len().saturating_sub(rows));
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
        let lines = self.lines();
        let rx: f64 = lines.iter().map(|l| clean(l.rx_rate)).sum();
        let tx: f64 = lines.iter().map(|l| clean(l.tx_rate)).sum();
        // Capacity: the CONNECT speeds of the lines that are up, in bytes per second.
        let capacity: f64 = lines
            .iter()
            .filter(|l| l.state == "up")
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

/// The ratatui style of a line state: [`format::state_style`]'s colour.
fn state_style(state: &str) -> Style {
    match format::state_style(state) {
        s if s == ansi::GREEN => Style::new().fg(Color::Green),
        s if s == ansi::RED => Style::new().fg(Color::Red),
        s if s == ansi::YELLOW => Style::new().fg(Color::Yellow),
        s if s == ansi::DIM => Style::new().fg(Color::DarkGray),
        _ => Style::new(),
    }
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
            bare_state: width(&|l| l.state.clone()).clamp(5, 20),
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

/// The first row of a line: name, state, addresses, speed, redials, last error.
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
    spans.push(Span::raw(format!("  {:>6}  {:>7}  ", speed(l), l.redials)));
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
        (l.state.clone(), columns.bare_state)
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
struct Bar {
    rx: f64,
    tx: f64,
}

/// A line's share of all the lines' traffic, split into its rx and tx parts.
fn share_bar(l: &LineStatus) -> Bar {
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
    fn spans(&self, width: usize) -> Vec<Span<'static>> {
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

/// How long to wait before subscribing again after the daemon went away.
pub fn retry_delay(interval: Duration) -> Duration {
    interval.max(Duration::from_secs(1))
}

/// Why the driver stopped.
#[derive(Debug)]
pub enum Exit {
    /// The user quit.
    Quit,
    /// A signal (SIGTERM, SIGHUP, SIGINT) ended it.
    Signal,
}

/// Runs the monitor on the terminal until the user quits. Errors are terminal errors.
pub async fn run(socket: &Path, interval: Duration) -> std::io::Result<Exit> {
    let mut terminal = super::terminal::TerminalGuard::enter()?;
    let mut state = MonitorState::new(socket);
    let mut events = EventStream::new();
    let (answer_tx, mut answers) = mpsc::unbounded_channel::<Result<Response, String>>();
    use tokio::signal::unix::{SignalKind, signal};
    // Ctrl-C is a key in raw mode; these come from elsewhere (kill, a closed terminal).
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut subscription: Option<client::Subscription> = None;
    // When to try to subscribe (now at first).
    let mut retry_at = Some(tokio::time::Instant::now());
    let panic_for_test = std::env::var_os("EQLPLUS_MONITOR_TEST_PANIC").is_some();
    loop {
        terminal.draw(|area, buf| state.render(area, buf))?;
        if panic_for_test && state.report.is_some() {
            panic!("EQLPLUS_MONITOR_TEST_PANIC is set: panicking to test the terminal restore");
        }
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(Event::Key(key))) => match state.handle_key(key) {
                    Effect::None => {}
                    Effect::Quit => return Ok(Exit::Quit),
                    Effect::Send(request) => {
                        let socket = socket.to_path_buf();
                        let tx = answer_tx.clone();
                        tokio::spawn(async move {
                            let answer = client::request(&socket, request)
                                .await
                                .map_err(|e| e.to_string());
                            let _ = tx.send(answer);
                        });
                    }
                },
                // Resizes and the rest: just redraw.
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Ok(Exit::Quit),
            },
            report = next_report(&mut subscription) => match report {
                Ok(report) => state.on_report(report),
                Err(why) => {
                    subscription = None;
                    state.on_disconnected(&why);
                    retry_at = Some(tokio::time::Instant::now() + retry_delay(interval));
                }
            },
            () = crate::sys::sleep_until_opt(retry_at) => {
                retry_at = None;
                match client::subscribe(socket, interval).await {
                    Ok(s) => subscription = Some(s),
                    Err(e) => {
                        state.on_disconnected(&describe(&e));
                        retry_at = Some(tokio::time::Instant::now() + retry_delay(interval));
                    }
                }
            },
            Some(answer) = answers.recv() => state.on_answer(answer),
            _ = term.recv() => return Ok(Exit::Signal),
            _ = hup.recv() => return Ok(Exit::Signal),
            _ = int.recv() => return Ok(Exit::Signal),
        }
    }
}

/// A client error, short enough for the header.
fn describe(e: &ClientError) -> String {
    match e {
        ClientError::NotRunning { path } => format!("no control socket at {}", path.display()),
        other => other.to_string(),
    }
}

/// The next report of the subscription, or why there is none; never, without one.
async fn next_report(
    subscription: &mut Option<client::Subscription>,
) -> Result<StatusReport, String> {
    let Some(s) = subscription else {
        return std::future::pending().await;
    };
    match s.next().await {
        Some(Ok(Response::Status(report))) => Ok(report),
        Some(Ok(Response::Error { message })) => Err(message),
        Some(Ok(Response::Ok { message })) => Err(format!("unexpected answer: {message}")),
        Some(Err(e)) => Err(describe(&e)),
        None => Err("the daemon closed the connection".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossterm::event::KeyEventState;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use std::net::Ipv4Addr;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn ch(c: char) -> KeyEvent {
        key(KeyCode::Char(c))
    }

    fn up_line(name: &str, n: u8, speed: u32, rx: f64, share: f64) -> LineStatus {
        LineStatus {
            name: name.into(),
            state: "up".into(),
            since: 0.0,
            admin: "up".into(),
            local: Some(Ipv4Addr::new(10, 64, n, 2)),
            peer: Some(Ipv4Addr::new(10, 64, n, 1)),
            connect_speed: Some(speed),
            rx_rate: rx,
            tx_rate: rx / 8.0,
            share,
            ..LineStatus::default()
        }
    }

    fn sample() -> StatusReport {
        StatusReport {
            time: 1000.0,
            policy: "weighted".into(),
            lines: vec![
                up_line("ttyS0", 0, 57_600, 4800.0, 0.625),
                up_line("ttyS1", 1, 33_600, 2880.0, 0.375),
                LineStatus {
                    name: "ttyUSB0".into(),
                    state: "holdoff".into(),
                    since: 996.0,
                    admin: "up".into(),
                    redials: 3,
                    last_error: Some("dial-chat: BUSY".into()),
                    next_attempt: Some(1008.0),
                    ..LineStatus::default()
                },
            ],
        }
    }

    fn state_with(report: StatusReport) -> MonitorState {
        let mut s = MonitorState::new(Path::new("/run/test.sock"));
        s.on_report(report);
        s
    }

    /// Renders on a `TestBackend` of `width`×`height`; the buffer and its rows as text.
    fn draw(state: &mut MonitorState, width: u16, height: u16) -> (Buffer, Vec<String>) {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal
            .draw(|f| {
                let area = f.area();
                state.render(area, f.buffer_mut());
            })
            .unwrap();
        let buf = terminal.backend().buffer().clone();
        let rows = (0..height)
            .map(|y| {
                (0..width)
                    .map(|x| buf[(x, y)].symbol().to_string())
                    .collect::<String>()
            })
            .collect();
        (buf, rows)
    }

    fn row_with<'a>(rows: &'a [String], text: &str) -> &'a str {
        rows.iter()
            .find(|r| r.contains(text))
            .unwrap_or_else(|| panic!("no row with {text:?}:\n{}", rows.join("\n")))
    }

    fn position(rows: &[String], text: &str) -> (u16, u16) {
        for (y, r) in rows.iter().enumerate() {
            if let Some(byte) = r.find(text) {
                return (r[..byte].chars().count() as u16, y as u16);
            }
        }
        panic!("{text:?} not on screen:\n{}", rows.join("\n"));
    }

    const SPARKS: &[char] = &['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

    #[test]
    fn full_layout_rows_bars_and_total() {
        let mut s = state_with(sample());
        let (buf, rows) = draw(&mut s, 120, 30);
        let header = &rows[0];
        assert!(header.contains("eqlplus-dialer monitor"), "{header}");
        assert!(header.contains("policy weighted"), "{header}");
        assert!(header.contains("2/3 up"), "{header}");
        assert!(
            header.trim_end().ends_with(&format::clock(1000.0)),
            "{header}"
        );
        assert!(rows[1].contains("LINE") && rows[1].contains("LAST ERROR"));
        let s0 = row_with(&rows, "ttyS0");
        assert!(s0.starts_with("▶ ttyS0"), "{s0}");
        assert!(s0.contains("10.64.0.2 → 10.64.0.1"), "{s0}");
        assert!(s0.contains("57600"), "{s0}");
        let usb = row_with(&rows, "ttyUSB0");
        assert!(usb.starts_with("  ttyUSB0"), "{usb}");
        assert!(usb.contains("holdoff (next 8s)"), "{usb}");
        assert!(usb.contains("dial-chat: BUSY"), "{usb}");
        // Each line's second row: its share bar, rx █ then tx ▓, 30 cells at this width.
        let (_, y0) = position(&rows, "ttyS0");
        let row0 = &rows[usize::from(y0) + 1];
        assert!(row0.contains("63%"), "{row0}");
        assert!(
            row0.contains("rx   4.7 KiB/s") && row0.contains("tx     600 B/s"),
            "{row0}"
        );
        let bar0 = &row0[..row0.find('%').unwrap()];
        let rx_cells = bar0.matches('█').count();
        let tx_cells = bar0.matches('▓').count();
        let empty = bar0.matches('░').count();
        assert_eq!(rx_cells + tx_cells + empty, 30, "{bar0}");
        assert_eq!(rx_cells, 17, "{bar0}"); // 62.5% × 8/9 of 30 cells
        assert_eq!(tx_cells, 2, "{bar0}");
        let (_, yu) = position(&rows, "ttyUSB0");
        assert!(rows[usize::from(yu) + 1].contains(&"░".repeat(30)));
        // The total: 7.6 KiB/s rx + 0.9 tx of (57600 + 33600) / 8 bytes/s.
        let total = row_with(&rows, "TOTAL");
        assert!(total.contains("8.4 KiB/s of 11.1 KiB/s"), "{total}");
        let (_, yt) = position(&rows, "TOTAL");
        assert!(rows[usize::from(yt) + 1].contains("76%"));
        assert_eq!(
            usize::from(yt) + 2,
            29,
            "the total sits above the status bar"
        );
        assert!(rows[29].contains("h hang up"), "{}", rows[29]);
        // State colours: up green, holdoff yellow; the error red.
        let (x, y) = position(&rows, "up   ");
        assert_eq!(buf[(x, y)].fg, Color::Green);
        let (x, y) = position(&rows, "holdoff");
        assert_eq!(buf[(x, y)].fg, Color::Yellow);
        let (x, y) = position(&rows, "dial-chat: BUSY");
        assert_eq!(buf[(x, y)].fg, Color::Red);
    }

    #[test]
    fn state_colours_follow_the_status_command() {
        assert_eq!(state_style("up").fg, Some(Color::Green));
        assert_eq!(state_style("failed").fg, Some(Color::Red));
        assert_eq!(state_style("down").fg, Some(Color::DarkGray));
        assert_eq!(state_style("dial-chat").fg, Some(Color::Yellow));
    }

    #[test]
    fn sparklines_show_the_history_newest_at_the_right() {
        let mut s = MonitorState::new(Path::new("/s"));
        for k in 0..(HISTORY + 20) {
            let mut r = sample();
            r.lines[0].rx_rate = (k % 8) as f64 * 1000.0;
            s.on_report(r);
        }
        assert_eq!(s.history["ttyS0"].rx.len(), HISTORY);
        assert_eq!(s.total.rx.len(), HISTORY);
        // One more report at the peak: the rightmost cell of the rx sparkline is full.
        let mut r = sample();
        r.lines[0].rx_rate = 7000.0;
        s.on_report(r);
        let (_, rows) = draw(&mut s, 120, 30);
        let (_, y0) = position(&rows, "ttyS0");
        let row = &rows[usize::from(y0) + 1];
        let before_tx = &row[..row.find("  tx").unwrap()];
        assert!(before_tx.trim_end().ends_with('█'), "{row}");
        let sparks = before_tx
            .split("KiB/s")
            .nth(1)
            .unwrap()
            .chars()
            .filter(|c| SPARKS.contains(c))
            .count();
        assert!(sparks > 10, "{row}");
        // A line without traffic has no sparkline bars (only blanks).
        let (_, yu) = position(&rows, "ttyUSB0");
        let usb = &rows[usize::from(yu) + 1];
        assert!(!usb.chars().any(|c| SPARKS[..7].contains(&c)), "{usb}");
    }

    #[test]
    fn selection_keys_and_quit() {
        let mut s = state_with(sample());
        assert_eq!(s.selected(), 0);
        assert_eq!(s.handle_key(key(KeyCode::Down)), Effect::None);
        assert_eq!(s.selected(), 1);
        s.handle_key(ch('j'));
        s.handle_key(ch('j'));
        assert_eq!(s.selected(), 2, "stops at the last line");
        s.handle_key(ch('k'));
        assert_eq!(s.selected_line().unwrap().name, "ttyS1");
        s.handle_key(key(KeyCode::Up));
        s.handle_key(key(KeyCode::Up));
        assert_eq!(s.selected(), 0, "stops at the first line");
        s.handle_key(key(KeyCode::End));
        assert_eq!(s.selected(), 2);
        let (_, rows) = draw(&mut s, 120, 30);
        assert!(row_with(&rows, "ttyUSB0").starts_with("▶ ttyUSB0"));
        assert!(row_with(&rows, "ttyS0").starts_with("  ttyS0"));
        assert_eq!(s.handle_key(ch('q')), Effect::Quit);
        assert_eq!(s.handle_key(key(KeyCode::Esc)), Effect::Quit);
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(s.handle_key(ctrl_c), Effect::Quit);
        // Key releases (kitty protocol) do nothing.
        let release = KeyEvent {
            kind: KeyEventKind::Release,
            state: KeyEventState::NONE,
            ..ch('q')
        };
        assert_eq!(s.handle_key(release), Effect::None);
    }

    #[test]
    fn hangup_and_up_ask_first() {
        let mut s = state_with(sample());
        s.handle_key(ch('j'));
        assert_eq!(s.handle_key(ch('h')), Effect::None);
        assert_eq!(s.confirming(), Some((Action::Hangup, "ttyS1")));
        let (_, rows) = draw(&mut s, 120, 30);
        let popup = row_with(&rows, "Hang up ttyS1?");
        assert!(popup.contains("[y]es / [n]o"), "{popup}");
        assert!(rows.iter().any(|r| r.contains("┌ confirm ")));
        // Other keys leave the question open; selection keys do not move behind it.
        assert_eq!(s.handle_key(ch('j')), Effect::None);
        assert_eq!(s.selected(), 1);
        assert!(s.confirming().is_some());
        assert_eq!(
            s.handle_key(ch('y')),
            Effect::Send(Request::Hangup {
                lines: vec!["ttyS1".into()]
            })
        );
        assert_eq!(s.confirming(), None);
        assert_eq!(s.message().unwrap().text, "hanging up ttyS1…");
        s.on_answer(Ok(Response::Ok {
            message: "hung up ttyS1".into(),
        }));
        let (buf, rows) = draw(&mut s, 120, 30);
        assert!(!rows.iter().any(|r| r.contains("Hang up")), "popup gone");
        assert!(rows[29].starts_with(" hung up ttyS1"), "{}", rows[29]);
        assert_eq!(buf[(1, 29)].fg, Color::Green);

        // `u` then `n`: nothing sent.
        assert_eq!(s.handle_key(ch('u')), Effect::None);
        assert_eq!(s.confirming(), Some((Action::Up, "ttyS1")));
        let (_, rows) = draw(&mut s, 120, 30);
        row_with(&rows, "Bring ttyS1 up?");
        assert_eq!(s.handle_key(ch('n')), Effect::None);
        assert_eq!(s.confirming(), None);
        assert_eq!(s.message().unwrap().text, "cancelled");
        // `u`, Enter: sent.
        s.handle_key(ch('u'));
        assert_eq!(
            s.handle_key(key(KeyCode::Enter)),
            Effect::Send(Request::Up {
                lines: vec!["ttyS1".into()]
            })
        );
        // Esc in the popup cancels rather than quits; Ctrl-C always quits.
        s.handle_key(ch('h'));
        assert_eq!(s.handle_key(key(KeyCode::Esc)), Effect::None);
        s.handle_key(ch('h'));
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(s.handle_key(ctrl_c), Effect::Quit);
    }

    #[test]
    fn refusals_and_errors_in_the_status_bar() {
        let mut s = state_with(sample());
        s.on_answer(Ok(Response::Error {
            message: "permission denied".into(),
        }));
        let (buf, rows) = draw(&mut s, 120, 30);
        assert!(rows[29].starts_with(" refused: permission denied"));
        assert_eq!(buf[(1, 29)].fg, Color::Red);
        s.on_answer(Err(
            "the daemon closed the connection without answering".into()
        ));
        let (_, rows) = draw(&mut s, 120, 30);
        assert!(rows[29].contains("closed the connection"));
    }

    #[test]
    fn the_popup_follows_a_vanished_line_away() {
        let mut s = state_with(sample());
        s.handle_key(ch('G'));
        s.handle_key(ch('h'));
        let mut r = sample();
        r.lines.pop();
        s.on_report(r);
        assert_eq!(s.confirming(), None);
        assert_eq!(s.selected(), 1, "clamped to the last line");
    }

    #[test]
    fn the_selection_follows_its_line_when_lines_move() {
        let mut s = state_with(sample());
        s.handle_key(ch('j'));
        let mut r = sample();
        r.lines.reverse();
        s.on_report(r);
        assert_eq!(s.selected_line().unwrap().name, "ttyS1");
        assert_eq!(s.selected(), 1);
        let mut r = sample();
        r.lines.remove(0);
        s.on_report(r);
        assert_eq!(s.selected(), 0);
    }

    #[test]
    fn narrow_terminal_drops_sparklines_and_addresses() {
        let mut s = state_with(sample());
        s.on_report(sample());
        let (_, rows) = draw(&mut s, 50, 30);
        let text = rows.join("\n");
        assert!(!text.contains("10.64.0.2"), "{text}");
        assert!(row_with(&rows, "ttyS0").contains("57600"));
        let (_, y0) = position(&rows, "ttyS0");
        let bar = &rows[usize::from(y0) + 1];
        assert!(bar.contains('█') && bar.contains("63%"), "{bar}");
        assert!(!bar.chars().any(|c| SPARKS[..7].contains(&c)), "{bar}");
        row_with(&rows, "TOTAL");
        // At 55 columns the traffic row fits whole.
        let (_, rows) = draw(&mut s, 55, 30);
        let (_, y0) = position(&rows, "ttyS0");
        assert!(
            rows[usize::from(y0) + 1].ends_with("tx     600 B/s "),
            "{rows:?}"
        );
    }

    #[test]
    fn short_terminal_gets_one_row_per_line() {
        let mut s = state_with(sample());
        let (_, rows) = draw(&mut s, 100, 8);
        assert!(rows[0].contains("policy weighted"));
        assert_eq!(rows[1].split_whitespace().next(), Some("▶"));
        assert!(
            rows[1].contains("ttyS0") && rows[1].contains("63%"),
            "{}",
            rows[1]
        );
        assert!(
            rows[2].contains("ttyS1") && rows[2].contains("38%"),
            "{}",
            rows[2]
        );
        assert!(rows[3].contains("ttyUSB0") && rows[3].contains("holdoff"));
        assert!(rows[3].contains("dial-chat: BUSY"), "{}", rows[3]);
        let text = rows.join("\n");
        assert!(!text.contains("LINE") && !text.contains("TOTAL"), "{text}");
        assert!(rows[7].contains("q quit"));
        // Short and narrow: the bare state.
        let (_, rows) = draw(&mut s, 40, 6);
        assert!(
            rows[3].contains("holdoff ") && !rows[3].contains("next"),
            "{rows:?}"
        );
        // The popup shrinks to one row.
        s.handle_key(ch('h'));
        let (_, rows) = draw(&mut s, 40, 4);
        row_with(&rows, "Hang up ttyS0?");
    }

    #[test]
    fn many_lines_scroll_with_the_selection() {
        let report = StatusReport {
            time: 0.0,
            policy: "round-robin".into(),
            lines: (0..20)
                .map(|i| up_line(&format!("line{i:02}"), i, 28_800, 100.0, 0.05))
                .collect(),
        };
        let mut s = state_with(report);
        let (_, rows) = draw(&mut s, 100, 16);
        // 16 rows: header, titles, 10 rows = 5 lines, total (2), status bar.
        assert!(rows[1].contains("lines 1-5 of 20"), "{}", rows[1]);
        assert!(rows.iter().any(|r| r.contains("line04")));
        assert!(!rows.iter().any(|r| r.contains("line05")));
        for _ in 0..7 {
            s.handle_key(ch('j'));
        }
        let (_, rows) = draw(&mut s, 100, 16);
        assert!(row_with(&rows, "line07").starts_with("▶ line07"));
        assert!(rows[1].contains("lines 4-8 of 20"), "{}", rows[1]);
        s.handle_key(ch('G'));
        let (_, rows) = draw(&mut s, 100, 16);
        assert!(row_with(&rows, "line19").starts_with("▶"));
        assert!(rows[1].contains("lines 16-20 of 20"), "{}", rows[1]);
        s.handle_key(ch('g'));
        let (_, rows) = draw(&mut s, 100, 16);
        assert!(row_with(&rows, "line00").starts_with("▶"));
        // Compact: one row each.
        s.handle_key(ch('G'));
        let (_, rows) = draw(&mut s, 100, 9);
        assert!(rows[7].starts_with("▶ line19"), "{rows:?}");
        assert!(rows[1].contains("line13"), "{rows:?}");
    }

    #[test]
    fn before_the_first_report_and_without_lines() {
        let mut s = MonitorState::new(Path::new("/run/x.sock"));
        assert_eq!(s.connection(), &Connection::Connecting);
        let (_, rows) = draw(&mut s, 80, 20);
        assert!(rows[0].contains("connecting"));
        row_with(&rows, "connecting to /run/x.sock");
        assert_eq!(s.handle_key(ch('h')), Effect::None);
        assert_eq!(s.confirming(), None);
        assert_eq!(s.message().unwrap().text, "no line selected");
        assert_eq!(s.handle_key(ch('j')), Effect::None);
        s.on_report(StatusReport {
            time: 5.0,
            policy: String::new(),
            lines: vec![],
        });
        let (_, rows) = draw(&mut s, 80, 20);
        assert!(rows[0].contains("policy -  0/0 up"), "{}", rows[0]);
        row_with(&rows, "no lines configured");
        row_with(&rows, "TOTAL  0 B/s");
    }

    #[test]
    fn daemon_gone_then_back() {
        let mut s = state_with(sample());
        s.on_disconnected("no control socket at /run/test.sock");
        assert!(matches!(s.connection(), Connection::Lost(_)));
        let (buf, rows) = draw(&mut s, 120, 30);
        assert!(
            rows[0].contains("daemon not running, retrying: no control socket at /run/test.sock"),
            "{}",
            rows[0]
        );
        let (x, _) = position(&rows, "daemon not running");
        assert_eq!(buf[(x, 0)].fg, Color::Red);
        // The last report stays on screen.
        row_with(&rows, "ttyS0");
        s.on_report(sample());
        assert_eq!(s.connection(), &Connection::Connected);
        let (_, rows) = draw(&mut s, 120, 30);
        assert!(rows[0].contains("policy weighted"));
        assert!(rows[29].contains("connected to the daemon again"));
    }

    fn odd_report() -> StatusReport {
        let odd = |name: &str, rate: f64, share: f64| LineStatus {
            name: name.into(),
            state: "up".into(),
            since: f64::NAN,
            connect_speed: Some(u32::MAX),
            rx_bytes: u64::MAX,
            tx_bytes: u64::MAX,
            rx_rate: rate,
            tx_rate: rate,
            share,
            redials: u32::MAX,
            next_attempt: Some(f64::INFINITY),
            last_error: Some("x".repeat(500)),
            ..LineStatus::default()
        };
        StatusReport {
            time: f64::NAN,
            policy: "p".repeat(300),
            lines: vec![
                odd("nan", f64::NAN, f64::NAN),
                odd("inf", f64::INFINITY, f64::INFINITY),
                odd("neg", -5.0, -1.0),
                odd("huge", 1e300, 7.0),
                odd("", 0.0, 0.0),
                odd(&"long-name-".repeat(10), f64::MAX, 0.5),
                odd("ünïcödé 名前", 1.0, 0.5),
                LineStatus {
                    state: "holdoff".into(),
                    next_attempt: Some(f64::NEG_INFINITY),
                    ..LineStatus::default()
                },
            ],
        }
    }

    #[test]
    fn odd_data_and_any_size_never_panic() {
        let mut s = MonitorState::new(Path::new("/s"));
        for _ in 0..3 {
            s.on_report(odd_report());
        }
        for (w, h) in [
            (0, 0),
            (1, 1),
            (0, 30),
            (120, 0),
            (2, 2),
            (5, 3),
            (59, 9),
            (60, 10),
        ] {
            draw(&mut s, w, h);
        }
        for w in (0..=140).step_by(7) {
            for h in 0..=24 {
                draw(&mut s, w, h);
            }
        }
        s.handle_key(ch('G'));
        s.handle_key(ch('h'));
        for w in 0..=50 {
            for h in [1, 2, 4, 5, 9, 12] {
                draw(&mut s, w, h);
            }
        }
        let (_, rows) = draw(&mut s, 120, 30);
        row_with(&rows, "Hang up ?");
        let (_, rows) = draw(&mut s, 200, 40);
        row_with(&rows, "huge");
        assert!(row_with(&rows, "TOTAL").contains("EiB/s"));
    }

    #[test]
    fn bars_clamp_odd_fractions() {
        let count = |bar: Bar, width| {
            let text: String = bar.spans(width).iter().map(|s| s.content.clone()).collect();
            (
                text.matches('█').count(),
                text.matches('▓').count(),
                text.matches('░').count(),
            )
        };
        assert_eq!(count(Bar { rx: 0.5, tx: 0.25 }, 8), (4, 2, 2));
        assert_eq!(count(Bar { rx: 2.0, tx: 2.0 }, 8), (8, 0, 0));
        assert_eq!(
            count(
                Bar {
                    rx: f64::NAN,
                    tx: f64::INFINITY
                },
                8
            ),
            (0, 0, 8)
        );
        assert_eq!(count(Bar { rx: -1.0, tx: 0.5 }, 8), (0, 4, 4));
        assert_eq!(count(Bar { rx: 0.5, tx: 0.5 }, 0), (0, 0, 0));
        let line = LineStatus {
            rx_rate: 700.0,
            tx_rate: 100.0,
            share: 0.5,
            ..LineStatus::default()
        };
        let b = share_bar(&line);
        assert!((b.rx - 0.4375).abs() < 1e-9 && (b.tx - 0.0625).abs() < 1e-9);
        let idle = LineStatus {
            share: f64::NAN,
            ..LineStatus::default()
        };
        assert_eq!(share_bar(&idle), Bar { rx: 0.0, tx: 0.0 });
        assert_eq!(
            retry_delay(Duration::from_millis(200)),
            Duration::from_secs(1)
        );
        assert_eq!(retry_delay(Duration::from_secs(5)), Duration::from_secs(5));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Any numbers, any number of lines, any keys, any terminal size: no panic, and the
        /// selection stays on a line.
        #[test]
        fn never_panics(
            lines in proptest::collection::vec(
                (proptest::num::f64::ANY, proptest::num::f64::ANY, proptest::num::f64::ANY,
                 proptest::option::of(proptest::num::u32::ANY), 0usize..4),
                0..12,
            ),
            keys in proptest::collection::vec(0usize..9, 0..12),
            width in 0u16..160,
            height in 0u16..40,
        ) {
            const STATES: [&str; 4] = ["up", "down", "holdoff", "dial-chat"];
            const KEYS: [char; 9] = ['j', 'k', 'h', 'u', 'y', 'n', 'G', 'g', 'x'];
            let report = StatusReport {
                time: lines.first().map_or(0.0, |l| l.0),
                policy: "weighted".into(),
                lines: lines
                    .iter()
                    .enumerate()
                    .map(|(i, &(rx, tx, share, speed, state))| LineStatus {
                        name: format!("l{i}"),
                        state: STATES[state].into(),
                        since: tx,
                        rx_rate: rx,
                        tx_rate: tx,
                        share,
                        connect_speed: speed,
                        next_attempt: Some(share),
                        ..LineStatus::default()
                    })
                    .collect(),
            };
            let mut s = MonitorState::new(Path::new("/s"));
            s.on_report(report.clone());
            for k in keys {
                let _ = s.handle_key(ch(KEYS[k]));
                draw(&mut s, width, height);
            }
            s.on_report(report.clone());
            draw(&mut s, width, height);
            proptest::prop_assert!(s.selected() < report.lines.len().max(1));
        }
    }
}
