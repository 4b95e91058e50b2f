//! The daemon end to end, as a user runs it: `eqlplus-dialer daemon` in a router namespace of
//! a simulated world (`eqlplus_dialer::sim::world`), the CLI talking to it over the control
//! socket, a counting server in the world's internet. Shared by the daemon's end-to-end tests.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use eqlplus_dialer::sim::DialAnswer;
use eqlplus_dialer::sim::world::{World as SimWorld, WorldConfig, line_local};

use super::inet::{Hits, SERVER, connect_within, serve};

/// More configuration: `top` goes before everything (sections of its own, e.g. `[track]`),
/// `lines[i]` at the end of line i+1's section.
#[derive(Default)]
pub struct Extra {
    pub top: String,
    pub lines: Vec<String>,
}

pub const BIN: &str = env!("CARGO_BIN_EXE_eqlplus-dialer");

/// The simulated world (see `eqlplus_dialer::sim::world`), a counting server in its
/// internet, and the daemon's files.
pub struct World {
    pub dir: tempfile::TempDir,
    pub sim: SimWorld,
    pub hits: Hits,
    stop: Arc<AtomicBool>,
    server: Option<std::thread::JoinHandle<()>>,
}

impl World {
    /// `answers[i]` are line i+1's modem answers; `users` the ISP's accounts.
    pub fn new(answers: &[Vec<DialAnswer>], users: &[(&str, &str)]) -> World {
        World::build(answers, users, false)
    }

    /// [`new`](Self::new), every line calling one ISP that answers Multilink PPP.
    pub fn new_multilink(answers: &[Vec<DialAnswer>], users: &[(&str, &str)]) -> World {
        World::build(answers, users, true)
    }

