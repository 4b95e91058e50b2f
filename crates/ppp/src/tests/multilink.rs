//! Multilink negotiation between our two roles, and the fallback to a plain link.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use super::{
    AuthMethods, DNS1, LOCAL, PAP_ONLY, Pair, REMOTE, answer, check_ip_both_ways, dialer, ip_packet,
};
use crate::lcp;
use crate::mp::{
    Bundle, BundleConfig, BundleEvent, BundleId, BundleSession, BundleSessionConfig,
    EndpointDiscriminator, LinkState, MultilinkConfig, Negotiated,
};
use crate::packet::{CONFIGURE_REJECT, CONFIGURE_REQUEST, ControlPacket, Options};
use crate::session::{Event, Session};

fn mp(short_seq: bool, endpoint: EndpointDiscriminator) -> Option<MultilinkConfig> {
    Some(MultilinkConfig {
        mrru: 1500,
        short_seq,
        endpoint: Some(endpoint),
    })
}

/// Whether a Configure-Request carries the MRRU option.
fn asks_mrru(info: &[u8]) -> bool {
    ControlPacket::parse(info).is_ok_and(|p| {
        p.code == CONFIGURE_REQUEST && Options::new(p.data).flatten().any(|o| o.kind == 17)
    })
}

#[test]
fn both_roles_negotiate_multilink_and_join_a_bundle() {
    let magic = EndpointDiscriminator::magic(&[0xdead_beef]);
    let ip = EndpointDiscriminator::ip(Ipv4Addr::new(192, 0, 2, 1));
    let mut d = dialer(None);
    d.lcp.multilink = mp(true, magic);
    let mut a = answer(AuthMethods::NONE, &[]);
    a.lcp.multilink = Some(MultilinkConfig {
        mrru: 1600,
        ..mp(false, ip).unwrap()
    });
    let mut p = Pair::new(d, a);
    p.run_until_members();
    let on_dialer = p.a.multilink().expect("multilink on the dialer");
    let on_answer = p.b.multilink().expect("multilink on the answering end");
    assert_eq!(p.a.bundle_member(), Some(&on_dialer));
    assert_eq!((on_dialer.our_mrru, on_dialer.peer_mrru), (1500, 1600));
    assert_eq!((on_answer.our_mrru, on_answer.peer_mrru), (1600, 1500));
    // The dialer asked for short sequence numbers: it receives them, the answer sends them.
    assert_eq!(
        (on_dialer.rx_short_seq, on_dialer.tx_short_seq),
        (true, false)
    );
    assert_eq!(
        (on_answer.rx_short_seq, on_answer.tx_short_seq),
        (false, true)
    );
    assert_eq!(on_dialer.peer_endpoint, Some(ip));
    assert_eq!(on_answer.peer_endpoint, Some(magic));
    // No IPCP on a member: the bundle runs it.
    assert!(!p.a.is_up() && !p.b.is_up());
    assert!(p.a_to_b.codes(crate::ipcp::PROTOCOL).is_empty());
    assert_eq!(p.a.send_ip(&[0x45; 20]), Err(crate::SendError::NotUp));
    // A member carries the bundle's protocols only.
    for bad in [lcp::PROTOCOL, 0x0020, 0x0121] {
        assert_eq!(
            p.a.send_frame(bad, &[1, 2]),
            Err(crate::SendError::NotBundleProtocol(bad))
        );
    }
    assert_eq!(p.a.send_frame(crate::ipcp::PROTOCOL, &[1, 1, 0, 4]), Ok(()));
}

#[test]
fn peer_without_multilink_gives_a_plain_link() {
    let mut d = dialer(None);
    d.lcp.multilink = mp(true, EndpointDiscriminator::magic(&[1, 2]));
    let mut p = Pair::new(d, answer(AuthMethods::NONE, &[]));
    p.run_until_up();
    assert!(p.a.bundle_member().is_none());
    assert_eq!(p.a.multilink(), None);
    assert_eq!(p.b.multilink(), None);
    // The answer rejected MRRU, SSNHF and ED; the dialer's next request had none of them.
    let reqs: Vec<_> = p
        .a_to_b
        .seen
        .iter()
        .filter(|(proto, info)| *proto == lcp::PROTOCOL && info.first() == Some(&CONFIGURE_REQUEST))
        .collect();
    assert!(asks_mrru(&reqs[0].1));
    assert!(!asks_mrru(&reqs.last().unwrap().1));
    assert!(p.b_to_a.codes(lcp::PROTOCOL).contains(&CONFIGURE_REJECT));
    check_ip_both_ways(&mut p);
}

