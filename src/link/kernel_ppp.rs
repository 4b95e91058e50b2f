//! A line's PPP in the kernel (`slave_kind`): after CONNECT the tty goes into the `N_PPP`
//! line discipline, the kernel's `ppp_async` does the HDLC framing and `ppp_generic`'s
//! `pppN` (renamed to the line's slave name) carries the IP packets; our
//! [`Session`](crate::ppp::Session), in [`Framing::Unframed`], keeps doing LCP,
//! authentication, IPCP and the echoes with the frames the kernel hands over
//! ([`crate::net::kernel_ppp`] has the ioctls and their order).
//!
//! [`choose`] decides per call which kind a line gets and says why; [`attach`] sets the
//! kernel up; [`spawn`] runs the session over the channel's and the unit's fds and, at the
//! end, removes the unit (`pppN` goes) and puts the tty's discipline back before the caller
//! hangs up. The data path never passes through this process.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::pin::pin;
use std::time::Duration;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::time::timeout;
use tracing::{debug, info, warn};

use crate::config::SlaveKind;
use crate::net::Netlink;
use crate::net::kernel_ppp::{self, Channel, FrameRoute, NpMode, PppFile, Unit};
use crate::ppp::driver::{
    Channels, DriverConfig, Ended, Finished, Lifecycle, Spawned, now, spawn_with,
};
use crate::ppp::hdlc::Decoder;
use crate::ppp::{DownReason, Event, LinkParameters, Session};

/// PPP's protocol number of IPv4.
pub(crate) use crate::ppp::ipcp::IPV4;

/// How long setting the kernel up or down may take (the ioctls wait on the tty's and the
/// network stack's locks, and the first open of `/dev/ppp` may load modules).
const KERNEL_DEADLINE: Duration = Duration::from_secs(10);

/// Runs the blocking kernel step `step` on the blocking pool, within [`KERNEL_DEADLINE`];
/// `what` names it in the errors.
pub(crate) async fn blocking<T: Send + 'static>(
    what: &str,
    step: impl FnOnce() -> kernel_ppp::Result<T> + Send + 'static,
) -> Result<T, String> {
    match timeout(KERNEL_DEADLINE, tokio::task::spawn_blocking(step)).await {
        Ok(Ok(Ok(done))) => Ok(done),
        Ok(Ok(Err(e))) => Err(e.to_string()),
        Ok(Err(e)) => Err(format!("{what} failed: {e}")),
        Err(_) => Err(format!("{what} took over {KERNEL_DEADLINE:?}")),
    }
}

/// A new unit (`PPPIOCNEWUNIT`, then `setup`, on the blocking pool) named `slave`, whose first
/// channel `connect` connects, registered with the reactor; and its interface's index. On
/// failure the unit is removed (on the blocking pool, not waited for). Bounded.
pub(crate) async fn new_unit(
    netlink: &Netlink,
    slave: &str,
    setup: impl FnOnce(&Unit) -> kernel_ppp::Result<()> + Send + 'static,
    connect: impl FnOnce(&Unit) -> kernel_ppp::Result<()>,
) -> Result<(AsyncFd<Unit>, u32), String> {
    let unit = blocking("unit set-up", move || {
        let unit = Unit::new()?;
        setup(&unit)?;
        Ok(unit)
    })
    .await?;
    let remove = |unit: Unit, why: String| {
        tokio::task::spawn_blocking(move || unit.close());
        why
    };
    let index = match name_unit(netlink, &unit, slave).await {
        // One ioctl on a channel just attached: no wait worth the blocking pool.
        Ok(index) => match connect(&unit) {
            Ok(()) => index,
            Err(e) => return Err(remove(unit, e.to_string())),
        },
        Err(e) => return Err(remove(unit, e)),
    };
    // SAFETY: a `Unit` owns its file, whose fd stays open and the same until `into_inner`
    // hands it back.
    match unsafe { AsyncFd::register_with_interest(unit, Interest::READABLE | Interest::WRITABLE) }
    {
        Ok(unit) => Ok((unit, index)),
        Err(e) => {
            let (unit, e) = e.into_parts();
            Err(remove(unit, format!("registering the unit's file: {e}")))
        }
    }
}

