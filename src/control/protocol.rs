//! The control protocol between the CLI and the daemon: one JSON object per line over a Unix
//! socket, each request answered by exactly one response (a `subscribe` request is answered
//! by a stream of `status` responses until the client goes away).
//!
//! Requests carry the protocol version; the daemon refuses other versions with an error
//! response rather than guessing.

use std::fmt;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// Longest request line the daemon reads; longer ones are answered with an error.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// A request, as sent on the wire: `{"version":1,"cmd":"hangup","lines":["ttyS1"]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub version: u32,
    #[serde(flatten)]
    pub request: Request,
}

/// What the CLI asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    /// Bring lines up (administratively): the named ones, or every enabled line if empty.
    Up {
        #[serde(default)]
        lines: Vec<String>,
    },
    /// Bring lines down and keep them down until `up`.
    Hangup { lines: Vec<String> },
    /// The state of one line or all.
    Status {
        #[serde(default)]
        line: Option<String>,
    },
    /// Re-read the configuration.
    Reload,
    /// A status report now and then every `interval_ms`, until the client disconnects.
    Subscribe {
        #[serde(default = "default_interval_ms")]
        interval_ms: u64,
    },
    /// Hang every line up and exit (as on SIGTERM): `down` for a daemon that `up` started.
    Shutdown,
}

fn default_interval_ms() -> u64 {
    1000
}

/// What the daemon answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum Response {
    /// Done; `message` says what happened, in words.
    Ok { message: String },
    /// Refused or failed; `message` says why.
    Error { message: String },
    /// A status report.
    Status(StatusReport),
}

/// The state of the daemon and its lines (the getpppinfo successor).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct StatusReport {
    /// Seconds since the Unix epoch when this report was made.
    pub time: f64,
    pub policy: Policy,
    pub lines: Vec<LineStatus>,
    /// The daemon itself (absent in reports of daemons before 0.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daemon: Option<DaemonInfo>,
}

/// The daemon that answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonInfo {
    pub pid: u32,
    pub version: String,
    /// Who started it; `down` stops a daemon that `up` started.
    pub started_by: StartedBy,
}

/// Who started the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StartedBy {
    /// systemd (the service).
    Systemd,
    /// `eqlplus-dialer up`, as a background daemon of its own.
    Up,
    /// Someone ran `eqlplus-dialer daemon` (in a terminal, a script, a test).
    Hand,
}

/// One line's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct LineStatus {
    pub name: String,
    pub device: String,
    pub slave: String,
    pub state: LineState,
    /// Seconds since the Unix epoch when the line entered `state`.
    pub since: f64,
    /// What the administrator asked.
    pub admin: AdminState,
    pub local: Option<Ipv4Addr>,
    pub peer: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    /// CONNECT speed in bit/s.
    pub connect_speed: Option<u32>,
    pub mru: Option<u16>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    /// Bytes per second over the last sampling interval.
    pub rx_rate: f64,
    pub tx_rate: f64,
    /// This line's share of all lines' traffic (rx + tx) over the last interval, 0.0-1.0.
    pub share: f64,
    pub queued_bytes: u64,
    pub dropped_packets: u64,
    /// Dial attempts since the line was last up.
    pub redials: u32,
    pub last_error: Option<String>,
    /// When the next redial happens (seconds since the epoch), in `holdoff`.
    pub next_attempt: Option<f64>,
    /// Failover tier: 0 primary; higher tiers carry traffic only while no lower one has the
    /// Internet.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub tier: u32,
    /// The smoothed LCP echo round trip in milliseconds, while PPP is up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lcp_rtt_ms: Option<f64>,
    /// Upstream tracking, for a tracked line whose link is up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track: Option<TrackStatus>,
    /// What the line is doing within its state: the modem's latest answer while chatting
    /// (`OK`, `CONNECT 57600`), the PPP phase (`LCP`, `authenticating`, `IPCP`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Connections open through the line, while the balancer follows connections
    /// (least-loaded, or a tracked line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_connections: Option<u32>,
    /// A cellular modem: SIM, registration, operator, signal, identity (as last checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cellular: Option<crate::cellular::CellStatus>,
    /// Resets by the recovery ladder since the daemon started.
    #[serde(default, skip_serializing_if = "ResetCounts::is_zero")]
    pub resets: ResetCounts,
    /// The recovery ladder's last step and why, since the line was last up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reset: Option<String>,
    /// The tty `device` led to at the last open, where that is another path (a by-id link).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tty: Option<String>,
    /// The Multilink bundle the line carries, while it is a member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<String>,
    /// For a bundle (listed with the lines): its member lines up now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<String>>,
    /// The slave kind of the line's call: `kernel PPP`, or `TUN (why not kernel PPP)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slave_kind: Option<String>,
}

