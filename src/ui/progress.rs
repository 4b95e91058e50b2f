//! `up`'s progress view: one row per requested line that follows its state as it moves
//! (opening → init → dialing, with the modem's answers → CONNECT 57600 → PPP → up 10.64.1.2)
//! until every line is up or has failed. Pure: fed status reports and the time, it says what
//! to print; `cmd::up` draws the rows in place on a terminal, or prints each change as a line.

use super::format::{self, style};
use crate::control::{LineState, LineStatus, StatusReport};

/// How a requested line ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Up,
    /// Failed, and why (the daemon keeps redialling it).
    Failed(String),
}

/// One requested line.
#[derive(Debug, Clone)]
struct Row {
    name: String,
    /// The latest state, in words.
    text: String,
    state: LineState,
    outcome: Option<Outcome>,
    /// When the outcome was decided (seconds since the epoch).
    ended: Option<f64>,
}

/// The requested lines and what became of them.
#[derive(Debug, Clone)]
pub struct Progress {
    /// When `up` was asked (seconds since the epoch): a failure before then is an old one.
    started: f64,
    /// The lines asked for; empty: every line that is not disabled in the first report.
    requested: Vec<String>,
    rows: Vec<Row>,
    /// Whether a report has been seen (the rows are known).
    seen: bool,
}

/// The spinner's frames (braille, one per draw).
const SPINNER: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

impl Progress {
    pub fn new(requested: Vec<String>, started: f64) -> Progress {
        Progress {
            started,
            requested,
            rows: Vec::new(),
            seen: false,
        }
    }

    /// Takes a report in; the rows whose text changed, as `name: text` lines (what the plain
    /// output prints).
    pub fn on_report(&mut self, report: &StatusReport) -> Vec<String> {
        if !self.seen {
            self.seen = true;
            self.rows = report
                .lines
                .iter()
                .filter(|l| {
                    if self.requested.is_empty() {
                        l.state != LineState::Disabled
                    } else {
                        self.requested.contains(&l.name)
                    }
                })
                .map(|l| Row {
                    name: l.name.clone(),
                    text: String::new(),
                    state: l.state.clone(),
                    outcome: None,
                    ended: None,
                })
                .collect();
        }
        let mut changed = Vec::new();
        let mut pending_bundles: Vec<(String, Vec<String>)> = Vec::new();
        for row in &mut self.rows {
            if row.outcome.is_some() {
                continue;
            }
            let Some(line) = report.lines.iter().find(|l| l.name == row.name) else {
                row.outcome = Some(Outcome::Failed("removed from the configuration".into()));
                row.ended = Some(report.time);
                row.text = "failed: removed from the configuration".into();
                changed.push(format!("{}: {}", row.name, row.text));
                continue;
            };
            row.state = line.state.clone();
            row.outcome = outcome(line, self.started);
            if line.members.is_some() {
                // A Multilink bundle: up once a member brought its IP up; it fails only
                // when its lines are done and none of them joined it.
                row.outcome = matches!(
                    line.state,
                    LineState::Up | LineState::NoInternet | LineState::Degraded
                )
                .then_some(Outcome::Up);
                pending_bundles.push((row.name.clone(), line.members.clone().unwrap_or_default()));
            }
            if row.outcome.is_some() {
                row.ended = Some(report.time);
            }
            let text = describe(line, row.outcome.as_ref(), report.time);
            if text != row.text {
                row.text = text;
                changed.push(format!("{}: {}", row.name, row.text));
            }
        }
        let lines_done = self
            .rows
            .iter()
            .filter(|r| !pending_bundles.iter().any(|(b, _)| *b == r.name))
            .all(|r| r.outcome.is_some());
        for (bundle, members) in pending_bundles {
            let Some(row) = self.rows.iter_mut().find(|r| r.name == bundle) else {
                continue;
            };
            if row.outcome.is_none() && lines_done && members.is_empty() {
                row.outcome = Some(Outcome::Failed("none of its lines joined it".into()));
                row.ended = Some(report.time);
                row.text = "failed: none of its lines joined it".into();
                changed.push(format!("{}: {}", row.name, row.text));
            }
        }
        changed
    }