#[test]
fn multilink_only_one_way_is_no_multilink() {
    // The answer accepts the dialer's MRRU but the dialer is not configured for Multilink:
    // the dialer rejects the answer's MRRU, so neither end runs Multilink (pppd: "multilink
    // negotiated only for receive" is not Multilink).
    let mut a = answer(AuthMethods::NONE, &[]);
    a.lcp.multilink = mp(false, EndpointDiscriminator::magic(&[7]));
    let mut p = Pair::new(dialer(None), a);
    p.run_until_up();
    assert_eq!(p.a.multilink(), None);
    assert_eq!(p.b.multilink(), None);
}

impl Pair {
    /// Run until both ends are bundle members.
    fn run_until_members(&mut self) {
        let member = |events: &[Event]| {
            events
                .iter()
                .any(|e| matches!(e, Event::BundleMember { .. }))
        };
        self.run(Duration::from_secs(60), |p| {
            member(&p.a_events) && member(&p.b_events)
        });
        assert!(
            self.a.bundle_member().is_some() && self.b.bundle_member().is_some(),
            "not members: a={:?} b={:?}",
            self.a_events,
            self.b_events
        );
    }
}

fn bundle_id(events: &[Event]) -> Option<&BundleId> {
    events.iter().find_map(|e| match e {
        Event::BundleMember { id, .. } => Some(id),
        _ => None,
    })
}

/// Hand every frame a side's members received to its bundle.
fn to_bundle(bundle: &mut Bundle<usize>, member: usize, session: &mut Session, now: Instant) {
    while let Some((protocol, info)) = session.poll_bundle_frame() {
        assert_eq!(protocol, crate::mp::PROTOCOL);
        bundle.handle_mp_frame(member, &info, now).unwrap();
    }
}

fn states(sessions: &[&Session]) -> Vec<LinkState<usize>> {
    let states: Vec<_> = sessions
        .iter()
        .enumerate()
        .map(|(i, s)| s.bundle_link_state(i, 7_000))
        .collect();
    assert!(states.iter().all(|l| l.up && l.mru == 1500));
    states
}

