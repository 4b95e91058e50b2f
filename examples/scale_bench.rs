//! The scale benchmark behind `bench/scale.sh` (root; network namespaces it creates): the real
//! daemon dialling N simulated lines (modems on ptys paced to `--rate`, our PPP answer role as
//! the ISPs, `sim::world`) with the configuration `demo` writes (`sim::dialer`), in ONE daemon.
//!
//! Stages: the daemon starts with the first stage's lines (8), then the configuration grows
//! (32, then N) and is reloaded; the lines already up stay up. At each stage, once every line
//! is up and a few seconds have passed, it measures the daemon's RSS (`VmRSS`), its CPU over
//! `--idle-secs` without traffic (utime+stime from /proc/PID/stat; the programs it ran, i.e.
//! nft, separately from cutime+cstime) and `status` over the control socket (50 requests, one
//! connection each, as the CLI does). With all N lines: the daemon's CPU per Mbit/s while a
//! page loads over all of them, the failover of one line (its ISP hangs up: until `status` no
//! longer shows it up, until the kernel's pick map no longer holds its mark, whether new
//! connections right after all succeed), and a cold start of all N lines (after a shutdown,
//! whose time it also gives). Everything it built is removed at the end, on Ctrl-C too.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use eqlplus_dialer::control::{LineState, Request, StatusReport};
use eqlplus_dialer::sim::DialAnswer;
use eqlplus_dialer::sim::dialer::{self, Dialer, DialerSetup};
use eqlplus_dialer::sim::netns::remove_stale;
use eqlplus_dialer::sim::procstat::{cpu_times, rss_kib};
use eqlplus_dialer::sim::web::{fetch_within, page};
use eqlplus_dialer::sim::world::{WEB_SERVER, World, WorldConfig};

const PREFIX: &str = "eqsc";

struct Options {
    lines: usize,
    rate: u32,
    idle: Duration,
    stages: Vec<usize>,
    bin: PathBuf,
    status_requests: usize,
    strace: Option<Duration>,
}

fn usage() -> &'static str {
    "usage: scale_bench [--lines N (64)] [--rate RATE (256kbit)] [--idle-secs S (60)] \
     [--stages A,B,… (8,32)] [--status-requests N (50)] [--strace-secs S (off: strace -c -f \
     of the idle daemon with all lines)] [--bin PATH (target/release/eqlplus-dialer)]"
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        lines: 64,
        rate: 256_000,
        idle: Duration::from_secs(60),
        stages: vec![8, 32],
        bin: PathBuf::from("target/release/eqlplus-dialer"),
        status_requests: 50,
        strace: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{a} needs a value"));
        let number = |v: String| v.parse::<u64>().map_err(|e| format!("{a}: {e}"));
        match a.as_str() {
            "--lines" => o.lines = number(value()?)?.clamp(1, 250) as usize,
            "--rate" => o.rate = eqlplus_dialer::cmd::demo::parse_rate(&value()?)?,
            "--idle-secs" => o.idle = Duration::from_secs(number(value()?)?),
            "--stages" => {
                o.stages = value()?
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| number(s.to_string()).map(|n| n as usize))
                    .collect::<Result<_, _>>()?
            }
            "--status-requests" => o.status_requests = number(value()?)?.max(1) as usize,
            "--strace-secs" => o.strace = Some(Duration::from_secs(number(value()?)?)),
            "--bin" => o.bin = PathBuf::from(value()?),
            "--help" | "-h" => return Err(usage().into()),
            other => return Err(format!("unknown option {other}\n{}", usage())),
        }
    }
    o.stages.retain(|&s| s >= 1 && s < o.lines);
    o.stages.sort_unstable();
    o.stages.dedup();
    o.stages.push(o.lines);
    Ok(o)
}

fn main() {
    let o = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("scale_bench: needs root (network namespaces)");
        std::process::exit(2);
    }
    if !o.bin.exists() {
        eprintln!(
            "scale_bench: no daemon binary at {} (--bin)",
            o.bin.display()
        );
        std::process::exit(2);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("scale_bench: {e}");
            std::process::exit(2);
        }
    };
    let code = rt.block_on(async {
        match guarded(&o).await {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("scale_bench: {e}");
                eprintln!("(everything it built has been removed)");
                1
            }
        }
    });
    std::process::exit(code);
}

