//! The async driver of one line: carries out the [`LineMachine`]'s steps — open the port, run
//! the chat scripts, run PPP, make the TUN slave and enslave it once up, pump packets, hang up,
//! wait out the holdoff — and answers administrative commands at every await point.

use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::bundle::Joins;
use super::hooks::{HookEvent, HookLink, Hooks};
use super::kernel_bundle::KernelJoin;
use super::kernel_ppp;
use super::locate::{Located, Seen};
use super::machine::{LineEvent, LineMachine, LineState, Step};
use super::recovery::{LadderConfig, Rung, Trouble};
use super::redial::{FailureKind, RedialPolicy};
use super::status::{FailureStage, LineShared};
use super::track::{self as tracking, TrackTask};
use crate::balancer::Enslave;
use crate::balancer::actor::BalancerHandle;
use crate::cellular::driver::run_check;
use crate::cellular::{CellularCheck, CheckConfig};
use crate::chat::{ChatEngine, ChatOptions, Failure, Outcome, Script, run_chat};
use crate::config::{LineConfig, SlaveKind, Weight};
use crate::net::pump::{Pumps, start_pumps};
use crate::net::{Netlink, SharedTxQueue, TunSlave};
use crate::ppp::auth::Secret;
use crate::ppp::{
    Config as PppConfig, Credentials, DownReason, Event, Session, driver as ppp_driver,
};
use crate::serial::identity::DeviceSpec;
use crate::serial::{HangupTiming, SerialConfig, SerialPort};
use crate::track::{Internet, TrackEvent};

/// Administrative commands to a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineCommand {
    Up,
    Down,
    /// Hang up cleanly and end the task (daemon shutdown, line removed by a reload).
    Shutdown,
}

/// Everything a line's driver needs.
pub struct LineContext {
    pub config: LineConfig,
    pub init_script: Option<Script>,
    pub dial_script: Option<Script>,
    /// The PAP/CHAP secret of `config.user`.
    pub secret: Option<String>,
    /// The SIM's PIN, for a cellular modem.
    pub sim_pin: Option<String>,
    pub lock_dir: PathBuf,
    pub hangup: HangupTiming,
    pub netlink: Netlink,
    pub balancer: BalancerHandle,
    pub hooks: Hooks,
    pub shared: Arc<LineShared>,
    /// Seed of the line's generator, which seeds the redial jitter and each PPP session
    /// (magic numbers, CHAP challenges).
    pub seed: u64,
    /// The Multilink bundle the line proposes to join (`bundle = "…"`).
    pub membership: Option<super::bundle::Membership>,
}

/// How often the carrier (DCD) is sampled during PPP, where the port has modem lines and
/// the modem raised DCD for the call. A second: each sample is a wake-up of the daemon (in a
/// TCG guest a wake-up costs ~1 ms whatever it does; 4 a second were half the daemon's idle
/// CPU there), and the LCP echoes find a dead line within seconds anyway.
const CARRIER_POLL: Duration = Duration::from_secs(1);

/// How often a live line reports its queue depth to the balancer while packets pass (an idle
/// line reports nothing and wakes nobody).
const LOAD_REPORT: Duration = Duration::from_millis(100);

/// Runs a line until it receives [`LineCommand::Shutdown`] (or the command channel closes).
pub async fn run_line(ctx: LineContext, mut commands: mpsc::Receiver<LineCommand>) {
    // Every step runs instrumented with this span (an entered guard would not survive the
    // awaits).
    let span = tracing::info_span!("line", line = %ctx.config.name);
    let now = Instant::now();
    let mut rng = fastrand::Rng::with_seed(ctx.seed);
    let policy = RedialPolicy::new(ctx.config.redial, rng.u64(..));
    let has_init = ctx.init_script.is_some();
    let (mut machine, mut step) = LineMachine::new(ctx.config.enabled, has_init, policy, now);
    machine.set_cellular(ctx.config.cellular);
    machine.set_ladder(LadderConfig {
        after_failures: ctx.config.reset_after,
        port_reset: match &ctx.config.device {
            DeviceSpec::Path(p) => super::reset::looks_usb(p),
            DeviceSpec::Usb(_) => true,
        },
        hook: ctx.config.reset_hook.is_some(),
        ..LadderConfig::default()
    });
    let mut line = Line {
        ctx,
        port: None,
        leftover: Vec::new(),
        shutting_down: false,
        rng,
        hook_tasks: Vec::new(),
        dial_started: None,
        logged: LineState::Disabled,
        kernel_index: None,
        member_channel: None,
        bundle_gone: None,
        device: None,
        seen: Seen::default(),
    };
    span.in_scope(|| line.publish(&machine));
    loop {
        let next = {
            let fut = line.perform(step, &mut machine, &mut commands);
            tracing::Instrument::instrument(fut, span.clone()).await
        };
        span.in_scope(|| line.publish(&machine));
        match next {
            Some(s) => step = s,
            None => break,
        }
        if line.shutting_down && step == Step::Idle {
            break;
        }
    }
    if let Some(port) = line.port.take() {
        port.hangup().await;
    }
    line.ctx.shared.update_from(&machine);
    // ip-down (and a late ip-up) finish before the line does: the daemon must not exit under
    // them. Each kills itself after the hook timeout.
    let bound = line.ctx.hooks.bound();
    for task in line.hook_tasks.drain(..) {
        if tokio::time::timeout(bound, task).await.is_err() {
            tracing::warn!("hook still running after {bound:?}");
        }
    }
}

