//! What a session is told: its role, the protocols' settings, limits and the seed.

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::auth::{Credentials, Secrets};
use crate::fsm::FsmConfig;
use crate::ipcp::IpcpConfig;
use crate::lcp::{AuthMethods, LcpConfig};

/// Which end of the link we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// We dial an ISP: authenticate ourselves if asked, get addresses assigned.
    Dialer,
    /// We are the ISP / dial-in server: may require authentication, assign addresses.
    Answer,
}

/// How frames reach the session and leave it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Framing {
    /// RFC 1662 async HDLC on a byte stream: [`Session::handle_input`](super::Session::handle_input)
    /// takes line bytes, [`Session::poll_transmit`](super::Session::poll_transmit) gives
    /// flag-delimited, escaped frames with an FCS and, once agreed, ACFC/PFC.
    #[default]
    Hdlc,
    /// Whole frames as a Linux PPP channel (`/dev/ppp`) reads and writes them: the kernel's
    /// `ppp_async` does the HDLC framing, ACCM and compression, so
    /// [`Session::poll_transmit`](super::Session::poll_transmit) gives `protocol (2 bytes,
    /// big-endian) + information` and input goes to
    /// [`Session::handle_frame_input`](super::Session::handle_frame_input).
    Unframed,
}

/// Everything a session needs to know.
#[derive(Debug, Clone)]
pub struct Config {
    /// Our role. It chose the defaults (see [`Config::dialer`],
    /// [`Config::answer`]); behaviour follows the fields below, so a dialer can
    /// also demand authentication and an answering end can also authenticate.
    pub role: Role,
    /// LCP options and keepalive.
    pub lcp: LcpConfig,
    /// Restart timer and counters for LCP, IPCP and authentication retransmissions.
    pub fsm: FsmConfig,
    /// Credentials to authenticate ourselves with when the peer asks (PAP or CHAP).
    pub credentials: Option<Credentials>,
    /// Protocols we agree to authenticate ourselves with, when we have
    /// `credentials` (default: both; CHAP is offered first in a Nak).
    pub accept_auth: AuthMethods,
    /// Protocols we demand from the peer (empty: no authentication required).
    pub require_auth: AuthMethods,
    /// The authenticator's user → secret table.
    pub secrets: Secrets,
    /// How long to wait for the other side during authentication (pppd: 30 s).
    pub auth_timeout: Duration,
    /// Re-challenge the peer this often with CHAP (`None`: never).
    pub chap_rechallenge: Option<Duration>,
    /// Our name in CHAP challenges.
    pub name: String,
    /// IPCP addresses and name servers.
    pub ipcp: IpcpConfig,
    /// Outgoing IP packets queued at most (LCP always gets through).
    pub max_ip_queue: usize,
    /// Received IP packets held until `poll_ip` at most; beyond, new ones are dropped.
    pub max_ip_rx_queue: usize,
    /// Control frames (LCP, PAP/CHAP, IPCP) waiting for `poll_transmit`, in bytes
    /// at most. Beyond it best-effort replies (Echo-Reply, Protocol-Reject,
    /// Code-Reject) are dropped; beyond twice it everything but Terminate-Request
    /// and Terminate-Ack is. Drops are counted in [`Stats::tx_control_dropped`](super::Stats::tx_control_dropped).
    pub max_control_queue: usize,
    /// From the start of the session (and from a renegotiation) to IP up at most;
    /// then the session ends, naming the phase it was stuck in (pppd's 30 s
    /// `connect` + negotiation budget). `None`: no limit.
    pub establish_timeout: Option<Duration>,
    /// Seed for magic numbers and CHAP challenges; set it from the OS RNG.
    pub seed: u64,
    /// HDLC on a byte stream (the default), or whole frames from a kernel PPP channel.
    pub framing: Framing,
}

impl Config {
    /// A dialer asking for addresses and DNS, answering PAP/CHAP with `credentials`.
    pub fn dialer(credentials: Option<Credentials>) -> Self {
        Config {
            role: Role::Dialer,
            lcp: LcpConfig::default(),
            fsm: FsmConfig::default(),
            credentials,
            accept_auth: AuthMethods {
                pap: true,
                chap: true,
            },
            require_auth: AuthMethods::NONE,
            secrets: Secrets::new(),
            auth_timeout: Duration::from_secs(30),
            chap_rechallenge: None,
            name: "eqlplus".into(),
            ipcp: IpcpConfig::client(),
            max_ip_queue: 64,
            max_ip_rx_queue: 256,
            max_control_queue: DEFAULT_MAX_CONTROL_QUEUE,
            establish_timeout: Some(DEFAULT_ESTABLISH_TIMEOUT),
            // Not from the OS (no I/O here): good enough for magic numbers only.
            seed: fastrand::u64(..),
            framing: Framing::Hdlc,
        }
    }

    /// An answering end: our address `local`, the peer gets `peer`, DNS servers
    /// `dns`; no authentication unless `require_auth` and `secrets` are set.
    pub fn answer(local: Ipv4Addr, peer: Ipv4Addr, dns: &[Ipv4Addr]) -> Self {
        Config {
            role: Role::Answer,
            ipcp: IpcpConfig::server(local, peer, dns),
            ..Config::dialer(None)
        }
    }
}

/// Default of [`Config::max_control_queue`]: 16 KiB.
pub const DEFAULT_MAX_CONTROL_QUEUE: usize = 16 * 1024;

/// Default of [`Config::establish_timeout`]: 30 s, as pppd's.
pub const DEFAULT_ESTABLISH_TIMEOUT: Duration = Duration::from_secs(30);