/// pppd's setup: a dialer on two lines with `multilink endpoint magic:…` and PAP, an
/// answering end that authenticates it. Both links join one bundle per side, and IP
/// packets split over the two links come back whole on the other side, both ways.
#[test]
fn two_member_links_carry_one_bundle() {
    let mut pairs: Vec<Pair> = (0..2)
        .map(|i| {
            let mut d = dialer(Some(("user", "pass")));
            d.lcp.multilink = mp(false, EndpointDiscriminator::magic(&[0x0a0b_0c0d]));
            d.seed = 10 + i;
            let mut a = answer(PAP_ONLY, &[("user", "pass")]);
            a.lcp.multilink = mp(
                false,
                EndpointDiscriminator::ip(Ipv4Addr::new(192, 0, 2, 1)),
            );
            a.seed = 20 + i;
            let mut p = Pair::new(d, a);
            p.run_until_members();
            p
        })
        .collect();
    // pppd's bundle name: the authenticated peer and its endpoint.
    let ids: Vec<_> = pairs
        .iter()
        .map(|p| bundle_id(&p.b_events).cloned())
        .collect();
    assert_eq!(ids[0], ids[1]);
    assert_eq!(
        ids[0].as_ref().unwrap().to_string(),
        "\"user\"/magic:0a0b0c0d"
    );
    assert_eq!(bundle_id(&pairs[0].a_events).unwrap().peer_name, "");

    let cfg = |s: &Session| BundleConfig::from_negotiated(s.bundle_member().unwrap());
    let mut dialer_side = Bundle::new(cfg(&pairs[0].a), 0);
    let mut answer_side = Bundle::new(cfg(&pairs[0].b), 100);
    for m in 0..2 {
        dialer_side.add_member(m);
        answer_side.add_member(m);
    }
    let packets: Vec<Vec<u8>> = (1..=6u8)
        .map(|i| ip_packet(i, 200 * usize::from(i)))
        .collect();
    for pkt in &packets {
        let links = states(&[&pairs[0].a, &pairs[1].a]);
        for f in dialer_side.send(crate::ipcp::IPV4, pkt, &links).unwrap() {
            pairs[f.member]
                .a
                .send_frame(crate::mp::PROTOCOL, &f.info)
                .unwrap();
        }
        let links = states(&[&pairs[0].b, &pairs[1].b]);
        for f in answer_side.send(crate::ipcp::IPV4, pkt, &links).unwrap() {
            pairs[f.member]
                .b
                .send_frame(crate::mp::PROTOCOL, &f.info)
                .unwrap();
        }
    }
    // The second link delivers first: the bundles put the packets back in order.
    for m in [1, 0] {
        let p = &mut pairs[m];
        p.exchange();
        let now = p.now;
        to_bundle(&mut answer_side, m, &mut p.b, now);
        to_bundle(&mut dialer_side, m, &mut p.a, now);
    }
    for bundle in [&mut answer_side, &mut dialer_side] {
        let got: Vec<_> = std::iter::from_fn(|| bundle.poll_packet()).collect();
        let want: Vec<_> = packets
            .iter()
            .map(|p| (crate::ipcp::IPV4, p.clone()))
            .collect();
        assert_eq!(got, want);
        let s = bundle.stats();
        assert!(
            s.tx_fragments > s.tx_packets,
            "large packets were split: {s:?}"
        );
        assert_eq!((s.rx.lost, s.rx.discarded), (0, 0));
    }
}

#[test]
fn a_member_leaves_its_bundle_when_lcp_goes_down() {
    let mut d = dialer(None);
    d.lcp.multilink = mp(false, EndpointDiscriminator::magic(&[1]));
    let mut a = answer(AuthMethods::NONE, &[]);
    a.lcp.multilink = mp(false, EndpointDiscriminator::magic(&[2]));
    let mut p = Pair::new(d, a);
    p.run_until_members();
    let now = p.now;
    p.a.close("bye", now);
    p.run(Duration::from_secs(10), |p| p.a.is_dead() && p.b.is_dead());
    assert!(p.a.bundle_member().is_none());
    assert!(
        p.a_events
            .iter()
            .any(|e| matches!(e, Event::NetworkDown { .. }))
    );
    assert!(
        p.b_events
            .iter()
            .any(|e| matches!(e, Event::NetworkDown { .. }))
    );
    assert_eq!(
        p.a.send_frame(crate::mp::PROTOCOL, &[0xc0, 0, 0, 0, 0x21]),
        Err(crate::SendError::NotUp)
    );
}

/// One side of a two-link bundle: its member sessions (in `pairs`, end `a` or `b`) and
/// its network layer.
fn shuttle(
    pairs: &mut [Pair],
    dialer_side: &mut BundleSession<usize>,
    answer_side: &mut BundleSession<usize>,
) {
    for (m, p) in pairs.iter_mut().enumerate() {
        p.exchange();
        let now = p.now;
        while let Some((proto, info)) = p.a.poll_bundle_frame() {
            dialer_side.handle_frame(m, proto, &info, now);
        }
        while let Some((proto, info)) = p.b.poll_bundle_frame() {
            answer_side.handle_frame(m, proto, &info, now);
        }
    }
    let a_links = states(&pairs.iter().map(|p| &p.a).collect::<Vec<_>>());
    for f in dialer_side.poll_transmit(&a_links) {
        pairs[f.member]
            .a
            .send_frame(crate::mp::PROTOCOL, &f.info)
            .unwrap();
    }
    let b_links = states(&pairs.iter().map(|p| &p.b).collect::<Vec<_>>());
    for f in answer_side.poll_transmit(&b_links) {
        pairs[f.member]
            .b
            .send_frame(crate::mp::PROTOCOL, &f.info)
            .unwrap();
    }
}