/// The benchmark, stopped by Ctrl-C or SIGTERM; the world outlives the daemon either way.
async fn guarded(o: &Options) -> Result<(), Box<dyn Error>> {
    use tokio::signal::unix::{SignalKind, signal};
    // Before anything is built: a Ctrl-C while the world is being built is seen afterwards.
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    remove_stale(PREFIX);
    let dir = tempfile::Builder::new().prefix("eqlplus-scale").tempdir()?;
    let account = ("scale".to_string(), "scale-secret".to_string());
    let built = Instant::now();
    let world = tokio::task::block_in_place(|| {
        World::build(&WorldConfig {
            lines: vec![vec![DialAnswer::Connect(Some(o.rate))]; o.lines],
            rate: Some(o.rate),
            users: vec![account.clone()],
            prefix: PREFIX.into(),
            ..WorldConfig::default()
        })
    })?;
    println!(
        "world: {} lines at {} kbit/s built in {:.1} s",
        o.lines,
        o.rate / 1000,
        built.elapsed().as_secs_f64()
    );
    let setup = DialerSetup {
        account: Some(account),
        ..DialerSetup::default()
    };
    let outcome = tokio::select! {
        r = bench(o, &world, dir.path(), setup) => r,
        _ = interrupt.recv() => Err("interrupted".into()),
        _ = terminate.recv() => Err("terminated".into()),
    };
    // The daemon (dropped with the bench's future) is gone; now the namespaces go.
    tokio::task::block_in_place(|| drop(world));
    outcome
}

/// One stage's figures.
struct Stage {
    lines: usize,
    up_after: Duration,
    how: String,
    rss_kib: u64,
    idle: Cpu,
    status: Latency,
}

