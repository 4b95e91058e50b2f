//! The harness `ppp_session` (HDLC) and `ppp_unframed` share: a session under test next to a
//! well-behaved partner of the other role, a fake clock, and the ops both targets decode the
//! same way. What depends on the framing follows `Session::framing()`, so each target only
//! chooses its configs and its own input ops.

use std::collections::VecDeque;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use eqlplus_dialer::ppp::hdlc::FLAG;
use eqlplus_dialer::ppp::{Config, Event, Framing, Phase, Secrets, Session};

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Longest queue of frames kept between the two ends (older ones are lost, like a line would).
const MAX_QUEUE: usize = 64;

pub struct End {
    pub session: Session,
    /// Frames it sent, not yet delivered to the other end.
    sent: VecDeque<Vec<u8>>,
    saw_down: bool,
    /// Print the events as they come (`PPP_FUZZ_TRACE` of the HDLC target).
    trace: bool,
}

impl End {
    fn new(session: Session, trace: bool) -> End {
        let mut end = End {
            session,
            sent: VecDeque::new(),
            saw_down: false,
            trace,
        };
        end.drain();
        end
    }

    /// Take everything the session has to give, checking what can be checked.
    pub fn drain(&mut self) {
        let framing = self.session.framing();
        while let Some(frame) = self.session.poll_transmit() {
            check_frame(framing, &frame);
            if self.sent.len() == MAX_QUEUE {
                self.sent.pop_front();
            }
            self.sent.push_back(frame);
        }
        while let Some(event) = self.session.poll_event() {
            if self.trace {
                eprintln!("{:?}: {event:?}", self.session.phase());
            }
            assert!(!self.saw_down, "event after Down: {event:?}");
            match event {
                Event::Down { .. } => {
                    self.saw_down = true;
                    assert_eq!(self.session.phase(), Phase::Dead);
                    match framing {
                        Framing::Hdlc => {
                            assert!(self.session.is_dead());
                            assert!(!self.session.is_up());
                        }
                        Framing::Unframed => assert!(self.session.link_parameters().is_none()),
                    }
                }
                Event::Up { mru, .. } if framing == Framing::Hdlc => assert!(mru > 0),
                _ => {}
            }
        }
        while self.session.poll_ip().is_some() {}
        if framing == Framing::Unframed {
            // A Linux PPP channel: multilink may be on, and the kernel's MRU is at least 1500.
            while self.session.poll_bundle_frame().is_some() {}
            if let Some(p) = self.session.link_parameters() {
                assert!(p.mru >= 1500, "receive MRU below 1500: {p:?}");
            }
        }
        if self.session.is_dead() {
            assert!(
                self.session.poll_timeout().is_none(),
                "a dead session keeps a timer"
            );
        }
    }

    /// Line bytes (HDLC) or one whole frame (unframed).
    pub fn feed(&mut self, bytes: &[u8], now: Instant) {
        match self.session.framing() {
            Framing::Hdlc => self.session.handle_input(bytes, now),
            Framing::Unframed => self.session.handle_frame_input(bytes, now),
        }
        self.drain();
    }

    fn timeout(&mut self, now: Instant) {
        if self.session.poll_timeout().is_some_and(|t| t <= now) {
            self.session.handle_timeout(now);
        }
        self.drain();
    }
}

fn check_frame(framing: Framing, frame: &[u8]) {
    match framing {
        Framing::Hdlc => {
            assert!(frame.len() >= 4, "frame too short: {frame:02x?}");
            assert_eq!(frame[0], FLAG);
            assert_eq!(frame[frame.len() - 1], FLAG);
            assert!(
                !frame[1..frame.len() - 1].contains(&FLAG),
                "unescaped flag inside a frame"
            );
        }
        Framing::Unframed => {
            // protocol (2 bytes, never compressed, never an address field) + information.
            assert!(frame.len() >= 2, "runt frame: {frame:02x?}");
            let protocol = u16::from_be_bytes([frame[0], frame[1]]);
            assert_eq!(protocol & 0x0101, 0x0001, "bad protocol {protocol:#06x}");
        }
    }
}

/// Finish a target's (dialer, answer) into (session under test, partner, keepalive), setting
/// what both targets choose alike: keepalive (bit 0x20), MRU 296 (bit 0x80), seeds, the
/// answerer's secret, and which role is under test (bit 0). `each` applies a target's own
/// per-end settings.
pub fn configs(
    selector: u8,
    seed: u64,
    mut dialer: Config,
    mut answer: Config,
    each: impl Fn(&mut Config),
) -> (Config, Config, bool) {
    answer.secrets = Secrets::new().with("user", "right");
    let keepalive = selector & 0x20 == 0;
    for (i, cfg) in [&mut dialer, &mut answer].into_iter().enumerate() {
        each(cfg);
        cfg.seed = seed.wrapping_add(i as u64);
        if !keepalive {
            cfg.lcp.echo_interval = None;
        }
        if selector & 0x80 != 0 {
            cfg.lcp.mru = 296;
        }
    }
    if selector & 1 == 0 {
        (dialer, answer, keepalive)
    } else {
        (answer, dialer, keepalive)
    }
}