/// The bundle runs IPCP once for both links (over MP), then IP flows split over them.
#[test]
fn the_bundle_runs_ipcp_and_ip_for_its_members() {
    let mut pairs: Vec<Pair> = (0..2)
        .map(|i| {
            let mut d = dialer(None);
            d.lcp.multilink = mp(true, EndpointDiscriminator::magic(&[0x0a0b_0c0d]));
            d.seed = 30 + i;
            let mut a = answer(AuthMethods::NONE, &[]);
            a.lcp.multilink = mp(false, EndpointDiscriminator::magic(&[0x0102_0304]));
            a.seed = 40 + i;
            let mut p = Pair::new(d, a);
            p.run_until_members();
            p
        })
        .collect();
    let now = pairs[0].now;
    let bundle = |s: &Session| BundleConfig::from_negotiated(s.bundle_member().unwrap());
    let mut dialer_side = BundleSession::new(
        BundleSessionConfig::new(bundle(&pairs[0].a), crate::IpcpConfig::client()),
        0,
    );
    let server = crate::IpcpConfig::server(LOCAL, REMOTE, &[DNS1]);
    let mut answer_side =
        BundleSession::new(BundleSessionConfig::new(bundle(&pairs[0].b), server), 0);
    for m in 0..2 {
        dialer_side.add_member(m, now);
        answer_side.add_member(m, now);
    }
    for _ in 0..20 {
        shuttle(&mut pairs, &mut dialer_side, &mut answer_side);
        if dialer_side.is_up() && answer_side.is_up() {
            break;
        }
    }
    assert!(dialer_side.is_up() && answer_side.is_up());
    assert_dialer_up(&mut dialer_side);
    // No member ran IPCP on its own; IPCP went over MP.
    for p in &pairs {
        assert!(p.a_to_b.codes(crate::ipcp::PROTOCOL).is_empty());
        assert!(!p.a.is_up());
    }

    let packets: Vec<Vec<u8>> = (1..=5u8)
        .map(|i| ip_packet(i, 280 * usize::from(i)))
        .collect();
    for pkt in &packets {
        let links = states(&pairs.iter().map(|p| &p.a).collect::<Vec<_>>());
        for f in dialer_side.send_ip(pkt, &links).unwrap() {
            pairs[f.member]
                .a
                .send_frame(crate::mp::PROTOCOL, &f.info)
                .unwrap();
        }
        let links = states(&pairs.iter().map(|p| &p.b).collect::<Vec<_>>());
        for f in answer_side.send_ip(pkt, &links).unwrap() {
            pairs[f.member]
                .b
                .send_frame(crate::mp::PROTOCOL, &f.info)
                .unwrap();
        }
    }
    shuttle(&mut pairs, &mut dialer_side, &mut answer_side);
    for side in [&mut dialer_side, &mut answer_side] {
        let got: Vec<_> = std::iter::from_fn(|| side.poll_ip()).collect();
        assert_eq!(got, packets);
        let s = side.stats();
        assert_eq!(s.rx_ip_packets, 5);
        assert!(s.bundle.tx_fragments > s.bundle.tx_packets);
    }

    // The peer tries CCP over the bundle: a member's LCP rejects it.
    pairs[1].b.send_frame(0x80fd, &[1, 1, 0, 4]).unwrap();
    shuttle(&mut pairs, &mut dialer_side, &mut answer_side);
    let (protocol, info) = dialer_side.poll_protocol_reject().expect("CCP to reject");
    assert_eq!((protocol, info.as_slice()), (0x80fd, &[1, 1, 0, 4][..]));
    assert_eq!(dialer_side.poll_protocol_reject(), None);
    let now = pairs[0].now;
    pairs[0].a.send_protocol_reject(protocol, &info, now);
    pairs[0].exchange();
    let rejects = pairs[0]
        .a_to_b
        .seen
        .iter()
        .filter(|(p, i)| *p == lcp::PROTOCOL && i.first() == Some(&crate::packet::PROTOCOL_REJECT))
        .count();
    assert_eq!(rejects, 1);
    assert_eq!(dialer_side.stats().rx_unknown_protocol, 1);

    // The members leave: IPCP goes down with the last one.
    let now = pairs[0].now;
    dialer_side.remove_member(0, now);
    assert!(dialer_side.is_up());
    dialer_side.remove_member(1, now);
    assert!(!dialer_side.is_up());
    assert!(matches!(
        dialer_side.poll_event(),
        Some(BundleEvent::NetworkDown { .. })
    ));
    assert_eq!(
        dialer_side.send_ip(&packets[0], &[]),
        Err(crate::SendError::NotUp)
    );
}

