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
    /// A line named `ttyUSB0`, its modem by a by-id link in the site's directory.
    fn new(line_options: &str, secrets: &str) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("by-id/usb-SimModem_LTE-if03");
        let line = format!(
            "name = \"ttyUSB0\"\ndevice = \"{}\"\n{line_options}",
            link.display()
        );
        Site::with_line(dir, &line, secrets)
    }

    /// A line named by `line` (its name and how it finds its modem, plus options).
    fn with_line(dir: tempfile::TempDir, line: &str, secrets: &str) -> Site {
        let netns = Netns::named("eqf", "router").unwrap();
        let path = |n: &str| dir.path().join(n);
        std::fs::write(path("gsm-cellular.chat"), CHAT).unwrap();
        std::fs::write(path("secrets"), secrets).unwrap();
        std::fs::set_permissions(path("secrets"), std::fs::Permissions::from_mode(0o600)).unwrap();
        let config = format!(
            "[control]\nsocket = \"{}\"\n[daemon]\nlock_dir = \"{}\"\nresolv_conf = \"{}\"\n\
             log_file = \"{}\"\nsecrets = \"secrets\"\n[[line]]\n\
             dial_chat = \"gsm-cellular.chat\"\nphone = \"*99#\"\n\
             apn = \"internet\"\nholdoff = 0.5\nescape_guard = 0.2\ntrack = false\n{line}",
            path("control.sock").display(),
            dir.path().display(),
            path("resolv.conf").display(),
            path("daemon.log").display(),
        );
        std::fs::create_dir_all(path("by-id")).unwrap();
        std::fs::write(path("eqlplus-dialer.toml"), config).unwrap();
        Site { dir, netns }
    }

    fn link(&self) -> PathBuf {
        self.dir.path().join("by-id/usb-SimModem_LTE-if03")
    }

    fn cli(&self, args: &[&str]) -> Output {
        self.cli_with(&[BIN], args)
    }

    /// `up` in a mount namespace of its own where `/sys/class/tty` is `fake` (the daemon it
    /// starts stays there): USB modems as sysfs describes them, without USB hardware.
    fn up_with_sysfs(&self, fake: &Path, args: &[&str]) -> Output {
        let fake = fake.display().to_string();
        let script = "mount --bind \"$1\" /sys/class/tty && shift && exec \"$@\"";
        self.cli_with(
            &["unshare", "-m", "sh", "-c", script, "sh", &fake, BIN, "up"],
            args,
        )
    }

    fn cli_with(&self, program: &[&str], args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.netns.name])
            .args(program)
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

/// `/sys/class/tty` as the kernel shows USB modems: each tty's `device` leads into a USB
/// device's interface (with `bInterfaceNumber`), whose parent has `idVendor`/`idProduct`.
struct FakeSysfs {
    dir: tempfile::TempDir,
}

impl FakeSysfs {
    fn new() -> FakeSysfs {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("class/tty")).unwrap();
        FakeSysfs { dir }
    }

    fn class(&self) -> PathBuf {
        self.dir.path().join("class/tty")
    }

    /// `tty` on interface `interface` of USB device vid:pid at `port`.
    fn plug(&self, tty: &str, port: &str, interface: u8) {
        let device = self.dir.path().join("devices/usb1").join(port);
        std::fs::create_dir_all(&device).unwrap();
        std::fs::write(device.join("idVendor"), "1199\n").unwrap();
        std::fs::write(device.join("idProduct"), "68c0\n").unwrap();
        let intf = device.join(format!("{port}:1.{interface}"));
        std::fs::create_dir_all(intf.join(tty)).unwrap();
        std::fs::write(intf.join("bInterfaceNumber"), format!("{interface:02x}\n")).unwrap();
        let class = self.class().join(tty);
        std::fs::create_dir_all(&class).unwrap();
        std::os::unix::fs::symlink(intf.join(tty), class.join("device")).unwrap();
    }

    fn unplug(&self, tty: &str) {
        std::fs::remove_dir_all(self.class().join(tty)).unwrap();
    }
}

