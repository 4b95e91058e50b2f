//! The supervisor: one task per line, the balancer, status and the administrative commands
//! (`up`, `hangup`, `status`, `reload`) that the control socket and signals bring in.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;

use crate::balancer::actor::BalancerHandle;
use crate::balancer::{Balancer, BalancerConfig};
use crate::chat::Script;
use crate::config::{Config, LineConfig, SecretsFile, line_secret};
use crate::control::{LineStatus, Request, Response, StatusReport};
use crate::link::hooks::Hooks;
use crate::link::{LineCommand, LineContext, LineShared, run_line};
use crate::net::Netlink;
use crate::serial::HangupTiming;

/// How long a line may take to hang up at shutdown or when removed (its hooks come on top).
const LINE_STOP_BOUND: Duration = Duration::from_secs(20);

/// A running line.
struct LineEntry {
    /// What it was started with: a reload restarts it only if this changed.
    fingerprint: LineFingerprint,
    config: LineConfig,
    commands: mpsc::Sender<LineCommand>,
    task: JoinHandle<()>,
    shared: Arc<LineShared>,
    rate: Rate,
}

/// Everything that defines a line's behaviour, so a reload can tell changed lines apart.
#[derive(Debug, Clone, PartialEq)]
struct LineFingerprint {
    config: LineConfig,
    init_script: Option<Script>,
    dial_script: Option<Script>,
    secret: Option<String>,
}

/// Traffic rates from the last two samples.
#[derive(Debug, Clone, Copy, Default)]
struct Rate {
    last_rx: u64,
    last_tx: u64,
    last_at: Option<Instant>,
    rx_rate: f64,
    tx_rate: f64,
}

/// The supervisor's state.
pub struct Supervisor {
    config: Config,
    lines: BTreeMap<String, LineEntry>,
    balancer: BalancerHandle,
    balancer_task: Option<JoinHandle<()>>,
    netlink: Netlink,
    seed: u64,
}

/// Shared with the control socket and the signal loop.
pub type SharedSupervisor = Arc<Mutex<Supervisor>>;

impl Supervisor {
    /// Sets up the balancer and starts every line of a checked configuration.
    pub async fn start(config: Config) -> anyhow::Result<Supervisor> {
        let netlink = Netlink::new()?;
        let balancer = Balancer::start(BalancerConfig {
            policy: config.balancer.policy,
            routing: config.balancer.routing,
        })
        .await?;
        let (balancer, balancer_task) =
            BalancerHandle::spawn(balancer, Some(config.daemon.resolv_conf.clone()));
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            ^ u64::from(std::process::id()) << 32;
        let mut s = Supervisor {
            config: config.clone(),
            lines: BTreeMap::new(),
            balancer,
            balancer_task: Some(balancer_task),
            netlink,
            seed,
        };
        let fingerprints = fingerprints(&config).map_err(|p| anyhow::anyhow!(p.join("\n")))?;
        for (name, fp) in fingerprints {
            s.start_line(name, fp);
        }
        tracing::info!(lines = s.lines.len(), "supervisor started");
        Ok(s)
    }

    fn start_line(&mut self, name: String, fp: LineFingerprint) {
        self.seed = self
            .seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let shared = Arc::new(LineShared::default());
        let d = &self.config.daemon;
        let ctx = LineContext {
            config: fp.config.clone(),
            init_script: fp.init_script.clone(),
            dial_script: fp.dial_script.clone(),
            secret: fp.secret.clone(),
            lock_dir: d.lock_dir.clone(),
            hangup: HangupTiming {
                guard: fp.config.escape_guard,
                ..HangupTiming::default()
            },
            netlink: self.netlink.clone(),
            balancer: self.balancer.clone(),
            hooks: Hooks {
                ip_up: d.ip_up.clone(),
                ip_down: d.ip_down.clone(),
                timeout: d.hook_timeout,
            },
            shared: shared.clone(),
            seed: self.seed,
        };
        let (tx, rx) = mpsc::channel(16);
        let task = tokio::spawn(run_line(ctx, rx));
        self.lines.insert(
            name,
            LineEntry {
                config: fp.config.clone(),
                fingerprint: fp,
                commands: tx,
                task,
                shared,
                rate: Rate::default(),
            },
        );
    }

    /// How long a line may take to stop: its hangup, then its ip-down hook (which a line
    /// waits for, up to the hook timeout and the kill).
    fn line_stop_bound(&self) -> Duration {
        let hooks = Hooks {
            timeout: self.config.daemon.hook_timeout,
            ..Hooks::default()
        };
        LINE_STOP_BOUND + hooks.bound()
    }

