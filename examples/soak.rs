//! The soak test behind `bench/soak.sh` (root; network namespaces it creates): the real
//! daemon over N simulated lines (modems on ptys, our PPP answer role as the ISPs) under a
//! continuous load of new connections from the LAN, while a chaos loop cuts lines again and
//! again:
//!
//! - `drop`: the far end hangs up (the modem says NO CARRIER);
//! - `silent`: the far end goes quiet without hanging up (only LCP echoes notice);
//! - `hangup`: `eqlplus-dialer hangup LINE`, then `up LINE`;
//! - `reload`: SIGHUP with the configuration unchanged;
//! - `flush`: `nft flush ruleset`, a firewall reload under the daemon.
//!
//! After each cut it waits until every line is up again. It reports the cuts injected, whether
//! the daemon ever died or restarted (must not), the connections that failed outside a cut's
//! window — the window of a line cut ends when the line has left the balance (status no longer
//! `up`), that of a flush when the table is back (must be none) — the connections lost inside
//! windows (in flight on the cut line: expected), the daemon's RSS after warm-up and at the
//! end, and any kernel state left after the daemon stopped (must be none). Exit status 0 only
//! if every check holds.

use std::collections::BTreeMap;
use std::error::Error;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eqlplus_dialer::control::{Request, Response, client};
use eqlplus_dialer::sim::DialAnswer;
use eqlplus_dialer::sim::netns::remove_stale;
use eqlplus_dialer::sim::procstat::rss_kib;
use eqlplus_dialer::sim::web::fetch_within;
use eqlplus_dialer::sim::world::{WEB_SERVER, World, WorldConfig};

const PREFIX: &str = "eqs";
/// A line's window closes this long after it left `up` (its balancer work: emancipate).
const GRACE: Duration = Duration::from_millis(500);

struct Options {
    lines: usize,
    cuts: usize,
    bin: PathBuf,
    seed: u64,
    clients: usize,
    max_rss_growth_kib: i64,
}

fn usage() -> &'static str {
    "usage: soak [--lines N (4)] [--cuts N (100)] [--clients N (4)] [--seed N] \
     [--max-rss-growth-mib N (2)] [--bin PATH (target/release/eqlplus-dialer)]"
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        lines: 4,
        cuts: 100,
        bin: PathBuf::from("target/release/eqlplus-dialer"),
        seed: std::process::id() as u64,
        clients: 4,
        max_rss_growth_kib: 2048,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{a} needs a value"));
        let number = |v: String| v.parse::<u64>().map_err(|e| format!("{a}: {e}"));
        match a.as_str() {
            "--lines" => o.lines = number(value()?)?.clamp(1, 16) as usize,
            "--cuts" => o.cuts = number(value()?)? as usize,
            "--clients" => o.clients = number(value()?)?.clamp(1, 32) as usize,
            "--seed" => o.seed = number(value()?)?,
            "--max-rss-growth-mib" => o.max_rss_growth_kib = number(value()?)? as i64 * 1024,
            "--bin" => o.bin = PathBuf::from(value()?),
            "--help" | "-h" => return Err(usage().into()),
            other => return Err(format!("unknown option {other}\n{}", usage())),
        }
    }
    Ok(o)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Cut {
    Drop,
    Silent,
    Hangup,
    Reload,
    Flush,
}

/// A connection the load made: when, and whether it worked.
#[derive(Clone, Copy)]
struct Attempt {
    start: Instant,
    end: Instant,
    ok: bool,
}

/// A time span in which failures are expected.
struct Window {
    from: Instant,
    to: Instant,
}

struct Soak {
    world: World,
    dir: tempfile::TempDir,
    bin: PathBuf,
    names: Vec<String>,
}

impl Soak {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn socket(&self) -> PathBuf {
        self.path("control.sock")
    }

