//! LCP (RFC 1661): link options, echo keepalive, Protocol-Reject.
//!
//! [`LcpOptions`] is the [`Negotiator`] for MRU, ACCM, Authentication-Protocol,
//! Magic-Number, PFC and ACFC, and with [`LcpConfig::multilink`] for RFC 1990's MRRU,
//! Short Sequence Number Header Format and Endpoint Discriminator. [`Lcp`] wraps the
//! shared automaton and adds the LCP-only codes (Protocol-Reject, Echo, Discard) and the
//! keepalive.
//!
//! Like pppd, our first Configure-Request asks for ACCM 0, a random magic
//! number, PFC and ACFC (MRU only when it is not the default 1500), plus the
//! authentication protocol when we are the authenticator. With Multilink on we add MRRU,
//! SSNHF (if wanted) and our Endpoint Discriminator after them, in pppd's order; a peer that
//! rejects MRRU gets a plain link (we drop all three).

use std::time::{Duration, Instant};

use super::Rng;
use super::fsm::{Fsm, FsmConfig, Negotiator, State, Verdict};
use super::hdlc::ACCM_ALL;
use super::mp::{self, EndpointDiscriminator, MultilinkConfig};
use super::packet::{
    ConfigOption, ControlPacket, DISCARD_REQUEST, ECHO_REPLY, ECHO_REQUEST, PROTOCOL_REJECT,
    PacketError, emit_option,
};

/// Log target: the module's path from before the core became a crate (see the crate root).
const LOG_TARGET: &str = "eqlplus_dialer::ppp::lcp";

/// LCP protocol number.
pub const PROTOCOL: u16 = 0xc021;
/// PAP protocol number.
pub const PAP: u16 = 0xc023;
/// CHAP protocol number.
pub const CHAP: u16 = 0xc223;
/// CHAP algorithm number for MD5.
pub const CHAP_MD5: u8 = 5;
/// Default MRU.
pub const DEFAULT_MRU: u16 = 1500;
/// Smallest MRU we accept from a peer (pppd's MINMRU).
pub const MIN_MRU: u16 = 128;
/// Loopback detections before declaring the line looped back (pppd default).
const MAX_LOOPS: u32 = 10;

/// Option types.
mod opt {
    pub(super) const MRU: u8 = 1;
    pub(super) const ACCM: u8 = 2;
    pub(super) const AUTH: u8 = 3;
    pub(super) const MAGIC: u8 = 5;
    pub(super) const PFC: u8 = 7;
    pub(super) const ACFC: u8 = 8;
    pub(super) const MRRU: u8 = 17;
    pub(super) const SSNHF: u8 = 18;
    pub(super) const EPDISC: u8 = 19;
}

/// Authentication protocols we speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthProtocol {
    /// PAP, RFC 1334.
    Pap,
    /// CHAP with MD5, RFC 1994.
    ChapMd5,
}

impl AuthProtocol {
    fn emit(self, out: &mut Vec<u8>) {
        match self {
            AuthProtocol::Pap => emit_option(out, opt::AUTH, &PAP.to_be_bytes()),
            AuthProtocol::ChapMd5 => {
                let [h, l] = CHAP.to_be_bytes();
                emit_option(out, opt::AUTH, &[h, l, CHAP_MD5]);
            }
        }
    }

    fn parse(value: &[u8]) -> Option<AuthProtocol> {
        match value {
            [0xc0, 0x23] => Some(AuthProtocol::Pap),
            [0xc2, 0x23, CHAP_MD5] => Some(AuthProtocol::ChapMd5),
            _ => None,
        }
    }
}

/// Which protocols are allowed in one direction of authentication.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuthMethods {
    /// PAP allowed.
    pub pap: bool,
    /// CHAP-MD5 allowed.
    pub chap: bool,
}

impl AuthMethods {
    /// Neither allowed.
    pub const NONE: AuthMethods = AuthMethods {
        pap: false,
        chap: false,
    };

    /// True when no protocol is allowed.
    pub fn is_empty(self) -> bool {
        !self.pap && !self.chap
    }

    /// Whether `p` is allowed.
    pub fn allows(self, p: AuthProtocol) -> bool {
        match p {
            AuthProtocol::Pap => self.pap,
            AuthProtocol::ChapMd5 => self.chap,
        }
    }

    /// Preferred allowed protocol: CHAP before PAP, as pppd.
    pub fn preferred(self) -> Option<AuthProtocol> {
        if self.chap {
            Some(AuthProtocol::ChapMd5)
        } else if self.pap {
            Some(AuthProtocol::Pap)
        } else {
            None
        }
    }
}

/// LCP settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LcpConfig {
    /// Our MRU (what we ask the peer to send at most).
    pub mru: u16,
    /// Control characters we want the peer to escape.
    pub accm: u32,
    /// Ask for protocol field compression.
    pub pfc: bool,
    /// Ask for address/control field compression.
    pub acfc: bool,
    /// Interval between Echo-Requests once LCP is open (`None`: no keepalive).
    pub echo_interval: Option<Duration>,
    /// Consecutive unanswered Echo-Requests before the link is declared dead.
    pub echo_failure: u32,
    /// Negotiate Multilink (RFC 1990) on this link; `None`: reject the peer's MRRU, SSNHF
    /// and Endpoint Discriminator, a plain PPP link.
    pub multilink: Option<MultilinkConfig>,
}

impl Default for LcpConfig {
    fn default() -> Self {
        LcpConfig {
            mru: DEFAULT_MRU,
            accm: 0,
            pfc: true,
            acfc: true,
            echo_interval: Some(Duration::from_secs(1)),
            echo_failure: 3,
            multilink: None,
        }
    }
}

