//! Whole-session tests: our Dialer against our Answer, in memory, on a fake clock.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::hdlc::{Decoder, Encoder, Header};
use super::lcp::AuthMethods;
use super::packet::ControlPacket;
use super::session::{Config, DownReason, Event, Phase, SendError, Session};
use super::{Credentials, Secrets, chap, ipcp, lcp, pap};

const LOCAL: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const REMOTE: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const DNS1: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 53);
const DNS2: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 54);

fn dialer(creds: Option<(&str, &str)>) -> Config {
    let mut c = Config::dialer(creds.map(|(u, p)| Credentials::new(u, p)));
    c.seed = 1;
    c
}

fn answer(require: AuthMethods, secrets: &[(&str, &str)]) -> Config {
    let mut c = Config::answer(LOCAL, REMOTE, &[DNS1, DNS2]);
    c.require_auth = require;
    for (u, p) in secrets {
        c.secrets.insert(*u, *p);
    }
    c.seed = 2;
    c
}

const PAP_ONLY: AuthMethods = AuthMethods {
    pap: true,
    chap: false,
};
const CHAP_ONLY: AuthMethods = AuthMethods {
    pap: false,
    chap: true,
};

/// A wire tap that decodes one direction for assertions.
struct Tap {
    dec: Decoder,
    seen: Vec<(u16, Vec<u8>)>,
}

impl Tap {
    fn new() -> Self {
        let mut dec = Decoder::new(1500);
        dec.set_accm(0); // Accept escaped and unescaped control characters alike.
        Tap {
            dec,
            seen: Vec::new(),
        }
    }

    fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let (n, f) = self.dec.push(bytes);
            if let Some(f) = f
                && let Ok((h, info)) = Header::parse(f)
            {
                self.seen.push((h.protocol, info.to_vec()));
            }
            bytes = &bytes[n..];
        }
    }

    fn codes(&self, protocol: u16) -> Vec<u8> {
        self.seen
            .iter()
            .filter(|(p, _)| *p == protocol)
            .filter_map(|(_, i)| i.first().copied())
            .collect()
    }
}

/// Two sessions connected back to back on a fake clock.
struct Pair {
    a: Session,
    b: Session,
    now: Instant,
    start: Instant,
    a_events: Vec<Event>,
    b_events: Vec<Event>,
    a_to_b: Tap,
    b_to_a: Tap,
    /// Drop everything b sends (b "hung up").
    cut_b_to_a: bool,
    /// Drop every LCP frame from b (its Echo-Requests and Echo-Replies).
    drop_lcp_from_b: bool,
    /// Deliver everything a side sent in one `handle_input` call, as a serial
    /// read returning several frames at once would.
    coalesce: bool,
}

impl Pair {
    fn new(a: Config, b: Config) -> Self {
        let now = Instant::now();
        Pair {
            a: Session::new(a, now),
            b: Session::new(b, now),
            now,
            start: now,
            a_events: Vec::new(),
            b_events: Vec::new(),
            a_to_b: Tap::new(),
            b_to_a: Tap::new(),
            cut_b_to_a: false,
            drop_lcp_from_b: false,
            coalesce: false,
        }
    }

    /// Move every queued frame across once; true if anything moved.
    fn exchange(&mut self) -> bool {
        if self.coalesce {
            return self.exchange_coalesced();
        }
        let mut moved = false;
        while let Some(f) = self.a.poll_transmit() {
            moved = true;
            self.a_to_b.feed(&f);
            self.b.handle_input(&f, self.now);
        }
        while let Some(f) = self.b.poll_transmit() {
            moved = true;
            self.b_to_a.feed(&f);
            let is_lcp = self
                .b_to_a
                .seen
                .last()
                .is_some_and(|(p, _)| *p == lcp::PROTOCOL);
            if self.cut_b_to_a || (self.drop_lcp_from_b && is_lcp) {
                continue;
            }
            self.a.handle_input(&f, self.now);
        }
        self.a_events
            .extend(std::iter::from_fn(|| self.a.poll_event()));
        self.b_events
            .extend(std::iter::from_fn(|| self.b.poll_event()));
        moved
    }

    fn exchange_coalesced(&mut self) -> bool {
        let a_out: Vec<u8> = std::iter::from_fn(|| self.a.poll_transmit())
            .flatten()
            .collect();
        let b_out: Vec<u8> = std::iter::from_fn(|| self.b.poll_transmit())
            .flatten()
            .collect();
        self.a_to_b.feed(&a_out);
        self.b_to_a.feed(&b_out);
        self.b.handle_input(&a_out, self.now);
        self.a.handle_input(&b_out, self.now);
        self.a_events
            .extend(std::iter::from_fn(|| self.a.poll_event()));
        self.b_events
            .extend(std::iter::from_fn(|| self.b.poll_event()));
        !a_out.is_empty() || !b_out.is_empty()
    }

    /// Run until `done` or until `limit` of simulated time has passed.
    fn run(&mut self, limit: Duration, mut done: impl FnMut(&Pair) -> bool) {
        let end = self.now + limit;
        for _ in 0..1_000_000 {
            let moved = self.exchange();
            if done(self) {
                return;
            }
            if moved {
                continue;
            }
            let next = [self.a.poll_timeout(), self.b.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    self.a.handle_timeout(self.now);
                    self.b.handle_timeout(self.now);
                }
                _ => {
                    self.now = end;
                    return;
                }
            }
        }
        panic!("no progress in a million steps");
    }

    fn run_until_up(&mut self) {
        self.run(Duration::from_secs(60), |p| p.a.is_up() && p.b.is_up());
        assert!(
            self.a.is_up() && self.b.is_up(),
            "not up: a={:?} b={:?}",
            self.a_events,
            self.b_events
        );
    }

    fn elapsed(&self) -> Duration {
        self.now - self.start
    }
}

fn up_event(events: &[Event]) -> Option<&Event> {
    events.iter().find(|e| matches!(e, Event::Up { .. }))
}

fn down(events: &[Event]) -> Option<&DownReason> {
    events.iter().find_map(|e| match e {
        Event::Down { reason } => Some(reason),
        _ => None,
    })
}

/// The Down reason as people read it.
fn down_reason(events: &[Event]) -> Option<String> {
    down(events).map(ToString::to_string)
}

fn auth_failed(events: &[Event]) -> Option<&str> {
    events.iter().find_map(|e| match e {
        Event::AuthFailed { reason } => Some(reason.as_str()),
        _ => None,
    })
}

fn ip_packet(n: u8, len: usize) -> Vec<u8> {
    let mut p = vec![0x45, 0, 0, 0];
    p.extend((0..len).map(|i| (i as u8).wrapping_mul(n) ^ 0x7e));
    p
}

