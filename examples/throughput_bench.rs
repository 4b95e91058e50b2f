//! The throughput ceiling of one line, behind `bench/throughput.sh` (root; network namespaces
//! it creates, `eqtp<pid>-*`, removed at the end, on an error and on Ctrl-C too).
//!
//! One simulated line, unpaced (the modem forwards as fast as both ends go): the whole
//! product path
//!
//! ```text
//!  internet (TCP) → ISP: TUN → our PPP, answer role → sim modem (pty master) ⇄ pty ⇄
//!  the daemon (router namespace): PPP → its TUN slave → kernel (nftables) → LAN (TCP)
//! ```
//!
//! Each run moves `--bytes` (1 GB) or `--seconds` (30 s) of TCP bulk data, whichever ends
//! first, from the internet to the LAN (download) and then from the LAN to the internet
//! (upload), checks every byte against the sender's pattern, and reports Mbit/s and CPU
//! seconds per GB (10^9 bytes of payload): of the daemon (`/proc/PID/stat`, all its threads),
//! of the far end (this process from `getrusage(RUSAGE_SELF)` minus the two TCP endpoint
//! threads, each from `getrusage(RUSAGE_THREAD)`: the sim modem, the ISP's PPP and TUN, and the
//! world's idle servers) and of the path (the two together). The median of `--runs` (3) runs
//! is printed last.

use std::error::Error;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use eqlplus_dialer::control::{LineState, Request, Response, client};
use eqlplus_dialer::sim::DialAnswer;
use eqlplus_dialer::sim::netns::remove_stale;
use eqlplus_dialer::sim::procstat::cpu_times;
use eqlplus_dialer::sim::world::{World, WorldConfig};

const PREFIX: &str = "eqtp";
/// The bulk server: on the internet's loopback, beside the world's web server.
const SERVER: &str = "198.51.100.10:5201";
/// Bytes per write and read.
const CHUNK: usize = 64 * 1024;
/// The sender's pattern repeats every this many bytes: a prime, so a segment lost, doubled
/// or misplaced by any whole number of chunks does not line up again.
const PATTERN: usize = 65_521;
/// A transfer that moves no byte for this long has failed.
const STALL: Duration = Duration::from_secs(10);

/// Set by SIGINT/SIGTERM: everything winds down and the world is removed.
static STOP: AtomicBool = AtomicBool::new(false);

struct Options {
    runs: usize,
    bytes: u64,
    seconds: f64,
    bin: PathBuf,
    /// TCP congestion control of both endpoints.
    cc: String,
}

fn usage() -> &'static str {
    "usage: throughput_bench [--runs N (3)] [--bytes N (1000000000)] [--seconds S (30)] \
     [--bin PATH (target/release/eqlplus-dialer)] [--cc cubic|bbr|reno (cubic)]\n\
     Each direction of each run moves --bytes or runs --seconds, whichever ends first."
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        runs: 3,
        bytes: 1_000_000_000,
        seconds: 30.0,
        bin: PathBuf::from("target/release/eqlplus-dialer"),
        cc: "cubic".into(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--runs" => o.runs = value()?.parse::<usize>().map_err(|e| e.to_string())?.max(1),
            "--bytes" => o.bytes = value()?.parse().map_err(|e| format!("{a}: {e}"))?,
            "--seconds" => o.seconds = value()?.parse().map_err(|e| format!("{a}: {e}"))?,
            "--bin" => o.bin = PathBuf::from(value()?),
            "--cc" => o.cc = value()?,
            "--help" | "-h" => return Err(usage().into()),
            other => return Err(format!("unknown option {other}\n{}", usage())),
        }
    }
    if o.seconds.is_nan() || o.seconds <= 0.0 || o.bytes == 0 {
        return Err("--bytes and --seconds must be positive".into());
    }
    Ok(o)
}

fn main() {
    // Before any thread exists: SIGINT and SIGTERM go to the waiter below only (threads
    // inherit the mask; std resets it in children, so the daemon gets its signals).
    let mut signals = nix::sys::signal::SigSet::empty();
    signals.add(nix::sys::signal::Signal::SIGINT);
    signals.add(nix::sys::signal::Signal::SIGTERM);
    if let Err(e) = signals.thread_block() {
        eprintln!("throughput: cannot block signals: {e}");
        std::process::exit(2);
    }
    std::thread::spawn(move || {
        if signals.wait().is_ok() {
            eprintln!("throughput: interrupted; cleaning up");
            STOP.store(true, Ordering::Relaxed);
        }
    });
    match run() {
        Ok(()) => {}
        Err(e) => {
            eprintln!("throughput: {e}");
            std::process::exit(if STOP.load(Ordering::Relaxed) { 130 } else { 1 });
        }
    }
}