async fn bench(
    o: &Options,
    world: &World,
    dir: &Path,
    mut setup: DialerSetup,
) -> Result<(), Box<dyn Error>> {
    let up_limit = |lines: usize| Duration::from_secs(60 + lines as u64);
    let mut stages = Vec::new();
    let mut daemon: Option<Dialer> = None;
    let mut before = 0;
    for &lines in &o.stages {
        setup.lines = lines;
        let config = dialer::write_config(dir, world, &setup)?;
        let start = Instant::now();
        let how = match &daemon {
            None => {
                daemon = Some(Dialer::start(
                    &o.bin,
                    world,
                    dir,
                    &config,
                    Some("eqlplus_dialer=info"),
                )?);
                "cold start".to_string()
            }
            Some(d) => {
                d.command(Request::Reload).await?;
                format!("reload, +{}", lines - before)
            }
        };
        let d = daemon.as_ref().ok_or("no daemon")?;
        wait_all_up(d, lines, up_limit(lines)).await?;
        let up_after = start.elapsed();
        println!(
            "{lines} lines up after {:.2} s ({how}); idle for {} s…",
            up_after.as_secs_f64(),
            o.idle.as_secs()
        );
        // Tracking's first rounds and the first LCP echoes over before the quiet starts.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let idle = Cpu::over(d.pid(), o.idle).await?;
        let rss_kib = rss_kib(d.pid()).ok_or("no VmRSS")?;
        let status = status_latency(d, o.status_requests).await?;
        stages.push(Stage {
            lines,
            up_after,
            how,
            rss_kib,
            idle,
            status,
        });
        before = lines;
    }
    let d = daemon.as_ref().ok_or("no daemon")?;
    let n = o.lines;
    let strace = match o.strace {
        Some(secs) => Some(strace(d.pid(), secs).await?),
        None => None,
    };

    // A page over all lines: objects of 2 to 32 KiB (as the demo's), as many at once as there
    // are lines.
    println!("loading a page over {n} lines…");
    let sizes = page(8 * n, 2, 32, 7);
    let cpu = CpuMark::now(d.pid())?;
    let (load, busy_status) = tokio::join!(world.load_page(&sizes, n), async {
        // A moment into the load, `status` while the lines are busy.
        tokio::time::sleep(Duration::from_secs(1)).await;
        status_latency(d, o.status_requests).await
    });
    let load = load?;
    let busy = cpu.since(d.pid())?;
    let busy_status = busy_status?;
    if load.failed > 0 {
        for l in d.log_tail(40) {
            eprintln!("  {l}");
        }
        return Err(format!(
            "{} object(s) of the page failed ({} KiB in {:.1} s, by line: {:?})",
            load.failed,
            load.bytes / 1024,
            load.elapsed.as_secs_f64(),
            load.by_source
        )
        .into());
    }
    let mbits = load.goodput() / 1e6;
    let carried = load.by_source.len();

    // Failover: the ISP of a line in the middle hangs up.
    let victim = n.div_ceil(2);
    let name = format!("ttyS{victim}");
    println!("failover: {name}'s ISP hangs up…");
    let mark = line_mark(world, victim)?;
    // Under least-loaded a line is in the map unless it looks busy: the page's connections
    // must have closed first.
    let settle = Instant::now();
    while !tokio::task::block_in_place(|| pick_marks(world))?.contains(&mark) {
        if settle.elapsed() > Duration::from_secs(30) {
            return Err(format!("{name}'s mark {mark:#x} not in the pick map within 30 s").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let failover = failover(world, d, victim, mark).await?;
    let probe = tokio::task::block_in_place(|| connections(world, 2 * n))?;
    let back = d
        .wait_for(
            &format!("{name} back up"),
            Duration::from_secs(60),
            Duration::from_millis(50),
            |s| line_state(s, &name) == Some(LineState::Up),
        )
        .await?;

    // Shutdown and a cold start of all lines at once.
    println!("restarting the daemon with all {n} lines…");
    let mut old = daemon.take().ok_or("no daemon")?;
    let stopped = tokio::task::block_in_place(|| old.stop(Duration::from_secs(60)));
    drop(old);
    let config = dialer::write_config(dir, world, &setup)?;
    let start = Instant::now();
    let fresh = Dialer::start(&o.bin, world, dir, &config, Some("eqlplus_dialer=info"))?;
    wait_all_up(&fresh, n, up_limit(n)).await?;
    let cold = start.elapsed();
    let rss_fresh = rss_kib(fresh.pid());

    println!();
    println!(
        "scale benchmark: {n} simulated lines at {} kbit/s in one daemon (release build {}); \
         policy least-loaded, default tracking and LCP echoes; idle = {} s without traffic; \
         CPU from /proc/PID/stat (children = the nft runs it waited for)",
        o.rate / 1000,
        std::env::var("EQLPLUS_COMMIT").unwrap_or_else(|_| "?".into()),
        o.idle.as_secs()
    );
    println!();
    println!(
        "| lines | all up after | RSS | idle CPU, daemon | idle CPU, children | status median / max |"
    );
    println!("|---|---|---|---|---|---|");
    for s in &stages {
        println!(
            "| {} | {:.2} s ({}) | {:.1} MiB | {:.2} % | {:.2} % | {} |",
            s.lines,
            s.up_after.as_secs_f64(),
            s.how,
            s.rss_kib as f64 / 1024.0,
            s.idle.own_percent(),
            s.idle.children_percent(),
            s.status
        );
    }
    println!();
    println!(
        "page load over {n} lines: {:.1} MiB in {:.1} s = {mbits:.2} Mbit/s ({:.0} % of the line sum), \
         {carried} lines carried some; daemon CPU {:.2} s = {:.1} % of a core → {:.2} % of a core \
         per Mbit/s; children {:.2} s; status meanwhile {busy_status}",
        load.bytes as f64 / (1 << 20) as f64,
        load.elapsed.as_secs_f64(),
        100.0 * load.goodput() / (f64::from(o.rate) * n as f64),
        busy.own_secs,
        busy.own_percent(),
        busy.own_percent() / mbits.max(1e-6),
        busy.children_secs,
    );
    println!(
        "failover of {name} among {n} (its ISP hangs up: LCP Terminate-Request, then NO CARRIER): \
         status not up after {:.0} ms, its mark out of the pick map after {:.0} ms; \
         new connections right after: {}/{} succeeded; back up (redialled) after {:.1} s",
        failover.status.as_secs_f64() * 1e3,
        failover.pick.as_secs_f64() * 1e3,
        probe.0,
        probe.1,
        back.as_secs_f64()
    );
    println!(
        "shutdown with {n} lines up: {}; cold start of {n} lines: all up after {:.2} s, RSS {}",
        stopped.map_or("killed after 60 s".to_string(), |(status, took)| format!(
            "{:.2} s ({status})",
            took.as_secs_f64()
        )),
        cold.as_secs_f64(),
        rss_fresh.map_or("?".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
    );
    if let Some(text) = strace {
        println!();
        println!("strace -c -f of the idle daemon with {n} lines:");
        println!("{text}");
    }
    drop(fresh);
    Ok(())
}

async fn wait_all_up(d: &Dialer, lines: usize, limit: Duration) -> Result<Duration, String> {
    d.wait_for(
        &format!("all {lines} lines up"),
        limit,
        Duration::from_millis(50),
        |s| s.lines.len() == lines && s.lines.iter().all(|l| l.state == LineState::Up),
    )
    .await
}

fn line_state(s: &StatusReport, name: &str) -> Option<LineState> {
    s.lines
        .iter()
        .find(|l| l.name == name)
        .map(|l| l.state.clone())
}

/// A process's CPU times and those of the children it waited for, in seconds.
#[derive(Clone, Copy)]
struct CpuMark {
    at: Instant,
    own: f64,
    children: f64,
}

impl CpuMark {
    fn now(pid: u32) -> Result<CpuMark, String> {
        let t = cpu_times(pid).map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
        Ok(CpuMark {
            at: Instant::now(),
            own: t.own,
            children: t.children,
        })
    }

    fn since(self, pid: u32) -> Result<Cpu, String> {
        let now = CpuMark::now(pid)?;
        Ok(Cpu {
            wall: now.at.duration_since(self.at).as_secs_f64(),
            own_secs: now.own - self.own,
            children_secs: now.children - self.children,
        })
    }
}

/// CPU used over a wall-clock span.
struct Cpu {
    wall: f64,
    own_secs: f64,
    children_secs: f64,
}

impl Cpu {
    async fn over(pid: u32, span: Duration) -> Result<Cpu, String> {
        let mark = CpuMark::now(pid)?;
        tokio::time::sleep(span).await;
        mark.since(pid)
    }

    fn own_percent(&self) -> f64 {
        100.0 * self.own_secs / self.wall.max(1e-6)
    }

    fn children_percent(&self) -> f64 {
        100.0 * self.children_secs / self.wall.max(1e-6)
    }
}

/// `status` round trips over the control socket, each on a new connection as the CLI makes.
struct Latency {
    median: Duration,
    max: Duration,
}

impl std::fmt::Display for Latency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.1} / {:.1} ms",
            self.median.as_secs_f64() * 1e3,
            self.max.as_secs_f64() * 1e3
        )
    }
}

