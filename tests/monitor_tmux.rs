//! `eqlplus-dialer monitor` in a real terminal: tmux runs it against the canned daemon
//! (`control-test-server`), `capture-pane` reads the screen, `send-keys` types.
//!
//! Each test has its own tmux server (`-S` a socket in its temporary directory, `-f
//! /dev/null`: no user configuration), killed at the end whatever happens. Every wait is
//! bounded. Without tmux the tests say so and pass (`scripts/test.sh` installs it).
//! Last, without tmux: off a terminal the monitor refuses to start.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_eqlplus-dialer");

/// How long anything may take to show up on the screen.
const PATIENCE: Duration = Duration::from_secs(20);

fn have_tmux() -> bool {
    let ok = Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIPPED: tmux is not installed (scripts/test.sh installs it)");
    }
    ok
}

/// The canned daemon on a socket; killed on drop.
struct Server {
    child: Child,
}

impl Server {
    fn start(socket: &Path) -> Server {
        let mut child = Command::new(BIN)
            .args(["control-test-server", "--socket"])
            .arg(socket)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start control-test-server");
        // It prints "listening on PATH" once the socket is there; reading the line is bounded
        // by the server exiting (EOF) if it cannot start.
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        assert!(
            line.starts_with("listening on"),
            "control-test-server: {line:?}"
        );
        Server { child }
    }