/// What we ask for in our Configure-Request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Wants {
    mru: Option<u16>,
    accm: Option<u32>,
    auth: Option<AuthProtocol>,
    magic: Option<u32>,
    pfc: bool,
    acfc: bool,
    mrru: Option<u16>,
    ssnhf: bool,
    endpoint: Option<EndpointDiscriminator>,
}

/// What the peer asked for and we acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerOptions {
    /// Largest frame we may send.
    pub mru: u16,
    /// Control characters we must escape when sending.
    pub accm: u32,
    /// How the peer wants us to authenticate ourselves.
    pub auth: Option<AuthProtocol>,
    /// Peer's magic number.
    pub magic: Option<u32>,
    /// We may compress the protocol field.
    pub pfc: bool,
    /// We may omit address and control.
    pub acfc: bool,
    /// The peer's MRRU: it implements Multilink and reassembles packets this large.
    pub mrru: Option<u16>,
    /// The peer wants short sequence numbers in the fragments we send.
    pub ssnhf: bool,
    /// The peer's Endpoint Discriminator.
    pub endpoint: Option<EndpointDiscriminator>,
}

impl Default for PeerOptions {
    fn default() -> Self {
        PeerOptions {
            mru: DEFAULT_MRU,
            accm: ACCM_ALL,
            auth: None,
            magic: None,
            pfc: false,
            acfc: false,
            mrru: None,
            ssnhf: false,
            endpoint: None,
        }
    }
}

/// LCP option negotiation state.
#[derive(Debug)]
pub struct LcpOptions {
    cfg: LcpConfig,
    /// Protocols we may authenticate ourselves with (we have credentials).
    can_auth: AuthMethods,
    /// Protocols we accept to authenticate the peer with (empty: no auth required).
    require: AuthMethods,
    want: Wants,
    peer: PeerOptions,
    rng: Rng,
    loops: u32,
    /// The peer rejected our Authentication-Protocol option.
    auth_refused: bool,
}

impl LcpOptions {
    /// Options for a link with `cfg`; `can_auth` says which protocols we can
    /// answer as the authenticated side, `require` which ones we demand.
    pub fn new(cfg: LcpConfig, can_auth: AuthMethods, require: AuthMethods, seed: u64) -> Self {
        let mut o = LcpOptions {
            cfg,
            can_auth,
            require,
            want: Wants {
                mru: None,
                accm: None,
                auth: None,
                magic: None,
                pfc: false,
                acfc: false,
                mrru: None,
                ssnhf: false,
                endpoint: None,
            },
            peer: PeerOptions::default(),
            rng: Rng::new(seed),
            loops: 0,
            auth_refused: false,
        };
        o.reset();
        o
    }

    /// Our magic number, if the peer accepted that we use one.
    pub fn our_magic(&self) -> Option<u32> {
        self.want.magic
    }

    /// Our MRU as acknowledged (receive side).
    pub fn our_mru(&self) -> u16 {
        self.want.mru.unwrap_or(DEFAULT_MRU)
    }

    /// The ACCM the peer agreed to use when sending to us.
    pub fn our_accm(&self) -> u32 {
        self.want.accm.unwrap_or(ACCM_ALL)
    }

    /// The peer agreed to send us compressed protocol fields (valid once LCP is open).
    pub fn our_pfc(&self) -> bool {
        self.want.pfc
    }

    /// The peer agreed to omit address and control when sending to us (valid once LCP is
    /// open).
    pub fn our_acfc(&self) -> bool {
        self.want.acfc
    }

    /// The protocol we authenticate the peer with, once acknowledged.
    pub fn auth_peer_with(&self) -> Option<AuthProtocol> {
        self.want.auth
    }

    /// What the peer asked of us (valid once LCP is open).
    pub fn peer(&self) -> &PeerOptions {
        &self.peer
    }

    /// The peer refused to authenticate (rejected the Authentication-Protocol option).
    pub fn auth_refused(&self) -> bool {
        self.auth_refused
    }

    /// Multilink as agreed (valid once LCP is open): on only when the peer acknowledged our
    /// MRRU and we acknowledged its MRRU, as pppd decides it.
    pub fn multilink(&self) -> Option<mp::Negotiated> {
        Some(mp::Negotiated {
            our_mrru: self.want.mrru?,
            peer_mrru: self.peer.mrru?,
            tx_short_seq: self.peer.ssnhf,
            rx_short_seq: self.want.ssnhf,
            peer_endpoint: self.peer.endpoint,
        })
    }

    /// Stop asking for Multilink: the peer does not do it (or not on our terms).
    fn drop_multilink(&mut self) {
        if self.want.mrru.is_some() {
            debug!("peer refused our MRRU: a plain PPP link, no Multilink");
        }
        self.want.mrru = None;
        self.want.ssnhf = false;
        self.want.endpoint = None;
    }

    /// Judge one of the peer's Multilink options (only called with Multilink configured).
    fn check_multilink_option(
        &mut self,
        o: ConfigOption<'_>,
        ours: MultilinkConfig,
        rid: bool,
        nak: &mut Vec<u8>,
    ) -> Verdict {
        match o.kind {
            opt::MRRU => match o.as_u16() {
                Some(mrru) if mrru >= mp::MIN_MRRU => {
                    self.peer.mrru = Some(mrru);
                    Verdict::Ack
                }
                Some(_) if !rid => {
                    emit_option(nak, opt::MRRU, &ours.mrru.max(mp::MIN_MRRU).to_be_bytes());
                    Verdict::Nak
                }
                _ => Verdict::Reject,
            },
            opt::SSNHF if o.value.is_empty() => {
                self.peer.ssnhf = true;
                Verdict::Ack
            }
            opt::EPDISC => match EndpointDiscriminator::parse(o.value) {
                Ok(ed) => {
                    self.peer.endpoint = Some(ed);
                    Verdict::Ack
                }
                // RFC 1990 §5.1.3: never Nak'd.
                Err(_) => Verdict::Reject,
            },
            _ => Verdict::Reject,
        }
    }

