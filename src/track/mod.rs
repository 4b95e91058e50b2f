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
use std::str::FromStr;
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

/// Written as in the configuration: `ping 1.1.1.1`, `tcp 198.51.100.10:443`, `dns example.com`
/// (the line's own servers) or `dns example.com@9.9.9.9`, `http://192.0.2.80/generate_204 204`.
impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Icmp(a) => write!(f, "ping {a}"),
            Target::Tcp(a) => write!(f, "tcp {a}"),
            Target::Dns { server: None, name } => write!(f, "dns {name}"),
            Target::Dns {
                server: Some(s),
                name,
            } => write!(f, "dns {name}@{s}"),
            Target::Http {
                addr,
                host,
                path,
                expect,
            } => {
                let port = if addr.port() == 80 {
                    String::new()
                } else {
                    format!(":{}", addr.port())
                };
                if host == &addr.ip().to_string() {
                    write!(f, "http://{host}{port}{path} {expect}")
                } else {
                    write!(f, "http://{}{port}{path} {expect} host={host}", addr.ip())
                }
            }
        }
    }
}

impl FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> Result<Target, String> {
        let words: Vec<&str> = s.split_whitespace().collect();
        let addr = |a: &str| {
            a.parse::<Ipv4Addr>()
                .map_err(|_| format!("'{a}' is not an IPv4 address"))
        };
        match words.as_slice() {
            ["ping" | "icmp", a] => Ok(Target::Icmp(addr(a)?)),
            ["tcp", a] => a
                .parse::<SocketAddrV4>()
                .map(Target::Tcp)
                .map_err(|_| format!("'{a}' is not ADDRESS:PORT")),
            ["dns", query] => {
                let (name, server) = match query.split_once('@') {
                    Some((n, s)) => (n, Some(addr(s)?)),
                    None => (*query, None),
                };
                if name.is_empty() || name.len() > 253 || !name.is_ascii() {
                    return Err(format!("'{name}' is not a DNS name"));
                }
                Ok(Target::Dns {
                    server,
                    name: name.to_string(),
                })
            }
            [url, rest @ ..] if url.starts_with("http://") => {
                let authority_path = &url["http://".len()..];
                let (authority, path) = match authority_path.find('/') {
                    Some(i) => authority_path.split_at(i),
                    None => (authority_path, "/"),
                };
                let (ip, port) = match authority.split_once(':') {
                    Some((ip, port)) => (
                        ip,
                        port.parse::<u16>()
                            .map_err(|_| format!("'{port}' is not a port"))?,
                    ),
                    None => (authority, 80),
                };
                let ip = addr(ip)?;
                let mut expect = 200;
                let mut host = ip.to_string();
                for word in rest {
                    if let Some(h) = word.strip_prefix("host=") {
                        host = h.to_string();
                    } else {
                        expect = word
                            .parse()
                            .ok()
                            .filter(|c| (100..600).contains(c))
                            .ok_or_else(|| format!("'{word}' is not an HTTP status"))?;
                    }
                }
                if path.bytes().any(|b| b.is_ascii_control())
                    || host.bytes().any(|b| b.is_ascii_control())
                {
                    return Err("control characters in the URL".into());
                }
                Ok(Target::Http {
                    addr: SocketAddrV4::new(ip, port),
                    host,
                    path: path.to_string(),
                    expect,
                })
            }
            _ => Err(format!(
                "'{s}' is not a target: ping ADDRESS, tcp ADDRESS:PORT, dns NAME[@SERVER] or \
                 http://ADDRESS[:PORT]/PATH [STATUS] [host=NAME]"
            )),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_read_and_print_alike() {
        for t in [
            "ping 1.1.1.1",
            "tcp 198.51.100.10:443",
            "dns example.com",
            "dns example.com@9.9.9.9",
            "http://192.0.2.80/generate_204 204",
            "http://192.0.2.80:8080/ 200 host=example.net",
        ] {
            assert_eq!(t.parse::<Target>().unwrap().to_string(), t);
        }
        assert_eq!(
            "icmp 8.8.8.8".parse::<Target>().unwrap(),
            Target::Icmp(Ipv4Addr::new(8, 8, 8, 8))
        );
        for bad in [
            "",
            "ping",
            "ping example.com",
            "tcp 1.2.3.4",
            "dns",
            "dns x@y",
            "http://example.com/",
            "http://1.2.3.4/ 999",
            "https://1.2.3.4/",
            "smtp 1.2.3.4",
        ] {
            assert!(bad.parse::<Target>().is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        /// Any text: an error or a target that prints back to itself (fuzz target
        /// `probe_answers` does the same with the parsers of the answers).
        #[test]
        fn any_text_is_a_target_that_round_trips_or_an_error(
            text in "(ping|tcp|dns|http://|icmp)?[ -~]{0,40}"
        ) {
            if let Ok(t) = text.parse::<Target>() {
                let again: Target = t.to_string().parse().unwrap();
                proptest::prop_assert_eq!(again, t);
            }
        }

        #[test]
        fn no_answer_makes_the_probe_parsers_panic(
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)
        ) {
            let _ = crate::net::icmp::echo_answer(&data);
            let _ = crate::net::probe::answer_rcode(&data, 7);
            let _ = crate::net::probe::http_status_code(&data);
            let _ = crate::sim::dns::answer(&data, Ipv4Addr::new(192, 0, 2, 1));
        }
    }
}
