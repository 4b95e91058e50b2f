//! The daemon's status report as text: the `status` table with its summary and a detailed
//! block per line (the getpppinfo successor), and `watch`'s one line per report. The colours
//! of states come from [`format::state_paint`], shared with the monitor.

use super::format::{self, Cell, Table};
use crate::control::{LineState, LineStatus, StatusReport};

fn opt<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".into(), |v| v.to_string())
}

/// The state, with the time to the next attempt in `holdoff`.
pub fn state_text(line: &LineStatus, now: f64) -> String {
    match (&line.state, line.next_attempt) {
        (LineState::Holdoff, Some(next)) => {
            format!("holdoff (next {})", format::duration(next - now))
        }
        (state, _) => state.to_string(),
    }
}

/// A reported name, or `-` where the report has none.
pub fn or_dash(name: &str) -> &str {
    if name.is_empty() { "-" } else { name }
}

fn addresses(list: &[std::net::Ipv4Addr]) -> String {
    if list.is_empty() {
        "-".into()
    } else {
        list.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// The round trip through the line: the probes' (the Internet's), else the LCP echo's (the
/// ISP's), in milliseconds; shared with the monitor.
pub fn rtt_text(l: &LineStatus) -> String {
    l.track
        .as_ref()
        .and_then(|t| t.rtt_ms)
        .or(l.lcp_rtt_ms)
        .map_or_else(|| "-".into(), |ms| format!("{ms:.0}ms"))
}

/// Upstream tracking in words: `online, rtt 34 ms ±5, loss 0 %, probes 12.0 KB (~620.0 KB/day)`.
fn internet_text(t: &crate::control::TrackStatus) -> String {
    let mut parts = vec![t.internet.to_string()];
    if let Some(reason) = &t.reason {
        parts[0] = format!("{} ({reason})", t.internet);
    }
    if let Some(rtt) = t.rtt_ms {
        parts.push(format!(
            "rtt {rtt:.0} ms ±{:.0}",
            t.jitter_ms.unwrap_or_default()
        ));
    }
    parts.push(format!("loss {}", format::percent(t.loss)));
    parts.push(format!(
        "probes {} (~{}/day)",
        format::bytes(t.probe_bytes as f64),
        format::bytes(t.probe_bytes_per_day as f64)
    ));
    parts.join(", ")
}

/// The status table: one row per line.
pub fn render_table(report: &StatusReport, colour: bool) -> String {
    let mut table = Table::new(&[
        ("LINE", false),
        ("STATE", false),
        ("SINCE", true),
        ("LOCAL", false),
        ("PEER", false),
        ("DNS", false),
        ("SPEED", true),
        ("MRU", true),
        ("RX", true),
        ("TX", true),
        ("RX/s", true),
        ("TX/s", true),
        ("SHARE", true),
        ("RTT", true),
        ("REDIALS", true),
        ("LAST ERROR", false),
    ]);
    for l in &report.lines {
        table.row(vec![
            l.name.as_str().into(),
            Cell::styled(state_text(l, report.time), format::state_style(&l.state)),
            format::duration(report.time - l.since).into(),
            opt(l.local).into(),
            opt(l.peer).into(),
            addresses(&l.dns).into(),
            opt(l.connect_speed).into(),
            opt(l.mru).into(),
            format::bytes(l.rx_bytes as f64).into(),
            format::bytes(l.tx_bytes as f64).into(),
            format::rate(l.rx_rate).into(),
            format::rate(l.tx_rate).into(),
            format::percent(l.share).into(),
            rtt_text(l).into(),
            l.redials.to_string().into(),
            l.last_error.as_deref().unwrap_or("-").into(),
        ]);
    }
    table.render(colour)
}

/// The summary line above the table.
pub fn render_summary(report: &StatusReport) -> String {
    let up = report
        .lines
        .iter()
        .filter(|l| l.state == LineState::Up)
        .count();
    let rx: f64 = report.lines.iter().map(|l| l.rx_rate).sum();
    let tx: f64 = report.lines.iter().map(|l| l.tx_rate).sum();
    let cut_off = report
        .lines
        .iter()
        .filter(|l| matches!(l.state, LineState::NoInternet | LineState::Degraded))
        .count();
    format!(
        "policy {}, {} of {} line{} up{}, rx {}, tx {}\n",
        or_dash(report.policy.as_str()),
        up,
        report.lines.len(),
        if report.lines.len() == 1 { "" } else { "s" },
        if cut_off > 0 {
            format!(" ({cut_off} connected without the Internet)")
        } else {
            String::new()
        },
        format::rate(rx),
        format::rate(tx),
    )
}

/// Everything about one line, `key  value` per row.
pub fn render_detail(l: &LineStatus, now: f64) -> String {
    let mut rows: Vec<(&str, String)> = vec![
        (
            "device",
            match &l.tty {
                Some(tty) => format!("{} (now {tty})", l.device),
                None => l.device.clone(),
            },
        ),
        ("interface", l.slave.clone()),
        (
            "state",
            format!(
                "{} for {} (asked: {})",
                l.state,
                format::duration(now - l.since),
                or_dash(l.admin.as_str())
            ),
        ),
        ("doing", opt(l.detail.as_deref())),
        ("local", opt(l.local)),
        ("peer", opt(l.peer)),
        ("dns", addresses(&l.dns)),
        (
            "connect",
            l.connect_speed
                .map_or_else(|| "-".into(), |s| format!("{s} bit/s")),
        ),
        ("mru", opt(l.mru)),
        (
            "received",
            format!(
                "{} ({})",
                format::bytes(l.rx_bytes as f64),
                format::rate(l.rx_rate)
            ),
        ),
        (
            "sent",
            format!(
                "{} ({})",
                format::bytes(l.tx_bytes as f64),
                format::rate(l.tx_rate)
            ),
        ),
        ("share", format::percent(l.share)),
        (
            "conntrack",
            l.open_connections
                .map_or_else(|| "-".into(), |n| format!("{n} open connections")),
        ),
        (
            "queue",
            format!(
                "{} queued, {} packet{} dropped",
                format::bytes(l.queued_bytes as f64),
                l.dropped_packets,
                if l.dropped_packets == 1 { "" } else { "s" }
            ),
        ),
        ("redials", l.redials.to_string()),
        ("last error", opt(l.last_error.as_deref())),
    ];
    if let Some(t) = &l.track {
        rows.push(("internet", internet_text(t)));
    }
    if let Some(c) = &l.cellular {
        rows.push(("cellular", cellular_text(c)));
    }
    if let Some(kind) = &l.slave_kind {
        rows.push(("slave kind", kind.clone()));
    }
    if let Some(b) = &l.bundle {
        rows.push(("bundle", format!("member of Multilink bundle {b}")));
    }
    if let Some(members) = &l.members {
        let up = match members.as_slice() {
            [] => "none up".to_string(),
            m => format!("{} up: {}", m.len(), m.join(", ")),
        };
        rows.push(("members", up));
    }
    if !l.resets.is_zero() || l.last_reset.is_some() {
        let mut text = format!(
            "modem {}, USB port {}, hook {}",
            l.resets.modem, l.resets.port, l.resets.hook
        );
        if let Some(last) = &l.last_reset {
            text += &format!(" (last: {last})");
        }
        rows.push(("resets", text));
    }
    if let Some(ms) = l.lcp_rtt_ms {
        rows.push(("lcp echo", format!("rtt {ms:.0} ms")));
    }
    if l.tier > 0 {
        rows.push((
            "tier",
            format!(
                "{} (carries traffic only while no lower tier has the Internet)",
                l.tier
            ),
        ));
    }
    if let Some(next) = l.next_attempt {
        rows.push(("next dial", format!("in {}", format::duration(next - now))));
    }
    let mut out = format!("{}:\n", l.name);
    for (key, value) in rows {
        out.push_str(&format!("  {key:<10}  {value}\n"));
    }
    out
}

/// A cellular modem in words: `registered, SimNet LTE, -96 dBm ▂▄▆_ (2/4), SIM ready, IMEI …`.
pub fn cellular_text(c: &crate::cellular::CellStatus) -> String {
    let mut parts = Vec::new();
    if let Some(r) = c.registration {
        parts.push(r.as_str().to_string());
    }
    parts.extend(c.network());
    if let Some(s) = c.signal {
        parts.push(format!(
            "{} dBm {} ({}/4)",
            s.dbm,
            signal_bars(s.bars),
            s.bars
        ));
    }
    if let Some(sim) = &c.sim {
        parts.push(format!("SIM {sim}"));
    }
    if let Some(imei) = &c.imei {
        parts.push(format!("IMEI {imei}"));
    }
    if let Some(iccid) = &c.iccid {
        parts.push(format!("ICCID {iccid}"));
    }
    parts.join(", ")
}

/// Signal bars: `▂▄▆█` for 4, `▂▄__` for 2.
pub fn signal_bars(bars: u8) -> String {
    ['▂', '▄', '▆', '█']
        .iter()
        .enumerate()
        .map(|(i, c)| if (i as u8) < bars { *c } else { '_' })
        .collect()
}

/// The whole human output of `status`.
pub fn render(report: &StatusReport, detail: bool, colour: bool) -> String {
    let mut out = render_summary(report);
    if report.lines.is_empty() {
        out.push_str("no lines configured\n");
        return out;
    }
    out.push_str(&render_table(report, colour));
    if detail {
        for l in &report.lines {
            out.push('\n');
            out.push_str(&render_detail(l, report.time));
        }
    }
    out
}

/// One report as one line: `12:34:56  ttyS0 up rx 5.3 KiB/s tx 700 B/s 62% | … | total …`.
pub fn watch_line(report: &StatusReport, colour: bool) -> String {
    let mut parts = Vec::with_capacity(report.lines.len() + 1);
    for l in &report.lines {
        let state = format::paint(
            l.state.as_str(),
            colour.then(|| format::state_style(&l.state)),
        );
        if l.state == LineState::Up || l.rx_rate > 0.0 || l.tx_rate > 0.0 {
            parts.push(format!(
                "{} {} rx {} tx {} {}",
                l.name,
                state,
                format::rate(l.rx_rate),
                format::rate(l.tx_rate),
                format::percent(l.share)
            ));
        } else {
            parts.push(format!("{} {}", l.name, state));
        }
    }
    let rx: f64 = report.lines.iter().map(|l| l.rx_rate).sum();
    let tx: f64 = report.lines.iter().map(|l| l.tx_rate).sum();
    parts.push(format!(
        "total rx {} tx {}",
        format::rate(rx),
        format::rate(tx)
    ));
    format!("{}  {}\n", format::clock(report.time), parts.join(" | "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::{AdminState, Policy};
    use std::net::Ipv4Addr;

    fn sample() -> StatusReport {
        StatusReport {
            daemon: None,
            time: 1000.0,
            policy: Policy::Weighted,
            lines: vec![
                LineStatus {
                    name: "ttyS0".into(),
                    device: "/dev/ttyS0".into(),
                    slave: "eq-ttyS0".into(),
                    state: LineState::Up,
                    since: 808.0,
                    admin: AdminState::Up,
                    local: Some(Ipv4Addr::new(10, 64, 0, 2)),
                    peer: Some(Ipv4Addr::new(10, 64, 0, 1)),
                    dns: vec![Ipv4Addr::new(10, 64, 0, 53), Ipv4Addr::new(10, 64, 0, 54)],
                    connect_speed: Some(57_600),
                    mru: Some(1500),
                    rx_bytes: 5_600_000,
                    tx_bytes: 700_000,
                    rx_rate: 5427.0,
                    tx_rate: 700.0,
                    share: 0.624,
                    lcp_rtt_ms: Some(38.4),
                    track: Some(crate::control::TrackStatus {
                        internet: crate::control::Internet::Online,
                        reason: None,
                        rtt_ms: Some(41.2),
                        jitter_ms: Some(3.0),
                        loss: 0.0,
                        probe_bytes: 12_288,
                        probe_bytes_per_day: 614_400,
                    }),
                    ..LineStatus::default()
                },
                crate::ui::fixtures::holdoff_line(),
            ],
        }
    }

    #[test]
    fn table() {
        let text = render(&sample(), false, false);
        let expected = "\
policy weighted, 1 of 2 lines up, rx 5.3 KiB/s, tx 700 B/s
LINE     STATE              SINCE  LOCAL      PEER       DNS                    SPEED   MRU       RX         TX       RX/s     TX/s  SHARE   RTT  REDIALS  LAST ERROR
ttyS0    up                 3m12s  10.64.0.2  10.64.0.1  10.64.0.53,10.64.0.54  57600  1500  5.3 MiB  683.6 KiB  5.3 KiB/s  700 B/s    62%  41ms        0  -
ttyUSB0  holdoff (next 8s)     4s  -          -          -                          -     -      0 B        0 B      0 B/s    0 B/s     0%     -        3  dial-chat: BUSY
";
        assert_eq!(text, expected, "\n{text}");
    }

    #[test]
    fn detail_shows_the_internet_behind_a_tracked_line() {
        let report = sample();
        let text = render_detail(&report.lines[0], report.time);
        assert!(
            text.contains(
                "  internet    online, rtt 41 ms ±3, loss 0%, probes 12.0 KiB (~600.0 KiB/day)\n"
            ),
            "{text}"
        );
        assert!(text.contains("  lcp echo    rtt 38 ms\n"), "{text}");
        let mut cut = report.clone();
        cut.lines[0].state = LineState::NoInternet;
        let summary = render_summary(&cut);
        assert!(
            summary.contains("0 of 2 lines up (1 connected without the Internet)"),
            "{summary}"
        );
    }

    #[test]
    fn detail_of_one_line() {
        let report = sample();
        let text = render_detail(&report.lines[1], report.time);
        assert!(
            text.starts_with("ttyUSB0:\n  device      /dev/ttyUSB0\n"),
            "{text}"
        );
        assert!(
            text.contains("  state       holdoff for 4s (asked: up)\n"),
            "{text}"
        );
        assert!(text.contains("  last error  dial-chat: BUSY\n"), "{text}");
        assert!(text.ends_with("  next dial   in 8s\n"), "{text}");
        assert!(
            text.contains("  queue       0 B queued, 0 packets dropped\n"),
            "{text}"
        );
    }

    #[test]
    fn no_lines() {
        let text = render(&StatusReport::default(), false, false);
        assert_eq!(
            text,
            "policy -, 0 of 0 lines up, rx 0 B/s, tx 0 B/s\nno lines configured\n"
        );
    }

    #[test]
    fn one_line_per_report() {
        let report = StatusReport {
            daemon: None,
            time: 0.0,
            policy: Policy::Weighted,
            lines: vec![
                LineStatus {
                    name: "ttyS0".into(),
                    state: LineState::Up,
                    rx_rate: 5427.0,
                    tx_rate: 700.0,
                    share: 0.624,
                    ..LineStatus::default()
                },
                LineStatus {
                    name: "ttyS1".into(),
                    state: LineState::Up,
                    rx_rate: 3200.0,
                    tx_rate: 500.0,
                    share: 0.376,
                    ..LineStatus::default()
                },
                LineStatus {
                    name: "ttyUSB0".into(),
                    state: LineState::Holdoff,
                    ..LineStatus::default()
                },
            ],
        };
        let line = watch_line(&report, false);
        let (clock, rest) = line.split_at(8);
        assert_eq!(clock, format::clock(0.0));
        assert_eq!(
            rest,
            "  ttyS0 up rx 5.3 KiB/s tx 700 B/s 62% | ttyS1 up rx 3.1 KiB/s tx 500 B/s 38% \
             | ttyUSB0 holdoff | total rx 8.4 KiB/s tx 1.2 KiB/s\n"
        );
        let coloured = watch_line(&report, true);
        assert!(
            coloured.contains("ttyS0 \x1b[32mup\x1b[0m rx"),
            "{coloured:?}"
        );
        assert!(
            coloured.contains("ttyUSB0 \x1b[33mholdoff\x1b[0m"),
            "{coloured:?}"
        );
    }
}
