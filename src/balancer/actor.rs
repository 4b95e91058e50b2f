//! The balancer as a task the line drivers talk to: every kernel change happens in one place,
//! one at a time, in the order asked. It also publishes the DNS servers of the live lines
//! ([`super::dns`]).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::dns::DnsPublisher;
use super::flows::Flows;
use super::kernel::{Balancer, BalancerError, Enslave};
use super::nft::{MARK_BASE, MARK_MASK};
use crate::net::conntrack::{self, ConntrackEvents, Timeouts};
use crate::net::{KernelWatch, ROUTE_PROTOCOL};

/// How often the lines' load (queue depths, open connections) is folded into the policy
/// (least-loaded) at most; changes within this time are taken together. Short, because a
/// browser opens its next connection the moment one ends: a table still saying the old
/// counts sends it to the wrong line (measured: the demo's 3-line speedup went from 2.67× at
/// 100 ms to 2.88× at 10 ms). An update is one netlink batch, so this costs little.
const RECOMPUTE_SPACING: Duration = Duration::from_millis(10);

/// Where the kernel sends no conntrack events, the table is dumped this often instead, while
/// lines are up and their connections matter.
const DUMP_EVERY: Duration = Duration::from_millis(100);

/// How often the kernel state is checked against what it should be without notifications
/// of changes (the kernel could not give them, or they were lost).
const RECONCILE_EVERY: Duration = Duration::from_secs(30);

/// How often it is checked while the notifications come: only for a change they missed. A
/// check runs `nft -j list table`, which cost a TCG guest 0.2-0.4 s of CPU each time: every
/// 30 s that was more than the rest of an idle daemon.
const RECONCILE_WATCHED_EVERY: Duration = Duration::from_secs(600);

/// How long after a notification of someone else's change the state is checked: a firewall
/// reload is a burst of changes; check once it is over.
const RECONCILE_SETTLE: Duration = Duration::from_millis(250);

/// Why a request to the balancer task failed.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// The task has ended (shut down, or it panicked): nothing was done.
    #[error("the balancer has stopped")]
    Gone,
    /// The kernel refused or the line was not fit for the balance.
    #[error(transparent)]
    Kernel(#[from] BalancerError),
}

enum Request {
    Enslave(
        Enslave,
        Option<Arc<Notify>>,
        oneshot::Sender<Result<u32, BalancerError>>,
    ),
    Emancipate(String, oneshot::Sender<()>),
    Load(String, u64),
    Speed(String, Option<u32>),
    Internet(String, bool),
    Shutdown(oneshot::Sender<Result<(), BalancerError>>),
}

/// A cheap handle to the balancer task.
#[derive(Clone)]
pub struct BalancerHandle {
    tx: mpsc::UnboundedSender<Request>,
}

impl BalancerHandle {
    /// Runs `balancer` as a task. With `resolv_conf`, the live lines' DNS servers are
    /// published: that file, resolvconf and systemd-resolved, where present.
    pub fn spawn(
        balancer: Balancer,
        resolv_conf: Option<PathBuf>,
    ) -> (BalancerHandle, JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(balancer, rx, resolv_conf));
        (BalancerHandle { tx }, task)
    }

    /// Puts a line into the balance; the error says why not. Returns the mark of the line's
    /// connections (its probes carry it too). With `suspect`, a tracked line is told when its
    /// connections go unanswered (passive evidence for upstream tracking).
    pub async fn enslave(
        &self,
        spec: Enslave,
        suspect: Option<Arc<Notify>>,
    ) -> Result<u32, HandleError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Request::Enslave(spec, suspect, tx))
            .map_err(|_| HandleError::Gone)?;
        Ok(rx.await.map_err(|_| HandleError::Gone)??)
    }

    /// Upstream tracking's verdict on an enslaved line: whether it may carry new connections.
    pub fn set_internet(&self, line: &str, internet: bool) {
        let _ = self.tx.send(Request::Internet(line.to_string(), internet));
    }

    /// Takes a line out of the balance (its connections are dropped).
    pub async fn emancipate(&self, line: &str) {
        let (tx, rx) = oneshot::channel();
        if self
            .tx
            .send(Request::Emancipate(line.to_string(), tx))
            .is_ok()
        {
            let _ = rx.await;
        }
    }

    /// Reports a line's transmit queue depth.
    pub fn set_load(&self, line: &str, queued_bytes: u64) {
        let _ = self.tx.send(Request::Load(line.to_string(), queued_bytes));
    }

    /// Reports a line's speed in bit/s (a bundle's changes with its members).
    pub fn set_speed(&self, line: &str, speed: Option<u32>) {
        let _ = self.tx.send(Request::Speed(line.to_string(), speed));
    }

    /// Removes all kernel state and stops the task. A task that ends without answering (it
    /// was already shutting down) counts as done.
    pub async fn shutdown(&self) -> Result<(), HandleError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Request::Shutdown(tx))
            .map_err(|_| HandleError::Gone)?;
        Ok(rx.await.unwrap_or(Ok(()))?)
    }
}

