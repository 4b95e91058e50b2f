//! A whole PPP link, sans-IO: fed raw serial bytes and the time, it emits
//! bytes to write, timer deadlines, decoded IPv4 packets and [`Event`]s.
//!
//! ```text
//! Dead → Establish (LCP) → Authenticate (PAP/CHAP) → Network (IPCP) → Terminate → Dead
//! ```
//!
//! A `Session` covers one connection: once [`Event::Down`] was emitted it is
//! finished (phase Dead) and ignores further input; dial again with a new one.
//!
//! This file is the phase machine: the public API, LCP opening and closing the
//! link, and how the session ends. The other phases and the plumbing are in
//! submodules, each an `impl Session` block over the same state:
//! - `config`: what a session is told; `event`: what it reports;
//! - `auth`: the Authenticate phase (PAP/CHAP, both directions);
//! - `network`: the Network phase (IPCP, the IPv4 queues);
//! - `input`: received frames to the protocols, with a log rate limit;
//! - `output`: the bounded control queue, framing, the stall detector;
//! - `establish`: the deadline for IP to come up, and where it got stuck;
//! - `member`: Multilink member mode (the bundle's frames in and out instead of IPCP).

mod auth;
mod config;
mod establish;
mod event;
mod input;
mod member;
mod network;
mod output;

use std::collections::VecDeque;
use std::time::Instant;

pub use config::{Config, DEFAULT_ESTABLISH_TIMEOUT, DEFAULT_MAX_CONTROL_QUEUE, Framing, Role};
pub use event::{ControlProtocol, DownReason, Event, NegotiationFailure, SendError, Stats};
pub(crate) use network::{ipcp_agreed, ipcp_finished};

use self::auth::AuthSlot;
use self::input::LogLimiter;
use super::Rng;
use super::fsm::{Fsm, LayerSignal, State};
use super::hdlc::{ACCM_ALL, Decoder, Encoder};
use super::ipcp::{self, IpcpOptions};
use super::lcp::{self, AuthMethods, Lcp, LcpNotice};

/// Log target: the module's path from before the core became a crate (see the crate root).
const LOG_TARGET: &str = "eqlplus_dialer::ppp::session";

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

/// What LCP agreed on for a link ([`Session::link_parameters`]); `Default` is what holds
/// before LCP opens (RFC 1661/1662 defaults: MRU 1500, all-ones ACCM, no compression).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkParameters {
    /// Largest information field we accept: our acknowledged MRU, never below 1500
    /// (RFC 1661 §6.1). A kernel channel's `PPPIOCSMRU`.
    pub mru: u16,
    /// Largest information field the peer accepts: what we may send (the interface's MTU).
    pub peer_mru: u16,
    /// Control characters we escape when sending (the peer's ACCM): `PPPIOCSASYNCMAP`.
    pub tx_accm: u32,
    /// Control characters the peer escapes when sending to us (ours): `PPPIOCSRASYNCMAP`.
    pub rx_accm: u32,
    /// We may send compressed protocol fields (the peer asked for PFC): `SC_COMP_PROT`.
    pub tx_pfc: bool,
    /// We may omit address and control (the peer asked for ACFC): `SC_COMP_AC`.
    pub tx_acfc: bool,
    /// The peer may send us compressed protocol fields (it acknowledged our PFC).
    pub rx_pfc: bool,
    /// The peer may omit address and control (it acknowledged our ACFC).
    pub rx_acfc: bool,
}

impl Default for LinkParameters {
    fn default() -> Self {
        LinkParameters {
            mru: lcp::DEFAULT_MRU,
            peer_mru: lcp::DEFAULT_MRU,
            tx_accm: ACCM_ALL,
            rx_accm: ACCM_ALL,
            tx_pfc: false,
            tx_acfc: false,
            rx_pfc: false,
            rx_acfc: false,
        }
    }
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
    /// Why the session is closing (ours or an error), for [`Event::Down`].
    down_reason: Option<DownReason>,
    ip_up: bool,
    lcp_was_up: bool,
    /// Name the peer authenticated with (for the bundle's identity under Multilink).
    peer_name: Option<String>,
    /// Multilink as agreed, while the link is a bundle member (after authentication).
    member: Option<crate::mp::Negotiated>,
    /// Frames for the bundle, until `poll_bundle_frame` (bounded by `max_ip_rx_queue`).
    bundle_rx: VecDeque<(u16, Vec<u8>)>,
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
            member: None,
            bundle_rx: VecDeque::new(),
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