fn run() -> Result<(), Box<dyn Error>> {
    let o = options()?;
    if !nix::unistd::Uid::effective().is_root() {
        return Err("needs root (network namespaces)".into());
    }
    if !o.bin.exists() {
        return Err(format!("no daemon binary at {} (--bin)", o.bin.display()).into());
    }
    remove_stale(PREFIX);
    let world = World::build(&WorldConfig {
        lines: vec![vec![DialAnswer::Connect(None)]],
        rate: None,
        users: vec![],
        prefix: PREFIX.into(),
        ..WorldConfig::default()
    })?;
    let dir = tempfile::Builder::new().prefix("eqlplus-tput").tempdir()?;
    let config = write_config(dir.path(), &world)?;
    let log = std::fs::File::create(dir.path().join("daemon.log"))?;
    let daemon = Daemon(
        Command::new("ip")
            .args(["netns", "exec", &world.router.name])
            .arg(&o.bin)
            .args(["daemon", "--config"])
            .arg(&config)
            // Its own process group: Ctrl-C reaches this process only, which stops the
            // daemon in order (SIGTERM) before the world goes.
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?,
    );
    let result = bench(&o, &world, dir.path(), daemon.0.id());
    if result.is_err() {
        let log = std::fs::read_to_string(dir.path().join("daemon.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        eprintln!("last daemon log lines:");
        for l in tail.iter().rev() {
            eprintln!("  {l}");
        }
    }
    drop(daemon);
    drop(world);
    result
}

fn bench(o: &Options, world: &World, dir: &Path, daemon: u32) -> Result<(), Box<dyn Error>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let socket = dir.join("control.sock");
    wait_up(&rt, &socket, Duration::from_secs(60))?;
    println!(
        "one unpaced line up (daemon pid {daemon}); each direction: {} bytes or {} s, TCP {}, {} run(s)",
        o.bytes, o.seconds, o.cc, o.runs
    );
    let pattern: Vec<u8> = {
        let mut rng = fastrand::Rng::with_seed(13);
        let once: Vec<u8> = (0..PATTERN).map(|_| rng.u8(..)).collect();
        // Twice over, so any slice of up to PATTERN bytes from any offset is one slice.
        once.iter().chain(&once).copied().collect()
    };
    let pattern: &'static [u8] = Box::leak(pattern.into_boxed_slice());
    let mut down = Vec::new();
    let mut up = Vec::new();
    for run in 1..=o.runs {
        for (direction, figures) in [(Direction::Down, &mut down), (Direction::Up, &mut up)] {
            let f = measure(o, world, daemon, direction, pattern)?;
            println!("run {run} {}", f.line(direction));
            figures.push(f);
        }
    }
    println!("median of {} run(s):", o.runs);
    for (direction, figures) in [(Direction::Down, &down), (Direction::Up, &up)] {
        println!("  {}", Figures::median(figures).figures(direction));
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Internet → LAN.
    Down,
    /// LAN → internet.
    Up,
}

/// One direction of one run.
#[derive(Clone, Copy, Default)]
struct Figures {
    bytes: u64,
    seconds: f64,
    daemon_cpu: f64,
    far_cpu: f64,
    endpoints_cpu: f64,
}

impl Figures {
    fn mbit(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.seconds / 1e6
    }

    fn per_gb(&self, cpu: f64) -> f64 {
        cpu / (self.bytes as f64 / 1e9)
    }

    fn line(&self, direction: Direction) -> String {
        format!(
            "{} ({:.2} GB in {:.1} s)",
            self.figures(direction),
            self.bytes as f64 / 1e9,
            self.seconds
        )
    }

    fn figures(&self, direction: Direction) -> String {
        let name = match direction {
            Direction::Down => "download",
            Direction::Up => "upload  ",
        };
        format!(
            "{name}: {:6.1} Mbit/s; CPU s/GB: daemon {:.2}, far end {:.2}, path {:.2} \
             (TCP endpoints {:.2}); daemon {:.0} % of a core",
            self.mbit(),
            self.per_gb(self.daemon_cpu),
            self.per_gb(self.far_cpu),
            self.per_gb(self.daemon_cpu + self.far_cpu),
            self.per_gb(self.endpoints_cpu),
            100.0 * self.daemon_cpu / self.seconds,
        )
    }

    /// Each figure's median on its own (per GB figures from the medians of the per GB values).
    fn median(all: &[Figures]) -> Figures {
        let med = |f: &dyn Fn(&Figures) -> f64| {
            let mut v: Vec<f64> = all.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        // Scaled to 1 GB in the median time: `line` then prints the median rates.
        let seconds = med(&|f| f.seconds / f.bytes as f64 * 1e9);
        Figures {
            bytes: 1_000_000_000,
            seconds,
            daemon_cpu: med(&|f| f.per_gb(f.daemon_cpu)),
            far_cpu: med(&|f| f.per_gb(f.far_cpu)),
            endpoints_cpu: med(&|f| f.per_gb(f.endpoints_cpu)),
        }
    }
}

/// How an endpoint gets its connection: accepts or connects.
type Opener = Box<dyn FnOnce() -> Result<TcpStream, String> + Send>;

/// One transfer, with the CPU each part used meanwhile.
fn measure(
    o: &Options,
    world: &World,
    daemon: u32,
    direction: Direction,
    pattern: &'static [u8],
) -> Result<Figures, Box<dyn Error>> {
    if STOP.load(Ordering::Relaxed) {
        return Err("interrupted".into());
    }
    let (send_ns, recv_ns) = match direction {
        Direction::Down => (&world.internet, &world.lan),
        Direction::Up => (&world.lan, &world.internet),
    };
    let server: SocketAddr = SERVER.parse()?;
    let listener = world.internet.run(move || TcpListener::bind(server))??;
    let (bytes, limit) = (o.bytes, Duration::from_secs_f64(o.seconds));
    let (cc_send, cc_recv) = (o.cc.clone(), o.cc.clone());
    let daemon_before = proc_cpu(daemon)?;
    let process_before = rusage(libc::RUSAGE_SELF);
    let start = Instant::now();
    // The server side (internet) accepts, the client side (LAN) connects; either may send.
    let accept = move || -> Result<TcpStream, String> { accept_within(&listener, STALL) };
    let connect = move || -> Result<TcpStream, String> { connect_within(server, STALL) };
    let (send_stream, recv_stream): (Opener, Opener) = match direction {
        Direction::Down => (Box::new(accept), Box::new(connect)),
        Direction::Up => (Box::new(connect), Box::new(accept)),
    };
    let receiver = recv_ns.spawn(move || {
        let cpu = rusage(libc::RUSAGE_THREAD);
        let got = recv_stream()
            .and_then(|s| congestion(s, &cc_recv))
            .and_then(|s| receive(s, pattern));
        (got, rusage(libc::RUSAGE_THREAD) - cpu)
    })?;
    let sender = send_ns.spawn(move || {
        let cpu = rusage(libc::RUSAGE_THREAD);
        let sent = send_stream()
            .and_then(|s| congestion(s, &cc_send))
            .and_then(|s| send(s, pattern, bytes, limit));
        (sent, rusage(libc::RUSAGE_THREAD) - cpu)
    })?;
    let (sent, send_cpu) = sender.join().map_err(|_| "the sender panicked")?;
    let (received, recv_cpu) = receiver.join().map_err(|_| "the receiver panicked")?;
    let seconds = start.elapsed().as_secs_f64();
    let process = rusage(libc::RUSAGE_SELF) - process_before;
    let daemon_cpu = proc_cpu(daemon)? - daemon_before;
    if STOP.load(Ordering::Relaxed) {
        return Err("interrupted".into());
    }
    let sent = sent.map_err(|e| format!("sender: {e}"))?;
    let received = received.map_err(|e| format!("receiver: {e}"))?;
    if received != sent {
        return Err(format!("sent {sent} bytes, received {received}").into());
    }
    Ok(Figures {
        bytes: received,
        seconds,
        daemon_cpu,
        far_cpu: (process - send_cpu - recv_cpu).max(0.0),
        endpoints_cpu: send_cpu + recv_cpu,
    })
}

/// Sets the connection's congestion control (the machine's default varies: bbr, cubic).
fn congestion(s: TcpStream, cc: &str) -> Result<TcpStream, String> {
    let s = socket2::Socket::from(s);
    s.set_tcp_congestion(cc.as_bytes())
        .map_err(|e| format!("TCP congestion control {cc}: {e}"))?;
    Ok(s.into())
}

fn accept_within(listener: &TcpListener, limit: Duration) -> Result<TcpStream, String> {
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let start = Instant::now();
    loop {
        match listener.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).map_err(|e| e.to_string())?;
                return Ok(s);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if start.elapsed() > limit || STOP.load(Ordering::Relaxed) {
                    return Err("no connection came".into());
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(format!("accept: {e}")),
        }
    }
}

/// Connects, retrying while the route through the line is not there yet.
fn connect_within(server: SocketAddr, limit: Duration) -> Result<TcpStream, String> {
    let start = Instant::now();
    loop {
        match TcpStream::connect_timeout(&server, Duration::from_secs(2)) {
            Ok(s) => return Ok(s),
            Err(e) if start.elapsed() > limit || STOP.load(Ordering::Relaxed) => {
                return Err(format!("connect to {server}: {e}"));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Sends the pattern until `bytes` or `limit`; the count sent.
fn send(mut s: TcpStream, pattern: &[u8], bytes: u64, limit: Duration) -> Result<u64, String> {
    s.set_write_timeout(Some(STALL))
        .map_err(|e| e.to_string())?;
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < bytes && start.elapsed() < limit && !STOP.load(Ordering::Relaxed) {
        let at = (sent % PATTERN as u64) as usize;
        let n = CHUNK.min(PATTERN).min((bytes - sent) as usize);
        let n = s
            .write(&pattern[at..at + n])
            .map_err(|e| format!("write after {sent} bytes: {e}"))?;
        sent += n as u64;
    }
    s.shutdown(Shutdown::Write).map_err(|e| e.to_string())?;
    // The receiver closes once it has seen the end: then every byte is through.
    let mut rest = [0u8; 1];
    let _ = s.read(&mut rest);
    Ok(sent)
}

/// Receives to the end, checking each byte against the pattern; the count received.
fn receive(mut s: TcpStream, pattern: &[u8]) -> Result<u64, String> {
    s.set_read_timeout(Some(STALL)).map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; CHUNK.min(PATTERN)];
    let mut got = 0u64;
    loop {
        let n = s
            .read(&mut buf)
            .map_err(|e| format!("read after {got} bytes: {e}"))?;
        if n == 0 {
            return Ok(got);
        }
        let at = (got % PATTERN as u64) as usize;
        if buf[..n] != pattern[at..at + n] {
            let k = (0..n).find(|&k| buf[k] != pattern[at + k]).unwrap_or(0);
            return Err(format!(
                "byte {} differs from what was sent",
                got + k as u64
            ));
        }
        got += n as u64;
    }
}

/// CPU seconds (user + system) of a process and all its threads.
fn proc_cpu(pid: u32) -> Result<f64, String> {
    cpu_times(pid)
        .map(|t| t.own)
        .map_err(|e| format!("the daemon (pid {pid}) is gone: {e}"))
}

/// CPU seconds (user + system) from getrusage.
fn rusage(who: libc::c_int) -> f64 {
    // SAFETY: getrusage fills the struct it is given; zeroed is a valid rusage.
    let mut r: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(who, &mut r) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(r.ru_utime) + secs(r.ru_stime)
}

/// Polls the daemon's status until its one line is up.
fn wait_up(rt: &tokio::runtime::Runtime, socket: &Path, limit: Duration) -> Result<(), String> {
    let start = Instant::now();
    let mut last = String::from("no answer");
    while start.elapsed() < limit {
        if STOP.load(Ordering::Relaxed) {
            return Err("interrupted".into());
        }
        let answer = rt.block_on(async {
            tokio::time::timeout(
                Duration::from_secs(5),
                client::request(socket, Request::Status { line: None }),
            )
            .await
        });
        if let Ok(Ok(Response::Status(report))) = answer {
            if report.lines.iter().any(|l| l.state == LineState::Up) {
                return Ok(());
            }
            last = report
                .lines
                .iter()
                .map(|l| format!("{} {}", l.name, l.state))
                .collect::<Vec<_>>()
                .join(", ");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("the line is not up within {limit:?} ({last})"))
}

/// The daemon's configuration: one line on the world's modem, the product's defaults.
fn write_config(dir: &Path, world: &World) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir.join("locks"))?;
    std::fs::write(
        dir.join("dial.chat"),
        "ABORT BUSY ABORT 'NO CARRIER' TIMEOUT 5 '' ATZ OK ATDT\\T CONNECT ''\n",
    )?;
    let line = world
        .lines
        .first()
        .ok_or_else(|| std::io::Error::other("the world has no line"))?;
    let text = format!(
        "[control]\nsocket = \"{}\"\n[daemon]\nlock_dir = \"{}\"\nresolv_conf = \"{}\"\n\
         [[line]]\nname = \"ttyS1\"\ndevice = \"{}\"\ndial_chat = \"{}\"\nphone = \"5550001\"\n\
         escape_guard = 0.2\nslave = \"eq-ttyS1\"\n",
        dir.join("control.sock").display(),
        dir.join("locks").display(),
        dir.join("resolv.conf").display(),
        line.modem.tty().display(),
        dir.join("dial.chat").display(),
    );
    let path = dir.join("eqlplus-dialer.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

/// The daemon; SIGTERM and a bounded wait when dropped, then SIGKILL: it never outlives its
/// world.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