    /// Every requested line is up or has failed (and a report has been seen).
    pub fn finished(&self) -> bool {
        self.seen && self.rows.iter().all(|r| r.outcome.is_some())
    }

    /// Every requested line came up.
    pub fn all_up(&self) -> bool {
        self.seen && self.rows.iter().all(|r| r.outcome == Some(Outcome::Up))
    }

    /// Names the lines were asked for that no report has (only before the first report).
    pub fn is_empty(&self) -> bool {
        self.seen && self.rows.is_empty()
    }

    /// Gives up on the lines still on their way: they failed, with the time waited.
    pub fn time_out(&mut self, now: f64, waited: &str) -> Vec<String> {
        let mut changed = Vec::new();
        for row in &mut self.rows {
            if row.outcome.is_none() {
                let why = format!("still {} after {waited}", row.state);
                row.text = format!("timed out: {why}");
                row.outcome = Some(Outcome::Failed(why));
                row.ended = Some(now);
                changed.push(format!("{}: {}", row.name, row.text));
            }
        }
        changed
    }

    /// The lines that failed and why.
    pub fn failures(&self) -> Vec<(String, String)> {
        self.rows
            .iter()
            .filter_map(|r| match &r.outcome {
                Some(Outcome::Failed(why)) => Some((r.name.clone(), why.clone())),
                _ => None,
            })
            .collect()
    }

    /// The closing sentence: `2 lines up` or `1 of 2 lines failed: ttyS2 (BUSY)`.
    pub fn summary(&self) -> String {
        let n = self.rows.len();
        let lines = if n == 1 { "line" } else { "lines" };
        let failures = self.failures();
        if failures.is_empty() {
            return format!("{n} {lines} up");
        }
        let named: Vec<String> = failures
            .iter()
            .map(|(name, why)| format!("{name} ({why})"))
            .collect();
        format!(
            "{} of {n} {lines} did not come up: {}",
            failures.len(),
            named.join(", ")
        )
    }

    /// The rows for a terminal at `now`: name, a spinner (or ✔/✘), the state in words and
    /// the time taken; each cut to `width` columns so that none wraps (the rows are redrawn
    /// in place).
    pub fn render(&self, now: f64, frame: usize, colour: bool, width: usize) -> Vec<String> {
        let name_width = self.rows.iter().map(|r| r.name.len()).max().unwrap_or(0);
        self.rows
            .iter()
            .map(|r| {
                let (mark, paint) = match &r.outcome {
                    Some(Outcome::Up) => ('✔', style::GREEN),
                    Some(Outcome::Failed(_)) => ('✘', style::RED),
                    None => (
                        SPINNER[frame % SPINNER.len()],
                        format::state_style(&r.state),
                    ),
                };
                let elapsed = format::duration(r.ended.unwrap_or(now) - self.started);
                let row = format!(
                    "{:<name_width$}  {mark}  {:>5}  {}",
                    r.name, elapsed, r.text
                );
                let row = cut(&row, width.max(20));
                if colour {
                    format::paint(&row, Some(paint))
                } else {
                    row
                }
            })
            .collect()
    }
}

/// Whether a line has reached an end since `started`: up, or a failed attempt (holdoff,
/// failed) or a hangup that happened after `up` was asked.
fn outcome(line: &LineStatus, started: f64) -> Option<Outcome> {
    let recent = line.since >= started;
    match &line.state {
        LineState::Up | LineState::NoInternet | LineState::Degraded => Some(Outcome::Up),
        LineState::Holdoff | LineState::Failed if recent => Some(Outcome::Failed(clean(
            line.last_error.as_deref().unwrap_or("failed"),
        ))),
        LineState::Down if recent => Some(Outcome::Failed("hung up meanwhile".into())),
        // Waiting for a person (the SIM) or for the modem to be plugged in: not coming up now.
        LineState::SimLocked | LineState::NoDevice => Some(Outcome::Failed(clean(
            line.last_error.as_deref().unwrap_or(line.state.as_str()),
        ))),
        _ => None,
    }
}

