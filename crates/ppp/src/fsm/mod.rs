//! The RFC 1661 §4 option-negotiation automaton, shared by LCP and every NCP.
//!
//! [`transition`] (in `table.rs`) is the RFC's state transition table transcribed literally:
//! one entry per (state, event) with the action list and the next state. [`Fsm`]
//! executes those actions: it turns received packets into events, sends the
//! packets the actions call for, runs the restart timer as a deadline, and
//! reports the layer actions (tlu/tld/tls/tlf) as [`LayerSignal`]s for the
//! layer above. What the options *mean* is left to a [`Negotiator`], so LCP and
//! IPCP only implement option checks and share all of this plumbing.
//!
//! Deviations from the bare table, all taken from pppd's fsm.c because they
//! make negotiation survive duplicated or late packets:
//! - a Configure-Ack/Nak/Reject is only accepted if its identifier matches our
//!   last Configure-Request and that request was not already answered;
//! - a Configure-Ack must echo our request byte for byte, and a Configure-Reject
//!   may only list options we sent, else the packet is discarded as invalid;
//! - retransmissions of a Configure-Request keep its identifier so a late Ack
//!   to an earlier copy is still good;
//! - the options are reset (fresh magic number, ...) when a new negotiation
//!   starts, not on retransmission or after a Nak.
//!
//! The "restart option" (`r` in the table) and the "passive option" (`p`) are
//! not implemented: those entries behave as the plain table says.

mod table;

pub use table::{Action, Event, State, transition};

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::packet::{
    CODE_REJECT, CONFIGURE_ACK, CONFIGURE_NAK, CONFIGURE_REJECT, CONFIGURE_REQUEST, ConfigOption,
    ControlPacket, HEADER_LEN, Options, PacketError, TERMINATE_ACK, TERMINATE_REQUEST,
};

/// Log target: the module's path from before the core became a crate (see the crate root).
const LOG_TARGET: &str = "eqlplus_dialer::ppp::fsm";

/// A layer action reported upward (the table's tlu/tld/tls/tlf).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerSignal {
    /// This-Layer-Up: options agreed, the layer is open.
    Up,
    /// This-Layer-Down: leaving Opened.
    Down,
    /// This-Layer-Started: the layer needs the lower layer.
    Started,
    /// This-Layer-Finished: the layer no longer needs the lower layer.
    Finished,
}

/// Timer and counter settings, RFC 1661 §4.6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsmConfig {
    /// Restart timer (default 3 s).
    pub restart: Duration,
    /// Configure-Requests sent without an Ack before giving up (default 10).
    pub max_configure: u32,
    /// Terminate-Requests sent without an Ack before giving up (default 2).
    pub max_terminate: u32,
    /// Configure-Naks sent before turning further Naks into Rejects (default 5).
    pub max_failure: u32,
}

impl Default for FsmConfig {
    fn default() -> Self {
        FsmConfig {
            restart: Duration::from_secs(3),
            max_configure: 10,
            max_terminate: 2,
            max_failure: 5,
        }
    }
}

/// What a [`Negotiator`] says about one option of the peer's Configure-Request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Acceptable as is.
    Ack,
    /// Acceptable with another value; the negotiator wrote the suggested option(s).
    Nak,
    /// Not acceptable at all (unknown, malformed value, or not negotiable).
    Reject,
}

/// The protocol-specific part of a control protocol: what its options mean.
///
/// The "want" side is what we ask for in our Configure-Request; the "peer" side
/// is what we accept from the peer's Configure-Request.
pub trait Negotiator {
    /// PPP protocol number of the control protocol (e.g. 0xc021 for LCP).
    const PROTOCOL: u16;
    /// Short name for logs ("LCP", "IPCP").
    const NAME: &'static str;

    /// A new negotiation starts: go back to the configured wishes.
    fn reset(&mut self);
    /// Write the options of our next Configure-Request.
    fn write_request(&mut self, out: &mut Vec<u8>);
    /// A peer Configure-Request is about to be checked: forget its previous values.
    fn begin_peer_request(&mut self) {}
    /// Judge one peer option. On [`Verdict::Nak`], append the suggested
    /// option(s) to `nak`. With `reject_if_disagree` (Max-Failure reached), Nak
    /// must not be returned.
    fn check_option(
        &mut self,
        opt: ConfigOption<'_>,
        reject_if_disagree: bool,
        nak: &mut Vec<u8>,
    ) -> Verdict;
    /// After all options were acceptable: append options the peer must add
    /// (e.g. an IP address it did not ask for). Anything written turns the
    /// answer into a Configure-Nak.
    fn missing_options(&mut self, _reject_if_disagree: bool, _nak: &mut Vec<u8>) {}
    /// Our last Configure-Request was acknowledged as sent.
    fn apply_ack(&mut self) {}
    /// The peer suggests another value for an option (possibly one we did not send).
    fn apply_nak(&mut self, opt: ConfigOption<'_>);
    /// The peer refuses an option we sent (already checked to be one of ours).
    fn apply_reject(&mut self, opt: ConfigOption<'_>);
    /// Codes beyond 1..=7 the protocol handles itself (LCP: 8..=11).
    fn is_extended_code(_code: u8) -> bool {
        false
    }
}

/// A control packet the caller must handle itself (see [`Negotiator::is_extended_code`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extended<'a> {
    /// Packet code.
    pub code: u8,
    /// Identifier.
    pub id: u8,
    /// Data after the header.
    pub data: &'a [u8],
}

/// Data an event carries for the actions that answer it.
#[derive(Default)]
struct Ctx<'a> {
    /// Identifier of the received packet (for sca/scn/sta).
    id: u8,
    /// Code and data of the answer to a Configure-Request (for sca/scn).
    reply: Option<(u8, Vec<u8>)>,
    /// The unknown packet, for scj.
    rejected: &'a [u8],
}

