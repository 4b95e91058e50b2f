//! The kernel balancer in real network namespaces: lan ↔ router ↔ isp1..N ↔ internet, with
//! veth-backed slaves (PPP is not the point here). The internet server counts which line
//! address each connection came from. Root only.

mod support;

use std::collections::HashMap;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eqlplus_dialer::balancer::{Balancer, BalancerConfig, Enslave, Policy};
use support::{Netns, require_root, veth};

const SERVER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
const PORT: u16 = 8080;

fn line_local(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(100, 64, i as u8, 2)
}

fn line_peer(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(100, 64, i as u8, 1)
}

/// Connections seen by the internet server, by source address.
type Hits = Arc<Mutex<HashMap<Ipv4Addr, usize>>>;

struct World {
    lan: Netns,
    router: Netns,
    _isps: Vec<Netns>,
    _internet: Netns,
    hits: Hits,
    stop: Arc<AtomicBool>,
    server: Option<std::thread::JoinHandle<()>>,
}

impl World {
    fn new(lines: usize) -> World {
        let lan = Netns::new("lan");
        let router = Netns::new("rtr");
        let internet = Netns::new("inet");
        veth(&lan, "lan0", &router, "r-lan");
        lan.ip(&["addr", "add", "10.99.0.2/24", "dev", "lan0"]);
        lan.ip(&["route", "add", "default", "via", "10.99.0.1"]);
        router.ip(&["addr", "add", "10.99.0.1/24", "dev", "r-lan"]);
        router.sysctl("net.ipv4.ip_forward=1");
        internet.ip(&["addr", "add", &format!("{SERVER}/32"), "dev", "lo"]);
        let mut isps = Vec::new();
        for i in 1..=lines {
            let isp = Netns::new(&format!("isp{i}"));
            let slave = format!("eq-l{i}");
            veth(&router, &slave, &isp, &format!("up{i}"));
            router.ip(&[
                "addr",
                "add",
                &line_local(i).to_string(),
                "peer",
                &line_peer(i).to_string(),
                "dev",
                &slave,
            ]);
            isp.ip(&[
                "addr",
                "add",
                &line_peer(i).to_string(),
                "peer",
                &line_local(i).to_string(),
                "dev",
                &format!("up{i}"),
            ]);
            isp.sysctl("net.ipv4.ip_forward=1");
            veth(&isp, &format!("tx{i}"), &internet, &format!("ix{i}"));
            isp.ip(&[
                "addr",
                "add",
                &format!("10.200.{i}.1/24"),
                "dev",
                &format!("tx{i}"),
            ]);
            internet.ip(&[
                "addr",
                "add",
                &format!("10.200.{i}.2/24"),
                "dev",
                &format!("ix{i}"),
            ]);
            isp.ip(&["route", "add", "default", "via", &format!("10.200.{i}.2")]);
            internet.ip(&[
                "route",
                "add",
                &format!("100.64.{i}.0/24"),
                "via",
                &format!("10.200.{i}.1"),
            ]);
            isps.push(isp);
        }
        let hits: Hits = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let server = {
            let hits = hits.clone();
            let stop = stop.clone();
            internet.spawn(move || serve(hits, stop))
        };
        // Wait until the server listens.
        std::thread::sleep(Duration::from_millis(100));
        World {
            lan,
            router,
            _isps: isps,
            _internet: internet,
            hits,
            stop,
            server: Some(server),
        }
    }

    fn enslave(&self, i: usize, weight: Option<u32>) -> Enslave {
        Enslave {
            line: format!("line{i}"),
            device: format!("eq-l{i}"),
            local: line_local(i),
            peer: line_peer(i),
            weight,
            speed: None,
            dns: vec![],
        }
    }

    /// Opens `n` new TCP connections from the LAN to the server, one after the other;
    /// returns how many succeeded.
    fn connect_burst(&self, n: usize) -> usize {
        self.lan.run(move || {
            let addr = SocketAddr::from((SERVER, PORT));
            (0..n)
                .filter(|_| {
                    TcpStream::connect_timeout(&addr, Duration::from_secs(2))
                        .map(|mut s| {
                            let mut b = [0u8; 1];
                            let _ = s.read(&mut b);
                        })
                        .is_ok()
                })
                .count()
        })
    }

    fn take_hits(&self) -> HashMap<Ipv4Addr, usize> {
        std::mem::take(&mut *self.hits.lock().unwrap())
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(s) = self.server.take() {
            let _ = s.join();
        }
    }
}

/// Accepts connections, counts them by source, answers one byte and closes.
fn serve(hits: Hits, stop: Arc<AtomicBool>) {
    let listener = TcpListener::bind((SERVER, PORT)).expect("bind server");
    listener.set_nonblocking(true).unwrap();
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((mut stream, peer)) => {
                if let SocketAddr::V4(v4) = peer {
                    *hits.lock().unwrap().entry(*v4.ip()).or_default() += 1;
                }
                let _ = std::io::Write::write_all(&mut stream, b"x");
            }
            Err(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn within(count: usize, expected: f64, tolerance: f64) -> bool {
    (count as f64 - expected).abs() <= expected * tolerance
}

/// Balances 1000 connections under `policy` over lines with `weights`; returns the hits.
fn distribute(lines: usize, policy: Policy, weights: &[Option<u32>]) -> Vec<usize> {
    let world = World::new(lines);
    let specs: Vec<Enslave> = (1..=lines)
        .map(|i| world.enslave(i, weights[i - 1]))
        .collect();
    let config = BalancerConfig {
        policy,
        ..BalancerConfig::default()
    };
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let balancer = world.router.spawn(move || {
        runtime().block_on(async move {
            let mut b = Balancer::start(config).await.expect("start");
            for s in specs {
                b.enslave(s).await.expect("enslave");
            }
            tx.send(()).unwrap();
            let _ = done_rx.recv();
            b.shutdown().await.expect("shutdown");
        })
    });
    rx.recv().unwrap();
    assert_eq!(world.connect_burst(1000), 1000, "every connection succeeds");
    let hits = world.take_hits();
    done_tx.send(()).unwrap();
    balancer.join().unwrap();
    (1..=lines)
        .map(|i| hits.get(&line_local(i)).copied().unwrap_or(0))
        .collect()
}

#[test]
fn round_robin_over_two_and_four_lines() {
    if !require_root("round_robin_over_two_and_four_lines") {
        return;
    }
    for lines in [2, 4] {
        let counts = distribute(lines, Policy::RoundRobin, &vec![None; lines]);
        let expected = 1000.0 / lines as f64;
        for c in &counts {
            assert!(within(*c, expected, 0.03), "{lines} lines: {counts:?}");
        }
    }
}

#[test]
fn weighted_three_to_one() {
    if !require_root("weighted_three_to_one") {
        return;
    }
    let counts = distribute(2, Policy::Weighted, &[Some(3), Some(1)]);
    assert!(within(counts[0], 750.0, 0.05), "{counts:?}");
    assert!(within(counts[1], 250.0, 0.05), "{counts:?}");
}
