//! The supervisor: one task per line, the balancer, status and the administrative commands
//! (`up`, `hangup`, `status`, `reload`) that the control socket and signals bring in.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;

use crate::balancer::actor::BalancerHandle;
use crate::balancer::{Balancer, BalancerConfig};
use crate::config::{BundleConfig, Config, LineConfig, LineSetup, Loaded};
use crate::control::{DaemonInfo, LineStatus, Request, Response, StatusReport};
use crate::link::bundle::{BundleContext, Membership};
use crate::link::hooks::Hooks;
use crate::link::{LineCommand, LineContext, LineShared, run_line};
use crate::net::Netlink;
use crate::ppp::mp::EndpointDiscriminator;
use crate::serial::HangupTiming;

/// How long a line may take to hang up at shutdown or when removed (its hooks come on top).
const LINE_STOP_BOUND: Duration = Duration::from_secs(20);

/// Commands waiting for a line; a line that does not take them is stuck, and nobody waits.
const LINE_INBOX: usize = 16;

/// A running line's task, owned by the supervisor.
struct LineTask {
    /// What it was started with: a reload restarts it only if this changed.
    setup: LineSetup,
    task: JoinHandle<()>,
}

/// A running line as the control socket sees it: its status, its inbox for commands.
struct LineEntry {
    config: LineConfig,
    commands: mpsc::Sender<LineCommand>,
    shared: Arc<LineShared>,
    rate: Rate,
}

/// The live lines' status and command inboxes, shared with the control socket and the
/// sampler. Behind a short, never-awaited lock, so `status`, `up` and `hangup` are answered at
/// once even while a reload or shutdown waits for lines to hang up.
#[derive(Clone, Default)]
pub struct LineRegistry {
    inner: Arc<std::sync::Mutex<Registry>>,
}

#[derive(Default)]
struct Registry {
    policy: crate::balancer::Policy,
    lines: BTreeMap<String, LineEntry>,
    bundles: BTreeMap<String, BundleEntry>,
    /// Who this daemon is, for the reports.
    daemon: Option<DaemonInfo>,
    /// The balanced lines' open connections (the balancer writes them).
    open: crate::balancer::kernel::OpenConnections,
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

/// A running Multilink bundle: its lines join it through `membership`.
struct BundleTask {
    membership: Membership,
    task: JoinHandle<()>,
}

/// A bundle as the control socket sees it (listed with the lines).
struct BundleEntry {
    config: BundleConfig,
    shared: Arc<LineShared>,
    rate: Rate,
}

/// The supervisor's state: the configuration, the line tasks and the balancer.
pub struct Supervisor {
    config: Config,
    tasks: BTreeMap<String, LineTask>,
    bundles: BTreeMap<String, BundleTask>,
    registry: LineRegistry,
    balancer: BalancerHandle,
    balancer_task: Option<JoinHandle<()>>,
    netlink: Netlink,
    /// Seeds each line's generator (see `start`).
    rng: fastrand::Rng,
}

/// Shared with the signal loop and the control socket's `reload`.
pub type SharedSupervisor = Arc<Mutex<Supervisor>>;

impl Supervisor {
    /// Sets up the balancer and starts every line of a checked configuration.
    pub async fn start(loaded: Loaded) -> anyhow::Result<Supervisor> {
        let Loaded { config, lines } = loaded;
        let netlink = Netlink::new()?;
        let balancer = Balancer::start(BalancerConfig {
            policy: config.balancer.policy,
            routing: config.balancer.routing,
        })
        .await?;
        let open_connections = balancer.open_connections();
        let (balancer, balancer_task) =
            BalancerHandle::spawn(balancer, Some(config.daemon.resolv_conf.clone()));
        // Magic numbers, CHAP challenges and redial jitter all derive from this one seed (through
        // `rng`, which seeds each line's generator): the OS's randomness, with the clock and PID
        // only if the OS cannot give any.
        let seed = getrandom::u64().unwrap_or_else(|e| {
            tracing::warn!("no randomness from the OS ({e}); seeding from the clock");
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
                ^ u64::from(std::process::id()) << 32
        });
        let registry = LineRegistry::default();
        registry.lock().policy = config.balancer.policy;
        registry.lock().open = open_connections;
        let mut s = Supervisor {
            config: config.clone(),
            tasks: BTreeMap::new(),
            bundles: BTreeMap::new(),
            registry,
            balancer,
            balancer_task: Some(balancer_task),
            netlink,
            rng: fastrand::Rng::with_seed(seed),
        };
        // Bundles first: their lines join them. One endpoint discriminator for all of them:
        // it is this host's, as pppd's `endpoint magic`.
        let endpoint = EndpointDiscriminator::magic(&[s.rng.u32(..)]);
        for bundle in config.bundles.clone() {
            s.start_bundle(bundle, endpoint);
        }
        for (name, setup) in lines {
            s.start_line(name, setup, None);
        }
        tracing::info!(
            lines = s.tasks.len(),
            bundles = s.bundles.len(),
            "supervisor started"
        );
        Ok(s)
    }