/// Which slave a call gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// Kernel PPP: `pppN`, renamed to the slave name.
    Kernel,
    /// A TUN device, and why not kernel PPP.
    Tun { why: String },
}

impl Choice {
    /// What `status` says: `kernel PPP` or `TUN (why)`.
    pub fn describe(&self) -> String {
        match self {
            Choice::Kernel => "kernel PPP".into(),
            Choice::Tun { why } => format!("TUN ({why})"),
        }
    }
}

/// The slave for a call on `tty`: what the configuration asks for, and with `auto` kernel
/// PPP wherever `/dev/ppp` opens and the port is a real tty. (A bundle member's call has
/// its bundle's kind: [`crate::link::bundle::choose`].) An error: kernel PPP asked for and
/// not possible.
pub fn choose(kind: SlaveKind, tty: BorrowedFd<'_>) -> Result<Choice, String> {
    let kernel = || -> Result<(), String> {
        kernel_ppp::available().map_err(|e| e.to_string())?;
        if !kernel_ppp::is_tty(tty) {
            return Err("the port is not a tty".into());
        }
        Ok(())
    };
    match kind {
        SlaveKind::Tun => Ok(Choice::Tun {
            why: "slave_kind = \"tun\"".into(),
        }),
        SlaveKind::Ppp => kernel()
            .map(|()| Choice::Kernel)
            .map_err(|e| format!("slave_kind = \"ppp\": {e}")),
        SlaveKind::Auto => match kernel() {
            Err(why) => Ok(Choice::Tun {
                why: format!("auto: {why}"),
            }),
            Ok(()) if kernel_ppp::is_pty_slave(tty) => Ok(Choice::Tun {
                why: "auto: the port is a pty".into(),
            }),
            Ok(()) => Ok(Choice::Kernel),
        },
    }
}

/// The kernel's side of a call: the tty's channel and the unit it is connected to, whose
/// interface has the line's slave name; a bundle member's channel has no unit of its own
/// (the bundle connects it to the bundle's).
#[derive(Debug)]
pub struct Attached {
    channel: Channel,
    unit: Option<Unit>,
    /// The unit's interface's index.
    pub index: Option<u32>,
    /// A member's call: the unit it gets if its peer does not agree Multilink.
    late: Option<LateUnit>,
}

/// A bundle member's call whose peer did not agree Multilink is a plain link: it gets a unit
/// of its own once its session reaches the network phase as one (pppd, with `multilink`,
/// makes one then too), named `slave`; `index` says its interface.
#[derive(Clone)]
pub struct LateUnit {
    netlink: Netlink,
    slave: String,
    pub index: std::sync::Arc<std::sync::OnceLock<u32>>,
}

impl std::fmt::Debug for LateUnit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LateUnit")
            .field("slave", &self.slave)
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

impl Attached {
    /// A handle on the channel, for the bundle to connect it to its unit.
    pub fn channel_handle(&self) -> Result<kernel_ppp::ChannelHandle, String> {
        self.channel.handle().map_err(|e| e.to_string())
    }

    /// Where a member's call says the interface of the unit it got as a plain link.
    pub fn late_index(&self) -> Option<std::sync::Arc<std::sync::OnceLock<u32>>> {
        self.late.as_ref().map(|l| l.index.clone())
    }
}

