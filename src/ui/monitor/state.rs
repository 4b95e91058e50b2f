//! The monitor's model: the last report, the rate history, the selection, the confirmation
//! popup and the status bar, changed by reports, connection losses, key presses and the
//! daemon's answers. No I/O and no drawing (that is [`super::view`]).

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::control::{LineStatus, Request, Response, StatusReport};

/// How many reports the sparklines remember.
pub const HISTORY: usize = 60;

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
    pub(super) fn question(self, line: &str) -> String {
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
pub(super) struct History {
    pub(super) rx: VecDeque<u64>,
    pub(super) tx: VecDeque<u64>,
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
/// A bundle member's traffic and speed are its bundle's, counted on the bundle's row.
pub(super) fn counts_in_total(l: &LineStatus) -> bool {
    l.bundle.is_none()
}

pub(super) fn clean(v: f64) -> f64 {
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
    pub(super) socket: PathBuf,
    pub(super) report: Option<StatusReport>,
    pub(super) history: HashMap<String, History>,
    pub(super) total: History,
    pub(super) selected: usize,
    /// The first line shown (scrolling); kept so the view does not jump.
    pub(super) offset: usize,
    pub(super) confirm: Option<(Action, String)>,
    pub(super) message: Option<StatusMessage>,
    pub(super) connection: Connection,
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
            if counts_in_total(l) {
                rx += clean(l.rx_rate);
                tx += clean(l.tx_rate);
            }
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

    pub(super) fn lines(&self) -> &[LineStatus] {
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

    pub(super) fn report_time(&self) -> f64 {
        self.report.as_ref().map_or(0.0, |r| r.time)
    }

    /// Scrolls so that the selection is among the `rows` lines shown.
    pub(super) fn scroll(&mut self, rows: usize) {
        let rows = rows.max(1);
        if self.selected < self.offset {
            self.offset = self.selected;
        } else if self.selected >= self.offset + rows {
            self.offset = self.selected + 1 - rows;
        }
        self.offset = self.offset.min(self.lines().len().saturating_sub(rows));
    }
}