struct Line {
    ctx: LineContext,
    /// The path the modem was last opened at (a USB match's tty).
    device: Option<PathBuf>,
    /// What the last look for an absent modem found (the wait is for something else).
    seen: Seen,
    port: Option<SerialPort>,
    /// Bytes received after CONNECT: the first PPP bytes.
    leftover: Vec<u8>,
    shutting_down: bool,
    /// Draws each PPP session's seed.
    rng: fastrand::Rng,
    /// Hooks started by this line that may still run.
    hook_tasks: Vec<JoinHandle<()>>,
    /// When the attempt in progress opened the port (its dial duration ends at IP up).
    dial_started: Option<Instant>,
    /// The state last logged (each change is logged once).
    logged: LineState,
    /// The call's kernel PPP interface (renamed to the slave name), when it has one.
    kernel_index: Option<u32>,
    /// A kernel bundle member's channel, until it joins the bundle's unit.
    member_channel: Option<crate::net::kernel_ppp::ChannelHandle>,
    /// Held while the call is a kernel bundle's member: dropped when the call is over
    /// (its channel out of the unit), which tells the bundle.
    bundle_gone: Option<tokio::sync::oneshot::Sender<()>>,
}

/// What a command means for the step in progress.
enum Interrupt {
    /// Keep going with this step.
    Continue,
    /// Abandon the step; go on with this one.
    Goto(Step),
}

impl Line {
    /// Shows the machine's state (status) and logs each change of state once, wherever in a
    /// step it happened (also inside the PPP loop: up, no-internet, degraded).
    fn publish(&mut self, m: &LineMachine) {
        self.ctx.shared.update_from(m);
        let (before, now) = (self.logged, m.state());
        if now == before {
            return;
        }
        self.logged = now;
        // A line taken down on purpose says so, not the error of an earlier session.
        let reason = if !m.admin_up() && matches!(now, LineState::HangingUp | LineState::Down) {
            Some(if self.shutting_down {
                "the daemon is stopping"
            } else {
                "hangup command"
            })
        } else if matches!(
            now,
            LineState::HangingUp
                | LineState::Holdoff
                | LineState::Failed
                | LineState::NoInternet
                | LineState::Degraded
        ) {
            m.last_error()
        } else {
            None
        };
        // Structured: the journal has LINE (the span), STATE, FROM and REASON fields.
        match reason {
            Some(e) => tracing::info!(
                from = before.as_str(),
                state = now.as_str(),
                reason = e,
                "line state"
            ),
            None => tracing::info!(from = before.as_str(), state = now.as_str(), "line state"),
        }
    }

    /// Applies an administrative command to the machine.
    fn command(&mut self, cmd: Option<LineCommand>, m: &mut LineMachine) -> Interrupt {
        let now = Instant::now();
        let before = m.state();
        let step = match cmd {
            Some(LineCommand::Up) => m.admin_up_now(now),
            Some(LineCommand::Down) => m.admin_down_now(now),
            Some(LineCommand::Shutdown) | None => {
                self.shutting_down = true;
                m.admin_down_now(now)
            }
        };
        if m.state() != before {
            tracing::info!("administrative {:?}", cmd.unwrap_or(LineCommand::Shutdown));
        }
        self.publish(m);
        match step {
            Step::Idle if m.state() != LineState::Down && !self.shutting_down => {
                Interrupt::Continue
            }
            s => Interrupt::Goto(s),
        }
    }

    /// Runs `work` (which must not borrow the line) while administrative commands keep being
    /// applied; a command that abandons the step ends it with the step to take instead.
    async fn interruptible<T>(
        &mut self,
        work: impl std::future::Future<Output = T>,
        m: &mut LineMachine,
        commands: &mut mpsc::Receiver<LineCommand>,
    ) -> Result<T, Step> {
        tokio::pin!(work);
        loop {
            tokio::select! {
                out = &mut work => return Ok(out),
                cmd = commands.recv() => match self.command(cmd, m) {
                    Interrupt::Continue => {}
                    Interrupt::Goto(s) => return Err(s),
                },
            }
        }
    }

    /// Where the modem is: where it was last opened, else the configured path.
    fn device_path(&self) -> PathBuf {
        match (&self.device, &self.ctx.config.device) {
            (Some(p), _) => p.clone(),
            (None, DeviceSpec::Path(p)) => p.clone(),
            (None, DeviceSpec::Usb(_)) => PathBuf::new(),
        }
    }

    /// How the line's port is opened (the dial's open and the ladder's modem reset alike).
    fn serial_config(&self) -> SerialConfig {
        let c = &self.ctx.config;
        SerialConfig {
            baud: c.baud,
            flow: c.flow,
            lock_dir: Some(self.ctx.lock_dir.clone()),
            hangup: self.ctx.hangup,
        }
    }

