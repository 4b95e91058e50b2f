//! Field modems as a user meets them, against `eqlplus-dialer simulate modem --cellular` (a
//! pty with a by-id-style symlink, answered by our PPP answer role): a replugged modem keeps its
//! line, a modem absent at start is waited for without dialling, a wrong SIM PIN is sent once
//! and locks the line, a wedged modem is reset by the recovery ladder, a dial waits for network
//! registration. The daemon runs in a network namespace of the test's own (`up`/`down`, as a
//! user would). Root only.

mod support;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eqlplus_dialer::sim::netns::Netns;
use support::require_root;

const BIN: &str = env!("CARGO_BIN_EXE_eqlplus-dialer");
const CHAT: &str = include_str!("../chat-scripts/gsm-cellular.chat");

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A simulated cellular modem process; its stdout lines are kept.
struct Modem {
    child: Child,
    said: Arc<Mutex<Vec<String>>>,
}

impl Modem {
    fn start(link: &Path, args: &[&str]) -> Modem {
        let mut child = Command::new(BIN)
            .args([
                "simulate",
                "modem",
                "--cellular",
                "--isp",
                "ppp",
                "--dial-delay",
                "200",
            ])
            .arg("--link")
            .arg(link)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let said = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().unwrap();
        let keep = said.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                keep.lock().unwrap().push(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::symlink_metadata(link).is_err() {
            assert!(Instant::now() < deadline, "the modem did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        Modem { child, said }
    }

    fn said(&self) -> Vec<String> {
        self.said.lock().unwrap().clone()
    }

    fn calls(&self) -> usize {
        self.said()
            .iter()
            .filter(|l| l.starts_with("call "))
            .count()
    }

    /// SIGUSR1: wedge. SIGUSR2: unplug, or plug in again.
    fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }

    fn wait_said(&self, what: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.said().iter().any(|l| l.contains(what)) {
            assert!(
                Instant::now() < deadline,
                "the modem never said '{what}': {:?}",
                self.said()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Modem {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The daemon's files and namespace.
struct Site {
    dir: tempfile::TempDir,
    netns: Netns,
}

impl Site {
    fn new(line_options: &str, secrets: &str) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let netns = Netns::named("eqf", "router").unwrap();
        let path = |n: &str| dir.path().join(n);
        std::fs::write(path("gsm-cellular.chat"), CHAT).unwrap();
        std::fs::write(path("secrets"), secrets).unwrap();
        std::fs::set_permissions(path("secrets"), std::fs::Permissions::from_mode(0o600)).unwrap();
        let config = format!(
            "[control]\nsocket = \"{}\"\n[daemon]\nlock_dir = \"{}\"\nresolv_conf = \"{}\"\n\
             log_file = \"{}\"\nsecrets = \"secrets\"\n[[line]]\nname = \"ttyUSB0\"\n\
             device = \"{}\"\ndial_chat = \"gsm-cellular.chat\"\nphone = \"*99#\"\n\
             apn = \"internet\"\nholdoff = 0.5\nescape_guard = 0.2\ntrack = false\n{line_options}",
            path("control.sock").display(),
            dir.path().display(),
            path("resolv.conf").display(),
            path("daemon.log").display(),
            path("by-id/usb-SimModem_LTE-if03").display(),
        );
        std::fs::create_dir_all(path("by-id")).unwrap();
        std::fs::write(path("eqlplus-dialer.toml"), config).unwrap();
        Site { dir, netns }
    }

    fn link(&self) -> PathBuf {
        self.dir.path().join("by-id/usb-SimModem_LTE-if03")
    }

    fn cli(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.netns.name, BIN])
            .args(args)
            .arg("--config")
            .arg(self.dir.path().join("eqlplus-dialer.toml"))
            .env("EQLPLUS_LOG", "eqlplus_dialer=debug")
            .output()
            .unwrap()
    }

    fn status(&self) -> serde_json::Value {
        let out = self.cli(&["status", "--json"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["lines"][0].clone()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    /// Waits until the line's status satisfies `check`; how long it took.
    fn wait_for(
        &self,
        what: &str,
        limit: Duration,
        check: impl Fn(&serde_json::Value) -> bool,
    ) -> Duration {
        let start = Instant::now();
        loop {
            let line = self.status();
            if check(&line) {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < limit,
                "{what}: not within {limit:?}: {line}\nlog:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = self.cli(&["down", "--timeout", "20s"]);
    }
}

fn state(line: &serde_json::Value) -> &str {
    line["state"].as_str().unwrap_or("")
}

#[test]
fn a_replugged_modem_keeps_its_line_and_an_absent_one_is_waited_for() {
    if !require_root("a_replugged_modem_keeps_its_line_and_an_absent_one_is_waited_for") {
        return;
    }
    let site = Site::new("", "");
    // Absent at start: `no-device`, and nothing is tried while it stays away.
    let out = site.cli(&["up", "--timeout", "5s"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("ttyUSB0: failed: no device:"),
        "{}",
        text(&out.stdout)
    );
    // One look at start and one for `up`, then a watch: nothing more while it stays away.
    let looks = site.log().matches("state=\"locking\"").count();
    assert!(looks <= 2, "{}", site.log());
    std::thread::sleep(Duration::from_secs(3));
    let line = site.status();
    assert_eq!(state(&line), "no-device", "{line}");
    assert_eq!(line["redials"], 0, "{line}");
    assert_eq!(site.log().matches("state=\"locking\"").count(), looks);
    // Plugged in: up within a dial's time, without a config change.
    let modem = Modem::start(&site.link(), &[]);
    let took = site.wait_for(
        "up after the modem appeared",
        Duration::from_secs(10),
        |l| state(l) == "up",
    );
    eprintln!("up {took:?} after the modem appeared");
    let first_tty = std::fs::canonicalize(site.link()).unwrap();
    // Status names the tty the by-id link led to.
    assert_eq!(site.status()["tty"], first_tty.display().to_string());
    // Unplugged mid-call: down, saying so, within 1 s; then waiting for it.
    modem.signal(nix::sys::signal::Signal::SIGUSR2);
    modem.wait_said("unplugged", Duration::from_secs(5));
    let took = site.wait_for("down after the unplug", Duration::from_secs(1), |l| {
        state(l) != "up" && l["last_error"] == "device removed"
    });
    eprintln!("'device removed' {took:?} after the unplug");
    site.wait_for("no-device", Duration::from_secs(5), |l| {
        state(l) == "no-device"
    });
    let calls = modem.calls();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(modem.calls(), calls, "no dial while the modem is away");
    // Plugged in again on another tty: the same line, up again.
    modem.signal(nix::sys::signal::Signal::SIGUSR2);
    modem.wait_said("plugged in again", Duration::from_secs(5));
    let second_tty = std::fs::canonicalize(site.link()).unwrap();
    assert_ne!(first_tty, second_tty, "the by-id link moved");
    site.wait_for("up on the new tty", Duration::from_secs(10), |l| {
        state(l) == "up"
    });
    assert_eq!(site.status()["tty"], second_tty.display().to_string());
    assert!(site.log().contains("state=\"no-device\""));
}

#[test]
fn a_wrong_pin_is_sent_once_and_locks_the_line_until_up() {
    if !require_root("a_wrong_pin_is_sent_once_and_locks_the_line_until_up") {
        return;
    }
    let site = Site::new("", "sim-pin ttyUSB0 9999\n");
    let modem = Modem::start(&site.link(), &["--sim", "pin:1234"]);
    let out = site.cli(&["up", "--timeout", "20s"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("refused the PIN"),
        "{}",
        text(&out.stdout)
    );
    std::thread::sleep(Duration::from_secs(4));
    let line = site.status();
    assert_eq!(state(&line), "sim-locked", "{line}");
    assert_eq!(line["cellular"]["sim"], "pin", "{line}");
    assert_eq!(
        site.log().matches("SIM PIN sent").count(),
        1,
        "{}",
        site.log()
    );
    assert_eq!(modem.calls(), 0);
    // `up` by hand checks the SIM again, but never sends the refused PIN again.
    let out = site.cli(&["up", "--timeout", "10s"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert_eq!(
        site.log().matches("SIM PIN sent").count(),
        1,
        "{}",
        site.log()
    );
    assert_eq!(state(&site.status()), "sim-locked");
    assert!(!site.log().contains("9999"), "the PIN is never logged");
}

#[test]
fn a_wedged_modem_is_reset_and_a_dial_waits_for_registration() {
    if !require_root("a_wedged_modem_is_reset_and_a_dial_waits_for_registration") {
        return;
    }
    let site = Site::new("", "sim-pin ttyUSB0 1234\n");
    let modem = Modem::start(
        &site.link(),
        &["--sim", "pin:1234", "--registration", "searching:3s,home"],
    );
    let out = site.cli(&["up", "--timeout", "30s"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        site.log()
    );
    // One dial, after registration: no NO CARRIER from dialling too early.
    assert_eq!(modem.calls(), 1, "{:?}", modem.said());
    let log = site.log();
    let registering = log.find("state=\"registering\"").unwrap();
    let dialing = log.find("state=\"dial-chat\"").unwrap();
    assert!(registering < dialing);
    let line = site.status();
    assert_eq!(line["cellular"]["registration"], "home", "{line}");
    assert_eq!(line["cellular"]["operator"], "SimNet", "{line}");
    assert!(
        line["cellular"]["signal"]["dbm"].as_i64().is_some(),
        "{line}"
    );
    // Wedged mid-call: the call ends, the modem answers nothing; the ladder reboots it with
    // AT+CFUN=1,1 and the line comes back (PIN and registration again).
    modem.signal(nix::sys::signal::Signal::SIGUSR1);
    modem.wait_said("wedged", Duration::from_secs(5));
    site.wait_for(
        "up again after a modem reset",
        Duration::from_secs(60),
        |l| state(l) == "up" && l["resets"]["modem"] == 1,
    );
    assert!(site.log().contains("AT+CFUN=1,1: OK"), "{}", site.log());
    assert_eq!(
        site.log().matches("SIM PIN sent").count(),
        2,
        "once per power-on"
    );
}