/// Puts the connected `tty` of a Multilink bundle's member into PPP: its channel only, for
/// its LCP and authentication; the bundle connects it to its unit once it joins (pppd, with
/// `multilink`, makes no unit per link either).
/// Should its peer not agree Multilink, the call gets a unit of its own, named `slave`.
pub async fn attach_member(
    tty: OwnedFd,
    netlink: &Netlink,
    slave: &str,
) -> Result<Attached, String> {
    let channel = blocking("kernel PPP set-up", move || Channel::attach(tty.as_fd())).await?;
    Ok(Attached {
        channel,
        unit: None,
        index: None,
        late: Some(LateUnit {
            netlink: netlink.clone(),
            slave: slave.to_string(),
            index: Default::default(),
        }),
    })
}

/// Puts the connected `tty` into PPP and makes the unit, named `slave` (pppd's
/// `tty_establish_ppp` and `make_ppp_unit`). On failure nothing is left: the tty is back
/// in its discipline, the unit gone.
pub async fn attach(tty: OwnedFd, netlink: &Netlink, slave: &str) -> Result<Attached, String> {
    let (channel, unit) = blocking("kernel PPP set-up", move || {
        let channel = Channel::attach(tty.as_fd())?;
        let unit = Unit::new()?;
        unit.connect(&channel)?;
        Ok((channel, unit))
    })
    .await?;
    let named = name_unit(netlink, &unit, slave);
    match named.await {
        Ok(index) => Ok(Attached {
            channel,
            unit: Some(unit),
            index: Some(index),
            late: None,
        }),
        Err(e) => {
            detach(channel, Some(unit)).await;
            Err(e)
        }
    }
}

/// The unit's `pppN` renamed to `slave`, without IPv6 (IPv6CP is not negotiated, as on a
/// TUN slave): its interface index.
pub async fn name_unit(netlink: &Netlink, unit: &Unit, slave: &str) -> Result<u32, String> {
    let ifname = unit.ifname();
    let index = netlink
        .link_index(&ifname)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{ifname} vanished"))?;
    netlink
        .rename(index, slave)
        .await
        .map_err(|e| e.to_string())?;
    let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{slave}/disable_ipv6"), "1");
    debug!(unit = %ifname, slave, "kernel PPP unit");
    Ok(index)
}

/// IPCP is up on a kernel slave (interface `index`, named at the call's start): its
/// addresses, MTU and up (pppd's `sifaddr`, `sifup`), then followed ([`follow_slave`]) into
/// `shared` and the balancer's load of `line`.
pub async fn slave_up(
    netlink: &Netlink,
    index: u32,
    (local, peer): (std::net::Ipv4Addr, std::net::Ipv4Addr),
    mtu: u16,
    shared: std::sync::Arc<crate::link::status::LineShared>,
    balancer: crate::balancer::actor::BalancerHandle,
    line: String,
) -> Result<tokio::task::JoinHandle<()>, String> {
    netlink
        .add_ptp_address(index, local, peer)
        .await
        .map_err(|e| e.to_string())?;
    netlink
        .set_up(index, u32::from(mtu))
        .await
        .map_err(|e| e.to_string())?;
    Ok(follow_slave(
        netlink.clone(),
        index,
        shared,
        move |queued| balancer.set_load(&line, queued),
    ))
}

/// A port found in the PPP line discipline (a daemon of ours killed outright on a pty, whose
/// discipline outlives the close while the pty's master is open) goes back to `N_TTY`, or the
/// chat would talk to `ppp_async`. Bounded; a failure is logged.
pub async fn reset_discipline(port: &crate::serial::SerialPort) {
    let Ok(tty) = port.as_fd().try_clone_to_owned() else {
        return;
    };
    let reset = tokio::task::spawn_blocking(move || kernel_ppp::reset_ppp_discipline(tty.as_fd()));
    match timeout(KERNEL_DEADLINE, reset).await {
        Ok(Ok(Ok(true))) => warn!("the port was left in the PPP line discipline: back to N_TTY"),
        Ok(Ok(Ok(false))) => {}
        // Not a tty that has disciplines: nothing to put back.
        Ok(Ok(Err(e))) => debug!("line discipline: {e}"),
        Ok(Err(e)) => warn!("line discipline check failed: {e}"),
        Err(_) => warn!("line discipline check took over {KERNEL_DEADLINE:?}"),
    }
}

