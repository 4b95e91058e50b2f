//! Upstream tracking end to end: the daemon dials simulated ISPs whose upstream the test cuts
//! while their PPP stays up (`World::set_upstream`), and the lines must leave the balance and
//! come back on their own. The figures (detection and recovery times, probe traffic) are
//! printed for the record. Root only; the tests run one at a time, since they time things.

mod support;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use eqlplus_dialer::sim::DialAnswer;
use eqlplus_dialer::sim::upstream::Upstream;
use support::daemon::{Daemon, Extra, World, all, sigterm, wait_exit};
use support::inet::{SERVER, connect_within};
use support::require_root;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn connect_answer() -> Vec<DialAnswer> {
    vec![DialAnswer::Connect(Some(57_600))]
}

/// A world of `n` lines with the daemon running on `extra` settings, every line up and its
/// Internet confirmed.
fn running(n: usize, extra: &Extra) -> (World, Daemon) {
    let world = World::new(&vec![connect_answer(); n], &[]);
    let phones: Vec<String> = (1..=n).map(|i| i.to_string()).collect();
    let phones: Vec<&str> = phones.iter().map(String::as_str).collect();
    world.write_config_with(&phones, &vec![None; n], "", extra);
    let daemon = world.start_daemon();
    world.wait_for("all lines up", Duration::from_secs(20), |s| all(s, "up", n));
    wait_internet(&world, n, "online", Duration::from_secs(10));
    (world, daemon)
}

