//! A DNS probe: one A query over UDP, answered without a server failure. NXDOMAIN counts as
//! an answer (the resolver works); SERVFAIL and REFUSED do not. Only the header of the answer
//! is read, so no answer can make the parser do much (it never panics).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use socket2::{Protocol, Type};
use thiserror::Error;

use super::{ProbeError, Via, line_socket};

/// IP + UDP headers.
const UDP_OVERHEAD: u64 = 28;

/// What was wrong with a DNS answer or name.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DnsError {
    #[error("'{0}' is not a valid DNS name")]
    BadName(String),
    #[error("the server answered {0}")]
    Failure(&'static str),
    #[error("the answer is not one (too short, not a response, or another query's)")]
    NotAnAnswer,
}

/// The query for `name`'s A record, with `id`, recursion desired.
pub fn query(id: u16, name: &str) -> Result<Vec<u8>, DnsError> {
    let mut q = Vec::with_capacity(18 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if trimmed.len() > 253 {
        return Err(DnsError::BadName(name.to_string()));
    }
    if !trimmed.is_empty() {
        for label in trimmed.split('.') {
            if label.is_empty() || label.len() > 63 || !label.is_ascii() {
                return Err(DnsError::BadName(name.to_string()));
            }
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    Ok(q)
}

/// The response code of `answer` to query `id`: `Ok` for NOERROR and NXDOMAIN.
pub fn answer_rcode(answer: &[u8], id: u16) -> Result<u8, DnsError> {
    let header = answer.get(..12).ok_or(DnsError::NotAnAnswer)?;
    if u16::from_be_bytes([header[0], header[1]]) != id || header[2] & 0x80 == 0 {
        return Err(DnsError::NotAnAnswer);
    }
    match header[3] & 0x0f {
        rcode @ (0 | 3) => Ok(rcode),
        1 => Err(DnsError::Failure("FORMERR")),
        2 => Err(DnsError::Failure("SERVFAIL")),
        4 => Err(DnsError::Failure("NOTIMP")),
        5 => Err(DnsError::Failure("REFUSED")),
        _ => Err(DnsError::Failure("an unknown error")),
    }
}

/// Asks `server` for `name` through the line.
pub(super) async fn ask(
    server: Ipv4Addr,
    name: &str,
    via: &Via,
    id: u16,
    bytes: &mut u64,
) -> Result<Duration, ProbeError> {
    let q = query(id, name)?;
    let socket = line_socket(Type::DGRAM, Protocol::UDP, via)?;
    let socket = tokio::net::UdpSocket::from_std(socket.into())?;
    socket.connect(SocketAddrV4::new(server, 53)).await?;
    let start = Instant::now();
    socket.send(&q).await?;
    *bytes += UDP_OVERHEAD + q.len() as u64;
    let mut buf = [0u8; 1500];
    loop {
        let n = socket.recv(&mut buf).await?;
        *bytes += UDP_OVERHEAD + n as u64;
        match answer_rcode(&buf[..n], id) {
            Ok(_) => return Ok(start.elapsed()),
            Err(DnsError::NotAnAnswer) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_well_formed() {
        let q = query(0xabcd, "example.com.").unwrap();
        assert_eq!(&q[..4], &[0xab, 0xcd, 0x01, 0x00]);
        assert_eq!(&q[12..], b"\x07example\x03com\x00\x00\x01\x00\x01");
        assert_eq!(&query(1, ".").unwrap()[12..], b"\x00\x00\x01\x00\x01");
        assert!(query(1, "a..b").is_err());
        assert!(query(1, &"x".repeat(64)).is_err());
    }

    #[test]
    fn answers_are_judged_by_their_code() {
        let mut a = query(7, "example.com").unwrap();
        assert_eq!(answer_rcode(&a, 7), Err(DnsError::NotAnAnswer), "a query");
        a[2] |= 0x80;
        assert_eq!(answer_rcode(&a, 7), Ok(0));
        assert_eq!(answer_rcode(&a, 8), Err(DnsError::NotAnAnswer));
        a[3] = 0x83;
        assert_eq!(answer_rcode(&a, 7), Ok(3), "NXDOMAIN: the resolver works");
        a[3] = 0x82;
        assert_eq!(answer_rcode(&a, 7), Err(DnsError::Failure("SERVFAIL")));
        assert_eq!(answer_rcode(&a[..11], 7), Err(DnsError::NotAnAnswer));
    }
}