/// Resets by the recovery ladder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ResetCounts {
    pub modem: u32,
    pub port: u32,
    pub hook: u32,
}

impl ResetCounts {
    pub fn is_zero(&self) -> bool {
        *self == ResetCounts::default()
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// What upstream tracking knows of a line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct TrackStatus {
    pub internet: Internet,
    /// Why the line is offline or degraded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Smoothed probe round trip and its jitter, in milliseconds.
    pub rtt_ms: Option<f64>,
    pub jitter_ms: Option<f64>,
    /// Share of the recent probes that went unanswered, 0.0–1.0.
    pub loss: f64,
    /// What the probes cost on the wire since the line came up, and that rate over a day.
    pub probe_bytes: u64,
    pub probe_bytes_per_day: u64,
}

// The three names below travel as plain strings (`"dial-chat"`, `"down"`, `"least-loaded"`).
// A value this build does not know — a newer daemon's state or policy — is kept as it came in
// `Other`, so an older CLI still shows it instead of failing on the whole report. The domain
// types they mirror (`link::LineState`, `balancer::Policy`) live beside `control`, not below it,
// so the daemon converts them (`daemon::wire`).

/// A line's state, as reported.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LineState {
    /// Not enabled in the configuration.
    Disabled,
    /// Held down by `hangup`.
    Down,
    Locking,
    InitChat,
    DialChat,
    Ppp,
    Up,
    /// PPP up, but no Internet through the line (upstream tracking): out of the balance.
    NoInternet,
    /// PPP up, the Internet too slow or lossy by the line's limits: out of the balance.
    Degraded,
    HangingUp,
    /// Waiting to redial.
    Holdoff,
    Failed,
    /// The modem is not there: waiting for it to be plugged in.
    NoDevice,
    /// A cellular modem: SIM check and network registration.
    Registering,
    /// The SIM needs a person (PIN missing or refused, PUK): down until `up`.
    SimLocked,
    /// The recovery ladder is resetting the modem, its USB port, or running the reset hook.
    Resetting,
    /// A state this build does not know, as the daemon sent it.
    #[serde(untagged)]
    Other(String),
}

impl LineState {
    const KNOWN: [LineState; 16] = [
        LineState::Disabled,
        LineState::Down,
        LineState::Locking,
        LineState::InitChat,
        LineState::DialChat,
        LineState::Ppp,
        LineState::Up,
        LineState::NoInternet,
        LineState::Degraded,
        LineState::HangingUp,
        LineState::Holdoff,
        LineState::Failed,
        LineState::NoDevice,
        LineState::Registering,
        LineState::SimLocked,
        LineState::Resetting,
    ];

    /// The name on the wire (and on screen).
    pub fn as_str(&self) -> &str {
        match self {
            LineState::Disabled => "disabled",
            LineState::Down => "down",
            LineState::Locking => "locking",
            LineState::InitChat => "init-chat",
            LineState::DialChat => "dial-chat",
            LineState::Ppp => "ppp",
            LineState::Up => "up",
            LineState::NoInternet => "no-internet",
            LineState::Degraded => "degraded",
            LineState::HangingUp => "hanging-up",
            LineState::Holdoff => "holdoff",
            LineState::Failed => "failed",
            LineState::NoDevice => "no-device",
            LineState::Registering => "registering",
            LineState::SimLocked => "sim-locked",
            LineState::Resetting => "resetting",
            LineState::Other(s) => s,
        }
    }
}

