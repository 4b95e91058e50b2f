//! What a session reports: events, the reason it went down, send errors and counters.

use std::fmt;
use std::net::Ipv4Addr;
use std::time::Duration;

use thiserror::Error;

use super::Phase;
use crate::ipcp::BadAddress;
use crate::mp::{BundleId, Negotiated};

/// What the session reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The phase changed.
    Phase(Phase),
    /// LCP is open; `mru` is the largest packet the peer accepts.
    LinkUp {
        /// Peer's MRU.
        mru: u16,
    },
    /// Authentication finished; `peer_name` is set when we authenticated the peer.
    Authenticated {
        /// Name the peer logged in with (authenticator role).
        peer_name: Option<String>,
    },
    /// Multilink was agreed and authentication is done: instead of running IPCP itself the
    /// link is now a member of the bundle `id`. Hand its bundle frames
    /// ([`Session::poll_bundle_frame`](super::Session::poll_bundle_frame)) to that bundle
    /// and send the bundle's frames with
    /// [`Session::send_frame`](super::Session::send_frame); the bundle runs IPCP.
    /// [`Event::NetworkDown`] tells the link left the bundle (LCP renegotiating, closing).
    BundleMember {
        /// The bundle the link belongs to.
        id: BundleId,
        /// What LCP agreed for Multilink on this link.
        multilink: Negotiated,
    },
    /// IPCP is open: IP packets can flow.
    Up {
        /// Our address.
        local: Ipv4Addr,
        /// Peer's address (unspecified if it never told us).
        peer: Ipv4Addr,
        /// DNS servers (those the peer gave us; for the answer role, those we gave).
        dns: Vec<Ipv4Addr>,
        /// Largest IP packet the peer accepts.
        mru: u16,
    },
    /// IPCP left the Opened state but the link stays (renegotiation may follow).
    NetworkDown {
        /// Why.
        reason: String,
    },
    /// Authentication failed (either direction); a `Down` follows.
    AuthFailed {
        /// Why, in plain words.
        reason: String,
    },
    /// An LCP Echo-Reply came back: the smoothed echo round trip (the ISP's latency).
    EchoRtt {
        /// Smoothed round trip.
        rtt: std::time::Duration,
    },
    /// The link is finished; the session is dead.
    Down {
        /// Why; its `Display` is the message for people.
        reason: DownReason,
    },
}

/// Why a session went down: the reason of [`Event::Down`].
///
/// As quinn's `ConnectionError`, it says what kind of ending it was, so that the
/// caller can act on it (back off hard after an authentication failure, redial
/// soon after a dead link) without parsing text; `Display` gives the message for
/// people and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownReason {
    /// We closed the link ([`Session::close`](super::Session::close)) with this
    /// reason (also the text of our Terminate-Request).
    LocalClose {
        /// The reason given to `close`.
        reason: String,
    },
    /// The peer closed the link with an LCP Terminate-Request.
    PeerTerminated {
        /// Its text, made printable; `None` if it gave none.
        reason: Option<String>,
    },
    /// The peer closed IPCP, our only network protocol, with a Terminate-Request.
    PeerClosedIpcp {
        /// Its text, made printable.
        reason: String,
    },
    /// Authentication failed, in either direction (after an [`Event::AuthFailed`]).
    AuthFailed {
        /// Why, in plain words (as in the `AuthFailed` event).
        reason: String,
    },
    /// LCP or IPCP negotiation ended without agreement.
    NegotiationFailed {
        /// Which protocol.
        protocol: ControlProtocol,
        /// How it failed.
        failure: NegotiationFailure,
    },
    /// IPCP opened without an address for us.
    NoAddress,
    /// The peer gave us, or claims for itself, an address we cannot use.
    BadAddress(BadAddress),
    /// No reply to LCP Echo-Requests: the link is dead.
    EchoTimeout {
        /// Echo-Requests that went unanswered ([`LcpConfig::echo_failure`](crate::LcpConfig::echo_failure)).
        requests: u32,
    },
    /// Our own LCP packets came back: the serial line is looped back.
    LoopedBack,
    /// IP was not up within [`Config::establish_timeout`](super::Config::establish_timeout).
    EstablishTimeout {
        /// The timeout.
        after: Duration,
        /// Where establishment was stuck, in words.
        stuck_in: String,
    },
    /// The line took none of our frames for
    /// [`Session::tx_stall_limit`](super::Session::tx_stall_limit).
    PeerStoppedReading {
        /// The stall limit.
        after: Duration,
        /// Control frames dropped because the queue was full.
        dropped: u64,
        /// Why the session was already closing, if it was.
        closing: Option<Box<DownReason>>,
    },
    /// The line under the link failed or was closed
    /// ([`Session::lower_down`](super::Session::lower_down)).
    LowerDown {
        /// The reason given to `lower_down`.
        reason: String,
        /// Why the session was already closing, if it was (the line went down
        /// before the Terminate exchange finished).
        closing: Option<Box<DownReason>>,
    },
}

