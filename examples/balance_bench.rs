//! The balancer benchmark behind `bench/balance.sh` (root; network namespaces it creates).
//!
//! Topology per run, rebuilt for every (lines, mode) so no state carries over:
//!
//! ```text
//!  lan ── router ══ eq-l1..N (veth slaves) ══ isp1..N ── internet (web server)
//! ```
//!
//! Each line is shaped with tc tbf to `--rate-kbit` in both directions (on the ISP's side
//! towards the router, and on the router's slave towards the ISP) with a `--queue-ms` queue —
//! 1 s by default, because a dial-up modem with V.42 and RTS/CTS flow control queues rather
//! than drops (a 200 ms queue drops SYNs and tails and adds seconds of TCP timeouts at
//! random) — optionally with `--delay-ms` of netem on the internet's side of each ISP. The workload is the demo's browser-like page
//! (`sim::web`): `--objects` objects of mixed sizes, each on a new TCP connection, over
//! `--slots` parallel connections. Modes:
//!
//! - a policy name (`round-robin`, `least-loaded`, `weighted`, `sticky`): the project's own
//!   kernel balancer (`balancer::Balancer`: nftables ct marks + policy routing + masquerade)
//!   run by the daemon's balancer task (`least-loaded` follows each line's open connections
//!   by conntrack events);
//! - `ecmp`: Linux multipath routing, one nexthop per line, per-flow L4 hash
//!   (`fib_multipath_hash_policy=1`), with a plain masquerade on the slaves: the baseline.
//!
//! With `--udp-bulk-kbit R` (R > 0), every page load shares the lines with a QUIC-like UDP bulk
//! download (`sim::udp_bulk`): a LAN client asks the internet's web server address (UDP port
//! 8443) for R kbit/s of 1200-byte datagrams, acknowledging every 10, from 2.5 s before the page
//! (so conntrack has marked the flow assured, a stream that `least-loaded` counts like an open
//! TCP connection) to its end. The server tells the client the source it saw, so the bench
//! knows which line carries the flow; a second table gives, per mode, that line's share of
//! the page's connections and bytes against the mean share of the other lines, and whether
//! the router's conntrack entry was assured and balanced (`conntrack -L`). The flow's entry is
//! deleted after each page, so every run picks the flow's line afresh.
//!
//! Goodput is payload bytes over wall time, as a percentage of the sum of the line rates.
//! The tbf rate counts whole packets, so TCP/IP and Ethernet headers cap a single line at about
//! 95.6 % (1448 payload bytes per 1514-byte frame).

use std::collections::BTreeMap;
use std::error::Error;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use eqlplus_dialer::balancer::actor::BalancerHandle;
use eqlplus_dialer::balancer::nft::{MARK_BASE, MARK_MASK};
use eqlplus_dialer::balancer::{Balancer, BalancerConfig, Enslave, Policy};
use eqlplus_dialer::sim::netns::{Netns, remove_stale};
use eqlplus_dialer::sim::udp_bulk::{self, BulkReport};
use eqlplus_dialer::sim::web::{self, PageLoad};
use eqlplus_dialer::sim::world::{WEB_SERVER, lan_router_internet, veth_line};
use eqlplus_dialer::sys::on_path;

const PREFIX: &str = "eqb";
/// The UDP bulk server's port, on the web server's address.
const UDP_PORT: u16 = 8443;
/// How long the UDP flow runs before the page: over conntrack's 2 s, so it is assured.
const UDP_LEAD: Duration = Duration::from_millis(2500);

struct Options {
    lines: Vec<usize>,
    modes: Vec<Mode>,
    rate_kbit: u32,
    delay_ms: u32,
    queue_ms: u32,
    objects: usize,
    min_kib: u64,
    max_kib: u64,
    slots: usize,
    runs: usize,
    udp_bulk_kbit: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            lines: vec![1, 2, 4],
            modes: vec![
                Mode::Eqlplus(Policy::RoundRobin),
                Mode::Eqlplus(Policy::LeastLoaded),
                Mode::Ecmp,
            ],
            rate_kbit: 1000,
            delay_ms: 0,
            queue_ms: 1000,
            objects: 64,
            min_kib: 4,
            max_kib: 128,
            slots: 8,
            runs: 3,
            udp_bulk_kbit: 0,
        }
    }
}