async fn status_latency(d: &Dialer, requests: usize) -> Result<Latency, String> {
    let mut times = Vec::with_capacity(requests);
    for _ in 0..requests {
        let start = Instant::now();
        d.status().await?;
        times.push(start.elapsed());
    }
    times.sort_unstable();
    Ok(Latency {
        median: times[times.len() / 2],
        max: times[times.len() - 1],
    })
}

/// The firewall mark of line `i`: its route table (the one with its slave's default route,
/// tagged proto 234) and the rule that sends that mark there.
fn line_mark(world: &World, i: usize) -> Result<u32, String> {
    let r = &world.router;
    let slave = format!("eq-ttyS{i}");
    let routes = r
        .exec(&["ip", "route", "show", "table", "all", "proto", "234"])
        .map_err(|e| e.to_string())?;
    let table = routes
        .lines()
        .filter(|l| l.starts_with("default") && l.contains(&format!("dev {slave} ")))
        .find_map(|l| {
            l.split_whitespace()
                .skip_while(|w| *w != "table")
                .nth(1)
                .map(str::to_string)
        })
        .ok_or_else(|| format!("no route table for {slave} in:\n{routes}"))?;
    let rules = r.exec(&["ip", "rule", "list"]).map_err(|e| e.to_string())?;
    let mark = rules
        .lines()
        .find_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            if !words.windows(2).any(|w| w == ["lookup", table.as_str()]) {
                return None;
            }
            let at = words.iter().position(|w| *w == "fwmark")?;
            let value = words.get(at + 1)?.split('/').next()?;
            u32::from_str_radix(value.trim_start_matches("0x"), 16).ok()
        })
        .ok_or_else(|| format!("no fwmark rule for table {table} in:\n{rules}"))?;
    Ok(mark)
}

