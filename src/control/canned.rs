//! A canned daemon: a [`ControlHandler`] with three made-up lines whose counters grow on
//! every status report. It backs the hidden `control-test-server` subcommand and the tests of
//! the CLI, so the status and watch output can be tried without modems.

use std::net::Ipv4Addr;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use super::protocol::{AdminState, LineState, LineStatus, Policy, Request, Response, StatusReport};
use super::server::ControlHandler;

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Three lines: `ttyS0` up at 57600, `ttyS1` up at 33600, `ttyUSB0` in holdoff after a BUSY.
/// `hangup` puts a line `down` (admin `down`, no addresses, no traffic); `up` brings a hung-up
/// line back as it was first made up (so `ttyS0` and `ttyS1` are `up` again).
#[derive(Debug)]
pub struct CannedHandler {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    start: f64,
    reports: u64,
    lines: Vec<LineStatus>,
    /// Each line as first made up: what `up` brings a hung-up line back to.
    initial: Vec<LineStatus>,
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
            state: LineState::Up,
            since: start - 192.0 * f64::from(n + 1),
            admin: AdminState::Up,
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
            state: LineState::Holdoff,
            since: start - 4.0,
            admin: AdminState::Up,
            redials: 3,
            last_error: Some("dial-chat: BUSY".into()),
            next_attempt: Some(start + 8.0),
            // A cellular modem: its network and signal as last checked.
            cellular: Some(crate::cellular::CellStatus {
                sim: Some(crate::cellular::SimState::Ready),
                registration: Some(crate::cellular::Registration::Home),
                operator: Some("SimNet".into()),
                tech: Some(crate::cellular::AccessTech::Lte),
                signal: Some(crate::cellular::Signal { dbm: -96, bars: 2 }),
                ..Default::default()
            }),
            ..LineStatus::default()
        };
        let lines = vec![up("ttyS0", 0, 57_600), up("ttyS1", 1, 33_600), holdoff];
        CannedHandler {
            state: Mutex::new(State {
                start,
                reports: 0,
                initial: lines.clone(),
                lines,
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
            .map(|l| match (&l.state, l.connect_speed) {
                (LineState::Up, Some(speed)) => {
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
            policy: Policy::Weighted,
            lines: s
                .lines
                .iter()
                .filter(|l| line.is_none_or(|n| n == l.name))
                .cloned()
                .collect(),
            daemon: None,
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
        let State { lines, initial, .. } = &mut *s;
        for (l, first) in lines
            .iter_mut()
            .zip(initial.iter())
            .filter(|(l, _)| names.is_empty() || names.contains(&l.name))
        {
            if up {
                // A hung-up line comes back as it was first made up (ttyS0 and ttyS1 `up`
                // with their addresses, ttyUSB0 in holdoff); the traffic counters go on.
                if l.admin == AdminState::Down {
                    *l = LineStatus {
                        since: now,
                        rx_bytes: l.rx_bytes,
                        tx_bytes: l.tx_bytes,
                        next_attempt: first.next_attempt.map(|_| now + 8.0),
                        ..first.clone()
                    };
                }
            } else {
                l.admin = AdminState::Down;
                l.state = LineState::Down;
                l.since = now;
                l.local = None;
                l.peer = None;
                l.dns.clear();
                l.connect_speed = None;
                l.mru = None;
                l.next_attempt = None;
            }
            changed.push(l.name.clone());
        }
        Response::Ok {
            message: if up {
                format!("brought up {}", changed.join(", "))
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
            Request::Shutdown => Response::Error {
                message: "the canned server does not stop on request".into(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(h: &CannedHandler) -> Vec<LineStatus> {
        match h.report(None) {
            Response::Status(r) => r.lines,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn hangup_and_up_change_the_state() {
        let h = CannedHandler::new();
        let before = lines(&h);
        assert_eq!(before[1].state, LineState::Up);
        assert_eq!(
            h.set_admin(&["ttyS1".into()], false),
            Response::Ok {
                message: "hung up ttyS1".into()
            }
        );
        let after = lines(&h);
        assert_eq!(
            (&after[1].state, &after[1].admin),
            (&LineState::Down, &AdminState::Down)
        );
        assert_eq!(after[1].local, None);
        assert_eq!((after[1].rx_rate, after[1].share), (0.0, 0.0));
        assert_eq!(after[0].state, LineState::Up);
        assert!((after[0].share + after[2].share - 1.0).abs() < 1e-9);
        assert_eq!(
            h.set_admin(&["ttyS1".into()], true),
            Response::Ok {
                message: "brought up ttyS1".into()
            }
        );
        let again = lines(&h);
        assert_eq!(
            (&again[1].state, &again[1].admin),
            (&LineState::Up, &AdminState::Up)
        );
        assert_eq!(again[1].local, before[1].local);
        assert_eq!(again[1].connect_speed, Some(33_600));
        assert!(again[1].rx_rate > 0.0);
        assert!(again[1].rx_bytes >= after[1].rx_bytes);
        // `up` of a line that is not held down changes nothing.
        h.set_admin(&[], true);
        assert_eq!(lines(&h)[2].state, LineState::Holdoff);
        assert!(matches!(
            h.set_admin(&["ttyS9".into()], false),
            Response::Error { .. }
        ));
    }
}