    /// Carries out one step; returns the next (None: the task ends).
    async fn perform(
        &mut self,
        step: Step,
        m: &mut LineMachine,
        commands: &mut mpsc::Receiver<LineCommand>,
    ) -> Option<Step> {
        match step {
            Step::Open => {
                self.dial_started = Some(Instant::now());
                let event = self.open().await;
                Some(self.feed(m, event))
            }
            Step::InitChat | Step::DialChat => {
                let is_init = step == Step::InitChat;
                let script = if is_init {
                    self.ctx.init_script.clone()
                } else {
                    self.ctx.dial_script.clone()
                };
                let port = self.port.take()?;
                let c = &self.ctx.config;
                let options = ChatOptions {
                    phone: c.phone.clone(),
                    // \U: the APN for cellular scripts, else the secret (login scripts).
                    phone2: c.apn.clone().or_else(|| self.ctx.secret.clone()),
                    ..ChatOptions::default()
                };
                let shared = self.ctx.shared.clone();
                let chat = chat(&port, script, options, shared);
                let result = self.interruptible(chat, m, commands).await;
                self.port = Some(port);
                match result {
                    Ok((event, leftover)) => {
                        self.leftover = leftover;
                        let event = match (is_init, event) {
                            (true, LineEvent::Connected) => LineEvent::InitDone,
                            (_, e) => e,
                        };
                        Some(self.feed(m, event))
                    }
                    Err(s) => Some(s),
                }
            }
            Step::Ppp => self.ppp(m, commands).await,
            Step::WaitForDevice => {
                let device = self.ctx.config.device.clone();
                let seen = std::mem::take(&mut self.seen);
                tracing::info!("waiting for {device} to appear");
                let wait = async {
                    let device = &device;
                    if let Err(e) = super::locate::wait_for_change(device, &seen).await {
                        // Cannot watch: look again now and then instead.
                        tracing::warn!("cannot watch for {device}: {e}");
                        tokio::time::sleep(PRESENCE_RETRY).await;
                    }
                };
                match self.interruptible(wait, m, commands).await {
                    Ok(()) => Some(self.feed(m, LineEvent::DevicePresent)),
                    Err(s) => Some(s),
                }
            }
            Step::Cellular => {
                let port = self.port.take()?;
                let config = CheckConfig {
                    pin: self.ctx.sim_pin.clone(),
                    pin_refused_before: m.pin_refused(),
                    registration_timeout: self.ctx.config.registration_timeout,
                    ..CheckConfig::default()
                };
                let timeout = config.registration_timeout;
                let shared = self.ctx.shared.clone();
                shared.edit(|i| i.detail = Some("checking the modem (AT+GCAP)".into()));
                let check = cellular_check(&port, config, shared);
                let result = self.interruptible(check, m, commands).await;
                self.port = Some(port);
                match result {
                    Ok(outcome) => Some(self.feed(m, cellular_event(outcome, timeout))),
                    Err(s) => Some(s),
                }
            }
            Step::Reset(rung) => {
                let c = &self.ctx.config;
                let device = self.device_path();
                let why = m.last_reset().unwrap_or_default().to_string();
                tracing::warn!(step = rung.as_str(), reason = %why, "recovery: {}", rung.as_str());
                let result = match rung {
                    Rung::ModemReset => {
                        let serial = self.serial_config();
                        super::reset::modem_reset(&device, &serial, c.cellular).await
                    }
                    Rung::PortReset => super::reset::usb_port_reset(device.clone()).await,
                    Rung::Hook => match &c.reset_hook {
                        Some(hook) => {
                            super::reset::run_hook(hook, &c.name, &device, self.ctx.hooks.timeout)
                                .await
                        }
                        None => "no reset_hook configured".into(),
                    },
                };
                tracing::warn!(step = rung.as_str(), result = %result, "recovery: {} done", rung.as_str());
                Some(self.feed(m, LineEvent::ResetDone))
            }
            Step::HangUp => {
                if let Some(port) = self.port.take() {
                    port.hangup().await;
                }
                self.leftover.clear();
                Some(self.feed(m, LineEvent::HungUp))
            }
            Step::WaitUntil(at) => {
                let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(at));
                match self.interruptible(sleep, m, commands).await {
                    Ok(()) => Some(self.feed(m, LineEvent::TimerFired)),
                    Err(s) => Some(s),
                }
            }
            Step::Idle => {
                if self.shutting_down {
                    return None;
                }
                let cmd = commands.recv().await;
                match self.command(cmd, m) {
                    Interrupt::Continue => Some(Step::Idle),
                    Interrupt::Goto(s) => Some(s),
                }
            }
        }
    }

    /// Feeds an event to the machine, and counts for the metrics what it made of it: a
    /// failure (by the stage it happened in), a dial that reached IP up.
    fn feed(&mut self, m: &mut LineMachine, event: LineEvent) -> Step {
        let now = Instant::now();
        // A failure whose device has gone (a USB modem unplugged, a pty closed) says so.
        let gone = || !crate::serial::presence::present(&self.device_path());
        let removed = || "device removed".to_string();
        let event = match event {
            LineEvent::ChatFailed { .. } if gone() => LineEvent::ChatFailed {
                message: removed(),
                kind: FailureKind::Transient,
            },
            LineEvent::PppEnded { .. } if gone() => LineEvent::PppEnded {
                message: removed(),
                kind: FailureKind::Transient,
            },
            LineEvent::CellularFailed { .. } if gone() => LineEvent::CellularFailed {
                message: removed(),
                kind: FailureKind::Transient,
                trouble: Trouble::Failed,
            },
            other => other,
        };
        let before = m.state();
        let (failures, _) = m.failures_total();
        let step = m.on(event, now);
        let (failures_after, kind) = m.failures_total();
        if failures_after != failures
            && let Some(stage) = FailureStage::of(before)
        {
            self.ctx.shared.count_failure(stage, kind);
        }
        // IP up for the first time in this call (a renegotiation is not a dial).
        if before == LineState::Ppp
            && m.state() == LineState::Up
            && let Some(started) = self.dial_started.take()
        {
            self.ctx
                .shared
                .count_dial(now.saturating_duration_since(started));
        }
        step
    }

    async fn open(&mut self) -> LineEvent {
        let c = &self.ctx.config;
        let serial = self.serial_config();
        match super::locate::open(&c.device, &c.modem_id, &serial).await {
            Located::Opened { port, path } => {
                kernel_ppp::reset_discipline(&port).await;
                // Looked up at each open: a by-id link or a USB match may lead to another tty
                // after a replug.
                let tty = std::fs::canonicalize(&path).ok();
                self.ctx.shared.edit(|i| i.tty = tty);
                self.device = Some(path);
                self.port = Some(port);
                LineEvent::Opened
            }
            Located::Absent { why, seen } => {
                self.seen = seen;
                LineEvent::DeviceAbsent(why)
            }
            Located::Failed(why) => LineEvent::OpenFailed(why),
        }
    }

    /// PPP over the connected line: up to the session's end.
    async fn ppp(
        &mut self,
        m: &mut LineMachine,
        commands: &mut mpsc::Receiver<LineCommand>,
    ) -> Option<Step> {
        let port = self.port.take()?;
        // Kernel PPP or TUN for this call (and why), before anything is negotiated.
        let kernel = match self.kernel_or_tun(&port).await {
            Ok(kernel) => kernel,
            Err(message) => {
                tracing::warn!("{message}");
                self.port = Some(port);
                let kind = FailureKind::Other;
                return Some(self.feed(m, LineEvent::PppEnded { message, kind }));
            }
        };
        self.kernel_index = kernel.as_ref().and_then(|k| k.index);
        // A bundle member's call that comes up as a plain link gets its unit late.
        let late_index = kernel.as_ref().and_then(|k| k.late_index());
        let c = &self.ctx.config;
        let credentials = c
            .user
            .clone()
            .map(|u| Credentials::new(u, Secret::new(self.ctx.secret.clone().unwrap_or_default())));
        let mut config = PppConfig::dialer(credentials);
        config.lcp.echo_interval = Some(c.lcp_echo_interval);
        config.lcp.echo_failure = c.lcp_echo_failure;
        config.establish_timeout = Some(c.ppp_timeout);
        // The peer may not put this host's other addresses (the LAN, other lines) on the line.
        config.ipcp.local_addrs = crate::sys::local_ipv4_addrs(&c.slave);
        // A bundle's line proposes Multilink; a peer that rejects it gives a plain link.
        config.lcp.multilink = self.ctx.membership.as_ref().map(|b| b.multilink);
        // A fresh seed per session: RFC 1661 wants a new magic number each time, and a frame
        // left over from the last session must not match this one's.
        config.seed = self.rng.u64(..);
        if kernel.is_some() {
            // The kernel's ppp_async frames; the session sees whole frames.
            config.framing = crate::ppp::Framing::Unframed;
        }
        let session = Session::new(config, Instant::now());
        // The port goes to the PPP task; DCD stays readable through a duplicate.
        // Only a carrier that is up can be lost: a modem that never raises DCD (AT&C0, a cable
        // without it) is not sampled at all, as pppd samples none (it waits for SIGHUP).
        let carrier = port.carrier_watch().filter(|c| c.carrier() == Some(true));
        let mut carrier_was_up = carrier.is_some();
        let mut carrier_lost = false;
        let leftover = std::mem::take(&mut self.leftover);
        let spawned = match kernel {
            // Out of the reactor while the kernel has the tty: its transmit wake-ups are
            // not ours (a UART wakes the tty's waiters at every transmit interrupt).
            Some(attached) => kernel_ppp::spawn(
                session,
                port.park(),
                attached,
                leftover,
                ppp_driver::DriverConfig::default(),
            ),
            None => ppp_driver::spawn(
                session,
                port,
                leftover,
                ppp_driver::DriverConfig {
                    // Outgoing packets wait in the line's counted, drop-tail queue (its depth
                    // is the line's load), not in the channel.
                    channel_capacity: 4,
                    // Incoming ones: a 16 KiB read of a fast line holds a dozen packets,
                    // which a channel of 4 turned into a ping-pong of wake-ups (one unpaced
                    // line: 190 → 235 Mbit/s down with 64).
                    incoming_capacity: 64,
                    ..ppp_driver::DriverConfig::default()
                },
            ),
        };
        let ppp_driver::Spawned {
            link,
            mut closer,
            task,
        } = spawned;
        let ppp_driver::Link {
            outgoing,
            incoming,
            mut events,
        } = link;
        let mut incoming = Some(incoming);
        let mut up: Option<UpLine> = None;
        // While the line is a bundle member: why the bundle wants it closed, if it does.
        let mut kicked: Option<tokio::sync::oneshot::Receiver<String>> = None;
        let mut closing = false;
        // Set when upstream tracking asked for a new call: the session's end says so.
        let mut redial_for: Option<String> = None;
        // The next queue depth report, while packets pass; the depth last reported.
        let mut load_due: Option<tokio::time::Instant> = None;
        let mut load_reported = 0u64;
        let mut carrier_tick = tokio::time::interval(CARRIER_POLL);
        carrier_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let queue = up.as_ref().and_then(|u| u.queue());
            tokio::select! {
                ev = events.recv() => match ev {
                    Some(Event::Up { local, peer, dns, mru }) => {
                        if self.kernel_index.is_none() {
                            self.kernel_index = late_index.as_ref().and_then(|l| l.get().copied());
                        }
                        match self.bring_up(local, peer, dns, mru, &outgoing, &mut incoming).await {
                            Ok(u) => {
                                up = Some(u);
                                load_reported = 0; // a new slave's queue, a new balance entry
                                self.feed(m, LineEvent::PppUp);
                                self.publish(m);
                            }
                            Err(e) => {
                                tracing::warn!("cannot bring the slave up: {e}");
                                closer.close();
                                closing = true;
                                self.feed(m, LineEvent::PppEnded { message: e, kind: FailureKind::Other });
                                self.publish(m);
                            }
                        }
                    }
                    Some(Event::BundleMember { id, multilink }) => {
                        match self.join_bundle(id, multilink, &outgoing, &mut incoming).await {
                            Ok(kick) => {
                                kicked = Some(kick);
                                self.feed(m, LineEvent::PppUp);
                                self.publish(m);
                                let bundle = self.ctx.shared.info().bundle.unwrap_or_default();
                                self.ctx.shared.edit(|i| i.detail = Some(format!("member of bundle {bundle}")));
                            }
                            Err(e) => {
                                tracing::warn!("cannot join the bundle: {e}");
                                closer.close();
                                closing = true;
                                self.feed(m, LineEvent::PppEnded { message: e, kind: FailureKind::Other });
                                self.publish(m);
                            }
                        }
                    }
                    Some(Event::NetworkDown { reason }) if kicked.is_some() => {
                        // Out of the bundle (LCP renegotiates): the call ends, a redial
                        // joins again.
                        tracing::info!("left the bundle: {reason}");
                        kicked = None;
                        self.ctx.shared.edit(|i| i.bundle = None);
                        closer.close();
                        closing = true;
                    }
                    Some(Event::NetworkDown { reason }) => {
                        tracing::info!("IP down: {reason}");
                        // Not up any more (status says so first), though PPP may renegotiate.
                        self.feed(m, LineEvent::NetworkDown);
                        self.publish(m);
                        if let Some(u) = up.take() {
                            self.bring_down(u, &mut incoming).await;
                        }
                    }
                    Some(Event::AuthFailed { reason }) => {
                        tracing::warn!("authentication failed: {reason}");
                    }
                    Some(Event::EchoRtt { rtt }) => self.ctx.shared.edit(|i| i.lcp_rtt = Some(rtt)),
                    Some(Event::Phase(phase)) => {
                        self.ctx.shared.edit(|i| i.detail = phase_label(phase).map(str::to_string));
                    }
                    Some(Event::Down { .. }) | None => break,
                    Some(_) => {}
                },
                why = async {
                    match kicked.as_mut() {
                        Some(k) => k.await.ok(),
                        None => std::future::pending().await,
                    }
                }, if !closing => {
                    kicked = None;
                    if let Some(why) = why {
                        tracing::warn!("the bundle closes the line: {why}");
                        redial_for = Some(why);
                        closer.close();
                        closing = true;
                    }
                }
                cmd = commands.recv(), if !closing => {
                    if let Interrupt::Goto(_) = self.command(cmd, m) {
                        closer.close();
                        closing = true;
                    }
                }
                _ = carrier_tick.tick(), if carrier.is_some() && !closing => {
                    let now_up = carrier.as_ref().and_then(|c| c.carrier()) == Some(true);
                    if carrier_was_up && !now_up {
                        tracing::warn!("carrier lost");
                        carrier_lost = true;
                        closer.close();
                        closing = true;
                    }
                    carrier_was_up = now_up;
                }
                verdict = async {
                    match up.as_mut().and_then(|u| u.track.as_mut()) {
                        Some(t) => t.events.recv().await,
                        None => std::future::pending().await,
                    }
                }, if !closing => match verdict {
                    Some(TrackEvent::Changed(internet)) => self.internet(m, internet),
                    Some(TrackEvent::Redial) => {
                        let after = self.ctx.config.track.redial_after.unwrap_or_default();
                        redial_for = Some(format!(
                            "no Internet through the line for {}: dialling again",
                            crate::ui::format::duration(after.as_secs_f64())
                        ));
                        closer.close();
                        closing = true;
                    }
                    // The tracking task ended (it never does on its own): carry on untracked.
                    None => {
                        if let Some(u) = up.as_mut() {
                            u.track = None;
                        }
                    }
                },
                _ = async {
                    match &queue {
                        Some(q) => q.became_busy().await,
                        None => std::future::pending().await,
                    }
                }, if load_due.is_none() => {
                    load_due = Some(tokio::time::Instant::now() + LOAD_REPORT);
                }
                _ = crate::sys::sleep_until_opt(load_due) => {
                    load_due = None;
                    if let Some(q) = up.as_ref().and_then(|u| u.queue()) {
                        let depth = q.depth();
                        if depth != load_reported {
                            self.ctx.balancer.set_load(&self.ctx.config.name, depth);
                            load_reported = depth;
                        }
                        if depth > 0 {
                            load_due = Some(tokio::time::Instant::now() + LOAD_REPORT);
                        }
                    }
                }
            }
        }
        if let Some(u) = up.take() {
            self.bring_down(u, &mut incoming).await;
        }
        self.ctx.shared.edit(|i| i.bundle = None);
        drop(closer);
        let finished = match task.await {
            Ok(f) => f,
            Err(e) => {
                tracing::error!("PPP task failed: {e}");
                return Some(self.feed(
                    m,
                    LineEvent::PppEnded {
                        message: format!("PPP task failed: {e}"),
                        kind: FailureKind::Other,
                    },
                ));
            }
        };
        self.port = Some(finished.line.unpark());
        // The channel is out of the bundle's unit now (the tty left N_PPP): say so.
        self.bundle_gone = None;
        // After a hangup/shutdown command the machine is already hanging up and ignores this.
        let (message, kind) = match redial_for {
            Some(why) => (why, FailureKind::Transient),
            None => ppp_failure(&finished.ended.reason, carrier_lost, m.was_up()),
        };
        Some(self.feed(m, LineEvent::PppEnded { message, kind }))
    }

    /// The slave of this call: kernel PPP set up on the port (`Some`), or TUN; status says
    /// which and why. An error: kernel PPP was asked for and cannot be had.
    async fn kernel_or_tun(
        &mut self,
        port: &SerialPort,
    ) -> Result<Option<kernel_ppp::Attached>, String> {
        let c = self.ctx.config.clone();
        self.member_channel = None;
        let bundle = self
            .ctx
            .membership
            .as_ref()
            .map(|m| (m.bundle.clone(), m.joins.clone()));
        let mut choice = match &bundle {
            None => kernel_ppp::choose(c.slave_kind, port.as_fd())?,
            // A member's call has its bundle's kind.
            Some((name, Joins::Kernel(_))) => kernel_ppp::choose(SlaveKind::Ppp, port.as_fd())
                .map_err(|e| format!("bundle {name} is on kernel PPP: {e}"))?,
            Some((name, Joins::Tun { why, .. })) => kernel_ppp::Choice::Tun {
                why: format!("a member of bundle {name}, on TUN: {why}"),
            },
        };
        let mut attached = None;
        if choice == kernel_ppp::Choice::Kernel {
            let tty = port
                .as_fd()
                .try_clone_to_owned()
                .map_err(|e| format!("kernel PPP: duplicate the port: {e}"))?;
            let made = match &bundle {
                Some(_) => kernel_ppp::attach_member(tty, &self.ctx.netlink, &c.slave)
                    .await
                    .and_then(|a| {
                        self.member_channel = Some(a.channel_handle()?);
                        Ok(a)
                    }),
                None => kernel_ppp::attach(tty, &self.ctx.netlink, &c.slave).await,
            };
            match made {
                Ok(a) => attached = Some(a),
                Err(e) if c.slave_kind == SlaveKind::Auto && bundle.is_none() => {
                    tracing::warn!("kernel PPP: {e}; this call uses TUN");
                    choice = kernel_ppp::Choice::Tun {
                        why: format!("auto: kernel PPP failed: {e}"),
                    };
                }
                Err(e) => return Err(format!("kernel PPP: {e}")),
            }
        }
        tracing::info!(slave = %c.slave, "slave kind: {}", choice.describe());
        self.ctx
            .shared
            .edit(|i| i.slave_kind = Some(choice.describe()));
        Ok(attached)
    }

    /// The session became a member of a Multilink bundle: its channels go to the bundle
    /// task, which runs IPCP and the slave for all members. Returns where the bundle says why
    /// it wants the line closed.
    async fn join_bundle(
        &mut self,
        id: crate::ppp::mp::BundleId,
        multilink: crate::ppp::mp::Negotiated,
        outgoing: &mpsc::Sender<Vec<u8>>,
        incoming: &mut Option<mpsc::Receiver<Vec<u8>>>,
    ) -> Result<tokio::sync::oneshot::Receiver<String>, String> {
        let membership = self
            .ctx
            .membership
            .clone()
            .ok_or("Multilink agreed without a bundle")?;
        let speed = self
            .ctx
            .shared
            .info()
            .connect_speed
            .unwrap_or(self.ctx.config.baud);
        let (kick, kicked) = tokio::sync::oneshot::channel();
        let name = self.ctx.config.name.clone();
        let rate = u64::from(speed / 8);
        let not_running = || format!("bundle {} is not running", membership.bundle);
        match &membership.joins {
            Joins::Tun { joins, .. } => {
                let from_link = incoming.take().ok_or("joined a bundle twice")?;
                let join = crate::ppp::bundle::Join {
                    name,
                    id: id.clone(),
                    multilink,
                    rate,
                    mru: crate::ppp::lcp::DEFAULT_MRU,
                    to_link: outgoing.clone(),
                    from_link,
                    kick,
                    counter: self.ctx.shared.clone(),
                };
                joins.send(join).await.map_err(|_| not_running())?;
            }
            Joins::Kernel(joins) => {
                let channel = self
                    .member_channel
                    .take()
                    .ok_or("a kernel bundle member without its channel")?;
                let (gone_tx, gone) = tokio::sync::oneshot::channel();
                let join = KernelJoin {
                    name,
                    id: id.clone(),
                    multilink,
                    rate,
                    channel,
                    to_link: outgoing.clone(),
                    kick,
                    gone,
                };
                joins.send(join).await.map_err(|_| not_running())?;
                self.bundle_gone = Some(gone_tx);
            }
        }
        tracing::info!(bundle = %membership.bundle, peer_bundle = %id, "joined bundle {}", membership.bundle);
        self.ctx
            .shared
            .edit(|i| i.bundle = Some(membership.bundle.clone()));
        Ok(kicked)
    }

    /// IPCP is up: make the slave, start the pumps, enslave, run ip-up.
    async fn bring_up(
        &mut self,
        local: Ipv4Addr,
        peer: Ipv4Addr,
        dns: Vec<Ipv4Addr>,
        mru: u16,
        outgoing: &mpsc::Sender<Vec<u8>>,
        incoming: &mut Option<mpsc::Receiver<Vec<u8>>>,
    ) -> Result<UpLine, String> {
        let c = self.ctx.config.clone();
        let mtu = mru.clamp(576, 1500);
        let path = match self.kernel_index {
            Some(index) => {
                // The kernel's pppN, renamed at the call's start.
                let follow = kernel_ppp::slave_up(
                    &self.ctx.netlink,
                    index,
                    (local, peer),
                    mtu,
                    self.ctx.shared.clone(),
                    self.ctx.balancer.clone(),
                    c.name.clone(),
                )
                .await?;
                DataPath::Kernel { follow }
            }
            None => {
                let slave = TunSlave::create(&self.ctx.netlink, &c.slave, local, peer, mtu)
                    .await
                    .map_err(|e| e.to_string())?;
                let slave = Arc::new(slave);
                let queue = Arc::new(SharedTxQueue::new(crate::net::queue::DEFAULT_QUEUE_BYTES));
                let from_line = incoming
                    .take()
                    .ok_or("PPP came up twice without going down")?;
                let pumps = start_pumps(
                    slave.clone(),
                    queue.clone(),
                    outgoing.clone(),
                    from_line,
                    self.ctx.shared.clone(),
                );
                self.ctx.shared.set_queue(Some(queue.clone()));
                DataPath::Tun {
                    slave,
                    queue,
                    pumps,
                }
            }
        };
        let speed = self.ctx.shared.info().connect_speed;
        let weight = match c.weight {
            Weight::Fixed(w) => Some(w),
            Weight::Auto => None,
        };
        let spec = Enslave {
            line: c.name.clone(),
            device: c.slave.clone(),
            local,
            peer,
            weight,
            speed,
            dns: dns.clone(),
            tier: c.tier,
            tracked: c.track.enabled(),
        };
        self.ctx.shared.edit(|i| {
            i.local = Some(local);
            i.peer = Some(peer);
            i.dns = dns.clone();
            i.mru = Some(mru);
        });
        let suspect = c
            .track
            .enabled()
            .then(|| Arc::new(tokio::sync::Notify::new()));
        let mark = match self.ctx.balancer.enslave(spec, suspect.clone()).await {
            Ok(mark) => mark,
            Err(e) => {
                let u = UpLine {
                    path,
                    enslaved: false,
                    local,
                    peer,
                    dns,
                    speed,
                    track: None,
                };
                let mut none = None;
                self.bring_down(u, &mut none).await;
                return Err(format!("cannot enslave {}: {e}", c.slave));
            }
        };
        tracing::info!(%local, %peer, ?dns, mtu, "up and enslaved");
        // Upstream tracking: probes leave by this line whatever the balance.
        let track = suspect.map(|suspect| {
            let via = crate::net::probe::Via {
                device: c.slave.clone(),
                local,
                mark,
                dns: dns.clone(),
            };
            let shared = self.ctx.shared.clone();
            let received: tracking::Received =
                Arc::new(move || shared.rx_bytes.load(std::sync::atomic::Ordering::Relaxed));
            let task = tracking::spawn(c.track.clone(), via, suspect, received);
            self.ctx.shared.set_track(Some(task.snapshot.clone()));
            task
        });
        let link = HookLink {
            device: self.device_path(),
            local,
            peer,
            dns: dns.clone(),
            speed,
        };
        self.track_hook(self.ctx.hooks.run(HookEvent::Up, &c, &link));
        Ok(UpLine {
            path,
            enslaved: true,
            local,
            peer,
            dns,
            speed,
            track,
        })
    }

    /// Upstream tracking's verdict: the line leaves the balance without the Internet (the
    /// link stays up; it is not the line's fault) and comes back with it.
    fn internet(&mut self, m: &mut LineMachine, internet: Internet) {
        let carries = internet.carries_traffic();
        let event = match internet {
            Internet::Unknown | Internet::Online => LineEvent::InternetBack,
            Internet::Offline { reason } => LineEvent::InternetLost {
                degraded: false,
                reason: format!("no Internet: {reason}"),
            },
            Internet::Degraded { reason } => LineEvent::InternetLost {
                degraded: true,
                reason: format!("degraded: {reason}"),
            },
        };
        self.ctx
            .balancer
            .set_internet(&self.ctx.config.name, carries);
        self.feed(m, event);
        self.publish(m);
    }

    /// Keeps a started hook's task, so the line's end can wait for it.
    fn track_hook(&mut self, task: Option<JoinHandle<()>>) {
        self.hook_tasks.retain(|t| !t.is_finished());
        self.hook_tasks.extend(task);
    }

    /// IP went down: out of the balance at once, then the slave goes.
    async fn bring_down(&mut self, u: UpLine, incoming: &mut Option<mpsc::Receiver<Vec<u8>>>) {
        let c = self.ctx.config.clone();
        // Tracking first: its probes would only fail from here on.
        drop(u.track);
        self.ctx.shared.set_track(None);
        if u.enslaved {
            self.ctx.balancer.emancipate(&c.name).await;
            // What ip-up was told: the CONNECT speed of this session (the status may have
            // dropped it by now), not the configured baud.
            let link = HookLink {
                device: self.device_path(),
                local: u.local,
                peer: u.peer,
                dns: u.dns.clone(),
                speed: u.speed,
            };
            self.track_hook(self.ctx.hooks.run(HookEvent::Down, &c, &link));
        }
        match u.path {
            DataPath::Tun {
                slave,
                queue,
                pumps,
            } => {
                let from_line = pumps.stop().await;
                if incoming.is_none() {
                    *incoming = from_line;
                }
                self.ctx.shared.set_queue(None);
                drop(queue);
                drop(slave);
                tracing::info!("emancipated; slave {} removed", c.slave);
            }
            // The interface goes with the unit, at the call's end.
            DataPath::Kernel { follow } => {
                follow.abort();
                self.ctx.shared.set_kernel_queue(None);
                tracing::info!("emancipated");
            }
        }
    }
}