    fn build(answers: &[Vec<DialAnswer>], users: &[(&str, &str)], multilink: bool) -> World {
        let sim = SimWorld::build(&WorldConfig {
            lines: answers.to_vec(),
            rate: None,
            users: users
                .iter()
                .map(|(u, p)| (u.to_string(), p.to_string()))
                .collect(),
            prefix: "eqt".into(),
            multilink,
            ..WorldConfig::default()
        })
        .expect("build the world");
        let hits: Hits = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let server = {
            let (hits, stop) = (hits.clone(), stop.clone());
            sim.internet.spawn(move || serve(hits, stop)).unwrap()
        };
        std::thread::sleep(Duration::from_millis(100));
        World {
            dir: tempfile::tempdir().unwrap(),
            sim,
            hits,
            stop,
            server: Some(server),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn socket(&self) -> String {
        self.path("control.sock").display().to_string()
    }

    /// Writes the daemon's configuration: line i dials `phones[i]` as `users[i]`; `secrets` is
    /// the secrets file's text.
    pub fn write_config(&self, phones: &[&str], users: &[Option<&str>], secrets: &str) {
        self.write_config_with(phones, users, secrets, &Extra::default());
    }

    /// [`write_config`](Self::write_config) with more settings.
    pub fn write_config_with(
        &self,
        phones: &[&str],
        users: &[Option<&str>],
        secrets: &str,
        extra: &Extra,
    ) {
        std::fs::create_dir_all(self.path("locks")).unwrap();
        std::fs::write(
            self.path("dial.chat"),
            "ABORT BUSY ABORT 'NO CARRIER' TIMEOUT 5 '' ATZ OK ATDT\\T CONNECT ''\n",
        )
        .unwrap();
        self.logging_script("ip-up", "$@ IFNAME=$IFNAME DNS1=$DNS1", "ip-up.log");
        // A stand-in for systemd-resolved's resolvectl: the daemon finds it on its PATH.
        std::fs::create_dir_all(self.path("bin")).unwrap();
        self.logging_script("bin/resolvectl", "$@", "resolvectl.log");
        // Round-robin: this test counts an exact share of sequential connections; the default
        // (least-loaded) is checked by the demo test and tests/balancer_netns.rs.
        let mut text = format!(
            "[balancer]\npolicy = \"round-robin\"\n[control]\nsocket = \"{}\"\n[daemon]\nlog_file = \"{}\"\nlock_dir = \"{}\"\nresolv_conf = \"{}\"\nip_up = \"{}\"\n",
            self.socket(),
            self.path("detached.log").display(),
            self.path("locks").display(),
            self.path("resolv.conf").display(),
            self.path("ip-up").display(),
        );
        text = format!("{}{text}", extra.top);
        if !secrets.is_empty() {
            let path = self.path("secrets");
            std::fs::write(&path, secrets).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            text += &format!("secrets = \"{}\"\n", path.display());
        }
        for (index, line) in self.sim.lines.iter().enumerate() {
            let i = index + 1;
            text += &format!(
                "[[line]]\nname = \"ttyS{i}\"\ndevice = \"{}\"\ndial_chat = \"dial.chat\"\nphone = \"{}\"\nlcp_echo_interval = 0.3\nlcp_echo_failure = 3\nholdoff = 0.3\nescape_guard = 0.2\nslave = \"eq-ttyS{i}\"\n",
                line.modem.tty().display(),
                phones[index],
            );
            if let Some(u) = users[index] {
                text += &format!("user = \"{u}\"\n");
            }
            if let Some(more) = extra.lines.get(index) {
                text += more;
            }
        }
        std::fs::write(self.path("eqlplus-dialer.toml"), text).unwrap();
    }

    /// An executable shell script `name` that appends `echo` (expanded) to the file `log`.
    pub fn logging_script(&self, name: &str, echo: &str, log: &str) {
        let text = format!(
            "#!/bin/sh\necho \"{echo}\" >> {}\n",
            self.path(log).display()
        );
        std::fs::write(self.path(name), text).unwrap();
        std::fs::set_permissions(self.path(name), std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    pub fn start_daemon(&self) -> Daemon {
        let log = std::fs::File::create(self.path("daemon.log")).unwrap();
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.sim.router.name,
                BIN,
                "daemon",
                "--config",
            ])
            .arg(self.path("eqlplus-dialer.toml"))
            .env("EQLPLUS_LOG", "eqlplus_dialer=debug")
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    self.path("bin").display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map(Daemon)
            .unwrap()
    }

    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new(BIN);
        cmd.arg(args[0])
            .arg("--socket")
            .arg(self.socket())
            .args(&args[1..]);
        cmd.output().unwrap()
    }

    pub fn status(&self) -> serde_json::Value {
        let out = self.cli(&["status", "--json"]);
        assert!(
            out.status.success(),
            "status: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("status --json is JSON")
    }

    pub fn states(&self) -> Vec<String> {
        let s = self.status();
        s["lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["state"].as_str().unwrap().to_string())
            .collect()
    }

    /// Waits until `check(states)` holds, or panics with the daemon's log.
    pub fn wait_for(&self, what: &str, limit: Duration, check: impl Fn(&[String]) -> bool) {
        self.wait_for_status(what, limit, |v| {
            let states: Vec<String> = v["lines"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|l| l["state"].as_str().unwrap_or("").to_string())
                        .collect()
                })
                .unwrap_or_default();
            check(&states)
        });
    }

    /// Waits until `check(status --json)` holds, or panics with the daemon's log.
    pub fn wait_for_status(
        &self,
        what: &str,
        limit: Duration,
        check: impl Fn(&serde_json::Value) -> bool,
    ) {
        let start = Instant::now();
        loop {
            let out = self.cli(&["status", "--json"]);
            if out.status.success()
                && let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout)
                && check(&v)
            {
                return;
            }
            if start.elapsed() > limit {
                panic!(
                    "{what}: not within {limit:?}; last status: {}\ndaemon log:\n{}",
                    String::from_utf8_lossy(&out.stdout),
                    std::fs::read_to_string(self.path("daemon.log")).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn connect(&self, n: usize) -> usize {
        self.sim
            .lan
            .run(move || connect_within(SERVER, n, Duration::from_secs(2)))
            .unwrap()
    }

    pub fn take_hits(&self, lines: usize) -> Vec<usize> {
        let hits: HashMap<Ipv4Addr, usize> = std::mem::take(&mut *self.hits.lock().unwrap());
        (1..=lines)
            .map(|i| hits.get(&line_local(i)).copied().unwrap_or(0))
            .collect()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(s) = self.server.take() {
            let _ = s.join();
        }
    }
}

pub fn all(states: &[String], state: &str, n: usize) -> bool {
    states.len() == n && states.iter().all(|s| s == state)
}

/// The daemon under test; killed when dropped while still running (a failed test must not
/// leave it behind in a namespace that is gone).
pub struct Daemon(Child);

impl std::ops::Deref for Daemon {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Daemon {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

pub fn sigterm(child: &Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
}

pub fn sighup(child: &Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
}

pub fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            start.elapsed() < limit,
            "the daemon did not exit within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