    /// Stops it the way the daemon stops: SIGTERM, which removes the socket.
    fn stop(mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("control-test-server did not stop on SIGTERM");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A tmux server of our own with one 120×30 session; killed on drop.
struct Tmux {
    socket: PathBuf,
    session: String,
}

impl Tmux {
    /// Starts `command` (a shell command line) in a new detached session that stays on
    /// screen after the command ends (`remain-on-exit`).
    fn start(dir: &Path, name: &str, command: &str) -> Tmux {
        let tmux = Tmux {
            // A socket per session: a server just killed may still be going away.
            socket: dir.join(format!("tmux-{name}.sock")),
            session: format!("{name}-{}", std::process::id()),
        };
        let out = tmux.run(&[
            "new-session",
            "-d",
            "-s",
            &tmux.session,
            "-x",
            "120",
            "-y",
            "30",
            command,
            ";",
            "set-option",
            "-t",
            &tmux.session,
            "remain-on-exit",
            "on",
        ]);
        assert!(out.status.success(), "tmux new-session: {out:?}");
        tmux
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(["-f", "/dev/null"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run tmux")
    }

    fn screen(&self) -> String {
        let out = self.run(&["capture-pane", "-p", "-t", &self.session]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The scrollback and the screen.
    fn everything(&self) -> String {
        let out = self.run(&["capture-pane", "-p", "-S", "-", "-t", &self.session]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `#{…}` formats of the pane, e.g. `#{pane_dead}`.
    fn pane(&self, format: &str) -> String {
        let out = self.run(&["display-message", "-p", "-t", &self.session, format]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn keys(&self, keys: &[&str]) {
        for key in keys {
            let out = self.run(&["send-keys", "-t", &self.session, key]);
            assert!(out.status.success(), "send-keys {key}: {out:?}");
        }
    }

    /// Polls the screen until `ok` holds; panics with the last screen after [`PATIENCE`].
    fn wait_for(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let screen = self.screen();
            if ok(&screen) {
                return screen;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}; pane dead: {}; screen:\n{screen}",
                    self.pane("#{pane_dead} #{pane_dead_status}")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the pane's command has ended: tmux saw its terminal close (`pane_dead`).
    ///
    /// The exit status is read from the screen (the pane's shell echoes it), not from
    /// `#{pane_dead_status}`: tmux 3.3 now and then fails to reap the pane's process, and then
    /// never has a status.
    fn wait_dead(&self) {
        let deadline = Instant::now() + PATIENCE;
        while self.pane("#{pane_dead}") != "1" {
            if Instant::now() > deadline {
                panic!(
                    "the pane's command did not end; screen:\n{}",
                    self.everything()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Asserts that the monitor exited with `status` (the pane's shell printed it).
    fn assert_exit_status(&self, status: i32) {
        let screen = self.everything();
        assert!(
            screen
                .lines()
                .any(|l| l == format!("monitor exit={status}")),
            "expected exit status {status}; screen:\n{screen}"
        );
    }
}

/// The shell command line of the pane: the monitor on `socket`, then its exit status.
fn monitor_command(env: &str, socket: &Path, args: &str) -> String {
    format!(
        "{env} {BIN} monitor {args} --socket '{}'; echo \"monitor exit=$?\"",
        socket.display()
    )
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

/// The screen row that starts (after the selection marker) with `name`.
fn line_row<'a>(screen: &'a str, name: &str) -> Option<&'a str> {
    screen.lines().find(|l| {
        l.trim_start_matches(['▶', ' '])
            .split_whitespace()
            .next()
            .is_some_and(|w| w == name)
    })
}

fn state_of<'a>(screen: &'a str, name: &str) -> Option<&'a str> {
    line_row(screen, name).and_then(|l| {
        let rest = l.trim_start_matches(['▶', ' ']);
        rest.split_whitespace().nth(1)
    })
}

#[test]
fn monitor_shows_the_lines_and_hangs_up_and_brings_up() {
    if !have_tmux() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("control.sock");
    let _server = Server::start(&socket);
    let tmux = Tmux::start(
        dir.path(),
        "monitor",
        &monitor_command("", &socket, "--interval 200ms"),
    );

    // The rows, bars and states; sparklines once a few reports came in.
    let screen = tmux.wait_for("the line rows", |s| {
        s.contains("policy weighted") && state_of(s, "ttyUSB0") == Some("holdoff")
    });
    assert!(screen.contains("eqlplus-dialer monitor"), "{screen}");
    assert_eq!(state_of(&screen, "ttyS0"), Some("up"), "{screen}");
    assert_eq!(state_of(&screen, "ttyS1"), Some("up"), "{screen}");
    let s0 = line_row(&screen, "ttyS0").unwrap();
    assert!(s0.starts_with('▶'), "the first line is selected: {s0}");
    assert!(
        s0.contains("10.64.0.2 → 10.64.0.1") && s0.contains("57600"),
        "{s0}"
    );
    let usb = line_row(&screen, "ttyUSB0").unwrap();
    assert!(usb.contains("dial-chat: BUSY"), "{usb}");
    assert!(
        screen.contains('█') && screen.contains('░'),
        "bars: {screen}"
    );
    assert!(screen.contains("TOTAL"), "{screen}");
    assert!(screen.contains("q quit"), "{screen}");
    tmux.wait_for("sparklines", |s| {
        s.lines()
            .filter(|l| l.contains("rx") && l.contains("tx"))
            .any(|l| {
                l.split("tx")
                    .next()
                    .unwrap()
                    .matches(['▄', '▅', '▆', '▇'])
                    .count()
                    >= 3
            })
    });

    // Select ttyS1, hang it up: a question first, then `y`.
    tmux.keys(&["j"]);
    tmux.wait_for("ttyS1 selected", |s| {
        line_row(s, "ttyS1").is_some_and(|l| l.starts_with('▶'))
    });
    tmux.keys(&["h"]);
    let screen = tmux.wait_for("the confirmation", |s| s.contains("Hang up ttyS1?"));
    assert!(screen.contains("[y]es / [n]o"), "{screen}");
    assert_eq!(
        state_of(&screen, "ttyS1"),
        Some("up"),
        "not before y: {screen}"
    );
    tmux.keys(&["y"]);
    let screen = tmux.wait_for("ttyS1 down", |s| state_of(s, "ttyS1") == Some("down"));
    assert!(!screen.contains("Hang up ttyS1?"), "{screen}");
    assert_eq!(state_of(&screen, "ttyS0"), Some("up"), "{screen}");
    tmux.wait_for("the daemon's answer", |s| s.contains("hung up ttyS1"));

    // Bring it up again.
    tmux.keys(&["u"]);
    tmux.wait_for("the confirmation", |s| s.contains("Bring ttyS1 up?"));
    tmux.keys(&["y"]);
    let screen = tmux.wait_for("ttyS1 up", |s| state_of(s, "ttyS1") == Some("up"));
    assert!(
        line_row(&screen, "ttyS1").unwrap().contains("10.64.1.2"),
        "{screen}"
    );
    tmux.wait_for("the daemon's answer", |s| s.contains("brought up ttyS1"));

    // `h` then `n`: nothing happens.
    tmux.keys(&["h"]);
    tmux.wait_for("the confirmation", |s| s.contains("Hang up ttyS1?"));
    tmux.keys(&["n"]);
    tmux.wait_for("cancelled", |s| s.contains("cancelled"));

    // Quit: the command ends, successfully, off the alternate screen.
    tmux.keys(&["q"]);
    tmux.wait_dead();
    tmux.assert_exit_status(0);
    assert_eq!(
        tmux.pane("#{alternate_on}"),
        "0",
        "left the alternate screen"
    );
    let screen = tmux.screen();
    assert!(
        !screen.contains("policy weighted"),
        "the monitor's screen is gone: {screen}"
    );
}

/// The pane runs the monitor from a shell, which then prints its exit status and the tty
/// modes: raw mode must be off again (`icanon`, `echo`), whichever way the monitor ended.
/// With `keys`, they are typed once the lines are on screen; without, the monitor is expected
/// to end by itself.
fn run_and_show_tty_modes(
    dir: &Path,
    name: &str,
    socket: &Path,
    env: &str,
    keys: &[&str],
) -> String {
    let tmux = Tmux::start(dir, name, &(monitor_command(env, socket, "") + "; stty -a"));
    if !keys.is_empty() {
        tmux.wait_for("the line rows", |s| state_of(s, "ttyS0") == Some("up"));
        tmux.keys(keys);
    }
    tmux.wait_dead();
    assert_eq!(
        tmux.pane("#{alternate_on}"),
        "0",
        "left the alternate screen"
    );
    let screen = tmux.everything();
    let modes: Vec<&str> = screen.split_whitespace().collect();
    assert!(modes.contains(&"icanon"), "cooked mode again: {screen}");
    assert!(modes.contains(&"echo"), "echo again: {screen}");
    assert!(
        !modes.contains(&"-icanon") && !modes.contains(&"-echo"),
        "{screen}"
    );
    screen
}

#[test]
fn the_terminal_is_restored_on_quit_and_on_panic() {
    if !have_tmux() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("control.sock");
    let _server = Server::start(&socket);

    let screen = run_and_show_tty_modes(dir.path(), "monitor-quit", &socket, "", &["C-c"]);
    assert!(screen.contains("monitor exit=0"), "{screen}");

    // A panic after the first report (a hidden test switch): the hook restores the terminal
    // before the message is printed, so the message is on the normal screen.
    let screen = run_and_show_tty_modes(
        dir.path(),
        "monitor-panic",
        &socket,
        "EQLPLUS_MONITOR_TEST_PANIC=1",
        &[],
    );
    assert!(screen.contains("monitor exit=101"), "{screen}");
    assert!(
        screen.contains("EQLPLUS_MONITOR_TEST_PANIC is set"),
        "{screen}"
    );
}

#[test]
fn the_monitor_waits_for_the_daemon_to_come_back() {
    if !have_tmux() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("control.sock");
    let server = Server::start(&socket);
    let tmux = Tmux::start(
        dir.path(),
        "monitor-gone",
        &monitor_command("", &socket, "--interval 200ms"),
    );
    tmux.wait_for("the line rows", |s| state_of(s, "ttyS0") == Some("up"));
    server.stop();
    let screen = tmux.wait_for("daemon not running", |s| s.contains("daemon not running"));
    assert_eq!(tmux.pane("#{pane_dead}"), "0", "still running: {screen}");
    assert!(
        line_row(&screen, "ttyS0").is_some(),
        "the last report stays: {screen}"
    );
    let _server = Server::start(&socket);
    tmux.wait_for("the reports again", |s| {
        s.contains("policy weighted") && s.contains("connected to the daemon again")
    });
    tmux.keys(&["q"]);
    tmux.wait_dead();
    tmux.assert_exit_status(0);
}

#[test]
fn the_monitor_needs_a_terminal() {
    let out = Command::new(BIN)
        .args(["monitor", "--socket", "/nonexistent/control.sock"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("monitor needs a terminal"), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "no escape sequences on a pipe: {out:?}"
    );
}
