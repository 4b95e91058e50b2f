//! The kernel balancer in real network namespaces: lan ↔ router ↔ isp1..N ↔ internet, with
//! veth-backed slaves (PPP is not the point here). The internet server counts which line
//! address each connection came from. Root only.

mod support;

use std::collections::HashMap;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use eqlplus_dialer::balancer::flows::{Flows, MarkTally};
use eqlplus_dialer::balancer::nft::{MARK_BASE, MARK_MASK};
use eqlplus_dialer::balancer::{Balancer, BalancerConfig, Enslave, Policy};
use eqlplus_dialer::net::conntrack::{self, ConntrackEvents, Timeouts};
use eqlplus_dialer::sim::world::{lan_router_internet, veth_line};
use support::inet::{ECHO_PORT, Hits, PORT, SERVER, connect_many, connect_within, serve};
use support::{Netns, require_root};

fn line_local(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(100, 64, i as u8, 2)
}

fn line_peer(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(100, 64, i as u8, 1)
}

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
        // The server, ten more "sites" and a DNS server address: all on the internet's loopback.
        let (lan, router, internet) = lan_router_internet("eqt").unwrap();
        let mut isps = Vec::new();
        for i in 1..=lines {
            let isp = Netns::new(&format!("isp{i}")).unwrap();
            veth_line(
                &router,
                &isp,
                &internet,
                i,
                &format!("eq-l{i}"),
                line_local(i),
                line_peer(i),
            )
            .unwrap();
            isps.push(isp);
        }
        let hits: Hits = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let server = {
            let hits = hits.clone();
            let stop = stop.clone();
            internet.spawn(move || serve(hits, stop)).unwrap()
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
            tier: 0,
            tracked: false,
        }
    }

    /// Opens `n` new TCP connections from the LAN to the server, one after the other;
    /// returns how many succeeded.
    fn connect_burst(&self, n: usize) -> usize {
        self.connect_to(SERVER, n)
    }

    /// Like [`connect_burst`](Self::connect_burst), to `site`.
    fn connect_to(&self, site: Ipv4Addr, n: usize) -> usize {
        self.lan.run(move || connect_many(site, n)).unwrap()
    }
}

impl World {
    /// `eqlplus-dialer balance` over lines 1 and 2 (round-robin) in the router namespace,
    /// once it says it balances; with `log`, its log (info) is piped for the test to read.
    fn start_balance(&self, log: bool) -> std::process::Child {
        let spec = |i: usize| format!("line{i}:eq-l{i}:{}:{}", line_local(i), line_peer(i));
        let mut child = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.router.name,
                env!("CARGO_BIN_EXE_eqlplus-dialer"),
            ])
            .args(["balance", "--policy", "round-robin"])
            .args(["--line", &spec(1), "--line", &spec(2)])
            .env("EQLPLUS_LOG", "eqlplus_dialer=info")
            .stdout(std::process::Stdio::piped())
            .stderr(if log {
                std::process::Stdio::piped()
            } else {
                std::process::Stdio::null()
            })
            .spawn()
            .unwrap();
        let mut line = String::new();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        std::io::BufRead::read_line(&mut out, &mut line).unwrap();
        assert!(line.starts_with("balancing 2 line(s)"), "{line}");
        child
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
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn within(count: usize, expected: f64, tolerance: f64) -> bool {
    (count as f64 - expected).abs() <= expected * tolerance
}

/// What the test asks the balancer, which runs on a thread inside the router namespace.
enum Cmd {
    Enslave(Enslave),
    Emancipate(String),
    Load(String, u64),
    /// Take in the conntrack events so far and apply the lines' open connections (what the
    /// daemon's balancer task does as events come); the same count from a dump (where the
    /// kernel sends no events) must agree.
    Sample,
    Mark(String),
    /// Upstream tracking's verdict on a line.
    Internet(String, bool),
    Shutdown,
}

/// A command's answer: a mark (for `Mark`) or an error.
type Reply = std::sync::mpsc::Sender<Result<Option<u32>, String>>;