    /// Our own requests keep coming back: the line is looped back.
    pub fn looped_back(&self) -> bool {
        self.loops >= MAX_LOOPS
    }

    fn new_magic(&mut self) -> u32 {
        loop {
            let m = self.rng.next_u32();
            if m != 0 {
                return m;
            }
        }
    }

    fn check_auth(&mut self, value: &[u8], rid: bool, nak: &mut Vec<u8>) -> Verdict {
        let Some(preferred) = self.can_auth.preferred() else {
            // No credentials: we cannot authenticate ourselves at all.
            return Verdict::Reject;
        };
        match AuthProtocol::parse(value) {
            Some(p) if self.can_auth.allows(p) => {
                self.peer.auth = Some(p);
                Verdict::Ack
            }
            _ if rid => Verdict::Reject,
            _ => {
                preferred.emit(nak);
                Verdict::Nak
            }
        }
    }
}

impl Negotiator for LcpOptions {
    const PROTOCOL: u16 = PROTOCOL;
    const NAME: &'static str = "LCP";

    fn reset(&mut self) {
        self.want = Wants {
            mru: (self.cfg.mru != DEFAULT_MRU).then_some(self.cfg.mru),
            accm: Some(self.cfg.accm),
            auth: self.require.preferred(),
            magic: Some(self.new_magic()),
            pfc: self.cfg.pfc,
            acfc: self.cfg.acfc,
            mrru: self.cfg.multilink.map(|m| m.mrru),
            ssnhf: self.cfg.multilink.is_some_and(|m| m.short_seq),
            endpoint: self.cfg.multilink.and_then(|m| m.endpoint),
        };
        // `peer` is left alone: when Opened gets a Configure-Request, the table
        // runs scr (and this reset) after that request was checked and acked.
        self.auth_refused = false;
    }

    fn write_request(&mut self, out: &mut Vec<u8>) {
        let w = self.want;
        if let Some(mru) = w.mru {
            emit_option(out, opt::MRU, &mru.to_be_bytes());
        }
        if let Some(accm) = w.accm {
            emit_option(out, opt::ACCM, &accm.to_be_bytes());
        }
        if let Some(auth) = w.auth {
            auth.emit(out);
        }
        if let Some(magic) = w.magic {
            emit_option(out, opt::MAGIC, &magic.to_be_bytes());
        }
        if w.pfc {
            emit_option(out, opt::PFC, &[]);
        }
        if w.acfc {
            emit_option(out, opt::ACFC, &[]);
        }
        if let Some(mrru) = w.mrru {
            emit_option(out, opt::MRRU, &mrru.to_be_bytes());
        }
        if w.ssnhf {
            emit_option(out, opt::SSNHF, &[]);
        }
        if let Some(ed) = w.endpoint {
            let mut value = Vec::with_capacity(1 + ed.address().len());
            ed.emit_value(&mut value);
            emit_option(out, opt::EPDISC, &value);
        }
    }

    fn begin_peer_request(&mut self) {
        self.peer = PeerOptions::default();
    }

    fn check_option(&mut self, o: ConfigOption<'_>, rid: bool, nak: &mut Vec<u8>) -> Verdict {
        match o.kind {
            opt::MRU => match o.as_u16() {
                Some(mru) if mru >= MIN_MRU => {
                    self.peer.mru = mru;
                    Verdict::Ack
                }
                Some(_) => {
                    emit_option(nak, opt::MRU, &MIN_MRU.to_be_bytes());
                    Verdict::Nak
                }
                None => Verdict::Reject,
            },
            opt::ACCM => match o.as_u32() {
                Some(accm) => {
                    self.peer.accm = accm;
                    Verdict::Ack
                }
                None => Verdict::Reject,
            },
            opt::AUTH => self.check_auth(o.value, rid, nak),
            opt::MAGIC => match o.as_u32() {
                // The peer sent our own number (or an invalid zero): probably a
                // looped-back line. Suggest a fresh number, as pppd does.
                Some(m) if m == 0 || Some(m) == self.want.magic => {
                    if m != 0 {
                        self.loops = self.loops.saturating_add(1);
                        debug!(loops = self.loops, "peer magic number equals ours");
                    }
                    let fresh = self.new_magic();
                    emit_option(nak, opt::MAGIC, &fresh.to_be_bytes());
                    Verdict::Nak
                }
                Some(m) => {
                    self.peer.magic = Some(m);
                    Verdict::Ack
                }
                None => Verdict::Reject,
            },
            opt::PFC if o.value.is_empty() => {
                self.peer.pfc = true;
                Verdict::Ack
            }
            opt::ACFC if o.value.is_empty() => {
                self.peer.acfc = true;
                Verdict::Ack
            }
            opt::MRRU | opt::SSNHF | opt::EPDISC => match self.cfg.multilink {
                Some(ours) => self.check_multilink_option(o, ours, rid, nak),
                None => Verdict::Reject,
            },
            _ => Verdict::Reject,
        }
    }

