//! `up` and `down` as a user runs them, with no daemon running: `up` starts a background
//! daemon in the router namespace of a simulated world, follows the lines until they are up
//! (or have failed) and says so; a second `up` only waits; `down` stops the daemon it started
//! and leaves nothing behind. The progress view is checked as plain lines (piped) and in a
//! real terminal (tmux: rows redrawn in place). Root only.

mod support;

use std::process::{Command, Output};

use eqlplus_dialer::sim::DialAnswer;
use support::daemon::{BIN, World};
use support::require_root;
use support::tmux::{Tmux, have_tmux};

fn connect() -> Vec<DialAnswer> {
    vec![DialAnswer::Connect(Some(57_600))]
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs the CLI in the world's router namespace with the world's configuration, as a user
/// would (`sudo ip netns exec router eqlplus-dialer up --config …`).
fn run(world: &World, args: &[&str]) -> Output {
    Command::new("ip")
        .args(["netns", "exec", &world.sim.router.name, BIN])
        .args(args)
        .arg("--config")
        .arg(world.path("eqlplus-dialer.toml"))
        .env("PATH", path_with_stand_ins(world))
        .env("EQLPLUS_LOG", "eqlplus_dialer=debug")
        .output()
        .unwrap()
}

fn path_with_stand_ins(world: &World) -> String {
    format!(
        "{}:{}",
        world.path("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// Stops whatever daemon `up` left running when the test ends, pass or fail.
struct Stopper<'a>(&'a World);

impl Drop for Stopper<'_> {
    fn drop(&mut self) {
        if std::path::Path::new(&self.0.socket()).exists() {
            let out = run(self.0, &["down", "--timeout", "20s"]);
            eprintln!("cleanup down: {}{}", text(&out.stdout), text(&out.stderr));
        }
    }
}

fn daemon_log(world: &World) -> String {
    std::fs::read_to_string(world.path("detached.log")).unwrap_or_default()
}

#[test]
fn up_starts_the_daemon_follows_the_lines_and_down_stops_it() {
    if !require_root("up_starts_the_daemon_follows_the_lines_and_down_stops_it") {
        return;
    }
    let world = World::new(&[connect(), connect()], &[("alice", "s3cret")]);
    world.write_config(
        &["5551001", "5551002"],
        &[Some("alice"), Some("alice")],
        "alice * s3cret\n",
    );
    let _stopper = Stopper(&world);

    let out = run(&world, &["up"]);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "up: {stdout}{}\nlog:\n{}",
        text(&out.stderr),
        daemon_log(&world)
    );
    // Piped: one line per change seen (the simulated modems answer within milliseconds, so
    // the 200 ms reports catch only some of the steps), then the summary.
    assert!(stdout.starts_with("starting the daemon (pid "), "{stdout}");
    for line in ["ttyS1", "ttyS2"] {
        assert!(stdout.contains(&format!("{line}: up 10.64.")), "{stdout}");
    }
    assert!(stdout.ends_with("2 lines up\n"), "{stdout}");
    assert!(
        !stdout.contains('\x1b'),
        "no terminal codes when piped: {stdout:?}"
    );

    // The daemon runs on, detached, and says who started it; its log went to log_file.
    let status = world.status();
    assert_eq!(status["daemon"]["started_by"], "up", "{status}");
    let pid = status["daemon"]["pid"].as_u64().unwrap() as i32;
    assert!(
        daemon_log(&world).contains("ready"),
        "{}",
        daemon_log(&world)
    );
    let session = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = session
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        fields[3],
        pid.to_string(),
        "a session of its own: {session}"
    );

    // A second `up` finds it running and only waits (nothing to wait for here).
    let out = run(&world, &["up"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        !text(&out.stdout).contains("starting"),
        "{}",
        text(&out.stdout)
    );
    assert!(text(&out.stdout).ends_with("2 lines up\n"));

    // `down` hangs up and stops the daemon `up` started; nothing is left.
    let out = run(&world, &["down"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains(&format!("the daemon (pid {pid}) stopped")),
        "{}",
        text(&out.stdout)
    );
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(
        state.is_empty()
            || state
                .rsplit(')')
                .next()
                .unwrap()
                .trim_start()
                .starts_with('Z'),
        "the daemon is gone: {state}"
    );
    let links = world.sim.router.exec(&["ip", "link", "show"]).unwrap();
    assert!(!links.contains("eq-ttyS"), "{links}");
    let tables = world.sim.router.exec(&["nft", "list", "tables"]).unwrap();
    assert!(!tables.contains("eqlplus"), "{tables}");
    assert!(!std::path::Path::new(&world.socket()).exists());
    // `down` again: nothing running, nothing to do.
    let out = run(&world, &["down"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), "eqlplus-dialer is not running\n");
}

#[test]
fn up_names_the_line_that_fails_and_why() {
    if !require_root("up_names_the_line_that_fails_and_why") {
        return;
    }
    let world = World::new(&[connect(), vec![DialAnswer::Busy]], &[]);
    world.write_config(&["5551001", "5551002"], &[None, None], "");
    let _stopper = Stopper(&world);

    let out = run(&world, &["up", "--timeout", "60s"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("ttyS1: up 10.64."), "{stdout}");
    assert!(
        stdout.contains("ttyS2: failed: modem said BUSY"),
        "{stdout}"
    );
    assert!(
        stdout.ends_with("1 of 2 lines did not come up: ttyS2 (modem said BUSY)\n"),
        "{stdout}"
    );
    // Only the named line: ttyS1 is up, so that is a success.
    let out = run(&world, &["up", "ttyS1"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert_eq!(
        text(&out.stdout),
        "ttyS1: up 10.64.1.2 (57600 bit/s)\n1 line up\n"
    );
    // A configuration mistake is shown by `up` itself, file:line, before anything starts.
    let out = run(&world, &["down"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let config = world.path("eqlplus-dialer.toml");
    let good = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, good.replace("holdoff = 0.3", "holdoff = \"soon\"")).unwrap();
    let out = run(&world, &["up"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("eqlplus-dialer.toml:") && text(&out.stderr).contains("holdoff"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        !std::path::Path::new(&world.socket()).exists(),
        "nothing started"
    );
}

#[test]
fn up_redraws_its_rows_in_place_in_a_terminal() {
    if !require_root("up_redraws_its_rows_in_place_in_a_terminal") || !have_tmux() {
        return;
    }
    let world = World::new(&[connect(), connect()], &[]);
    world.write_config(&["5551001", "5551002"], &[None, None], "");
    let _stopper = Stopper(&world);
    let command = format!(
        "PATH={} ip netns exec {} {BIN} up --config {}",
        path_with_stand_ins(&world),
        world.sim.router.name,
        world.path("eqlplus-dialer.toml").display()
    );
    let tmux = Tmux::start(world.dir.path(), "up", &command);
    let screen = tmux.wait_for("both lines up", |s| s.contains("2 lines up"));
    // One row per line, each line's last state in it: redrawn, not appended.
    for line in ["ttyS1", "ttyS2"] {
        let rows: Vec<&str> = screen.lines().filter(|l| l.starts_with(line)).collect();
        assert_eq!(rows.len(), 1, "{screen}");
        assert!(
            rows[0].contains('✔') && rows[0].contains("up 10.64."),
            "{screen}"
        );
    }
    assert!(!screen.contains("dialing"), "{screen}");
    // The screen's whole history holds no earlier row either (the rows were overwritten).
    let everything = tmux.everything();
    assert_eq!(everything.matches("ttyS1 ").count(), 1, "{everything}");
    drop(tmux);
}

#[test]
fn two_ups_at_once_start_one_daemon() {
    if !require_root("two_ups_at_once_start_one_daemon") {
        return;
    }
    let world = World::new(&[connect()], &[]);
    world.write_config(&["5551001"], &[None], "");
    let _stopper = Stopper(&world);
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| run(&world, &["up"]));
        let b = s.spawn(|| run(&world, &["up"]));
        (a.join().unwrap(), b.join().unwrap())
    });
    eprintln!(
        "first:\n{}{}second:\n{}{}",
        text(&a.stdout),
        text(&a.stderr),
        text(&b.stdout),
        text(&b.stderr)
    );
    for out in [&a, &b] {
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        assert!(
            text(&out.stdout).ends_with("1 line up\n"),
            "{}",
            text(&out.stdout)
        );
    }
    let pids = Command::new("pgrep")
        .args([
            "-f",
            &format!(
                "daemon --config {}",
                world.path("eqlplus-dialer.toml").display()
            ),
        ])
        .output()
        .unwrap();
    assert_eq!(
        text(&pids.stdout).lines().count(),
        1,
        "one daemon: {}",
        text(&pids.stdout)
    );
}