/// The state in words: `dialing: CONNECT 57600`, `PPP: IPCP (CONNECT 57600)`,
/// `up 10.64.1.2 (57600 bit/s)`, `failed: BUSY (redials in 5s)`.
fn describe(line: &LineStatus, outcome: Option<&Outcome>, now: f64) -> String {
    let detail = line.detail.as_deref().map(clean);
    let with = |what: &str| match &detail {
        Some(d) => format!("{what}: {d}"),
        None => what.to_string(),
    };
    let speed = line
        .connect_speed
        .map(|s| format!("CONNECT {s}"))
        .unwrap_or_else(|| "CONNECT".into());
    match (&line.state, outcome) {
        (LineState::Up | LineState::NoInternet | LineState::Degraded, _) => {
            let mut text = match line.local {
                Some(a) => format!("up {a}"),
                None => "up".into(),
            };
            if let Some(s) = line.connect_speed {
                text += &format!(" ({s} bit/s)");
            }
            if line.state != LineState::Up {
                text += &format!(", {}", line.state);
            }
            text
        }
        (_, Some(Outcome::Failed(why))) => match line.next_attempt {
            Some(next) if next > now => {
                format!(
                    "failed: {why} (redials in {})",
                    format::duration(next - now + 0.999)
                )
            }
            _ => format!("failed: {why}"),
        },
        (LineState::Locking, _) => format!("opening {}", clean(&line.device)),
        (LineState::InitChat, _) => with("init"),
        (LineState::Registering, _) => with("registering"),
        (LineState::Resetting, _) => match &line.last_reset {
            Some(r) => format!("resetting: {}", clean(r)),
            None => "resetting".into(),
        },
        (LineState::DialChat, _) => with("dialing"),
        (LineState::Ppp, _) => match &detail {
            Some(d) => format!("{speed} · PPP: {d}"),
            None => format!("{speed} · PPP"),
        },
        (LineState::HangingUp, _) => match &line.last_error {
            Some(e) => format!("hanging up: {}", clean(e)),
            None => "hanging up".into(),
        },
        (LineState::Holdoff, _) => match line.next_attempt {
            Some(next) => format!("waiting to dial (in {})", format::duration(next - now)),
            None => "waiting to dial".into(),
        },
        (state, _) => state.to_string(),
    }
}