/// The peer finished authenticating before we did and already sends over MP: its frames
/// wait for our bundle instead of being Protocol-Rejected.
#[test]
fn early_bundle_frames_wait_for_the_bundle() {
    let mut d = dialer(Some(("user", "pass")));
    d.lcp.multilink = mp(false, EndpointDiscriminator::magic(&[1]));
    let mut a = answer(PAP_ONLY, &[("user", "pass")]);
    a.lcp.multilink = mp(false, EndpointDiscriminator::magic(&[2]));
    let mut p = Pair::new(d, a);
    // Hold the dialer's PAP request back until the answer is waiting for it.
    let protocol_of = |frame: &[u8]| {
        let mut dec = crate::hdlc::Decoder::new(1500);
        dec.set_accm(0);
        let (_, f) = dec.push(frame);
        f.and_then(|f| crate::hdlc::Header::parse(f).ok())
            .map(|(h, _)| h.protocol)
    };
    let mut held = Vec::new();
    let now = p.now;
    for _ in 0..20 {
        while let Some(f) = p.a.poll_transmit() {
            if protocol_of(&f) == Some(crate::pap::PROTOCOL) {
                held.push(f);
            } else {
                p.b.handle_input(&f, now);
            }
        }
        while let Some(f) = p.b.poll_transmit() {
            p.a.handle_input(&f, now);
        }
        if !held.is_empty() && p.b.phase() == crate::Phase::Authenticate {
            break;
        }
    }
    assert_eq!(p.b.phase(), crate::Phase::Authenticate);
    let mut frame = Vec::new();
    crate::hdlc::Encoder::new(crate::hdlc::ACCM_ALL).encode(
        &[0xff, 0x03, 0x00, 0x3d],
        &[0xc0, 0, 0, 0, 0x21, 0x45],
        &mut frame,
    );
    p.b.handle_input(&frame, now);
    for f in held {
        p.b.handle_input(&f, now);
    }
    p.run_until_members();
    assert_eq!(
        p.b.poll_bundle_frame(),
        Some((crate::mp::PROTOCOL, vec![0xc0, 0, 0, 0, 0x21, 0x45]))
    );
    assert_eq!(p.b.stats().rx_unknown_protocol, 0);
    assert!(
        !p.b_to_a
            .codes(lcp::PROTOCOL)
            .contains(&crate::packet::PROTOCOL_REJECT)
    );
}