    /// Multilink as LCP agreed it on this link, while LCP is open: `None` when either side
    /// did not acknowledge the other's MRRU (a plain PPP link, the fallback).
    pub fn multilink(&self) -> Option<crate::mp::Negotiated> {
        if self.lcp.fsm.state() != State::Opened {
            return None;
        }
        self.lcp.fsm.negotiator().multilink()
    }

    /// What LCP agreed on for this link, while LCP is open: what a kernel PPP channel must
    /// be told (ACCMs, MRU, compression) once the link is up, and again after a
    /// renegotiation ([`Event::LinkUp`]). `None` before that and while renegotiating, when
    /// the defaults ([`LinkParameters::default`]) apply.
    pub fn link_parameters(&self) -> Option<LinkParameters> {
        if self.lcp.fsm.state() != State::Opened {
            return None;
        }
        let neg = self.lcp.fsm.negotiator();
        let peer = neg.peer();
        Some(LinkParameters {
            // RFC 1661 §6.1: always be able to receive 1500 bytes.
            mru: neg.our_mru().max(lcp::DEFAULT_MRU),
            peer_mru: peer.mru,
            tx_accm: peer.accm,
            rx_accm: neg.our_accm(),
            tx_pfc: peer.pfc,
            tx_acfc: peer.acfc,
            rx_pfc: neg.our_pfc(),
            rx_acfc: neg.our_acfc(),
        })
    }

    /// How frames are taken and given ([`Config::framing`]).
    pub fn framing(&self) -> Framing {
        self.cfg.framing
    }

    /// Counters, framing errors included.
    pub fn stats(&self) -> Stats {
        let d = self.decoder.stats();
        // Whole frames (`handle_frame_input`) count in `self.stats`, decoded ones in the
        // decoder: a session sees one kind or the other, the sum is right for both.
        Stats {
            rx_frames: d.frames + self.stats.rx_frames,
            rx_bad_fcs: d.bad_fcs,
            rx_oversize: d.oversize + self.stats.rx_oversize,
            rx_aborted: d.aborted,
            ..self.stats
        }
    }