impl DownReason {
    /// Why authentication failed, if it did: the session ended for that, or the
    /// line went down while the session was closing for that.
    pub fn auth_failure(&self) -> Option<&str> {
        match self {
            DownReason::AuthFailed { reason } => Some(reason),
            DownReason::LowerDown { closing, .. }
            | DownReason::PeerStoppedReading { closing, .. } => {
                closing.as_deref().and_then(DownReason::auth_failure)
            }
            _ => None,
        }
    }
}

impl fmt::Display for DownReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DownReason::LocalClose { reason }
            | DownReason::AuthFailed { reason }
            | DownReason::LowerDown { reason, .. } => f.write_str(reason),
            DownReason::PeerTerminated { reason: Some(r) } => {
                write!(f, "peer closed the link: {r}")
            }
            DownReason::PeerTerminated { reason: None } => f.write_str("peer closed the link"),
            DownReason::PeerClosedIpcp { reason } => write!(f, "peer closed IPCP: {reason}"),
            DownReason::NegotiationFailed { protocol, failure } => {
                write!(f, "{protocol} {failure}")
            }
            DownReason::NoAddress => f.write_str("peer did not assign us an IP address"),
            DownReason::BadAddress(bad) => bad.fmt(f),
            DownReason::EchoTimeout { requests } => {
                write!(f, "link dead: no reply to {requests} LCP Echo-Requests")
            }
            DownReason::LoopedBack => f.write_str("serial line is looped back"),
            DownReason::EstablishTimeout { after, stuck_in } => write!(
                f,
                "PPP not up after {} s (stuck in {stuck_in})",
                fmt_secs(after.as_secs_f64())
            ),
            DownReason::PeerStoppedReading { after, dropped, .. } => write!(
                f,
                "peer stopped reading for {} s ({dropped} control frames dropped)",
                fmt_secs(after.as_secs_f64())
            ),
        }
    }
}

impl std::error::Error for DownReason {}

/// A control protocol whose negotiation can fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlProtocol {
    /// The Link Control Protocol.
    Lcp,
    /// The IP Control Protocol.
    Ipcp,
}

impl fmt::Display for ControlProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ControlProtocol::Lcp => "LCP",
            ControlProtocol::Ipcp => "IPCP",
        })
    }
}

/// How a negotiation failed ([`DownReason::NegotiationFailed`]).
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum NegotiationFailure {
    /// The peer kept sending Configure-Requests we could not agree to.
    #[error("negotiation failed: peer sent {requests} Configure-Requests without agreement")]
    PeerRequestStorm {
        /// Its Configure-Requests without agreement.
        requests: u32,
    },
    /// Our Configure-Requests went unacknowledged up to Max-Configure.
    #[error("negotiation failed: no agreement after {requests} Configure-Requests")]
    NoAgreement {
        /// Max-Configure.
        requests: u32,
    },
    /// The automaton gave up otherwise (Max-Configure, a Protocol-Reject).
    #[error("negotiation failed")]
    GaveUp,
    /// The renegotiation of an open link did not agree.
    #[error("renegotiation failed")]
    Renegotiation,
}

/// Why [`Session::send_ip`](super::Session::send_ip) refused a packet.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// IPCP is not open.
    #[error("IP is not up on this link")]
    NotUp,
    /// Larger than the peer's MRU.
    #[error("packet of {len} bytes exceeds the peer's MRU of {mru}")]
    TooBig {
        /// Packet length.
        len: usize,
        /// Peer's MRU.
        mru: u16,
    },
    /// The transmit queue is full; try again after `poll_transmit`.
    #[error("transmit queue full")]
    QueueFull,
    /// Not a protocol a bundle sends through its members: link control (0xc000 and up) is
    /// the session's own, and the number must be a valid PPP protocol.
    #[error("protocol {0:#06x} cannot be sent for a bundle")]
    NotBundleProtocol(u16),
}

/// Counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Bytes fed to `handle_input` (line bytes) and `handle_frame_input` (whole frames).
    pub rx_bytes: u64,
    /// Frames with a good FCS, and whole frames within the MRU given to
    /// `handle_frame_input`.
    pub rx_frames: u64,
    /// Frames with a bad FCS.
    pub rx_bad_fcs: u64,
    /// Frames over the MRU (HDLC-decoded or whole).
    pub rx_oversize: u64,
    /// Aborted or runt frames.
    pub rx_aborted: u64,
    /// Good frames with a bad header or a malformed control packet.
    pub rx_malformed: u64,
    /// Frames of protocols we do not speak (Protocol-Rejected when LCP is open).
    pub rx_unknown_protocol: u64,
    /// IPv4 packets delivered.
    pub rx_ip_packets: u64,
    /// IPv4 packets dropped (IPCP not open, receive queue full).
    pub rx_ip_dropped: u64,
    /// Bytes handed out by `poll_transmit`.
    pub tx_bytes: u64,
    /// Frames handed out by `poll_transmit`.
    pub tx_frames: u64,
    /// IPv4 packets framed by `send_ip`.
    pub tx_ip_packets: u64,
    /// Control frames dropped because the control queue was full (the peer is
    /// not reading what we write).
    pub tx_control_dropped: u64,
}