fn check_ip_both_ways(p: &mut Pair) {
    let pkts: Vec<Vec<u8>> = (1..=5)
        .map(|i| ip_packet(i, 100 * usize::from(i)))
        .collect();
    for pkt in &pkts {
        p.a.send_ip(pkt).unwrap();
        p.b.send_ip(pkt).unwrap();
    }
    p.exchange();
    let got_b: Vec<_> = std::iter::from_fn(|| p.b.poll_ip()).collect();
    let got_a: Vec<_> = std::iter::from_fn(|| p.a.poll_ip()).collect();
    assert_eq!(got_b, pkts);
    assert_eq!(got_a, pkts);
}

#[test]
fn no_auth_up_and_ip_both_ways() {
    let mut p = Pair::new(dialer(None), answer(AuthMethods::NONE, &[]));
    p.run_until_up();
    assert_eq!(
        up_event(&p.a_events),
        Some(&Event::Up {
            local: REMOTE,
            peer: LOCAL,
            dns: vec![DNS1, DNS2],
            mru: 1500
        })
    );
    let Some(Event::Up { local, peer, .. }) = up_event(&p.b_events) else {
        panic!()
    };
    assert_eq!((*local, *peer), (LOCAL, REMOTE));
    // Phases in order, no authentication phase.
    let phases: Vec<_> = p
        .a_events
        .iter()
        .filter_map(|e| match e {
            Event::Phase(ph) => Some(*ph),
            _ => None,
        })
        .collect();
    assert_eq!(phases, [Phase::Establish, Phase::Network]);
    check_ip_both_ways(&mut p);
    // IP frames use the negotiated compression: ACFC + PFC give a one-byte header.
    assert!(p.a_to_b.seen.iter().any(|(proto, _)| *proto == ipcp::IPV4));
    assert!(p.a.stats().rx_ip_packets == 5 && p.a.stats().rx_bad_fcs == 0);
    assert_eq!(p.elapsed(), Duration::ZERO, "no retransmission needed");
}

/// Several frames per read: the frames right after LCP opens are already
/// sent with ACCM 0 (unescaped control characters) and must not be dropped.
#[test]
fn coalesced_reads_with_accm_switch() {
    for require in [AuthMethods::NONE, PAP_ONLY, CHAP_ONLY] {
        let mut p = Pair::new(
            dialer(Some(("alice", "wonderland"))),
            answer(require, &[("alice", "wonderland")]),
        );
        p.coalesce = true;
        // b reads a's Configure-Request before sending anything, so its
        // Configure-Request and its Ack go out together; a then answers with
        // its Ack *and* the first post-LCP frame (ACCM 0) in one read for b.
        let first: Vec<u8> = std::iter::from_fn(|| p.a.poll_transmit())
            .flatten()
            .collect();
        p.b.handle_input(&first, p.now);
        p.run_until_up();
        assert_eq!(p.a.stats().rx_bad_fcs + p.b.stats().rx_bad_fcs, 0);
        assert_eq!(p.elapsed(), Duration::ZERO, "no retransmission needed");
        let pkt = ip_packet(3, 300); // contains control characters
        p.a.send_ip(&pkt).unwrap();
        p.a.send_ip(&pkt).unwrap();
        p.exchange();
        assert_eq!(p.b.poll_ip(), Some(pkt.clone()));
        assert_eq!(p.b.poll_ip(), Some(pkt));
    }
}

#[test]
fn first_frame_is_pppd_like_configure_request() {
    let mut s = Session::new(dialer(None), Instant::now());
    let frame = s.poll_transmit().unwrap();
    // Everything below 0x20 is escaped: the frame starts exactly like pppd's.
    assert_eq!(
        &frame[..14],
        &[
            0x7e, 0xff, 0x7d, 0x23, 0xc0, 0x21, 0x7d, 0x21, 0x7d, 0x21, 0x7d, 0x20, 0x7d, 0x34
        ]
    );
    let mut tap = Tap::new();
    tap.feed(&frame);
    let (proto, info) = &tap.seen[0];
    assert_eq!(*proto, lcp::PROTOCOL);
    let pkt = ControlPacket::parse(info).unwrap();
    assert_eq!(&pkt.data[..6], &[2, 6, 0, 0, 0, 0]); // ACCM 0
    assert_eq!((pkt.data[6], pkt.data[7]), (5, 6)); // magic
    assert_eq!(&pkt.data[12..], &[7, 2, 8, 2]); // PFC, ACFC
}

#[test]
fn pap_both_roles() {
    let mut p = Pair::new(
        dialer(Some(("alice", "wonderland"))),
        answer(PAP_ONLY, &[("alice", "wonderland")]),
    );
    p.run_until_up();
    assert!(p.b_events.contains(&Event::Authenticated {
        peer_name: Some("alice".into())
    }));
    assert!(
        p.a_events
            .contains(&Event::Authenticated { peer_name: None })
    );
    assert_eq!(p.a_to_b.codes(pap::PROTOCOL), [pap::AUTH_REQUEST]);
    assert_eq!(p.b_to_a.codes(pap::PROTOCOL), [pap::AUTH_ACK]);
    check_ip_both_ways(&mut p);
}

#[test]
fn chap_both_roles_with_rechallenges() {
    let mut b = answer(CHAP_ONLY, &[("alice", "wonderland")]);
    b.chap_rechallenge = Some(Duration::from_secs(20));
    let mut p = Pair::new(dialer(Some(("alice", "wonderland"))), b);
    p.run_until_up();
    assert!(p.b_events.contains(&Event::Authenticated {
        peer_name: Some("alice".into())
    }));
    // Keep the link running for a while: re-challenges pass, keepalive works.
    p.run(Duration::from_secs(65), |p| !p.a.is_up() || !p.b.is_up());
    assert!(
        p.a.is_up() && p.b.is_up(),
        "{:?} / {:?}",
        p.a_events,
        p.b_events
    );
    assert_eq!(p.b_to_a.codes(chap::PROTOCOL), [1, 3, 1, 3, 1, 3, 1, 3]);
    assert_eq!(p.a_to_b.codes(chap::PROTOCOL), [2, 2, 2, 2]);
    assert!(auth_failed(&p.a_events).is_none());
    check_ip_both_ways(&mut p);
}

/// The answer side allows both and asks for CHAP first (as pppd); a dialer
/// that only accepts PAP Naks with PAP and the answer side switches.
#[test]
fn chap_preferred_pap_fallback_by_nak() {
    let both = AuthMethods {
        pap: true,
        chap: true,
    };
    let mut p = Pair::new(
        dialer(Some(("alice", "wonderland"))),
        answer(both, &[("alice", "wonderland")]),
    );
    p.run_until_up();
    assert_eq!(
        p.b_to_a.codes(chap::PROTOCOL),
        [chap::CHALLENGE, chap::SUCCESS]
    );

    let mut a = dialer(Some(("alice", "wonderland")));
    a.accept_auth = PAP_ONLY;
    let mut p = Pair::new(a, answer(both, &[("alice", "wonderland")]));
    p.run_until_up();
    assert!(p.b_to_a.codes(chap::PROTOCOL).is_empty());
    assert_eq!(p.a_to_b.codes(pap::PROTOCOL), [pap::AUTH_REQUEST]);
    // The dialer's Configure-Nak carried the PAP suggestion.
    let nak = p
        .a_to_b
        .seen
        .iter()
        .find(|(proto, info)| *proto == lcp::PROTOCOL && info[0] == 3)
        .expect("a Configure-Nak");
    assert_eq!(&nak.1[4..], &[3, 4, 0xc0, 0x23]);
}

