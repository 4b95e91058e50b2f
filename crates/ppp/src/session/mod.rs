//! A whole PPP link, sans-IO: fed raw serial bytes and the time, it emits
//! bytes to write, timer deadlines, decoded IPv4 packets and [`Event`]s.
//!
//! ```text
//! Dead → Establish (LCP) → Authenticate (PAP/CHAP) → Network (IPCP) → Terminate → Dead
//! ```
//!
//! A `Session` covers one connection: once [`Event::Down`] was emitted it is
//! finished (phase Dead) and ignores further input; dial again with a new one.

use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use thiserror::Error;
/// Log target: the module's path from before the core became a crate (see the crate root).
const LOG_TARGET: &str = "eqlplus_dialer::ppp::session";

use super::Rng;
use super::auth::{AuthOutcome, AuthRole, Credentials, Secrets};
use super::chap::{self, ChapPeer, ChapServer, ChapServerConfig};
use super::fsm::{Fsm, FsmConfig, LayerSignal, State};
use super::hdlc::{ACCM_ALL, Decoder, Encoder, Header};
use super::ipcp::{self, IpcpConfig, IpcpOptions};
use super::lcp::{self, AuthMethods, AuthProtocol, Lcp, LcpConfig, LcpNotice};
use super::packet::{
    CODE_REJECT, CONFIGURE_ACK, CONFIGURE_REQUEST, ControlPacket, DISCARD_REQUEST, ECHO_REPLY,
    PROTOCOL_REJECT, TERMINATE_ACK, TERMINATE_REQUEST,
};
use super::pap::{self, PapClient, PapServer};

/// Which end of the link we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// We dial an ISP: authenticate ourselves if asked, get addresses assigned.
    Dialer,
    /// We are the ISP / dial-in server: may require authentication, assign addresses.
    Answer,
}

/// PPP phases, RFC 1661 §3.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// No link.
    Dead,
    /// LCP negotiating.
    Establish,
    /// PAP/CHAP running.
    Authenticate,
    /// NCPs (IPCP) negotiating or open.
    Network,
    /// LCP terminating.
    Terminate,
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
    /// and Terminate-Ack is. Drops are counted in [`Stats::tx_control_dropped`].
    pub max_control_queue: usize,
    /// From the start of the session (and from a renegotiation) to IP up at most;
    /// then the session ends, naming the phase it was stuck in (pppd's 30 s
    /// `connect` + negotiation budget). `None`: no limit.
    pub establish_timeout: Option<Duration>,
    /// Seed for magic numbers and CHAP challenges; set it from the OS RNG.
    pub seed: u64,
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
            seed: default_seed(),
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

/// Some entropy without I/O: std's per-process random hash keys mixed with the time.
fn default_seed() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

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

/// One authentication role with the protocol it speaks.
#[derive(Debug)]
struct AuthSlot {
    protocol: u16,
    role: Box<dyn AuthRole>,
    done: bool,
}

/// A PPP session over one serial line.
///
/// `Debug` shows a summary only: the transmit queues may hold a PAP password.
pub struct Session {
    cfg: Config,
    phase: Phase,
    decoder: Decoder,
    encoder: Encoder,
    tx_acfc: bool,
    tx_pfc: bool,
    lcp: Lcp,
    ipcp: Fsm<IpcpOptions>,
    /// We authenticate ourselves to the peer.
    auth_us: Option<AuthSlot>,
    /// We authenticate the peer.
    auth_them: Option<AuthSlot>,
    rng: Rng,
    ctrl_tx: VecDeque<Vec<u8>>,
    /// Bytes in `ctrl_tx`.
    ctrl_tx_bytes: usize,
    ip_tx: VecDeque<Vec<u8>>,
    /// Since when frames have been waiting without `poll_transmit` taking any.
    tx_waiting_since: Option<Instant>,
    /// `poll_transmit` handed out a frame since the last look.
    tx_progress: bool,
    /// When IP must be up by ([`Config::establish_timeout`]).
    establish_deadline: Option<Instant>,
    /// Rate limit of per-packet log lines.
    log_limit: LogLimiter,
    /// Configure-Requests received from the peer: LCP, IPCP.
    rx_conf_requests: [u32; 2],
    /// Configure-Acks received from the peer: LCP, IPCP.
    rx_conf_acks: [u32; 2],
    /// Any LCP, IPCP packet received from the peer.
    heard: [bool; 2],
    /// Per-packet debug logs of the frame being handled are on (rate limit).
    log_verbose: bool,
    ip_rx: VecDeque<Vec<u8>>,
    events: VecDeque<Event>,
    stats: Stats,
    down_reason: Option<String>,
    ip_up: bool,
    lcp_was_up: bool,
    /// Name the peer authenticated with, until reported.
    peer_name: Option<String>,
    /// Identifier of our latest PAP Authenticate-Request series.
    pap_id: u8,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("role", &self.cfg.role)
            .field("phase", &self.phase)
            .field("lcp", &self.lcp.fsm.state())
            .field("ipcp", &self.ipcp.state())
            .field("ip_up", &self.ip_up)
            .field("queued_control", &self.ctrl_tx.len())
            .field("queued_ip", &self.ip_tx.len())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Start a session on a line that is already connected: LCP begins at once.
    pub fn new(cfg: Config, now: Instant) -> Self {
        let mut rng = Rng::new(cfg.seed);
        let can_auth = if cfg.credentials.is_some() {
            cfg.accept_auth
        } else {
            AuthMethods::NONE
        };
        let lcp = Lcp::new(
            cfg.lcp.clone(),
            cfg.fsm,
            can_auth,
            cfg.require_auth,
            rng.next_u64(),
        );
        let ipcp = Fsm::new(IpcpOptions::new(cfg.ipcp.clone()), cfg.fsm);
        let pap_id = rng.next_u32() as u8;
        let mut s = Session {
            decoder: Decoder::new(usize::from(lcp::DEFAULT_MRU)),
            encoder: Encoder::new(ACCM_ALL),
            tx_acfc: false,
            tx_pfc: false,
            lcp,
            ipcp,
            auth_us: None,
            auth_them: None,
            rng,
            ctrl_tx: VecDeque::new(),
            ctrl_tx_bytes: 0,
            ip_tx: VecDeque::new(),
            tx_waiting_since: None,
            tx_progress: false,
            establish_deadline: cfg.establish_timeout.map(|t| now + t),
            log_limit: LogLimiter::default(),
            rx_conf_requests: [0; 2],
            rx_conf_acks: [0; 2],
            heard: [false; 2],
            log_verbose: true,
            ip_rx: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            down_reason: None,
            ip_up: false,
            lcp_was_up: false,
            peer_name: None,
            pap_id,
            phase: Phase::Dead,
            cfg,
        };
        s.set_phase(Phase::Establish);
        s.lcp.fsm.open(now);
        s.lcp.fsm.up(now);
        s.pump(now);
        s
    }

