//! "The internet" of the network tests: a server that counts connections by source address
//! (which line they came through), and clients that open many connections.

use std::collections::HashMap;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The server's address (on the internet namespace's loopback, with the rest of 198.51.100.0/24).
pub const SERVER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
/// Counted connections: one byte back, then closed.
pub const PORT: u16 = 8080;
/// Echo connections that stay open.
pub const ECHO_PORT: u16 = 8081;

/// Connections seen by the server, by source address.
pub type Hits = Arc<Mutex<HashMap<Ipv4Addr, usize>>>;

/// On PORT: counts connections by source, answers one byte and closes. On ECHO_PORT: echoes
/// until the client closes (long-lived connections).
pub fn serve(hits: Hits, stop: Arc<AtomicBool>) {
    let listener = TcpListener::bind(("0.0.0.0", PORT)).expect("bind server");
    let echo = TcpListener::bind(("0.0.0.0", ECHO_PORT)).expect("bind echo");
    listener.set_nonblocking(true).unwrap();
    echo.set_nonblocking(true).unwrap();
    while !stop.load(Ordering::Relaxed) {
        let mut idle = true;
        if let Ok((mut stream, peer)) = listener.accept() {
            idle = false;
            if let SocketAddr::V4(v4) = peer {
                *hits.lock().unwrap().entry(*v4.ip()).or_default() += 1;
            }
            let _ = std::io::Write::write_all(&mut stream, b"x");
        }
        if let Ok((mut stream, _)) = echo.accept() {
            idle = false;
            std::thread::spawn(move || {
                let _ = stream.set_nonblocking(false);
                let mut buf = [0u8; 256];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 || std::io::Write::write_all(&mut stream, &buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
        if idle {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// `n` connections to `site`, one after the other; how many succeeded.
pub fn connect_many(site: Ipv4Addr, n: usize) -> usize {
    connect_within(site, n, Duration::from_secs(2))
}

/// `n` connections to `site`, each given `limit` to connect; how many succeeded. Each waits
/// for the server's byte, so the server has counted it when this returns.
pub fn connect_within(site: Ipv4Addr, n: usize, limit: Duration) -> usize {
    let addr = SocketAddr::from((site, PORT));
    (0..n)
        .filter(|_| {
            TcpStream::connect_timeout(&addr, limit)
                .map(|mut s| {
                    let mut b = [0u8; 1];
                    let _ = s.read(&mut b);
                })
                .is_ok()
        })
        .count()
}
