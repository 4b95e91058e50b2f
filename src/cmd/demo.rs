//! `eqlplus-dialer demo`: the whole program on simulated equipment, no hardware needed.
//!
//! It builds a little world (see [`crate::sim::world`]): per line a simulated modem on a pty
//! whose data is paced to the line rate, an ISP namespace whose PPP peer is our answer role,
//! "the internet" with a web server, and a LAN. It starts the real daemon in the router
//! namespace with a generated configuration, loads a browser-like page from the LAN once over
//! one line and once over all of them, prints the speedup and each line's share, and removes
//! every namespace and device again — on Ctrl-C too.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use crate::control::{LineState, Request, StatusReport};
use crate::sim::DialAnswer;
use crate::sim::dialer::{self, Dialer, DialerSetup};
use crate::sim::upstream::Upstream;
use crate::sim::web::{PageLoad, page};
use crate::sim::world::{World, WorldConfig, line_local};
use crate::sys::on_path;

/// Up to this many lines, the demo shows each; above, a summary.
const SHOW_EACH: usize = 8;

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Number of simulated modem lines.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=64))]
    pub lines: u8,
    /// Each line's rate, e.g. 512kbit, 56kbit, 1mbit.
    #[arg(long, default_value = "512kbit", value_parser = parse_rate)]
    pub rate: u32,
    /// Each line's own rate, comma-separated (e.g. 1mbit,256kbit): as many lines as rates.
    #[arg(long, value_delimiter = ',', value_parser = parse_rate, value_name = "LIST", conflicts_with = "lines")]
    pub rates: Vec<u32>,
    /// One Multilink PPP bundle of all lines: every line calls one ISP that answers
    /// Multilink, and says bundle = "isp" in the daemon's configuration. Shows a single large
    /// download over the bundle instead of the page.
    #[arg(long)]
    pub bundle: bool,
    /// Only measure one download of this size (e.g. 2MiB, 500KiB, bytes) over all lines,
    /// print its goodput as a share of the lines' sum, and finish (for benchmarks).
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    pub download: Option<u64>,
    /// Only load one page over all lines (with --bundle, over the bundle), print its goodput
    /// as a share of the lines' sum, and finish (for benchmarks): `bench/balance.sh`'s page,
    /// --objects objects of 4 to 128 KiB, each on a new connection, over 8 at a time.
    #[arg(long, conflicts_with = "download")]
    pub page: bool,
    /// Objects on the page (mixed sizes, 2 to 32 KiB), each fetched on a new connection, over
    /// 6 parallel connections (one per line with more lines).
    #[arg(long, default_value_t = 64)]
    pub objects: usize,
    /// Don't offer the monitor at the end; just print the figures and clean up.
    #[arg(long)]
    pub non_interactive: bool,
}

/// `256kbit`, `1mbit`, `56000` (bit/s).
pub fn parse_rate(s: &str) -> Result<u32, String> {
    let lower = s.trim().to_ascii_lowercase();
    let (digits, scale) = if let Some(d) = lower.strip_suffix("mbit") {
        (d, 1_000_000)
    } else if let Some(d) = lower.strip_suffix("kbit") {
        (d, 1000)
    } else if let Some(d) = lower.strip_suffix("bit") {
        (d, 1)
    } else {
        (lower.as_str(), 1)
    };
    let n: f64 = digits
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a rate (e.g. 256kbit, 1mbit)"))?;
    let rate = n * f64::from(scale);
    if (1000.0..=100e6).contains(&rate) {
        Ok(rate as u32)
    } else {
        Err(format!("'{s}' is outside 1kbit..100mbit"))
    }
}

/// `2MiB`, `500KiB`, `2M`, `1048576` (bytes; K and M are binary).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let lower = s.trim().to_ascii_lowercase();
    let (digits, scale) = [("mib", 1 << 20), ("mb", 1 << 20), ("m", 1 << 20)]
        .into_iter()
        .chain([("kib", 1 << 10), ("kb", 1 << 10), ("k", 1 << 10), ("b", 1)])
        .find_map(|(suffix, scale)| lower.strip_suffix(suffix).map(|d| (d, scale)))
        .unwrap_or((lower.as_str(), 1));
    let n: f64 = digits
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a size (e.g. 2MiB, 500KiB)"))?;
    let bytes = n * scale as f64;
    if (1.0..=f64::from(64u32 << 20)).contains(&bytes) {
        Ok(bytes as u64)
    } else {
        Err(format!("'{s}' is outside 1 byte..64 MiB"))
    }
}