    /// Current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// True once the session is finished (after [`Event::Down`]).
    pub fn is_dead(&self) -> bool {
        self.phase == Phase::Dead
    }

    /// True while IP packets can be sent.
    pub fn is_up(&self) -> bool {
        self.ip_up
    }

    /// LCP automaton state (for diagnostics).
    pub fn lcp_state(&self) -> State {
        self.lcp.fsm.state()
    }

    /// IPCP automaton state (for diagnostics).
    pub fn ipcp_state(&self) -> State {
        self.ipcp.state()
    }

    /// Counters, framing errors included.
    pub fn stats(&self) -> Stats {
        let d = self.decoder.stats();
        Stats {
            rx_frames: d.frames,
            rx_bad_fcs: d.bad_fcs,
            rx_oversize: d.oversize,
            rx_aborted: d.aborted,
            ..self.stats
        }
    }

    /// Feed raw bytes read from the serial line.
    pub fn handle_input(&mut self, bytes: &[u8], now: Instant) {
        if self.phase == Phase::Dead {
            return;
        }
        self.stats.rx_bytes += bytes.len() as u64;
        // The decoder lends out its buffer; take it out so frames can be handled
        // with `&mut self` (moving it is cheap: a few pointers).
        let mut decoder = std::mem::take(&mut self.decoder);
        let mut rest = bytes;
        while !rest.is_empty() && self.phase != Phase::Dead {
            let (used, frame) = decoder.push(rest);
            rest = &rest[used..];
            if let Some(frame) = frame {
                self.handle_frame(frame, now);
                self.pump(now);
                // LCP may have opened or gone down: the next frame in this same
                // chunk must already be read with the new ACCM and MRU.
                let (accm, mru) = self.rx_settings();
                if decoder.accm() != accm {
                    decoder.set_accm(accm);
                }
                decoder.set_mru(mru);
            }
        }
        self.decoder = decoder;
    }