/// Waits until every line's tracking says `internet`.
fn wait_internet(world: &World, n: usize, internet: &str, limit: Duration) {
    let start = Instant::now();
    loop {
        let s = world.status();
        let seen: Vec<String> = (0..n)
            .map(|i| {
                s["lines"][i]["track"]["internet"]
                    .as_str()
                    .unwrap_or("-")
                    .to_string()
            })
            .collect();
        if seen.iter().all(|v| v == internet) {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "tracking not {internet} within {limit:?}: {seen:?}\n{s:#}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// How long until `check(states)` holds, polling every 50 ms (at most `limit`).
fn time_until(world: &World, limit: Duration, check: impl Fn(&[String]) -> bool) -> Duration {
    let start = Instant::now();
    world.wait_for("the expected state", limit, |s| check(s));
    start.elapsed()
}

/// `threads` × `each` new connections from the LAN, in parallel, each given 10 s (a SYN
/// resent after its line left the balance finds another line); how many succeeded.
fn load(world: &World, threads: usize, each: usize) -> std::thread::JoinHandle<usize> {
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            world
                .sim
                .lan
                .spawn(move || connect_within(SERVER, each, Duration::from_secs(10)))
                .unwrap()
        })
        .collect();
    std::thread::spawn(move || handles.into_iter().map(|h| h.join().unwrap()).sum())
}

fn stop(world: &World, mut daemon: Daemon) {
    sigterm(&daemon);
    assert!(wait_exit(&mut daemon, Duration::from_secs(20)).success());
    let log = std::fs::read_to_string(world.path("daemon.log")).unwrap_or_default();
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn an_upstream_outage_takes_the_line_out_of_the_balance_and_back() {
    if !require_root("an_upstream_outage_takes_the_line_out_of_the_balance_and_back") {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    // Default tracking: the world's internet answers the default targets.
    let (world, daemon) = running(3, &Extra::default());
    world.take_hits(3);

    // Under load: the line's unanswered connections trigger the probes at once.
    world.sim.set_upstream(1, Upstream::Down).unwrap();
    let started = Instant::now();
    let connections = load(&world, 4, 50);
    let passive = time_until(&world, Duration::from_secs(15), |s| s[0] == "no-internet");
    let ok = connections.join().unwrap();
    let s = world.status();
    assert_eq!(s["lines"][0]["track"]["internet"], "offline", "{s:#}");
    assert_eq!(s["lines"][1]["state"], "up");
    assert_eq!(ok, 200, "every connection made during the outage succeeds");
    let hits = world.take_hits(3);
    assert_eq!(hits[0], 0, "nothing got through line 1: {hits:?}");
    assert_eq!(hits[1] + hits[2], 200);
    let under_load = started.elapsed();

    // Back: the line returns to the balance by itself, no redial.
    world.sim.set_upstream(1, Upstream::Working).unwrap();
    let recovery = time_until(&world, Duration::from_secs(10), |s| all(s, "up", 3));
    assert_eq!(world.status()["lines"][0]["redials"], 0);
    assert_eq!(world.connect(30), 30);
    let hits = world.take_hits(3);
    assert!(
        hits.iter().all(|&h| h > 0),
        "all three lines again: {hits:?}"
    );

    // Idle: only the active probes (one every 10 s) can tell.
    std::thread::sleep(Duration::from_secs(1));
    world.sim.set_upstream(1, Upstream::Down).unwrap();
    let active = time_until(&world, Duration::from_secs(20), |s| s[0] == "no-internet");
    world.sim.set_upstream(1, Upstream::Working).unwrap();
    let recovery2 = time_until(&world, Duration::from_secs(10), |s| all(s, "up", 3));

    let track = &world.status()["lines"][1]["track"];
    eprintln!(
        "FIGURES upstream outage: out of the balance after {:.1} s under load (passive + probes), \
         {:.1} s idle (active probes only); back {:.1} s / {:.1} s after the upstream returned; \
         the load of 200 connections took {:.1} s; probe traffic of an online line: {} bytes so \
         far, ~{} bytes/day; probe rtt {} ms",
        passive.as_secs_f64(),
        active.as_secs_f64(),
        recovery.as_secs_f64(),
        recovery2.as_secs_f64(),
        under_load.as_secs_f64(),
        track["probe_bytes"],
        track["probe_bytes_per_day"],
        track["rtt_ms"],
    );
    assert!(passive <= Duration::from_secs(3), "under load: {passive:?}");
    assert!(
        active > passive && active <= Duration::from_secs(13),
        "idle: {active:?}"
    );
    assert!(recovery <= Duration::from_secs(5), "recovery: {recovery:?}");
    // At the defaults a probe costs 72 bytes of IP: ~26 KB an hour, well under 100 KB.
    let per_day = track["probe_bytes_per_day"].as_u64().unwrap();
    assert!(per_day <= 24 * 100_000, "probe traffic {per_day} bytes/day");
    stop(&world, daemon);
}

#[test]
fn a_dns_outage_is_an_outage_where_dns_is_checked() {
    if !require_root("a_dns_outage_is_an_outage_where_dns_is_checked") {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    // The line's own DNS servers (from IPCP) answer `example.com`.
    let extra = Extra {
        top: "[track]\ntargets = [\"dns example.com\"]\ninterval = 2\n".into(),
        ..Extra::default()
    };
    let (world, daemon) = running(2, &extra);
    world.sim.set_upstream(1, Upstream::DnsDown).unwrap();
    let took = time_until(&world, Duration::from_secs(10), |s| {
        s[0] == "no-internet" && s[1] == "up"
    });
    let reason = world.status()["lines"][0]["track"]["reason"].clone();
    assert!(
        reason
            .as_str()
            .is_some_and(|r| r.contains("dns example.com")),
        "{reason}"
    );
    world.sim.set_upstream(1, Upstream::Working).unwrap();
    let back = time_until(&world, Duration::from_secs(10), |s| all(s, "up", 2));
    eprintln!(
        "FIGURES dns outage: out after {:.1} s (interval 2 s), back after {:.1} s",
        took.as_secs_f64(),
        back.as_secs_f64()
    );
    stop(&world, daemon);
}

#[test]
fn one_dead_target_of_three_changes_nothing() {
    if !require_root("one_dead_target_of_three_changes_nothing") {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    // 192.0.2.99 is nowhere in the world: its probes never answer.
    let extra = Extra {
        top: "[track]\ntargets = [\"ping 1.1.1.1\", \"ping 8.8.8.8\", \"ping 192.0.2.99\"]\ninterval = 1\n"
            .into(),
        ..Extra::default()
    };
    let (world, daemon) = running(2, &extra);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(8) {
        let states = world.states();
        assert!(all(&states, "up", 2), "{states:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let track = &world.status()["lines"][0]["track"];
    assert_eq!(track["internet"], "online", "{track}");
    stop(&world, daemon);
}

#[test]
fn a_backup_line_carries_traffic_only_while_no_primary_has_the_internet() {
    if !require_root("a_backup_line_carries_traffic_only_while_no_primary_has_the_internet") {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let extra = Extra {
        lines: vec![String::new(), "backup = true\n".into()],
        ..Extra::default()
    };
    let (world, daemon) = running(2, &extra);
    world.take_hits(2);
    assert_eq!(world.connect(20), 20);
    assert_eq!(world.take_hits(2), vec![20, 0], "the backup waits");

    world.sim.set_upstream(1, Upstream::Down).unwrap();
    let started = Instant::now();
    let connections = load(&world, 2, 20);
    let took = time_until(&world, Duration::from_secs(15), |s| s[0] == "no-internet");
    assert_eq!(connections.join().unwrap(), 40);
    assert_eq!(world.take_hits(2), vec![0, 40], "the backup took over");
    let under_load = started.elapsed();

    world.sim.set_upstream(1, Upstream::Working).unwrap();
    let back = time_until(&world, Duration::from_secs(10), |s| all(s, "up", 2));
    assert_eq!(world.connect(20), 20);
    assert_eq!(world.take_hits(2), vec![20, 0], "given back to the primary");
    eprintln!(
        "FIGURES backup tier: the backup took over {:.1} s after the primary's upstream was cut \
         (load of 40 connections done in {:.1} s), gave back {:.1} s after it returned",
        took.as_secs_f64(),
        under_load.as_secs_f64(),
        back.as_secs_f64()
    );
    assert!(took <= Duration::from_secs(3), "{took:?}");
    stop(&world, daemon);
}

#[test]
fn a_slow_line_is_degraded_and_a_long_outage_redials() {
    if !require_root("a_slow_line_is_degraded_and_a_long_outage_redials") {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let extra = Extra {
        top: "[track]\ninterval = 1\nredial_after = 4\n".into(),
        lines: vec!["max_latency = 0.2\n".into(), String::new()],
    };
    let (world, daemon) = running(2, &extra);
    // 400 ms more each way out: the smoothed round trip climbs past 200 ms.
    world
        .sim
        .set_upstream(1, Upstream::Slow(Duration::from_millis(400)))
        .unwrap();
    let slow = time_until(&world, Duration::from_secs(20), |s| {
        s[0] == "degraded" && s[1] == "up"
    });
    let track = world.status()["lines"][0]["track"].clone();
    assert_eq!(track["internet"], "degraded", "{track}");
    assert!(track["rtt_ms"].as_f64().unwrap() > 200.0, "{track}");
    world.sim.set_upstream(1, Upstream::Working).unwrap();
    let fast = time_until(&world, Duration::from_secs(20), |s| all(s, "up", 2));

    // Without the Internet for redial_after (4 s): hung up and dialled again.
    world.sim.set_upstream(2, Upstream::Down).unwrap();
    world.wait_for(
        "line 2 without the Internet",
        Duration::from_secs(10),
        |s| s[1] == "no-internet",
    );
    let start = Instant::now();
    loop {
        let line = world.status()["lines"][1].clone();
        if line["redials"].as_u64() >= Some(1) {
            let error = line["last_error"].as_str().unwrap_or_default().to_string();
            assert!(error.contains("dialling again"), "{line}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no redial: {line}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    world.sim.set_upstream(2, Upstream::Working).unwrap();
    world.wait_for("line 2 back", Duration::from_secs(20), |s| all(s, "up", 2));
    eprintln!(
        "FIGURES latency: degraded {:.1} s after 400 ms were added (max_latency 200 ms, a probe a \
         second), up again {:.1} s after they went; redialled {:.1} s after losing the Internet \
         (redial_after 4 s)",
        slow.as_secs_f64(),
        fast.as_secs_f64(),
        start.elapsed().as_secs_f64()
    );
    stop(&world, daemon);
}