#[test]
fn wrong_pap_password_fails_cleanly_on_both_sides() {
    let mut p = Pair::new(
        dialer(Some(("alice", "guess"))),
        answer(PAP_ONLY, &[("alice", "wonderland")]),
    );
    p.run(Duration::from_secs(60), |p| p.a.is_dead() && p.b.is_dead());
    assert_eq!(
        auth_failed(&p.a_events),
        Some("peer rejected our PAP credentials: Login incorrect")
    );
    assert_eq!(
        auth_failed(&p.b_events),
        Some("peer sent a wrong PAP password for user \"alice\"")
    );
    assert!(p.a.is_dead() && p.b.is_dead());
    // Both ends say why in the Down reason itself (what the line driver acts on).
    for events in [&p.a_events, &p.b_events] {
        assert!(
            matches!(down(events), Some(DownReason::AuthFailed { .. })),
            "{events:?}"
        );
        assert_eq!(
            down(events).and_then(DownReason::auth_failure),
            auth_failed(events)
        );
    }
    assert!(
        p.elapsed() < Duration::from_secs(10),
        "took {:?}",
        p.elapsed()
    );
    assert!(!p.a_events.iter().any(|e| matches!(e, Event::Up { .. })));
}

#[test]
fn wrong_chap_secret_fails_cleanly_on_both_sides() {
    let mut p = Pair::new(
        dialer(Some(("alice", "guess"))),
        answer(CHAP_ONLY, &[("alice", "wonderland")]),
    );
    p.run(Duration::from_secs(60), |p| p.a.is_dead() && p.b.is_dead());
    assert_eq!(
        auth_failed(&p.a_events),
        Some("peer rejected our CHAP response: Access denied")
    );
    assert_eq!(
        auth_failed(&p.b_events),
        Some("peer \"alice\" failed the CHAP challenge (wrong secret)")
    );
    assert_eq!(
        down_reason(&p.b_events).as_deref(),
        Some("peer \"alice\" failed the CHAP challenge (wrong secret)")
    );
    assert!(p.a.is_dead() && p.b.is_dead());
}

#[test]
fn dialer_without_credentials_refuses_auth() {
    let mut p = Pair::new(dialer(None), answer(PAP_ONLY, &[("alice", "x")]));
    p.run(Duration::from_secs(60), |p| p.a.is_dead() && p.b.is_dead());
    assert_eq!(
        auth_failed(&p.b_events),
        Some("peer refused to authenticate with PAP or CHAP")
    );
    assert!(p.a.is_dead() && p.b.is_dead());
}

#[test]
fn close_terminates_both_sides_with_reasons() {
    let mut p = Pair::new(dialer(None), answer(AuthMethods::NONE, &[]));
    p.run_until_up();
    let now = p.now;
    p.a.close("user hung up", now);
    p.run(Duration::from_secs(30), |p| p.a.is_dead() && p.b.is_dead());
    assert_eq!(down_reason(&p.a_events).as_deref(), Some("user hung up"));
    assert_eq!(
        down_reason(&p.b_events).as_deref(),
        Some("peer closed the link: user hung up")
    );
    // IP goes down because we close, not because anything renegotiates.
    assert!(
        p.a_events.contains(&Event::NetworkDown {
            reason: "link closing".into()
        }),
        "{:?}",
        p.a_events
    );
    // The peer's Terminate-Request takes b to Terminate, not to renegotiation.
    let b_after_up: Vec<_> = p
        .b_events
        .iter()
        .skip_while(|e| !matches!(e, Event::Up { .. }))
        .filter(|e| matches!(e, Event::Phase(_) | Event::NetworkDown { .. }))
        .cloned()
        .collect();
    assert_eq!(
        b_after_up,
        [
            Event::Phase(Phase::Terminate),
            Event::NetworkDown {
                reason: "link closing".into()
            },
            Event::Phase(Phase::Dead)
        ]
    );
    // The answer side waits one restart interval in Stopping, as pppd does.
    assert!(p.elapsed() <= Duration::from_secs(3));
}

/// The driver reports a lost line: Down at once, nothing more to send, dead.
#[test]
fn lower_down_ends_the_session_at_once() {
    let mut p = Pair::new(dialer(None), answer(AuthMethods::NONE, &[]));
    p.run_until_up();
    p.a.send_ip(&ip_packet(1, 40)).unwrap();
    let now = p.now;
    p.a.lower_down("line closed: end of file", now);
    p.a_events.extend(std::iter::from_fn(|| p.a.poll_event()));
    assert!(p.a.is_dead());
    assert_eq!(p.a.poll_transmit(), None, "queued frames are dropped");
    assert_eq!(p.a.poll_timeout(), None);
    assert_eq!(
        down_reason(&p.a_events).as_deref(),
        Some("line closed: end of file")
    );
    assert!(
        matches!(p.a_events.last(), Some(Event::Down { .. })),
        "{:?}",
        p.a_events
    );
    assert!(
        p.a_events
            .iter()
            .any(|e| matches!(e, Event::NetworkDown { .. }))
    );
    // A pending close keeps the line's reason; a second call changes nothing.
    let mut s = Session::new(dialer(None), now);
    s.close("user request", now);
    s.lower_down("line closed: EIO", now);
    s.lower_down("again", now);
    let downs: Vec<_> = std::iter::from_fn(|| s.poll_event())
        .filter_map(|e| match e {
            Event::Down { reason } => Some(reason),
            _ => None,
        })
        .collect();
    assert_eq!(
        downs,
        [DownReason::LowerDown {
            reason: "line closed: EIO".into(),
            closing: Some(Box::new(DownReason::LocalClose {
                reason: "user request".into()
            })),
        }]
    );
    assert_eq!(downs[0].to_string(), "line closed: EIO");
}

#[test]
fn dead_peer_detected_by_echo() {
    let mut p = Pair::new(dialer(None), answer(AuthMethods::NONE, &[]));
    p.run_until_up();
    p.cut_b_to_a = true;
    let t0 = p.now;
    p.run(Duration::from_secs(30), |p| p.a.is_dead());
    assert_eq!(
        down(&p.a_events),
        Some(&DownReason::EchoTimeout { requests: 3 })
    );
    assert_eq!(
        down_reason(&p.a_events).as_deref(),
        Some("link dead: no reply to 3 LCP Echo-Requests")
    );
    // The first tick still sees the traffic from before the cut, then three
    // unanswered requests, then the verdict: at most (failure + 2) intervals.
    let took = p.now - t0;
    assert!(took <= Duration::from_secs(5), "took {took:?}");
}