struct RouterBalancer {
    tx: std::sync::mpsc::Sender<(Cmd, Reply)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RouterBalancer {
    fn start(world: &World, policy: Policy) -> RouterBalancer {
        let (tx, rx) = std::sync::mpsc::channel::<(Cmd, Reply)>();
        let config = BalancerConfig {
            policy,
            ..BalancerConfig::default()
        };
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = world
            .router
            .spawn(move || {
                runtime().block_on(async move {
                    let mut b = match Balancer::start(config).await {
                        Ok(b) => b,
                        Err(e) => {
                            ready_tx.send(Err(e.to_string())).unwrap();
                            return;
                        }
                    };
                    let mut events = ConntrackEvents::subscribe().expect("conntrack events");
                    let mut flows = Flows::new(MARK_BASE, MARK_MASK, Timeouts::read());
                    ready_tx.send(Ok(())).unwrap();
                    while let Ok((cmd, reply)) = rx.recv() {
                        let result = match cmd {
                            Cmd::Enslave(e) => b.enslave(e).await.map(|_| None).map_err(text),
                            Cmd::Emancipate(l) => {
                                b.emancipate(&l).await.map(|_| None).map_err(text)
                            }
                            Cmd::Load(l, bytes) => {
                                b.set_queued_bytes(&l, bytes);
                                b.refresh().await.map(|_| None).map_err(text)
                            }
                            Cmd::Sample => {
                                sample(&mut b, &mut events, &mut flows).await.map(|_| None)
                            }
                            Cmd::Mark(l) => Ok(b.mark_of(&l)),
                            Cmd::Internet(l, ok) => {
                                b.set_internet(&l, ok).await.map(|_| None).map_err(text)
                            }
                            Cmd::Shutdown => {
                                let r = b.shutdown().await.map(|_| None).map_err(|e| e.to_string());
                                let _ = reply.send(r);
                                return;
                            }
                        };
                        let _ = reply.send(result);
                    }
                })
            })
            .unwrap();
        ready_rx.recv().unwrap().expect("balancer starts");
        RouterBalancer {
            tx,
            thread: Some(thread),
        }
    }

    fn call(&self, cmd: Cmd) -> Result<Option<u32>, String> {
        let (reply_tx, reply_rx) = std::sync::mpsc::channel();
        self.tx.send((cmd, reply_tx)).unwrap();
        reply_rx.recv().unwrap()
    }

    fn shutdown(mut self) {
        self.call(Cmd::Shutdown).expect("shutdown");
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

fn text(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// The balancer task's load input: the conntrack events so far (until none came for 300 ms)
/// into `flows`, each line's open connections into the balancer. A dump must say the same.
async fn sample(
    b: &mut Balancer,
    events: &mut ConntrackEvents,
    flows: &mut Flows,
) -> Result<(), String> {
    while let Ok(batch) = tokio::time::timeout(Duration::from_millis(300), events.read()).await {
        let batch = batch.map_err(text)?;
        assert!(!batch.overrun, "no events lost in a test this small");
        flows.apply(&batch.changes, std::time::Instant::now());
    }
    let now = std::time::Instant::now();
    let tally = flows.tally(now);
    let mut dumped = Flows::new(MARK_BASE, MARK_MASK, Timeouts::read());
    dumped.resync(
        &conntrack::dump(MARK_BASE, MARK_MASK).await.map_err(text)?,
        now,
    );
    let open = |t: &std::collections::BTreeMap<u32, MarkTally>| -> Vec<(u32, u32)> {
        t.iter()
            .map(|(m, t)| (*m, t.open()))
            .filter(|(_, n)| *n > 0)
            .collect()
    };
    if open(&tally) != open(&dumped.tally(now)) {
        return Err(format!(
            "events say {:?}, a dump says {:?}",
            open(&tally),
            open(&dumped.tally(now))
        ));
    }
    b.set_connections(&tally);
    // What `status` and the metrics read: the same counts, by line name.
    let shown: u32 = b.open_connections().lock().unwrap().values().sum();
    let counted: u32 = open(&tally).iter().map(|(_, n)| n).sum();
    if shown != counted {
        return Err(format!(
            "status would show {shown} open, the tally has {counted}"
        ));
    }
    b.refresh().await.map_err(text)
}

/// Hits per line, in line order.
fn per_line(hits: &HashMap<Ipv4Addr, usize>, lines: usize) -> Vec<usize> {
    (1..=lines)
        .map(|i| hits.get(&line_local(i)).copied().unwrap_or(0))
        .collect()
}

/// Balances 1000 connections under `policy` over lines with `weights`; returns the hits.
fn distribute(lines: usize, policy: Policy, weights: &[Option<u32>]) -> Vec<usize> {
    let world = World::new(lines);
    let b = RouterBalancer::start(&world, policy);
    for i in 1..=lines {
        b.call(Cmd::Enslave(world.enslave(i, weights[i - 1])))
            .unwrap();
    }
    assert_eq!(world.connect_burst(1000), 1000, "every connection succeeds");
    b.shutdown();
    per_line(&world.take_hits(), lines)
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

#[test]
fn sticky_keeps_a_pair_on_one_line_and_spreads_sites() {
    if !require_root("sticky_keeps_a_pair_on_one_line_and_spreads_sites") {
        return;
    }
    let world = World::new(2);
    let b = RouterBalancer::start(
        &world,
        Policy::Sticky {
            hold: Duration::from_secs(60),
        },
    );
    for i in 1..=2 {
        b.call(Cmd::Enslave(world.enslave(i, None))).unwrap();
    }
    assert_eq!(world.connect_to(SERVER, 50), 50);
    let hits = per_line(&world.take_hits(), 2);
    assert!(
        hits == vec![50, 0] || hits == vec![0, 50],
        "one pair, one line: {hits:?}"
    );
    let mut used = [0usize; 2];
    for site in 11..=20u8 {
        assert_eq!(world.connect_to(Ipv4Addr::new(198, 51, 100, site), 10), 10);
        let hits = per_line(&world.take_hits(), 2);
        assert!(
            hits.contains(&10),
            "site .{site} stayed on one line: {hits:?}"
        );
        used[if hits[0] == 10 { 0 } else { 1 }] += 1;
    }
    assert!(
        used[0] >= 3 && used[1] >= 3,
        "sites spread over both lines: {used:?}"
    );
    b.shutdown();
}

#[test]
fn least_loaded_avoids_a_line_with_a_full_queue() {
    if !require_root("least_loaded_avoids_a_line_with_a_full_queue") {
        return;
    }
    let world = World::new(2);
    let b = RouterBalancer::start(&world, Policy::LeastLoaded);
    for i in 1..=2 {
        b.call(Cmd::Enslave(world.enslave(i, None))).unwrap();
    }
    assert_eq!(world.connect_burst(100), 100);
    let even = per_line(&world.take_hits(), 2);
    assert!(even[0] >= 40 && even[1] >= 40, "idle lines share: {even:?}");
    b.call(Cmd::Load("line1".into(), 256 * 1024)).unwrap();
    assert_eq!(world.connect_burst(100), 100);
    assert_eq!(per_line(&world.take_hits(), 2), vec![0, 100]);
    b.call(Cmd::Load("line1".into(), 0)).unwrap();
    assert_eq!(world.connect_burst(100), 100);
    let back = per_line(&world.take_hits(), 2);
    assert!(back[0] >= 40, "the drained line is used again: {back:?}");
    b.shutdown();
}

#[test]
fn least_loaded_steers_new_connections_away_from_a_line_busy_with_open_ones() {
    if !require_root("least_loaded_steers_new_connections_away_from_a_line_busy_with_open_ones") {
        return;
    }
    let world = World::new(2);
    let b = RouterBalancer::start(&world, Policy::LeastLoaded);
    b.call(Cmd::Enslave(world.enslave(1, None))).unwrap();
    // Six long-lived connections (a download in progress, say), all on line 1.
    let mut streams: Vec<TcpStream> = world
        .lan
        .run(|| {
            (0..6)
                .map(|_| TcpStream::connect((SERVER, ECHO_PORT)).expect("echo connect"))
                .collect()
        })
        .unwrap();
    assert!(streams.iter_mut().all(echoes));
    b.call(Cmd::Enslave(world.enslave(2, None))).unwrap();
    b.call(Cmd::Sample).unwrap();
    // A new connection would get 1/7 of line 1 or all of line 2: line 2 it is.
    assert_eq!(world.connect_burst(100), 100);
    assert_eq!(
        per_line(&world.take_hits(), 2),
        vec![0, 100],
        "towards the idle line"
    );
    // The connections end (FIN, then TIME_WAIT: no longer open): the lines are even again.
    drop(streams);
    std::thread::sleep(Duration::from_millis(200));
    b.call(Cmd::Sample).unwrap();
    assert_eq!(world.connect_burst(100), 100);
    let even = per_line(&world.take_hits(), 2);
    assert!(even[0] >= 45 && even[1] >= 45, "even again: {even:?}");
    b.shutdown();
}

#[test]
fn least_loaded_counts_a_udp_stream_as_load() {
    if !require_root("least_loaded_counts_a_udp_stream_as_load") {
        return;
    }
    const UDP_PORT: u16 = 8443;
    let world = World::new(2);
    // A UDP echo server in the internet: a QUIC-like flow, both ways.
    let stop = Arc::new(AtomicBool::new(false));
    let echo = {
        let stop = stop.clone();
        world
            ._internet
            .spawn(move || {
                let socket = std::net::UdpSocket::bind((SERVER, UDP_PORT)).unwrap();
                socket
                    .set_read_timeout(Some(Duration::from_millis(100)))
                    .unwrap();
                let mut buf = [0u8; 1500];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((n, from)) = socket.recv_from(&mut buf) {
                        let _ = socket.send_to(&buf[..n], from);
                    }
                }
            })
            .unwrap()
    };
    let b = RouterBalancer::start(&world, Policy::LeastLoaded);
    b.call(Cmd::Enslave(world.enslave(1, None))).unwrap();
    // The flow runs over line 1 for 3 s: long enough for conntrack to call it a stream
    // (assured: traffic both ways after 2 s), which a DNS question and answer never is.
    let echoed = world
        .lan
        .run(|| {
            let socket = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
            socket.connect((SERVER, UDP_PORT)).unwrap();
            socket
                .set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            let mut echoed = 0;
            let mut buf = [0u8; 1500];
            for _ in 0..30 {
                socket.send(&[7u8; 1200]).unwrap();
                if socket.recv(&mut buf).is_ok() {
                    echoed += 1;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            echoed
        })
        .unwrap();
    assert!(echoed >= 25, "the UDP flow was echoed ({echoed} of 30)");
    b.call(Cmd::Enslave(world.enslave(2, None))).unwrap();
    b.call(Cmd::Sample).unwrap();
    // Line 1 carries a stream, line 2 nothing: new connections go to line 2.
    assert_eq!(world.connect_burst(100), 100);
    assert_eq!(
        per_line(&world.take_hits(), 2),
        vec![0, 100],
        "towards the line without the UDP stream"
    );
    b.shutdown();
    stop.store(true, Ordering::Relaxed);
    echo.join().unwrap();
}

/// Source ports of the router's conntrack entries with `mark` towards the echo port.
fn conntrack_sports(world: &World, mark: u32) -> Vec<u16> {
    let out = world
        .router
        .try_exec(&[
            "conntrack",
            "-L",
            "-p",
            "tcp",
            "--dport",
            &ECHO_PORT.to_string(),
            "-m",
            &mark.to_string(),
        ])
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("sport="))
                .and_then(|p| p.parse().ok())
        })
        .collect()
}

fn echoes(stream: &mut TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut buf = [0u8; 4];
    std::io::Write::write_all(stream, b"ping").is_ok()
        && stream.read_exact(&mut buf).is_ok()
        && &buf == b"ping"
}

#[test]
fn emancipate_moves_new_connections_and_drops_only_that_lines_conntrack() {
    if !require_root("emancipate_moves_new_connections_and_drops_only_that_lines_conntrack") {
        return;
    }
    let world = World::new(2);
    let b = RouterBalancer::start(&world, Policy::RoundRobin);
    for i in 1..=2 {
        b.call(Cmd::Enslave(world.enslave(i, None))).unwrap();
    }
    let mark1 = b.call(Cmd::Mark("line1".into())).unwrap().unwrap();
    let mark2 = b.call(Cmd::Mark("line2".into())).unwrap().unwrap();
    // Ten long-lived connections, spread over both lines.
    let mut streams: Vec<TcpStream> = world
        .lan
        .run(|| {
            (0..10)
                .map(|_| TcpStream::connect((SERVER, ECHO_PORT)).expect("echo connect"))
                .collect()
        })
        .unwrap();
    assert!(streams.iter_mut().all(echoes));
    let on_line1 = conntrack_sports(&world, mark1);
    let on_line2 = conntrack_sports(&world, mark2);
    assert_eq!(
        (on_line1.len(), on_line2.len()),
        (5, 5),
        "{on_line1:?} {on_line2:?}"
    );

    b.call(Cmd::Emancipate("line1".into())).unwrap();
    assert!(
        conntrack_sports(&world, mark1).is_empty(),
        "line 1's entries are gone"
    );
    let mut kept = conntrack_sports(&world, mark2);
    kept.sort();
    let mut before = on_line2.clone();
    before.sort();
    assert_eq!(kept, before, "line 2's entries are intact");
    for s in streams.iter_mut() {
        if on_line2.contains(&s.local_addr().unwrap().port()) {
            assert!(echoes(s), "an established connection on line 2 still works");
        }
    }
    // New connections succeed at once, all via line 2.
    let ok = world
        .lan
        .run(|| connect_within(SERVER, 20, Duration::from_secs(1)))
        .unwrap();
    assert_eq!(ok, 20);
    assert_eq!(per_line(&world.take_hits(), 2), vec![0, 20]);

    // With no line at all, connections fail fast (unreachable), not by timeout.
    b.call(Cmd::Emancipate("line2".into())).unwrap();
    let err = world
        .lan
        .run(|| {
            TcpStream::connect_timeout(&SocketAddr::from((SERVER, PORT)), Duration::from_secs(5))
        })
        .unwrap()
        .expect_err("no line is up");
    assert_ne!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
    let route = world
        .router
        .try_exec(&["ip", "route", "get", &SERVER.to_string()])
        .unwrap();
    let said = String::from_utf8_lossy(&route.stderr);
    assert!(
        said.contains("No route to host"),
        "the main table says unreachable: {said}"
    );
    b.shutdown();
}

#[test]
fn dns_servers_are_pinned_and_local_traffic_is_balanced() {
    if !require_root("dns_servers_are_pinned_and_local_traffic_is_balanced") {
        return;
    }
    let world = World::new(2);
    let b = RouterBalancer::start(&world, Policy::RoundRobin);
    let dns = Ipv4Addr::new(198, 51, 100, 53);
    b.call(Cmd::Enslave(world.enslave(1, None))).unwrap();
    let mut second = world.enslave(2, None);
    second.dns = vec![dns];
    b.call(Cmd::Enslave(second)).unwrap();
    assert_eq!(world.connect_to(dns, 20), 20);
    assert_eq!(
        per_line(&world.take_hits(), 2),
        vec![0, 20],
        "DNS only via its line"
    );
    // Connections the router itself starts are balanced too.
    assert_eq!(world.router.run(|| connect_many(SERVER, 100)).unwrap(), 100);
    let local = per_line(&world.take_hits(), 2);
    assert!(local[0] >= 45 && local[1] >= 45, "{local:?}");
    b.shutdown();
}

/// What a user's own firewall and routing look like, for comparison.
fn user_state(world: &World) -> (String, String, String) {
    let table = world
        .router
        .exec(&["nft", "list", "table", "inet", "userfw"])
        .unwrap();
    let rules = world.router.exec(&["ip", "rule", "list"]).unwrap();
    let rules: String = rules
        .lines()
        .filter(|l| !l.starts_with("77"))
        .map(|l| format!("{l}\n"))
        .collect();
    let routes = world
        .router
        .exec(&["ip", "route", "show", "table", "100"])
        .unwrap();
    (table, rules, routes)
}

#[test]
fn a_users_own_nftables_table_rules_and_routes_survive() {
    if !require_root("a_users_own_nftables_table_rules_and_routes_survive") {
        return;
    }
    let world = World::new(2);
    let script = "table inet userfw {\n chain input {\n  type filter hook input priority 0; policy accept;\n  tcp dport 22 counter accept\n }\n}\n";
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &world.router.name, "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            std::io::Write::write_all(c.stdin.as_mut().unwrap(), script.as_bytes())?;
            c.wait()
        })
        .unwrap();
    assert!(out.success());
    world
        .router
        .ip(&[
            "rule",
            "add",
            "pref",
            "100",
            "to",
            "192.0.2.0/24",
            "lookup",
            "100",
        ])
        .unwrap();
    world
        .router
        .ip(&[
            "route",
            "add",
            "192.0.2.0/24",
            "dev",
            "r-lan",
            "table",
            "100",
        ])
        .unwrap();
    let before = user_state(&world);

    let b = RouterBalancer::start(&world, Policy::RoundRobin);
    for i in 1..=2 {
        b.call(Cmd::Enslave(world.enslave(i, None))).unwrap();
    }
    assert_eq!(world.connect_burst(10), 10);
    assert_eq!(user_state(&world), before, "after enslave");
    b.call(Cmd::Emancipate("line1".into())).unwrap();
    assert_eq!(user_state(&world), before, "after emancipate");
    b.shutdown();
    assert_eq!(user_state(&world), before, "after shutdown");
    assert_no_balancer_state(&world.router);
}

/// No table, rule in our range, or route of ours is left in `ns`.
fn assert_no_balancer_state(ns: &Netns) {
    let tables = ns.exec(&["nft", "list", "tables"]).unwrap();
    assert!(!tables.contains("eqlplus"), "{tables}");
    let rules = ns.exec(&["ip", "rule", "list"]).unwrap();
    assert!(!rules.lines().any(|l| l.starts_with("77")), "{rules}");
    let routes = ns
        .exec(&["ip", "route", "show", "table", "all", "proto", "234"])
        .unwrap();
    assert!(routes.trim().is_empty(), "{routes}");
}

#[test]
fn kill_9_then_restart_leaves_nothing_stale() {
    if !require_root("kill_9_then_restart_leaves_nothing_stale") {
        return;
    }
    let world = World::new(2);
    let start = || world.start_balance(false);
    let mut first = start();
    assert_eq!(world.connect_burst(20), 20);
    first.kill().unwrap();
    first.wait().unwrap();
    let rules = world.router.exec(&["ip", "rule", "list"]).unwrap();
    assert_eq!(
        rules.lines().filter(|l| l.starts_with("77")).count(),
        3,
        "{rules}"
    );

    // The restarted balancer replaces the stale state instead of adding to it.
    let second = start();
    let rules = world.router.exec(&["ip", "rule", "list"]).unwrap();
    assert_eq!(
        rules.lines().filter(|l| l.starts_with("77")).count(),
        3,
        "{rules}"
    );
    let routes = world
        .router
        .exec(&["ip", "route", "show", "table", "all", "proto", "234"])
        .unwrap();
    assert_eq!(
        routes.lines().count(),
        3,
        "two line tables and main: {routes}"
    );
    assert_eq!(world.connect_burst(100), 100);
    let hits = per_line(&world.take_hits(), 2);
    assert!(hits[0] >= 45 && hits[1] >= 45, "{hits:?}");

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(second.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = second.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_no_balancer_state(&world.router);
}

/// Waits until `check` holds (polling every 50 ms), up to `limit`; returns how long it took.
fn until(limit: Duration, check: impl Fn() -> bool) -> Option<Duration> {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if check() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

#[test]
fn a_firewall_reload_or_a_deleted_rule_or_route_heals_within_seconds() {
    if !require_root("a_firewall_reload_or_a_deleted_rule_or_route_heals_within_seconds") {
        return;
    }
    let world = World::new(2);
    let child = world.start_balance(true);
    assert_eq!(world.connect_burst(20), 20);
    let router = &world.router;
    let table_back = || {
        router
            .exec(&["nft", "list", "tables"])
            .unwrap()
            .contains("eqlplus")
    };
    let rules_back = || {
        let rules = router.exec(&["ip", "rule", "list"]).unwrap();
        rules.lines().filter(|l| l.starts_with("77")).count() == 3
    };
    let routes_back = || {
        router
            .exec(&["ip", "route", "show", "table", "all", "proto", "234"])
            .unwrap()
            .lines()
            .count()
            == 3
    };

    // A firewall reload: every table goes, ours with them.
    router.exec(&["nft", "flush", "ruleset"]).unwrap();
    let healed = until(Duration::from_secs(5), || {
        table_back()
            && router
                .exec(&["nft", "list", "chain", "inet", "eqlplus", "mark_new"])
                .unwrap()
                .contains("numgen")
    });
    assert!(healed.is_some(), "table not rebuilt within 5 s");
    assert_eq!(
        world.connect_burst(40),
        40,
        "new connections after the rebuild"
    );
    let hits = per_line(&world.take_hits(), 2);
    assert!(
        hits[0] >= 25 && hits[1] >= 25,
        "both lines used again: {hits:?}"
    );

    // One rule of ours, then one line's route, deleted by hand.
    router.ip(&["rule", "del", "pref", "7701"]).unwrap();
    assert!(
        until(Duration::from_secs(5), rules_back).is_some(),
        "rule not restored"
    );
    router.ip(&["route", "flush", "table", "7702"]).unwrap();
    assert!(
        until(Duration::from_secs(5), routes_back).is_some(),
        "route not restored"
    );
    // Part of the table: a rule of a base chain.
    router
        .exec(&["nft", "flush", "chain", "inet", "eqlplus", "postrouting"])
        .unwrap();
    assert!(
        until(Duration::from_secs(5), || router
            .exec(&["nft", "list", "chain", "inet", "eqlplus", "postrouting"])
            .unwrap()
            .contains("masquerade"))
        .is_some(),
        "masquerade rule not restored"
    );
    assert_eq!(world.connect_burst(20), 20);

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("changed from outside") && log.contains("table inet eqlplus missing"),
        "the repair is logged: {log}"
    );
    // Four kinds of damage, each repaired once; our own updates are never taken for damage.
    let repairs = log.matches("changed from outside").count();
    assert!((4..=5).contains(&repairs), "{repairs} repairs: {log}");
    assert_no_balancer_state(&world.router);
}

#[test]
fn lines_without_the_internet_and_backups_carry_nothing_while_a_primary_has_it() {
    if !require_root("lines_without_the_internet_and_backups_carry_nothing_while_a_primary_has_it")
    {
        return;
    }
    let world = World::new(3);
    let b = RouterBalancer::start(&world, Policy::RoundRobin);
    for i in 1..=3 {
        let mut spec = world.enslave(i, None);
        spec.tier = u32::from(i == 3);
        b.call(Cmd::Enslave(spec)).unwrap();
    }
    assert_eq!(world.connect_burst(100), 100);
    assert_eq!(
        per_line(&world.take_hits(), 3),
        vec![50, 50, 0],
        "the backup waits"
    );
    // Line 1 loses the Internet: its connections are dropped, new ones go to line 2.
    let mark = b.call(Cmd::Mark("line1".into())).unwrap().unwrap();
    let _open: Vec<TcpStream> = world
        .lan
        .run(|| {
            (0..4)
                .map(|_| TcpStream::connect((SERVER, ECHO_PORT)).expect("echo connect"))
                .collect()
        })
        .unwrap();
    assert_eq!(conntrack_sports(&world, mark).len(), 2);
    b.call(Cmd::Internet("line1".into(), false)).unwrap();
    assert!(
        conntrack_sports(&world, mark).is_empty(),
        "line 1's entries are gone"
    );
    b.call(Cmd::Internet("line1".into(), false)).unwrap(); // said twice: no change
    assert_eq!(world.connect_burst(60), 60);
    assert_eq!(per_line(&world.take_hits(), 3), vec![0, 60, 0]);
    // A probe of line 1 (a socket with its mark) still leaves by line 1: its routes stay.
    let local = line_local(1);
    let source = world
        .router
        .run(move || {
            let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
            s.set_mark(mark)?;
            s.bind(&SocketAddr::from((local, 0)).into())?;
            s.connect_timeout(
                &SocketAddr::from((SERVER, PORT)).into(),
                Duration::from_secs(2),
            )?;
            // The server answers once it has counted the connection.
            s.set_read_timeout(Some(Duration::from_secs(2)))?;
            let _ = (&s).read(&mut [0u8; 1])?;
            s.local_addr().map(|a| a.as_socket())
        })
        .unwrap()
        .expect("a marked socket connects through its line");
    assert_eq!(source.map(|a| a.ip()), Some(local.into()));
    let seen = world.take_hits();
    assert_eq!(
        per_line(&seen, 3),
        vec![1, 0, 0],
        "the server saw line 1: {seen:?}"
    );
    // Line 2 too: the backup takes every new connection; back, the primaries take them again.
    b.call(Cmd::Internet("line2".into(), false)).unwrap();
    assert_eq!(world.connect_burst(30), 30);
    assert_eq!(per_line(&world.take_hits(), 3), vec![0, 0, 30]);
    b.call(Cmd::Internet("line1".into(), true)).unwrap();
    b.call(Cmd::Internet("line2".into(), true)).unwrap();
    assert_eq!(world.connect_burst(40), 40);
    assert_eq!(per_line(&world.take_hits(), 3), vec![20, 20, 0]);
    b.shutdown();
}
