//! A whole PPP session (`ppp::Session`) fed by the fuzzer, in the dialer or the
//! answering role, next to a well-behaved partner session of the other role.
//!
//! Input: `config byte, then ops`. Each op byte (high 3 bits: what, low 5
//! bits: a length or flags) either feeds raw line bytes to the session under
//! test, feeds it a correctly framed frame whose content comes from the input
//! (so the fuzzer gets past the FCS), passes frames between the two sessions
//! (dropped or corrupted on request), moves the fake clock to the next
//! deadline or by a step, or sends IP / closes. After every op all polls are
//! drained and checked. At the end the clock runs on with no input: a session
//! with keepalive on must go Down by itself.
#![no_main]

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use eqlplus_dialer::ppp::hdlc::{ACCM_ALL, Encoder, FLAG};
use eqlplus_dialer::ppp::{AuthMethods, Config, Credentials, Event, Phase, Secrets, Session};
use libfuzzer_sys::fuzz_target;

/// `PPP_FUZZ_TRACE=1` prints the events of the session under test (to check
/// how deep an input gets, e.g. with `-runs=1 INPUT`).
fn trace() -> bool {
    static TRACE: OnceLock<bool> = OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("PPP_FUZZ_TRACE").is_some())
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Longest wire queue kept between the two ends (older frames are lost, like a line would).
const MAX_QUEUE: usize = 64;

struct End {
    session: Session,
    /// Frames it sent, not yet delivered to the other end.
    sent: VecDeque<Vec<u8>>,
    saw_down: bool,
}

impl End {
    fn new(session: Session) -> End {
        let mut end = End {
            session,
            sent: VecDeque::new(),
            saw_down: false,
        };
        end.drain();
        end
    }

    /// Take everything the session has to give, checking what can be checked.
    fn drain(&mut self) {
        while let Some(frame) = self.session.poll_transmit() {
            assert!(frame.len() >= 4, "frame too short: {frame:02x?}");
            assert_eq!(frame[0], FLAG);
            assert_eq!(frame[frame.len() - 1], FLAG);
            assert!(
                !frame[1..frame.len() - 1].contains(&FLAG),
                "unescaped flag inside a frame"
            );
            if self.sent.len() == MAX_QUEUE {
                self.sent.pop_front();
            }
            self.sent.push_back(frame);
        }
        while let Some(event) = self.session.poll_event() {
            if trace() {
                eprintln!("{:?}: {event:?}", self.session.phase());
            }
            assert!(!self.saw_down, "event after Down: {event:?}");
            match event {
                Event::Down { .. } => {
                    self.saw_down = true;
                    assert!(self.session.is_dead());
                    assert_eq!(self.session.phase(), Phase::Dead);
                    assert!(!self.session.is_up());
                }
                Event::Up { mru, .. } => assert!(mru > 0),
                _ => {}
            }
        }
        while let Some(packet) = self.session.poll_ip() {
            let _ = packet;
        }
        if self.session.is_dead() {
            assert!(
                self.session.poll_timeout().is_none(),
                "a dead session keeps a timer"
            );
        }
    }

    fn feed(&mut self, bytes: &[u8], now: Instant) {
        self.session.handle_input(bytes, now);
        self.drain();
    }

    fn timeout(&mut self, now: Instant) {
        if self.session.poll_timeout().is_some_and(|t| t <= now) {
            self.session.handle_timeout(now);
        }
        self.drain();
    }
}