/// The marks in the balancer's pick map (`nft -j list map inet eqlplus pick`).
fn pick_marks(world: &World) -> Result<Vec<u32>, String> {
    let out = world
        .router
        .exec(&["nft", "-j", "list", "map", "inet", "eqlplus", "pick"])
        .map_err(|e| e.to_string())?;
    let json: serde_json::Value = serde_json::from_str(&out).map_err(|e| e.to_string())?;
    let mut marks = Vec::new();
    for item in json["nftables"].as_array().into_iter().flatten() {
        for elem in item["map"]["elem"].as_array().into_iter().flatten() {
            // [key, value] pairs; the value is the mark.
            if let Some(mark) = elem.get(1).and_then(serde_json::Value::as_u64) {
                marks.push(mark as u32);
            }
        }
    }
    Ok(marks)
}

struct Failover {
    status: Duration,
    pick: Duration,
}

/// Line `i`'s ISP hangs up; how long until `status` stops showing it up and until its mark
/// leaves the pick map (both polled every 10 ms or so).
async fn failover(world: &World, d: &Dialer, i: usize, mark: u32) -> Result<Failover, String> {
    let name = format!("ttyS{i}");
    let start = Instant::now();
    world.hang_up(i).map_err(|e| e.to_string())?;
    let (mut status, mut pick) = (None, None);
    while start.elapsed() < Duration::from_secs(30) {
        if status.is_none()
            && let Ok(s) = d.status().await
            && line_state(&s, &name) != Some(LineState::Up)
        {
            status = Some(start.elapsed());
        }
        if pick.is_none()
            && tokio::task::block_in_place(|| pick_marks(world))
                .is_ok_and(|marks| !marks.contains(&mark))
        {
            pick = Some(start.elapsed());
        }
        if let (Some(status), Some(pick)) = (status, pick) {
            return Ok(Failover { status, pick });
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Err(format!(
        "{name} did not fail over within 30 s (status: {status:?}, pick map: {pick:?})"
    ))
}

/// `count` new connections from the LAN, 8 at a time: (succeeded, made).
fn connections(world: &World, count: usize) -> Result<(usize, usize), String> {
    world
        .lan
        .run(move || {
            let threads: Vec<_> = (0..8)
                .map(|t| {
                    std::thread::spawn(move || {
                        (t..count)
                            .step_by(8)
                            .filter(|_| {
                                fetch_within(
                                    WEB_SERVER,
                                    1024,
                                    Duration::from_secs(3),
                                    Duration::from_secs(3),
                                )
                                .is_ok()
                            })
                            .count()
                    })
                })
                .collect();
            threads
                .into_iter()
                .map(|t| t.join().unwrap_or(0))
                .sum::<usize>()
        })
        .map(|ok| (ok, count))
        .map_err(|e| e.to_string())
}

/// `strace -c -f -p PID` for `secs`: its summary table.
async fn strace(pid: u32, secs: Duration) -> Result<String, String> {
    let child = tokio::process::Command::new("timeout")
        .args(["-s", "INT", &secs.as_secs().to_string()])
        .args(["strace", "-c", "-f", "-p", &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("strace: {e}"))?;
    let out = tokio::time::timeout(secs + Duration::from_secs(10), child.wait_with_output())
        .await
        .map_err(|_| "strace did not end".to_string())?
        .map_err(|e| format!("strace: {e}"))?;
    // Its table, without the lines about each thread it attached to.
    Ok(String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| !l.starts_with("strace: Process"))
        .collect::<Vec<_>>()
        .join("\n"))
}