/// The unit removed (its interface goes), then the tty's discipline back: before the
/// hangup, as pppd's `tty_disestablish_ppp`. Bounded; a failure is logged.
async fn detach(channel: Channel, unit: Option<Unit>) {
    let undone = blocking("tear-down", move || {
        if let Some(unit) = unit {
            unit.close();
        }
        channel.detach()
    });
    match undone.await {
        Ok(()) => debug!("kernel PPP: unit removed, line discipline back"),
        Err(e) => warn!("kernel PPP: {e}"),
    }
}

/// Runs `session` (unframed) over the kernel's channel and unit (if it has one: a bundle
/// member's NCP frames are the bundle's, on the bundle's unit) in a new task; `line` (the
/// port) is only held, and handed back at the end with the kernel state undone. `initial`
/// are the line bytes read with CONNECT (HDLC-framed: they came before `N_PPP`).
pub fn spawn<T>(
    session: Session,
    line: T,
    attached: Attached,
    initial: Vec<u8>,
    config: DriverConfig,
) -> Spawned<T>
where
    T: Send + 'static,
{
    // No IP goes through us: the channels are there for the events (and the same shape).
    spawn_with(1, 1, move |channels, close| async move {
        let mut session = session;
        let Attached {
            channel,
            unit,
            late,
            ..
        } = attached;
        let (ended, channel, unit) = run(
            &mut session,
            channel,
            (unit, late),
            &initial,
            channels,
            close,
            &config,
        )
        .await;
        detach(channel, unit).await;
        Finished {
            ended,
            session,
            line,
        }
    })
}

/// What went wrong with a frame's write: the frame waits, or the line is gone.
enum Wrote {
    All,
    Blocked(Vec<u8>, FrameRoute),
}

