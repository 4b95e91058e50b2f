//! Multilink negotiation between our two roles, and the fallback to a plain link.

use std::net::Ipv4Addr;

use super::{AuthMethods, Pair, answer, check_ip_both_ways, dialer};
use crate::lcp;
use crate::mp::{EndpointDiscriminator, MultilinkConfig};
use crate::packet::{CONFIGURE_REJECT, CONFIGURE_REQUEST, ControlPacket, Options};

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
fn both_roles_negotiate_multilink() {
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
    p.run_until_up();
    let on_dialer = p.a.multilink().expect("multilink on the dialer");
    let on_answer = p.b.multilink().expect("multilink on the answering end");
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
    check_ip_both_ways(&mut p);
}

#[test]
fn peer_without_multilink_gives_a_plain_link() {
    let mut d = dialer(None);
    d.lcp.multilink = mp(true, EndpointDiscriminator::magic(&[1, 2]));
    let mut p = Pair::new(d, answer(AuthMethods::NONE, &[]));
    p.run_until_up();
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