pub fn take<'a>(input: &mut &'a [u8], n: usize) -> &'a [u8] {
    let (head, tail) = input.split_at(n.min(input.len()));
    *input = tail;
    head
}

/// The next input byte, 0 once the input is exhausted.
fn byte(input: &mut &[u8]) -> u8 {
    take(input, 1).first().copied().unwrap_or(0)
}

/// Bytes from the input: `arg` of them (0..30), or for 31 a longer run sized by the next byte.
pub fn chunk<'a>(arg: u8, input: &mut &'a [u8]) -> &'a [u8] {
    let len = if arg == 0x1f {
        usize::from(byte(input)) * 8
    } else {
        usize::from(arg)
    };
    take(input, len)
}

pub struct Pair {
    pub us: End,
    pub them: End,
    pub now: Instant,
    keepalive: bool,
}

impl Pair {
    pub fn new((us, them, keepalive): (Config, Config, bool), trace: bool) -> Pair {
        let now = epoch();
        Pair {
            us: End::new(Session::new(us, now), trace),
            them: End::new(Session::new(them, now), trace),
            now,
            keepalive,
        }
    }

    /// The ops both targets share (`op` = the high 3 bits, 3 to 7; `arg` = the low 5 bits).
    pub fn step(&mut self, op: u8, arg: u8, input: &mut &[u8]) {
        match op {
            3 => pass(&mut self.them, &mut self.us, arg, input, self.now),
            4 => pass(&mut self.us, &mut self.them, arg, input, self.now),
            // The clock jumps to the earliest deadline of either end.
            5 => {
                let next = [
                    self.us.session.poll_timeout(),
                    self.them.session.poll_timeout(),
                ]
                .into_iter()
                .flatten()
                .min();
                if let Some(t) = next {
                    self.now = self.now.max(t);
                }
                self.tick();
            }
            // The clock moves by up to 3.1 s.
            6 => {
                self.now += Duration::from_millis(u64::from(arg) * 100);
                self.tick();
            }
            7 => self.application(arg, input),
            _ => unreachable!("op {op} is the target's own"),
        }
    }

    /// Even `arg`: the session under test; odd: the partner.
    fn end(&mut self, arg: u8) -> &mut End {
        if arg & 1 == 0 {
            &mut self.us
        } else {
            &mut self.them
        }
    }

    fn tick(&mut self) {
        self.us.timeout(self.now);
        self.them.timeout(self.now);
    }

    /// Send IP (or, unframed, a bundle frame) either way, or close.
    fn application(&mut self, arg: u8, input: &mut &[u8]) {
        // Only the unframed target negotiates multilink, so only it sends bundle frames.
        let bundle = self.us.session.framing() == Framing::Unframed;
        match arg {
            12 | 13 if bundle => {
                let _ = self
                    .end(arg)
                    .session
                    .send_frame(0x003d, &[0xc0, 0, 0, 1, 0, 0x21]);
            }
            0..=13 => {
                let len = usize::from(byte(input)) * 8;
                let packet = take(input, len).to_vec();
                let end = self.end(arg);
                let up = end.session.is_up();
                let r = end.session.send_ip(&packet);
                assert!(up || r.is_err(), "send_ip accepted while down");
            }
            14 => self.us.session.close("fuzz", self.now),
            15 => self.them.session.close("fuzz", self.now),
            _ => {}
        }
        self.us.drain();
        self.them.drain();
    }

    /// Input exhausted: the line goes quiet. With keepalive on, every phase ends in bounded
    /// time (configure, terminate, auth and echo timers), so the session must go Down.
    pub fn go_quiet(&mut self) {
        let us = &mut self.us;
        let mut ticks = 0;
        while let Some(t) = us.session.poll_timeout() {
            self.now = self.now.max(t);
            us.timeout(self.now);
            ticks += 1;
            if ticks > 200 {
                assert!(
                    !self.keepalive,
                    "session still {:?} after {ticks} deadlines with a silent line",
                    us.session.phase()
                );
                break;
            }
        }
        if self.keepalive {
            assert!(
                us.session.is_dead(),
                "no deadline left but not dead: {:?}",
                us.session.phase()
            );
            assert!(us.saw_down, "dead without an Event::Down");
        }
    }
}

/// Pass the next frame of `from` to `to`: dropped (bit 0) or with a bit flipped (bit 1).
fn pass(from: &mut End, to: &mut End, arg: u8, input: &mut &[u8], now: Instant) {
    let Some(mut frame) = from.sent.pop_front() else {
        return;
    };
    if arg & 1 != 0 {
        return;
    }
    if arg & 2 != 0 && !frame.is_empty() {
        let at = usize::from(byte(input)) % frame.len();
        frame[at] ^= 1 << (arg >> 2 & 7);
    }
    to.feed(&frame, now);
}