    fn write_config(&self) -> Result<(), Box<dyn Error>> {
        std::fs::create_dir_all(self.path("locks"))?;
        std::fs::write(
            self.path("dial.chat"),
            "ABORT BUSY ABORT 'NO CARRIER' TIMEOUT 5 '' ATZ OK ATDT\\T CONNECT ''\n",
        )?;
        let mut text = format!(
            "[control]\nsocket = \"{}\"\n[daemon]\nlock_dir = \"{}\"\nresolv_conf = \"{}\"\n",
            self.socket().display(),
            self.path("locks").display(),
            self.path("resolv.conf").display(),
        );
        for (index, line) in self.world.lines.iter().enumerate() {
            let i = index + 1;
            text += &format!(
                "[[line]]\nname = \"ttyS{i}\"\ndevice = \"{}\"\ndial_chat = \"dial.chat\"\n\
                 phone = \"555100{i}\"\nlcp_echo_interval = 0.3\nlcp_echo_failure = 3\n\
                 holdoff = 0.3\nescape_guard = 0.2\nslave = \"eq-ttyS{i}\"\n",
                line.modem.tty().display(),
            );
        }
        std::fs::write(self.path("eqlplus-dialer.toml"), text)?;
        std::fs::set_permissions(
            self.path("dial.chat"),
            std::fs::Permissions::from_mode(0o644),
        )?;
        Ok(())
    }