/// The balanced connections, followed by conntrack events where the kernel sends them (an
/// idle router then wakes for nothing), by dumps otherwise.
struct Connections {
    flows: Flows,
    events: Option<ConntrackEvents>,
    /// The kernel sends no events, or the subscription failed: dump instead.
    dumps_only: bool,
    /// The table must be read whole (first use, events lost).
    resync: bool,
    /// When the load is next folded into the policy.
    recompute_at: Option<Instant>,
    last_recompute: Instant,
    failing: bool,
}

impl Connections {
    async fn new() -> Connections {
        // File reads, off the runtime like every other read of the kernel's state.
        let (timeouts, events_on) =
            tokio::task::spawn_blocking(|| (Timeouts::read(), ConntrackEvents::enabled()))
                .await
                .unwrap_or((Timeouts::default(), true));
        if !events_on {
            tracing::info!(
                "net.netfilter.nf_conntrack_events is 0: following the lines' connections by reading the conntrack table every {DUMP_EVERY:?} instead"
            );
        }
        Connections {
            flows: Flows::new(MARK_BASE, MARK_MASK, timeouts),
            events: None,
            dumps_only: !events_on,
            resync: true,
            recompute_at: None,
            last_recompute: Instant::now(),
            failing: false,
        }
    }

    /// Subscribes while the connections matter (least-loaded, or a tracked line), and only
    /// then: on a busy router every event costs a wake-up.
    fn follow(&mut self, wanted: bool) {
        if wanted && self.events.is_none() && !self.dumps_only {
            match ConntrackEvents::subscribe() {
                Ok(events) => {
                    self.events = Some(events);
                    self.resync = true;
                    self.soon();
                }
                Err(e) => {
                    tracing::warn!(
                        "cannot subscribe to conntrack events ({e}); reading the conntrack table every {DUMP_EVERY:?} instead"
                    );
                    self.dumps_only = true;
                }
            }
        } else if !wanted && self.events.is_some() {
            self.events = None;
            self.flows.resync(&[], std::time::Instant::now());
        }
    }

    /// Folds the load into the policy soon (at most once per [`RECOMPUTE_SPACING`]).
    fn soon(&mut self) {
        if self.recompute_at.is_none() {
            self.recompute_at = Some(Instant::now().max(self.last_recompute + RECOMPUTE_SPACING));
        }
    }

