//! "The internet"'s resolver: answers every A query with one address (NOERROR), anything else
//! with NOTIMP, so the DNS checks of upstream tracking have a far end. It runs in the world's
//! internet namespace at [`super::world::ISP_DNS`]. Malformed queries are dropped; no input
//! makes it panic.

use std::net::{Ipv4Addr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The answer to `query`, if it is a query this server answers at all.
pub fn answer(query: &[u8], address: Ipv4Addr) -> Option<Vec<u8>> {
    let header = query.get(..12)?;
    // A query (QR clear), standard opcode, exactly one question.
    if header[2] & 0xf8 != 0 || header[4..6] != [0, 1] {
        return None;
    }
    // The question: labels up to the root, then type and class.
    let mut at = 12;
    loop {
        let len = usize::from(*query.get(at)?);
        if len == 0 {
            at += 1;
            break;
        }
        if len > 63 {
            return None;
        }
        at += 1 + len;
    }
    let question = query.get(12..at + 4)?;
    let qtype = u16::from_be_bytes([query[at], query[at + 1]]);
    let mut r = Vec::with_capacity(question.len() + 28);
    r.extend_from_slice(&header[..2]);
    let is_a = qtype == 1;
    // QR, RD copied, RA; NOERROR or NOTIMP.
    r.push(0x80 | (header[2] & 0x01));
    r.push(if is_a { 0x80 } else { 0x84 });
    r.extend_from_slice(&[0, 1, 0, u8::from(is_a), 0, 0, 0, 0]);
    r.extend_from_slice(question);
    if is_a {
        // The name as a pointer to the question's, type A, class IN, TTL 60, 4 bytes.
        r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        r.extend_from_slice(&address.octets());
    }
    Some(r)
}

/// Serves on `socket` until `stop` is set. Blocking: run it on a thread of its own.
pub fn serve(socket: UdpSocket, address: Ipv4Addr, stop: Arc<AtomicBool>) {
    let _ = socket.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = [0u8; 512];
    while !stop.load(Ordering::Relaxed) {
        if let Ok((n, from)) = socket.recv_from(&mut buf)
            && let Some(reply) = answer(&buf[..n], address)
        {
            let _ = socket.send_to(&reply, from);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::probe::{answer_rcode, dns_query};

    #[test]
    fn a_queries_are_answered_and_others_refused() {
        let addr = Ipv4Addr::new(198, 51, 100, 10);
        let q = dns_query(0x1234, "example.net").unwrap();
        let a = answer(&q, addr).unwrap();
        assert_eq!(answer_rcode(&a, 0x1234), Ok(0));
        assert_eq!(&a[a.len() - 4..], &addr.octets());
        let mut aaaa = q.clone();
        let n = aaaa.len();
        aaaa[n - 3] = 28;
        let r = answer(&aaaa, addr).unwrap();
        assert!(answer_rcode(&r, 0x1234).is_err());
        assert_eq!(answer(&a, addr), None, "answers are not answered");
        for cut in 0..q.len() {
            let _ = answer(&q[..cut], addr);
        }
        assert_eq!(answer(&[0xff; 40], addr), None);
    }
}