    /// Feed raw bytes read from the serial line.
    ///
    /// Under [`Framing::Unframed`] there is no byte stream: `bytes` is taken as one whole
    /// frame, as [`Session::handle_frame_input`] takes it.
    pub fn handle_input(&mut self, bytes: &[u8], now: Instant) {
        if self.phase == Phase::Dead {
            return;
        }
        if self.cfg.framing == Framing::Unframed {
            self.handle_frame_input(bytes, now);
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
        self.check_establish_deadline(now);
    }

    /// The protocols' own timers (restart, keepalive, authentication).
    fn run_timers(&mut self, now: Instant) {
        if let Some(notice) = self.lcp.handle_timeout(now) {
            self.lcp_notice(notice, now);
        }
        self.ipcp.handle_timeout(now);
        self.auth_timers(now);
        self.pump(now);
    }

    /// Earliest deadline at which `handle_timeout` must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.phase == Phase::Dead {
            return None;
        }
        let stall = self.tx_waiting_since.map(|t| t + self.tx_stall_limit());
        [
            self.lcp.poll_timeout(),
            self.ipcp.poll_timeout(),
            stall,
            self.establish_deadline,
        ]
        .into_iter()
        .flatten()
        .chain(self.auth_poll_timeout())
        .min()
    }

    /// Next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Close the link: Terminate-Request, then [`Event::Down`] with `reason`
    /// once the peer acknowledges (or after Max-Terminate retransmissions).
    pub fn close(&mut self, reason: &str, now: Instant) {
        if self.phase == Phase::Dead {
            return;
        }
        self.down_reason
            .get_or_insert_with(|| DownReason::LocalClose {
                reason: reason.to_string(),
            });
        self.set_phase(Phase::Terminate);
        self.lcp.fsm.close(reason, now);
        self.pump(now);
    }

    /// The line under the link is gone (the port failed, the far end closed it,
    /// carrier lost): RFC 1661's Down event from the lower layer. Nothing can be
    /// sent any more, so queued frames are discarded and [`Event::Down`] with
    /// `reason` follows at once (after [`Event::NetworkDown`] if IP was up):
    /// [`DownReason::LowerDown`], which keeps the reason of a close in progress.
    pub fn lower_down(&mut self, reason: &str, now: Instant) {
        let reason = reason.to_string();
        self.end_at_once(|closing| DownReason::LowerDown { reason, closing }, now);
    }

    /// Nothing can be sent any more: discard what is queued and go down at once,
    /// for the reason `why` makes of the close in progress (if any).
    pub(super) fn end_at_once(
        &mut self,
        why: impl FnOnce(Option<Box<DownReason>>) -> DownReason,
        now: Instant,
    ) {
        if self.phase == Phase::Dead {
            return;
        }
        self.lcp.fsm.down(now);
        while self.lcp.fsm.poll_packet().is_some() {}
        self.ctrl_tx.clear();
        self.ctrl_tx_bytes = 0;
        self.ip_tx.clear();
        let closing = self.down_reason.take().map(Box::new);
        self.finish(why(closing));
    }

    // ----- LCP and the phases -----

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
                let requests = self.cfg.lcp.echo_failure;
                self.terminate_now(DownReason::EchoTimeout { requests }, now);
            }
            LcpNotice::EchoRtt(rtt) => self.events.push_back(Event::EchoRtt { rtt }),
        }
    }

    // ----- state propagation -----

    /// Move packets and signals between layers until nothing changes.
    pub(super) fn pump(&mut self, now: Instant) {
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
            progress |= self.pump_network(now);
            if self.lcp.fsm.negotiator().looped_back() && self.phase != Phase::Dead {
                self.terminate_now(DownReason::LoopedBack, now);
                progress = true;
            }
            progress |= self.check_peer_address(now);
            if !progress {
                break;
            }
        }
        self.note_tx_waiting(now);
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

    /// LCP finished without a reason of ours: the peer's doing, or no agreement.
    fn default_down_reason(&self) -> DownReason {
        let lcp_failed = |failure| DownReason::NegotiationFailed {
            protocol: ControlProtocol::Lcp,
            failure,
        };
        match self.lcp.fsm.peer_term_reason() {
            Some(r) if !r.is_empty() => DownReason::PeerTerminated {
                reason: Some(crate::auth::printable(r.as_bytes())),
            },
            Some(_) => DownReason::PeerTerminated { reason: None },
            None if self.lcp.fsm.gave_up_on_storm() => {
                lcp_failed(NegotiationFailure::PeerRequestStorm {
                    requests: self.lcp.fsm.peer_request_limit() + 1,
                })
            }
            None if !self.lcp_was_up => lcp_failed(NegotiationFailure::NoAgreement {
                requests: self.cfg.fsm.max_configure,
            }),
            None => lcp_failed(NegotiationFailure::Renegotiation),
        }
    }

    fn lcp_up(&mut self, now: Instant) {
        self.lcp_was_up = true;
        let neg = self.lcp.fsm.negotiator();
        let peer = *neg.peer();
        let our_accm = neg.our_accm();
        let auth_them = neg.auth_peer_with();
        // Under Framing::Unframed these go unused: the kernel frames (from link_parameters).
        self.encoder.set_accm(peer.accm);
        self.tx_acfc = peer.acfc;
        self.tx_pfc = peer.pfc;
        self.sync_decoder();
        self.ipcp.set_peer_mru(usize::from(peer.mru));
        self.lcp.fsm.set_peer_mru(usize::from(peer.mru));
        self.lcp.start_keepalive(now);
        debug!(?peer, our_accm = format_args!("{our_accm:#010x}"), "LCP up");
        self.events.push_back(Event::LinkUp { mru: peer.mru });
        self.start_authentication(auth_them, peer.auth, now);
    }

    fn lcp_down(&mut self, now: Instant) {
        self.arm_establish_deadline(now);
        self.leave_bundle(
            if matches!(self.lcp.fsm.state(), State::Stopping | State::Closing) {
                "link closing"
            } else {
                "LCP renegotiating"
            },
        );
        self.peer_name = None;
        self.lcp.stop_keepalive();
        self.stop_authentication();
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

    /// Close LCP with `wire_reason` in the Terminate-Request; report `reason`.
    fn close_with(&mut self, reason: DownReason, wire_reason: &str, now: Instant) {
        self.down_reason.get_or_insert(reason);
        self.set_phase(Phase::Terminate);
        self.lcp.fsm.close(wire_reason, now);
    }

    /// Send one Terminate-Request as a courtesy and go down at once: the peer is
    /// not answering (or is ourselves), so waiting for its Ack is pointless.
    /// A reason of a close already in progress stays.
    fn terminate_now(&mut self, reason: DownReason, now: Instant) {
        self.lcp.fsm.close("Peer not responding", now);
        self.lcp.fsm.down(now);
        while let Some(pkt) = self.lcp.fsm.poll_packet() {
            self.queue_control(lcp::PROTOCOL, &pkt);
        }
        let reason = self.down_reason.take().unwrap_or(reason);
        self.finish(reason);
    }

    fn finish(&mut self, reason: DownReason) {
        if self.phase == Phase::Dead {
            return;
        }
        self.ip_down("link down");
        self.leave_bundle("link down");
        self.stop_authentication();
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
}