impl DemoArgs {
    /// The number of lines.
    fn line_count(&self) -> usize {
        if self.rates.is_empty() {
            usize::from(self.lines)
        } else {
            self.rates.len()
        }
    }

    /// Line `i`'s (1-based) rate.
    fn line_rate(&self, i: usize) -> u32 {
        i.checked_sub(1)
            .and_then(|index| self.rates.get(index).copied())
            .unwrap_or(self.rate)
    }

    /// The lines' rates together, bit/s.
    fn rate_sum(&self) -> u64 {
        (1..=self.line_count())
            .map(|i| u64::from(self.line_rate(i)))
            .sum()
    }
}

/// The bundle's name in the generated configuration.
const BUNDLE: &str = "isp";

/// A bundle's download when none is asked for.
const BUNDLE_DOWNLOAD: u64 = 2 << 20;

pub async fn run(args: DemoArgs) -> i32 {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!(
            "eqlplus-dialer demo: needs root (it builds network namespaces, TUN devices and an \
             nftables table inside them; nothing touches this machine's own network)"
        );
        return 1;
    }
    for tool in ["ip", "nft"] {
        if !on_path(tool) {
            eprintln!(
                "eqlplus-dialer demo: '{tool}' is missing: apt-get install iproute2 nftables"
            );
            return 1;
        }
    }
    let work = match tempfile::Builder::new().prefix("eqlplus-demo").tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("eqlplus-dialer demo: {e}");
            return 1;
        }
    };
    crate::sim::netns::remove_stale("eqdemo");
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("eqlplus-dialer demo: {e}");
                return 1;
            }
        };
    let outcome = tokio::select! {
        r = demo(&args, work.path()) => r,
        _ = tokio::signal::ctrl_c() => Err("interrupted".to_string()),
        _ = terminate.recv() => Err("terminated".to_string()),
    };
    match outcome {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("eqlplus-dialer demo: {e}");
            eprintln!("(everything it built has been removed)");
            1
        }
    }
}

async fn demo(args: &DemoArgs, work: &Path) -> Result<(), String> {
    let n = args.line_count();
    let rates: Vec<u32> = (1..=n).map(|i| args.line_rate(i)).collect();
    let rates_text = if rates.iter().all(|r| *r == args.rate) {
        format!("{} kbit/s each", args.rate / 1000)
    } else {
        let each: Vec<String> = rates.iter().map(|r| format!("{}", r / 1000)).collect();
        format!("{} kbit/s", each.join(" + "))
    };
    say(&format!(
        "building the world: {n} simulated modem line(s) at {rates_text}, {}, internet, LAN",
        if args.bundle {
            "one ISP answering Multilink PPP"
        } else {
            "ISPs"
        }
    ));
    let account = ("demo".to_string(), "demo-secret".to_string());
    let config = WorldConfig {
        lines: rates
            .iter()
            .map(|r| vec![DialAnswer::Connect(Some(*r))])
            .collect(),
        rate: Some(args.rate),
        line_rates: rates.iter().map(|r| Some(*r)).collect(),
        users: vec![account.clone()],
        prefix: "eqdemo".into(),
        multilink: args.bundle,
    };
    let world = tokio::task::block_in_place(|| World::build(&config))
        .map_err(|e| format!("cannot build the world: {e}"))?;
    let setup = DialerSetup {
        lines: n,
        account: Some(account),
        bundle: args.bundle.then(|| BUNDLE.to_string()),
        ..DialerSetup::default()
    };
    let config_path = dialer::write_config(work, &world, &setup)
        .map_err(|e| format!("cannot write the configuration: {e}"))?;
    say(&format!(
        "starting the daemon in namespace {} ({})",
        world.router.name,
        config_path.display()
    ));
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let daemon =
        Dialer::start(&exe, &world, work, &config_path, None).map_err(|e| e.to_string())?;
    let result = if args.page {
        page_scenario(args, &world, &daemon).await
    } else if args.download.is_some() || args.bundle {
        download_scenario(args, &world, &daemon).await
    } else {
        scenario(args, &world, &daemon, work).await
    };
    if result.is_err() {
        eprintln!("last daemon log lines:");
        for l in daemon.log_tail(15) {
            eprintln!("  {l}");
        }
    }
    say("stopping: the daemon hangs up every line and removes its kernel state");
    tokio::task::block_in_place(|| drop(daemon));
    drop(world);
    say("cleaned up: namespaces, devices and the daemon are gone");
    result
}

