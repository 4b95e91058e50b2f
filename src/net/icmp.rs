//! IPv4 + ICMP echo packets by hand: whole packets for tests and demos that ping through a
//! PPP session without kernel networking, and the echo messages and answers of the upstream
//! probes (`net::probe`), which go through a raw socket. Parsing never panics on any input.

use std::net::Ipv4Addr;

/// IP protocol number of ICMP.
pub const PROTO_ICMP: u8 = 1;
const ECHO_REPLY: u8 = 0;
const ECHO_REQUEST: u8 = 8;
const DEST_UNREACHABLE: u8 = 3;
const TIME_EXCEEDED: u8 = 11;
const IP_HEADER: usize = 20;

/// An ICMP echo request or reply, parsed from an IPv4 packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Echo {
    /// IPv4 source.
    pub src: Ipv4Addr,
    /// IPv4 destination.
    pub dst: Ipv4Addr,
    /// Time to live as received.
    pub ttl: u8,
    /// True for a reply (type 0), false for a request (type 8).
    pub reply: bool,
    /// Echo identifier.
    pub id: u16,
    /// Echo sequence number.
    pub seq: u16,
    /// Echo data.
    pub payload: Vec<u8>,
}

/// The Internet checksum (RFC 1071) of `data`.
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4 packet (no options, TTL 64) carrying an ICMP echo request.
pub fn echo_request(src: Ipv4Addr, dst: Ipv4Addr, id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    build(src, dst, 64, ECHO_REQUEST, id, seq, payload)
}

/// The reply a host would send to `packet`, if it is an echo request.
pub fn reply_to(packet: &[u8]) -> Option<Vec<u8>> {
    let e = parse(packet)?;
    (!e.reply).then(|| build(e.dst, e.src, 64, ECHO_REPLY, e.id, e.seq, &e.payload))
}

fn build(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ttl: u8,
    kind: u8,
    id: u16,
    seq: u16,
    payload: &[u8],
) -> Vec<u8> {
    let total = IP_HEADER + 8 + payload.len();
    let mut p = Vec::with_capacity(total);
    p.extend_from_slice(&[0x45, 0]);
    p.extend_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes()); // identification
    p.extend_from_slice(&[0x40, 0, ttl, PROTO_ICMP, 0, 0]); // DF, checksum later
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    let sum = checksum(&p[..IP_HEADER]);
    p[10..12].copy_from_slice(&sum.to_be_bytes());
    p.extend_from_slice(&[kind, 0, 0, 0]);
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(payload);
    let sum = checksum(&p[IP_HEADER..]);
    p[IP_HEADER + 2..IP_HEADER + 4].copy_from_slice(&sum.to_be_bytes());
    p
}

/// The ICMP part of an echo request (a raw ICMP socket adds the IP header).
pub fn echo_message(id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(8 + payload.len());
    m.extend_from_slice(&[ECHO_REQUEST, 0, 0, 0]);
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(payload);
    let sum = checksum(&m);
    m[2..4].copy_from_slice(&sum.to_be_bytes());
    m
}

/// What an ICMP packet received on a raw socket says about one of our echo requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EchoAnswer {
    /// The echo reply from `from`.
    Reply { from: Ipv4Addr, id: u16, seq: u16 },
    /// A router (`from`) could not deliver our request to `to`: destination unreachable
    /// (`kind` 3) or time exceeded (11), with its code.
    Error {
        from: Ipv4Addr,
        to: Ipv4Addr,
        kind: u8,
        code: u8,
        id: u16,
        seq: u16,
    },
}

/// Reads an IPv4 packet from a raw ICMP socket as an answer to an echo request: a reply, or an
/// error quoting our request. Anything else (other ICMP, damage) is `None`.
pub fn echo_answer(packet: &[u8]) -> Option<EchoAnswer> {
    let (ip, icmp) = split_ipv4(packet)?;
    if icmp.len() < 8 || checksum(icmp) != 0 {
        return None;
    }
    let from = addr_at(ip, 12)?;
    let id_seq = |b: &[u8]| {
        Some((
            u16::from_be_bytes([*b.get(4)?, *b.get(5)?]),
            u16::from_be_bytes([*b.get(6)?, *b.get(7)?]),
        ))
    };
    match (icmp[0], icmp[1]) {
        (ECHO_REPLY, 0) => {
            let (id, seq) = id_seq(icmp)?;
            Some(EchoAnswer::Reply { from, id, seq })
        }
        (kind @ (DEST_UNREACHABLE | TIME_EXCEEDED), code) => {
            // The error quotes our packet's IP header and its first 8 bytes: our echo header.
            let quoted = icmp.get(8..)?;
            let ihl = usize::from(*quoted.first()? & 0x0f) * 4;
            if quoted[0] >> 4 != 4 || ihl < IP_HEADER || *quoted.get(9)? != PROTO_ICMP {
                return None;
            }
            let inner = quoted.get(ihl..ihl + 8)?;
            if inner[0] != ECHO_REQUEST {
                return None;
            }
            let (id, seq) = id_seq(inner)?;
            Some(EchoAnswer::Error {
                from,
                to: addr_at(quoted, 16)?,
                kind,
                code,
                id,
                seq,
            })
        }
        _ => None,
    }
}

