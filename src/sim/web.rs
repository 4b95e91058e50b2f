//! A browser-like workload: a page of objects fetched over a few parallel connection slots,
//! each object on a NEW TCP connection (HTTP/1.0 style), so a per-connection balancer can
//! spread them over the lines.
//!
//! Protocol, one object per connection: the client sends the object's size as 8 bytes, big
//! endian; the server answers with the 4-byte IPv4 source address it saw (after the router's
//! masquerade: the line's address), then that many bytes, and closes.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Largest object served (a bound against garbage requests).
const MAX_OBJECT: u64 = 64 << 20;

/// Serves objects until `stop` is set. Blocking: run it on a thread of its own (in the
/// network namespace of "the internet").
pub fn serve(listener: TcpListener, stop: Arc<AtomicBool>) {
    let _ = listener.set_nonblocking(true);
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, peer)) => {
                std::thread::spawn(move || {
                    let _ = serve_one(stream, peer);
                });
            }
            Err(_) => std::thread::sleep(Duration::from_millis(2)),
        }
    }
}

fn serve_one(mut stream: TcpStream, peer: SocketAddr) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut size = [0u8; 8];
    stream.read_exact(&mut size)?;
    let size = u64::from_be_bytes(size).min(MAX_OBJECT);
    let source = match peer {
        SocketAddr::V4(v4) => v4.ip().octets(),
        SocketAddr::V6(_) => [0; 4],
    };
    stream.write_all(&source)?;
    let block = vec![0x5au8; 16 * 1024];
    let mut left = size;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        stream.write_all(&block[..n])?;
        left -= n as u64;
    }
    stream.shutdown(Shutdown::Write)
}

/// The sizes of a page: `objects` objects cycling through the powers of two from `min_kib` to
/// `max_kib`, in an order shuffled with a fixed seed (the same page every run).
pub fn page(objects: usize, min_kib: u64, max_kib: u64, seed: u64) -> Vec<u64> {
    let mut sizes_kib = Vec::new();
    let mut k = min_kib.max(1);
    while k <= max_kib.max(min_kib.max(1)) {
        sizes_kib.push(k);
        k *= 2;
    }
    let mut page: Vec<u64> = (0..objects)
        .map(|i| sizes_kib[i % sizes_kib.len()] * 1024)
        .collect();
    fastrand::Rng::with_seed(seed).shuffle(&mut page);
    page
}

/// The result of one page load.
#[derive(Debug, Clone, PartialEq)]
pub struct PageLoad {
    pub bytes: u64,
    pub elapsed: Duration,
    /// Bytes received, by the source address the server saw (the line).
    pub by_source: BTreeMap<Ipv4Addr, u64>,
    /// Objects (connections) fetched, by the source address the server saw.
    pub objects_by_source: BTreeMap<Ipv4Addr, usize>,
    pub failed: usize,
    /// The longest time during the load that no bytes arrived on any connection (from the
    /// first byte to the last): how long a line cut stalls the transfer.
    pub longest_stall: Duration,
}

impl PageLoad {
    /// Goodput in bit/s.
    pub fn goodput(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.elapsed.as_secs_f64().max(1e-6)
    }
}