#[test]
fn any_traffic_counts_as_proof_of_life() {
    let mut p = Pair::new(dialer(None), answer(AuthMethods::NONE, &[]));
    p.run_until_up();
    p.drop_lcp_from_b = true;
    // IP flows both ways every 500 ms for 20 s; no LCP from b gets through, so
    // a's Echo-Requests all go unanswered.
    for _ in 0..40 {
        p.b.send_ip(&ip_packet(1, 50)).unwrap();
        p.a.send_ip(&ip_packet(2, 50)).unwrap();
        p.run(Duration::from_millis(500), |_| false);
        while p.a.poll_ip().is_some() || p.b.poll_ip().is_some() {}
    }
    assert!(p.a.is_up(), "{:?}", p.a_events);
    // Without the stream, the link is declared dead quickly.
    p.run(Duration::from_secs(10), |p| p.a.is_dead());
    assert!(p.a.is_dead());
}

/// After a carrier loss a modem in command mode with echo on sends back every
/// byte we write: our own Echo-Requests (and our Replies to them) must not
/// count as proof of life, or the dead link is never noticed.
#[test]
fn looped_back_echoes_are_no_proof_of_life() {
    let mut p = Pair::new(dialer(None), answer(AuthMethods::NONE, &[]));
    p.run_until_up();
    let t0 = p.now;
    let mut now = t0;
    while !p.a.is_dead() && now - t0 < Duration::from_secs(30) {
        now = p.a.poll_timeout().expect("keepalive running").max(now);
        p.a.handle_timeout(now);
        // Everything a sends comes straight back to it, twice over.
        for _ in 0..2 {
            let back: Vec<u8> = std::iter::from_fn(|| p.a.poll_transmit())
                .flatten()
                .collect();
            p.a.handle_input(&back, now);
        }
    }
    p.a_events.extend(std::iter::from_fn(|| p.a.poll_event()));
    assert_eq!(
        down_reason(&p.a_events).as_deref(),
        Some("link dead: no reply to 3 LCP Echo-Requests")
    );
    assert!(now - t0 <= Duration::from_secs(5), "took {:?}", now - t0);
}

/// The same with IP traffic of our own (upstream tracking probes a dead line every second):
/// packets from our own address coming back are no proof of life either.
#[test]
fn looped_back_ip_is_no_proof_of_life() {
    let mut p = Pair::new(dialer(None), answer(AuthMethods::NONE, &[]));
    p.run_until_up();
    let Some(Event::Up { local, .. }) = up_event(&p.a_events).cloned() else {
        panic!("a is up")
    };
    let mut own = vec![0x45, 0, 0, 28, 0, 0, 0, 0, 64, 1, 0, 0];
    own.extend_from_slice(&local.octets());
    own.extend_from_slice(&[1, 1, 1, 1]);
    own.extend_from_slice(&[8, 0, 0, 0, 0, 1, 0, 1]);
    let t0 = p.now;
    let mut now = t0;
    let mut sent = 0;
    while !p.a.is_dead() && now - t0 < Duration::from_secs(30) {
        now = p.a.poll_timeout().expect("keepalive running").max(now);
        p.a.handle_timeout(now);
        if p.a.send_ip(&own).is_ok() {
            sent += 1;
        }
        let back: Vec<u8> = std::iter::from_fn(|| p.a.poll_transmit())
            .flatten()
            .collect();
        p.a.handle_input(&back, now);
        assert_eq!(p.a.poll_ip(), None, "our own packets are not delivered");
    }
    assert!(
        sent >= 3,
        "IP stayed up while the echoes went unanswered ({sent})"
    );
    p.a_events.extend(std::iter::from_fn(|| p.a.poll_event()));
    assert_eq!(
        down_reason(&p.a_events).as_deref(),
        Some("link dead: no reply to 3 LCP Echo-Requests")
    );
    assert!(now - t0 <= Duration::from_secs(5), "took {:?}", now - t0);
}

#[test]
fn unknown_protocols_are_protocol_rejected() {
    let mut p = Pair::new(dialer(None), answer(AuthMethods::NONE, &[]));
    p.run_until_up();
    for proto in [0x8057u16, 0x80fd, 0x0057] {
        let mut frame = Vec::new();
        Encoder::new(0).encode(&proto.to_be_bytes(), &[1, 1, 0, 4], &mut frame);
        p.b.handle_input(&frame, p.now);
        let out = p.b.poll_transmit().unwrap();
        let mut tap = Tap::new();
        tap.feed(&out);
        let (pr, info) = &tap.seen[0];
        assert_eq!(*pr, lcp::PROTOCOL);
        let pkt = ControlPacket::parse(info).unwrap();
        assert_eq!(pkt.code, 8);
        assert_eq!(&pkt.data[..2], &proto.to_be_bytes());
        assert_eq!(&pkt.data[2..], &[1, 1, 0, 4]);
    }
    assert_eq!(p.b.stats().rx_unknown_protocol, 3);
    assert!(p.b.is_up());
}

#[test]
fn send_ip_errors() {
    let mut p = Pair::new(dialer(None), answer(AuthMethods::NONE, &[]));
    assert_eq!(p.a.send_ip(&[0x45]), Err(SendError::NotUp));
    p.run_until_up();
    assert_eq!(
        p.a.send_ip(&vec![0; 1501]),
        Err(SendError::TooBig {
            len: 1501,
            mru: 1500
        })
    );
    for _ in 0..64 {
        p.a.send_ip(&[0x45; 20]).unwrap();
    }
    assert_eq!(p.a.send_ip(&[0x45; 20]), Err(SendError::QueueFull));
}

#[test]
fn lcp_frames_jump_ahead_of_ip() {
    let mut p = Pair::new(dialer(None), answer(AuthMethods::NONE, &[]));
    p.run_until_up();
    for _ in 0..10 {
        p.a.send_ip(&[0x45; 100]).unwrap();
    }
    // An echo request from the peer arrives: the reply goes out before queued IP.
    let mut frame = Vec::new();
    Encoder::new(0).encode(&[0xc0, 0x21], &[9, 77, 0, 8, 0, 0, 0, 0], &mut frame);
    p.a.handle_input(&frame, p.now);
    let first = p.a.poll_transmit().unwrap();
    let mut tap = Tap::new();
    tap.feed(&first);
    assert_eq!(tap.seen[0].0, lcp::PROTOCOL);
    assert_eq!(&tap.seen[0].1[..2], &[10, 77]);
}