    /// Answers one control request.
    pub async fn handle(&mut self, request: Request) -> Response {
        match request {
            Request::Up { lines } => self.admin(lines, LineCommand::Up).await,
            Request::Hangup { lines } => {
                if lines.is_empty() {
                    return Response::Error {
                        message: "name the lines to hang up (e.g. hangup ttyS1)".into(),
                    };
                }
                self.admin(lines, LineCommand::Down).await
            }
            Request::Status { line } => match line {
                Some(name) if !self.lines.contains_key(&name) => Response::Error {
                    message: format!("no line named {name} (lines: {})", self.names().join(", ")),
                },
                filter => Response::Status(self.status(filter.as_deref())),
            },
            Request::Reload => self.reload().await,
            // The control server streams status for subscribers itself.
            Request::Subscribe { .. } => Response::Status(self.status(None)),
        }
    }

    fn names(&self) -> Vec<String> {
        self.lines.keys().cloned().collect()
    }

    async fn admin(&mut self, names: Vec<String>, command: LineCommand) -> Response {
        let targets: Vec<String> = if names.is_empty() {
            self.lines
                .iter()
                .filter(|(_, l)| l.config.enabled)
                .map(|(n, _)| n.clone())
                .collect()
        } else {
            names
        };
        if let Some(unknown) = targets.iter().find(|n| !self.lines.contains_key(*n)) {
            return Response::Error {
                message: format!(
                    "no line named {unknown} (lines: {})",
                    self.names().join(", ")
                ),
            };
        }
        for name in &targets {
            if let Some(l) = self.lines.get(name) {
                let _ = l.commands.send(command).await;
            }
        }
        let verb = match command {
            LineCommand::Up => "bringing up",
            LineCommand::Down => "hanging up (held down until `up`)",
            LineCommand::Shutdown => "stopping",
        };
        Response::Ok {
            message: format!("{verb}: {}", targets.join(", ")),
        }
    }

    /// Re-reads the configuration: unchanged lines stay up, changed ones restart, removed ones
    /// hang up, new ones dial. A bad file changes nothing and says why.
    pub async fn reload(&mut self) -> Response {
        let path = self.config.path.clone();
        let config = match crate::config::load_checked(&path) {
            Ok(c) => c,
            Err(problems) => {
                tracing::warn!("reload refused: {}", problems.join("; "));
                return Response::Error {
                    message: format!(
                        "reload refused, the running configuration stays:\n{}",
                        problems.join("\n")
                    ),
                };
            }
        };
        let fresh = match fingerprints(&config) {
            Ok(f) => f,
            Err(problems) => {
                return Response::Error {
                    message: format!("reload refused:\n{}", problems.join("\n")),
                };
            }
        };
        let mut notes = Vec::new();
        if config.balancer != self.config.balancer {
            notes.push("balancer settings change at the next restart".to_string());
        }
        let old = self.config.clone();
        self.config = Config {
            balancer: old.balancer.clone(),
            ..config
        };
        let (mut kept, mut restarted, mut removed, mut added) = (vec![], vec![], vec![], vec![]);
        let gone: Vec<String> = self
            .lines
            .keys()
            .filter(|n| !fresh.contains_key(*n))
            .cloned()
            .collect();
        for name in gone {
            self.stop_line(&name).await;
            removed.push(name);
        }
        for (name, fp) in fresh {
            match self.lines.get(&name) {
                Some(l) if l.fingerprint == fp => kept.push(name),
                Some(_) => {
                    self.stop_line(&name).await;
                    self.start_line(name.clone(), fp);
                    restarted.push(name);
                }
                None => {
                    self.start_line(name.clone(), fp);
                    added.push(name);
                }
            }
        }
        let list = |v: &Vec<String>| {
            if v.is_empty() {
                "-".to_string()
            } else {
                v.join(", ")
            }
        };
        let mut message = format!(
            "reloaded: unchanged {}; restarted {}; removed {}; added {}",
            list(&kept),
            list(&restarted),
            list(&removed),
            list(&added)
        );
        for n in notes {
            message.push_str(&format!("; {n}"));
        }
        tracing::info!("{message}");
        Response::Ok { message }
    }

    async fn stop_line(&mut self, name: &str) {
        if let Some(l) = self.lines.remove(name) {
            let _ = l.commands.send(LineCommand::Shutdown).await;
            if tokio::time::timeout(self.line_stop_bound(), l.task)
                .await
                .is_err()
            {
                tracing::warn!(line = name, "line did not stop in time");
            }
        }
    }

