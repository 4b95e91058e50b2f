//! `Framing::Unframed`: a session that reads and writes whole frames, as over a Linux PPP
//! channel, against an HDLC session and against another unframed one. Between an unframed
//! session and the line sits a model of the kernel's `ppp_async`, programmed from
//! `Session::link_parameters` as the driver will program the real one.

use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::{
    AuthMethods, CHAP_ONLY, DNS1, DNS2, LOCAL, PAP_ONLY, REMOTE, answer, dialer, ip_packet,
};
use crate::hdlc::{ACCM_ALL, Decoder, Encoder, Header};
use crate::mp::{EndpointDiscriminator, MultilinkConfig};
use crate::session::{Config, Event, Framing, LinkParameters, Session};
use crate::{ipcp, lcp};

/// Codes of LCP packets that `ppp_async` always sends with the all-ones ACCM and an
/// uncompressed header (Configure-Request … Code-Reject).
fn lcp_negotiation(protocol: u16, info: &[u8]) -> bool {
    protocol == lcp::PROTOCOL && info.first().is_some_and(|c| (1..=7).contains(c))
}

/// One end of the link: a session, and for an unframed one the kernel's framing.
struct End {
    s: Session,
    events: Vec<Event>,
    /// The model `ppp_async`'s receive side (unframed ends only).
    dec: Decoder,
    /// Every frame the session handed out, as `(protocol, info)`.
    sent: Vec<(u16, Vec<u8>)>,
    /// Whole frames given to `handle_frame_input`, and their bytes.
    delivered: (u64, u64),
}

impl End {
    fn new(cfg: Config, now: Instant) -> End {
        End {
            s: Session::new(cfg, now),
            events: Vec::new(),
            dec: Decoder::new(1500),
            sent: Vec::new(),
            delivered: (0, 0),
        }
    }

    fn unframed(&self) -> bool {
        self.s.framing() == Framing::Unframed
    }

    fn params(&self) -> LinkParameters {
        self.s.link_parameters().unwrap_or_default()
    }

    /// The session's next frame as line bytes (through `ppp_async` for an unframed end).
    fn transmit(&mut self) -> Option<Vec<u8>> {
        let frame = self.s.poll_transmit()?;
        if !self.unframed() {
            let mut dec = Decoder::new(65535);
            dec.set_accm(0);
            let (_, f) = dec.push(&frame);
            let (h, info) = Header::parse(f.expect("one whole HDLC frame")).expect("a header");
            self.sent.push((h.protocol, info.to_vec()));
            return Some(frame);
        }
        // Exactly `protocol (2 bytes) + info`: no address/control, no compression.
        assert!(frame.len() >= 2, "runt frame {frame:02x?}");
        let protocol = u16::from_be_bytes([frame[0], frame[1]]);
        assert_ne!(frame[0], 0xff, "address field in an unframed frame");
        assert_eq!(protocol & 0x0101, 0x0001, "bad protocol {protocol:#06x}");
        let info = &frame[2..];
        self.sent.push((protocol, info.to_vec()));
        // ppp_async_encode: LCP negotiation with all-ones and uncompressed, the rest as
        // PPPIOCSASYNCMAP and PPPIOCSFLAGS (SC_COMP_PROT, SC_COMP_AC) say.
        let p = self.params();
        let islcp = lcp_negotiation(protocol, info);
        let accm = if islcp { ACCM_ALL } else { p.tx_accm };
        let (h, n) = Header { protocol }.emit(p.tx_acfc && !islcp, p.tx_pfc && !islcp);
        let mut out = Vec::new();
        Encoder::new(accm).encode(&h[..n], info, &mut out);
        Some(out)
    }

    /// Line bytes from the other end.
    fn receive(&mut self, mut bytes: &[u8], now: Instant) {
        if !self.unframed() {
            self.s.handle_input(bytes, now);
            return;
        }
        while !bytes.is_empty() {
            // PPPIOCSRASYNCMAP and PPPIOCSMRU, as the driver sets them after LinkUp.
            let p = self.params();
            self.dec.set_accm(p.rx_accm);
            self.dec.set_mru(usize::from(p.mru));
            let (used, frame) = self.dec.push(bytes);
            bytes = &bytes[used..];
            let Some(frame) = frame else { continue };
            // ppp_async's process_input_packet: address/control off, the protocol field
            // always two bytes for the reader of the channel.
            let frame = match frame {
                [0xff, 0x03, rest @ ..] => rest,
                [0xff, ..] => continue,
                rest => rest,
            };
            let mut whole = Vec::with_capacity(frame.len() + 1);
            if frame.first().is_some_and(|b| b & 1 == 1) {
                whole.push(0);
            }
            whole.extend_from_slice(frame);
            self.delivered.0 += 1;
            self.delivered.1 += whole.len() as u64;
            self.s.handle_frame_input(&whole, now);
        }
    }