/// One running instance of the automaton for protocol `N`.
#[derive(Debug)]
pub struct Fsm<N: Negotiator> {
    neg: N,
    cfg: FsmConfig,
    state: State,
    restart_count: u32,
    deadline: Option<Instant>,
    next_id: u8,
    /// Identifier of our outstanding Configure-Request.
    req_id: u8,
    /// The outstanding request was already answered (Ack/Nak/Rej): drop duplicates.
    req_answered: bool,
    /// Options of our outstanding Configure-Request, to check the Ack against.
    last_request: Vec<u8>,
    /// Configure-Naks sent in a row (Max-Failure).
    nak_loops: u32,
    term_reason: Vec<u8>,
    /// Text of the last Terminate-Request the peer sent.
    peer_term_reason: Option<String>,
    /// Largest packet the peer accepts (Code-Reject truncation).
    peer_mru: usize,
    /// The peer's Configure-Requests since the automaton last opened (see
    /// [`Fsm::peer_request_limit`]).
    peer_requests: u32,
    /// The automaton gave up because the peer kept sending Configure-Requests.
    storm: bool,
    /// Per-packet debug logs on (the session turns them off while a peer floods).
    verbose: bool,
    out: VecDeque<Vec<u8>>,
    signals: VecDeque<LayerSignal>,
}

impl<N: Negotiator> Fsm<N> {
    /// A new automaton in the Initial state.
    pub fn new(neg: N, cfg: FsmConfig) -> Self {
        Fsm {
            neg,
            cfg,
            state: State::Initial,
            restart_count: 0,
            deadline: None,
            next_id: 1,
            req_id: 0,
            req_answered: true,
            last_request: Vec::new(),
            nak_loops: 0,
            term_reason: Vec::new(),
            peer_term_reason: None,
            peer_mru: 1500,
            peer_requests: 0,
            storm: false,
            verbose: true,
            out: VecDeque::new(),
            signals: VecDeque::new(),
        }
    }

    /// Current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The protocol's option state.
    pub fn negotiator(&self) -> &N {
        &self.neg
    }

    /// The protocol's option state, mutably (e.g. to change a wish before Open).
    pub fn negotiator_mut(&mut self) -> &mut N {
        &mut self.neg
    }

    /// The reason text of the last Terminate-Request received, if any.
    pub fn peer_term_reason(&self) -> Option<&str> {
        self.peer_term_reason.as_deref()
    }

    /// Per-packet debug logging on or off (state changes that matter are the
    /// caller's to log; this only silences the per-packet trail during a flood).
    pub fn set_verbose(&mut self, verbose: bool) {
        self.verbose = verbose;
    }

    /// How many of the peer's Configure-Requests the automaton takes without
    /// reaching Opened before it gives up as on TO- (tlf, Stopped): three times
    /// Max-Configure. RFC 1661's restart counter only bounds our own requests;
    /// without this a peer's endless Configure-Requests (each answered with an
    /// Ack or Nak, none of them ever converging) would keep us negotiating forever.
    pub fn peer_request_limit(&self) -> u32 {
        self.cfg.max_configure.saturating_mul(3).max(1)
    }

    /// The peer's Configure-Requests since the automaton last opened.
    pub fn peer_requests(&self) -> u32 {
        self.peer_requests
    }

    /// True when the automaton gave up on a Configure-Request storm.
    pub fn gave_up_on_storm(&self) -> bool {
        self.storm
    }

    /// Set the largest packet the peer accepts (from LCP's MRU).
    pub fn set_peer_mru(&mut self, mru: usize) {
        self.peer_mru = mru.max(HEADER_LEN + 4);
    }

    /// Next packet to send (without the PPP protocol field).
    pub fn poll_packet(&mut self) -> Option<Vec<u8>> {
        self.out.pop_front()
    }

    /// Next layer signal.
    pub fn poll_signal(&mut self) -> Option<LayerSignal> {
        self.signals.pop_front()
    }

    /// Restart timer deadline, if running.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    /// Queue a packet built outside the automaton (Echo-Reply, Protocol-Reject...).
    pub fn send(&mut self, code: u8, id: u8, data: &[u8]) {
        self.out.push_back(ControlPacket::to_vec(code, id, data));
    }