/// What the administrator asked of a line.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AdminState {
    Up,
    /// `hangup`: down until `up`.
    Down,
    /// A value this build does not know, as the daemon sent it.
    #[serde(untagged)]
    Other(String),
}

/// Whether the Internet is reachable through a line.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Internet {
    /// Not known yet: the line carries traffic meanwhile.
    Unknown,
    Online,
    Offline,
    Degraded,
    /// A value this build does not know, as the daemon sent it.
    #[serde(untagged)]
    Other(String),
}

impl Internet {
    const KNOWN: [Internet; 4] = [
        Internet::Unknown,
        Internet::Online,
        Internet::Offline,
        Internet::Degraded,
    ];

    /// The name on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Internet::Unknown => "unknown",
            Internet::Online => "online",
            Internet::Offline => "offline",
            Internet::Degraded => "degraded",
            Internet::Other(s) => s,
        }
    }
}

impl AdminState {
    const KNOWN: [AdminState; 2] = [AdminState::Up, AdminState::Down];

    /// The name on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            AdminState::Up => "up",
            AdminState::Down => "down",
            AdminState::Other(s) => s,
        }
    }
}

/// How the daemon spreads new connections over the lines (the configuration's names).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    RoundRobin,
    Weighted,
    LeastLoaded,
    Sticky,
    /// A policy this build does not know, as the daemon sent it.
    #[serde(untagged)]
    Other(String),
}

impl Policy {
    const KNOWN: [Policy; 4] = [
        Policy::RoundRobin,
        Policy::Weighted,
        Policy::LeastLoaded,
        Policy::Sticky,
    ];

    /// The name on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Policy::RoundRobin => "round-robin",
            Policy::Weighted => "weighted",
            Policy::LeastLoaded => "least-loaded",
            Policy::Sticky => "sticky",
            Policy::Other(s) => s,
        }
    }
}

/// What the three wire names share: parsing from text as the wire does (unknown text kept in
/// `Other`), display as the wire name, and an empty `Other` as "nothing reported".
macro_rules! wire_name {
    ($($name:ident),*) => {$(
        impl From<&str> for $name {
            fn from(text: &str) -> Self {
                Self::KNOWN
                    .into_iter()
                    .find(|known| known.as_str() == text)
                    .unwrap_or_else(|| Self::Other(text.to_string()))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::Other(String::new())
            }
        }
    )*};
}

