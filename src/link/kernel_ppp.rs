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
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
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
const IPV4: u16 = 0x0021;

/// How long setting the kernel up or down may take (the ioctls wait on the tty's and the
/// network stack's locks, and the first open of `/dev/ppp` may load modules).
const KERNEL_DEADLINE: Duration = Duration::from_secs(10);

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
/// PPP wherever `/dev/ppp` opens and the port is a real tty. A bundle member's frames are the
/// bundle's (our reassembly), so a member gets TUN. An error: kernel PPP asked for and not
/// possible.
pub fn choose(kind: SlaveKind, tty: BorrowedFd<'_>, member: bool) -> Result<Choice, String> {
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
        SlaveKind::Auto if member => Ok(Choice::Tun {
            why: "auto: a Multilink bundle member".into(),
        }),
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
/// interface has the line's slave name.
#[derive(Debug)]
pub struct Attached {
    channel: Channel,
    unit: Unit,
    /// The interface's index.
    pub index: u32,
}

/// Puts the connected `tty` into PPP and makes the unit, named `slave` (pppd's
/// `tty_establish_ppp` and `make_ppp_unit`). On failure nothing is left: the tty is back
/// in its discipline, the unit gone.
pub async fn attach(tty: OwnedFd, netlink: &Netlink, slave: &str) -> Result<Attached, String> {
    let made = tokio::task::spawn_blocking(move || {
        let channel = Channel::attach(tty.as_fd())?;
        let unit = Unit::new()?;
        unit.connect(&channel)?;
        Ok::<_, kernel_ppp::KernelPppError>((channel, unit))
    });
    let (channel, unit) = match timeout(KERNEL_DEADLINE, made).await {
        Ok(Ok(Ok(made))) => made,
        Ok(Ok(Err(e))) => return Err(e.to_string()),
        Ok(Err(e)) => return Err(format!("kernel PPP set-up failed: {e}")),
        Err(_) => return Err(format!("kernel PPP set-up took over {KERNEL_DEADLINE:?}")),
    };
    let named = async {
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
        // No IPv6 on the line (IPv6CP is not negotiated), as on a TUN slave.
        let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{slave}/disable_ipv6"), "1");
        debug!(unit = %ifname, slave, "kernel PPP unit");
        Ok::<_, String>(index)
    };
    match named.await {
        Ok(index) => Ok(Attached {
            channel,
            unit,
            index,
        }),
        Err(e) => {
            detach(channel, unit).await;
            Err(e)
        }
    }
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
async fn detach(channel: Channel, unit: Unit) {
    let undone = tokio::task::spawn_blocking(move || {
        unit.close();
        channel.detach()
    });
    match timeout(KERNEL_DEADLINE, undone).await {
        Ok(Ok(Ok(()))) => debug!("kernel PPP: unit removed, line discipline back"),
        Ok(Ok(Err(e))) => warn!("kernel PPP: {e}"),
        Ok(Err(e)) => warn!("kernel PPP tear-down failed: {e}"),
        Err(_) => warn!("kernel PPP tear-down took over {KERNEL_DEADLINE:?}"),
    }
}

/// Runs `session` (unframed) over the kernel's channel and unit in a new task; `line` (the
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
        let Attached { channel, unit, .. } = attached;
        let (ended, channel, unit) = run(
            &mut session,
            channel,
            unit,
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

/// The unit's fd for [`AsyncFd`] (a `Unit` is owned whole by the driver).
struct UnitFd(Unit);

impl AsRawFd for UnitFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
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
    unit: Unit,
    initial: &[u8],
    channels: Channels,
    close: C,
    config: &DriverConfig,
) -> (Ended, Channel, Unit)
where
    C: std::future::Future<Output = ()>,
{
    let both = Interest::READABLE | Interest::WRITABLE;
    // SAFETY: a `Channel` and a `UnitFd` own their files, whose fds stay open and the same
    // until `into_inner` hands them back.
    let chan = match unsafe { AsyncFd::register_with_interest(channel, both) } {
        Ok(fd) => fd,
        Err(e) => {
            let (channel, e) = e.into_parts();
            return (register_failed(session, &e), channel, unit);
        }
    };
    // SAFETY: as above.
    let unit = match unsafe { AsyncFd::register_with_interest(UnitFd(unit), both) } {
        Ok(fd) => fd,
        Err(e) => {
            let (unit, e) = e.into_parts();
            return (register_failed(session, &e), chan.into_inner(), unit.0);
        }
    };
    let Channels { events, .. } = channels;
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
                    .and_then(|()| c.recv_config(Some(&unit.get_ref().0), p))
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
                Event::Up { .. } => set_npmode(&unit, NpMode::Pass),
                Event::NetworkDown { .. } => set_npmode(&unit, NpMode::Drop),
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
            ready = unit.readable() => match ready {
                Ok(mut guard) => {
                    let read = read_all(&mut guard, &mut buf, |u, b| u.0.read_frame(b), session);
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
            ready = unit.writable(), if blocked_on == Some(FrameRoute::Unit) => {
                if let Ok(mut guard) = ready {
                    guard.clear_ready();
                }
                retry(&chan, &unit, &mut blocked, session, &mut line_error);
            }
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
        unit.into_inner().0,
    )
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

fn set_npmode(unit: &AsyncFd<UnitFd>, mode: NpMode) {
    // A single ioctl that does not wait on anything.
    if let Err(e) = unit.get_ref().0.set_npmode(IPV4, mode) {
        warn!("kernel PPP: {e}");
    }
}

/// One frame to the fd of its route.
fn write(
    chan: &AsyncFd<Channel>,
    unit: &AsyncFd<UnitFd>,
    frame: Vec<u8>,
    route: FrameRoute,
) -> io::Result<Wrote> {
    let written = match route {
        FrameRoute::Channel => chan.get_ref().write_frame(&frame),
        FrameRoute::Unit => unit.get_ref().0.write_frame(&frame),
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
    unit: &AsyncFd<UnitFd>,
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
            Ok(Ok(0)) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(Ok(n)) => session.handle_frame_input(&buf[..n], now()),
            Ok(Err(e)) => return Err(e),
            // Drained: the guard's readiness is cleared.
            Err(_would_block) => return Ok(()),
        }
    }
}

/// How often a kernel PPP slave's queue is read while packets wait in it (the balancer's
/// least-loaded policy wants it then), and how often its counters and an empty queue are read.
/// Measured in a TCG guest: reading both every 100 ms while packets passed cost the daemon
/// 6x its idle CPU during a download; a queue that is empty is worth a look a second.
const QUEUE_BUSY_EVERY: Duration = Duration::from_millis(100);
const FOLLOW_EVERY: Duration = Duration::from_secs(1);
/// How long one read of the kernel's figures may take.
const FOLLOW_DEADLINE: Duration = Duration::from_secs(2);

/// Follows a kernel PPP slave (interface `index`), whose packets never pass through this
/// process, until aborted: the growth of its counters into the line's, every second, and the
/// bytes waiting in its queueing discipline (the queue of a kernel slave: `ppp_generic` stops
/// the device while the line is busy) into the line's status and, when they change, to
/// `report` (the balancer's least-loaded policy): every second, and every 100 ms while packets
/// wait. The caller clears the queue from the status after the abort
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
        loop {
            if tokio::time::Instant::now() >= counters_due {
                counters_due += FOLLOW_EVERY;
                let counters = match timeout(FOLLOW_DEADLINE, netlink.link_counters(index)).await {
                    Ok(Ok(c)) => c,
                    Ok(Err(e)) => {
                        debug!("kernel PPP counters: {e}");
                        None
                    }
                    Err(_) => None,
                };
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
                    }
                    last = Some(now);
                }
            }
            let mut waiting = false;
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
        let auto = choose(SlaveKind::Auto, tty, false).unwrap();
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
            choose(SlaveKind::Auto, tty, true).unwrap(),
            Choice::Tun {
                why: "auto: a Multilink bundle member".into()
            }
        );
        assert_eq!(
            choose(SlaveKind::Tun, tty, false).unwrap(),
            Choice::Tun {
                why: "slave_kind = \"tun\"".into()
            }
        );
        match kernel_ppp::available() {
            Err(e) => {
                let refused = choose(SlaveKind::Ppp, tty, false).unwrap_err();
                assert_eq!(refused, format!("slave_kind = \"ppp\": {e}"));
                assert_eq!(why, &format!("auto: {e}"));
            }
            // A pty takes N_PPP: asked for, kernel PPP it is.
            Ok(()) => {
                assert_eq!(choose(SlaveKind::Ppp, tty, false), Ok(Choice::Kernel));
                assert_eq!(why, "auto: the port is a pty");
            }
        }
    }
}
