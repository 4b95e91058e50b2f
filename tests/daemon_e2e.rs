//! The daemon end to end, as a user runs it: `eqlplus-dialer daemon` in a router namespace
//! dials simulated modems (ptys) whose far ends are our PPP engine in answer role, each in its
//! own ISP namespace with a TUN device routing to "the internet". The CLI talks to it over the
//! control socket. Root only.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use eqlplus_dialer::sim::DialAnswer;
use support::daemon::{BIN, World, all, sighup, sigterm, wait_exit};
use support::require_root;
use support::tmux::{Tmux, have_tmux, line_row, monitor_command, state_of};

/// Nothing of the daemon is left in the router namespace.
fn assert_clean(world: &World) {
    let links = world.sim.router.exec(&["ip", "link", "show"]).unwrap();
    assert!(!links.contains("eq-ttyS"), "{links}");
    let rules = world.sim.router.exec(&["ip", "rule", "list"]).unwrap();
    assert!(!rules.lines().any(|l| l.starts_with("77")), "{rules}");
    let routes = world
        .sim
        .router
        .exec(&["ip", "route", "show", "table", "all", "proto", "234"])
        .unwrap();
    assert!(routes.trim().is_empty(), "{routes}");
    let tables = world.sim.router.exec(&["nft", "list", "tables"]).unwrap();
    assert!(!tables.contains("eqlplus"), "{tables}");
    assert!(
        !Path::new(&world.socket()).exists(),
        "control socket removed"
    );
    let locks: Vec<_> = std::fs::read_dir(world.path("locks")).unwrap().collect();
    assert!(locks.is_empty(), "lock files removed: {locks:?}");
}

fn connect_answer() -> Vec<DialAnswer> {
    vec![DialAnswer::Connect(Some(57_600))]
}

