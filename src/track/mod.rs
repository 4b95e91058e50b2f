//! Is the Internet reachable *through* a line? A PPP link can stay up, answering LCP echoes,
//! while its ISP's upstream, routing or DNS is broken; only probes sent out of that one line
//! (and passive evidence from its real connections) tell.
//!
//! - [`Tracker`]: the sans-IO core, fed probe outcomes, passive suspicion and time; it says
//!   which probes to send and when the line has or has lost the Internet.
//! - [`Latency`]: smoothed round trip, jitter and loss of a line's probes or LCP echoes.
//!
//! The probes themselves (ICMP echo, TCP connect, DNS query, HTTP GET, each bound to the
//! line's device, address and firewall mark) are `net::probe`; the per-line task that runs a
//! tracker is `link::track`.

mod latency;
mod tracker;

use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

pub use latency::{LOSS_WINDOW, Latency};
pub use tracker::{Internet, ProbeId, ProbeRequest, TrackEvent, Tracker};

/// One thing to probe through the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// ICMP echo request (ping).
    Icmp(Ipv4Addr),
    /// A TCP connection that completes (the handshake only; nothing is sent).
    Tcp(SocketAddrV4),
    /// A DNS query for `name` (type A) answered without a server failure; `server: None`
    /// asks the line's own DNS servers (from IPCP).
    Dns {
        server: Option<Ipv4Addr>,
        name: String,
    },
    /// An HTTP GET of `path` from `host` at `addr` answered with status `expect`.
    Http {
        addr: SocketAddrV4,
        host: String,
        path: String,
        expect: u16,
    },
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Icmp(a) => write!(f, "ping {a}"),
            Target::Tcp(a) => write!(f, "tcp {a}"),
            Target::Dns { server: None, name } => write!(f, "dns {name} (line's servers)"),
            Target::Dns {
                server: Some(s),
                name,
            } => write!(f, "dns {name} @{s}"),
            Target::Http {
                addr, host, path, ..
            } => write!(f, "http://{host}{path} ({addr})"),
        }
    }
}

/// How a line is tracked. Defaults: three public anycast resolvers pinged, one every 10 s
/// while all is well (about 100 bytes a probe with PPP overhead: ~36 KB/h), all at once every
/// second once one fails or the line's own connections go unanswered.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackConfig {
    /// What to probe; empty means tracking is off.
    pub targets: Vec<Target>,
    /// Between probes while the line has the Internet.
    pub interval: Duration,
    /// Between probe rounds while in doubt or without the Internet.
    pub retry: Duration,
    /// How long a probe may take.
    pub timeout: Duration,
    /// Failed rounds in a row before the line counts as without the Internet.
    pub down: u32,
    /// Successful rounds in a row before it counts as having it again.
    pub up: u32,
    /// Targets that must answer in a round that asks all of them.
    pub quorum: usize,
    /// The line is degraded (out of the balance) while its smoothed probe round trip is
    /// above this.
    pub max_latency: Option<Duration>,
    /// ... or while more than this share of its recent probes were lost (0.0–1.0).
    pub max_loss: Option<f64>,
    /// Redial a line that has been without the Internet this long (some ISPs clear a stuck
    /// session only on a new call); `None`: never.
    pub redial_after: Option<Duration>,
}

impl TrackConfig {
    /// The public targets used when a configuration names none.
    pub fn default_targets() -> Vec<Target> {
        [[1, 1, 1, 1], [8, 8, 8, 8], [9, 9, 9, 9]]
            .into_iter()
            .map(|a| Target::Icmp(Ipv4Addr::from(a)))
            .collect()
    }

    /// Whether tracking is on.
    pub fn enabled(&self) -> bool {
        !self.targets.is_empty()
    }
}

impl Default for TrackConfig {
    fn default() -> TrackConfig {
        TrackConfig {
            targets: TrackConfig::default_targets(),
            interval: Duration::from_secs(10),
            retry: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            down: 2,
            up: 3,
            quorum: 1,
            max_latency: None,
            max_loss: None,
            redial_after: Some(Duration::from_secs(300)),
        }
    }
}
