//! `eqlplus-dialer monitor` in a real terminal: tmux runs it against the canned daemon
//! (`control-test-server`), `capture-pane` reads the screen, `send-keys` types.
//!
//! Each test has its own tmux server (`-S` a socket in its temporary directory, `-f
//! /dev/null`: no user configuration), killed at the end whatever happens. Every wait is
//! bounded. Without tmux the tests say so and pass (`scripts/test.sh` installs it).
//! Last, without tmux: off a terminal the monitor refuses to start.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::tmux::{PATIENCE, Tmux, have_tmux, line_row, monitor_command, state_of};

const BIN: &str = env!("CARGO_BIN_EXE_eqlplus-dialer");

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
    // A cellular line shows its network and signal.
    assert!(usb.contains("SimNet LTE ▂▄__ -96dBm"), "{usb}");
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