const USAGE: &str = "usage: balance_bench [--lines 1,2,4] [--modes round-robin,least-loaded,ecmp] [--rate-kbit 1000] \
[--delay-ms 0] [--queue-ms 1000] [--objects 64] [--min-kib 4] [--max-kib 128] [--slots 8] [--runs 3] \
[--udp-bulk-kbit 0 (off; else a UDP bulk download of that rate during every page)]";

fn parse_options() -> Result<Options, String> {
    let mut o = Options::default();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let value = args
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        let list = |v: &str| -> Result<Vec<usize>, String> {
            v.split(',')
                .map(|n| n.trim().parse::<usize>().map_err(|e| bad(&e)))
                .collect()
        };
        match flag.as_str() {
            "--lines" => o.lines = list(&value)?,
            "--modes" => {
                o.modes = value
                    .split(',')
                    .map(|m| match m {
                        "ecmp" => Ok(Mode::Ecmp),
                        policy => policy
                            .parse()
                            .map(Mode::Eqlplus)
                            .map_err(|e: String| bad(&e)),
                    })
                    .collect::<Result<_, _>>()?
            }
            "--rate-kbit" => o.rate_kbit = value.parse().map_err(|e| bad(&e))?,
            "--delay-ms" => o.delay_ms = value.parse().map_err(|e| bad(&e))?,
            "--queue-ms" => o.queue_ms = value.parse().map_err(|e| bad(&e))?,
            "--objects" => o.objects = value.parse().map_err(|e| bad(&e))?,
            "--min-kib" => o.min_kib = value.parse().map_err(|e| bad(&e))?,
            "--max-kib" => o.max_kib = value.parse().map_err(|e| bad(&e))?,
            "--slots" => o.slots = value.parse().map_err(|e| bad(&e))?,
            "--runs" => o.runs = value.parse().map_err(|e| bad(&e))?,
            "--udp-bulk-kbit" => o.udp_bulk_kbit = value.parse().map_err(|e| bad(&e))?,
            _ => return Err(format!("unknown option {flag}\n{USAGE}")),
        }
    }
    if o.lines.iter().any(|&n| n == 0 || n > 200) || o.runs == 0 || o.slots == 0 {
        return Err("--lines must be 1..=200 each, --runs and --slots at least 1".into());
    }
    Ok(o)
}

fn line_local(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(100, 64, i as u8, 2)
}

fn line_peer(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(100, 64, i as u8, 1)
}

fn slave(i: usize) -> String {
    format!("eq-l{i}")
}