    /// Run timers that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.phase == Phase::Dead {
            return;
        }
        if self.check_tx_stall(now) {
            return;
        }
        self.run_timers(now);
        if self.phase != Phase::Dead && self.establish_deadline.is_some_and(|d| d <= now) {
            self.establish_deadline = None;
            let secs = self.cfg.establish_timeout.map_or(0.0, |t| t.as_secs_f64());
            let reason = format!(
                "PPP not up after {} s (stuck in {})",
                fmt_secs(secs),
                self.stuck_in()
            );
            self.terminate_now(reason, now);
        }
    }

    /// The protocols' own timers (restart, keepalive, authentication).
    fn run_timers(&mut self, now: Instant) {
        if let Some(notice) = self.lcp.handle_timeout(now) {
            self.lcp_notice(notice, now);
        }
        self.ipcp.handle_timeout(now);
        for slot in [&mut self.auth_us, &mut self.auth_them]
            .into_iter()
            .flatten()
        {
            slot.role.handle_timeout(now);
        }
        self.pump(now);
    }

    /// Earliest deadline at which `handle_timeout` must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.phase == Phase::Dead {
            return None;
        }
        let auth = [&self.auth_us, &self.auth_them]
            .into_iter()
            .flatten()
            .filter_map(|s| s.role.poll_timeout());
        let stall = self.tx_waiting_since.map(|t| t + self.tx_stall_limit());
        [
            self.lcp.poll_timeout(),
            self.ipcp.poll_timeout(),
            stall,
            self.establish_deadline,
        ]
        .into_iter()
        .flatten()
        .chain(auth)
        .min()
    }

    /// Next bytes to write to the line: control frames first, then IP.
    ///
    /// Call it only when the line can take the frame (the driver keeps a small
    /// bounded backlog): frames the line does not take stay queued here, bounded
    /// (see [`Config::max_control_queue`]), and when none is taken for
    /// [`Session::tx_stall_limit`] the session ends ("peer stopped reading").
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        let frame = match self.ctrl_tx.pop_front() {
            Some(f) => {
                self.ctrl_tx_bytes = self.ctrl_tx_bytes.saturating_sub(f.len());
                f
            }
            None => self.ip_tx.pop_front()?,
        };
        self.tx_progress = true;
        self.stats.tx_frames += 1;
        self.stats.tx_bytes += frame.len() as u64;
        Some(frame)
    }

    /// Bytes of control frames waiting for `poll_transmit` (bounded by
    /// [`Config::max_control_queue`]).
    pub fn queued_control_bytes(&self) -> usize {
        self.ctrl_tx_bytes
    }

    /// Next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Next received IPv4 packet.
    pub fn poll_ip(&mut self) -> Option<Vec<u8>> {
        self.ip_rx.pop_front()
    }

    /// Frame an IPv4 packet for sending (only while IPCP is open).
    pub fn send_ip(&mut self, packet: &[u8]) -> Result<(), SendError> {
        if !self.ip_up {
            return Err(SendError::NotUp);
        }
        let mru = self.lcp.fsm.negotiator().peer().mru;
        if packet.len() > usize::from(mru) {
            return Err(SendError::TooBig {
                len: packet.len(),
                mru,
            });
        }
        if self.ip_tx.len() >= self.cfg.max_ip_queue {
            return Err(SendError::QueueFull);
        }
        let (h, n) = Header {
            protocol: ipcp::IPV4,
        }
        .emit(self.tx_acfc, self.tx_pfc);
        let mut frame = Vec::with_capacity(packet.len() + packet.len() / 16 + 10);
        self.encoder.encode(&h[..n], packet, &mut frame);
        self.ip_tx.push_back(frame);
        self.stats.tx_ip_packets += 1;
        Ok(())
    }

    /// Close the link: Terminate-Request, then [`Event::Down`] with `reason`
    /// once the peer acknowledges (or after Max-Terminate retransmissions).
    pub fn close(&mut self, reason: &str, now: Instant) {
        if self.phase == Phase::Dead {
            return;
        }
        self.down_reason.get_or_insert_with(|| reason.to_string());
        self.set_phase(Phase::Terminate);
        self.lcp.fsm.close(reason, now);
        self.pump(now);
    }

    /// The line under the link is gone (the port failed, the far end closed it,
    /// carrier lost): RFC 1661's Down event from the lower layer. Nothing can be
    /// sent any more, so queued frames are discarded and [`Event::Down`] with
    /// `reason` follows at once (after [`Event::NetworkDown`] if IP was up).
    pub fn lower_down(&mut self, reason: &str, now: Instant) {
        if self.phase == Phase::Dead {
            return;
        }
        self.lcp.fsm.down(now);
        while self.lcp.fsm.poll_packet().is_some() {}
        self.ctrl_tx.clear();
        self.ctrl_tx_bytes = 0;
        self.ip_tx.clear();
        self.down_reason = None;
        self.finish(reason.to_string());
    }

    // ----- input -----

    /// Receive ACCM and MRU follow LCP: negotiated values while open, defaults otherwise.
    fn rx_settings(&self) -> (u32, usize) {
        let accm = if self.lcp.fsm.state() == State::Opened {
            self.lcp.fsm.negotiator().our_accm()
        } else {
            ACCM_ALL
        };
        (accm, self.rx_mru())
    }

    fn sync_decoder(&mut self) {
        let (accm, mru) = self.rx_settings();
        self.decoder.set_accm(accm);
        self.decoder.set_mru(mru);
    }

    fn rx_mru(&self) -> usize {
        if self.lcp.fsm.state() == State::Opened {
            // RFC 1661 §6.1: always be able to receive 1500 bytes.
            usize::from(self.lcp.fsm.negotiator().our_mru().max(lcp::DEFAULT_MRU))
        } else {
            usize::from(lcp::DEFAULT_MRU)
        }
    }

    fn handle_frame(&mut self, frame: &[u8], now: Instant) {
        let Ok((header, info)) = Header::parse(frame) else {
            self.stats.rx_malformed += 1;
            return;
        };
        // A flooding peer must not flood the log: the first few frames of each
        // kind per second are logged, the rest summed up.
        self.log_verbose = match frame_kind(header.protocol, info) {
            Some(kind) => self.log_limit.allow(kind, now),
            None => true,
        };
        self.lcp.fsm.set_verbose(self.log_verbose);
        self.ipcp.set_verbose(self.log_verbose);
        let code = info.first().copied();
        match header.protocol {
            lcp::PROTOCOL | ipcp::PROTOCOL => {
                let i = usize::from(header.protocol == ipcp::PROTOCOL);
                self.heard[i] = true;
                match code {
                    Some(CONFIGURE_REQUEST) => {
                        self.rx_conf_requests[i] = self.rx_conf_requests[i].saturating_add(1);
                    }
                    Some(CONFIGURE_ACK) => {
                        self.rx_conf_acks[i] = self.rx_conf_acks[i].saturating_add(1);
                    }
                    _ => {}
                }
            }
            _ => {}
        }
        // Any intact frame proves the peer is alive (lcp-echo-adaptive), except
        // our own echoes coming back from a looped line.
        if header.protocol != lcp::PROTOCOL || !self.lcp.is_own_echo(info) {
            self.lcp.note_traffic();
        }
        match header.protocol {
            lcp::PROTOCOL => match self.lcp.input(info, now) {
                Ok(Some(notice)) => self.lcp_notice(notice, now),
                Ok(None) => {}
                Err(e) => self.malformed("LCP", e),
            },
            pap::PROTOCOL | chap::PROTOCOL => self.auth_input(header.protocol, info, now),
            ipcp::PROTOCOL if self.phase == Phase::Network => {
                if let Err(e) = self.ipcp.input(info, now) {
                    self.malformed("IPCP", e);
                }
            }
            // NCP traffic before the Network phase is silently discarded (RFC 1661 §3.4).
            ipcp::PROTOCOL => {}
            ipcp::IPV4 if self.ip_up => {
                if self.ip_rx.len() >= self.cfg.max_ip_rx_queue {
                    self.stats.rx_ip_dropped += 1;
                } else {
                    self.ip_rx.push_back(info.to_vec());
                    self.stats.rx_ip_packets += 1;
                }
            }
            ipcp::IPV4 => self.stats.rx_ip_dropped += 1,
            other => self.protocol_reject(other, info),
        }
    }

    fn malformed(&mut self, what: &str, e: impl std::fmt::Display) {
        self.stats.rx_malformed += 1;
        if self.log_verbose {
            debug!(protocol = what, error = %e, "malformed packet dropped");
        }
    }

    /// Unknown protocol (IPv6CP, CCP, ...): Protocol-Reject, only while LCP is open.
    fn protocol_reject(&mut self, protocol: u16, info: &[u8]) {
        self.stats.rx_unknown_protocol += 1;
        if self.lcp.fsm.state() != State::Opened {
            return;
        }
        if self.log_verbose {
            debug!(
                protocol = format_args!("{protocol:#06x}"),
                "Protocol-Reject"
            );
        }
        let room = usize::from(self.lcp.fsm.negotiator().peer().mru).saturating_sub(6);
        let mut data = protocol.to_be_bytes().to_vec();
        data.extend_from_slice(&info[..info.len().min(room)]);
        let id = self.lcp.fsm.fresh_id();
        self.lcp.fsm.send(PROTOCOL_REJECT, id, &data);
    }

    fn auth_input(&mut self, protocol: u16, info: &[u8], now: Instant) {
        if !matches!(self.phase, Phase::Authenticate | Phase::Network) {
            return;
        }
        let Ok(pkt) = ControlPacket::parse(info) else {
            self.stats.rx_malformed += 1;
            return;
        };
        // Requests/challenges go to one direction, answers to the other.
        let for_authenticator = match protocol {
            pap::PROTOCOL => pkt.code == pap::AUTH_REQUEST,
            _ => pkt.code == chap::RESPONSE,
        };
        let slot = if for_authenticator {
            &mut self.auth_them
        } else {
            &mut self.auth_us
        };
        match slot {
            Some(s) if s.protocol == protocol => s.role.input(pkt, now),
            _ if !self.log_verbose => {}
            _ => debug!(
                protocol = format_args!("{protocol:#06x}"),
                code = pkt.code,
                "auth packet for no running role dropped"
            ),
        }
    }

    fn lcp_notice(&mut self, notice: LcpNotice, now: Instant) {
        match notice {
            LcpNotice::ProtocolRejected(ipcp::PROTOCOL) => self.ipcp.rejected(true, now),
            LcpNotice::ProtocolRejected(p) => {
                debug!(
                    protocol = format_args!("{p:#06x}"),
                    "peer rejected protocol"
                );
            }
            LcpNotice::LinkDead => {
                let n = self.cfg.lcp.echo_failure;
                self.terminate_now(format!("link dead: no reply to {n} LCP Echo-Requests"), now);
            }
        }
    }

    // ----- state propagation -----

    /// Move packets and signals between layers until nothing changes.
    fn pump(&mut self, now: Instant) {
        loop {
            let mut progress = false;
            while let Some(sig) = self.lcp.fsm.poll_signal() {
                progress = true;
                self.lcp_signal(sig, now);
            }
            while let Some(pkt) = self.lcp.fsm.poll_packet() {
                progress = true;
                self.queue_control(lcp::PROTOCOL, &pkt);
            }
            progress |= self.pump_auth(now);
            while let Some(sig) = self.ipcp.poll_signal() {
                progress = true;
                self.ipcp_signal(sig, now);
            }
            while let Some(pkt) = self.ipcp.poll_packet() {
                progress = true;
                self.queue_control(ipcp::PROTOCOL, &pkt);
            }
            if self.lcp.fsm.negotiator().looped_back() && self.phase != Phase::Dead {
                self.terminate_now("serial line is looped back".into(), now);
                progress = true;
            }
            if self.phase == Phase::Network
                && let Some(bad) = self.ipcp.negotiator().refused()
            {
                let reason = bad.to_string();
                info!(%reason, "PPP: unusable address from the peer");
                self.close_with(reason, "Unusable IP address", now);
                progress = true;
            }
            if !progress {
                break;
            }
        }
        self.note_tx_waiting(now);
    }

    /// Frames queued and the driver not taking them: start the stall clock.
    fn note_tx_waiting(&mut self, now: Instant) {
        let waiting = !self.ctrl_tx.is_empty() || !self.ip_tx.is_empty();
        if !waiting || self.phase == Phase::Dead {
            self.tx_waiting_since = None;
        } else if std::mem::take(&mut self.tx_progress) || self.tx_waiting_since.is_none() {
            self.tx_waiting_since = Some(now);
        }
    }

    /// How long queued frames may wait for the line before the peer counts as
    /// gone: `echo_interval × echo_failure` (3 s with the defaults), or
    /// `restart × max_configure` with the keepalive off.
    pub fn tx_stall_limit(&self) -> Duration {
        match self.cfg.lcp.echo_interval.filter(|i| !i.is_zero()) {
            Some(i) => i.saturating_mul(self.cfg.lcp.echo_failure.max(1)),
            None => self
                .cfg
                .fsm
                .restart
                .saturating_mul(self.cfg.fsm.max_configure.max(1)),
        }
    }

    /// The line took nothing for [`Session::tx_stall_limit`]: end the session.
    fn check_tx_stall(&mut self, now: Instant) -> bool {
        if std::mem::take(&mut self.tx_progress)
            || (self.ctrl_tx.is_empty() && self.ip_tx.is_empty())
        {
            self.tx_waiting_since = None;
            self.note_tx_waiting(now);
            return false;
        }
        let limit = self.tx_stall_limit();
        if self.tx_waiting_since.is_none_or(|t| now < t + limit) {
            return false;
        }
        let reason = format!(
            "peer stopped reading for {} s ({} control frames dropped)",
            fmt_secs(limit.as_secs_f64()),
            self.stats.tx_control_dropped
        );
        // Nothing more can be written: the courtesy Terminate-Request goes
        // nowhere, so do not queue it behind the stuck frames.
        self.lower_down(&reason, now);
        true
    }

    /// Where establishment is stuck, in words (for the establish deadline).
    fn stuck_in(&self) -> String {
        let peer_reqs = |n: u32| {
            if n == 1 {
                "1 Configure-Request".to_string()
            } else {
                format!("{n} Configure-Requests")
            }
        };
        // From what the peer did over the whole attempt, not the state of the
        // moment (a retransmission may just have left Ack-Rcvd).
        let fsm_words = |proto: &str, i: usize| -> String {
            let (heard, reqs, acks) = (
                self.heard[i],
                self.rx_conf_requests[i],
                self.rx_conf_acks[i],
            );
            let why = match (reqs, acks) {
                (0, 0) if !heard => "no answer from the peer".to_string(),
                (0, 0) => "peer sent no Configure-Request and acknowledged none of ours".into(),
                (0, _) => "peer acknowledged our options but never sent its own".into(),
                (_, 0) => format!("peer sent {} but never acknowledged ours", peer_reqs(reqs)),
                _ => format!(
                    "peer sent {} and acknowledged ours, but negotiation never settled",
                    peer_reqs(reqs)
                ),
            };
            format!("{proto}: {why}")
        };
        match self.phase {
            Phase::Establish => fsm_words("LCP", 0),
            Phase::Authenticate => {
                let waiting: Vec<&str> = [
                    (&self.auth_us, "authenticating us"),
                    (&self.auth_them, "authenticating the peer"),
                ]
                .into_iter()
                .filter(|(s, _)| s.as_ref().is_some_and(|s| !s.done))
                .map(|(_, w)| w)
                .collect();
                format!("authentication: {} did not finish", waiting.join(" and "))
            }
            Phase::Network => fsm_words("IPCP", 1),
            Phase::Terminate => "termination".into(),
            Phase::Dead => "nothing".into(),
        }
    }

    fn pump_auth(&mut self, now: Instant) -> bool {
        let mut packets = Vec::new();
        let mut outcomes = Vec::new();
        for slot in [&mut self.auth_us, &mut self.auth_them]
            .into_iter()
            .flatten()
        {
            packets
                .extend(std::iter::from_fn(|| slot.role.poll_packet()).map(|p| (slot.protocol, p)));
            if let Some(o) = slot.role.poll_outcome() {
                if let AuthOutcome::Success { peer_name } = &o {
                    slot.done = true;
                    if !peer_name.is_empty() {
                        self.peer_name = Some(peer_name.clone());
                    }
                }
                outcomes.push(o);
            }
        }
        let progress = !packets.is_empty() || !outcomes.is_empty();
        for (protocol, pkt) in packets {
            self.queue_control(protocol, &pkt);
        }
        for o in outcomes {
            self.auth_outcome(o, now);
        }
        progress
    }

    fn auth_outcome(&mut self, outcome: AuthOutcome, now: Instant) {
        match outcome {
            AuthOutcome::Failure(reason) => {
                debug!(%reason, "authentication failed");
                self.events.push_back(Event::AuthFailed {
                    reason: reason.clone(),
                });
                self.auth_us = None;
                self.auth_them = None;
                self.close_with(reason, "Authentication failed", now);
            }
            AuthOutcome::Success { .. } if self.phase != Phase::Authenticate => {}
            AuthOutcome::Success { .. } => {
                let all_done = [&self.auth_us, &self.auth_them]
                    .into_iter()
                    .flatten()
                    .all(|s| s.done);
                if all_done {
                    let peer_name = self.peer_name.take();
                    self.events.push_back(Event::Authenticated { peer_name });
                    self.enter_network(now);
                }
            }
        }
    }

    fn lcp_signal(&mut self, sig: LayerSignal, now: Instant) {
        if self.phase == Phase::Dead {
            return; // the session is over; late signals from the teardown mean nothing
        }
        match sig {
            LayerSignal::Up => self.lcp_up(now),
            LayerSignal::Down => self.lcp_down(now),
            LayerSignal::Finished => {
                let reason = self
                    .down_reason
                    .take()
                    .unwrap_or_else(|| self.default_down_reason());
                self.finish(reason);
            }
            LayerSignal::Started => {}
        }
    }

    fn default_down_reason(&self) -> String {
        match self.lcp.fsm.peer_term_reason() {
            Some(r) if !r.is_empty() => format!(
                "peer closed the link: {}",
                super::auth::printable(r.as_bytes())
            ),
            Some(_) => "peer closed the link".into(),
            None if self.lcp.fsm.gave_up_on_storm() => format!(
                "LCP negotiation failed: peer sent {} Configure-Requests without agreement",
                self.lcp.fsm.peer_request_limit() + 1
            ),
            None if !self.lcp_was_up => format!(
                "LCP negotiation failed: no agreement after {} Configure-Requests",
                self.cfg.fsm.max_configure
            ),
            None => "LCP renegotiation failed".into(),
        }
    }

    fn lcp_up(&mut self, now: Instant) {
        self.lcp_was_up = true;
        let neg = self.lcp.fsm.negotiator();
        let peer = *neg.peer();
        let our_accm = neg.our_accm();
        let auth_them = neg.auth_peer_with();
        self.encoder.set_accm(peer.accm);
        self.tx_acfc = peer.acfc;
        self.tx_pfc = peer.pfc;
        self.sync_decoder();
        self.ipcp.set_peer_mru(usize::from(peer.mru));
        self.lcp.fsm.set_peer_mru(usize::from(peer.mru));
        self.lcp.start_keepalive(now);
        debug!(?peer, our_accm = format_args!("{our_accm:#010x}"), "LCP up");
        self.events.push_back(Event::LinkUp { mru: peer.mru });

        if !self.cfg.require_auth.is_empty() && auth_them.is_none() {
            let reason = "peer refused to authenticate with PAP or CHAP".to_string();
            self.events.push_back(Event::AuthFailed {
                reason: reason.clone(),
            });
            self.close_with(reason, "Authentication required", now);
            return;
        }
        self.auth_them = auth_them.map(|p| self.authenticator(p));
        self.auth_us = peer.auth.and_then(|p| self.authenticatee(p));
        if self.auth_us.is_none() && self.auth_them.is_none() {
            self.enter_network(now);
            return;
        }
        self.set_phase(Phase::Authenticate);
        for slot in [&mut self.auth_us, &mut self.auth_them]
            .into_iter()
            .flatten()
        {
            slot.role.start(now);
        }
    }

    fn authenticator(&mut self, p: AuthProtocol) -> AuthSlot {
        let role: Box<dyn AuthRole> = match p {
            AuthProtocol::Pap => Box::new(PapServer::new(
                self.cfg.secrets.clone(),
                self.cfg.auth_timeout,
            )),
            AuthProtocol::ChapMd5 => Box::new(ChapServer::new(
                ChapServerConfig {
                    name: self.cfg.name.clone(),
                    restart: self.cfg.fsm.restart,
                    max_transmits: self.cfg.fsm.max_configure,
                    rechallenge: self.cfg.chap_rechallenge,
                },
                self.cfg.secrets.clone(),
                self.rng.next_u64(),
            )),
        };
        AuthSlot {
            protocol: auth_protocol_number(p),
            role,
            done: false,
        }
    }

    fn authenticatee(&mut self, p: AuthProtocol) -> Option<AuthSlot> {
        let creds = self.cfg.credentials.clone()?;
        // A fresh PAP identifier per negotiation: stale Acks must not match.
        self.pap_id = self.pap_id.wrapping_add(1);
        let role: Box<dyn AuthRole> = match p {
            AuthProtocol::Pap => Box::new(PapClient::new(
                creds,
                self.cfg.fsm.restart,
                self.cfg.fsm.max_configure,
                self.pap_id,
            )),
            AuthProtocol::ChapMd5 => Box::new(ChapPeer::new(creds, self.cfg.auth_timeout)),
        };
        Some(AuthSlot {
            protocol: auth_protocol_number(p),
            role,
            done: false,
        })
    }

    fn enter_network(&mut self, now: Instant) {
        self.set_phase(Phase::Network);
        self.ipcp.open(now);
        self.ipcp.up(now);
    }

    fn lcp_down(&mut self, now: Instant) {
        self.arm_establish_deadline(now);
        self.lcp.stop_keepalive();
        self.auth_us = None;
        self.auth_them = None;
        self.ipcp.down(now);
        // Back to the defaults until LCP agrees again.
        self.encoder.set_accm(ACCM_ALL);
        self.sync_decoder();
        self.tx_acfc = false;
        self.tx_pfc = false;
        self.ip_tx.clear();
        // The peer's Terminate-Request (LCP now Stopping): Terminate, as for our
        // own close. Renegotiation (a new Configure-Request): back to Establish.
        if matches!(self.phase, Phase::Authenticate | Phase::Network) {
            let terminating = matches!(self.lcp.fsm.state(), State::Stopping | State::Closing);
            self.set_phase(if terminating {
                Phase::Terminate
            } else {
                Phase::Establish
            });
        }
    }

    fn ipcp_signal(&mut self, sig: LayerSignal, now: Instant) {
        if self.phase == Phase::Dead {
            return;
        }
        match sig {
            LayerSignal::Up => {
                let o = self.ipcp.negotiator();
                let (local, peer, dns) = (o.local(), o.peer(), o.dns());
                if local.is_unspecified() {
                    self.close_with(
                        "peer did not assign us an IP address".into(),
                        "No IP address",
                        now,
                    );
                    return;
                }
                if let Some(bad) = o.check_final() {
                    self.close_with(bad.to_string(), "Unusable IP address", now);
                    return;
                }
                self.ip_up = true;
                self.establish_deadline = None;
                let mru = self.lcp.fsm.negotiator().peer().mru;
                debug!(%local, %peer, ?dns, mru, "IPCP up");
                self.events.push_back(Event::Up {
                    local,
                    peer,
                    dns,
                    mru,
                });
            }
            LayerSignal::Down => {
                self.arm_establish_deadline(now);
                self.ip_down(match self.phase {
                    Phase::Terminate => "link closing",
                    Phase::Establish => "LCP renegotiating",
                    _ => "IPCP renegotiating",
                })
            }
            LayerSignal::Finished => {
                self.ip_down("IPCP finished");
                // pppd closes the link when its last network protocol is gone.
                if self.phase == Phase::Network {
                    let why = match self.ipcp.peer_term_reason() {
                        Some(r) => {
                            format!("peer closed IPCP: {}", super::auth::printable(r.as_bytes()))
                        }
                        None if self.ipcp.gave_up_on_storm() => format!(
                            "IPCP negotiation failed: peer sent {} Configure-Requests without agreement",
                            self.ipcp.peer_request_limit() + 1
                        ),
                        None => "IPCP negotiation failed".into(),
                    };
                    self.close_with(why, "No network protocols running", now);
                }
            }
            LayerSignal::Started => {}
        }
    }

    /// A renegotiation starts: IP must be up again within the establish timeout.
    fn arm_establish_deadline(&mut self, now: Instant) {
        if self.establish_deadline.is_none() {
            self.establish_deadline = self.cfg.establish_timeout.map(|t| now + t);
        }
    }

    fn ip_down(&mut self, reason: &str) {
        if std::mem::take(&mut self.ip_up) {
            self.ip_tx.clear();
            self.events.push_back(Event::NetworkDown {
                reason: reason.into(),
            });
        }
    }

    /// Close LCP with `wire_reason` in the Terminate-Request; report `reason`.
    fn close_with(&mut self, reason: String, wire_reason: &str, now: Instant) {
        self.down_reason.get_or_insert(reason);
        self.set_phase(Phase::Terminate);
        self.lcp.fsm.close(wire_reason, now);
    }

    /// Send one Terminate-Request as a courtesy and go down at once: the peer is
    /// not answering (or is ourselves), so waiting for its Ack is pointless.
    fn terminate_now(&mut self, reason: String, now: Instant) {
        self.down_reason.get_or_insert(reason);
        self.lcp.fsm.close("Peer not responding", now);
        self.lcp.fsm.down(now);
        while let Some(pkt) = self.lcp.fsm.poll_packet() {
            self.queue_control(lcp::PROTOCOL, &pkt);
        }
        let reason = self.down_reason.take().unwrap_or_default();
        self.finish(reason);
    }

    fn finish(&mut self, reason: String) {
        if self.phase == Phase::Dead {
            return;
        }
        self.ip_down("link down");
        self.auth_us = None;
        self.auth_them = None;
        self.lcp.stop_keepalive();
        self.establish_deadline = None;
        self.tx_waiting_since = None;
        self.log_limit.flush();
        debug!(%reason, "link down");
        self.set_phase(Phase::Dead);
        self.events.push_back(Event::Down { reason });
    }

    fn set_phase(&mut self, phase: Phase) {
        if self.phase != phase {
            debug!(from = ?self.phase, to = ?phase, "phase");
            self.phase = phase;
            self.events.push_back(Event::Phase(phase));
        }
    }

    /// Frame a control packet. LCP negotiation packets (codes 1..=7) always use
    /// the all-ones ACCM and an uncompressed header (RFC 1662 §7.1, RFC 1661
    /// §6.6); other LCP packets use the negotiated ACCM but never ACFC.
    fn queue_control(&mut self, protocol: u16, pkt: &[u8]) {
        let code = pkt.first().copied().unwrap_or(0);
        let lcp_code = |codes: &[u8]| protocol == lcp::PROTOCOL && codes.contains(&code);
        let cap = self.cfg.max_control_queue;
        let full = if lcp_code(&[ECHO_REPLY, PROTOCOL_REJECT, CODE_REJECT, DISCARD_REQUEST]) {
            // Best effort: answers to a peer that is not reading us.
            self.ctrl_tx_bytes >= cap
        } else {
            !lcp_code(&[TERMINATE_REQUEST, TERMINATE_ACK])
                && self.ctrl_tx_bytes >= cap.saturating_mul(2)
        };
        if full {
            if self.stats.tx_control_dropped == 0 {
                info!(
                    queued = self.ctrl_tx_bytes,
                    "PPP: the peer is not taking what we write; dropping control frames"
                );
            }
            self.stats.tx_control_dropped += 1;
            return;
        }
        let mut frame = Vec::with_capacity(pkt.len() * 2 + 10);
        if protocol == lcp::PROTOCOL {
            let (h, n) = Header { protocol }.emit(false, false);
            let code = pkt.first().copied().unwrap_or(0);
            if (CONFIGURE_REQUEST..=CODE_REJECT).contains(&code) {
                Encoder::encode_default_accm(&h[..n], pkt, &mut frame);
            } else {
                self.encoder.encode(&h[..n], pkt, &mut frame);
            }
        } else {
            let (h, n) = Header { protocol }.emit(self.tx_acfc, self.tx_pfc);
            self.encoder.encode(&h[..n], pkt, &mut frame);
        }
        self.ctrl_tx_bytes += frame.len();
        self.ctrl_tx.push_back(frame);
    }
}