    /// Starts a Multilink bundle's task (before its lines).
    fn start_bundle(&mut self, config: BundleConfig, endpoint: EndpointDiscriminator) {
        let shared = Arc::new(LineShared::default());
        let (membership, task) = crate::link::bundle::spawn(BundleContext {
            config: config.clone(),
            netlink: self.netlink.clone(),
            balancer: self.balancer.clone(),
            shared: shared.clone(),
            local_addrs: crate::sys::local_ipv4_addrs(&config.slave),
            endpoint,
        });
        self.registry.lock().bundles.insert(
            config.name.clone(),
            BundleEntry {
                config: config.clone(),
                shared,
                rate: Rate::default(),
            },
        );
        self.bundles
            .insert(config.name, BundleTask { membership, task });
    }

    /// Starts a line; `shared` carries on the counters of the line a reload restarts.
    fn start_line(&mut self, name: String, fp: LineSetup, shared: Option<Arc<LineShared>>) {
        let shared = shared.unwrap_or_default();
        let d = &self.config.daemon;
        let ctx = LineContext {
            config: fp.config.clone(),
            init_script: fp.init_script.clone(),
            dial_script: fp.dial_script.clone(),
            secret: fp.secret.clone(),
            sim_pin: fp.sim_pin.clone(),
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
            seed: self.rng.u64(..),
            membership: fp
                .config
                .bundle
                .as_ref()
                .and_then(|b| self.bundles.get(b))
                .map(|b| b.membership.clone()),
        };
        let (tx, rx) = mpsc::channel(LINE_INBOX);
        let task = tokio::spawn(run_line(ctx, rx));
        self.registry.lock().lines.insert(
            name.clone(),
            LineEntry {
                config: fp.config.clone(),
                commands: tx,
                shared,
                rate: Rate::default(),
            },
        );
        self.tasks.insert(name, LineTask { setup: fp, task });
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

    /// The live lines, for the control socket and the sampler.
    pub fn registry(&self) -> LineRegistry {
        self.registry.clone()
    }

    /// Re-reads the configuration: unchanged lines stay up, changed ones restart, removed ones
    /// hang up, new ones dial. A bad file changes nothing and says why.
    pub async fn reload(&mut self) -> Response {
        let path = self.config.path.clone();
        // Reading files is blocking work: off the async threads.
        let loading = tokio::task::spawn_blocking(move || crate::config::load(&path));
        let loaded = match loading.await {
            Ok(result) => result,
            Err(e) => Err(vec![format!("the configuration loader failed: {e}")]),
        };
        let Loaded {
            config,
            lines: fresh,
        } = match loaded {
            Ok(l) => l,
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
        let mut notes = Vec::new();
        if config.balancer != self.config.balancer {
            notes.push("balancer settings change at the next restart".to_string());
        }
        if config.metrics != self.config.metrics {
            notes.push("metrics settings change at the next restart".to_string());
        }
        if config.bundles != self.config.bundles {
            notes.push("bundles change at the next restart".to_string());
        }
        let old = self.config.clone();
        self.config = Config {
            balancer: old.balancer.clone(),
            metrics: old.metrics.clone(),
            bundles: old.bundles.clone(),
            ..config
        };
        let (mut kept, mut restarted, mut added) = (vec![], vec![], vec![]);
        let removed: Vec<String> = self
            .tasks
            .keys()
            .filter(|n| !fresh.contains_key(*n))
            .cloned()
            .collect();
        let changed: BTreeSet<String> = fresh
            .iter()
            .filter(|(n, fp)| self.tasks.get(*n).is_some_and(|l| l.setup != **fp))
            .map(|(n, _)| n.clone())
            .collect();
        // Removed and changed lines hang up together, within one bound (as at shutdown), not
        // one after the other: with many lines, a change to all of them would otherwise take
        // as many hangups in a row.
        let mut stopped = self
            .stop_lines(removed.iter().chain(&changed).cloned().collect())
            .await;
        for (name, fp) in fresh {
            if self.tasks.contains_key(&name) {
                kept.push(name);
            } else if changed.contains(&name) {
                // Its counters carry on: metrics counters only go up while the daemon runs.
                let shared = stopped.remove(&name);
                self.start_line(name.clone(), fp, shared);
                restarted.push(name);
            } else {
                self.start_line(name.clone(), fp, None);
                added.push(name);
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

    /// Stops the named lines together, all within one bound; they are gone from the
    /// supervisor and the registry afterwards. Returns their shared status.
    async fn stop_lines(&mut self, names: Vec<String>) -> BTreeMap<String, Arc<LineShared>> {
        let deadline = tokio::time::Instant::now() + self.line_stop_bound();
        let mut shared = BTreeMap::new();
        let stopping: Vec<_> = names
            .into_iter()
            .filter_map(|name| {
                let task = self.tasks.remove(&name)?;
                let entry = self.registry.remove(&name);
                let commands = entry.map(|e| {
                    shared.insert(name.clone(), e.shared);
                    e.commands
                });
                Some(async move { stop_task(&name, commands, task, deadline).await })
            })
            .collect();
        futures::future::join_all(stopping).await;
        shared
    }

    /// Hangs every line up cleanly, then removes all kernel state. The supervisor has no
    /// lines afterwards.
    pub async fn shutdown(&mut self) {
        let all = self.tasks.keys().cloned().collect();
        self.stop_lines(all).await;
        // With their lines gone, the bundles end (their memberships were the last).
        let bound = self.line_stop_bound();
        for (name, b) in std::mem::take(&mut self.bundles) {
            drop(b.membership);
            if tokio::time::timeout(bound, b.task).await.is_err() {
                tracing::warn!(bundle = %name, "bundle still running after {bound:?}");
            }
            self.registry.lock().bundles.remove(&name);
        }
        if let Err(e) = self.balancer.shutdown().await {
            tracing::error!("balancer shutdown: {e}");
        }
        if let Some(task) = self.balancer_task.take() {
            let _ = task.await;
        }
        tracing::info!("all lines down, kernel state removed");
    }
}

/// Tells a line to stop and waits for it until `deadline`; a line that is stuck is aborted
/// (dropping its port closes it and removes its lock).
async fn stop_task(
    name: &str,
    commands: Option<mpsc::Sender<LineCommand>>,
    task: LineTask,
    deadline: tokio::time::Instant,
) {
    let mut handle = task.task;
    if let Some(commands) = commands {
        let _ = tokio::time::timeout_at(deadline, commands.send(LineCommand::Shutdown)).await;
    }
    if tokio::time::timeout_at(deadline, &mut handle)
        .await
        .is_err()
    {
        tracing::warn!(
            line = name,
            "line did not stop within {LINE_STOP_BOUND:?}; aborted"
        );
        handle.abort();
        let _ = handle.await;
    }
}

impl LineRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        // A panic while holding this lock leaves plain data behind: keep serving it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn remove(&self, name: &str) -> Option<LineEntry> {
        self.lock().lines.remove(name)
    }

    fn names(&self) -> Vec<String> {
        self.lock().lines.keys().cloned().collect()
    }

    /// Who this daemon is, shown in every report from now on.
    pub fn set_daemon(&self, info: DaemonInfo) {
        self.lock().daemon = Some(info);
    }

    /// Answers `status`, `subscribe`, `up` and `hangup` (never waits).
    pub fn handle(&self, request: Request) -> Response {
        match request {
            Request::Up { lines } => self.admin(lines, LineCommand::Up),
            Request::Hangup { lines } => {
                if lines.is_empty() {
                    return Response::Error {
                        message: "name the lines to hang up (e.g. hangup ttyS1)".into(),
                    };
                }
                self.admin(lines, LineCommand::Down)
            }
            Request::Status { line } => match line {
                Some(name)
                    if !self.lock().lines.contains_key(&name)
                        && !self.lock().bundles.contains_key(&name) =>
                {
                    Response::Error {
                        message: format!(
                            "no line named {name} (lines: {})",
                            self.names().join(", ")
                        ),
                    }
                }
                filter => Response::Status(self.status(filter.as_deref())),
            },
            // The control server streams status for subscribers itself.
            Request::Subscribe { .. } => Response::Status(self.status(None)),
            Request::Reload => Response::Error {
                message: "reload is the supervisor's".into(),
            },
            Request::Shutdown => Response::Error {
                message: "shutdown is the daemon's".into(),
            },
        }
    }

    /// Hands `command` to each named line (every enabled line when none are named). A line
    /// whose inbox is full is stuck: it is named in the answer, and nobody waits for it.
    fn admin(&self, names: Vec<String>, command: LineCommand) -> Response {
        let registry = self.lock();
        let targets: Vec<String> = if names.is_empty() {
            registry
                .lines
                .iter()
                .filter(|(_, l)| l.config.enabled)
                .map(|(n, _)| n.clone())
                .collect()
        } else {
            names
        };
        if let Some(unknown) = targets.iter().find(|n| !registry.lines.contains_key(*n)) {
            return Response::Error {
                message: format!(
                    "no line named {unknown} (lines: {})",
                    registry
                        .lines
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
        }
        let mut stuck = Vec::new();
        for name in &targets {
            if let Some(l) = registry.lines.get(name)
                && l.commands.try_send(command).is_err()
            {
                stuck.push(name.clone());
            }
        }
        if !stuck.is_empty() {
            return Response::Error {
                message: format!(
                    "line {} is not taking commands (busy with an earlier one); try again",
                    stuck.join(", ")
                ),
            };
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

    /// Samples traffic counters (call about once a second) for rates and shares.
    pub fn sample(&self) {
        let now = Instant::now();
        let mut registry = self.lock();
        let Registry { lines, bundles, .. } = &mut *registry;
        let all = lines
            .values_mut()
            .map(|l| (&l.shared, &mut l.rate))
            .chain(bundles.values_mut().map(|b| (&b.shared, &mut b.rate)));
        for (shared, rate) in all {
            rate.sample(shared, now);
        }
    }

    /// Each line's configuration, shared status and share of the traffic, read under the
    /// registry's short lock as `status` reads them, and the policy: for the metrics endpoint.
    pub(super) fn each_line(
        &self,
        mut f: impl FnMut(&str, &LineConfig, &LineShared, f64, Option<u32>),
    ) -> crate::balancer::Policy {
        let registry = self.lock();
        let total = registry.total_rate();
        let open = registry.open.lock().unwrap_or_else(|e| e.into_inner());
        for (name, l) in &registry.lines {
            f(
                name,
                &l.config,
                &l.shared,
                l.rate.share(total),
                open.get(name).copied(),
            );
        }
        registry.policy
    }

    /// Calls `f` with each bundle: its name, configuration, status and share of the traffic.
    pub(super) fn each_bundle(&self, mut f: impl FnMut(&str, &BundleConfig, &LineShared, f64)) {
        let registry = self.lock();
        let total = registry.total_rate();
        for (name, b) in &registry.bundles {
            f(name, &b.config, &b.shared, b.rate.share(total));
        }
    }

    /// The status report (all lines, or one).
    pub fn status(&self, only: Option<&str>) -> StatusReport {
        let registry = self.lock();
        let total = registry.total_rate();
        let open = registry.open.lock().unwrap_or_else(|e| e.into_inner());
        // One line is looked up, not searched for among all of them.
        let chosen: Box<dyn Iterator<Item = (&String, &LineEntry)>> = match only {
            Some(name) => Box::new(registry.lines.get_key_value(name).into_iter()),
            None => Box::new(registry.lines.iter()),
        };
        let lines = chosen
            .map(|(name, l)| {
                let i = l.shared.info();
                let (queued_bytes, dropped_packets) = l.shared.queue_figures();
                LineStatus {
                    name: name.clone(),
                    device: l.config.device.to_string(),
                    slave: l.config.slave.clone(),
                    state: i.state.into(),
                    since: epoch(i.since),
                    admin: super::wire::admin_state(i.admin_up),
                    local: i.local,
                    peer: i.peer,
                    dns: i.dns.clone(),
                    connect_speed: i.connect_speed,
                    mru: i.mru,
                    rx_bytes: l.shared.rx_bytes.load(std::sync::atomic::Ordering::Relaxed),
                    tx_bytes: l.shared.tx_bytes.load(std::sync::atomic::Ordering::Relaxed),
                    rx_rate: l.rate.rx_rate,
                    tx_rate: l.rate.tx_rate,
                    share: l.rate.share(total),
                    queued_bytes,
                    dropped_packets,
                    redials: i.redials,
                    last_error: i.last_error.clone(),
                    next_attempt: i.next_attempt.map(epoch),
                    tier: l.config.tier,
                    lcp_rtt_ms: super::wire::lcp_rtt_ms(i.lcp_rtt),
                    track: l
                        .shared
                        .track()
                        .map(|t| super::wire::track_status(&t, Instant::now())),
                    detail: i.detail.clone(),
                    open_connections: open.get(name).copied(),
                    cellular: i.cellular.clone(),
                    resets: crate::control::protocol::ResetCounts {
                        modem: i.resets.modem,
                        port: i.resets.port,
                        hook: i.resets.hook,
                    },
                    last_reset: i.last_reset.clone(),
                    tty: i
                        .tty
                        .as_ref()
                        .filter(|t| Some(t.as_path()) != l.config.device.path())
                        .map(|t| t.display().to_string()),
                    bundle: i.bundle.clone(),
                    members: None,
                    slave_kind: i.slave_kind.clone(),
                }
            })
            .collect::<Vec<_>>();
        let mut lines = lines;
        let bundles = registry
            .bundles
            .iter()
            .filter(|(name, _)| only.is_none_or(|o| o == name.as_str()));
        for (name, b) in bundles {
            lines.push(bundle_status(name, b, total));
        }
        StatusReport {
            time: epoch(SystemTime::now()),
            policy: registry.policy.into(),
            lines,
            daemon: registry.daemon.clone(),
        }
    }
}

impl Registry {
    /// All lines' and bundles' traffic rate together (rx + tx).
    fn total_rate(&self) -> f64 {
        // A bundle member's traffic is its bundle's, counted there.
        self.lines
            .values()
            .filter(|l| l.shared.info().bundle.is_none())
            .map(|l| &l.rate)
            .chain(self.bundles.values().map(|b| &b.rate))
            .map(|r| r.rx_rate + r.tx_rate)
            .sum()
    }
}

impl Rate {
    /// Takes the counters' values at `now`: the rates since the last sample.
    fn sample(&mut self, shared: &LineShared, now: Instant) {
        let rx = shared.rx_bytes.load(std::sync::atomic::Ordering::Relaxed);
        let tx = shared.tx_bytes.load(std::sync::atomic::Ordering::Relaxed);
        if let Some(at) = self.last_at {
            let dt = now.duration_since(at).as_secs_f64().max(1e-3);
            self.rx_rate = rx.saturating_sub(self.last_rx) as f64 / dt;
            self.tx_rate = tx.saturating_sub(self.last_tx) as f64 / dt;
        }
        self.last_rx = rx;
        self.last_tx = tx;
        self.last_at = Some(now);
    }

    /// This line's share of `total`.
    fn share(&self, total: f64) -> f64 {
        if total > 0.0 {
            (self.rx_rate + self.tx_rate) / total
        } else {
            0.0
        }
    }
}

/// A bundle, listed with the lines: its IP session's state and addresses, its slave's
/// traffic, its members.
fn bundle_status(name: &str, b: &BundleEntry, total: f64) -> LineStatus {
    let i = b.shared.info();
    let (queued_bytes, dropped_packets) = b.shared.queue_figures();
    LineStatus {
        name: name.to_string(),
        device: b.config.device(),
        slave: b.config.slave.clone(),
        state: i.state.into(),
        since: epoch(i.since),
        admin: super::wire::admin_state(true),
        local: i.local,
        peer: i.peer,
        dns: i.dns.clone(),
        // The members' speeds together.
        connect_speed: i.connect_speed,
        mru: i.mru,
        rx_bytes: b.shared.rx_bytes.load(std::sync::atomic::Ordering::Relaxed),
        tx_bytes: b.shared.tx_bytes.load(std::sync::atomic::Ordering::Relaxed),
        rx_rate: b.rate.rx_rate,
        tx_rate: b.rate.tx_rate,
        share: b.rate.share(total),
        queued_bytes,
        dropped_packets,
        last_error: i.last_error.clone(),
        tier: b.config.tier,
        detail: i.detail.clone(),
        members: Some(i.members.clone().unwrap_or_default()),
        slave_kind: i.slave_kind.clone(),
        ..LineStatus::default()
    }
}

fn epoch(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