async fn scenario(
    args: &DemoArgs,
    world: &World,
    daemon: &Dialer,
    work: &Path,
) -> Result<(), String> {
    let n = args.line_count();
    let all: Vec<String> = (1..=n).map(|i| format!("ttyS{i}")).collect();
    // Dialling is concurrent, but 64 lines do take longer than one.
    let bring_up = Duration::from_secs(60 + n as u64);
    let took = wait_for(daemon, "every line up", bring_up, |s| {
        s.lines.len() == n && s.lines.iter().all(|l| l.state == LineState::Up)
    })
    .await?;
    let status = daemon.status().await?;
    if n <= SHOW_EACH {
        for l in &status.lines {
            say(&format!(
                "  {} up: {} ↔ {}, CONNECT {}",
                l.name,
                l.local.map(|a| a.to_string()).unwrap_or_default(),
                l.peer.map(|a| a.to_string()).unwrap_or_default(),
                l.connect_speed.unwrap_or(0)
            ));
        }
    } else {
        // The report is in name order (ttyS1, ttyS10, …): name the first and the last line.
        let local = |name: String| {
            status
                .lines
                .iter()
                .find(|l| l.name == name)
                .and_then(|l| l.local)
                .map(|a| format!("{name} {a}"))
                .unwrap_or(name)
        };
        say(&format!(
            "  {n} lines up within {:.1} s: {} … {}, CONNECT {}",
            took.as_secs_f64(),
            local("ttyS1".into()),
            local(format!("ttyS{n}")),
            status
                .lines
                .first()
                .and_then(|l| l.connect_speed)
                .unwrap_or(0)
        ));
    }
    let sizes = page(args.objects, 2, 32, 7);
    let total: u64 = sizes.iter().sum();
    let parallel = parallel(n);
    say(&format!(
        "the page: {} objects, {} KiB, fetched over {} parallel connections{}",
        sizes.len(),
        total / 1024,
        self::parallel(1),
        if parallel > self::parallel(1) {
            format!(" ({parallel} over all lines)")
        } else {
            String::new()
        }
    ));

    // Once over one line.
    let single = if n > 1 {
        daemon
            .command(Request::Hangup {
                lines: all[1..].to_vec(),
            })
            .await?;
        wait_for(daemon, "one line left", Duration::from_secs(30), |s| {
            s.lines.iter().filter(|l| l.state == LineState::Up).count() == 1
        })
        .await?;
        say("loading the page over 1 line…");
        // A browser's 6 connections: more only crowd the one line.
        let one = load(world, &sizes, self::parallel(1)).await?;
        report(&one, 1);
        daemon.command(Request::Up { lines: vec![] }).await?;
        wait_for(daemon, "every line back up", bring_up, |s| {
            s.lines.iter().all(|l| l.state == LineState::Up)
        })
        .await?;
        Some(one)
    } else {
        None
    };

    say(&format!("loading the page over all {n} lines…"));
    let many = load(world, &sizes, parallel).await?;
    report(&many, n);
    if let Some(one) = single {
        let speedup = one.elapsed.as_secs_f64() / many.elapsed.as_secs_f64().max(1e-6);
        println!(
            "speedup: {speedup:.2}x with {n} lines ({:.1} s → {:.1} s)",
            one.elapsed.as_secs_f64(),
            many.elapsed.as_secs_f64()
        );
    }
    if n > 1 {
        upstream_outage(world, daemon, &sizes, parallel).await?;
    }
    if !args.non_interactive
        && std::io::IsTerminal::is_terminal(&std::io::stdin())
        && std::io::IsTerminal::is_terminal(&std::io::stdout())
    {
        offer_monitor(daemon.socket(), work).await;
    }
    Ok(())
}