/// Seconds for messages: "3", "2.5".
fn fmt_secs(secs: f64) -> String {
    let s = format!("{secs:.1}");
    s.strip_suffix(".0").map_or(s.clone(), str::to_string)
}

/// The kind of a received frame for the log rate limit (`None`: never logged per packet).
fn frame_kind(protocol: u16, info: &[u8]) -> Option<&'static str> {
    let code = info.first().copied().unwrap_or(0);
    Some(match protocol {
        lcp::PROTOCOL => match code {
            1 => "LCP Configure-Requests",
            2 => "LCP Configure-Acks",
            3 => "LCP Configure-Naks",
            4 => "LCP Configure-Rejects",
            5 => "LCP Terminate-Requests",
            6 => "LCP Terminate-Acks",
            7 => "LCP Code-Rejects",
            8 => "LCP Protocol-Rejects",
            9 => "LCP Echo-Requests",
            10 => "LCP Echo-Replies",
            11 => "LCP Discard-Requests",
            _ => "LCP packets of unknown codes",
        },
        ipcp::PROTOCOL => match code {
            1 => "IPCP Configure-Requests",
            2..=4 => "IPCP Configure answers",
            _ => "other IPCP packets",
        },
        pap::PROTOCOL => "PAP packets",
        chap::PROTOCOL => "CHAP packets",
        ipcp::IPV4 => return None,
        _ => "frames of unknown protocols",
    })
}

