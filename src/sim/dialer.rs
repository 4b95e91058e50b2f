//! The real daemon (`eqlplus-dialer daemon`) dialling a simulated [`World`]: its generated
//! configuration (the first N of the world's lines, the shipped Hayes chat script, PAP/CHAP
//! with the world's account) and the process, started in the router namespace and stopped
//! (SIGTERM, a bounded wait, then SIGKILL) when dropped. Shared by `demo` and the scale
//! benchmark (`examples/scale_bench.rs`).

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::world::World;
use crate::control::{Request, Response, StatusReport, client};

/// The Hayes script the lines dial with (the shipped chat-scripts/hayes-dialup.chat).
const HAYES_SCRIPT: &str = include_str!("../../chat-scripts/hayes-dialup.chat");

/// How long a status request may take before it counts as unanswered.
const REQUEST_BOUND: Duration = Duration::from_secs(5);

/// How long a stopping daemon may take to hang its lines up before it is killed.
const STOP_BOUND: Duration = Duration::from_secs(30);

/// What the generated configuration says.
#[derive(Debug, Clone)]
pub struct DialerSetup {
    /// Lines 1..=lines of the world are configured (ttyS1…).
    pub lines: usize,
    /// The balancing policy (`least-loaded`, `round-robin`, …).
    pub policy: String,
    /// The account the lines log in with (the world's ISPs must know it); `None`: none.
    pub account: Option<(String, String)>,
    /// Seconds between a call's end and the next dial.
    pub holdoff: f64,
    /// Every line says `bundle = "…"`: one Multilink bundle of them all (for a multilink
    /// world, see [`super::world::WorldConfig::multilink`]).
    pub bundle: Option<String>,
}

impl Default for DialerSetup {
    fn default() -> DialerSetup {
        DialerSetup {
            lines: 1,
            policy: "least-loaded".into(),
            account: None,
            holdoff: 1.0,
            bundle: None,
        }
    }
}

/// The control socket of a daemon whose files are in `dir`.
pub fn socket_in(dir: &Path) -> PathBuf {
    dir.join("control.sock")
}