/// Where an up line's packets go.
enum DataPath {
    /// A TUN device, and the pumps between it and the PPP driver through the line's queue.
    Tun {
        slave: Arc<TunSlave>,
        queue: Arc<SharedTxQueue>,
        pumps: Pumps,
    },
    /// Kernel PPP: the interface is the kernel's; `follow` reads its counters and queue
    /// into the line's ([`kernel_ppp::follow_slave`]).
    Kernel { follow: JoinHandle<()> },
}

/// What exists while a line is up.
struct UpLine {
    path: DataPath,
    enslaved: bool,
    local: Ipv4Addr,
    peer: Ipv4Addr,
    dns: Vec<Ipv4Addr>,
    /// The CONNECT speed this session came up with (given to both hooks).
    speed: Option<u32>,
    /// Upstream tracking, for a tracked line.
    track: Option<TrackTask>,
}

impl UpLine {
    /// The line's transmit queue (TUN: ours; kernel PPP: the kernel's, not seen here).
    fn queue(&self) -> Option<Arc<SharedTxQueue>> {
        match &self.path {
            DataPath::Tun { queue, .. } => Some(queue.clone()),
            DataPath::Kernel { .. } => None,
        }
    }
}

/// Runs a chat script: `Connected` and the bytes after the CONNECT line on success (the
/// caller maps it for the init script).
async fn chat(
    port: &SerialPort,
    script: Option<Script>,
    options: ChatOptions,
    shared: Arc<LineShared>,
) -> (LineEvent, Vec<u8>) {
    let Some(script) = script else {
        return (LineEvent::Connected, Vec::new());
    };
    let mut engine = ChatEngine::new(script, options, Instant::now());
    let mut show = |a: &crate::chat::Action| match a {
        crate::chat::Action::Log(l) => tracing::debug!("chat: {l}"),
        // The modem's latest answer, for `up`'s progress and `status`.
        crate::chat::Action::Heard(l) | crate::chat::Action::Sent(l) => {
            shared.edit(|i| i.detail = Some(l.clone()));
        }
        _ => {}
    };
    match run_chat(port, &mut engine, &mut show).await {
        Outcome::Success(s) => {
            if let Some(speed) = s.speed {
                shared.edit(|i| i.connect_speed = Some(speed));
            }
            if let Some(connect) = &s.connect {
                tracing::info!("{connect}");
            }
            (LineEvent::Connected, s.leftover)
        }
        Outcome::Failure(f) => (
            LineEvent::ChatFailed {
                kind: chat_failure_kind(&f),
                message: f.to_string(),
            },
            Vec::new(),
        ),
    }
}