wire_name!(LineState, AdminState, Policy, Internet);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format() {
        let e = Envelope {
            version: 1,
            request: Request::Hangup {
                lines: vec!["ttyS1".into()],
            },
        };
        let text = serde_json::to_string(&e).unwrap();
        assert_eq!(text, r#"{"version":1,"cmd":"hangup","lines":["ttyS1"]}"#);
        assert_eq!(serde_json::from_str::<Envelope>(&text).unwrap(), e);
        let up: Envelope = serde_json::from_str(r#"{"version":1,"cmd":"up"}"#).unwrap();
        assert_eq!(up.request, Request::Up { lines: vec![] });
        assert!(serde_json::from_str::<Envelope>(r#"{"version":1,"cmd":"explode"}"#).is_err());
        assert!(serde_json::from_str::<Envelope>(r#"{"cmd":"reload"}"#).is_err());
        let r = Response::Error {
            message: "no line named ttyS9".into(),
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"result":"error","message":"no line named ttyS9"}"#
        );
        let s = Response::Status(StatusReport::default());
        let back: Response = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }

    /// A report as daemons before the typed states wrote it, byte for byte.
    const OLD_REPORT: &str = concat!(
        r#"{"result":"status","time":1000.5,"policy":"least-loaded","lines":[{"name":"ttyS0","#,
        r#""device":"/dev/ttyS0","slave":"eq-ttyS0","state":"dial-chat","since":990.0,"#,
        r#""admin":"up","local":null,"peer":null,"dns":[],"connect_speed":null,"mru":null,"#,
        r#""rx_bytes":0,"tx_bytes":0,"rx_rate":0.0,"tx_rate":0.0,"share":0.0,"queued_bytes":0,"#,
        r#""dropped_packets":0,"redials":2,"last_error":null,"next_attempt":null},"#,
        r#"{"name":"ttyS1","device":"/dev/ttyS1","slave":"eq-ttyS1","state":"down","#,
        r#""since":900.0,"admin":"down","local":null,"peer":null,"dns":[],"connect_speed":null,"#,
        r#""mru":null,"rx_bytes":0,"tx_bytes":0,"rx_rate":0.0,"tx_rate":0.0,"share":0.0,"#,
        r#""queued_bytes":0,"dropped_packets":0,"redials":0,"last_error":null,"#,
        r#""next_attempt":null}]}"#
    );

    #[test]
    fn typed_states_keep_the_wire_format() {
        let Response::Status(report) = serde_json::from_str(OLD_REPORT).unwrap() else {
            panic!("not a status report");
        };
        assert_eq!(report.policy, Policy::LeastLoaded);
        assert_eq!(report.lines[0].state, LineState::DialChat);
        assert_eq!(report.lines[0].admin, AdminState::Up);
        assert_eq!(report.lines[1].state, LineState::Down);
        assert_eq!(report.lines[1].admin, AdminState::Down);
        let again = serde_json::to_string(&Response::Status(report)).unwrap();
        assert_eq!(again, OLD_REPORT);
    }

    #[test]
    fn every_name_is_its_wire_string() {
        fn check<T>(known: &[T], names: &[&str])
        where
            T: Serialize + for<'de> Deserialize<'de> + fmt::Display + PartialEq + fmt::Debug,
            for<'a> T: From<&'a str>,
        {
            assert_eq!(known.len(), names.len());
            for (value, name) in known.iter().zip(names) {
                let json = format!("\"{name}\"");
                assert_eq!(serde_json::to_string(value).unwrap(), json);
                assert_eq!(&serde_json::from_str::<T>(&json).unwrap(), value);
                assert_eq!(value.to_string(), *name);
                assert_eq!(&T::from(*name), value);
            }
        }
        check(
            &LineState::KNOWN,
            &[
                "disabled",
                "down",
                "locking",
                "init-chat",
                "dial-chat",
                "ppp",
                "up",
                "no-internet",
                "degraded",
                "hanging-up",
                "holdoff",
                "failed",
                "no-device",
                "registering",
                "sim-locked",
                "resetting",
            ],
        );
        check(&AdminState::KNOWN, &["up", "down"]);
        check(
            &Internet::KNOWN,
            &["unknown", "online", "offline", "degraded"],
        );
        check(
            &Policy::KNOWN,
            &["round-robin", "weighted", "least-loaded", "sticky"],
        );
    }

    #[test]
    fn names_from_a_newer_daemon_are_kept() {
        let line: LineStatus = serde_json::from_str(
            r#"{"name":"ttyS0","device":"/dev/ttyS0","slave":"eq-ttyS0","state":"warp-drive",
               "since":1.0,"admin":"maybe","local":null,"peer":null,"dns":[],
               "connect_speed":null,"mru":null,"rx_bytes":0,"tx_bytes":0,"rx_rate":0.0,
               "tx_rate":0.0,"share":0.0,"queued_bytes":0,"dropped_packets":0,"redials":0,
               "last_error":null,"next_attempt":null}"#,
        )
        .unwrap();
        assert_eq!(line.state, LineState::Other("warp-drive".into()));
        assert_eq!(line.state.to_string(), "warp-drive");
        assert_eq!(line.admin, AdminState::Other("maybe".into()));
        let policy: Policy = serde_json::from_str(r#""coin-toss""#).unwrap();
        assert_eq!(policy, Policy::Other("coin-toss".into()));
        // Passed on as they came.
        assert_eq!(
            serde_json::to_string(&line.state).unwrap(),
            r#""warp-drive""#
        );
        assert_eq!(serde_json::to_string(&policy).unwrap(), r#""coin-toss""#);
        // Still only strings.
        assert!(serde_json::from_str::<LineState>("7").is_err());
        // Nothing reported: empty, as the untyped report had it.
        assert_eq!(
            serde_json::to_string(&StatusReport::default()).unwrap(),
            r#"{"time":0.0,"policy":"","lines":[]}"#
        );
    }
}
