//! A canned daemon: a [`ControlHandler`] with three made-up lines whose counters grow on
//! every status report. It backs the hidden `control-test-server` subcommand and the tests of
//! the CLI, so the status and watch output can be tried without modems.

use std::net::Ipv4Addr;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use super::protocol::{LineStatus, Request, Response, StatusReport};
use super::server::ControlHandler;

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Three lines: `ttyS0` up at 57600, `ttyS1` up at 33600, `ttyUSB0` in holdoff after a BUSY.
#[derive(Debug)]
pub struct CannedHandler {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    start: f64,
    reports: u64,
    lines: Vec<LineStatus>,
    reloads: u32,
}

impl Default for CannedHandler {
    fn default() -> Self {
        Self::new()
    }
}

impl CannedHandler {
    pub fn new() -> CannedHandler {
        let start = unix_now();
        let up = |name: &str, n: u8, speed: u32| LineStatus {
            name: name.into(),
            device: format!("/dev/{name}"),
            slave: format!("eq-{name}"),
            state: "up".into(),
            since: start - 192.0 * f64::from(n + 1),
            admin: "up".into(),
            local: Some(Ipv4Addr::new(10, 64, n, 2)),
            peer: Some(Ipv4Addr::new(10, 64, n, 1)),
            dns: vec![Ipv4Addr::new(10, 64, 0, 53)],
            connect_speed: Some(speed),
            mru: Some(1500),
            ..LineStatus::default()
        };
        let holdoff = LineStatus {
            name: "ttyUSB0".into(),
            device: "/dev/ttyUSB0".into(),
            slave: "eq-ttyUSB0".into(),
            state: "holdoff".into(),
            since: start - 4.0,
            admin: "up".into(),
            redials: 3,
            last_error: Some("dial-chat: BUSY".into()),
            next_attempt: Some(start + 8.0),
            ..LineStatus::default()
        };
        CannedHandler {
            state: Mutex::new(State {
                start,
                reports: 0,
                lines: vec![up("ttyS0", 0, 57_600), up("ttyS1", 1, 33_600), holdoff],
                reloads: 0,
            }),
        }
    }

    fn report(&self, line: Option<&str>) -> Response {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(name) = line
            && !s.lines.iter().any(|l| l.name == name)
        {
            return Response::Error {
                message: format!("no line named {name}"),
            };
        }
        s.reports += 1;
        let k = s.reports as f64;
        // Rates in bytes per second that the made-up traffic has; rx grows per report.
        let rates: Vec<(f64, f64)> = s
            .lines
            .iter()
            .map(|l| match (l.state.as_str(), l.connect_speed) {
                ("up", Some(speed)) => {
                    let rx = f64::from(speed) / 10.0 * (0.7 + 0.05 * (k % 5.0));
                    (rx, rx / 8.0)
                }
                _ => (0.0, 0.0),
            })
            .collect();
        let total: f64 = rates.iter().map(|(r, t)| r + t).sum();
        for (l, (rx, tx)) in s.lines.iter_mut().zip(&rates) {
            l.rx_rate = *rx;
            l.tx_rate = *tx;
            l.rx_bytes += *rx as u64;
            l.tx_bytes += *tx as u64;
            l.share = if total > 0.0 { (rx + tx) / total } else { 0.0 };
        }
        Response::Status(StatusReport {
            time: s.start.max(unix_now()),
            policy: "weighted".into(),
            lines: s
                .lines
                .iter()
                .filter(|l| line.is_none_or(|n| n == l.name))
                .cloned()
                .collect(),
        })
    }

    fn set_admin(&self, names: &[String], up: bool) -> Response {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(bad) = names
            .iter()
            .find(|n| !s.lines.iter().any(|l| &l.name == *n))
        {
            return Response::Error {
                message: format!("no line named {bad}"),
            };
        }
        let now = unix_now();
        let mut changed = Vec::new();
        for l in s
            .lines
            .iter_mut()
            .filter(|l| names.is_empty() || names.contains(&l.name))
        {
            l.admin = if up { "up" } else { "down" }.into();
            l.state = if up { "dial-chat" } else { "down" }.into();
            l.since = now;
            if !up {
                l.local = None;
                l.peer = None;
                l.dns.clear();
                l.connect_speed = None;
                l.mru = None;
            }
            changed.push(l.name.clone());
        }
        Response::Ok {
            message: if up {
                format!("dialing {}", changed.join(", "))
            } else {
                format!("hung up {}", changed.join(", "))
            },
        }
    }
}

impl ControlHandler for CannedHandler {
    async fn handle(&self, request: Request) -> Response {
        match request {
            Request::Status { line } => self.report(line.as_deref()),
            Request::Up { lines } => self.set_admin(&lines, true),
            Request::Hangup { lines } if lines.is_empty() => Response::Error {
                message: "hangup: name at least one line".into(),
            },
            Request::Hangup { lines } => self.set_admin(&lines, false),
            Request::Reload => {
                let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
                s.reloads += 1;
                Response::Ok {
                    message: format!("configuration reloaded (reload #{})", s.reloads),
                }
            }
            Request::Subscribe { .. } => Response::Error {
                message: "subscribe is handled by the server".into(),
            },
        }
    }
}
