//! A `ppp::Session` in `Framing::Unframed` (whole frames, as a Linux PPP channel reads and
//! writes them) fed by the fuzzer, in the dialer or the answering role, next to a
//! well-behaved unframed partner of the other role.
//!
//! Input: `config byte, then ops`. Each op byte (high 3 bits: what, low 5 bits: a length or
//! flags) either feeds `Session::handle_frame_input` a whole frame taken from the input,
//! passes frames between the two sessions (dropped or with a byte flipped on request), moves
//! the fake clock, or sends IP / closes. After every op all polls are drained and checked:
//! frames out are `protocol (2 bytes) + information`, never framed. At the end the clock runs
//! on with no input: with keepalive on the session must go Down by itself.
#![no_main]

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use eqlplus_dialer::ppp::{
    AuthMethods, Config, Credentials, Event, Framing, Phase, Secrets, Session,
};
use libfuzzer_sys::fuzz_target;

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Longest queue of frames kept between the two ends (older ones are lost).
const MAX_QUEUE: usize = 64;

struct End {
    session: Session,
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

    fn drain(&mut self) {
        while let Some(frame) = self.session.poll_transmit() {
            // protocol (2 bytes, never compressed, never an address field) + information.
            assert!(frame.len() >= 2, "runt frame: {frame:02x?}");
            let protocol = u16::from_be_bytes([frame[0], frame[1]]);
            assert_eq!(protocol & 0x0101, 0x0001, "bad protocol {protocol:#06x}");
            if self.sent.len() == MAX_QUEUE {
                self.sent.pop_front();
            }
            self.sent.push_back(frame);
        }
        while let Some(event) = self.session.poll_event() {
            assert!(!self.saw_down, "event after Down: {event:?}");
            if let Event::Down { .. } = event {
                self.saw_down = true;
                assert_eq!(self.session.phase(), Phase::Dead);
                assert!(self.session.link_parameters().is_none());
            }
        }
        while self.session.poll_ip().is_some() {}
        while self.session.poll_bundle_frame().is_some() {}
        if let Some(p) = self.session.link_parameters() {
            assert!(p.mru >= 1500, "receive MRU below 1500: {p:?}");
        }
        if self.session.is_dead() {
            assert!(
                self.session.poll_timeout().is_none(),
                "a dead session keeps a timer"
            );
        }
    }

    fn feed(&mut self, frame: &[u8], now: Instant) {
        self.session.handle_frame_input(frame, now);
        self.drain();
    }

    fn timeout(&mut self, now: Instant) {
        if self.session.poll_timeout().is_some_and(|t| t <= now) {
            self.session.handle_timeout(now);
        }
        self.drain();
    }
}

/// Two configurations that can talk to each other: (session under test, partner, keepalive).
fn configs(selector: u8, seed: u64) -> (Config, Config, bool) {
    let mut dialer = Config::dialer(Some(Credentials::new("user", "right")));
    let mut answer = Config::answer(
        Ipv4Addr::new(10, 0, 0, 1),
        Ipv4Addr::new(10, 0, 0, 2),
        &[Ipv4Addr::new(10, 0, 0, 53)],
    );
    answer.require_auth = match selector >> 1 & 3 {
        0 => AuthMethods::NONE,
        1 => AuthMethods {
            pap: true,
            chap: false,
        },
        _ => AuthMethods {
            pap: false,
            chap: true,
        },
    };
    answer.secrets = Secrets::new().with("user", "right");
    let keepalive = selector & 0x20 == 0;
    for (i, cfg) in [&mut dialer, &mut answer].into_iter().enumerate() {
        cfg.framing = Framing::Unframed;
        cfg.seed = seed.wrapping_add(i as u64);
        if !keepalive {
            cfg.lcp.echo_interval = None;
        }
        if selector & 0x40 != 0 {
            cfg.lcp.multilink = Some(Default::default());
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

/// Pass the next frame of `from` to `to`: dropped (bit 0) or with a bit flipped (bit 1).
fn pass(from: &mut End, to: &mut End, arg: u8, input: &mut &[u8], now: Instant) {
    let Some(mut frame) = from.sent.pop_front() else {
        return;
    };
    if arg & 1 != 0 {
        return;
    }
    if arg & 2 != 0 && !frame.is_empty() {
        let at = usize::from(take(input, 1).first().copied().unwrap_or(0)) % frame.len();
        frame[at] ^= 1 << (arg >> 2 & 7);
    }
    to.feed(&frame, now);
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, mut input)) = data.split_first() else {
        return;
    };
    let mut now = epoch();
    let (cfg, partner_cfg, keepalive) = configs(selector, u64::from(selector) << 32 | 0xf4a3);
    let mut us = End::new(Session::new(cfg, now));
    let mut them = End::new(Session::new(partner_cfg, now));

    while let Some((&op, rest)) = input.split_first() {
        input = rest;
        let arg = op & 0x1f;
        match op >> 5 {
            // A whole frame from the input (0..30 bytes, or 31: sized by the next byte).
            0..=2 => {
                let len = if arg == 0x1f {
                    usize::from(take(&mut input, 1).first().copied().unwrap_or(0)) * 8
                } else {
                    usize::from(arg)
                };
                let frame = take(&mut input, len);
                us.feed(frame, now);
            }
            3 => pass(&mut them, &mut us, arg, &mut input, now),
            4 => pass(&mut us, &mut them, arg, &mut input, now),
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
            // Application: send IP or a bundle frame either way, or close.
            _ => {
                match arg {
                    0..=11 => {
                        let len =
                            usize::from(take(&mut input, 1).first().copied().unwrap_or(0)) * 8;
                        let packet = take(&mut input, len).to_vec();
                        let end = if arg & 1 == 0 { &mut us } else { &mut them };
                        let up = end.session.is_up();
                        let r = end.session.send_ip(&packet);
                        assert!(up || r.is_err(), "send_ip accepted while down");
                    }
                    12 | 13 => {
                        let end = if arg & 1 == 0 { &mut us } else { &mut them };
                        let _ = end.session.send_frame(0x003d, &[0xc0, 0, 0, 1, 0, 0x21]);
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

    // Input exhausted: the line goes quiet.
    let mut ticks = 0;
    while let Some(t) = us.session.poll_timeout() {
        now = now.max(t);
        us.timeout(now);
        ticks += 1;
        if ticks > 200 {
            assert!(
                !keepalive,
                "still {:?} with a silent line",
                us.session.phase()
            );
            break;
        }
    }
    if keepalive {
        assert!(us.session.is_dead(), "not dead: {:?}", us.session.phase());
        assert!(us.saw_down, "dead without an Event::Down");
    }
    us.session
        .handle_frame_input(&[0xc0, 0x21, 1, 1, 0, 4], now);
    let _ = us.session.stats();
});