/// Seconds for messages: "3", "2.5".
fn fmt_secs(secs: f64) -> String {
    let s = format!("{secs:.1}");
    s.strip_suffix(".0").map_or(s.clone(), str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The messages are exactly those of the `String` reasons before `DownReason`.
    #[test]
    fn down_reasons_read_as_before() {
        use DownReason as D;
        let secs = Duration::from_secs;
        let line = |closing| D::LowerDown {
            reason: "line closed: end of file".into(),
            closing,
        };
        let auth = D::AuthFailed {
            reason: "peer rejected our PAP credentials: Login incorrect".into(),
        };
        let lcp = |failure| D::NegotiationFailed {
            protocol: ControlProtocol::Lcp,
            failure,
        };
        let cases: Vec<(DownReason, &str)> = vec![
            (
                D::LocalClose {
                    reason: "User request".into(),
                },
                "User request",
            ),
            (
                D::PeerTerminated {
                    reason: Some("User request".into()),
                },
                "peer closed the link: User request",
            ),
            (D::PeerTerminated { reason: None }, "peer closed the link"),
            (
                D::PeerClosedIpcp {
                    reason: "bye".into(),
                },
                "peer closed IPCP: bye",
            ),
            (
                auth.clone(),
                "peer rejected our PAP credentials: Login incorrect",
            ),
            (
                lcp(NegotiationFailure::PeerRequestStorm { requests: 41 }),
                "LCP negotiation failed: peer sent 41 Configure-Requests without agreement",
            ),
            (
                lcp(NegotiationFailure::NoAgreement { requests: 10 }),
                "LCP negotiation failed: no agreement after 10 Configure-Requests",
            ),
            (
                lcp(NegotiationFailure::Renegotiation),
                "LCP renegotiation failed",
            ),
            (
                D::NegotiationFailed {
                    protocol: ControlProtocol::Ipcp,
                    failure: NegotiationFailure::GaveUp,
                },
                "IPCP negotiation failed",
            ),
            (D::NoAddress, "peer did not assign us an IP address"),
            (
                D::BadAddress(BadAddress {
                    addr: Ipv4Addr::new(127, 0, 0, 2),
                    problem: "loopback",
                    for_us: true,
                }),
                "peer assigned us 127.0.0.2 (loopback); refusing",
            ),
            (
                D::EchoTimeout { requests: 3 },
                "link dead: no reply to 3 LCP Echo-Requests",
            ),
            (D::LoopedBack, "serial line is looped back"),
            (
                D::EstablishTimeout {
                    after: secs(30),
                    stuck_in: "LCP: no answer from the peer".into(),
                },
                "PPP not up after 30 s (stuck in LCP: no answer from the peer)",
            ),
            (
                D::PeerStoppedReading {
                    after: secs(3),
                    dropped: 7,
                    closing: None,
                },
                "peer stopped reading for 3 s (7 control frames dropped)",
            ),
            (line(None), "line closed: end of file"),
            (
                line(Some(Box::new(auth.clone()))),
                "line closed: end of file",
            ),
        ];
        for (reason, text) in cases {
            assert_eq!(reason.to_string(), text, "{reason:?}");
        }
    }

    /// An authentication failure shows through a line that went down during the close.
    #[test]
    fn auth_failure_is_found_behind_the_line() {
        let auth = DownReason::AuthFailed {
            reason: "no".into(),
        };
        assert_eq!(auth.auth_failure(), Some("no"));
        let line = DownReason::LowerDown {
            reason: "line closed: end of file".into(),
            closing: Some(Box::new(auth)),
        };
        assert_eq!(line.auth_failure(), Some("no"));
        let closed = DownReason::LowerDown {
            reason: "line closed: end of file".into(),
            closing: Some(Box::new(DownReason::LocalClose {
                reason: "User request".into(),
            })),
        };
        assert_eq!(closed.auth_failure(), None);
        assert_eq!(DownReason::LoopedBack.auth_failure(), None);
    }

    #[test]
    fn seconds_read_naturally() {
        assert_eq!(fmt_secs(3.0), "3");
        assert_eq!(fmt_secs(2.5), "2.5");
        assert_eq!(fmt_secs(30.0), "30");
    }
}