#[test]
fn no_peer_gives_up_after_max_configure() {
    let now = Instant::now();
    let mut s = Session::new(dialer(None), now);
    let mut t = now;
    let mut sent = 0;
    // As the driver does: take what is queued before time moves on.
    while s.poll_transmit().is_some() {
        sent += 1;
    }
    while let Some(d) = s.poll_timeout() {
        t = d;
        s.handle_timeout(t);
        while s.poll_transmit().is_some() {
            sent += 1;
        }
    }
    let events: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
    assert_eq!(
        down_reason(&events).as_deref(),
        Some("LCP negotiation failed: no agreement after 10 Configure-Requests")
    );
    assert_eq!(t - now, Duration::from_secs(30));
    assert_eq!(sent, 10);
    assert!(s.is_dead());
}

#[test]
fn looped_back_line_is_detected() {
    let mut now = Instant::now();
    let mut s = Session::new(dialer(None), now);
    for _ in 0..200 {
        while let Some(f) = s.poll_transmit() {
            s.handle_input(&f, now);
        }
        if s.is_dead() {
            break;
        }
        match s.poll_timeout() {
            Some(t) => {
                now = t;
                s.handle_timeout(now);
            }
            None => break,
        }
    }
    let events: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
    assert_eq!(
        down_reason(&events).as_deref(),
        Some("serial line is looped back")
    );
}

#[test]
fn garbage_before_and_between_frames_is_survived() {
    let mut p = Pair::new(dialer(None), answer(AuthMethods::NONE, &[]));
    p.a.handle_input(b"\r\nCONNECT 115200\r\n~~~\x7d\x7e garbage \x7e", p.now);
    p.run_until_up();
    assert!(p.a.stats().rx_aborted + p.a.stats().rx_bad_fcs >= 1);
}

// ----- property tests -----

/// Deterministic per-case randomness for the lossy channel.
struct Lossy {
    rng: super::Rng,
    loss: u32,
    dup: u32,
    corrupt: u32,
    /// In-flight frames: (delivery time, bytes).
    a_to_b: Vec<(Instant, Vec<u8>)>,
    b_to_a: Vec<(Instant, Vec<u8>)>,
}

impl Lossy {
    fn chance(&mut self, percent: u32) -> bool {
        (self.rng.next_u32() % 100) < percent
    }

    fn send(&mut self, to_b: bool, mut frame: Vec<u8>, now: Instant) {
        if self.chance(self.loss) {
            return;
        }
        if self.chance(self.corrupt) && !frame.is_empty() {
            let i = self.rng.next_u32() as usize % frame.len();
            frame[i] ^= 1 << (self.rng.next_u32() % 8);
        }
        let copies = if self.chance(self.dup) { 2 } else { 1 };
        for _ in 0..copies {
            // Random latency reorders frames.
            let delay = Duration::from_millis(5 + u64::from(self.rng.next_u32() % 200));
            let q = if to_b {
                &mut self.a_to_b
            } else {
                &mut self.b_to_a
            };
            q.push((now + delay, frame.clone()));
        }
    }

    fn next_delivery(&self) -> Option<Instant> {
        self.a_to_b
            .iter()
            .chain(&self.b_to_a)
            .map(|(t, _)| *t)
            .min()
    }

    fn due(q: &mut Vec<(Instant, Vec<u8>)>, now: Instant) -> Vec<Vec<u8>> {
        q.sort_by_key(|(t, _)| *t);
        let n = q.iter().take_while(|(t, _)| *t <= now).count();
        q.drain(..n).map(|(_, f)| f).collect()
    }
}

#[derive(Debug, Clone, Copy)]
enum AuthCase {
    None,
    Pap,
    Chap,
    WrongPassword,
}

fn configs(case: AuthCase, seed: u64) -> (Config, Config) {
    let (creds, require) = match case {
        AuthCase::None => (None, AuthMethods::NONE),
        AuthCase::Pap => (Some(("alice", "pw")), PAP_ONLY),
        AuthCase::Chap => (Some(("alice", "pw")), CHAP_ONLY),
        AuthCase::WrongPassword => (Some(("alice", "nope")), CHAP_ONLY),
    };
    let mut a = dialer(creds);
    let mut b = answer(require, &[("alice", "pw")]);
    b.chap_rechallenge = Some(Duration::from_secs(10));
    a.seed = seed;
    b.seed = seed ^ 0xdead_beef;
    (a, b)
}

fn auth_case() -> impl Strategy<Value = AuthCase> {
    prop_oneof![
        Just(AuthCase::None),
        Just(AuthCase::Pap),
        Just(AuthCase::Chap),
        Just(AuthCase::WrongPassword)
    ]
}

/// One run of Dialer vs Answer through a [`Lossy`] channel (see the proptest).
fn simulate_lossy(
    seed: u64,
    loss: u32,
    dup: u32,
    corrupt: u32,
    case: AuthCase,
) -> Result<(), TestCaseError> {
    let (ca, cb) = configs(case, seed);
    let start = Instant::now();
    let mut now = start;
    let mut a = Session::new(ca, now);
    let mut b = Session::new(cb, now);
    let mut ch = Lossy {
        rng: super::Rng::new(seed),
        loss,
        dup,
        corrupt,
        a_to_b: Vec::new(),
        b_to_a: Vec::new(),
    };
    let limit = start + Duration::from_secs(600);
    let mut steps = 0u32;
    let mut ups = [false, false];
    let mut both_up_since: Option<Instant> = None;
    while now < limit {
        steps += 1;
        prop_assert!(steps < 500_000, "no progress");
        while let Some(f) = a.poll_transmit() {
            ch.send(true, f, now);
        }
        while let Some(f) = b.poll_transmit() {
            ch.send(false, f, now);
        }
        for f in Lossy::due(&mut ch.a_to_b, now) {
            b.handle_input(&f, now);
        }
        for f in Lossy::due(&mut ch.b_to_a, now) {
            a.handle_input(&f, now);
        }
        for (i, s) in [&mut a, &mut b].into_iter().enumerate() {
            while let Some(e) = s.poll_event() {
                if matches!(e, Event::Up { .. }) {
                    ups[i] = true;
                    prop_assert!(
                        !matches!(case, AuthCase::WrongPassword),
                        "wrong password got Up"
                    );
                }
            }
        }
        if a.is_dead() && b.is_dead() {
            break;
        }
        // Once both are up, keep them running a while (keepalive, re-challenges).
        if a.is_up() && b.is_up() {
            let since = *both_up_since.get_or_insert(now);
            if now - since > Duration::from_secs(30) {
                break;
            }
        } else {
            both_up_since = None;
        }
        let next = [a.poll_timeout(), b.poll_timeout(), ch.next_delivery()]
            .into_iter()
            .flatten()
            .min();
        match next {
            Some(t) => {
                now = now.max(t);
                a.handle_timeout(now);
                b.handle_timeout(now);
            }
            None => break,
        }
    }
    // Never stuck in between: each end is up or has given up.
    prop_assert!(
        a.is_dead() || a.is_up(),
        "dialer stuck in {:?} (lcp {:?}, ipcp {:?})",
        a.phase(),
        a.lcp_state(),
        a.ipcp_state()
    );
    prop_assert!(
        b.is_dead() || b.is_up(),
        "answer stuck in {:?} (lcp {:?}, ipcp {:?})",
        b.phase(),
        b.lcp_state(),
        b.ipcp_state()
    );
    // A dead session asks for no more timers.
    prop_assert!(!a.is_dead() || a.poll_timeout().is_none());
    // Without loss or corruption, the right credentials always get through.
    if loss == 0 && corrupt == 0 && !matches!(case, AuthCase::WrongPassword) {
        prop_assert!(
            ups == [true, true],
            "clean channel (dup {}%) did not reach Up",
            dup
        );
    }
    Ok(())
}