    fn codes(&self, protocol: u16) -> Vec<u8> {
        self.sent
            .iter()
            .filter(|(p, _)| *p == protocol)
            .filter_map(|(_, i)| i.first().copied())
            .collect()
    }

    fn up(&self) -> Option<&Event> {
        self.events.iter().find(|e| matches!(e, Event::Up { .. }))
    }

    fn down(&self) -> Option<String> {
        self.events.iter().find_map(|e| match e {
            Event::Down { reason } => Some(reason.to_string()),
            _ => None,
        })
    }
}

struct Link {
    a: End,
    b: End,
    now: Instant,
}

impl Link {
    fn new(a: Config, b: Config) -> Link {
        let now = Instant::now();
        Link {
            a: End::new(a, now),
            b: End::new(b, now),
            now,
        }
    }

    fn exchange(&mut self) -> bool {
        let mut moved = false;
        while let Some(bytes) = self.a.transmit() {
            moved = true;
            self.b.receive(&bytes, self.now);
        }
        while let Some(bytes) = self.b.transmit() {
            moved = true;
            self.a.receive(&bytes, self.now);
        }
        for end in [&mut self.a, &mut self.b] {
            end.events.extend(std::iter::from_fn(|| end.s.poll_event()));
        }
        moved
    }

    fn run(&mut self, limit: Duration, mut done: impl FnMut(&Link) -> bool) {
        let end = self.now + limit;
        for _ in 0..100_000 {
            let moved = self.exchange();
            if done(self) {
                return;
            }
            if moved {
                continue;
            }
            let next = [self.a.s.poll_timeout(), self.b.s.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    self.a.s.handle_timeout(self.now);
                    self.b.s.handle_timeout(self.now);
                }
                _ => {
                    self.now = end;
                    return;
                }
            }
        }
        panic!("no progress");
    }

    fn run_until_up(&mut self) {
        self.run(Duration::from_secs(60), |l| l.a.s.is_up() && l.b.s.is_up());
        assert!(
            self.a.s.is_up() && self.b.s.is_up(),
            "not up: a={:?} b={:?}",
            self.a.events,
            self.b.events
        );
    }

    fn check_ip_both_ways(&mut self) {
        let pkts: Vec<Vec<u8>> = (1..=5)
            .map(|i| ip_packet(i, 200 * usize::from(i)))
            .collect();
        for pkt in &pkts {
            self.a.s.send_ip(pkt).unwrap();
            self.b.s.send_ip(pkt).unwrap();
        }
        self.exchange();
        let got_b: Vec<_> = std::iter::from_fn(|| self.b.s.poll_ip()).collect();
        let got_a: Vec<_> = std::iter::from_fn(|| self.a.s.poll_ip()).collect();
        assert_eq!(got_b, pkts);
        assert_eq!(got_a, pkts);
    }

    /// A quiet line for a while: both ends keep the link alive with echoes.
    fn check_echo(&mut self) {
        let until = self.now + Duration::from_secs(10);
        self.run(Duration::from_secs(10), |l| l.now >= until);
        assert!(self.a.s.is_up() && self.b.s.is_up());
        // Adaptive echo: one end's Echo-Request is the other's proof of life, so maybe
        // only one asks; every ask is answered.
        let asked = |e: &End| e.codes(lcp::PROTOCOL).contains(&9);
        let answered = |e: &End| e.codes(lcp::PROTOCOL).contains(&10);
        assert!(asked(&self.a) || asked(&self.b), "no Echo-Request");
        assert!(
            !asked(&self.a) || answered(&self.b),
            "a's Echo-Requests unanswered"
        );
        assert!(
            !asked(&self.b) || answered(&self.a),
            "b's Echo-Requests unanswered"
        );
    }

    fn close(&mut self) {
        self.a.s.close("bye", self.now);
        self.run(Duration::from_secs(30), |l| {
            l.a.s.is_dead() && l.b.s.is_dead()
        });
        let (a, b) = (self.a.down(), self.b.down());
        assert_eq!(a.as_deref(), Some("bye"), "{:?}", self.a.events);
        assert!(
            b.as_deref().is_some_and(|r| r.contains("bye")),
            "peer's down reason: {b:?}"
        );
        // Terminate-Request and Terminate-Ack went across.
        assert!(self.a.codes(lcp::PROTOCOL).contains(&5));
        assert!(self.b.codes(lcp::PROTOCOL).contains(&6));
    }
}