    /// Hangs every line up cleanly, then removes all kernel state. The supervisor has no
    /// lines afterwards.
    pub async fn shutdown(&mut self) {
        let names = self.names();
        for name in &names {
            if let Some(l) = self.lines.get(name) {
                let _ = l.commands.send(LineCommand::Shutdown).await;
            }
        }
        let bound = self.line_stop_bound();
        for name in names {
            if let Some(l) = self.lines.remove(&name)
                && tokio::time::timeout(bound, l.task).await.is_err()
            {
                tracing::warn!(line = %name, "line did not stop in time");
            }
        }
        if let Err(e) = self.balancer.shutdown().await {
            tracing::error!("balancer shutdown: {e}");
        }
        if let Some(task) = self.balancer_task.take() {
            let _ = task.await;
        }
        tracing::info!("all lines down, kernel state removed");
    }

    /// Samples traffic counters (call about once a second) for rates and shares.
    pub fn sample(&mut self) {
        let now = Instant::now();
        for l in self.lines.values_mut() {
            let rx = l.shared.rx_bytes.load(std::sync::atomic::Ordering::Relaxed);
            let tx = l.shared.tx_bytes.load(std::sync::atomic::Ordering::Relaxed);
            if let Some(at) = l.rate.last_at {
                let dt = now.duration_since(at).as_secs_f64().max(1e-3);
                l.rate.rx_rate = rx.saturating_sub(l.rate.last_rx) as f64 / dt;
                l.rate.tx_rate = tx.saturating_sub(l.rate.last_tx) as f64 / dt;
            }
            l.rate.last_rx = rx;
            l.rate.last_tx = tx;
            l.rate.last_at = Some(now);
        }
    }

    /// The status report (all lines, or one).
    pub fn status(&self, only: Option<&str>) -> StatusReport {
        let total: f64 = self
            .lines
            .values()
            .map(|l| l.rate.rx_rate + l.rate.tx_rate)
            .sum();
        let lines = self
            .lines
            .iter()
            .filter(|(n, _)| only.is_none_or(|o| o == n.as_str()))
            .map(|(name, l)| {
                let i = l.shared.info();
                let (queued_bytes, dropped_packets) = l.shared.queue_figures();
                LineStatus {
                    name: name.clone(),
                    device: l.config.device.display().to_string(),
                    slave: l.config.slave.clone(),
                    state: i.state.as_str().to_string(),
                    since: epoch(i.since),
                    admin: if i.admin_up { "up" } else { "down" }.to_string(),
                    local: i.local,
                    peer: i.peer,
                    dns: i.dns.clone(),
                    connect_speed: i.connect_speed,
                    mru: i.mru,
                    rx_bytes: l.shared.rx_bytes.load(std::sync::atomic::Ordering::Relaxed),
                    tx_bytes: l.shared.tx_bytes.load(std::sync::atomic::Ordering::Relaxed),
                    rx_rate: l.rate.rx_rate,
                    tx_rate: l.rate.tx_rate,
                    share: if total > 0.0 {
                        (l.rate.rx_rate + l.rate.tx_rate) / total
                    } else {
                        0.0
                    },
                    queued_bytes,
                    dropped_packets,
                    redials: i.redials,
                    last_error: i.last_error.clone(),
                    next_attempt: i.next_attempt.map(epoch),
                }
            })
            .collect();
        StatusReport {
            time: epoch(SystemTime::now()),
            policy: self.config.balancer.policy.name().into(),
            lines,
        }
    }

    /// The control socket's path and group.
    pub fn control(&self) -> (PathBuf, Option<String>) {
        (
            self.config.control.socket.clone(),
            self.config.control.group.clone(),
        )
    }
}

fn epoch(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Loads every line's scripts and secret.
fn fingerprints(config: &Config) -> Result<BTreeMap<String, LineFingerprint>, Vec<String>> {
    let secrets = match &config.daemon.secrets {
        Some(p) => Some(SecretsFile::load(p).map_err(|e| vec![e.to_string()])?),
        None => None,
    };
    let mut out = BTreeMap::new();
    let mut problems = Vec::new();
    let load = |p: &Option<PathBuf>, problems: &mut Vec<String>| -> Option<Script> {
        let path = p.as_ref()?;
        match std::fs::read_to_string(path) {
            Ok(text) => match Script::parse(&text, &path.display().to_string()) {
                Ok(s) => Some(s),
                Err(e) => {
                    problems.push(e.to_string());
                    None
                }
            },
            Err(e) => {
                problems.push(format!("cannot read chat script {}: {e}", path.display()));
                None
            }
        }
    };
    for line in &config.lines {
        let fp = LineFingerprint {
            config: line.clone(),
            init_script: load(&line.init_chat, &mut problems),
            dial_script: load(&line.dial_chat, &mut problems),
            secret: line_secret(line, secrets.as_ref()),
        };
        out.insert(line.name.clone(), fp);
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// Loads and checks the configuration at `path` (as the daemon does at start).
pub fn load_checked(path: &Path) -> Result<Config, Vec<String>> {
    crate::config::load_checked(path)
}