/// Why a PPP session ended, for the line's status, and how soon to redial: a dropped carrier
/// (which only this layer sees) or a line that was up is everyday, rejected credentials back
/// off hard (also when the line went down while the session was closing for them), the rest
/// by the configured factor.
fn ppp_failure(reason: &DownReason, carrier_lost: bool, was_up: bool) -> (String, FailureKind) {
    if carrier_lost {
        return (
            "carrier lost (DCD dropped)".to_string(),
            FailureKind::Transient,
        );
    }
    match reason.auth_failure() {
        Some(why) => (format!("authentication failed: {why}"), FailureKind::Auth),
        None if was_up => (reason.to_string(), FailureKind::Transient),
        None => (reason.to_string(), FailureKind::Other),
    }
}

/// How often a line whose device cannot be watched (inotify failed) looks for it.
const PRESENCE_RETRY: Duration = Duration::from_secs(5);

/// Runs the cellular check over the port, showing what it learns in the line's status.
async fn cellular_check(
    port: &SerialPort,
    config: CheckConfig,
    shared: Arc<LineShared>,
) -> crate::cellular::Outcome {
    let mut check = CellularCheck::new(config, Instant::now());
    let mut seen = |action: crate::cellular::Action| match action {
        crate::cellular::Action::Status(status) => {
            let detail = cellular_detail(&status);
            shared.edit(|i| {
                i.cellular = Some(status);
                i.detail = Some(detail);
            });
        }
        crate::cellular::Action::Log(l) => tracing::debug!("cellular: {l}"),
        crate::cellular::Action::PinSent => tracing::info!("SIM PIN sent"),
        crate::cellular::Action::Write(_) => {}
    };
    run_check(port, &mut check, &mut seen).await
}