/// Every line up; with `bundle`, the bundle too, with every line in it.
fn all_up(s: &StatusReport, n: usize, bundle: bool) -> bool {
    let lines_up = (1..=n).all(|i| {
        let name = format!("ttyS{i}");
        s.lines
            .iter()
            .any(|l| l.name == name && l.state == LineState::Up)
    });
    let bundle_up = || {
        s.lines.iter().any(|l| {
            l.name == BUNDLE
                && l.state == LineState::Up
                && l.members.as_ref().is_some_and(|m| m.len() == n)
        })
    };
    lines_up && (!bundle || bundle_up())
}

/// One large download over all lines (with `--bundle`, over the bundle); without
/// `--download`, also one during which ttyS1's ISP hangs up, and the line's return.
async fn download_scenario(args: &DemoArgs, world: &World, daemon: &Dialer) -> Result<(), String> {
    let n = args.line_count();
    let bring_up = Duration::from_secs(60 + n as u64);
    let took = wait_for(daemon, "every line up", bring_up, |s| {
        all_up(s, n, args.bundle)
    })
    .await?;
    say(&format!(
        "  {n} line(s) up within {:.1} s{}",
        took.as_secs_f64(),
        if args.bundle {
            format!(", in bundle \"{BUNDLE}\"")
        } else {
            String::new()
        }
    ));
    let bytes = args.download.unwrap_or(BUNDLE_DOWNLOAD);
    say(&format!(
        "downloading {} KiB on one connection over {}…",
        bytes / 1024,
        if args.bundle {
            "the bundle"
        } else {
            "the lines"
        }
    ));
    let one = download(world, bytes).await?;
    report_figures("download", &one, args);
    if args.download.is_some() || n < 2 {
        return Ok(());
    }
    // A member lost mid-download: the bundle carries on over the others.
    let bundle_since = |s: &StatusReport| {
        s.lines
            .iter()
            .find(|l| l.name == BUNDLE && l.state == LineState::Up)
            .map(|l| l.since)
    };
    let before = if args.bundle {
        bundle_since(&daemon.status().await?)
    } else {
        None
    };
    say("again, and ttyS1's ISP hangs up a third of the way through…");
    let line_time = Duration::from_secs_f64(bytes as f64 * 8.0 / args.rate_sum() as f64);
    let hung_up_at = std::time::Instant::now() + line_time / 3;
    let (during, hung_up) = tokio::join!(download(world, bytes), async {
        tokio::time::sleep_until(hung_up_at.into()).await;
        tokio::task::block_in_place(|| world.hang_up(1)).map_err(|e| e.to_string())
    });
    hung_up?;
    let during = during?;
    report_figures("download", &during, args);
    // The benchmark and the tests read this line.
    println!(
        "longest stall: {:.2} s without a byte on the connection",
        during.longest_stall.as_secs_f64()
    );
    if args.bundle {
        let after = bundle_since(&daemon.status().await?);
        if before.is_some() && after == before {
            say("  (TCP resent the cut member's lost fragments over the others)");
            say("  the bundle stayed up throughout: no IPCP renegotiation, same address");
        } else {
            say("  the bundle went down and came up again");
        }
    }
    wait_for(daemon, "ttyS1 back", bring_up, |s| {
        all_up(s, n, args.bundle)
    })
    .await?;
    say(&format!(
        "  ttyS1 redialled and is back{} (seen {:.1} s after the hang-up)",
        if args.bundle { " in the bundle" } else { "" },
        hung_up_at.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// `--page`: every line (and the bundle) up, then one page of `bench/balance.sh`'s shape.
async fn page_scenario(args: &DemoArgs, world: &World, daemon: &Dialer) -> Result<(), String> {
    let n = args.line_count();
    let bring_up = Duration::from_secs(60 + n as u64);
    wait_for(daemon, "every line up", bring_up, |s| {
        all_up(s, n, args.bundle)
    })
    .await?;
    let sizes = page(args.objects, 4, 128, 7);
    say(&format!(
        "loading a page of {} objects, {} KiB, over {BENCH_SLOTS} parallel connections…",
        sizes.len(),
        sizes.iter().sum::<u64>() / 1024
    ));
    let loaded = load(world, &sizes, BENCH_SLOTS).await?;
    report_figures("page", &loaded, args);
    if !args.bundle {
        report(&loaded, n);
    }
    Ok(())
}

/// `--page`'s parallel connections, as `bench/balance.sh`'s.
const BENCH_SLOTS: usize = 8;

async fn download(world: &World, bytes: u64) -> Result<PageLoad, String> {
    let result = world.download(bytes).await.map_err(|e| e.to_string())?;
    if result.failed > 0 {
        return Err("the download failed".into());
    }
    Ok(result)
}

/// `download: 2048 KiB in 33.1 s = 507 kbit/s = 99% of the lines' 512 kbit/s`, or `page: …`
/// (the benchmark reads this line).
fn report_figures(what: &str, load: &PageLoad, args: &DemoArgs) {
    let sum = args.rate_sum();
    println!(
        "{what}: {} KiB in {:.1} s = {:.0} kbit/s = {:.0}% of the lines' {} kbit/s",
        load.bytes / 1024,
        load.elapsed.as_secs_f64(),
        load.goodput() / 1000.0,
        100.0 * load.goodput() / sum.max(1) as f64,
        sum / 1000
    );
}

/// Parallel connections for the page: a browser's 6, or one per line where there are more
/// lines (otherwise most of them would sit idle).
fn parallel(lines: usize) -> usize {
    lines.max(6)
}

/// Upstream tracking: ttyS1's ISP loses its upstream while its PPP stays up; the line leaves
/// the balance (the page still loads over the others) and comes back when the upstream does.
async fn upstream_outage(
    world: &World,
    daemon: &Dialer,
    sizes: &[u64],
    parallel: usize,
) -> Result<(), String> {
    let set = |mode: Upstream| {
        // A short `nft -f` in the ISP's namespace.
        tokio::task::block_in_place(|| world.set_upstream(1, mode)).map_err(|e| e.to_string())
    };
    say("cutting ttyS1's ISP off the Internet (its PPP stays up: LCP echoes still answered)…");
    set(Upstream::Down)?;
    // The page loads meanwhile: its connections on ttyS1 go unanswered, which tells first.
    let (page, detected) = tokio::join!(
        load(world, sizes, parallel),
        wait_for(
            daemon,
            "ttyS1 out of the balance",
            Duration::from_secs(30),
            |s| {
                s.lines
                    .first()
                    .is_some_and(|l| l.state == LineState::NoInternet)
            },
        )
    );
    let (page, detected) = (page?, detected?);
    let s = daemon.status().await?;
    let reason = s
        .lines
        .first()
        .and_then(|l| l.track.as_ref())
        .and_then(|t| t.reason.clone())
        .unwrap_or_default();
    say(&format!(
        "  ttyS1 no-internet after {:.1} s ({reason}); the page still loaded in {:.1} s",
        detected.as_secs_f64(),
        page.elapsed.as_secs_f64()
    ));
    report(&page, s.lines.len());
    set(Upstream::Working)?;
    let back = wait_for(daemon, "ttyS1 back", Duration::from_secs(30), |s| {
        s.lines.iter().all(|l| l.state == LineState::Up)
    })
    .await?;
    say(&format!(
        "  upstream restored: ttyS1 back in the balance after {:.1} s, without redialling",
        back.as_secs_f64()
    ));
    Ok(())
}

/// While the daemon still runs: the monitor on request, until the user is done.
async fn offer_monitor(socket: &Path, work: &Path) {
    loop {
        println!();
        println!(
            "The daemon is still running (its files are in {}).",
            work.display()
        );
        println!("  m + Enter: the monitor (h hangs a line up, u brings it up, q leaves it)");
        println!("  Enter:     finish and clean up");
        println!(
            "  (or, in another terminal: eqlplus-dialer status --socket {})",
            socket.display()
        );
        let answer = tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).map(|_| line)
        })
        .await;
        match answer {
            Ok(Ok(line)) if line.trim() == "m" => {
                if let Err(e) = crate::ui::monitor::run(socket, Duration::from_secs(1)).await {
                    eprintln!("monitor: {e}");
                }
            }
            _ => return,
        }
    }
}