#[test]
fn daemon_dials_balances_redials_obeys_the_cli_reloads_and_cleans_up() {
    if !require_root("daemon_dials_balances_redials_obeys_the_cli_reloads_and_cleans_up") {
        return;
    }
    let world = World::new(
        &[connect_answer(), connect_answer()],
        &[("alice", "s3cret")],
    );
    let alice = [Some("alice"), Some("alice")];
    world.write_config(&["5551001", "5551002"], &alice, "alice * s3cret\n");
    let mut daemon = world.start_daemon();
    world.wait_for("both lines up", Duration::from_secs(20), |s| {
        all(s, "up", 2)
    });

    // Status: the getpppinfo successor.
    let status = world.status();
    let l1 = &status["lines"][0];
    assert_eq!(l1["name"], "ttyS1");
    assert_eq!(l1["local"], "10.64.1.2");
    assert_eq!(l1["peer"], "10.64.1.1");
    assert_eq!(l1["dns"][0], "198.51.100.53");
    assert_eq!(l1["connect_speed"], 57600);
    assert_eq!(l1["admin"], "up");
    assert!(l1["mru"].as_u64().is_some());
    let resolv = std::fs::read_to_string(world.path("resolv.conf")).unwrap();
    assert!(resolv.contains("nameserver 198.51.100.53"), "{resolv}");
    std::thread::sleep(Duration::from_millis(300));
    // systemd-resolved (here a stand-in resolvectl) learns each slave's DNS server.
    let resolvectl = std::fs::read_to_string(world.path("resolvectl.log")).unwrap_or_default();
    for i in 1..=2 {
        assert!(
            resolvectl.contains(&format!("dns eq-ttyS{i} 198.51.100.53\n"))
                && resolvectl.contains(&format!("default-route eq-ttyS{i} yes\n")),
            "resolvectl calls: {resolvectl}"
        );
    }
    let hooks = std::fs::read_to_string(world.path("ip-up.log")).unwrap_or_default();
    assert!(
        hooks.contains("eq-ttyS1 ")
            && hooks
                .contains(" 57600 10.64.1.2 10.64.1.1 ttyS1 IFNAME=eq-ttyS1 DNS1=198.51.100.53"),
        "ip-up ran with pppd's arguments: {hooks}"
    );

    // Traffic from the LAN is balanced over both lines, through TUN, PPP and the ISPs.
    assert_eq!(world.connect(200), 200);
    let hits = world.take_hits(2);
    assert!(hits[0] >= 90 && hits[1] >= 90, "{hits:?}");

    // watch --json: pipe-friendly JSON lines.
    let out = world.cli(&["watch", "--json", "--interval", "200ms", "--count", "2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reports: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(reports.len(), 2);
    assert_eq!(reports[0]["lines"].as_array().unwrap().len(), 2);

    // The monitor in a real terminal, against this daemon: rows and bars, and a hangup from
    // its keys takes line 2 down until it is brought up again.
    if have_tmux() {
        let tmux = Tmux::start(
            world.dir.path(),
            "e2e-monitor",
            &monitor_command("", Path::new(&world.socket()), "--interval 300ms"),
        );
        let screen = tmux.wait_for("both lines up in the monitor", |s| {
            state_of(s, "ttyS1") == Some("up") && state_of(s, "ttyS2") == Some("up")
        });
        assert!(screen.contains("TOTAL"), "{screen}");
        assert!(
            line_row(&screen, "ttyS1").is_some_and(|r| r.contains("10.64.1.2")),
            "{screen}"
        );
        tmux.keys(&["j", "h"]);
        tmux.wait_for("the confirmation", |s| s.contains("Hang up ttyS2?"));
        tmux.keys(&["y"]);
        tmux.wait_for("ttyS2 down", |s| state_of(s, "ttyS2") == Some("down"));
        assert_eq!(world.status()["lines"][1]["admin"], "down");
        tmux.keys(&["u", "y"]);
        world.wait_for("ttyS2 back up", Duration::from_secs(15), |s| {
            all(s, "up", 2)
        });
        tmux.keys(&["q"]);
        tmux.wait_dead();
        tmux.assert_exit_status(0);
    }

    // The far end drops line 1: it leaves the balance, traffic goes on via line 2, and line 1
    // redials and comes back.
    world.sim.lines[0].modem.drop_call();
    world.wait_for("line 1 leaves", Duration::from_secs(5), |s| {
        s[0] != "up" && s[1] == "up"
    });
    assert_eq!(world.connect(20), 20);
    assert_eq!(world.take_hits(2), vec![0, 20]);
    world.wait_for("line 1 redialed", Duration::from_secs(15), |s| {
        all(s, "up", 2)
    });
    let status = world.status();
    assert!(
        status["lines"][0]["last_error"]
            .as_str()
            .is_some_and(|e| !e.is_empty())
    );
    assert!(world.sim.lines[0].modem.dial_attempts() >= 2);
    assert!(
        status["lines"][0]["redials"].as_u64() >= Some(1),
        "status counts the redial: {}",
        status["lines"][0]
    );

    // hangup keeps a line down though its peer would answer; up brings it back.
    let out = world.cli(&["hangup", "ttyS1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    world.wait_for("line 1 held down", Duration::from_secs(10), |s| {
        s[0] == "down" && s[1] == "up"
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(world.states()[0], "down", "stays down");
    let resolvectl = std::fs::read_to_string(world.path("resolvectl.log")).unwrap_or_default();
    assert!(resolvectl.contains("revert eq-ttyS1\n"), "{resolvectl}");
    assert_eq!(world.status()["lines"][0]["admin"], "down");
    let out = world.cli(&["hangup", "ttyS9"]);
    assert_eq!(out.status.code(), Some(1), "unknown line");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no line named ttyS9")
            || String::from_utf8_lossy(&out.stdout).contains("no line named ttyS9")
    );
    let out = world.cli(&["up", "ttyS1"]);
    assert!(out.status.success());
    world.wait_for("line 1 back up", Duration::from_secs(10), |s| {
        all(s, "up", 2)
    });

    // Reload with line 2 changed restarts only line 2.
    let since_1 = world.status()["lines"][0]["since"].as_f64().unwrap();
    world.write_config(&["5551001", "5559999"], &alice, "alice * s3cret\n");
    let out = world.cli(&["reload"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("unchanged ttyS1") && said.contains("restarted ttyS2"),
        "{said}"
    );
    world.wait_for("line 2 back after reload", Duration::from_secs(15), |s| {
        all(s, "up", 2)
    });
    assert_eq!(
        world.status()["lines"][0]["since"].as_f64().unwrap(),
        since_1,
        "line 1 untouched"
    );

    // A broken file is refused; everything stays up.
    std::fs::write(
        world.path("eqlplus-dialer.toml"),
        "[[line]]\ndevice = \"/dev/ttyS1\"\nbuad = 1\n",
    )
    .unwrap();
    let out = world.cli(&["reload"]);
    assert_eq!(out.status.code(), Some(1));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("buad") && said.contains(":3:1"), "{said}");
    sighup(&daemon);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        all(&world.states(), "up", 2),
        "SIGHUP with a broken file changes nothing"
    );

    // SIGTERM: every line hung up, all kernel state removed, exit 0.
    sigterm(&daemon);
    let status = wait_exit(&mut daemon, Duration::from_secs(30));
    assert!(status.success(), "{status:?}");
    assert_clean(&world);
}

#[test]
fn busy_twice_then_connect_and_a_wrong_password_backs_off() {
    if !require_root("busy_twice_then_connect_and_a_wrong_password_backs_off") {
        return;
    }
    let world = World::new(
        &[
            vec![
                DialAnswer::Busy,
                DialAnswer::Busy,
                DialAnswer::Connect(Some(33_600)),
            ],
            connect_answer(),
            connect_answer(),
        ],
        &[("alice", "s3cret")],
    );
    // Lines 1 and 3 authenticate as alice; line 2 as bob, whom the ISP does not know.
    world.write_config(
        &["5551001", "5551002", "5551003"],
        &[Some("alice"), Some("bob"), Some("alice")],
        "alice * s3cret\nbob * wrong\n",
    );
    let mut daemon = world.start_daemon();
    world.wait_for(
        "lines 1 and 3 up, line 1 after two BUSY",
        Duration::from_secs(20),
        |s| s.len() == 3 && s[0] == "up" && s[2] == "up",
    );
    // Three lines: traffic uses the two that are up.
    assert_eq!(world.connect(40), 40);
    let hits = world.take_hits(3);
    assert_eq!(hits[1], 0, "{hits:?}");
    assert!(hits[0] >= 10 && hits[2] >= 10, "{hits:?}");
    assert_eq!(world.sim.lines[0].modem.dial_attempts(), 3);
    world.wait_for("line 2 failed auth", Duration::from_secs(20), |s| {
        s.get(1).is_some_and(|s| s == "holdoff")
    });
    let status = world.status();
    let l2 = &status["lines"][1];
    let error = l2["last_error"].as_str().unwrap();
    assert!(
        error.contains("authentication failed") && error.contains("rejected"),
        "{error}"
    );
    let wait = l2["next_attempt"].as_f64().unwrap() - status["time"].as_f64().unwrap();
    assert!(wait > 20.0, "auth failures back off hard: {wait} s");
    sigterm(&daemon);
    assert!(wait_exit(&mut daemon, Duration::from_secs(30)).success());
    assert_clean(&world);
}

#[test]
fn a_second_daemon_leaves_the_first_alone_and_status_never_waits_for_a_reload() {
    if !require_root("a_second_daemon_leaves_the_first_alone_and_status_never_waits_for_a_reload") {
        return;
    }
    let world = World::new(&[connect_answer()], &[]);
    world.write_config(&["5551001"], &[None], "");
    // A slow escape hangup (no modem lines on a pty): guard times of 2 s, so a reload that
    // restarts the line takes several seconds.
    let config = world.path("eqlplus-dialer.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("escape_guard = 0.2", "escape_guard = 2"),
    )
    .unwrap();
    let mut daemon = world.start_daemon();
    world.wait_for("the line up", Duration::from_secs(20), |s| all(s, "up", 1));
    assert_eq!(world.connect(4), 4);

    // A second daemon by hand, with the same configuration and with another socket: it is
    // refused before it touches anything of the first one's.
    let other = world.path("other.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&other, text.replace("control.sock", "other.sock")).unwrap();
    for (file, why) in [
        (&config, "another eqlplus-dialer daemon (pid "),
        (&other, "is running in this network namespace"),
    ] {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &world.sim.router.name,
                BIN,
                "daemon",
                "--config",
            ])
            .arg(file)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(why), "{stderr}");
        let tables = world.sim.router.exec(&["nft", "list", "tables"]).unwrap();
        assert!(
            tables.contains("eqlplus"),
            "the first daemon's table stays: {tables}"
        );
        assert_eq!(world.connect(4), 4, "LAN traffic still flows");
        assert!(world.states().iter().all(|s| s == "up"));
        let resolv = std::fs::read_to_string(world.path("resolv.conf")).unwrap();
        assert!(
            resolv.contains("nameserver"),
            "the DNS fragment stays: {resolv}"
        );
    }
    assert!(
        Path::new(&world.socket()).exists(),
        "the first daemon's socket stays"
    );

    // A reload that restarts the line waits for its slow hangup; status meanwhile does not.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("lcp_echo_failure = 3", "lcp_echo_failure = 4"),
    )
    .unwrap();
    let socket = world.socket();
    let reload = std::thread::spawn(move || {
        let started = Instant::now();
        let out = Command::new(BIN)
            .args(["reload", "--socket", &socket])
            .output()
            .unwrap();
        (out, started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(500));
    let asked = Instant::now();
    let status = world.cli(&["status", "--json"]);
    let took = asked.elapsed();
    assert!(status.status.success());
    let (out, reload_took) = reload.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        reload_took > Duration::from_secs(3),
        "the reload waited for the hangup: {reload_took:?}"
    );
    assert!(
        took < Duration::from_secs(1),
        "status took {took:?} during a reload"
    );
    world.wait_for("the line up again", Duration::from_secs(20), |s| {
        all(s, "up", 1)
    });

    sigterm(&daemon);
    assert!(wait_exit(&mut daemon, Duration::from_secs(30)).success());
    assert_clean(&world);
}