/// Fetches every object of `sizes` from `server` over `slots` parallel connections (each
/// object a new connection). Blocking: run it on a thread (in the LAN's namespace).
pub fn load_page(server: SocketAddr, sizes: &[u64], slots: usize) -> PageLoad {
    let next = Arc::new(AtomicUsize::new(0));
    let sizes = Arc::new(sizes.to_vec());
    let results = Arc::new(Mutex::new(Tally::default()));
    let arrivals = Arc::new(Arrivals::default());
    let start = Instant::now();
    let workers: Vec<_> = (0..slots.max(1))
        .map(|_| {
            let (next, sizes, results) = (next.clone(), sizes.clone(), results.clone());
            let arrivals = arrivals.clone();
            std::thread::spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&size) = sizes.get(i) else { break };
                    let fetched = fetch(server, size, &arrivals);
                    let mut r = results.lock().unwrap_or_else(|e| e.into_inner());
                    match fetched {
                        Ok((source, bytes)) => {
                            *r.by_source.entry(source).or_default() += bytes;
                            *r.objects_by_source.entry(source).or_default() += 1;
                            r.bytes += bytes;
                        }
                        Err(_) => r.failed += 1,
                    }
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
    let elapsed = start.elapsed();
    let r = std::mem::take(&mut *results.lock().unwrap_or_else(|e| e.into_inner()));
    PageLoad {
        bytes: r.bytes,
        elapsed,
        by_source: r.by_source,
        objects_by_source: r.objects_by_source,
        failed: r.failed,
        longest_stall: arrivals.longest(),
    }
}

/// When bytes last arrived on any of a page's connections, and the longest gap so far.
#[derive(Default)]
struct Arrivals(Mutex<(Option<Instant>, Duration)>);

impl Arrivals {
    fn bytes_arrived(&self) {
        let now = Instant::now();
        let mut a = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(last) = a.0 {
            a.1 = a.1.max(now.duration_since(last));
        }
        a.0 = Some(now);
    }

    fn longest(&self) -> Duration {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).1
    }
}

#[derive(Default)]
struct Tally {
    by_source: BTreeMap<Ipv4Addr, u64>,
    objects_by_source: BTreeMap<Ipv4Addr, usize>,
    bytes: u64,
    failed: usize,
}

fn fetch(server: SocketAddr, size: u64, arrivals: &Arrivals) -> io::Result<(Ipv4Addr, u64)> {
    fetch_observed(
        server,
        size,
        Duration::from_secs(10),
        Duration::from_secs(60),
        &|| arrivals.bytes_arrived(),
    )
}

/// Fetches one object of `size` bytes on a new connection: the source address the server saw
/// (the line) and the bytes received. Connecting may take `connect`, each read `read`.
pub fn fetch_within(
    server: SocketAddr,
    size: u64,
    connect: Duration,
    read: Duration,
) -> io::Result<(Ipv4Addr, u64)> {
    fetch_observed(server, size, connect, read, &|| {})
}

/// [`fetch_within`], calling `arrived` after every read that brought bytes.
fn fetch_observed(
    server: SocketAddr,
    size: u64,
    connect: Duration,
    read: Duration,
    arrived: &dyn Fn(),
) -> io::Result<(Ipv4Addr, u64)> {
    let mut s = TcpStream::connect_timeout(&server, connect)?;
    s.set_read_timeout(Some(read))?;
    s.write_all(&size.to_be_bytes())?;
    let mut source = [0u8; 4];
    s.read_exact(&mut source)?;
    let mut buf = vec![0u8; 16 * 1024];
    let mut got = 0u64;
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        arrived();
        got += n as u64;
    }
    if got != size {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "short object"));
    }
    Ok((Ipv4Addr::from(source), got))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_is_fixed_and_mixed() {
        let p = page(32, 2, 32, 7);
        assert_eq!(p.len(), 32);
        assert_eq!(p, page(32, 2, 32, 7));
        assert_eq!(
            p.iter().sum::<u64>(),
            32 / 5 * (2 + 4 + 8 + 16 + 32) * 1024 + (2 + 4) * 1024
        );
        assert!(p.contains(&2048) && p.contains(&(32 * 1024)));
    }

    #[test]
    fn loads_a_page_over_loopback() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let server = {
            let stop = stop.clone();
            std::thread::spawn(move || serve(listener, stop))
        };
        let sizes = page(12, 1, 8, 1);
        let load = load_page(addr, &sizes, 4);
        stop.store(true, Ordering::Relaxed);
        server.join().unwrap();
        assert_eq!(load.failed, 0);
        assert_eq!(load.bytes, sizes.iter().sum::<u64>());
        assert_eq!(load.by_source.get(&Ipv4Addr::LOCALHOST), Some(&load.bytes));
        assert_eq!(
            load.objects_by_source.get(&Ipv4Addr::LOCALHOST),
            Some(&sizes.len())
        );
    }
}
