//! Probes sent out of one line whatever the balance says: each socket is bound to the line's
//! device and address and carries the line's firewall mark (which the balancer's `output`
//! chain leaves alone), so an answer proves the Internet is reachable through that line.
//!
//! Every probe ends by its deadline; the byte counts are what it cost on the wire (IP
//! packets both ways, estimated for TCP's handshake), for the probe traffic figure in
//! `status`.

mod dns;
mod http;

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, SockRef, Socket, Type};
use thiserror::Error;

use super::icmp::{self, EchoAnswer};
use crate::track::Target;

pub use dns::{DnsError, answer_rcode, query as dns_query};
pub use http::status_code as http_status_code;

/// IP + TCP headers of one handshake or teardown segment with options, roughly.
const TCP_SEGMENT: u64 = 52;
/// Our echo requests' payload: small, since every byte is paid for on a metered line.
const ECHO_PAYLOAD: &[u8] = b"eqlplus!";

/// The line a probe leaves by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// The slave device.
    pub device: String,
    /// The line's own address.
    pub local: Ipv4Addr,
    /// The line's firewall mark (picks its routing table).
    pub mark: u32,
    /// The line's DNS servers (from IPCP), for DNS targets without a server.
    pub dns: Vec<Ipv4Addr>,
}

/// Why a probe failed.
#[derive(Debug, Error)]
pub enum ProbeError {
    #[error("no answer in {} ms", .0.as_millis())]
    Timeout(Duration),
    #[error("{what} from {from}")]
    Unreachable { what: String, from: Ipv4Addr },
    #[error("DNS: {0}")]
    Dns(#[from] DnsError),
    #[error("HTTP status {got}, expected {expected}")]
    HttpStatus { got: u16, expected: u16 },
    #[error("not an HTTP answer")]
    NotHttp,
    #[error("the line has no DNS server to ask")]
    NoDnsServer,
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// What a probe cost and found.
#[derive(Debug)]
pub struct Probed {
    /// The round trip, or why there was none.
    pub result: Result<Duration, ProbeError>,
    /// Bytes on the wire, both ways.
    pub bytes: u64,
}

/// Sends one probe to `target` through `via`; `seq` tells its answer from others'.
pub async fn probe(target: &Target, via: &Via, seq: u16, timeout: Duration) -> Probed {
    let mut bytes = 0;
    let result = match tokio::time::timeout(timeout, run(target, via, seq, &mut bytes)).await {
        Ok(r) => r,
        Err(_) => Err(ProbeError::Timeout(timeout)),
    };
    Probed { result, bytes }
}

async fn run(
    target: &Target,
    via: &Via,
    seq: u16,
    bytes: &mut u64,
) -> Result<Duration, ProbeError> {
    match target {
        Target::Icmp(addr) => ping(*addr, via, seq, bytes).await,
        Target::Tcp(addr) => {
            let start = Instant::now();
            match connect(*addr, via, bytes).await {
                Ok(_) => Ok(start.elapsed()),
                // A reset is an answer too: the far end is reachable.
                Err(ProbeError::Io(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    Ok(start.elapsed())
                }
                Err(e) => Err(e),
            }
        }
        Target::Dns { server, name } => {
            let server = match server {
                Some(s) => *s,
                None => *via.dns.first().ok_or(ProbeError::NoDnsServer)?,
            };
            dns::ask(server, name, via, seq, bytes).await
        }
        Target::Http {
            addr,
            host,
            path,
            expect,
        } => http::get(*addr, host, path, *expect, via, bytes).await,
    }
}

/// A socket of the line: its mark, bound to its device and address, non-blocking.
fn line_socket(ty: Type, protocol: Protocol, via: &Via) -> io::Result<Socket> {
    let socket = Socket::new(Domain::IPV4, ty, Some(protocol))?;
    socket.set_nonblocking(true)?;
    socket.set_mark(via.mark)?;
    socket.bind_device(Some(via.device.as_bytes()))?;
    socket.bind(&SockAddr::from(SocketAddrV4::new(via.local, 0)))?;
    Ok(socket)
}

/// A TCP connection to `addr` through the line, counting its segments in `bytes`: SYN and
/// SYN-ACK, then, once connected, our ACK and the close (FIN/ACK both ways).
async fn connect(
    addr: SocketAddrV4,
    via: &Via,
    bytes: &mut u64,
) -> Result<tokio::net::TcpStream, ProbeError> {
    let socket = line_socket(Type::STREAM, Protocol::TCP, via)?;
    let socket = tokio::net::TcpSocket::from_std_stream(socket.into());
    *bytes += 2 * TCP_SEGMENT;
    let stream = socket.connect(addr.into()).await?;
    *bytes += 3 * TCP_SEGMENT;
    Ok(stream)
}

/// The echo identifier of this process's probes.
fn echo_id() -> u16 {
    (std::process::id() as u16) ^ 0x4571
}

/// One ICMP echo through a raw socket (the daemon runs as root). The socket sees every ICMP
/// packet the device receives; only the reply to this request, or an error quoting it, counts.
async fn ping(
    addr: Ipv4Addr,
    via: &Via,
    seq: u16,
    bytes: &mut u64,
) -> Result<Duration, ProbeError> {
    let socket = crate::sys::register(line_socket(Type::RAW, Protocol::ICMPV4, via)?.into())?;
    let message = icmp::echo_message(echo_id(), seq, ECHO_PAYLOAD);
    let start = Instant::now();
    let to = SockAddr::from(SocketAddrV4::new(addr, 0));
    loop {
        let mut guard = socket.writable().await?;
        match guard.try_io(|s| SockRef::from(s.get_ref()).send_to(&message, &to)) {
            Ok(r) => {
                r?;
                break;
            }
            Err(_would_block) => continue,
        }
    }
    let packet_len = 20 + message.len() as u64;
    *bytes += packet_len;
    let mut buf = [0u8; 1500];
    loop {
        let mut guard = socket.readable().await?;
        let n = match guard.try_io(|s| {
            use std::io::Read;
            let socket = SockRef::from(s.get_ref());
            let mut socket: &Socket = &socket;
            socket.read(&mut buf)
        }) {
            Ok(r) => r?,
            Err(_would_block) => continue,
        };
        match icmp::echo_answer(&buf[..n]) {
            Some(EchoAnswer::Reply { from, id, seq: s })
                if from == addr && id == echo_id() && s == seq =>
            {
                *bytes += packet_len;
                return Ok(start.elapsed());
            }
            Some(EchoAnswer::Error {
                from,
                to,
                kind,
                code,
                id,
                seq: s,
            }) if to == addr && id == echo_id() && s == seq => {
                *bytes += n as u64;
                let what = match (kind, code) {
                    (3, 0) => "network unreachable".to_string(),
                    (3, 1) => "host unreachable".to_string(),
                    (3, 13) => "administratively prohibited".to_string(),
                    (3, c) => format!("destination unreachable (code {c})"),
                    (_, _) => "time exceeded".to_string(),
                };
                return Err(ProbeError::Unreachable { what, from });
            }
            _ => {}
        }
    }
}