    /// When the task must next wake for the connections: a recompute asked for, or the time
    /// an unanswered connection becomes evidence or old news.
    fn next_wake(&self) -> Option<Instant> {
        let by_itself = self
            .flows
            .next_change(std::time::Instant::now())
            .map(Instant::from_std);
        match (self.recompute_at, by_itself) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Re-reads the table where needed, then gives the balancer each line's connections and
    /// re-applies the policy; tells tracked lines whose connections go unanswered.
    async fn recompute(
        &mut self,
        balancer: &mut Balancer,
        suspects: &HashMap<String, Arc<Notify>>,
    ) {
        self.recompute_at = None;
        self.last_recompute = Instant::now();
        let mut result = Ok(());
        if self.resync && balancer.has_lines() {
            match conntrack::dump(MARK_BASE, MARK_MASK).await {
                Ok(entries) => {
                    self.flows.resync(&entries, std::time::Instant::now());
                    // With events, one read catches up; without, every recompute reads.
                    self.resync = self.events.is_none();
                }
                // Without the counts, the queue depths still steer.
                Err(e) => result = Err(BalancerError::CountConnections(e)),
            }
        }
        let tally = self.flows.tally(std::time::Instant::now());
        for n in balancer
            .set_connections(&tally)
            .iter()
            .filter_map(|line| suspects.get(line))
        {
            n.notify_one();
        }
        let result = result.and(balancer.refresh().await);
        match result {
            // Said once per streak of failures, not ten times a second.
            Err(e) if !self.failing => {
                tracing::warn!("balancer refresh: {e}");
                self.failing = true;
            }
            Err(e) => tracing::debug!("balancer refresh: {e}"),
            Ok(()) => self.failing = false,
        }
    }
}

async fn run(
    mut balancer: Balancer,
    mut rx: mpsc::UnboundedReceiver<Request>,
    resolv_conf: Option<PathBuf>,
) {
    let mut dns = match resolv_conf {
        Some(path) => Some(DnsPublisher::new(path).await),
        None => None,
    };
    let mut connections = Connections::new().await;
    // Per tracked line: whom to tell of unanswered connections.
    let mut suspects: HashMap<String, Arc<Notify>> = HashMap::new();
    let mut dump_tick = tokio::time::interval(DUMP_EVERY);
    dump_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut watch = match KernelWatch::new(super::nft::TABLE_NAME, ROUTE_PROTOCOL) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(
                "cannot watch for changes to the balancer's kernel state ({e}); checking it every {RECONCILE_EVERY:?} only"
            );
            None
        }
    };
    let checks_every = |watched: bool| {
        let every = if watched {
            RECONCILE_WATCHED_EVERY
        } else {
            RECONCILE_EVERY
        };
        let mut check = tokio::time::interval_at(Instant::now() + every, every);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        check
    };
    let mut check = checks_every(watch.is_some());
    let mut check_soon: Option<Instant> = None;
    loop {
        let wanted =
            balancer.has_lines() && (balancer.follows_load() || balancer.watches_answers());
        connections.follow(wanted);
        let wake = connections.next_wake();
        let request = tokio::select! {
            r = rx.recv() => r,
            changed = async { watch.as_mut()?.changed().await.ok() }, if watch.is_some() => {
                match changed {
                    Some(()) => {
                        check_soon.get_or_insert(Instant::now() + RECONCILE_SETTLE);
                    }
                    None => {
                        tracing::warn!("lost the kernel change notifications; checking every {RECONCILE_EVERY:?} only");
                        watch = None;
                        check = checks_every(false);
                    }
                }
                continue;
            }
            _ = crate::sys::sleep_until_opt(check_soon) => {
                check_soon = None;
                reconcile(&mut balancer).await;
                continue;
            }
            _ = check.tick() => {
                reconcile(&mut balancer).await;
                continue;
            }
            batch = async { connections.events.as_mut()?.read().await.ok() }, if connections.events.is_some() => {
                match batch {
                    Some(batch) => {
                        let changed = connections.flows.apply(&batch.changes, std::time::Instant::now());
                        if batch.overrun {
                            tracing::debug!("conntrack events lost; reading the table again");
                            connections.resync = true;
                        }
                        if changed || batch.overrun {
                            connections.soon();
                        }
                    }
                    None => {
                        tracing::warn!("lost the conntrack events; reading the conntrack table every {DUMP_EVERY:?} instead");
                        connections.events = None;
                        connections.dumps_only = true;
                    }
                }
                continue;
            }
            _ = dump_tick.tick(), if wanted && connections.dumps_only => {
                connections.resync = true;
                connections.soon();
                continue;
            }
            _ = crate::sys::sleep_until_opt(wake) => {
                connections.recompute(&mut balancer, &suspects).await;
                continue;
            }
        };
        let Some(request) = request else { break };
        match request {
            Request::Enslave(spec, suspect, reply) => {
                let (line, device, servers) =
                    (spec.line.clone(), spec.device.clone(), spec.dns.clone());
                let result = balancer.enslave(spec).await;
                if result.is_ok() {
                    if let Some(dns) = dns.as_mut() {
                        dns.line_up(line.clone(), device, servers);
                    }
                    if let Some(n) = suspect {
                        suspects.insert(line, n);
                    }
                }
                let _ = reply.send(result);
            }
            Request::Internet(line, internet) => {
                match balancer.set_internet(&line, internet).await {
                    Ok(true) => {
                        // A line without the Internet likely has no working DNS either.
                        if let (Some(dns), Some(spec)) = (dns.as_mut(), balancer.spec(&line)) {
                            if internet {
                                dns.line_up(line.clone(), spec.device.clone(), spec.dns.clone());
                            } else {
                                dns.line_down(&line);
                            }
                        }
                    }
                    Ok(false) => {}
                    Err(e) => tracing::warn!(line = %line, "balance by upstream tracking: {e}"),
                }
            }
            Request::Emancipate(line, reply) => {
                suspects.remove(&line);
                if let Err(e) = balancer.emancipate(&line).await {
                    tracing::warn!(line = %line, "emancipate: {e}");
                }
                if let Some(dns) = dns.as_mut() {
                    dns.line_down(&line);
                }
                let _ = reply.send(());
            }
            Request::Load(line, bytes) => {
                balancer.set_queued_bytes(&line, bytes);
                connections.soon();
            }
            Request::Speed(line, speed) => {
                balancer.set_speed(&line, speed);
                if let Err(e) = balancer.refresh().await {
                    tracing::warn!("cannot apply {line}'s new speed: {e}");
                }
            }
            Request::Shutdown(reply) => {
                if let Some(dns) = dns.as_mut() {
                    dns.all_down();
                }
                let _ = reply.send(balancer.shutdown().await);
                return;
            }
        }
    }
}

/// Checks the kernel state and repairs it, saying what had gone.
async fn reconcile(balancer: &mut Balancer) {
    match balancer.reconcile().await {
        Ok(repaired) if repaired.is_empty() => tracing::debug!("kernel state as it should be"),
        Ok(repaired) => tracing::warn!(
            "the balancer's kernel state was changed from outside ({}); rebuilt it",
            repaired.join(", ")
        ),
        Err(e) => tracing::warn!("cannot check the balancer's kernel state: {e}"),
    }
}