/// Text from the daemon, made safe to print: control characters become `?`, at most 200
/// characters.
fn clean(text: &str) -> String {
    text.chars()
        .take(200)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// `text` cut to `width` characters, with `…` where it was cut.
fn cut(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(width - 1).collect();
        s.push('…');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn line(name: &str, state: LineState, since: f64) -> LineStatus {
        LineStatus {
            name: name.into(),
            device: format!("/dev/{name}"),
            state,
            since,
            ..LineStatus::default()
        }
    }

    fn report(time: f64, lines: Vec<LineStatus>) -> StatusReport {
        StatusReport {
            time,
            lines,
            ..StatusReport::default()
        }
    }

    #[test]
    fn a_line_moves_from_opening_to_up() {
        let mut p = Progress::new(vec![], 100.0);
        let mut l = line("ttyS1", LineState::Locking, 100.1);
        assert_eq!(
            p.on_report(&report(100.2, vec![l.clone()])),
            ["ttyS1: opening /dev/ttyS1"]
        );
        l.state = LineState::DialChat;
        l.detail = Some("ATDT5551234".into());
        assert_eq!(
            p.on_report(&report(100.4, vec![l.clone()])),
            ["ttyS1: dialing: ATDT5551234"]
        );
        // Nothing new: nothing printed.
        assert!(p.on_report(&report(100.6, vec![l.clone()])).is_empty());
        l.state = LineState::Ppp;
        l.connect_speed = Some(57600);
        l.detail = Some("IPCP".into());
        assert_eq!(
            p.on_report(&report(101.0, vec![l.clone()])),
            ["ttyS1: CONNECT 57600 · PPP: IPCP"]
        );
        assert!(!p.finished());
        l.state = LineState::Up;
        l.detail = None;
        l.local = Some(Ipv4Addr::new(10, 64, 1, 2));
        assert_eq!(
            p.on_report(&report(102.0, vec![l.clone()])),
            ["ttyS1: up 10.64.1.2 (57600 bit/s)"]
        );
        assert!(p.finished() && p.all_up());
        assert_eq!(p.summary(), "1 line up");
        let rows = p.render(200.0, 0, false, 80);
        assert_eq!(rows, ["ttyS1  ✔     2s  up 10.64.1.2 (57600 bit/s)"]);
    }

    #[test]
    fn an_old_failure_is_not_this_attempt_but_a_new_one_is() {
        let mut p = Progress::new(vec![], 100.0);
        let mut l = line("ttyS2", LineState::Holdoff, 90.0);
        l.last_error = Some("BUSY".into());
        p.on_report(&report(100.1, vec![l.clone()]));
        assert!(!p.finished(), "a holdoff from before `up` is old news");
        l.since = 100.5;
        l.next_attempt = Some(105.5);
        assert_eq!(
            p.on_report(&report(100.6, vec![l.clone()])),
            ["ttyS2: failed: BUSY (redials in 5s)"]
        );
        assert!(p.finished() && !p.all_up());
        assert_eq!(p.summary(), "1 of 1 line did not come up: ttyS2 (BUSY)");
    }

    #[test]
    fn only_the_requested_or_enabled_lines_count() {
        let lines = vec![
            line("ttyS1", LineState::Locking, 100.0),
            line("ttyS2", LineState::Disabled, 50.0),
            line("ttyS3", LineState::Up, 50.0),
        ];
        let mut all = Progress::new(vec![], 100.0);
        all.on_report(&report(100.1, lines.clone()));
        assert_eq!(all.rows.len(), 2);
        let mut named = Progress::new(vec!["ttyS3".into()], 100.0);
        named.on_report(&report(100.1, lines));
        assert!(named.finished() && named.all_up());
    }

    #[test]
    fn a_bundle_is_up_with_its_ip_and_fails_only_when_no_line_joined_it() {
        let bundle = |state, members: &[&str]| LineStatus {
            members: Some(members.iter().map(|m| m.to_string()).collect()),
            ..line("isp", state, 100.0)
        };
        let mut p = Progress::new(vec![], 99.0);
        // Its lines are up (joined), its IP not yet: waiting, not failed.
        p.on_report(&report(
            101.0,
            vec![
                line("ttyS1", LineState::Up, 100.5),
                bundle(LineState::Down, &["ttyS1"]),
            ],
        ));
        assert!(!p.finished());
        p.on_report(&report(
            103.0,
            vec![
                line("ttyS1", LineState::Up, 100.5),
                bundle(LineState::Up, &["ttyS1"]),
            ],
        ));
        assert!(p.finished() && p.all_up());
        // Its only line failed: so does the bundle.
        let mut p = Progress::new(vec![], 99.0);
        p.on_report(&report(
            101.0,
            vec![
                line("ttyS1", LineState::Holdoff, 100.5),
                bundle(LineState::Down, &[]),
            ],
        ));
        assert!(p.finished() && !p.all_up());
        assert!(
            p.summary().contains("isp (none of its lines joined it)"),
            "{}",
            p.summary()
        );
    }

    #[test]
    fn time_out_fails_what_is_left_and_rows_never_wrap() {
        let mut p = Progress::new(vec![], 100.0);
        let mut l = line("ttyS1", LineState::DialChat, 100.0);
        l.detail = Some(format!("{}\u{1b}[2J", "R".repeat(300)));
        p.on_report(&report(100.1, vec![l]));
        let rows = p.render(101.0, 3, true, 40);
        assert!(
            !rows[0].contains("\u{1b}[2J"),
            "control characters are cleaned"
        );
        let plain = p.render(101.0, 3, false, 40);
        assert_eq!(plain[0].chars().count(), 40);
        assert_eq!(
            p.time_out(220.0, "2m00s"),
            ["ttyS1: timed out: still dial-chat after 2m00s"]
        );
        assert!(p.finished() && !p.all_up());
    }
}