/// The header and payload of an IPv4 packet carrying ICMP, checking the header checksum.
fn split_ipv4(packet: &[u8]) -> Option<(&[u8], &[u8])> {
    let ihl = usize::from(*packet.first()? & 0x0f) * 4;
    if packet[0] >> 4 != 4 || ihl < IP_HEADER || packet.len() < ihl {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
    if total < ihl || total > packet.len() || packet[9] != PROTO_ICMP {
        return None;
    }
    if checksum(&packet[..ihl]) != 0 {
        return None;
    }
    Some((&packet[..ihl], &packet[ihl..total]))
}

fn addr_at(b: &[u8], at: usize) -> Option<Ipv4Addr> {
    let a: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
    Some(Ipv4Addr::from(a))
}

/// Parses an IPv4 ICMP echo request or reply, checking both checksums.
pub fn parse(packet: &[u8]) -> Option<Echo> {
    let (_, icmp) = split_ipv4(packet)?;
    if icmp.len() < 8 || checksum(icmp) != 0 {
        return None;
    }
    let reply = match (icmp[0], icmp[1]) {
        (ECHO_REPLY, 0) => true,
        (ECHO_REQUEST, 0) => false,
        _ => return None,
    };
    let addr =
        |at: usize| Ipv4Addr::new(packet[at], packet[at + 1], packet[at + 2], packet[at + 3]);
    Some(Echo {
        src: addr(12),
        dst: addr(16),
        ttl: packet[8],
        reply,
        id: u16::from_be_bytes([icmp[4], icmp[5]]),
        seq: u16::from_be_bytes([icmp[6], icmp[7]]),
        payload: icmp[8..].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(10, 64, 1, 2);
    const B: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: the one's complement sum of these words is 0xddf2.
        assert_eq!(
            checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            !0xddf2
        );
        assert_eq!(checksum(&[0xff]), !0xff00);
    }

    #[test]
    fn request_reply_round_trip() {
        let req = echo_request(A, B, 0x1234, 7, b"hello, odd length");
        assert_eq!(req.len(), 20 + 8 + 17);
        let e = parse(&req).unwrap();
        assert_eq!((e.src, e.dst, e.ttl, e.reply), (A, B, 64, false));
        assert_eq!(
            (e.id, e.seq, e.payload.as_slice()),
            (0x1234, 7, &b"hello, odd length"[..])
        );
        let rep = reply_to(&req).unwrap();
        let r = parse(&rep).unwrap();
        assert_eq!(
            (r.src, r.dst, r.reply, r.id, r.seq),
            (B, A, true, 0x1234, 7)
        );
        assert_eq!(r.payload, e.payload);
        assert_eq!(reply_to(&rep), None, "replies are not answered");
    }

    #[test]
    fn damaged_packets_are_refused() {
        let req = echo_request(A, B, 1, 1, &[0u8; 8]);
        for i in 0..req.len() {
            let mut bad = req.clone();
            bad[i] ^= 0x01;
            assert_eq!(parse(&bad), None, "byte {i}");
        }
        assert_eq!(parse(&req[..27]), None);
        assert_eq!(parse(&[]), None);
    }

    #[test]
    fn echo_answers_are_matched_by_id_and_seq() {
        let req = echo_request(A, B, 0x4242, 9, &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(
            &req[20..],
            echo_message(0x4242, 9, &[1, 2, 3, 4, 5, 6, 7, 8])
        );
        let rep = reply_to(&req).unwrap();
        assert_eq!(
            echo_answer(&rep),
            Some(EchoAnswer::Reply {
                from: B,
                id: 0x4242,
                seq: 9
            })
        );
        assert_eq!(echo_answer(&req), None, "a request is no answer");
        // A router's "communication administratively prohibited" quoting our request.
        let router = Ipv4Addr::new(10, 64, 1, 1);
        let mut icmp = vec![DEST_UNREACHABLE, 13, 0, 0, 0, 0, 0, 0];
        icmp.extend_from_slice(&req[..28]);
        let sum = checksum(&icmp);
        icmp[2..4].copy_from_slice(&sum.to_be_bytes());
        let mut err = build(router, A, 64, 0, 0, 0, &[]);
        err.truncate(20);
        err.extend_from_slice(&icmp);
        let total = err.len() as u16;
        err[2..4].copy_from_slice(&total.to_be_bytes());
        err[10..12].copy_from_slice(&[0, 0]);
        let sum = checksum(&err[..20]);
        err[10..12].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(
            echo_answer(&err),
            Some(EchoAnswer::Error {
                from: router,
                to: B,
                kind: 3,
                code: 13,
                id: 0x4242,
                seq: 9
            })
        );
        for cut in 0..err.len() {
            let _ = echo_answer(&err[..cut]);
        }
    }
}