    fn start_daemon(&self) -> Result<Child, Box<dyn Error>> {
        let log = std::fs::File::create(self.path("daemon.log"))?;
        Ok(Command::new("ip")
            .args(["netns", "exec", &self.world.router.name])
            .arg(&self.bin)
            .args(["daemon", "--config"])
            .arg(self.path("eqlplus-dialer.toml"))
            .env("EQLPLUS_LOG", "eqlplus_dialer=info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?)
    }

    fn cli(&self, args: &[&str]) -> bool {
        Command::new(&self.bin)
            .arg(args[0])
            .arg("--socket")
            .arg(self.socket())
            .args(&args[1..])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Each line's state, by name.
    fn states(&self, rt: &tokio::runtime::Runtime) -> BTreeMap<String, String> {
        let socket = self.socket();
        let answer = rt.block_on(async {
            tokio::time::timeout(
                Duration::from_secs(5),
                client::request(&socket, Request::Status { line: None }),
            )
            .await
        });
        match answer {
            Ok(Ok(Response::Status(report))) => report
                .lines
                .into_iter()
                .map(|l| (l.name, l.state.to_string()))
                .collect(),
            _ => BTreeMap::new(),
        }
    }

    fn wait_until(
        &self,
        rt: &tokio::runtime::Runtime,
        limit: Duration,
        check: impl Fn(&BTreeMap<String, String>) -> bool,
    ) -> Option<Instant> {
        let start = Instant::now();
        while start.elapsed() < limit {
            let states = self.states(rt);
            if check(&states) {
                return Some(Instant::now());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    fn all_up(&self, states: &BTreeMap<String, String>) -> bool {
        states.len() == self.names.len() && states.values().all(|s| s == "up")
    }

    fn table_whole(&self) -> bool {
        // Not Netns::exec: the table is expected to be missing for a moment.
        Command::new("ip")
            .args(["netns", "exec", &self.world.router.name])
            .args(["nft", "list", "chain", "inet", "eqlplus", "mark_new"])
            .stderr(Stdio::null())
            .output()
            .is_ok_and(|o| {
                o.status.success() && String::from_utf8_lossy(&o.stdout).contains("numgen")
            })
    }

    /// Kernel state of ours left in the router namespace.
    fn leftovers(&self) -> Vec<String> {
        let r = &self.world.router;
        let mut left = Vec::new();
        if r.exec(&["nft", "list", "tables"])
            .unwrap()
            .contains("eqlplus")
        {
            left.push("nft table".to_string());
        }
        let rules = r.exec(&["ip", "rule", "list"]).unwrap();
        left.extend(
            rules
                .lines()
                .filter(|l| l.starts_with("77"))
                .map(|l| format!("rule {l}")),
        );
        let routes = r
            .exec(&["ip", "route", "show", "table", "all", "proto", "234"])
            .unwrap();
        left.extend(routes.lines().map(|l| format!("route {l}")));
        let links = r.exec(&["ip", "-o", "link", "show"]).unwrap();
        left.extend(
            links
                .lines()
                .filter(|l| l.contains("eq-ttyS"))
                .map(|l| format!("link {}", l.split(':').nth(1).unwrap_or("?").trim())),
        );
        if let Ok(dir) = std::fs::read_dir(self.path("locks")) {
            left.extend(dir.flatten().map(|e| format!("lock {:?}", e.file_name())));
        }
        if self.socket().exists() {
            left.push("control socket".into());
        }
        left
    }
}

/// The daemon, killed if the soak itself fails half-way (it must never outlive its world).
struct KillOnDrop(Child);

impl std::ops::Deref for KillOnDrop {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn signal(child: &Child, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig);
}

fn main() {
    match run() {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("soak: {e}");
            std::process::exit(2);
        }
    }
}

fn run() -> Result<bool, Box<dyn Error>> {
    let o = options()?;
    if !nix::unistd::Uid::effective().is_root() {
        return Err("needs root (network namespaces)".into());
    }
    if !o.bin.exists() {
        return Err(format!("no daemon binary at {} (--bin)", o.bin.display()).into());
    }
    remove_stale(PREFIX);
    let world = World::build(&WorldConfig {
        lines: vec![vec![DialAnswer::Connect(Some(57_600))]; o.lines],
        rate: None,
        users: vec![],
        prefix: PREFIX.into(),
        ..WorldConfig::default()
    })?;
    let soak = Soak {
        world,
        dir: tempfile::tempdir()?,
        bin: o.bin.clone(),
        names: (1..=o.lines).map(|i| format!("ttyS{i}")).collect(),
    };
    soak.write_config()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut daemon = KillOnDrop(soak.start_daemon()?);
    let pid = daemon.id();
    if soak
        .wait_until(&rt, Duration::from_secs(30), |s| soak.all_up(s))
        .is_none()
    {
        signal(&daemon, nix::sys::signal::Signal::SIGTERM);
        let _ = daemon.wait();
        let log = std::fs::read_to_string(soak.path("daemon.log")).unwrap_or_default();
        return Err(format!("the lines did not come up within 30 s:\n{log}").into());
    }
    println!(
        "soak: {} lines up; {} clients loading; {} cuts (seed {})",
        o.lines, o.clients, o.cuts, o.seed
    );

    // The load: each client opens a new connection for a small object, again and again.
    let attempts: Arc<Mutex<Vec<Attempt>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..o.clients)
        .map(|c| {
            let (attempts, stop) = (attempts.clone(), stop.clone());
            soak.world
                .lan
                .spawn(move || {
                    let mut n = c as u64;
                    while !stop.load(Ordering::Relaxed) {
                        n = n.wrapping_add(1);
                        let size = 4096 + (n * 7919 % 16) * 1024;
                        let start = Instant::now();
                        let ok = fetch_within(
                            WEB_SERVER,
                            size,
                            Duration::from_secs(3),
                            Duration::from_secs(3),
                        )
                        .is_ok();
                        let end = Instant::now();
                        attempts
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(Attempt { start, end, ok });
                        if !ok {
                            std::thread::sleep(Duration::from_millis(50));
                        }
                    }
                })
                .unwrap()
        })
        .collect();
    // Warm up before the first RSS figure: allocator pools, conntrack, the first page loads.
    std::thread::sleep(Duration::from_secs(5));
    let rss_start = rss_kib(pid).unwrap_or(0) as i64;

    // The chaos is reproducible by `--seed`.
    let mut rng = fastrand::Rng::with_seed(o.seed);
    let mut windows: Vec<Window> = Vec::new();
    let mut injected: BTreeMap<Cut, usize> = BTreeMap::new();
    let mut stuck = Vec::new();
    let mut heal_times: Vec<Duration> = Vec::new();
    let kinds = [Cut::Drop, Cut::Silent, Cut::Hangup, Cut::Reload, Cut::Flush];
    for n in 0..o.cuts {
        let cut = kinds[rng.usize(..kinds.len())];
        let index = rng.usize(..o.lines.max(1));
        let name = soak.names[index].clone();
        *injected.entry(cut).or_default() += 1;
        let from = Instant::now();
        let left = |s: &BTreeMap<String, String>| s.get(&name).is_some_and(|st| st != "up");
        let to = match cut {
            Cut::Drop => {
                soak.world.lines[index].modem.drop_call();
                soak.wait_until(&rt, Duration::from_secs(10), left)
            }
            Cut::Silent => {
                soak.world.lines[index].modem.set_silent(true);
                let out = soak.wait_until(&rt, Duration::from_secs(10), left);
                soak.world.lines[index].modem.set_silent(false);
                out
            }
            Cut::Hangup => {
                soak.cli(&["hangup", &name]);
                let out = soak.wait_until(&rt, Duration::from_secs(10), left);
                std::thread::sleep(Duration::from_millis(300));
                soak.cli(&["up", &name]);
                out
            }
            Cut::Reload => {
                signal(&daemon, nix::sys::signal::Signal::SIGHUP);
                std::thread::sleep(Duration::from_millis(300));
                Some(Instant::now())
            }
            Cut::Flush => {
                soak.world
                    .router
                    .exec(&["nft", "flush", "ruleset"])
                    .unwrap();
                let start = Instant::now();
                let mut healed = None;
                while start.elapsed() < Duration::from_secs(10) {
                    if soak.table_whole() {
                        healed = Some(Instant::now());
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                if let Some(at) = healed {
                    heal_times.push(at - from);
                }
                healed
            }
        };
        let Some(to) = to else {
            stuck.push(format!("cut {n} ({cut:?} {name}): no effect within 10 s"));
            windows.push(Window {
                from,
                to: Instant::now() + GRACE,
            });
            continue;
        };
        windows.push(Window {
            from,
            to: to + GRACE,
        });
        if soak
            .wait_until(&rt, Duration::from_secs(30), |s| soak.all_up(s))
            .is_none()
        {
            stuck.push(format!(
                "cut {n} ({cut:?} {name}): lines not all up again within 30 s: {:?}",
                soak.states(&rt)
            ));
        }
        if let Ok(Some(status)) = daemon.try_wait() {
            stuck.push(format!("the daemon exited ({status}) after cut {n}"));
            break;
        }
        // Some load on all lines between cuts.
        std::thread::sleep(Duration::from_millis(rng.u64(300..1000)));
    }
    std::thread::sleep(Duration::from_secs(2));
    let rss_end = rss_kib(pid).unwrap_or(0) as i64;
    let died = daemon.try_wait()?.is_some();
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.join();
    }

    signal(&daemon, nix::sys::signal::Signal::SIGTERM);
    let started = Instant::now();
    let exit = loop {
        if let Some(status) = daemon.try_wait()? {
            break Some(status);
        }
        if started.elapsed() > Duration::from_secs(60) {
            signal(&daemon, nix::sys::signal::Signal::SIGKILL);
            let _ = daemon.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let leftovers = soak.leftovers();

    let attempts = attempts.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let in_window = |a: &Attempt| windows.iter().any(|w| a.start <= w.to && a.end >= w.from);
    let failed: Vec<&Attempt> = attempts.iter().filter(|a| !a.ok).collect();
    let excused = failed.iter().filter(|a| in_window(a)).count();
    let unexcused = failed.len() - excused;
    let growth = rss_end - rss_start;
    let heal = |f: fn(&[Duration]) -> Option<&Duration>| {
        f(&heal_times).map_or("-".to_string(), |d| {
            format!("{:.0} ms", d.as_secs_f64() * 1e3)
        })
    };

    println!("cuts injected: {} ({injected:?})", o.cuts);
    println!(
        "daemon: {} (pid {pid} throughout), exit on SIGTERM: {}",
        if died { "DIED" } else { "alive" },
        exit.map_or("killed after 60 s".to_string(), |s| s.to_string())
    );
    println!(
        "connections: {} made, {} failed in a cut's window (in flight on the cut line), {} failed outside any window",
        attempts.len(),
        excused,
        unexcused
    );
    println!(
        "nft flush ruleset healed in: fastest {}, slowest {}",
        heal(|v| v.iter().min()),
        heal(|v| v.iter().max())
    );
    println!(
        "daemon RSS: {rss_start} KiB after warm-up, {rss_end} KiB at the end ({growth:+} KiB)"
    );
    println!(
        "kernel state after stop: {}",
        if leftovers.is_empty() {
            "none".to_string()
        } else {
            leftovers.join("; ")
        }
    );
    for s in &stuck {
        println!("problem: {s}");
    }
    let ok = !died
        && exit.is_some_and(|s| s.success())
        && unexcused == 0
        && growth <= o.max_rss_growth_kib
        && leftovers.is_empty()
        && stuck.is_empty();
    println!("soak: {}", if ok { "PASS" } else { "FAIL" });
    if !ok {
        let log = std::fs::read_to_string(soak.path("daemon.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(60).collect();
        println!("daemon log (last 60 lines):");
        for l in tail.iter().rev() {
            println!("  {l}");
        }
    }
    Ok(ok)
}