    fn apply_nak(&mut self, o: ConfigOption<'_>) {
        match o.kind {
            opt::MRU => {
                // Accept a smaller MRU, or a larger one up to what the decoder
                // accepts anyway; otherwise fall back to the default.
                let limit = self.cfg.mru.max(DEFAULT_MRU);
                self.want.mru = o.as_u16().filter(|m| (MIN_MRU..=limit).contains(m));
            }
            opt::ACCM => {
                if let Some(extra) = o.as_u32() {
                    self.want.accm = Some(self.want.accm.unwrap_or(0) | extra);
                }
            }
            opt::AUTH if self.want.auth.is_some() => {
                if let Some(p) = AuthProtocol::parse(o.value).filter(|p| self.require.allows(*p)) {
                    self.want.auth = Some(p);
                }
                // Otherwise keep asking: Max-Configure ends it if the peer never agrees.
            }
            opt::MAGIC if self.want.magic.is_some() => {
                // Either a collision or our own Nak looped back to us.
                self.loops = self.loops.saturating_add(1);
                self.want.magic = Some(self.new_magic());
            }
            opt::PFC => self.want.pfc = false,
            opt::ACFC => self.want.acfc = false,
            opt::MRRU if self.want.mrru.is_some() => {
                // As pppd: take a smaller MRRU. One we cannot take (too small, larger than
                // we configured, malformed) means Multilink is not to be: a plain link
                // rather than a negotiation that never ends.
                let limit = self.cfg.multilink.map_or(0, |m| m.mrru);
                match o.as_u16().filter(|m| (mp::MIN_MRRU..=limit).contains(m)) {
                    Some(m) => self.want.mrru = Some(m),
                    None => self.drop_multilink(),
                }
            }
            // Neither may be Nak'd (RFC 1990 §5.1.2, §5.1.3): as pppd, a Nak is a Reject.
            opt::SSNHF => self.want.ssnhf = false,
            opt::EPDISC => self.want.endpoint = None,
            _ => {}
        }
    }

    fn apply_reject(&mut self, o: ConfigOption<'_>) {
        match o.kind {
            opt::MRU => self.want.mru = None,
            opt::ACCM => self.want.accm = None,
            opt::AUTH => {
                self.want.auth = None;
                self.auth_refused = true;
            }
            opt::MAGIC => self.want.magic = None,
            opt::PFC => self.want.pfc = false,
            opt::ACFC => self.want.acfc = false,
            opt::MRRU => self.drop_multilink(),
            opt::SSNHF => self.want.ssnhf = false,
            opt::EPDISC => self.want.endpoint = None,
            _ => {}
        }
    }

    fn is_extended_code(code: u8) -> bool {
        (PROTOCOL_REJECT..=DISCARD_REQUEST).contains(&code)
    }
}

/// Something LCP tells the session about, beyond the automaton's signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LcpNotice {
    /// The peer rejected a protocol we sent.
    ProtocolRejected(u16),
    /// No answer to `echo_failure` Echo-Requests and no other traffic.
    LinkDead,
    /// An Echo-Reply answered our latest Echo-Request: the smoothed round trip so far.
    EchoRtt(Duration),
}

/// LCP: the automaton plus the LCP-only packets and the keepalive.
#[derive(Debug)]
pub struct Lcp {
    /// The automaton with LCP's options.
    pub fsm: Fsm<LcpOptions>,
    echo_interval: Option<Duration>,
    echo_failure: u32,
    echo_deadline: Option<Instant>,
    echos_pending: u32,
    traffic_seen: bool,
    /// Our latest Echo-Request: its identifier and when it left.
    echo_sent: Option<(u8, Instant)>,
    /// The smoothed echo round trip (1/8 gain, as TCP's SRTT).
    echo_srtt: Option<Duration>,
}

impl Lcp {
    /// A new LCP instance in the Initial state.
    pub fn new(
        cfg: LcpConfig,
        fsm_cfg: FsmConfig,
        can_auth: AuthMethods,
        require: AuthMethods,
        seed: u64,
    ) -> Self {
        let (echo_interval, echo_failure) = (cfg.echo_interval, cfg.echo_failure);
        Lcp {
            fsm: Fsm::new(LcpOptions::new(cfg, can_auth, require, seed), fsm_cfg),
            echo_interval: echo_interval.filter(|d| !d.is_zero()),
            echo_failure,
            echo_deadline: None,
            echos_pending: 0,
            traffic_seen: false,
            echo_sent: None,
            echo_srtt: None,
        }
    }

    /// Handle one LCP packet.
    pub fn input(&mut self, info: &[u8], now: Instant) -> Result<Option<LcpNotice>, PacketError> {
        let Some(ext) = self.fsm.input(info, now)? else {
            return Ok(None);
        };
        match ext.code {
            PROTOCOL_REJECT => {
                let Some(&[hi, lo]) = ext.data.first_chunk::<2>() else {
                    return Err(PacketError::Truncated);
                };
                let proto = u16::from_be_bytes([hi, lo]);
                // Only meaningful once open (RFC 1661 §5.7); rejecting LCP itself is fatal.
                if self.fsm.state() != State::Opened {
                    return Ok(None);
                }
                self.fsm.rejected(proto == PROTOCOL, now);
                return Ok(Some(LcpNotice::ProtocolRejected(proto)));
            }
            ECHO_REQUEST => {
                if self.fsm.rxr(now) {
                    self.send_echo_reply(ext.id, ext.data);
                }
            }
            ECHO_REPLY => {
                self.fsm.rxr(now);
                let magic = ext.data.first_chunk::<4>().map(|m| u32::from_be_bytes(*m));
                let ours = self.fsm.negotiator().our_magic();
                if magic.is_some() && magic == ours {
                    debug!("received our own Echo-Reply: line looped back?");
                } else {
                    self.echos_pending = 0;
                    if let Some((id, sent)) = self.echo_sent
                        && id == ext.id
                    {
                        self.echo_sent = None;
                        let sample = now.saturating_duration_since(sent);
                        let srtt = match self.echo_srtt {
                            None => sample,
                            Some(s) => (s * 7 + sample) / 8,
                        };
                        self.echo_srtt = Some(srtt);
                        return Ok(Some(LcpNotice::EchoRtt(srtt)));
                    }
                }
            }
            _ => {
                // Discard-Request: nothing to do beyond the RXR event.
                self.fsm.rxr(now);
            }
        }
        Ok(None)
    }