/// Cases the proptest once found (stale PAP Acks and Configure-Requests
/// duplicated across LCP renegotiations). They were found with the core's
/// earlier SplitMix64 generator; with fastrand the same seeds replay other
/// (still fixed) runs, kept as deterministic cases next to the proptest.
#[test]
fn lossy_channel_regressions() {
    for (seed, dup) in [(8514056233526867077, 26), (17006082119639691812, 27)] {
        simulate_lossy(seed, 0, dup, 0, AuthCase::Pap).unwrap();
    }
}

proptest! {
    // Failures are turned into explicit regression tests instead of files.
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    /// Under loss, duplication, corruption and reordering, both ends end up Up or
    /// Dead within bounded simulated time: never stuck in between, never a panic.
    #[test]
    fn lossy_channel_reaches_up_or_fails_cleanly(
        seed in any::<u64>(),
        loss in prop_oneof![Just(0u32), 0u32..40],
        dup in 0u32..30,
        corrupt in prop_oneof![Just(0u32), 0u32..30],
        case in auth_case(),
    ) {
        simulate_lossy(seed, loss, dup, corrupt, case)?;
    }

    /// Arbitrary bytes never panic the session, in any phase.
    #[test]
    fn session_survives_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..3000), up in any::<bool>()) {
        let mut p = Pair::new(dialer(Some(("alice", "pw"))), answer(CHAP_ONLY, &[("alice", "pw")]));
        if up {
            p.run_until_up();
        }
        for chunk in data.chunks(97) {
            p.a.handle_input(chunk, p.now);
            p.b.handle_input(chunk, p.now);
        }
        p.exchange();
        let _ = p.a.poll_timeout();
    }

    /// Well-framed packets with random contents reach every parser: no panic.
    #[test]
    fn session_survives_random_valid_frames(
        frames in proptest::collection::vec(
            (prop_oneof![Just(0xc021u16), Just(0xc023), Just(0xc223), Just(0x8021), Just(0x0021), Just(0x8057), any::<u16>()],
             any::<u8>(), any::<u8>(), proptest::option::of(any::<u16>()),
             proptest::collection::vec(any::<u8>(), 0..64)),
            1..40),
        up in any::<bool>(),
    ) {
        let mut p = Pair::new(dialer(Some(("alice", "pw"))), answer(PAP_ONLY, &[("alice", "pw")]));
        if up {
            p.run_until_up();
        }
        for (proto, code, id, len, data) in frames {
            let mut pkt = vec![code, id];
            let l = len.unwrap_or((data.len() + 4) as u16);
            pkt.extend_from_slice(&l.to_be_bytes());
            pkt.extend_from_slice(&data);
            let mut frame = Vec::new();
            Encoder::new(0).encode(&[0xff, 0x03, (proto >> 8) as u8, proto as u8], &pkt, &mut frame);
            p.a.handle_input(&frame, p.now);
            p.b.handle_input(&frame, p.now);
            p.exchange();
        }
        p.run(Duration::from_secs(120), |p| p.a.is_dead() && p.b.is_dead());
    }
}

#[test]
fn secrets_do_not_leak_into_debug_output() {
    for require in [PAP_ONLY, CHAP_ONLY] {
        let mut p = Pair::new(
            dialer(Some(("alice", "hunter2-secret"))),
            answer(require, &[("alice", "hunter2-secret")]),
        );
        // Look while the PAP request (with the password) sits in the queue too.
        p.run(Duration::from_secs(10), |p| {
            p.a.phase() == Phase::Authenticate
        });
        let early = format!("{:?} {:?}", p.a, p.b);
        p.run_until_up();
        let dbg = format!(
            "{early} {:?} {:?} {:?}",
            p.a,
            p.b,
            Secrets::new().with("x", "hunter2")
        );
        assert!(!dbg.contains("hunter2"), "secret in Debug output");
        // Nor as the list of byte values a derived Debug of a Vec<u8> prints.
        let as_bytes = format!("{:?}", b"hunter2".to_vec());
        assert!(!dbg.contains(&as_bytes[1..as_bytes.len() - 1]));
    }
}

#[test]
fn server_without_dns_rejects_dns_options() {
    let mut b = answer(AuthMethods::NONE, &[]);
    b.ipcp.dns = [None, None];
    let mut p = Pair::new(dialer(None), b);
    p.run_until_up();
    let Some(Event::Up { dns, local, .. }) = up_event(&p.a_events) else {
        panic!()
    };
    assert!(dns.is_empty());
    assert_eq!(*local, REMOTE);
    // The answer side sent exactly one Configure-Reject (the two DNS options).
    assert_eq!(
        p.b_to_a
            .codes(ipcp::PROTOCOL)
            .iter()
            .filter(|&&c| c == 4)
            .count(),
        1
    );
}

/// Like pppd: the server Naks a wrong static address Max-Failure (5) times,
/// then Configure-Rejects it; the dialer drops the option and comes up with
/// its configured address (pppd's ipcp_up does the same).
#[test]
fn static_address_conflict_ends_like_pppd() {
    let mut a = dialer(None);
    let static_ip = Ipv4Addr::new(172, 16, 0, 9);
    a.ipcp.local = static_ip; // an address the server will not give
    let mut p = Pair::new(a, answer(AuthMethods::NONE, &[]));
    p.run_until_up();
    let Some(Event::Up { local, .. }) = up_event(&p.a_events) else {
        panic!()
    };
    assert_eq!(*local, static_ip);
    let codes = p.b_to_a.codes(ipcp::PROTOCOL);
    assert_eq!(codes.iter().filter(|&&c| c == 3).count(), 5, "{codes:?}");
    assert_eq!(codes.iter().filter(|&&c| c == 4).count(), 1, "{codes:?}");
}