/// Two configurations that can talk to each other: (session under test, partner).
fn configs(selector: u8, seed: u64) -> (Config, Config, bool) {
    let local = Ipv4Addr::new(10, 0, 0, 1);
    let peer = Ipv4Addr::new(10, 0, 0, 2);
    let dns = [Ipv4Addr::new(10, 0, 0, 53), Ipv4Addr::new(10, 0, 1, 53)];
    let password = if selector & 0x08 == 0 {
        "right"
    } else {
        "wrong"
    };
    let mut dialer = Config::dialer(Some(Credentials::new("user", password)));
    let mut answer = Config::answer(local, peer, &dns);
    answer.require_auth = match selector >> 1 & 3 {
        0 => AuthMethods::NONE,
        1 => AuthMethods {
            pap: true,
            chap: false,
        },
        2 => AuthMethods {
            pap: false,
            chap: true,
        },
        _ => AuthMethods {
            pap: true,
            chap: true,
        },
    };
    answer.secrets = Secrets::new().with("user", "right");
    if selector & 0x10 != 0 {
        answer.chap_rechallenge = Some(Duration::from_secs(2));
    }
    let keepalive = selector & 0x20 == 0;
    for (i, cfg) in [&mut dialer, &mut answer].into_iter().enumerate() {
        cfg.seed = seed.wrapping_add(i as u64);
        if !keepalive {
            cfg.lcp.echo_interval = None;
        }
        if selector & 0x40 != 0 {
            cfg.lcp.accm = ACCM_ALL;
            cfg.lcp.pfc = false;
            cfg.lcp.acfc = false;
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

fn take<'a>(input: &mut &'a [u8], n: usize) -> &'a [u8] {
    let (head, tail) = input.split_at(n.min(input.len()));
    *input = tail;
    head
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, mut input)) = data.split_first() else {
        return;
    };
    let mut now = epoch();
    let (cfg, partner_cfg, keepalive) = configs(selector, u64::from(selector) << 32 | 0x5eed);
    let mut us = End::new(Session::new(cfg, now));
    let mut them = End::new(Session::new(partner_cfg, now));
    let fuzz_encoder = Encoder::new(ACCM_ALL);
    let mut wire = Vec::new();

    while let Some((&op, rest)) = input.split_first() {
        input = rest;
        let arg = op & 0x1f;
        match op >> 5 {
            // Raw line bytes (length 0..30, or 31: a longer run sized by the next byte).
            0 | 1 => {
                let len = if arg == 0x1f {
                    usize::from(take(&mut input, 1).first().copied().unwrap_or(0)) * 8
                } else {
                    usize::from(arg)
                };
                let bytes = take(&mut input, len);
                us.feed(bytes, now);
            }
            // A frame with a good FCS around bytes from the input (header included).
            2 => {
                let len = if arg == 0x1f {
                    usize::from(take(&mut input, 1).first().copied().unwrap_or(0)) * 8
                } else {
                    usize::from(arg)
                };
                let content = take(&mut input, len);
                wire.clear();
                fuzz_encoder.encode(&[], content, &mut wire);
                us.feed(&wire, now);
            }
            // Partner → us: next frame, maybe dropped (bit 0) or with a byte flipped (bit 1).
            3 => {
                if let Some(mut frame) = them.sent.pop_front() {
                    if arg & 1 == 0 {
                        if arg & 2 != 0 {
                            let at = usize::from(take(&mut input, 1).first().copied().unwrap_or(0));
                            let at = at % frame.len();
                            frame[at] ^= 1 << (arg >> 2 & 7);
                        }
                        us.feed(&frame, now);
                    }
                }
            }
            // Us → partner: same.
            4 => {
                if let Some(mut frame) = us.sent.pop_front() {
                    if arg & 1 == 0 {
                        if arg & 2 != 0 {
                            let at = usize::from(take(&mut input, 1).first().copied().unwrap_or(0));
                            let at = at % frame.len();
                            frame[at] ^= 1 << (arg >> 2 & 7);
                        }
                        them.feed(&frame, now);
                    }
                }
            }
            // The clock jumps to the earliest deadline of either end.
            5 => {
                let next = [us.session.poll_timeout(), them.session.poll_timeout()]
                    .into_iter()
                    .flatten()
                    .min();
                if let Some(t) = next {
                    now = now.max(t);
                }
                us.timeout(now);
                them.timeout(now);
            }
            // The clock moves by up to 3.1 s.
            6 => {
                now += Duration::from_millis(u64::from(arg) * 100);
                us.timeout(now);
                them.timeout(now);
            }
            // Application: send IP either way, or close.
            _ => {
                match arg {
                    0..=13 => {
                        let len =
                            usize::from(take(&mut input, 1).first().copied().unwrap_or(0)) * 8;
                        let packet = take(&mut input, len).to_vec();
                        let end = if arg & 1 == 0 { &mut us } else { &mut them };
                        let up = end.session.is_up();
                        let r = end.session.send_ip(&packet);
                        assert!(up || r.is_err(), "send_ip accepted while down");
                    }
                    14 => us.session.close("fuzz", now),
                    15 => them.session.close("fuzz", now),
                    _ => {}
                }
                us.drain();
                them.drain();
            }
        }
    }

    // Input exhausted: the line goes quiet. With keepalive on, every phase ends
    // in bounded time (configure, terminate, auth and echo timers).
    let mut ticks = 0;
    while let Some(t) = us.session.poll_timeout() {
        now = now.max(t);
        us.timeout(now);
        ticks += 1;
        if ticks > 200 {
            assert!(
                !keepalive,
                "session still {:?} after {ticks} deadlines with a silent line",
                us.session.phase()
            );
            break;
        }
    }
    if keepalive {
        assert!(
            us.session.is_dead(),
            "no deadline left but not dead: {:?}",
            us.session.phase()
        );
        assert!(us.saw_down, "dead without an Event::Down");
    }
    us.session
        .handle_input(&[FLAG, 0xff, 0x03, 0xc0, 0x21, FLAG], now);
    let _ = us.session.stats();
});
