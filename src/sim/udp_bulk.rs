//! A QUIC-like UDP bulk download: a stream of full datagrams from a server to a client at a
//! fixed rate, the client acknowledging every few, so the flow carries traffic both ways as
//! QUIC does (conntrack calls such a flow "assured" once it is over 2 s old).
//!
//! Protocol: the client sends `GO` and the rate in kbit/s (u32, big endian); the server then
//! sends [`DATAGRAM`]-byte datagrams at that rate to the source it saw (after the router's
//! masquerade: the line's address), each starting with that source's IPv4 address and a
//! sequence number (u32, big endian). The client answers every [`ACK_EVERY`] datagrams with
//! `AK` and ends with `ST`; the server also ends a flow it has heard nothing from for
//! [`SILENT`], so a client that died costs nothing for long.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Bytes of one datagram's payload (a QUIC packet's usual size).
pub const DATAGRAM: usize = 1200;
/// The client acknowledges every this many datagrams.
pub const ACK_EVERY: u64 = 10;
/// A flow the server heard nothing from for this long is over.
pub const SILENT: Duration = Duration::from_secs(2);
/// Flows served at once, at most (a bound against a flood of `GO`s).
const MAX_FLOWS: usize = 16;
/// How late the server may fall behind its schedule before it forgets the debt (a stall
/// must not end in a burst).
const MAX_LAG: Duration = Duration::from_millis(100);
/// The longest any socket call waits, so `stop` is seen soon.
const TICK: Duration = Duration::from_millis(50);

struct Flow {
    interval: Duration,
    next: Instant,
    seq: u32,
    heard: Instant,
}

/// Serves flows until `stop` is set. Blocking: run it on a thread of its own (in the network
/// namespace of "the internet").
pub fn serve(socket: UdpSocket, stop: Arc<AtomicBool>) -> io::Result<()> {
    socket.set_write_timeout(Some(Duration::from_secs(1)))?;
    let mut flows: HashMap<SocketAddr, Flow> = HashMap::new();
    let mut buf = [0u8; 64];
    let mut out = vec![0u8; DATAGRAM];
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        let wait = flows
            .values()
            .map(|f| f.next.saturating_duration_since(now))
            .min()
            .unwrap_or(TICK)
            .clamp(Duration::from_millis(1), TICK);
        socket.set_read_timeout(Some(wait))?;
        match socket.recv_from(&mut buf) {
            Ok((n, peer)) => {
                let now = Instant::now();
                match &buf[..n.min(2)] {
                    b"GO" if n >= 6 => {
                        let kbit = u32::from_be_bytes([buf[2], buf[3], buf[4], buf[5]]).max(1);
                        if flows.len() < MAX_FLOWS || flows.contains_key(&peer) {
                            let interval = Duration::from_secs_f64(
                                (DATAGRAM * 8) as f64 / (f64::from(kbit) * 1000.0),
                            );
                            let flow = flows.entry(peer).or_insert(Flow {
                                interval,
                                next: now,
                                seq: 0,
                                heard: now,
                            });
                            flow.interval = interval;
                            flow.heard = now;
                        }
                    }
                    b"AK" => {
                        if let Some(f) = flows.get_mut(&peer) {
                            f.heard = now;
                        }
                    }
                    b"ST" => {
                        flows.remove(&peer);
                    }
                    _ => {}
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            // An ICMP error from an earlier datagram, say: not the socket's end.
            Err(_) => {}
        }
        let now = Instant::now();
        flows.retain(|_, f| now.saturating_duration_since(f.heard) < SILENT);
        for (peer, f) in flows.iter_mut() {
            if now.saturating_duration_since(f.next) > MAX_LAG {
                f.next = now;
            }
            while f.next <= now {
                let source = match peer {
                    SocketAddr::V4(v4) => v4.ip().octets(),
                    SocketAddr::V6(_) => [0; 4],
                };
                out[..4].copy_from_slice(&source);
                out[4..8].copy_from_slice(&f.seq.to_be_bytes());
                // A datagram the kernel refuses is a lost one, as on the internet.
                let _ = socket.send_to(&out, peer);
                f.seq = f.seq.wrapping_add(1);
                f.next += f.interval;
            }
        }
    }
    Ok(())
}

/// What the client of one flow received.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkReport {
    /// The source address the server saw (the line), from the first datagram.
    pub source: Option<Ipv4Addr>,
    pub datagrams: u64,
    pub bytes: u64,
    /// From the first datagram to the stop.
    pub elapsed: Duration,
}