    fn send_echo_reply(&mut self, id: u8, data: &[u8]) {
        let magic = self.fsm.negotiator().our_magic().unwrap_or(0);
        let peer_mru = usize::from(self.fsm.negotiator().peer().mru);
        let payload = data.get(4..).unwrap_or(&[]);
        // 4 header + 4 magic + echoed data must fit the peer's MRU.
        let payload = &payload[..payload.len().min(peer_mru.saturating_sub(8))];
        let mut d = Vec::with_capacity(4 + payload.len());
        d.extend_from_slice(&magic.to_be_bytes());
        d.extend_from_slice(payload);
        self.fsm.send(ECHO_REPLY, id, &d);
    }

    /// True for an Echo-Request, Echo-Reply or Discard-Request carrying our own
    /// magic number: our own packet come back (a modem that dropped to command
    /// mode with echo on returns everything we send), not a sign of the peer.
    pub fn is_own_echo(&self, info: &[u8]) -> bool {
        let Ok(pkt) = ControlPacket::parse(info) else {
            return false;
        };
        let magic = pkt.data.first_chunk::<4>().map(|m| u32::from_be_bytes(*m));
        matches!(pkt.code, ECHO_REQUEST | ECHO_REPLY | DISCARD_REQUEST)
            && magic.is_some()
            && magic == self.fsm.negotiator().our_magic()
    }

    /// A valid frame of any protocol arrived: proof the peer is alive
    /// (pppd's lcp-echo-adaptive), so a busy download never looks like a dead link.
    pub fn note_traffic(&mut self) {
        self.traffic_seen = true;
        self.echos_pending = 0;
    }

    /// Start the keepalive (on LCP up).
    pub fn start_keepalive(&mut self, now: Instant) {
        self.echos_pending = 0;
        self.echo_sent = None;
        self.echo_srtt = None;
        self.traffic_seen = false;
        self.echo_deadline = self.echo_interval.map(|i| now + i);
    }

    /// Stop the keepalive (on LCP down).
    pub fn stop_keepalive(&mut self) {
        self.echo_deadline = None;
    }