/// The session's frames out through the fd of their protocol, its events on, the kernel
/// told what LCP agreed; frames in from both fds. Returns how it ended and the kernel
/// state, to undo.
async fn run<C>(
    session: &mut Session,
    channel: Channel,
    (unit, late): (Option<Unit>, Option<LateUnit>),
    initial: &[u8],
    channels: Channels,
    close: C,
    config: &DriverConfig,
) -> (Ended, Channel, Option<Unit>)
where
    C: std::future::Future<Output = ()>,
{
    let both = Interest::READABLE | Interest::WRITABLE;
    // SAFETY: a `Channel` and a `Unit` own their files, whose fds stay open and the same
    // until `into_inner` hands them back.
    let chan = match unsafe { AsyncFd::register_with_interest(channel, both) } {
        Ok(fd) => fd,
        Err(e) => {
            let (channel, e) = e.into_parts();
            return (register_failed(session, &e), channel, unit);
        }
    };
    let mut unit = match unit {
        None => None,
        // SAFETY: as above.
        Some(u) => match unsafe { AsyncFd::register_with_interest(u, both) } {
            Ok(fd) => Some(fd),
            Err(e) => {
                let (unit, e) = e.into_parts();
                return (register_failed(session, &e), chan.into_inner(), Some(unit));
            }
        },
    };
    // `outgoing`: a bundle member's requests to Protocol-Reject (no IP comes this way).
    let Channels {
        events,
        mut outgoing,
        ..
    } = channels;
    let mut close = pin!(close);
    let mut life = Lifecycle::default();
    let mut line_error: Option<io::Error> = None;
    let mut applied: Option<LinkParameters> = None;
    let mut blocked: Option<(Vec<u8>, FrameRoute)> = None;
    let mut buf = vec![0u8; usize::from(u16::MAX) + 4];

    // What came with CONNECT was read before N_PPP: HDLC, decoded here.
    if !initial.is_empty() {
        let mut decoder = Decoder::new(usize::from(crate::ppp::lcp::DEFAULT_MRU));
        let mut rest = initial;
        while !rest.is_empty() {
            let (used, frame) = decoder.push(rest);
            rest = &rest[used..];
            if let Some(frame) = frame {
                session.handle_frame_input(frame, now());
            }
            if used == 0 {
                break;
            }
        }
    }
    loop {
        // A bundle member's call that is a plain link: its unit, before its first IPCP frame.
        if unit.is_none()
            && session.phase() == crate::ppp::Phase::Network
            && session.bundle_member().is_none()
            && let Some(late) = &late
        {
            match late_unit(chan.get_ref(), late).await {
                Ok(u) => {
                    info!(slave = %late.slave, "not a bundle member (no Multilink): a unit of its own");
                    unit = Some(u);
                    // The unit checks the MRU too: LCP's values again, to both.
                    applied = None;
                }
                Err(e) => {
                    session.lower_down(&format!("kernel PPP: {e}"), now());
                    line_error = Some(io::Error::other(e));
                }
            }
        }
        // Frames out, each to the fd of its protocol, until one would block.
        if blocked.is_none() {
            while let Some(frame) = session.poll_transmit() {
                let route = FrameRoute::of_frame(&frame);
                match write(&chan, &unit, frame, route) {
                    Ok(Wrote::All) => {}
                    Ok(Wrote::Blocked(frame, route)) => {
                        blocked = Some((frame, route));
                        break;
                    }
                    Err(e) => {
                        session.lower_down(&format!("kernel PPP write: {e}"), now());
                        line_error = Some(e);
                        break;
                    }
                }
            }
        }
        // LCP (re)opened: the kernel frames and checks as agreed.
        let now_params = session.link_parameters();
        if now_params.is_some() && now_params != applied {
            if let Some(p) = &now_params {
                let c = chan.get_ref();
                if let Err(e) = c
                    .send_config(p)
                    .and_then(|()| c.recv_config(unit.as_ref().map(AsyncFd::get_ref), p))
                {
                    warn!("kernel PPP: cannot apply what LCP agreed: {e}");
                } else {
                    info!(
                        mru = p.mru,
                        peer_mru = p.peer_mru,
                        tx_accm = format_args!("{:#010x}", p.tx_accm),
                        rx_accm = format_args!("{:#010x}", p.rx_accm),
                        tx_pfc = p.tx_pfc,
                        tx_acfc = p.tx_acfc,
                        "kernel PPP: the channel frames as LCP agreed"
                    );
                }
            }
            applied = now_params;
        }
        while let Some(event) = session.poll_event() {
            match &event {
                // IP through pppN from now on (until then the kernel drops it).
                Event::Up { .. } => set_npmode(unit.as_ref(), NpMode::Pass),
                Event::NetworkDown { .. } => set_npmode(unit.as_ref(), NpMode::Drop),
                _ => {}
            }
            life.forward(event, &events);
        }
        if session.is_dead() {
            break;
        }
        let deadline = life.deadline(session);
        let blocked_on = blocked.as_ref().map(|(_, r)| *r);
        tokio::select! {
            ready = chan.readable() => match ready {
                Ok(mut guard) => {
                    let read = read_all(&mut guard, &mut buf, |c, b| c.read_frame(b), session);
                    if let Err(e) = read {
                        session.lower_down(&format!("kernel PPP channel: {e}"), now());
                        line_error = Some(e);
                    }
                }
                Err(e) => {
                    session.lower_down(&format!("kernel PPP channel: {e}"), now());
                    line_error = Some(e);
                }
            },
            ready = async {
                match &unit {
                    Some(u) => u.readable().await,
                    None => std::future::pending().await,
                }
            } => match ready {
                Ok(mut guard) => {
                    let read = read_all(&mut guard, &mut buf, |u, b| u.read_frame(b), session);
                    if let Err(e) = read {
                        session.lower_down(&format!("kernel PPP unit: {e}"), now());
                        line_error = Some(e);
                    }
                }
                Err(e) => {
                    session.lower_down(&format!("kernel PPP unit: {e}"), now());
                    line_error = Some(e);
                }
            },
            ready = chan.writable(), if blocked_on == Some(FrameRoute::Channel) => {
                if let Ok(mut guard) = ready {
                    guard.clear_ready();
                }
                retry(&chan, &unit, &mut blocked, session, &mut line_error);
            }
            ready = async {
                match &unit {
                    Some(u) => u.writable().await,
                    None => std::future::pending().await,
                }
            }, if blocked_on == Some(FrameRoute::Unit) => {
                if let Ok(mut guard) = ready {
                    guard.clear_ready();
                }
                retry(&chan, &unit, &mut blocked, session, &mut line_error);
            }
            Some(frame) = outgoing.recv() => crate::ppp::driver::send_ip(session, &frame),
            () = crate::sys::sleep_until_opt(deadline) => life.on_timer(session),
            () = &mut close, if !life.closing() => life.close(session, config),
        }
    }
    // The session's last words (a Terminate-Ack), where the kernel takes them.
    while let Some(frame) = session.poll_transmit() {
        let route = FrameRoute::of_frame(&frame);
        if !matches!(write(&chan, &unit, frame, route), Ok(Wrote::All)) {
            break;
        }
    }
    info!("kernel PPP session ended");
    (
        life.ended(line_error),
        chan.into_inner(),
        unit.map(AsyncFd::into_inner),
    )
}