fn unframed(mut c: Config) -> Config {
    c.framing = Framing::Unframed;
    c
}

/// The whole life of a link with `dialer` and `answer` in either framing.
fn whole_life(dialer: Config, answer: Config) -> Link {
    let mut l = Link::new(dialer, answer);
    l.run_until_up();
    match l.a.up() {
        Some(Event::Up {
            local, peer, dns, ..
        }) => {
            assert_eq!((*local, *peer), (REMOTE, LOCAL));
            assert_eq!(dns, &[DNS1, DNS2]);
        }
        other => panic!("no Up: {other:?}"),
    }
    l.check_ip_both_ways();
    l.check_echo();
    l.close();
    l
}

#[test]
fn unframed_dialer_against_hdlc_answer_with_pap() {
    let l = whole_life(
        unframed(dialer(Some(("alice", "pw")))),
        answer(PAP_ONLY, &[("alice", "pw")]),
    );
    assert!(l.a.codes(crate::pap::PROTOCOL).contains(&1));
}

#[test]
fn unframed_dialer_against_hdlc_answer_with_chap() {
    let mut b = answer(CHAP_ONLY, &[("alice", "pw")]);
    b.chap_rechallenge = Some(Duration::from_secs(3));
    let l = whole_life(unframed(dialer(Some(("alice", "pw")))), b);
    // Challenged at the start and again while up (the echo check waits 10 s).
    assert!(
        l.b.codes(crate::chap::PROTOCOL)
            .iter()
            .filter(|c| **c == 1)
            .count()
            >= 2
    );
    assert!(l.a.codes(crate::chap::PROTOCOL).contains(&2));
}

#[test]
fn hdlc_dialer_against_unframed_answer() {
    whole_life(
        dialer(Some(("alice", "pw"))),
        unframed(answer(CHAP_ONLY, &[("alice", "pw")])),
    );
}

#[test]
fn unframed_against_unframed() {
    whole_life(
        unframed(dialer(Some(("alice", "pw")))),
        unframed(answer(PAP_ONLY, &[("alice", "pw")])),
    );
}

#[test]
fn link_parameters_are_what_lcp_agreed() {
    let mut d = unframed(dialer(None));
    d.lcp.mru = 1400; // below 1500: we still receive 1500 (RFC 1661 §6.1)
    d.lcp.accm = 0x000a_0000; // XON/XOFF
    let mut a = answer(AuthMethods::NONE, &[]);
    a.lcp.mru = 1200;
    a.lcp.pfc = false;
    let mut l = Link::new(d, a);
    assert_eq!(l.a.s.link_parameters(), None, "before LCP opens");
    l.run_until_up();
    let p = l.a.s.link_parameters().expect("LCP open");
    assert_eq!(
        p,
        LinkParameters {
            mru: 1500,
            peer_mru: 1200,
            tx_accm: 0,
            rx_accm: 0x000a_0000,
            tx_pfc: false,
            tx_acfc: true,
            rx_pfc: true,
            rx_acfc: true,
        }
    );
    let q = l.b.s.link_parameters().expect("LCP open");
    assert_eq!(
        (q.mru, q.peer_mru, q.tx_accm, q.rx_accm),
        (1500, 1400, 0x000a_0000, 0)
    );
    assert_eq!((q.tx_pfc, q.rx_pfc), (true, false));
    // The peer's MRU bounds what we send.
    assert!(l.a.s.send_ip(&ip_packet(1, 1200)).is_err());
    l.a.s.close("bye", l.now);
    l.run(Duration::from_secs(30), |l| l.a.s.is_dead());
    assert_eq!(l.a.s.link_parameters(), None, "after the end");
}

#[test]
fn whole_frames_are_counted() {
    let mut l = Link::new(unframed(dialer(None)), answer(AuthMethods::NONE, &[]));
    l.run_until_up();
    l.check_ip_both_ways();
    let st = l.a.s.stats();
    assert_eq!((st.rx_frames, st.rx_bytes), l.a.delivered);
    assert_eq!(st.tx_frames, l.a.sent.len() as u64);
    let sent_bytes: usize = l.a.sent.iter().map(|(_, i)| 2 + i.len()).sum();
    assert_eq!(st.tx_bytes, sent_bytes as u64);
    assert_eq!((st.rx_ip_packets, st.tx_ip_packets), (5, 5));
    assert_eq!(st.rx_malformed + st.rx_oversize + st.rx_bad_fcs, 0);
}