/// Writes the daemon's files into `dir` (configuration, chat script, secrets, lock directory)
/// for `world`'s lines; the configuration's path. Writing it again with more lines and
/// reloading adds them; the lines already up stay up.
pub fn write_config(dir: &Path, world: &World, setup: &DialerSetup) -> io::Result<PathBuf> {
    if setup.lines > world.lines.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} lines asked for, the world has {}",
                setup.lines,
                world.lines.len()
            ),
        ));
    }
    std::fs::create_dir_all(dir.join("locks"))?;
    std::fs::write(dir.join("hayes-dialup.chat"), HAYES_SCRIPT)?;
    let mut text = format!(
        "[balancer]\npolicy = \"{}\"\n[control]\nsocket = \"{}\"\n[daemon]\nlock_dir = \"locks\"\nresolv_conf = \"resolv.conf\"\n",
        setup.policy,
        socket_in(dir).display()
    );
    if let Some((user, secret)) = &setup.account {
        let secrets = dir.join("secrets");
        std::fs::write(&secrets, format!("{user} * {secret}\n"))?;
        std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600))?;
        text += "secrets = \"secrets\"\n";
    }
    for (index, line) in world.lines.iter().take(setup.lines).enumerate() {
        let i = index + 1;
        text += &format!(
            "[[line]]\nname = \"ttyS{i}\"\ndevice = \"{}\"\ndial_chat = \"hayes-dialup.chat\"\nphone = \"555{i:04}\"\nholdoff = {}\nescape_guard = 0.2\nslave = \"eq-ttyS{i}\"\n",
            line.modem.tty().display(),
            setup.holdoff,
        );
        if let Some((user, _)) = &setup.account {
            text += &format!("user = \"{user}\"\n");
        }
        if let Some(bundle) = &setup.bundle {
            text += &format!("bundle = \"{bundle}\"\n");
        }
    }
    let path = dir.join("eqlplus-dialer.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

/// A daemon running in a world's router namespace; stopped when dropped.
pub struct Dialer {
    child: Option<Child>,
    socket: PathBuf,
    log: PathBuf,
}

impl Dialer {
    /// Starts `bin daemon --config CONFIG` in `world`'s router namespace, its log (stderr)
    /// going to `dir/daemon.log`; `log_filter` sets `EQLPLUS_LOG`.
    pub fn start(
        bin: &Path,
        world: &World,
        dir: &Path,
        config: &Path,
        log_filter: Option<&str>,
    ) -> io::Result<Dialer> {
        let log = dir.join("daemon.log");
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &world.router.name])
            .arg(bin)
            .arg("daemon")
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?);
        if let Some(filter) = log_filter {
            command.env("EQLPLUS_LOG", filter);
        }
        let child = command
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot start the daemon: {e}")))?;
        Ok(Dialer {
            child: Some(child),
            socket: socket_in(dir),
            log,
        })
    }

    /// The daemon's PID (`ip netns exec` execs it, so it is the child's own).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The last `n` lines of the daemon's log.
    pub fn log_tail(&self, n: usize) -> Vec<String> {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let mut tail: Vec<String> = log.lines().rev().take(n).map(str::to_string).collect();
        tail.reverse();
        tail
    }

    /// Whether the daemon has exited (and how).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Sends the daemon a signal.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        if let Some(child) = &self.child {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, signal);
        }
    }

    /// The status report.
    pub async fn status(&self) -> Result<StatusReport, String> {
        match self.ask(Request::Status { line: None }).await? {
            Response::Status(s) => Ok(s),
            other => Err(format!("unexpected answer {other:?}")),
        }
    }

    /// A request answered `ok` (`up`, `hangup`, `reload`): the daemon's message.
    pub async fn command(&self, request: Request) -> Result<String, String> {
        match self.ask(request).await? {
            Response::Ok { message } => Ok(message),
            Response::Error { message } => Err(message),
            other => Err(format!("unexpected answer {other:?}")),
        }
    }

    async fn ask(&self, request: Request) -> Result<Response, String> {
        match tokio::time::timeout(REQUEST_BOUND, client::request(&self.socket, request)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {REQUEST_BOUND:?}")),
        }
    }

    /// Polls the status every `every` until `check` holds: how long it took. Gives up after
    /// `limit`, naming the lines (at most 8) that were not where they should be.
    pub async fn wait_for(
        &self,
        what: &str,
        limit: Duration,
        every: Duration,
        check: impl Fn(&StatusReport) -> bool,
    ) -> Result<Duration, String> {
        let start = Instant::now();
        let mut last = None;
        while start.elapsed() < limit {
            if let Ok(s) = self.status().await {
                if check(&s) {
                    return Ok(start.elapsed());
                }
                last = Some(s);
            }
            tokio::time::sleep(every).await;
        }
        let lines = last.map(|s| s.lines).unwrap_or_default();
        let mut states: Vec<String> = lines
            .iter()
            .take(8)
            .map(|l| {
                format!(
                    "{} {} {}",
                    l.name,
                    l.state,
                    l.last_error.clone().unwrap_or_default()
                )
            })
            .collect();
        if lines.len() > 8 {
            states.push(format!("… {} more", lines.len() - 8));
        }
        Err(format!(
            "{what}: not within {}s ({})",
            limit.as_secs(),
            states.join("; ")
        ))
    }

    /// SIGTERM and a wait of at most `limit` (then SIGKILL): how it exited, and when.
    pub fn stop(&mut self, limit: Duration) -> Option<(ExitStatus, Duration)> {
        let mut child = self.child.take()?;
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(status)) = child.try_wait() {
                return Some((status, start.elapsed()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }
}

impl Drop for Dialer {
    fn drop(&mut self) {
        self.stop(STOP_BOUND);
    }
}