/// The peer restarts PPP from scratch while we are up: its Configure-Request
/// takes LCP down and renegotiates (RFC 1661 RCR in Opened), IP comes back.
#[test]
fn peer_restart_renegotiates_and_comes_back_up() {
    let mut p = Pair::new(
        dialer(Some(("alice", "pw"))),
        answer(CHAP_ONLY, &[("alice", "pw")]),
    );
    p.run_until_up();
    let mut cfg = answer(CHAP_ONLY, &[("alice", "pw")]);
    cfg.seed = 99;
    p.b = Session::new(cfg, p.now);
    p.b_events.clear();
    p.run(Duration::from_secs(60), |p| p.a.is_up() && p.b.is_up());
    assert!(p.a.is_up() && p.b.is_up(), "{:?}", p.a_events);
    let tail: Vec<_> = p
        .a_events
        .iter()
        .skip_while(|e| !matches!(e, Event::NetworkDown { .. }))
        .filter(|e| {
            matches!(
                e,
                Event::NetworkDown { .. }
                    | Event::Up { .. }
                    | Event::Authenticated { .. }
                    | Event::LinkUp { .. }
            )
        })
        .map(std::mem::discriminant)
        .collect();
    assert_eq!(tail.len(), 4, "{:?}", p.a_events);
    assert!(
        p.a_events.contains(&Event::NetworkDown {
            reason: "LCP renegotiating".into()
        }),
        "{:?}",
        p.a_events
    );
    check_ip_both_ways(&mut p);
}

// ----- hostile peers (hardening items 4 and 6) -----

/// One LCP packet as a frame on the wire.
fn lcp_frame(code: u8, id: u8, data: &[u8]) -> Vec<u8> {
    let pkt = ControlPacket::to_vec(code, id, data);
    let mut frame = Vec::new();
    Encoder::new(ACCM_ALL_BITS).encode(&[0xc0, 0x21], &pkt, &mut frame);
    frame
}

const ACCM_ALL_BITS: u32 = 0xffff_ffff;

fn events_of(s: &mut Session) -> Vec<Event> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

/// ITEM 4: a peer floods Echo-Requests and frames of unknown protocols and
/// never reads what we write. Our replies used to pile up without limit; now
/// the control queue stays bounded, the drops are counted, and once the line
/// took nothing for echo_interval × echo_failure (3 s) the session ends.
#[test]
fn flood_while_not_reading_is_bounded_then_ends() {
    let mut p = Pair::new(dialer(None), answer(AuthMethods::NONE, &[]));
    p.run_until_up();
    let mut a = p.a;
    let t0 = p.now;
    let cap = Config::dialer(None).max_control_queue;
    let mut echo = Vec::new();
    Encoder::new(0).encode(
        &[0xc0, 0x21],
        &[9, 1, 0, 40, 1, 2, 3, 4]
            .iter()
            .copied()
            .chain([0x55; 32])
            .collect::<Vec<_>>(),
        &mut echo,
    );
    let mut unknown = Vec::new();
    Encoder::new(0).encode(
        &[0x80, 0x57],
        &[1, 1, 0, 200]
            .iter()
            .copied()
            .chain([0xaa; 196])
            .collect::<Vec<_>>(),
        &mut unknown,
    );
    let mut now = t0;
    let mut max_queued = 0;
    let mut events = Vec::new();
    // 1000 frames every 10 ms (far beyond what a modem carries), nothing read back.
    while !a.is_dead() && now - t0 < Duration::from_secs(10) {
        for i in 0..1000 {
            a.handle_input(if i % 2 == 0 { &echo } else { &unknown }, now);
        }
        max_queued = max_queued.max(a.queued_control_bytes());
        if a.poll_timeout().is_some_and(|d| d <= now) {
            a.handle_timeout(now);
        }
        events.extend(events_of(&mut a));
        now += Duration::from_millis(10);
    }
    assert!(
        max_queued <= 2 * cap + 1600,
        "control queue grew to {max_queued}"
    );
    assert!(a.stats().tx_control_dropped > 100_000, "{:?}", a.stats());
    let reason = down_reason(&events).expect("session ended");
    assert!(
        reason.starts_with("peer stopped reading for 3 s"),
        "{reason}"
    );
    let took = now - t0;
    assert!(took <= Duration::from_millis(3100), "took {took:?}");
    assert_eq!(a.queued_control_bytes(), 0);
}

/// A peer that reads, however slowly, is not "stopped": a driver taking one
/// frame a second keeps the session alive through the same flood.
#[test]
fn slow_reader_is_not_a_stalled_reader() {
    let mut p = Pair::new(dialer(None), answer(AuthMethods::NONE, &[]));
    p.run_until_up();
    let mut a = p.a;
    let mut now = p.now;
    let echo = lcp_frame(9, 1, &[1, 2, 3, 4]);
    for tick in 0..1000u32 {
        a.handle_input(&echo, now);
        if tick % 100 == 0 {
            a.poll_transmit();
        }
        if a.poll_timeout().is_some_and(|d| d <= now) {
            a.handle_timeout(now);
        }
        now += Duration::from_millis(10);
    }
    assert!(a.is_up(), "{:?}", events_of(&mut a));
}

/// ITEM 6: the peer acknowledges our Configure-Request but never sends its own.
/// RCA re-initialises the restart counter, so this used to go on forever.
#[test]
fn ack_but_never_request_ends_at_the_establish_deadline() {
    let t0 = Instant::now();
    let mut s = Session::new(dialer(None), t0);
    let mut now = t0;
    let mut events = Vec::new();
    while !s.is_dead() && now - t0 < Duration::from_secs(120) {
        while let Some(f) = s.poll_transmit() {
            let mut tap = Tap::new();
            tap.feed(&f);
            for (proto, info) in tap.seen {
                if proto == lcp::PROTOCOL && info[0] == 1 {
                    let pkt = ControlPacket::parse(&info).unwrap();
                    s.handle_input(&lcp_frame(2, pkt.id, pkt.data), now);
                }
            }
        }
        events.extend(events_of(&mut s));
        match s.poll_timeout() {
            Some(d) => {
                now = d.max(now);
                s.handle_timeout(now);
            }
            None => break,
        }
    }
    events.extend(events_of(&mut s));
    assert_eq!(
        down_reason(&events).as_deref(),
        Some(
            "PPP not up after 30 s (stuck in LCP: peer acknowledged our options but never sent its own)"
        )
    );
    assert_eq!(now - t0, Duration::from_secs(30));
}

/// ITEM 6: an LCP Configure-Request storm ends, bounded by the automaton
/// (3 × Max-Configure requests without agreement), long before the deadline.
#[test]
fn configure_request_storm_ends_with_a_clear_reason() {
    let t0 = Instant::now();
    let mut s = Session::new(dialer(None), t0);
    let mut answers = 0;
    let mut events = Vec::new();
    for i in 0..100_000u32 {
        // A valid request (MRU 1500) we acknowledge; ours is never answered.
        s.handle_input(&lcp_frame(1, i as u8, &[1, 4, 0x05, 0xdc]), t0);
        while s.poll_transmit().is_some() {
            answers += 1;
        }
        events.extend(events_of(&mut s));
        if s.is_dead() {
            break;
        }
    }
    assert!(s.is_dead());
    assert_eq!(
        down_reason(&events).as_deref(),
        Some("LCP negotiation failed: peer sent 31 Configure-Requests without agreement")
    );
    assert!(answers <= 40, "{answers} frames sent");
}