    /// Earliest deadline of the automaton and the keepalive.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.fsm.poll_timeout(), self.echo_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Run due timers.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<LcpNotice> {
        self.fsm.handle_timeout(now);
        let (Some(due), Some(interval)) = (self.echo_deadline, self.echo_interval) else {
            return None;
        };
        if due > now {
            return None;
        }
        self.echo_deadline = Some(now + interval);
        if std::mem::take(&mut self.traffic_seen) {
            // The link carried frames since the last tick: no need to probe.
            self.echos_pending = 0;
            return None;
        }
        if self.echos_pending >= self.echo_failure {
            self.echo_deadline = None;
            return Some(LcpNotice::LinkDead);
        }
        let magic = self.fsm.negotiator().our_magic().unwrap_or(0);
        let id = self.fsm.fresh_id();
        self.fsm.send(ECHO_REQUEST, id, &magic.to_be_bytes());
        self.echo_sent = Some((id, now));
        self.echos_pending += 1;
        None
    }

    /// The smoothed round trip of our Echo-Requests, once one was answered.
    pub fn echo_rtt(&self) -> Option<Duration> {
        self.echo_srtt
    }

    /// Echo-Requests sent without any sign of life since.
    pub fn echos_pending(&self) -> u32 {
        self.echos_pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{
        CONFIGURE_ACK, CONFIGURE_NAK, CONFIGURE_REJECT, CONFIGURE_REQUEST, ControlPacket,
    };

    const BOTH: AuthMethods = AuthMethods {
        pap: true,
        chap: true,
    };

    /// pppd's usual first request: asyncmap 0, magic 0x12345678, pfc, acfc.
    const PPPD_REQUEST: [u8; 20] = [
        0x01, 0x01, 0x00, 0x14, 0x02, 0x06, 0x00, 0x00, 0x00, 0x00, 0x05, 0x06, 0x12, 0x34, 0x56,
        0x78, 0x07, 0x02, 0x08, 0x02,
    ];

    fn lcp(can_auth: AuthMethods) -> Lcp {
        let mut l = Lcp::new(
            LcpConfig::default(),
            FsmConfig::default(),
            can_auth,
            AuthMethods::NONE,
            7,
        );
        let now = Instant::now();
        l.fsm.open(now);
        l.fsm.up(now);
        let _ = l.fsm.poll_packet();
        l
    }

    /// Feed `pkt`, return the single answer packet.
    fn answer(l: &mut Lcp, pkt: &[u8]) -> Vec<u8> {
        l.input(pkt, Instant::now()).unwrap();
        let out = l.fsm.poll_packet().expect("an answer");
        assert!(l.fsm.poll_packet().is_none());
        out
    }

    fn request(id: u8, opts: &[u8]) -> Vec<u8> {
        ControlPacket::to_vec(CONFIGURE_REQUEST, id, opts)
    }

    fn open(l: &mut Lcp) {
        let now = Instant::now();
        l.input(&PPPD_REQUEST, now).unwrap();
        let mut ours = Vec::new();
        l.fsm.negotiator_mut().write_request(&mut ours);
        // Our request went out with id 1 (first identifier).
        l.input(&ControlPacket::to_vec(CONFIGURE_ACK, 1, &ours), now)
            .unwrap();
        assert_eq!(l.fsm.state(), State::Opened);
        while l.fsm.poll_packet().is_some() {}
    }

    #[test]
    fn our_first_request_matches_pppd_defaults() {
        let mut o = LcpOptions::new(LcpConfig::default(), BOTH, AuthMethods::NONE, 1);
        let mut out = Vec::new();
        o.write_request(&mut out);
        let magic = o.our_magic().unwrap().to_be_bytes();
        assert_eq!(
            out,
            [
                2, 6, 0, 0, 0, 0, 5, 6, magic[0], magic[1], magic[2], magic[3], 7, 2, 8, 2
            ]
        );
        // As authenticator we also ask for CHAP-MD5 (preferred over PAP, as pppd).
        let mut o = LcpOptions::new(LcpConfig::default(), AuthMethods::NONE, BOTH, 1);
        let mut out = Vec::new();
        o.write_request(&mut out);
        assert_eq!(&out[6..11], &[3, 5, 0xc2, 0x23, 5]);
    }

    #[test]
    fn pppd_request_is_acked_verbatim() {
        let mut l = lcp(AuthMethods::NONE);
        let ack = answer(&mut l, &PPPD_REQUEST);
        assert_eq!(ack[0], CONFIGURE_ACK);
        assert_eq!(&ack[1..], &PPPD_REQUEST[1..]);
        let p = l.fsm.negotiator().peer();
        assert_eq!(
            (p.accm, p.magic, p.pfc, p.acfc),
            (0, Some(0x1234_5678), true, true)
        );
    }

    #[test]
    fn unknown_and_malformed_options_are_rejected_not_misparsed() {
        let mut l = lcp(AuthMethods::NONE);
        // MRRU (17), callback (13), an MRU with a bad length, ACFC with a value.
        let opts = [0x11, 4, 0x05, 0xdc, 0x0d, 3, 6, 1, 3, 5, 8, 3, 0, 7, 2];
        let rej = answer(&mut l, &request(2, &opts));
        assert_eq!(rej[0], CONFIGURE_REJECT);
        assert_eq!(
            &rej[4..],
            &[0x11, 4, 0x05, 0xdc, 0x0d, 3, 6, 1, 3, 5, 8, 3, 0]
        );
        // An option running past the end: the packet is dropped, nothing answered.
        assert!(
            l.input(&request(3, &[1, 4, 5, 0xdc, 2, 9, 0]), Instant::now())
                .is_err()
        );
        assert!(l.fsm.poll_packet().is_none());
    }

    #[test]
    fn small_mru_is_naked_to_minimum() {
        let mut l = lcp(AuthMethods::NONE);
        let nak = answer(&mut l, &request(2, &[1, 4, 0, 64]));
        assert_eq!(nak[0], CONFIGURE_NAK);
        assert_eq!(&nak[4..], &[1, 4, 0, 128]);
    }

    #[test]
    fn auth_protocol_negotiation() {
        // MS-CHAPv2 and EAP are Naked to CHAP-MD5 when we have credentials.
        let mut l = lcp(BOTH);
        for opt in [&[3u8, 5, 0xc2, 0x23, 0x81][..], &[3, 4, 0xc2, 0x27]] {
            let nak = answer(&mut l, &request(2, opt));
            assert_eq!(nak[0], CONFIGURE_NAK);
            assert_eq!(&nak[4..], &[3, 5, 0xc2, 0x23, 5]);
        }
        let ack = answer(&mut l, &request(3, &[3, 4, 0xc0, 0x23]));
        assert_eq!(ack[0], CONFIGURE_ACK);
        assert_eq!(l.fsm.negotiator().peer().auth, Some(AuthProtocol::Pap));
        // Without credentials the option is rejected.
        let mut l = lcp(AuthMethods::NONE);
        let rej = answer(&mut l, &request(2, &[3, 5, 0xc2, 0x23, 5]));
        assert_eq!(rej[0], CONFIGURE_REJECT);
    }

    #[test]
    fn own_magic_number_is_naked_as_loopback() {
        let mut l = lcp(AuthMethods::NONE);
        let ours = l.fsm.negotiator().our_magic().unwrap().to_be_bytes();
        let nak = answer(
            &mut l,
            &request(2, &[5, 6, ours[0], ours[1], ours[2], ours[3]]),
        );
        assert_eq!(nak[0], CONFIGURE_NAK);
        assert_eq!(&nak[4..6], &[5, 6]);
        assert_ne!(&nak[6..10], &ours);
        assert_eq!(l.fsm.negotiator().loops, 1);
    }

    #[test]
    fn echo_request_is_answered_with_our_magic() {
        let mut l = lcp(AuthMethods::NONE);
        // Not answered before LCP is open.
        l.input(
            &ControlPacket::to_vec(ECHO_REQUEST, 5, &[0, 0, 0, 0]),
            Instant::now(),
        )
        .unwrap();
        assert!(l.fsm.poll_packet().is_none());
        open(&mut l);
        let magic = l.fsm.negotiator().our_magic().unwrap().to_be_bytes();
        let reply = answer(
            &mut l,
            &ControlPacket::to_vec(ECHO_REQUEST, 9, &[0x12, 0x34, 0x56, 0x78, b'h', b'i']),
        );
        let mut want = vec![ECHO_REPLY, 9, 0, 10];
        want.extend_from_slice(&magic);
        want.extend_from_slice(b"hi");
        assert_eq!(reply, want);
    }

    #[test]
    fn keepalive_counts_unanswered_echoes_and_ignores_own_replies() {
        let mut l = lcp(AuthMethods::NONE);
        open(&mut l);
        let t0 = Instant::now();
        l.start_keepalive(t0);
        let s = Duration::from_secs(1);
        for i in 1..=3u32 {
            assert_eq!(l.handle_timeout(t0 + s * i), None);
            let req = l.fsm.poll_packet().unwrap();
            assert_eq!(req[0], ECHO_REQUEST);
            // Our own request looped back as a "reply" proves nothing.
            let mut fake = req.clone();
            fake[0] = ECHO_REPLY;
            l.input(&fake, t0).unwrap();
            assert_eq!(l.echos_pending(), i);
        }
        assert_eq!(l.handle_timeout(t0 + s * 4), Some(LcpNotice::LinkDead));

        // A real reply resets the count.
        let mut l = lcp(AuthMethods::NONE);
        open(&mut l);
        l.start_keepalive(t0);
        l.handle_timeout(t0 + s);
        let req = l.fsm.poll_packet().unwrap();
        l.input(
            &ControlPacket::to_vec(ECHO_REPLY, req[1], &[0x12, 0x34, 0x56, 0x78]),
            t0,
        )
        .unwrap();
        assert_eq!(l.echos_pending(), 0);
    }

    #[test]
    fn echo_replies_measure_the_round_trip() {
        let (t0, s) = (Instant::now(), Duration::from_secs(1));
        let mut l = lcp(AuthMethods::NONE);
        open(&mut l);
        l.start_keepalive(t0);
        assert_eq!(l.echo_rtt(), None);
        let answer = |l: &mut Lcp, sent: Instant, after: Duration| {
            l.handle_timeout(sent);
            let req = l.fsm.poll_packet().unwrap();
            l.input(
                &ControlPacket::to_vec(ECHO_REPLY, req[1], &[0x12, 0x34, 0x56, 0x78]),
                sent + after,
            )
            .unwrap()
        };
        let first = answer(&mut l, t0 + s, Duration::from_millis(80));
        assert_eq!(first, Some(LcpNotice::EchoRtt(Duration::from_millis(80))));
        let second = answer(&mut l, t0 + s * 2, Duration::from_millis(160));
        assert_eq!(second, Some(LcpNotice::EchoRtt(Duration::from_millis(90))));
        // A reply to an older request (another id) is a sign of life but no sample.
        l.handle_timeout(t0 + s * 3);
        let req = l.fsm.poll_packet().unwrap();
        let stale = ControlPacket::to_vec(ECHO_REPLY, req[1].wrapping_sub(1), &[0, 0, 0, 1]);
        assert_eq!(l.input(&stale, t0 + s * 3).unwrap(), None);
        assert_eq!(l.echo_rtt(), Some(Duration::from_millis(90)));
    }

    #[test]
    fn protocol_reject_is_reported() {
        let mut l = lcp(AuthMethods::NONE);
        open(&mut l);
        let n = l
            .input(
                &ControlPacket::to_vec(PROTOCOL_REJECT, 3, &[0x80, 0x21, 1, 1, 0, 4]),
                Instant::now(),
            )
            .unwrap();
        assert_eq!(n, Some(LcpNotice::ProtocolRejected(0x8021)));
        assert_eq!(l.fsm.state(), State::Opened);
        assert!(
            l.input(
                &ControlPacket::to_vec(PROTOCOL_REJECT, 4, &[0x80]),
                Instant::now()
            )
            .is_err()
        );
    }

    #[test]
    fn renegotiation_in_opened_keeps_the_new_peer_options() {
        let mut l = lcp(AuthMethods::NONE);
        open(&mut l);
        // The peer renegotiates with a different magic number and no PFC.
        l.input(&request(9, &[5, 6, 0, 0, 0, 9]), Instant::now())
            .unwrap();
        assert_eq!(l.fsm.state(), State::AckSent);
        let p = l.fsm.negotiator().peer();
        assert_eq!((p.magic, p.pfc, p.accm), (Some(9), false, ACCM_ALL));
    }

    fn multilink_cfg(short_seq: bool) -> LcpConfig {
        LcpConfig {
            multilink: Some(MultilinkConfig {
                mrru: 1500,
                short_seq,
                endpoint: Some(EndpointDiscriminator::magic(&[0x0102_0304])),
            }),
            ..LcpConfig::default()
        }
    }

    fn multilink_lcp(short_seq: bool) -> Lcp {
        let mut l = Lcp::new(
            multilink_cfg(short_seq),
            FsmConfig::default(),
            AuthMethods::NONE,
            AuthMethods::NONE,
            7,
        );
        let now = Instant::now();
        l.fsm.open(now);
        l.fsm.up(now);
        let _ = l.fsm.poll_packet();
        l
    }

    /// pppd 2.4.9 with `multilink mrru 1500 endpoint magic:0a0b0c0d11223344`: asyncmap 0,
    /// magic, PFC, ACFC, then MRRU and ED.
    const PPPD_MP_OPTIONS: [u8; 31] = [
        0x02, 0x06, 0, 0, 0, 0, 0x05, 0x06, 0x12, 0x34, 0x56, 0x78, 0x07, 0x02, 0x08, 0x02, 0x11,
        0x04, 0x05, 0xdc, 0x13, 0x0b, 0x04, 0x0a, 0x0b, 0x0c, 0x0d, 0x11, 0x22, 0x33, 0x44,
    ];

    fn pppd_mp_request(id: u8) -> Vec<u8> {
        request(id, &PPPD_MP_OPTIONS)
    }

    #[test]
    fn multilink_request_follows_pppd_order() {
        let mut o = LcpOptions::new(multilink_cfg(true), AuthMethods::NONE, AuthMethods::NONE, 1);
        let mut out = Vec::new();
        o.write_request(&mut out);
        // ACCM, magic, PFC, ACFC, then MRRU 1500, SSNHF, ED class 4 (magic).
        assert_eq!(
            &out[16..],
            &[17, 4, 0x05, 0xdc, 18, 2, 19, 7, 4, 1, 2, 3, 4]
        );
        // Without Multilink configured nothing of it is asked for.
        let mut o = LcpOptions::new(
            LcpConfig::default(),
            AuthMethods::NONE,
            AuthMethods::NONE,
            1,
        );
        let mut out = Vec::new();
        o.write_request(&mut out);
        assert_eq!(out.len(), 16);
    }

    #[test]
    fn pppd_multilink_request_is_acked_and_read() {
        let mut l = multilink_lcp(false);
        let req = pppd_mp_request(2);
        let ack = answer(&mut l, &req);
        assert_eq!(ack[0], CONFIGURE_ACK);
        assert_eq!(&ack[1..], &req[1..]);
        let p = l.fsm.negotiator().peer();
        assert_eq!(p.mrru, Some(1500));
        assert!(!p.ssnhf);
        assert_eq!(
            p.endpoint.map(|e| e.to_string()).as_deref(),
            Some("magic:0a0b0c0d.11223344")
        );
    }

    #[test]
    fn small_mrru_is_naked_and_bad_endpoints_rejected() {
        let mut l = multilink_lcp(false);
        let nak = answer(&mut l, &request(2, &[17, 4, 0, 200]));
        assert_eq!(nak[0], CONFIGURE_NAK);
        assert_eq!(&nak[4..], &[17, 4, 0x05, 0xdc]);
        // A malformed MRRU, an IP endpoint of 3 bytes, an unknown class, SSNHF with data.
        let opts = [17, 3, 5, 19, 5, 2, 1, 2, 19, 3, 9, 18, 3, 0];
        let rej = answer(&mut l, &request(3, &opts));
        assert_eq!(rej[0], CONFIGURE_REJECT);
        assert_eq!(&rej[4..], &opts);
        // A good SSNHF and Null endpoint are acknowledged.
        let ack = answer(&mut l, &request(4, &[17, 4, 1, 0x28, 18, 2, 19, 3, 0]));
        assert_eq!(ack[0], CONFIGURE_ACK);
        let p = l.fsm.negotiator().peer();
        assert_eq!((p.mrru, p.ssnhf), (Some(296), true));
    }

    #[test]
    fn rejected_mrru_falls_back_to_a_plain_link() {
        let mut o = LcpOptions::new(multilink_cfg(true), AuthMethods::NONE, AuthMethods::NONE, 1);
        for opt in crate::packet::Options::new(&[17, 4, 0x05, 0xdc]).flatten() {
            o.apply_reject(opt);
        }
        let mut out = Vec::new();
        o.write_request(&mut out);
        assert_eq!(out.len(), 16, "no MRRU, SSNHF or ED left: {out:?}");
        assert_eq!(o.multilink(), None);
    }

    #[test]
    fn naked_mrru_is_taken_when_smaller_else_multilink_is_dropped() {
        let mut o = LcpOptions::new(multilink_cfg(true), AuthMethods::NONE, AuthMethods::NONE, 1);
        let nak = |o: &mut LcpOptions, v: &[u8]| {
            for opt in crate::packet::Options::new(v).flatten() {
                o.apply_nak(opt);
            }
        };
        nak(&mut o, &[17, 4, 0x02, 0x00]);
        assert_eq!(o.want.mrru, Some(512));
        // SSNHF and ED may not be Nak'd: a Nak drops them, as pppd.
        nak(&mut o, &[18, 2, 19, 3, 0]);
        assert_eq!((o.want.ssnhf, o.want.endpoint), (false, None));
        nak(&mut o, &[17, 4, 0x10, 0x00]);
        assert_eq!(o.want.mrru, None);
    }

    #[test]
    fn multilink_is_on_only_with_both_mrrus() {
        let mut l = multilink_lcp(true);
        // The peer sends no MRRU: we asked, it did not. Not Multilink.
        l.input(&PPPD_REQUEST, Instant::now()).unwrap();
        assert_eq!(l.fsm.negotiator().multilink(), None);
        let mut l = multilink_lcp(true);
        l.input(&pppd_mp_request(2), Instant::now()).unwrap();
        let m = l.fsm.negotiator().multilink().unwrap();
        assert_eq!((m.our_mrru, m.peer_mrru), (1500, 1500));
        assert_eq!((m.rx_short_seq, m.tx_short_seq), (true, false));
        assert!(m.peer_endpoint.is_some());
    }

    #[test]
    fn naks_and_rejects_adjust_our_request() {
        let mut o = LcpOptions::new(LcpConfig::default(), BOTH, BOTH, 3);
        let first_magic = o.our_magic();
        let mut buf = Vec::new();
        o.write_request(&mut buf);
        for opt in
            crate::packet::Options::new(&[2, 6, 0, 0x0a, 0, 0, 5, 6, 1, 2, 3, 4, 3, 4, 0xc0, 0x23])
                .flatten()
        {
            o.apply_nak(opt);
        }
        assert_eq!(o.our_accm(), 0x000a_0000);
        assert_ne!(o.our_magic(), first_magic);
        assert_eq!(o.auth_peer_with(), Some(AuthProtocol::Pap));
        for opt in crate::packet::Options::new(&[7, 2, 8, 2, 3, 4, 0xc0, 0x23]).flatten() {
            o.apply_reject(opt);
        }
        assert!(o.auth_refused());
        let mut out = Vec::new();
        o.write_request(&mut out);
        assert!(!out.windows(2).any(|w| w == [7, 2] || w == [8, 2]));
    }
}