#[test]
fn frame_input_takes_every_header_form() {
    let mut l = Link::new(unframed(dialer(None)), answer(AuthMethods::NONE, &[]));
    l.run_until_up();
    let pkt = ip_packet(3, 40);
    let forms: [&[u8]; 4] = [
        &[0x00, 0x21],
        &[0x21],
        &[0xff, 0x03, 0x00, 0x21],
        &[0xff, 0x03, 0x21],
    ];
    for header in forms {
        let frame = [header, &pkt].concat();
        l.a.s.handle_frame_input(&frame, l.now);
        assert_eq!(l.a.s.poll_ip().as_ref(), Some(&pkt), "header {header:02x?}");
    }
    // Malformed headers are counted and dropped, as on the HDLC path.
    let before = l.a.s.stats().rx_malformed;
    for bad in [
        &[][..],
        &[0x02],
        &[0xff, 0x05, 0x00, 0x21],
        &[0x00, 0x20],
        &[0x00, 0x00, 1],
    ] {
        l.a.s.handle_frame_input(bad, l.now);
    }
    assert_eq!(l.a.s.stats().rx_malformed, before + 5);
    // Over the MRU (and a full header): dropped as the decoder drops it.
    let big = [&[0x00, 0x21][..], &vec![0x45; 1503]].concat();
    l.a.s.handle_frame_input(&big, l.now);
    assert_eq!(l.a.s.stats().rx_oversize, 1);
    assert!(l.a.s.poll_ip().is_none());
    // A read of the channel fed to handle_input is the same one frame.
    l.a.s
        .handle_input(&[&[0x00, 0x21][..], &pkt].concat(), l.now);
    assert_eq!(l.a.s.poll_ip(), Some(pkt));
    // Unknown protocols are still Protocol-Rejected, unframed.
    l.a.s.handle_frame_input(&[0x80, 0x57, 1, 1, 0, 4], l.now);
    let rejected = std::iter::from_fn(|| l.a.s.poll_transmit())
        .any(|f| f.starts_with(&[0xc0, 0x21, 8]) && f.ends_with(&[0x80, 0x57, 1, 1, 0, 4]));
    assert!(rejected, "no Protocol-Reject");
}

#[test]
fn unframed_output_has_no_framing_even_with_compression_agreed() {
    let mut l = Link::new(unframed(dialer(None)), answer(AuthMethods::NONE, &[]));
    l.run_until_up();
    let p = l.a.s.link_parameters().expect("up");
    assert!(p.tx_acfc && p.tx_pfc);
    let pkt = ip_packet(1, 20);
    l.a.s.send_ip(&pkt).unwrap();
    assert_eq!(
        l.a.s.poll_transmit(),
        Some([&[0x00, 0x21][..], &pkt].concat())
    );
}

#[test]
fn unframed_member_carries_the_bundle_frames() {
    let mp = |e| {
        Some(MultilinkConfig {
            endpoint: Some(e),
            ..MultilinkConfig::default()
        })
    };
    let mut d = unframed(dialer(None));
    d.lcp.multilink = mp(EndpointDiscriminator::magic(&[7]));
    let mut a = answer(AuthMethods::NONE, &[]);
    a.lcp.multilink = mp(EndpointDiscriminator::magic(&[8]));
    let mut l = Link::new(d, a);
    l.run(Duration::from_secs(30), |l| {
        l.a.s.bundle_member().is_some() && l.b.s.bundle_member().is_some()
    });
    assert!(
        l.a.events
            .iter()
            .any(|e| matches!(e, Event::BundleMember { .. }))
    );
    let fragment = [0xc0, 0, 0, 1, 0x00, 0x21, 0x45];
    l.a.s.send_frame(0x003d, &fragment).unwrap();
    l.b.s.send_frame(0x003d, &fragment).unwrap();
    l.exchange();
    assert_eq!(l.b.s.poll_bundle_frame(), Some((0x003d, fragment.to_vec())));
    assert_eq!(l.a.s.poll_bundle_frame(), Some((0x003d, fragment.to_vec())));
    assert!(l.a.codes(ipcp::PROTOCOL).is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    /// Arbitrary whole frames never panic an unframed session, in any phase.
    #[test]
    fn frame_input_survives_arbitrary_frames(
        frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..40),
        up in any::<bool>(),
        as_answer in any::<bool>(),
    ) {
        let mut l = Link::new(
            unframed(dialer(Some(("alice", "pw")))),
            unframed(answer(CHAP_ONLY, &[("alice", "pw")])),
        );
        if up {
            l.run_until_up();
        }
        for f in &frames {
            let end = if as_answer { &mut l.b } else { &mut l.a };
            end.s.handle_frame_input(f, l.now);
            l.exchange();
        }
        l.run(Duration::from_secs(120), |l| l.a.s.is_dead() && l.b.s.is_dead());
        let _ = (l.a.s.stats(), l.b.s.stats());
    }
}