async fn load(world: &World, sizes: &[u64], parallel: usize) -> Result<PageLoad, String> {
    let result = world
        .load_page(sizes, parallel)
        .await
        .map_err(|e| e.to_string())?;
    if result.failed > 0 {
        return Err(format!("{} object(s) failed to load", result.failed));
    }
    Ok(result)
}

fn report(load: &PageLoad, lines: usize) {
    println!(
        "  {} KiB in {:.1} s = {:.0} kbit/s",
        load.bytes / 1024,
        load.elapsed.as_secs_f64(),
        load.goodput() / 1000.0
    );
    let shares: Vec<f64> = (1..=lines)
        .map(|i| {
            let bytes = load.by_source.get(&line_local(i)).copied().unwrap_or(0);
            100.0 * bytes as f64 / load.bytes.max(1) as f64
        })
        .collect();
    println!("  share: {}", share_text(&shares));
}

/// Each line's share of the page, or with many lines a summary of them.
fn share_text(shares: &[f64]) -> String {
    if shares.len() <= SHOW_EACH {
        let each: Vec<String> = shares
            .iter()
            .enumerate()
            .map(|(i, s)| format!("ttyS{} {s:.0}%", i + 1))
            .collect();
        return each.join(", ");
    }
    let mut sorted = shares.to_vec();
    sorted.sort_by(f64::total_cmp);
    let carried = sorted.iter().filter(|s| **s > 0.0).count();
    format!(
        "{carried} of {} lines carried some; per line min {:.1}%, median {:.1}%, max {:.1}%",
        sorted.len(),
        sorted[0],
        sorted[sorted.len() / 2],
        sorted[sorted.len() - 1]
    )
}