    /// A fresh identifier for a packet built outside the automaton.
    pub fn fresh_id(&mut self) -> u8 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        id
    }

    /// Lower layer up.
    pub fn up(&mut self, now: Instant) {
        self.event(Event::Up, Ctx::default(), now);
    }

    /// Lower layer down.
    pub fn down(&mut self, now: Instant) {
        self.event(Event::Down, Ctx::default(), now);
    }

    /// Administrative Open.
    pub fn open(&mut self, now: Instant) {
        self.event(Event::Open, Ctx::default(), now);
    }

    /// Administrative Close; `reason` goes into the Terminate-Request.
    pub fn close(&mut self, reason: &str, now: Instant) {
        self.term_reason = reason.as_bytes().to_vec();
        self.event(Event::Close, Ctx::default(), now);
    }

    /// A Code-Reject or Protocol-Reject aimed at this protocol: RXJ+ if
    /// `catastrophic` is false, RXJ- otherwise.
    pub fn rejected(&mut self, catastrophic: bool, now: Instant) {
        let ev = if catastrophic {
            Event::RxjMinus
        } else {
            Event::RxjPlus
        };
        self.event(ev, Ctx::default(), now);
    }

    /// An Echo-Request/Reply or Discard-Request arrived (RXR). Returns true when
    /// the table says to answer it (ser: only in Opened).
    pub fn rxr(&mut self, now: Instant) -> bool {
        let ser =
            matches!(transition(self.state, Event::Rxr), Some((a, _)) if a.contains(&Action::Ser));
        self.event(Event::Rxr, Ctx::default(), now);
        ser
    }

    /// Fire the restart timer if its deadline has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.deadline.is_some_and(|d| d <= now) {
            self.deadline = None;
            let ev = if self.restart_count > 0 {
                Event::TimeoutPlus
            } else {
                Event::TimeoutMinus
            };
            self.event(ev, Ctx::default(), now);
        }
    }

    /// Process one received control packet (the PPP information field).
    ///
    /// Returns packets whose code the negotiator claims as extended (for the
    /// caller to handle); malformed packets are an error and change nothing.
    pub fn input<'p>(
        &mut self,
        raw: &'p [u8],
        now: Instant,
    ) -> Result<Option<Extended<'p>>, PacketError> {
        let pkt = ControlPacket::parse(raw)?;
        if matches!(self.state, State::Initial | State::Starting) {
            if self.verbose {
                debug!(
                    proto = N::NAME,
                    code = pkt.code,
                    "packet while lower layer down, dropped"
                );
            }
            return Ok(None);
        }
        let mut ctx = Ctx {
            id: pkt.id,
            ..Ctx::default()
        };
        let ev = match pkt.code {
            CONFIGURE_REQUEST => {
                Options::validate(pkt.data)?;
                if self.state.negotiating() {
                    self.peer_requests = self.peer_requests.saturating_add(1);
                    if self.peer_requests > self.peer_request_limit() {
                        // A storm: stop answering and give up as on TO- (tlf/3p).
                        self.storm = true;
                        self.restart_count = 0;
                        self.event(Event::TimeoutMinus, Ctx::default(), now);
                        return Ok(None);
                    }
                }
                let (code, reply) = self.classify_request(pkt.data);
                ctx.reply = Some((code, reply));
                if code == CONFIGURE_ACK {
                    Event::RcrPlus
                } else {
                    Event::RcrMinus
                }
            }
            CONFIGURE_ACK => {
                if !self.expecting_answer(pkt.id) || pkt.data != self.last_request.as_slice() {
                    if self.verbose {
                        debug!(
                            proto = N::NAME,
                            id = pkt.id,
                            "unexpected Configure-Ack dropped"
                        );
                    }
                    return Ok(None);
                }
                self.req_answered = true;
                self.neg.apply_ack();
                Event::Rca
            }
            CONFIGURE_NAK | CONFIGURE_REJECT => {
                if !self.expecting_answer(pkt.id) {
                    if self.verbose {
                        debug!(
                            proto = N::NAME,
                            id = pkt.id,
                            "unexpected Configure-Nak/Rej dropped"
                        );
                    }
                    return Ok(None);
                }
                Options::validate(pkt.data)?;
                if pkt.code == CONFIGURE_REJECT && !self.reject_is_subset(pkt.data) {
                    debug!(
                        proto = N::NAME,
                        "Configure-Reject lists options we did not send"
                    );
                    return Ok(None);
                }
                self.req_answered = true;
                for opt in Options::new(pkt.data).flatten() {
                    if pkt.code == CONFIGURE_NAK {
                        self.neg.apply_nak(opt);
                    } else {
                        self.neg.apply_reject(opt);
                    }
                }
                Event::Rcn
            }
            TERMINATE_REQUEST => {
                self.peer_term_reason = Some(String::from_utf8_lossy(pkt.data).into_owned());
                Event::Rtr
            }
            TERMINATE_ACK => Event::Rta,
            CODE_REJECT => {
                // Rejection of a code the automaton needs is fatal (RFC 1661 §5.6).
                let rejected = pkt.data.first().copied().unwrap_or(0);
                if (CONFIGURE_REQUEST..=CODE_REJECT).contains(&rejected) {
                    Event::RxjMinus
                } else {
                    Event::RxjPlus
                }
            }
            code if N::is_extended_code(code) => {
                return Ok(Some(Extended {
                    code,
                    id: pkt.id,
                    data: pkt.data,
                }));
            }
            _ => {
                ctx.rejected = &raw[..HEADER_LEN + pkt.data.len()];
                Event::Ruc
            }
        };
        self.event(ev, ctx, now);
        Ok(None)
    }

    fn expecting_answer(&self, id: u8) -> bool {
        id == self.req_id && !self.req_answered
    }

    /// Every rejected option must appear, byte for byte, in our request (RFC 1661 §5.4).
    fn reject_is_subset(&self, data: &[u8]) -> bool {
        Options::new(data).all(|o| {
            o.is_ok_and(|o| {
                Options::new(&self.last_request)
                    .flatten()
                    .any(|ours| ours == o)
            })
        })
    }

    /// Build the answer to a (well-formed) peer Configure-Request.
    fn classify_request(&mut self, data: &[u8]) -> (u8, Vec<u8>) {
        let rid = self.nak_loops >= self.cfg.max_failure;
        self.neg.begin_peer_request();
        let mut nak = Vec::new();
        let mut rej = Vec::new();
        for opt in Options::new(data).flatten() {
            let mark = nak.len();
            match self.neg.check_option(opt, rid, &mut nak) {
                Verdict::Ack => nak.truncate(mark),
                Verdict::Nak if !rid => {}
                Verdict::Nak | Verdict::Reject => {
                    nak.truncate(mark);
                    opt.emit(&mut rej);
                }
            }
        }
        if !rej.is_empty() {
            return (CONFIGURE_REJECT, rej);
        }
        if !rid {
            self.neg.missing_options(rid, &mut nak);
        }
        if nak.is_empty() {
            (CONFIGURE_ACK, data.to_vec())
        } else {
            (CONFIGURE_NAK, nak)
        }
    }

    /// Run the table entry for `ev`.
    fn event(&mut self, ev: Event, ctx: Ctx<'_>, now: Instant) {
        let Some((actions, next)) = transition(self.state, ev) else {
            if self.verbose {
                debug!(proto = N::NAME, state = ?self.state, event = ?ev, "event ignored in this state");
            }
            return;
        };
        if self.verbose {
            debug!(proto = N::NAME, from = ?self.state, event = ?ev, to = ?next, ?actions, "transition");
        }
        let prev = self.state;
        let mut ctx = ctx;
        for &a in actions {
            self.act(a, ev, prev, actions, &mut ctx, now);
        }
        self.state = next;
        if !next.timer_runs() {
            self.deadline = None;
        }
    }

    fn act(
        &mut self,
        a: Action,
        ev: Event,
        prev: State,
        all: &[Action],
        ctx: &mut Ctx<'_>,
        now: Instant,
    ) {
        match a {
            Action::Tlu => {
                self.peer_requests = 0;
                self.signals.push_back(LayerSignal::Up);
            }
            Action::Tld => self.signals.push_back(LayerSignal::Down),
            Action::Tls => self.signals.push_back(LayerSignal::Started),
            Action::Tlf => self.signals.push_back(LayerSignal::Finished),
            Action::Irc => {
                // The same action initialises for Configure or for Terminate,
                // depending on what is sent next.
                self.restart_count = if all.contains(&Action::Str) {
                    self.cfg.max_terminate
                } else {
                    self.cfg.max_configure
                };
            }
            Action::Zrc => {
                self.restart_count = 0;
                self.deadline = Some(now + self.cfg.restart);
            }
            Action::Scr => self.send_configure_request(ev, prev, now),
            Action::Sca | Action::Scn => {
                if let Some((code, reply)) = ctx.reply.take() {
                    if code == CONFIGURE_NAK {
                        self.nak_loops = self.nak_loops.saturating_add(1);
                    } else if code == CONFIGURE_ACK {
                        self.nak_loops = 0;
                    }
                    self.send(code, ctx.id, &reply);
                }
            }
            Action::Str => {
                let id = self.fresh_id();
                let reason = std::mem::take(&mut self.term_reason);
                self.send(TERMINATE_REQUEST, id, &reason);
                self.term_reason = reason;
                self.restart_count = self.restart_count.saturating_sub(1);
                self.deadline = Some(now + self.cfg.restart);
            }
            Action::Sta => self.send(TERMINATE_ACK, ctx.id, &[]),
            Action::Scj => {
                let id = self.fresh_id();
                let max = self.peer_mru - HEADER_LEN;
                let data = &ctx.rejected[..ctx.rejected.len().min(max)];
                self.send(CODE_REJECT, id, data);
            }
            // Echo-Reply carries LCP data the automaton does not have: the caller
            // sends it when `rxr` reports that the table asked for it.
            Action::Ser => {}
        }
    }

    fn send_configure_request(&mut self, ev: Event, prev: State, now: Instant) {
        if !prev.negotiating() {
            // A new negotiation: start over from the configured wishes.
            self.neg.reset();
            self.nak_loops = 0;
        }
        // A retransmission keeps its identifier so a late Ack still matches.
        if ev != Event::TimeoutPlus || self.req_answered {
            self.req_id = self.fresh_id();
        }
        let mut opts = Vec::new();
        self.neg.write_request(&mut opts);
        self.send(CONFIGURE_REQUEST, self.req_id, &opts);
        self.last_request = opts;
        self.req_answered = false;
        self.restart_count = self.restart_count.saturating_sub(1);
        self.deadline = Some(now + self.cfg.restart);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{ECHO_REQUEST, emit_option};

    /// The table exactly as printed in RFC 1661 §4.1, parsed below and compared
    /// with [`transition`]: two independent transcriptions must agree.
    const RFC_TABLE: &str = "
      | Initial   Starting  Closed    Stopped   Closing   Stopping
 Up   |    2     irc,scr/6     -         -         -         -
 Down |    -         -         0       tls/1       0         1
 Open |  tls/1       1     irc,scr/6     3r        5r        5r
 Close|    0       tlf/0       2         2         4         4
  TO+ |    -         -         -         -       str/4     str/5
  TO- |    -         -         -         -       tlf/2     tlf/3
 RCR+ |    -         -       sta/2 irc,scr,sca/8   4         5
 RCR- |    -         -       sta/2 irc,scr,scn/6   4         5
 RCA  |    -         -       sta/2     sta/3       4         5
 RCN  |    -         -       sta/2     sta/3       4         5
 RTR  |    -         -       sta/2     sta/3     sta/4     sta/5
 RTA  |    -         -         2         3       tlf/2     tlf/3
 RUC  |    -         -       scj/2     scj/3     scj/4     scj/5
 RXJ+ |    -         -         2         3         4         5
 RXJ- |    -         -       tlf/2     tlf/3     tlf/2     tlf/3
 RXR  |    -         -         2         3         4         5
      | Req-Sent  Ack-Rcvd  Ack-Sent    Opened
 Up   |    -         -         -           -
 Down |    1         1         1         tld/1
 Open |    6         7         8           9r
 Close|irc,str/4 irc,str/4 irc,str/4 tld,irc,str/4
  TO+ |  scr/6     scr/6     scr/8         -
  TO- |  tlf/3p    tlf/3p    tlf/3p        -
 RCR+ |  sca/8   sca,tlu/9   sca/8   tld,scr,sca/8
 RCR- |  scn/6     scn/7     scn/6   tld,scr,scn/6
 RCA  |  irc/7     scr/6x  irc,tlu/9   tld,scr/6x
 RCN  |irc,scr/6   scr/6x  irc,scr/8   tld,scr/6x
 RTR  |  sta/6     sta/6     sta/6   tld,zrc,sta/5
 RTA  |    6         6         8       tld,scr/6
 RUC  |  scj/6     scj/7     scj/8       scj/9
 RXJ+ |    6         6         8           9
 RXJ- |  tlf/3     tlf/3     tlf/3   tld,irc,str/5
 RXR  |    6         7         8         ser/9
";

    const STATES: [State; 10] = [
        State::Initial,
        State::Starting,
        State::Closed,
        State::Stopped,
        State::Closing,
        State::Stopping,
        State::ReqSent,
        State::AckRcvd,
        State::AckSent,
        State::Opened,
    ];

    const EVENTS: [(&str, Event); 16] = [
        ("Up", Event::Up),
        ("Down", Event::Down),
        ("Open", Event::Open),
        ("Close", Event::Close),
        ("TO+", Event::TimeoutPlus),
        ("TO-", Event::TimeoutMinus),
        ("RCR+", Event::RcrPlus),
        ("RCR-", Event::RcrMinus),
        ("RCA", Event::Rca),
        ("RCN", Event::Rcn),
        ("RTR", Event::Rtr),
        ("RTA", Event::Rta),
        ("RUC", Event::Ruc),
        ("RXJ+", Event::RxjPlus),
        ("RXJ-", Event::RxjMinus),
        ("RXR", Event::Rxr),
    ];

    fn parse_cell(cell: &str) -> Cell {
        if cell == "-" {
            return None;
        }
        let (acts, st) = cell.rsplit_once('/').map_or(("", cell), |(a, s)| (a, s));
        // Strip the option markers r, p, x.
        let st: String = st.chars().filter(|c| c.is_ascii_digit()).collect();
        let actions = acts
            .split(',')
            .filter(|a| !a.is_empty())
            .map(|a| match a {
                "tlu" => Action::Tlu,
                "tld" => Action::Tld,
                "tls" => Action::Tls,
                "tlf" => Action::Tlf,
                "irc" => Action::Irc,
                "zrc" => Action::Zrc,
                "scr" => Action::Scr,
                "sca" => Action::Sca,
                "scn" => Action::Scn,
                "str" => Action::Str,
                "sta" => Action::Sta,
                "scj" => Action::Scj,
                "ser" => Action::Ser,
                other => panic!("unknown action {other}"),
            })
            .collect();
        Some((actions, STATES[st.parse::<usize>().unwrap()]))
    }

    type Cell = Option<(Vec<Action>, State)>;

    fn rfc_table() -> Vec<(State, Event, Cell)> {
        let mut out = Vec::new();
        let mut first_state = 0;
        for line in RFC_TABLE.lines().filter(|l| !l.trim().is_empty()) {
            let (name, cells) = line.split_once('|').unwrap();
            let name = name.trim();
            if name.is_empty() {
                first_state = if cells.contains("Initial") { 0 } else { 6 };
                continue;
            }
            let ev = EVENTS.iter().find(|(n, _)| *n == name).unwrap().1;
            // Cells are separated by runs of spaces; a cell itself has none.
            for (i, cell) in cells.split_whitespace().enumerate() {
                out.push((STATES[first_state + i], ev, parse_cell(cell)));
            }
        }
        out
    }

    #[test]
    fn transition_function_is_the_rfc_table() {
        let table = rfc_table();
        assert_eq!(table.len(), 160, "10 states x 16 events");
        for (state, ev, want) in table {
            let got = transition(state, ev).map(|(a, s)| (a.to_vec(), s));
            assert_eq!(got, want, "{state:?} x {ev:?}");
        }
    }

    /// Options: type 1 acceptable, type 2 Naked (to value 7), anything else rejected.
    #[derive(Debug, Default)]
    struct TestNeg {
        resets: u32,
        acks: u32,
    }

    impl Negotiator for TestNeg {
        const PROTOCOL: u16 = 0x8021;
        const NAME: &'static str = "TEST";
        fn reset(&mut self) {
            self.resets += 1;
        }
        fn write_request(&mut self, out: &mut Vec<u8>) {
            emit_option(out, 1, &[self.resets as u8]);
        }
        fn check_option(&mut self, o: ConfigOption<'_>, _rid: bool, nak: &mut Vec<u8>) -> Verdict {
            match o.kind {
                1 => Verdict::Ack,
                2 => {
                    emit_option(nak, 2, &[7]);
                    Verdict::Nak
                }
                _ => Verdict::Reject,
            }
        }
        fn apply_ack(&mut self) {
            self.acks += 1;
        }
        fn apply_nak(&mut self, _o: ConfigOption<'_>) {}
        fn apply_reject(&mut self, _o: ConfigOption<'_>) {}
    }

    type F = Fsm<TestNeg>;

    fn fsm(max: u32) -> F {
        let cfg = FsmConfig {
            max_configure: max,
            max_terminate: max.min(2),
            ..FsmConfig::default()
        };
        Fsm::new(TestNeg::default(), cfg)
    }

    fn drain(f: &mut F) -> (Vec<u8>, Vec<LayerSignal>) {
        let codes = std::iter::from_fn(|| f.poll_packet())
            .map(|p| p[0])
            .collect();
        let sigs = std::iter::from_fn(|| f.poll_signal()).collect();
        (codes, sigs)
    }

    /// Our outstanding Configure-Request, as the automaton sent it.
    fn our_request(f: &F) -> (u8, Vec<u8>) {
        (f.req_id, f.last_request.clone())
    }

    fn recv(f: &mut F, code: u8, id: u8, data: &[u8], now: Instant) {
        let pkt = ControlPacket::to_vec(code, id, data);
        f.input(&pkt, now).unwrap();
    }

    /// Drive a fresh automaton into `target` through ordinary events.
    fn reach(target: State, max: u32, now: Instant) -> F {
        let mut f = fsm(max);
        let req_sent = |f: &mut F| {
            f.up(now);
            f.open(now);
        };
        match target {
            State::Initial => {}
            State::Starting => f.open(now),
            State::Closed => f.up(now),
            State::ReqSent => req_sent(&mut f),
            State::AckRcvd => {
                req_sent(&mut f);
                let (id, opts) = our_request(&f);
                recv(&mut f, CONFIGURE_ACK, id, &opts, now);
            }
            State::AckSent => {
                req_sent(&mut f);
                recv(&mut f, CONFIGURE_REQUEST, 50, &[1, 2], now);
            }
            State::Opened => {
                req_sent(&mut f);
                recv(&mut f, CONFIGURE_REQUEST, 50, &[1, 2], now);
                let (id, opts) = our_request(&f);
                recv(&mut f, CONFIGURE_ACK, id, &opts, now);
            }
            State::Stopped => {
                req_sent(&mut f);
                for i in 1..=max {
                    f.handle_timeout(now + Duration::from_secs(3 * u64::from(i)));
                }
            }
            State::Closing => {
                req_sent(&mut f);
                f.close("bye", now);
            }
            State::Stopping => {
                let mut g = reach(State::Opened, max, now);
                recv(&mut g, TERMINATE_REQUEST, 60, b"go", now);
                f = g;
            }
        }
        assert_eq!(f.state(), target, "could not reach {target:?}");
        drain(&mut f);
        f
    }

    /// Deliver `ev` the way it happens in real life. Returns false when the
    /// event cannot be produced in this state (e.g. TO+ without a running timer,
    /// or an Ack while no request is outstanding: dropped by the id check).
    fn deliver(f: &mut F, ev: Event, now: Instant) -> bool {
        let later = now + Duration::from_secs(1000);
        match ev {
            Event::Up => f.up(now),
            Event::Down => f.down(now),
            Event::Open => f.open(now),
            Event::Close => f.close("bye", now),
            Event::TimeoutPlus | Event::TimeoutMinus => {
                let plus = f.restart_count > 0;
                if f.deadline.is_none() || plus != (ev == Event::TimeoutPlus) {
                    return false;
                }
                f.handle_timeout(later);
            }
            Event::RcrPlus => recv(f, CONFIGURE_REQUEST, 70, &[1, 2], now),
            Event::RcrMinus => recv(f, CONFIGURE_REQUEST, 70, &[2, 3, 0], now),
            Event::Rca | Event::Rcn => {
                if !f.expecting_answer(f.req_id) {
                    return false;
                }
                let (id, opts) = our_request(f);
                if ev == Event::Rca {
                    recv(f, CONFIGURE_ACK, id, &opts, now);
                } else {
                    recv(f, CONFIGURE_NAK, id, &[1, 3, 9], now);
                }
            }
            Event::Rtr => recv(f, TERMINATE_REQUEST, 71, b"", now),
            Event::Rta => recv(f, TERMINATE_ACK, 72, b"", now),
            Event::Ruc => recv(f, 42, 73, b"xyz", now),
            Event::RxjPlus => recv(f, CODE_REJECT, 74, &[ECHO_REQUEST, 1, 0, 4], now),
            Event::RxjMinus => recv(f, CODE_REJECT, 75, &[CONFIGURE_REQUEST, 1, 0, 4], now),
            Event::Rxr => {
                f.rxr(now);
            }
        }
        true
    }

    fn expected_codes(actions: &[Action], ev: Event) -> Vec<u8> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Scr => Some(CONFIGURE_REQUEST),
                Action::Sca => Some(CONFIGURE_ACK),
                Action::Scn if ev == Event::RcrMinus => Some(CONFIGURE_NAK),
                Action::Str => Some(TERMINATE_REQUEST),
                Action::Sta => Some(TERMINATE_ACK),
                Action::Scj => Some(CODE_REJECT),
                _ => None,
            })
            .collect()
    }

    fn expected_signals(actions: &[Action]) -> Vec<LayerSignal> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Tlu => Some(LayerSignal::Up),
                Action::Tld => Some(LayerSignal::Down),
                Action::Tls => Some(LayerSignal::Started),
                Action::Tlf => Some(LayerSignal::Finished),
                _ => None,
            })
            .collect()
    }

    /// Every (state, event) the executor can be put through does what the table says:
    /// next state, packets sent (in order) and layer signals.
    #[test]
    fn every_reachable_transition_executes_the_table() {
        let now = Instant::now();
        let mut exercised = 0;
        for state in STATES {
            for (_, ev) in EVENTS {
                // TO- needs an exhausted counter: run those with Max-* = 1.
                let max = if ev == Event::TimeoutMinus { 1 } else { 10 };
                let mut f = reach(state, max, now);
                if matches!(ev, Event::TimeoutMinus) && f.restart_count > 0 && f.deadline.is_some()
                {
                    f.restart_count = 0; // e.g. Opened->Stopping used zrc anyway
                }
                let before = f.state();
                if !deliver(&mut f, ev, now) {
                    continue;
                }
                let (codes, sigs) = drain(&mut f);
                match transition(before, ev) {
                    None => {
                        assert_eq!(f.state(), before, "{before:?} x {ev:?} must be ignored");
                        assert!(codes.is_empty() && sigs.is_empty(), "{before:?} x {ev:?}");
                    }
                    Some((actions, next)) => {
                        exercised += 1;
                        assert_eq!(f.state(), next, "{before:?} x {ev:?}");
                        assert_eq!(codes, expected_codes(actions, ev), "{before:?} x {ev:?}");
                        assert_eq!(sigs, expected_signals(actions), "{before:?} x {ev:?}");
                        assert_eq!(
                            f.deadline.is_some(),
                            next.timer_runs()
                                && (codes
                                    .iter()
                                    .any(|&c| c == CONFIGURE_REQUEST || c == TERMINATE_REQUEST)
                                    || actions.contains(&Action::Zrc)
                                    || before.timer_runs()),
                            "timer after {before:?} x {ev:?}"
                        );
                    }
                }
            }
        }
        // 160 cells minus the impossible ones and Ack/Nak without an outstanding request.
        eprintln!("{exercised} table entries exercised");
        assert!(exercised >= 100, "only {exercised} transitions exercised");
    }

    #[test]
    fn restart_counter_limits_configure_requests() {
        let now = Instant::now();
        let mut f = fsm(10);
        f.up(now);
        f.open(now);
        let mut t = now;
        while let Some(d) = f.poll_timeout() {
            t = d;
            f.handle_timeout(t);
        }
        let (codes, sigs) = drain(&mut f);
        assert_eq!(codes, vec![CONFIGURE_REQUEST; 10]);
        assert_eq!(sigs, vec![LayerSignal::Finished]);
        assert_eq!(f.state(), State::Stopped);
        assert_eq!(t, now + Duration::from_secs(30));
    }

    /// ITEM 6: a peer's endless Configure-Requests (each acceptable, ours never
    /// acknowledged) used to be answered forever: the restart counter only counts
    /// our own requests. Now 3 × Max-Configure of them end it as TO- would.
    #[test]
    fn configure_request_storm_is_bounded() {
        let now = Instant::now();
        let mut f = fsm(10);
        f.up(now);
        f.open(now);
        drain(&mut f);
        let limit = f.peer_request_limit();
        assert_eq!(limit, 30);
        let mut acks = 0;
        for i in 0..1000u32 {
            recv(&mut f, CONFIGURE_REQUEST, i as u8, &[1, 3, 0], now);
            let (codes, sigs) = drain(&mut f);
            acks += codes.iter().filter(|&&c| c == CONFIGURE_ACK).count() as u32;
            if f.state() == State::Stopped {
                assert_eq!(sigs, vec![LayerSignal::Finished]);
                break;
            }
        }
        assert_eq!(f.state(), State::Stopped);
        assert!(f.gave_up_on_storm());
        assert_eq!(acks, limit);
        assert_eq!(f.poll_timeout(), None);
    }

    /// Reaching Opened forgives earlier requests: a normal negotiation never trips the bound.
    #[test]
    fn peer_request_count_resets_when_opened() {
        let now = Instant::now();
        let mut f = reach(State::Opened, 10, now);
        assert_eq!(f.peer_requests(), 0);
        assert!(!f.gave_up_on_storm());
        drain(&mut f);
    }

    #[test]
    fn max_terminate_then_closed() {
        let now = Instant::now();
        let mut f = reach(State::Opened, 10, now);
        f.close("admin", now);
        while let Some(d) = f.poll_timeout() {
            f.handle_timeout(d);
        }
        let (codes, sigs) = drain(&mut f);
        assert_eq!(codes, vec![TERMINATE_REQUEST; 2]);
        assert_eq!(sigs, vec![LayerSignal::Down, LayerSignal::Finished]);
        assert_eq!(f.state(), State::Closed);
    }

    #[test]
    fn max_failure_turns_naks_into_rejects() {
        let now = Instant::now();
        let mut f = reach(State::ReqSent, 10, now);
        for i in 0..6u8 {
            recv(&mut f, CONFIGURE_REQUEST, i, &[2, 3, 0], now);
            let pkt = f.poll_packet().unwrap();
            let want = if i < 5 {
                CONFIGURE_NAK
            } else {
                CONFIGURE_REJECT
            };
            assert_eq!(pkt[0], want, "round {i}");
        }
    }

    #[test]
    fn duplicate_or_stale_answers_are_ignored() {
        let now = Instant::now();
        let mut f = reach(State::ReqSent, 10, now);
        let (id, opts) = our_request(&f);
        recv(&mut f, CONFIGURE_ACK, id.wrapping_add(1), &opts, now); // wrong id
        assert_eq!(f.state(), State::ReqSent);
        recv(&mut f, CONFIGURE_ACK, id, &[1, 3, 0xee], now); // wrong content
        assert_eq!(f.state(), State::ReqSent);
        recv(&mut f, CONFIGURE_ACK, id, &opts, now);
        assert_eq!(f.state(), State::AckRcvd);
        recv(&mut f, CONFIGURE_ACK, id, &opts, now); // duplicate: no crossed-connection restart
        assert_eq!(f.state(), State::AckRcvd);
        assert!(f.poll_packet().is_none());
        // A Reject naming an option we never sent is invalid.
        let mut g = reach(State::ReqSent, 10, now);
        let (id, _) = our_request(&g);
        recv(&mut g, CONFIGURE_REJECT, id, &[9, 2], now);
        assert!(g.poll_packet().is_none());
    }

    #[test]
    fn retransmission_keeps_identifier() {
        let now = Instant::now();
        let mut f = reach(State::ReqSent, 10, now);
        let (id, _) = our_request(&f);
        f.handle_timeout(now + Duration::from_secs(3));
        let pkt = f.poll_packet().unwrap();
        assert_eq!((pkt[0], pkt[1]), (CONFIGURE_REQUEST, id));
    }

    #[test]
    fn malformed_packets_change_nothing() {
        let now = Instant::now();
        let mut f = reach(State::ReqSent, 10, now);
        for bad in [
            &[1u8, 1, 0][..],
            &[1, 1, 0, 3],
            &[1, 1, 0, 9, 1],
            &[1, 1, 0, 7, 1, 5, 0],
        ] {
            assert!(f.input(bad, now).is_err(), "{bad:?}");
        }
        assert_eq!(f.state(), State::ReqSent);
        assert!(f.poll_packet().is_none());
    }
}
