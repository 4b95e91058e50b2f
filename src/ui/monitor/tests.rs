//! The monitor's model and screen on ratatui's `TestBackend`.

use std::path::Path;
use std::time::Duration;

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::buffer::Buffer;
use ratatui::style::Color;

use super::state::*;
use super::view::*;
use super::*;
use crate::control::{AdminState, LineState, LineStatus, Policy, Request, Response, StatusReport};
use crate::ui::format;
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
        state: LineState::Up,
        since: 0.0,
        admin: AdminState::Up,
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
        daemon: None,
        time: 1000.0,
        policy: Policy::Weighted,
        lines: vec![
            up_line("ttyS0", 0, 57_600, 4800.0, 0.625),
            up_line("ttyS1", 1, 33_600, 2880.0, 0.375),
            crate::ui::fixtures::holdoff_line(),
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
    assert_eq!(state_style(&LineState::Up).fg, Some(Color::Green));
    assert_eq!(state_style(&LineState::Failed).fg, Some(Color::Red));
    assert_eq!(state_style(&LineState::Down).fg, Some(Color::DarkGray));
    assert_eq!(state_style(&LineState::DialChat).fg, Some(Color::Yellow));
    assert_eq!(state_style(&LineState::NoInternet).fg, Some(Color::Red));
    assert_eq!(state_style(&LineState::Degraded).fg, Some(Color::Yellow));
}

#[test]
fn a_line_without_the_internet_shows_so_with_its_round_trip() {
    let mut report = sample();
    report.lines[0].state = LineState::NoInternet;
    report.lines[0].last_error = Some("no Internet: ping 1.1.1.1: no answer".into());
    report.lines[1].lcp_rtt_ms = Some(41.4);
    let mut s = state_with(report);
    let (buf, rows) = draw(&mut s, 120, 30);
    assert!(rows[1].contains("RTT"), "{}", rows[1]);
    let s0 = row_with(&rows, "ttyS0");
    assert!(s0.contains("no-internet"), "{s0}");
    let (x, y) = position(&rows, "no-internet");
    assert_eq!(buf[(x, y)].fg, Color::Red);
    let s1 = row_with(&rows, "ttyS1");
    assert!(s1.contains("41ms"), "{s1}");
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
        daemon: None,
        time: 0.0,
        policy: Policy::RoundRobin,
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
        daemon: None,
        time: 5.0,
        policy: Policy::default(),
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
        state: LineState::Up,
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
        daemon: None,
        time: f64::NAN,
        policy: Policy::Other("p".repeat(300)),
        lines: vec![
            odd("nan", f64::NAN, f64::NAN),
            odd("inf", f64::INFINITY, f64::INFINITY),
            odd("neg", -5.0, -1.0),
            odd("huge", 1e300, 7.0),
            odd("", 0.0, 0.0),
            odd(&"long-name-".repeat(10), f64::MAX, 0.5),
            odd("ünïcödé 名前", 1.0, 0.5),
            LineStatus {
                state: LineState::Holdoff,
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
        const STATES: [LineState; 4] =
            [LineState::Up, LineState::Down, LineState::Holdoff, LineState::DialChat];
        const KEYS: [char; 9] = ['j', 'k', 'h', 'u', 'y', 'n', 'G', 'g', 'x'];
        let report = StatusReport {
            daemon: None,
            time: lines.first().map_or(0.0, |l| l.0),
            policy: Policy::Weighted,
            lines: lines
                .iter()
                .enumerate()
                .map(|(i, &(rx, tx, share, speed, state))| LineStatus {
                    name: format!("l{i}"),
                    state: STATES[state].clone(),
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

/// A Multilink bundle is a row of its own naming its members; each member says which bundle
/// it is in; the total counts the members' traffic and speed once, as the bundle's.
#[test]
fn a_bundle_row_names_its_members_and_the_total_counts_them_once() {
    let member = |name: &str, n: u8| LineStatus {
        local: None,
        peer: None,
        bundle: Some("isp".into()),
        ..up_line(name, n, 57_600, 3600.0, 0.0)
    };
    let bundle = LineStatus {
        members: Some(vec!["ttyS1".into(), "ttyS2".into()]),
        ..up_line("isp", 1, 115_200, 7200.0, 1.0)
    };
    let mut s = state_with(StatusReport {
        daemon: None,
        time: 1000.0,
        policy: Policy::Weighted,
        lines: vec![member("ttyS1", 1), member("ttyS2", 2), bundle],
    });
    let (_, rows) = draw(&mut s, 140, 30);
    let isp = row_with(&rows, "bundle of");
    assert!(
        isp.contains("isp") && isp.contains("bundle of ttyS1, ttyS2"),
        "{isp}"
    );
    assert!(isp.contains("115200"), "{isp}");
    assert!(row_with(&rows, "ttyS2 ").contains("in bundle isp"));
    // 7200 + 900 B/s of the bundle's 14400 B/s, not the members' twice over.
    let total = row_with(&rows, "TOTAL");
    assert!(total.contains(&format::rate(8100.0)), "{total}");
    assert!(
        total.contains(&format!("of {}", format::rate(14_400.0))),
        "{total}"
    );
}