fn say(text: &str) {
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

/// Polls the daemon's status until `check` holds; how long it took.
async fn wait_for(
    daemon: &Dialer,
    what: &str,
    limit: Duration,
    check: impl Fn(&StatusReport) -> bool,
) -> Result<Duration, String> {
    daemon
        .wait_for(what, limit, Duration::from_millis(200), check)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("256kbit"), Ok(256_000));
        assert_eq!(parse_rate("1mbit"), Ok(1_000_000));
        assert_eq!(parse_rate("56000"), Ok(56_000));
        assert_eq!(parse_rate("1.5Mbit"), Ok(1_500_000));
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("10bit").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("2MiB"), Ok(2 << 20));
        assert_eq!(parse_size("500KiB"), Ok(500 * 1024));
        assert_eq!(parse_size("2m"), Ok(2 << 20));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("big").is_err());
        assert!(parse_size("1GiB").is_err());
    }

    #[test]
    fn rates_per_line_set_the_lines() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            demo: DemoArgs,
        }
        let a = Cli::try_parse_from(["demo", "--rates", "1mbit,256kbit", "--bundle"])
            .unwrap()
            .demo;
        assert_eq!(
            (a.line_count(), a.line_rate(1), a.line_rate(2)),
            (2, 1_000_000, 256_000)
        );
        assert_eq!(a.rate_sum(), 1_256_000);
        let a = Cli::try_parse_from(["demo", "--lines", "4", "--download", "2MiB"])
            .unwrap()
            .demo;
        assert_eq!(
            (a.line_count(), a.rate_sum(), a.download),
            (4, 2_048_000, Some(2 << 20))
        );
        assert!(Cli::try_parse_from(["demo", "--lines", "2", "--rates", "1mbit"]).is_err());
    }

    #[test]
    fn shares_each_or_summarised() {
        assert_eq!(share_text(&[60.0, 40.0]), "ttyS1 60%, ttyS2 40%");
        let many: Vec<f64> = (0..12).map(|i| if i < 2 { 0.0 } else { 10.0 }).collect();
        assert_eq!(
            share_text(&many),
            "10 of 12 lines carried some; per line min 0.0%, median 10.0%, max 10.0%"
        );
    }
}