/// The establish deadline names the phase: a peer that never answers at all.
#[test]
fn establish_deadline_names_a_silent_peer() {
    let t0 = Instant::now();
    let mut cfg = dialer(None);
    cfg.establish_timeout = Some(Duration::from_secs(10));
    let mut s = Session::new(cfg, t0);
    let mut now = t0;
    while s.poll_transmit().is_some() {}
    while let Some(d) = s.poll_timeout() {
        now = d;
        s.handle_timeout(now);
        while s.poll_transmit().is_some() {}
    }
    let events = events_of(&mut s);
    assert_eq!(
        down_reason(&events).as_deref(),
        Some("PPP not up after 10 s (stuck in LCP: no answer from the peer)")
    );
    assert_eq!(now - t0, Duration::from_secs(10));
}

/// A session that came up has no establish deadline any more.
#[test]
fn establish_deadline_is_off_once_up() {
    let mut p = Pair::new(dialer(None), answer(AuthMethods::NONE, &[]));
    p.run_until_up();
    p.run(Duration::from_secs(120), |p| p.a.is_dead() || p.b.is_dead());
    assert!(p.a.is_up() && p.b.is_up(), "{:?}", p.a_events);
}

// ----- addresses the peer hands out (hardening item 10) -----

/// The dialer against an ISP that assigns `assign` to it.
fn bad_assignment(assign: Ipv4Addr, local_addrs: &[Ipv4Addr]) -> Pair {
    let mut d = dialer(None);
    d.ipcp.local_addrs = local_addrs.to_vec();
    let mut isp = Config::answer(LOCAL, assign, &[DNS1]);
    isp.seed = 2;
    let mut p = Pair::new(d, isp);
    p.run(Duration::from_secs(60), |p| p.a.is_dead());
    p
}

#[test]
fn unusable_assigned_addresses_are_refused() {
    for (addr, what) in [
        (Ipv4Addr::new(127, 0, 0, 2), "loopback"),
        (Ipv4Addr::new(255, 255, 255, 255), "broadcast"),
        (Ipv4Addr::new(224, 0, 0, 1), "multicast"),
        (Ipv4Addr::new(240, 1, 2, 3), "reserved, class E"),
        (
            Ipv4Addr::new(192, 168, 1, 1),
            "an address of another interface of this host",
        ),
    ] {
        let p = bad_assignment(addr, &[Ipv4Addr::new(192, 168, 1, 1)]);
        assert!(up_event(&p.a_events).is_none(), "{addr}: {:?}", p.a_events);
        assert_eq!(
            down_reason(&p.a_events).as_deref(),
            Some(format!("peer assigned us {addr} ({what}); refusing").as_str()),
            "{addr}"
        );
        // Refused by Configure-Request with 0.0.0.0 again, then a clean Terminate.
        assert!(
            p.elapsed() < Duration::from_secs(10),
            "{addr}: {:?}",
            p.elapsed()
        );
    }
}

#[test]
fn peer_claiming_a_lan_address_is_refused() {
    let mut d = dialer(None);
    // The ISP's own address (LOCAL) is a LAN host's here.
    d.ipcp.local_addrs = vec![Ipv4Addr::new(192, 168, 1, 1), LOCAL];
    let mut p = Pair::new(d, answer(AuthMethods::NONE, &[]));
    p.run(Duration::from_secs(60), |p| p.a.is_dead());
    assert!(up_event(&p.a_events).is_none(), "{:?}", p.a_events);
    assert_eq!(
        down_reason(&p.a_events).as_deref(),
        Some(
            "peer claims address 10.0.0.1 (an address of another interface of this host) for itself; refusing"
        )
    );
}

#[test]
fn usable_addresses_still_come_up() {
    // Link-local and ordinary private addresses are fine; other local ones do not matter.
    for addr in [Ipv4Addr::new(169, 254, 3, 4), Ipv4Addr::new(100, 64, 0, 9)] {
        let mut d = dialer(None);
        d.ipcp.local_addrs = vec![Ipv4Addr::new(192, 168, 1, 1)];
        let mut isp = Config::answer(LOCAL, addr, &[DNS1]);
        isp.seed = 2;
        let mut p = Pair::new(d, isp);
        p.run_until_up();
        let Some(Event::Up { local, .. }) = up_event(&p.a_events) else {
            panic!("no Up")
        };
        assert_eq!(*local, addr);
    }
}

/// Counts the lines a tracing subscriber writes.
#[derive(Clone, Default)]
struct LineCounter(std::sync::Arc<std::sync::Mutex<(usize, usize)>>);

impl std::io::Write for LineCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut g = self.0.lock().unwrap();
        g.0 += buf.iter().filter(|&&b| b == b'\n').count();
        g.1 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// ITEM 6 (logs): a flood of LCP packets used to write debug lines per packet (525 MB
/// in 40 s); now each kind gets a few lines a second plus one summary line.
#[test]
fn a_flood_does_not_flood_the_debug_log() {
    let mut p = Pair::new(dialer(None), answer(AuthMethods::NONE, &[]));
    p.run_until_up();
    let mut a = p.a;
    let counter = LineCounter::default();
    let writer = counter.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .finish();
    let echo = lcp_frame(9, 1, &[1, 2, 3, 4]);
    let mut unknown = Vec::new();
    Encoder::new(0).encode(&[0x80, 0x57], &[1, 1, 0, 4], &mut unknown);
    let mut now = p.now;
    tracing::subscriber::with_default(subscriber, || {
        // 20 000 frames over 2 s, read back by nobody in particular.
        for i in 0..20_000u32 {
            a.handle_input(if i % 2 == 0 { &echo } else { &unknown }, now);
            while a.poll_transmit().is_some() {}
            if i % 2000 == 1999 {
                now += Duration::from_millis(200);
            }
        }
        a.close("done", now);
        a.lower_down("done", now);
    });
    let (lines, bytes) = *counter.0.lock().unwrap();
    assert!(lines < 200, "{lines} log lines, {bytes} bytes");
}

/// Keeps what a tracing subscriber writes.
#[derive(Clone, Default)]
struct LogText(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogText {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The core logs under the targets it had as the main crate's module `ppp`, so log lines read
/// the same and a filter such as `eqlplus_dialer::ppp=debug` still selects them.
#[test]
fn logs_keep_the_main_crates_targets() {
    let text = LogText::default();
    let writer = text.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("warn,eqlplus_dialer::ppp=debug")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let mut p = Pair::new(
            dialer(Some(("alice", "pw"))),
            answer(PAP_ONLY, &[("alice", "pw")]),
        );
        p.run_until_up();
    });
    let text = String::from_utf8(text.0.lock().unwrap().clone()).unwrap();
    for target in ["session", "fsm", "pap"] {
        assert!(
            text.contains(&format!(" eqlplus_dialer::ppp::{target}: ")),
            "{target}: {text}"
        );
    }
    assert!(!text.contains("eqlplus_ppp"), "{text}");
}

mod multilink;
mod unframed;