fn multilink_config() -> impl proptest::strategy::Strategy<Value = Option<MultilinkConfig>> {
    use proptest::prelude::*;
    proptest::option::of((
        prop_oneof![Just(1500u16), 128u16..400, 296u16..4000],
        any::<bool>(),
        proptest::option::of(any::<u32>()),
    ))
    .prop_map(|o| {
        o.map(|(mrru, short_seq, magic)| MultilinkConfig {
            mrru,
            short_seq,
            endpoint: magic.map(|m| EndpointDiscriminator::magic(&[m])),
        })
    })
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Whatever each end is configured with, the link comes up (as members or plain), and
    /// both ends agree: Multilink on both or neither, each one's MRRU and header format
    /// as the other sees them, and the Endpoint Discriminators exchanged.
    #[test]
    fn both_ends_agree_on_multilink(ours in multilink_config(), theirs in multilink_config()) {
        let mut d = dialer(None);
        d.lcp.multilink = ours;
        let mut a = answer(AuthMethods::NONE, &[]);
        a.lcp.multilink = theirs;
        let mut p = Pair::new(d, a);
        p.run(Duration::from_secs(60), |p| {
            let ready = |s: &Session| s.is_up() || s.bundle_member().is_some();
            ready(&p.a) && ready(&p.b)
        });
        let (on_a, on_b) = (p.a.bundle_member().copied(), p.b.bundle_member().copied());
        let expect = matches!((ours, theirs), (Some(x), Some(y)) if x.mrru >= 296 && y.mrru >= 296);
        proptest::prop_assert_eq!(on_a.is_some(), expect, "a={:?} b={:?}", p.a_events, p.b_events);
        proptest::prop_assert_eq!(on_b.is_some(), expect);
        proptest::prop_assert_eq!(p.a.is_up(), !expect);
        proptest::prop_assert_eq!(p.b.is_up(), !expect);
        if let (Some(x), Some(y), Some(ours), Some(theirs)) = (on_a, on_b, ours, theirs) {
            proptest::prop_assert_eq!((x.our_mrru, x.peer_mrru), (y.peer_mrru, y.our_mrru));
            proptest::prop_assert_eq!((x.our_mrru, y.our_mrru), (ours.mrru, theirs.mrru));
            let formats = |n: Negotiated| (n.rx_short_seq, n.tx_short_seq);
            proptest::prop_assert_eq!(formats(x), (y.tx_short_seq, y.rx_short_seq));
            proptest::prop_assert_eq!(formats(x).0, ours.short_seq);
            proptest::prop_assert_eq!(formats(y).0, theirs.short_seq);
            proptest::prop_assert_eq!(x.peer_endpoint, theirs.endpoint);
            proptest::prop_assert_eq!(y.peer_endpoint, ours.endpoint);
        }
    }
}

/// A bundle on a kernel unit: its IPCP packets go out whole (`poll_control`) and come in
/// whole, as Linux's `ppp_generic` hands them over after reassembly; IPCP opens both ways.
#[test]
fn a_bundle_on_a_kernel_unit_runs_ipcp_with_whole_packets() {
    let now = Instant::now();
    let negotiated = Negotiated {
        our_mrru: 1500,
        peer_mrru: 1500,
        tx_short_seq: false,
        rx_short_seq: false,
        peer_endpoint: None,
    };
    let config = |ipcp| BundleSessionConfig::new(BundleConfig::from_negotiated(&negotiated), ipcp);
    let mut ours = BundleSession::new(config(crate::IpcpConfig::client()), 0);
    let server = crate::IpcpConfig::server(LOCAL, REMOTE, &[DNS1]);
    let mut theirs = BundleSession::new(config(server), 0);
    ours.add_member(0u8, now);
    theirs.add_member(0u8, now);
    for _ in 0..20 {
        while let Some((protocol, packet)) = ours.poll_control() {
            theirs.handle_frame(0, protocol, &packet, now);
        }
        while let Some((protocol, packet)) = theirs.poll_control() {
            ours.handle_frame(0, protocol, &packet, now);
        }
        if ours.is_up() && theirs.is_up() {
            break;
        }
    }
    assert!(ours.is_up() && theirs.is_up());
    assert_dialer_up(&mut ours);
    // The last member gone: IPCP down (and said why), nothing left to send.
    ours.remove_member(0, now);
    assert!(!ours.is_up());
    assert_eq!(
        ours.poll_event(),
        Some(BundleEvent::NetworkDown {
            reason: "its last member link left".into()
        })
    );
    assert_eq!(ours.poll_control(), None);
}

/// The dialer's side of a bundle reported IPCP up with the answer role's addresses and DNS.
fn assert_dialer_up<K: Copy + Eq>(dialer_side: &mut BundleSession<K>) {
    let up = std::iter::from_fn(|| dialer_side.poll_event())
        .find(|e| matches!(e, BundleEvent::Up { .. }));
    assert_eq!(
        up,
        Some(BundleEvent::Up {
            local: REMOTE,
            peer: LOCAL,
            dns: vec![DNS1],
            mtu: 1500
        })
    );
}
