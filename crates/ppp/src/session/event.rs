//! What a session reports: events, the reason it went down, send errors and counters.

use std::net::Ipv4Addr;

use thiserror::Error;

use super::Phase;

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
    /// The link is finished; the session is dead.
    Down {
        /// Why, in plain words.
        reason: String,
    },
}

/// Why [`Session::send_ip`] refused a packet.
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
}

/// Counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Raw bytes fed to `handle_input`.
    pub rx_bytes: u64,
    /// Frames with a good FCS.
    pub rx_frames: u64,
    /// Frames with a bad FCS.
    pub rx_bad_fcs: u64,
    /// Frames over the MRU.
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
pub(super) fn fmt_secs(secs: f64) -> String {
    let s = format!("{secs:.1}");
    s.strip_suffix(".0").map_or(s.clone(), str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_read_naturally() {
        assert_eq!(fmt_secs(3.0), "3");
        assert_eq!(fmt_secs(2.5), "2.5");
        assert_eq!(fmt_secs(30.0), "30");
    }
}
