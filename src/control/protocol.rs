//! The control protocol between the CLI and the daemon: one JSON object per line over a Unix
//! socket, each request answered by exactly one response (a `subscribe` request is answered
//! by a stream of `status` responses until the client goes away).
//!
//! Requests carry the protocol version; the daemon refuses other versions with an error
//! response rather than guessing.

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
    pub policy: String,
    pub lines: Vec<LineStatus>,
}

/// One line's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct LineStatus {
    pub name: String,
    pub device: String,
    pub slave: String,
    /// `disabled`, `down` (held down by `hangup`), `locking`, `init-chat`, `dial-chat`, `ppp`,
    /// `up`, `hanging-up`, `holdoff`, `failed`.
    pub state: String,
    /// Seconds since the Unix epoch when the line entered `state`.
    pub since: f64,
    /// `up` or `down`: what the administrator asked.
    pub admin: String,
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
}

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
}