impl BulkReport {
    /// Goodput in bit/s.
    pub fn goodput(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.elapsed.as_secs_f64().max(1e-6)
    }
}

/// Receives a flow of `kbit` kbit/s from `server` until `stop` is set; `first` is told the
/// source address the server saw as soon as the first datagram arrives. Blocking: run it on a
/// thread (in the LAN's namespace). An error if no datagram came within `start_within`.
pub fn receive(
    server: SocketAddr,
    kbit: u32,
    stop: Arc<AtomicBool>,
    start_within: Duration,
    first: std::sync::mpsc::Sender<Ipv4Addr>,
) -> io::Result<BulkReport> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    socket.connect(server)?;
    socket.set_read_timeout(Some(TICK))?;
    socket.set_write_timeout(Some(Duration::from_secs(1)))?;
    let mut go = *b"GO\0\0\0\0";
    go[2..].copy_from_slice(&kbit.to_be_bytes());
    let begun = Instant::now();
    let mut asked = begun;
    socket.send(&go)?;
    let mut report = BulkReport {
        source: None,
        datagrams: 0,
        bytes: 0,
        elapsed: Duration::ZERO,
    };
    let mut started: Option<Instant> = None;
    let mut heard = begun;
    let mut buf = vec![0u8; DATAGRAM + 100];
    while !stop.load(Ordering::Relaxed) {
        match socket.recv(&mut buf) {
            Ok(n) if n >= 8 => {
                heard = Instant::now();
                if started.is_none() {
                    started = Some(heard);
                    let source = Ipv4Addr::new(buf[0], buf[1], buf[2], buf[3]);
                    report.source = Some(source);
                    let _ = first.send(source);
                }
                report.datagrams += 1;
                report.bytes += n as u64;
                if report.datagrams.is_multiple_of(ACK_EVERY) {
                    let _ = socket.send(b"AK");
                }
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            // ICMP unreachable from the server's side (not up yet): ask again below.
            Err(_) => {}
        }
        let now = Instant::now();
        if started.is_none() && now.duration_since(begun) > start_within {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no datagram from {server} within {start_within:?}"),
            ));
        }
        // The `GO` or the stream was lost (or the server forgot the flow): ask again, as the
        // acknowledgements also keep the flow alive at the server.
        if now.duration_since(heard) > Duration::from_millis(500)
            && now.duration_since(asked) > Duration::from_millis(500)
        {
            asked = now;
            let _ = socket.send(&go);
        }
    }
    report.elapsed = started.map(|s| s.elapsed()).unwrap_or_default();
    // Best effort: a lost stop is ended by the server's own silence timeout.
    let _ = socket.send(b"ST");
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_at_its_rate_over_loopback() {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let server = {
            let stop = stop.clone();
            std::thread::spawn(move || serve(socket, stop))
        };
        let client_stop = Arc::new(AtomicBool::new(false));
        let (first_tx, first_rx) = std::sync::mpsc::channel();
        let client = {
            let stop = client_stop.clone();
            std::thread::spawn(move || receive(addr, 960, stop, Duration::from_secs(5), first_tx))
        };
        let source = first_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(source, Ipv4Addr::LOCALHOST);
        std::thread::sleep(Duration::from_millis(1000));
        client_stop.store(true, Ordering::Relaxed);
        let report = client.join().unwrap().unwrap();
        stop.store(true, Ordering::Relaxed);
        server.join().unwrap().unwrap();
        assert_eq!(report.source, Some(Ipv4Addr::LOCALHOST));
        assert_eq!(report.bytes, report.datagrams * DATAGRAM as u64);
        // 960 kbit/s is 100 datagrams a second; a loaded machine's timers are not exact.
        let kbit = report.goodput() / 1000.0;
        assert!((700.0..1100.0).contains(&kbit), "{kbit} kbit/s");
    }
}