/// One run's namespaces; dropping it deletes them.
struct Topology {
    lan: Netns,
    router: Netns,
    _isps: Vec<Netns>,
    _internet: Netns,
    stop: Arc<AtomicBool>,
    server: Option<std::thread::JoinHandle<()>>,
    udp_server: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

fn udp_server_addr() -> std::net::SocketAddr {
    std::net::SocketAddr::new(WEB_SERVER.ip(), UDP_PORT)
}

/// A UDP bulk flow running from the LAN's side.
struct Bulk {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<std::io::Result<BulkReport>>>,
    /// The router's conntrack entry of the flow as the page began.
    conntrack: String,
}

impl Drop for Bulk {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What one page's UDP flow did.
struct UdpRun {
    /// The line that carried it (the source the server saw).
    line: Option<usize>,
    kbit: f64,
    /// Its conntrack entry was assured and carried a balancer mark as the page began.
    assured: bool,
    balanced: bool,
}

impl Topology {
    fn build(lines: usize, o: &Options) -> Result<Topology, Box<dyn Error>> {
        let (lan, router, internet) = lan_router_internet(PREFIX).unwrap();
        let rate = format!("{}kbit", o.rate_kbit);
        // Two full frames of burst: enough for tbf to reach its rate, too little to matter.
        let queue = format!("{}ms", o.queue_ms);
        let tbf = |ns: &Netns, dev: &str| {
            ns.exec(&[
                "tc", "qdisc", "replace", "dev", dev, "root", "tbf", "rate", &rate, "burst",
                "3028", "latency", &queue,
            ])
            .unwrap();
        };
        let mut isps = Vec::new();
        for i in 1..=lines {
            let isp = Netns::named(PREFIX, &format!("isp{i}")).unwrap();
            let up = format!("up{i}");
            veth_line(
                &router,
                &isp,
                &internet,
                i,
                &slave(i),
                line_local(i),
                line_peer(i),
            )
            .unwrap();
            // A modem line is narrow and has no offloads: no GSO/GRO super-packets past tbf.
            for (ns, dev) in [(&router, slave(i)), (&isp, up.clone())] {
                ns.exec(&[
                    "ethtool", "-K", &dev, "gso", "off", "tso", "off", "gro", "off",
                ])
                .unwrap();
                tbf(ns, &dev);
            }
            if o.delay_ms > 0 {
                let out = internet
                    .try_exec(&[
                        "tc",
                        "qdisc",
                        "replace",
                        "dev",
                        &format!("ix{i}"),
                        "root",
                        "netem",
                        "delay",
                        &format!("{}ms", o.delay_ms),
                    ])
                    .unwrap();
                if !out.status.success() {
                    return Err(format!(
                        "--delay-ms needs tc netem, which this kernel lacks (sch_netem): {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    )
                    .into());
                }
            }
            isps.push(isp);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let server = {
            let stop = stop.clone();
            internet
                .spawn(move || match std::net::TcpListener::bind(WEB_SERVER) {
                    Ok(l) => {
                        let _ = ready_tx.send(Ok(()));
                        web::serve(l, stop);
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                })
                .unwrap()
        };
        ready_rx.recv()??;
        let udp_server = if o.udp_bulk_kbit > 0 {
            let stop = stop.clone();
            let socket = internet.run(|| std::net::UdpSocket::bind(udp_server_addr()))??;
            Some(internet.spawn(move || udp_bulk::serve(socket, stop))?)
        } else {
            None
        };
        Ok(Topology {
            lan,
            router,
            _isps: isps,
            _internet: internet,
            stop,
            server: Some(server),
            udp_server,
        })
    }

    /// Starts a UDP bulk download of `kbit` and returns once it has run for [`UDP_LEAD`].
    fn start_bulk(&self, kbit: u32) -> Result<Bulk, Box<dyn Error>> {
        let stop = Arc::new(AtomicBool::new(false));
        let (first_tx, first_rx) = std::sync::mpsc::channel();
        let thread = {
            let stop = stop.clone();
            let within = Duration::from_secs(5);
            self.lan
                .spawn(move || udp_bulk::receive(udp_server_addr(), kbit, stop, within, first_tx))?
        };
        let mut bulk = Bulk {
            stop,
            thread: Some(thread),
            conntrack: String::new(),
        };
        if first_rx.recv_timeout(Duration::from_secs(6)).is_err() {
            let e = match bulk.thread.take().map(|t| t.join()) {
                Some(Ok(Err(e))) => e.to_string(),
                _ => "no datagram".into(),
            };
            return Err(format!("the UDP bulk flow did not start: {e}").into());
        }
        std::thread::sleep(UDP_LEAD);
        bulk.conntrack = self.udp_conntrack("-L")?;
        Ok(bulk)
    }

    /// Ends a UDP bulk flow: what it did, and its conntrack entry deleted so that the next
    /// flow is balanced afresh (conntrack keeps an ended UDP stream for minutes, and the
    /// balancer would count it as load all that time).
    fn finish_bulk(
        &self,
        mut bulk: Bulk,
        lines: usize,
    ) -> Result<(UdpRun, BulkReport), Box<dyn Error>> {
        bulk.stop.store(true, Ordering::Relaxed);
        let report = match bulk.thread.take().map(|t| t.join()) {
            Some(Ok(r)) => r?,
            _ => return Err("the UDP bulk client panicked".into()),
        };
        // Let the client's last datagrams pass before the entry goes.
        std::thread::sleep(Duration::from_millis(200));
        self.udp_conntrack("-D")?;
        let ct = &bulk.conntrack;
        let mark = ct
            .split_whitespace()
            .find_map(|w| w.strip_prefix("mark=")?.parse::<u32>().ok());
        let run = UdpRun {
            line: report
                .source
                .and_then(|a| (1..=lines).find(|&i| line_local(i) == a)),
            kbit: report.goodput() / 1000.0,
            assured: ct.contains("[ASSURED]"),
            balanced: mark.is_some_and(|m| m & MARK_MASK == MARK_BASE),
        };
        Ok((run, report))
    }

    /// `conntrack -L` or `-D` of the UDP flows to the bulk server, in the router.
    fn udp_conntrack(&self, op: &str) -> Result<String, Box<dyn Error>> {
        let port = UDP_PORT.to_string();
        let out = self
            .router
            .try_exec(&["conntrack", op, "-p", "udp", "--dport", &port])?;
        // `-D` with nothing to delete fails; the listing is what matters.
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    fn load(&self, sizes: &[u64], slots: usize) -> PageLoad {
        let sizes = sizes.to_vec();
        self.lan
            .run(move || web::load_page(WEB_SERVER, &sizes, slots))
            .unwrap()
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(s) = self.server.take() {
            let _ = s.join();
        }
        if let Some(s) = self.udp_server.take() {
            match s.join() {
                Ok(Err(e)) => eprintln!("UDP bulk server: {e}"),
                Err(_) => eprintln!("UDP bulk server panicked"),
                Ok(Ok(())) => {}
            }
        }
    }
}

/// The project's balancer, running on a thread in the router's namespace until dropped.
struct EqlplusRouting {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), String>>>,
}

impl EqlplusRouting {
    fn start(
        t: &Topology,
        lines: usize,
        policy: Policy,
        o: &Options,
    ) -> Result<Self, Box<dyn Error>> {
        let rate_bps = o.rate_kbit.saturating_mul(1000);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = t
            .router
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?;
                rt.block_on(async move {
                    let config = BalancerConfig {
                        policy,
                        ..BalancerConfig::default()
                    };
                    let b = match Balancer::start(config).await {
                        Ok(b) => b,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.to_string()));
                            return Ok(());
                        }
                    };
                    // The daemon's balancer task: it samples the lines' load for least-loaded.
                    let (b, task) = BalancerHandle::spawn(b, None);
                    for i in 1..=lines {
                        let spec = Enslave {
                            line: format!("line{i}"),
                            device: slave(i),
                            local: line_local(i),
                            peer: line_peer(i),
                            weight: None,
                            speed: Some(rate_bps),
                            dns: vec![],
                            tier: 0,
                            tracked: false,
                        };
                        if let Err(e) = b.enslave(spec, None).await {
                            let _ = ready_tx.send(Err(e.to_string()));
                            return b.shutdown().await;
                        }
                    }
                    let _ = ready_tx.send(Ok(()));
                    let _ = stop_rx.await;
                    let result = b.shutdown().await;
                    let _ = task.await;
                    result
                })
                .map_err(|e| e.to_string())
            })
            .unwrap();
        ready_rx.recv()??;
        Ok(EqlplusRouting {
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }
}

impl Drop for EqlplusRouting {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            match t.join() {
                Ok(Err(e)) => eprintln!("balancer shutdown: {e}"),
                Err(_) => eprintln!("balancer thread panicked"),
                Ok(Ok(())) => {}
            }
        }
    }
}