/// The cellular state in a few words: `SIM ready, searching`, `registered, SimNet LTE, -96 dBm`.
pub fn cellular_detail(s: &crate::cellular::CellStatus) -> String {
    let mut parts = Vec::new();
    match (&s.sim, s.registration) {
        (_, Some(r)) => parts.push(r.as_str().to_string()),
        (Some(sim), None) => parts.push(format!("SIM {sim}")),
        (None, None) => parts.push("checking the modem".into()),
    }
    parts.extend(s.network());
    if let Some(signal) = s.signal {
        parts.push(format!("{} dBm", signal.dbm));
    }
    parts.join(", ")
}

/// What the cellular check's end means for the line.
fn cellular_event(outcome: crate::cellular::Outcome, timeout: Duration) -> LineEvent {
    use crate::cellular::Outcome;
    match outcome {
        Outcome::NotCellular | Outcome::Ready => LineEvent::CellularReady,
        Outcome::SimLocked {
            reason,
            pin_refused,
        } => LineEvent::SimLocked {
            message: reason,
            pin_refused,
        },
        Outcome::NoSim => LineEvent::CellularFailed {
            message: "no SIM card in the modem".into(),
            kind: FailureKind::Other,
            trouble: Trouble::Failed,
        },
        Outcome::NotRegistered(r) => LineEvent::CellularFailed {
            message: format!(
                "not registered with the network after {}s ({})",
                timeout.as_secs(),
                r.as_str()
            ),
            kind: FailureKind::Other,
            trouble: Trouble::NotRegistered,
        },
        Outcome::NoAnswer(why) => LineEvent::CellularFailed {
            message: format!("the modem does not answer: {why}"),
            kind: FailureKind::Other,
            trouble: Trouble::Wedged,
        },
    }
}