/// The unit of a member's call that is a plain link: made, named, `channel` connected
/// (its interface's index into `late.index`). Bounded.
async fn late_unit(channel: &Channel, late: &LateUnit) -> Result<AsyncFd<Unit>, String> {
    let (unit, index) = new_unit(
        &late.netlink,
        &late.slave,
        |_| Ok(()),
        |u| u.connect(channel),
    )
    .await?;
    let _ = late.index.set(index);
    Ok(unit)
}

fn register_failed(session: &mut Session, e: &io::Error) -> Ended {
    session.lower_down(&format!("kernel PPP: {e}"), now());
    Ended {
        reason: DownReason::LowerDown {
            reason: format!("kernel PPP: {e}"),
            closing: None,
        },
        line_error: Some(io::Error::new(e.kind(), e.to_string())),
    }
}

/// What the kernel does with IP on `unit` (if there is one); a failure is logged.
pub(crate) fn set_npmode(unit: Option<&AsyncFd<Unit>>, mode: NpMode) {
    let Some(unit) = unit else { return };
    // A single ioctl that does not wait on anything.
    if let Err(e) = unit.get_ref().set_npmode(IPV4, mode) {
        warn!("kernel PPP: {e}");
    }
}

/// One frame to the fd of its route.
fn write(
    chan: &AsyncFd<Channel>,
    unit: &Option<AsyncFd<Unit>>,
    frame: Vec<u8>,
    route: FrameRoute,
) -> io::Result<Wrote> {
    let written = match (route, unit) {
        (FrameRoute::Channel, _) => chan.get_ref().write_frame(&frame),
        (FrameRoute::Unit, Some(unit)) => unit.get_ref().write_frame(&frame),
        // A bundle member's session sends no NCP of its own; nothing else could take it.
        (FrameRoute::Unit, None) => {
            debug!(
                len = frame.len(),
                "kernel PPP: an NCP frame without a unit, dropped"
            );
            return Ok(Wrote::All);
        }
    };
    match written {
        Ok(_) => Ok(Wrote::All),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Wrote::Blocked(frame, route)),
        Err(e) => Err(e),
    }
}