/// Frames of one kind logged per window at most; the rest are summed up.
const LOG_BURST: u32 = 5;
/// The rate limit's window.
const LOG_WINDOW: Duration = Duration::from_secs(1);

/// Per-kind log rate limit: the first [`LOG_BURST`] frames of a kind in each
/// [`LOG_WINDOW`] are logged in full; for the others one summary line ("N more
/// LCP Configure-Requests suppressed") comes at the next window or at the end.
/// Kinds are the fixed names of [`frame_kind`], so the table stays small.
#[derive(Debug, Default)]
struct LogLimiter {
    kinds: Vec<KindCount>,
}

#[derive(Debug)]
struct KindCount {
    kind: &'static str,
    window: Instant,
    seen: u32,
    suppressed: u64,
}

impl LogLimiter {
    /// Whether this frame of `kind` may be logged.
    fn allow(&mut self, kind: &'static str, now: Instant) -> bool {
        let i = match self.kinds.iter().position(|k| k.kind == kind) {
            Some(i) => i,
            None => {
                self.kinds.push(KindCount {
                    kind,
                    window: now,
                    seen: 0,
                    suppressed: 0,
                });
                self.kinds.len() - 1
            }
        };
        let k = &mut self.kinds[i];
        if now.saturating_duration_since(k.window) >= LOG_WINDOW {
            k.report();
            k.window = now;
            k.seen = 0;
        }
        k.seen = k.seen.saturating_add(1);
        if k.seen <= LOG_BURST {
            return true;
        }
        k.suppressed += 1;
        false
    }