/// A device node name in /dev for a simulated USB modem (a symlink to its pty), removed at
/// the end.
struct DevNode(PathBuf);

impl DevNode {
    fn new(name: &str) -> DevNode {
        let path = Path::new("/dev").join(name);
        let _ = std::fs::remove_file(&path);
        DevNode(path)
    }
}

impl Drop for DevNode {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn a_line_named_by_usb_identity_follows_its_modem_across_ttys_and_picks_it_by_imei() {
    if !require_root(
        "a_line_named_by_usb_identity_follows_its_modem_across_ttys_and_picks_it_by_imei",
    ) {
        return;
    }
    const IMEI_A: &str = "356938035643809";
    const IMEI_B: &str = "490154203237518";
    let sysfs = FakeSysfs::new();
    let (a, a2, b) = (
        DevNode::new("ttyUSB97"),
        DevNode::new("ttyUSB98"),
        DevNode::new("ttyUSB99"),
    );
    // Two modems of one make and model, no serial numbers: only the IMEI tells them apart.
    // The line wants modem B.
    let line =
        format!("name = \"lte\"\nusb = \"1199:68c0\"\nusb_interface = 3\nimei = \"{IMEI_B}\"\n");
    let site = Site::with_line(tempfile::tempdir().unwrap(), &line, "");
    let out = site.up_with_sysfs(
        sysfs.dir.path().join("class/tty").as_path(),
        &["--timeout", "3s"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("no device: no tty of USB 1199:68c0 interface 3 is present"),
        "{}",
        text(&out.stdout)
    );
    // Modem A appears: another IMEI, so the line keeps waiting, and dials nothing.
    sysfs.plug("ttyUSB97", "1-1.2", 3);
    let modem_a = Modem::start(&a.0, &["--imei", IMEI_A]);
    let line = site.wait_for("modem A refused", Duration::from_secs(10), |l| {
        l["last_error"]
            .as_str()
            .is_some_and(|e| e.contains(&format!("is IMEI {IMEI_A}")))
    });
    eprintln!("modem A looked at and refused in {line:?}");
    // Refused once: no loop of looks at the wrong modem.
    let looks = site.log().matches("state=\"locking\"").count();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(state(&site.status()), "no-device");
    assert_eq!(
        site.log().matches("state=\"locking\"").count(),
        looks,
        "{}",
        site.log()
    );
    // Modem B appears on another port: the line takes it.
    sysfs.plug("ttyUSB99", "1-1.4", 3);
    let modem_b = Modem::start(&b.0, &["--imei", IMEI_B]);
    site.wait_for("up on modem B", Duration::from_secs(15), |l| {
        state(l) == "up"
    });
    assert_eq!(
        site.status()["tty"],
        std::fs::canonicalize(&b.0).unwrap().display().to_string()
    );
    assert_eq!(site.status()["device"], "USB 1199:68c0 interface 3");
    assert_eq!(modem_a.calls(), 0);
    assert_eq!(modem_b.calls(), 1);
    // Modem A unplugged, and modem B replugged where it comes back as another tty (ttyUSB98):
    // the same line follows it, no config change.
    drop(modem_a);
    sysfs.unplug("ttyUSB97");
    modem_b.signal(nix::sys::signal::Signal::SIGUSR2);
    modem_b.wait_said("unplugged", Duration::from_secs(5));
    site.wait_for("device removed", Duration::from_secs(2), |l| {
        state(l) != "up" && l["last_error"] == "device removed"
    });
    site.wait_for("no-device", Duration::from_secs(5), |l| {
        state(l) == "no-device"
    });
    drop(modem_b);
    sysfs.unplug("ttyUSB99");
    sysfs.plug("ttyUSB98", "1-1.4", 3);
    let modem_b = Modem::start(&a2.0, &["--imei", IMEI_B]);
    site.wait_for("up on ttyUSB98", Duration::from_secs(15), |l| {
        state(l) == "up"
    });
    assert_eq!(
        site.status()["tty"],
        std::fs::canonicalize(&a2.0).unwrap().display().to_string()
    );
    assert_eq!(modem_b.calls(), 1);
}