/// The frame that would block, again.
fn retry(
    chan: &AsyncFd<Channel>,
    unit: &Option<AsyncFd<Unit>>,
    blocked: &mut Option<(Vec<u8>, FrameRoute)>,
    session: &mut Session,
    line_error: &mut Option<io::Error>,
) {
    let Some((frame, route)) = blocked.take() else {
        return;
    };
    match write(chan, unit, frame, route) {
        Ok(Wrote::All) => {}
        Ok(Wrote::Blocked(frame, route)) => *blocked = Some((frame, route)),
        Err(e) => {
            session.lower_down(&format!("kernel PPP write: {e}"), now());
            *line_error = Some(e);
        }
    }
}

/// Every frame the fd has now, into the session. End of file: the tty hung up.
fn read_all<T: AsRawFd>(
    guard: &mut tokio::io::unix::AsyncFdReadyGuard<'_, T>,
    buf: &mut [u8],
    read: impl Fn(&T, &mut [u8]) -> io::Result<usize>,
    session: &mut Session,
) -> io::Result<()> {
    loop {
        match guard.try_io(|fd| read(fd.get_ref(), buf)) {
            // Not ready again until something changes: an fd at its end stays readable.
            Ok(Ok(0)) => {
                guard.clear_ready();
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            Ok(Ok(n)) => session.handle_frame_input(&buf[..n], now()),
            Ok(Err(e)) => return Err(e),
            // Drained: the guard's readiness is cleared.
            Err(_would_block) => return Ok(()),
        }
    }
}

/// How often a kernel PPP slave's queue is read while packets wait in it (the balancer's
/// least-loaded policy wants it then), and how often its counters are read while packets
/// pass, and while none do. Measured in a TCG guest: reading both every 100 ms while packets
/// passed cost the daemon 6x its idle CPU during a download; and each read is a few wake-ups
/// (~1 ms each there), so an idle line's counters are read every 2 s and its queue only
/// after it sent something.
const QUEUE_BUSY_EVERY: Duration = Duration::from_millis(100);
const FOLLOW_EVERY: Duration = Duration::from_secs(1);
const FOLLOW_IDLE_EVERY: Duration = Duration::from_secs(2);
/// The queue is read at least this often all the same: a line that sends nothing at all
/// may still have packets waiting (stalled).
const QUEUE_IDLE_EVERY: Duration = Duration::from_secs(10);
/// How long one read of the kernel's figures may take.
const FOLLOW_DEADLINE: Duration = Duration::from_secs(2);

/// Follows a kernel PPP slave (interface `index`), whose packets never pass through this
/// process, until aborted: the growth of its counters into the line's (every second while
/// packets pass, every 2 s while none do), and the bytes waiting in its queueing discipline
/// (the queue of a kernel slave: `ppp_generic` stops the device while the line is busy) into
/// the line's status and, when they change, to `report` (the balancer's least-loaded
/// policy): after the line sent something, and every 100 ms while packets wait. The caller
/// clears the queue from the status after the abort
/// ([`LineShared::set_kernel_queue`](crate::link::status::LineShared::set_kernel_queue)).
pub fn follow_slave(
    netlink: Netlink,
    index: u32,
    shared: std::sync::Arc<crate::link::status::LineShared>,
    report: impl Fn(u64) + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    use std::sync::atomic::Ordering;
    tokio::spawn(async move {
        let mut last: Option<crate::net::LinkCounters> = None;
        let mut counters_due = tokio::time::Instant::now();
        let mut reported = 0u64;
        // Whether the queue may hold something: unknown at first.
        let mut queue_due = true;
        let mut queue_read = tokio::time::Instant::now();
        loop {
            if tokio::time::Instant::now() >= counters_due {
                let counters = match timeout(FOLLOW_DEADLINE, netlink.link_counters(index)).await {
                    Ok(Ok(c)) => c,
                    Ok(Err(e)) => {
                        debug!("kernel PPP counters: {e}");
                        None
                    }
                    Err(_) => None,
                };
                let mut active = true;
                if let Some(now) = counters {
                    if let Some(before) = last {
                        let grew = |n: u64, b: u64| n.saturating_sub(b);
                        let add = |counter: &std::sync::atomic::AtomicU64, n: u64| {
                            counter.fetch_add(n, Ordering::Relaxed);
                        };
                        add(&shared.rx_bytes, grew(now.rx_bytes, before.rx_bytes));
                        add(&shared.tx_bytes, grew(now.tx_bytes, before.tx_bytes));
                        add(&shared.rx_packets, grew(now.rx_packets, before.rx_packets));
                        add(&shared.tx_packets, grew(now.tx_packets, before.tx_packets));
                        let sent = now.tx_packets != before.tx_packets;
                        active = sent || now.rx_packets != before.rx_packets;
                        queue_due |= sent || queue_read.elapsed() >= QUEUE_IDLE_EVERY;
                    }
                    last = Some(now);
                }
                let every = if active {
                    FOLLOW_EVERY
                } else {
                    FOLLOW_IDLE_EVERY
                };
                counters_due = tokio::time::Instant::now() + every;
            }
            let mut waiting = false;
            if queue_due {
                queue_read = tokio::time::Instant::now();
                match timeout(FOLLOW_DEADLINE, netlink.queued(index)).await {
                    Ok(Ok(q)) => {
                        shared.set_kernel_queue(Some(q));
                        if q.backlog_bytes != reported {
                            report(q.backlog_bytes);
                            reported = q.backlog_bytes;
                        }
                        waiting = q.backlog_bytes > 0;
                    }
                    Ok(Err(e)) => debug!("kernel PPP queue: {e}"),
                    Err(_) => {}
                }
                // An empty queue stays empty until the line sends again.
                queue_due = waiting;
            }
            let next = if waiting {
                tokio::time::Instant::now() + QUEUE_BUSY_EVERY
            } else {
                counters_due
            };
            tokio::time::sleep_until(next.min(counters_due)).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On a pty, whatever the kernel has: `auto` gives TUN and says why; `tun` is TUN;
    /// `ppp` is refused with the reason, where the kernel cannot give it (no /dev/ppp here).
    #[test]
    fn the_slave_kind_of_a_call_and_why() {
        let pty = nix::pty::openpty(None, None).expect("openpty");
        let tty = pty.slave.as_fd();
        let auto = choose(SlaveKind::Auto, tty).unwrap();
        let Choice::Tun { why } = &auto else {
            panic!("a pty gets TUN: {auto:?}");
        };
        assert!(why.starts_with("auto: "), "{why}");
        assert!(
            auto.describe().starts_with("TUN (auto: "),
            "{}",
            auto.describe()
        );
        assert_eq!(
            choose(SlaveKind::Tun, tty).unwrap(),
            Choice::Tun {
                why: "slave_kind = \"tun\"".into()
            }
        );
        match kernel_ppp::available() {
            Err(e) => {
                let refused = choose(SlaveKind::Ppp, tty).unwrap_err();
                assert_eq!(refused, format!("slave_kind = \"ppp\": {e}"));
                assert_eq!(why, &format!("auto: {e}"));
                // A bundle's auto is TUN too, for the same reason.
                assert_eq!(
                    crate::link::bundle::choose(SlaveKind::Auto),
                    Choice::Tun {
                        why: format!("auto: {e}")
                    }
                );
            }
            // A pty takes N_PPP: asked for, kernel PPP it is.
            Ok(()) => {
                assert_eq!(choose(SlaveKind::Ppp, tty), Ok(Choice::Kernel));
                assert_eq!(why, "auto: the port is a pty");
                // A bundle's members go into N_PPP whatever their ports.
                assert_eq!(crate::link::bundle::choose(SlaveKind::Auto), Choice::Kernel);
            }
        }
    }
}