/// The baseline: a multipath default route hashing each flow's 5-tuple over the lines.
fn start_ecmp(t: &Topology, lines: usize) {
    t.router
        .sysctl("net.ipv4.fib_multipath_hash_policy=1")
        .unwrap();
    let mut route = vec!["route".to_owned(), "add".into(), "default".into()];
    for i in 1..=lines {
        route.extend(
            [
                "nexthop",
                "via",
                &line_peer(i).to_string(),
                "dev",
                &slave(i),
                "weight",
                "1",
            ]
            .map(str::to_owned),
        );
    }
    let route: Vec<&str> = route.iter().map(String::as_str).collect();
    t.router.ip(&route).unwrap();
    t.router
        .exec(&[
            "nft",
            "add table ip ecmpnat; \
         add chain ip ecmpnat post { type nat hook postrouting priority srcnat; }; \
         add rule ip ecmpnat post oifname \"eq-l*\" masquerade",
        ])
        .unwrap();
}

/// What spreads the connections over the lines.
#[derive(Clone, Copy)]
enum Mode {
    Eqlplus(Policy),
    Ecmp,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Eqlplus(p) => p.name(),
            Mode::Ecmp => "ecmp",
        }
    }
}

struct Row {
    lines: usize,
    mode: Mode,
    loads: Vec<PageLoad>,
    /// Per run, with `--udp-bulk-kbit`.
    udp: Vec<UdpRun>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn run_one(lines: usize, mode: Mode, o: &Options) -> Result<Row, Box<dyn Error>> {
    let t = Topology::build(lines, o)?;
    let _eqlplus = match mode {
        Mode::Eqlplus(policy) => Some(EqlplusRouting::start(&t, lines, policy, o)?),
        Mode::Ecmp => {
            start_ecmp(&t, lines);
            None
        }
    };
    // One small page first: ARP, route caches and the server's threads are warm.
    let warm = t.load(&web::page(lines * 2, 1, 1, 1), lines * 2);
    if warm.failed > 0 {
        return Err(format!(
            "{} over {lines} lines: the warm-up page failed",
            mode.name()
        )
        .into());
    }
    let mut loads = Vec::new();
    let mut udp = Vec::new();
    for run in 0..o.runs {
        // Run k loads the same page for every mode; each run shuffles it differently, so no
        // policy profits from one lucky order of object sizes.
        let sizes = web::page(o.objects, o.min_kib, o.max_kib, run as u64 + 1);
        let bulk = match o.udp_bulk_kbit {
            0 => None,
            kbit => Some(t.start_bulk(kbit)?),
        };
        let load = t.load(&sizes, o.slots);
        let udp_note = match bulk {
            Some(bulk) => {
                let (u, report) = t.finish_bulk(bulk, lines)?;
                let note = format!(
                    "  udp: line {} ({}) {:.0} kbit/s{}{}",
                    u.line.map_or("?".into(), |l| l.to_string()),
                    report.source.map_or("?".into(), |a| a.to_string()),
                    u.kbit,
                    if u.assured {
                        ", assured"
                    } else {
                        ", NOT assured"
                    },
                    if u.balanced {
                        ", balanced"
                    } else {
                        ", no balancer mark"
                    },
                );
                udp.push(u);
                note
            }
            None => String::new(),
        };
        if load.failed > 0 {
            return Err(format!(
                "{}, {lines} lines, run {run}: {} objects failed",
                mode.name(),
                load.failed
            )
            .into());
        }
        let pct = 100.0 * load.goodput() / (lines as f64 * f64::from(o.rate_kbit) * 1000.0);
        eprintln!(
            "  {:<12} lines={lines} run={} {:>6.2} s {:>7.0} kbit/s {pct:5.1} %{udp_note}",
            mode.name(),
            run + 1,
            load.elapsed.as_secs_f64(),
            load.goodput() / 1000.0
        );
        loads.push(load);
    }
    Ok(Row {
        lines,
        mode,
        loads,
        udp,
    })
}

fn print_table(rows: &[Row], o: &Options, page_bytes: u64) {
    println!();
    println!(
        "workload: {} objects of {}..{} KiB ({:.0} KiB), one connection each, {} parallel; \
         lines {} kbit/s each (tbf, {} ms queue){}{}; median of {} runs (page shuffled per run)",
        o.objects,
        o.min_kib,
        o.max_kib,
        page_bytes as f64 / 1024.0,
        o.slots,
        o.rate_kbit,
        o.queue_ms,
        if o.delay_ms > 0 {
            format!(", +{} ms delay", o.delay_ms)
        } else {
            String::new()
        },
        if o.udp_bulk_kbit > 0 {
            format!(", + a {} kbit/s UDP bulk flow", o.udp_bulk_kbit)
        } else {
            String::new()
        },
        o.runs
    );
    println!(
        "{:>5}  {:<12} {:>8} {:>12} {:>10} {:>8}  share by line (%)",
        "lines", "mode", "time s", "goodput kb/s", "% line sum", "min..max"
    );
    for r in rows {
        let sum = r.lines as f64 * f64::from(o.rate_kbit) * 1000.0;
        let pcts: Vec<f64> = r.loads.iter().map(|l| 100.0 * l.goodput() / sum).collect();
        let lo = pcts.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = pcts.iter().copied().fold(0.0, f64::max);
        let secs = median(r.loads.iter().map(|l| l.elapsed.as_secs_f64()).collect());
        let goodput = median(r.loads.iter().map(PageLoad::goodput).collect());
        let mut by_line: BTreeMap<Ipv4Addr, u64> = BTreeMap::new();
        for l in &r.loads {
            for (a, b) in &l.by_source {
                *by_line.entry(*a).or_default() += b;
            }
        }
        let total: u64 = by_line.values().sum();
        let shares: Vec<String> = (1..=r.lines)
            .map(|i| {
                let b = by_line.get(&line_local(i)).copied().unwrap_or(0);
                format!("{:.0}", 100.0 * b as f64 / total.max(1) as f64)
            })
            .collect();
        println!(
            "{:>5}  {:<12} {:>8.2} {:>12.0} {:>9.1}% {:>3.0}..{:<3.0}  {}",
            r.lines,
            r.mode.name(),
            secs,
            goodput / 1000.0,
            median(pcts),
            lo,
            hi,
            shares.join("/")
        );
    }
    if o.udp_bulk_kbit > 0 {
        print_udp_table(rows, o);
    }
}

/// Per mode: the line of the UDP bulk flow against the others, for the page's connections and
/// bytes (each run's shares, averaged over the runs).
fn print_udp_table(rows: &[Row], o: &Options) {
    println!();
    println!(
        "UDP bulk flow: {} kbit/s of {}-byte datagrams, acked every {}, from {:.1} s before each page \
         to its end; shares of the page on the flow's line vs the mean of the other lines, mean of runs",
        o.udp_bulk_kbit,
        udp_bulk::DATAGRAM,
        udp_bulk::ACK_EVERY,
        UDP_LEAD.as_secs_f64()
    );
    println!(
        "{:>5}  {:<12} {:>9} {:>8} {:>8}  {:>15}  {:>15}  {:>12}",
        "lines",
        "mode",
        "udp line",
        "udp kb/s",
        "assured",
        "conns % udp/oth",
        "bytes % udp/oth",
        "goodput kb/s"
    );
    for r in rows {
        // (connections, bytes) shares of the flow's line and the others' mean, per run.
        let mut udp_share = (Vec::new(), Vec::new());
        let mut other_share = (Vec::new(), Vec::new());
        for (load, u) in r.loads.iter().zip(&r.udp) {
            let Some(line) = u.line else { continue };
            let objects: usize = load.objects_by_source.values().sum();
            let conns = |i| {
                let n = load.objects_by_source.get(&line_local(i)).copied();
                100.0 * n.unwrap_or(0) as f64 / objects.max(1) as f64
            };
            let bytes = |i| {
                let b = load.by_source.get(&line_local(i)).copied();
                100.0 * b.unwrap_or(0) as f64 / load.bytes.max(1) as f64
            };
            udp_share.0.push(conns(line));
            udp_share.1.push(bytes(line));
            if r.lines > 1 {
                let others = (1..=r.lines).filter(|&i| i != line);
                let n = (r.lines - 1) as f64;
                other_share
                    .0
                    .push(others.clone().map(conns).sum::<f64>() / n);
                other_share.1.push(others.map(bytes).sum::<f64>() / n);
            }
        }
        let mean = |v: &[f64]| match v.len() {
            0 => "-".to_owned(),
            n => format!("{:.1}", v.iter().sum::<f64>() / n as f64),
        };
        let lines: Vec<String> = r
            .udp
            .iter()
            .map(|u| u.line.map_or("?".into(), |l| l.to_string()))
            .collect();
        let assured = r.udp.iter().filter(|u| u.assured && u.balanced).count();
        println!(
            "{:>5}  {:<12} {:>9} {:>8.0} {:>8}  {:>15}  {:>15}  {:>12.0}",
            r.lines,
            r.mode.name(),
            lines.join(","),
            median(r.udp.iter().map(|u| u.kbit).collect()),
            format!("{assured}/{}", r.udp.len()),
            format!("{}/{}", mean(&udp_share.0), mean(&other_share.0)),
            format!("{}/{}", mean(&udp_share.1), mean(&other_share.1)),
            median(r.loads.iter().map(PageLoad::goodput).collect()) / 1000.0
        );
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let o = parse_options()?;
    if !nix::unistd::geteuid().is_root() {
        return Err("the benchmark needs root (network namespaces, tc, nftables)".into());
    }
    remove_stale(PREFIX);
    // Fail early with a clear message when a tool is missing.
    let conntrack = (o.udp_bulk_kbit > 0).then_some("conntrack");
    for tool in ["ip", "tc", "nft", "ethtool"].into_iter().chain(conntrack) {
        if !on_path(tool) {
            return Err(format!("{tool} is missing (bench/balance.sh installs it)").into());
        }
    }
    let page_bytes: u64 = web::page(o.objects, o.min_kib, o.max_kib, 1).iter().sum();
    let mut rows = Vec::new();
    for &lines in &o.lines {
        for &mode in &o.modes {
            rows.push(run_one(lines, mode, &o)?);
        }
    }
    print_table(&rows, &o, page_bytes);
    Ok(())
}