    /// Report what is still suppressed (at the end of the session).
    fn flush(&mut self) {
        for k in &mut self.kinds {
            k.report();
        }
    }

    /// Frames of each kind suppressed and not yet reported.
    #[cfg(test)]
    fn suppressed(&self, kind: &str) -> u64 {
        self.kinds
            .iter()
            .find(|k| k.kind == kind)
            .map_or(0, |k| k.suppressed)
    }
}

impl KindCount {
    fn report(&mut self) {
        if self.suppressed > 0 {
            info!(
                "PPP: {} more {} suppressed (log rate limit)",
                self.suppressed, self.kind
            );
            self.suppressed = 0;
        }
    }
}

fn auth_protocol_number(p: AuthProtocol) -> u16 {
    match p {
        AuthProtocol::Pap => lcp::PAP,
        AuthProtocol::ChapMd5 => lcp::CHAP,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_limiter_logs_a_burst_then_sums_up_per_second() {
        let t0 = Instant::now();
        let mut l = LogLimiter::default();
        let allowed = (0..1000)
            .filter(|_| l.allow("LCP Configure-Requests", t0))
            .count();
        assert_eq!(allowed, LOG_BURST as usize);
        assert_eq!(
            l.suppressed("LCP Configure-Requests"),
            1000 - u64::from(LOG_BURST)
        );
        // Another kind has its own budget.
        assert!(l.allow("LCP Echo-Requests", t0));
        // The next window reports the sum and starts a new burst.
        assert!(l.allow("LCP Configure-Requests", t0 + LOG_WINDOW));
        assert_eq!(l.suppressed("LCP Configure-Requests"), 0);
        l.flush();
    }

    #[test]
    fn seconds_read_naturally() {
        assert_eq!(fmt_secs(3.0), "3");
        assert_eq!(fmt_secs(2.5), "2.5");
        assert_eq!(fmt_secs(30.0), "30");
    }
}
