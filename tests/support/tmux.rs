//! A tmux server of a test's own, to run terminal programs (the monitor) in a real terminal:
//! `capture-pane` reads the screen, `send-keys` types. Every wait is bounded.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_eqlplus-dialer");

/// How long anything may take to show up on the screen.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Whether tmux is installed (the tests that need it say so and pass when it is not).
pub fn have_tmux() -> bool {
    let ok = Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIPPED: tmux is not installed (scripts/test.sh installs it)");
    }
    ok
}

/// A tmux server of our own with one 120×30 session; killed on drop.
pub struct Tmux {
    socket: PathBuf,
    session: String,
}

impl Tmux {
    /// Starts `command` (a shell command line) in a new detached session that stays on
    /// screen after the command ends (`remain-on-exit`).
    pub fn start(dir: &Path, name: &str, command: &str) -> Tmux {
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

    pub fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(["-f", "/dev/null"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run tmux")
    }

    pub fn screen(&self) -> String {
        let out = self.run(&["capture-pane", "-p", "-t", &self.session]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The scrollback and the screen.
    pub fn everything(&self) -> String {
        let out = self.run(&["capture-pane", "-p", "-S", "-", "-t", &self.session]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `#{…}` formats of the pane, e.g. `#{pane_dead}`.
    pub fn pane(&self, format: &str) -> String {
        let out = self.run(&["display-message", "-p", "-t", &self.session, format]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn keys(&self, keys: &[&str]) {
        for key in keys {
            let out = self.run(&["send-keys", "-t", &self.session, key]);
            assert!(out.status.success(), "send-keys {key}: {out:?}");
        }
    }

    /// Polls the screen until `ok` holds; panics with the last screen after [`PATIENCE`].
    pub fn wait_for(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
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
    pub fn wait_dead(&self) {
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
    pub fn assert_exit_status(&self, status: i32) {
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
pub fn monitor_command(env: &str, socket: &Path, args: &str) -> String {
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
pub fn line_row<'a>(screen: &'a str, name: &str) -> Option<&'a str> {
    screen.lines().find(|l| {
        l.trim_start_matches(['▶', ' '])
            .split_whitespace()
            .next()
            .is_some_and(|w| w == name)
    })
}

pub fn state_of<'a>(screen: &'a str, name: &str) -> Option<&'a str> {
    line_row(screen, name).and_then(|l| {
        let rest = l.trim_start_matches(['▶', ' ']);
        rest.split_whitespace().nth(1)
    })
}