/// A PPP phase in the words `status` and `up` show.
fn phase_label(phase: crate::ppp::Phase) -> Option<&'static str> {
    use crate::ppp::Phase;
    match phase {
        Phase::Dead => None,
        Phase::Establish => Some("LCP"),
        Phase::Authenticate => Some("authenticating"),
        Phase::Network => Some("IPCP"),
        Phase::Terminate => Some("terminating"),
    }
}

/// BUSY, NO CARRIER, NO ANSWER, NO DIALTONE are everyday: redial soon. The rest backs off.
fn chat_failure_kind(f: &Failure) -> FailureKind {
    match f {
        Failure::Aborted { string, .. }
            if [
                "BUSY",
                "NO CARRIER",
                "NO ANSWER",
                "NO DIALTONE",
                "NO DIAL TONE",
            ]
            .iter()
            .any(|s| string.contains(s)) =>
        {
            FailureKind::Transient
        }
        _ => FailureKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ppp_failures_by_kind() {
        let auth = DownReason::AuthFailed {
            reason: "peer rejected our PAP credentials: Login incorrect".into(),
        };
        let auth_message = (
            "authentication failed: peer rejected our PAP credentials: Login incorrect".to_string(),
            FailureKind::Auth,
        );
        assert_eq!(ppp_failure(&auth, false, false), auth_message);
        // The line went down before the Terminate exchange for the failure finished.
        let cut = DownReason::LowerDown {
            reason: "line closed: end of file".into(),
            closing: Some(Box::new(auth.clone())),
        };
        assert_eq!(ppp_failure(&cut, false, false), auth_message);
        // Carrier loss, which only the line sees, comes first.
        assert_eq!(
            ppp_failure(&auth, true, false),
            (
                "carrier lost (DCD dropped)".to_string(),
                FailureKind::Transient
            )
        );
        let dead = DownReason::EchoTimeout { requests: 3 };
        assert_eq!(
            ppp_failure(&dead, false, true),
            (
                "link dead: no reply to 3 LCP Echo-Requests".to_string(),
                FailureKind::Transient
            )
        );
        assert_eq!(
            ppp_failure(&dead, false, false),
            (
                "link dead: no reply to 3 LCP Echo-Requests".to_string(),
                FailureKind::Other
            )
        );
        let closed = DownReason::LowerDown {
            reason: "line closed: end of file".into(),
            closing: Some(Box::new(DownReason::LocalClose {
                reason: "User request".into(),
            })),
        };
        assert_eq!(
            ppp_failure(&closed, false, false),
            ("line closed: end of file".to_string(), FailureKind::Other)
        );
    }

    #[test]
    fn chat_failures_by_kind() {
        let busy = Failure::Aborted {
            index: 0,
            string: "BUSY".into(),
        };
        assert_eq!(chat_failure_kind(&busy), FailureKind::Transient);
        let err = Failure::Aborted {
            index: 4,
            string: "ERROR".into(),
        };
        assert_eq!(chat_failure_kind(&err), FailureKind::Other);
        assert_eq!(
            chat_failure_kind(&Failure::Timeout {
                expected: "CONNECT".into()
            }),
            FailureKind::Other
        );
    }
}
