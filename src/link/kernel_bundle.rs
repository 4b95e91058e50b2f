//! A Multilink bundle on one kernel PPP unit, as pppd runs one: the first member's channel
//! gets a new unit with [`SC_MULTILINK`](crate::net::kernel_ppp::SC_MULTILINK) and our MRRU
//! (pppd's `make_new_bundle`), every later member's channel is connected to it (its
//! `bundle_attach`), and the kernel's `ppp_generic` splits and reassembles the fragments. This
//! process runs the bundle's IPCP with whole packets on the unit's file
//! ([`BundleSession::poll_control`]); the members' LCP stays on their own channels (their
//! lines' [`kernel_ppp`](super::kernel_ppp) tasks). It reports as the TUN bundle's driver
//! does ([`Update`]), with the unit's interface index in `Up`.
//!
//! A member's channel leaves the unit by itself when its tty leaves `N_PPP` at the call's
//! end; the member's [`KernelJoin::gone`] says so here. With the last member the unit goes
//! (the interface with it), and the next member starts a new one.

use std::collections::BTreeMap;
use std::io;
use std::time::Instant;

use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::net::Netlink;
use crate::net::kernel_ppp::{ChannelHandle, NpMode, PppFile, Unit};
use crate::ppp::IpcpConfig;
use crate::ppp::bundle::Update;
use crate::ppp::mp::{
    BundleConfig, BundleEvent, BundleId, BundleSession, BundleSessionConfig, Negotiated,
};

use super::kernel_ppp::{IPV4, blocking, new_unit, set_npmode};

/// A member line's channel joining the bundle (its LCP agreed Multilink, it authenticated).
pub struct KernelJoin {
    /// The line's name (logs, status).
    pub name: String,
    /// The bundle its peer put it in.
    pub id: BundleId,
    /// What its LCP agreed for Multilink.
    pub multilink: Negotiated,
    /// Its sending rate, bytes per second (the CONNECT speed / 8).
    pub rate: u64,
    /// Its channel, to connect to the unit.
    pub channel: ChannelHandle,
    /// Frames to the member's session: the bundle asks its LCP to Protocol-Reject what the
    /// bundle does not run ([`crate::ppp::bundle::ask_reject`]).
    pub to_link: mpsc::Sender<Vec<u8>>,
    /// Where the bundle says why it wants the link closed.
    pub kick: oneshot::Sender<String>,
    /// Closed (its sender dropped) once the member's call is over and its channel out.
    pub gone: oneshot::Receiver<()>,
}

impl std::fmt::Debug for KernelJoin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelJoin")
            .field("name", &self.name)
            .field("id", &self.id)
            .field("channel", &self.channel.index())
            .finish_non_exhaustive()
    }
}

/// The user's ends of a kernel bundle task.
#[derive(Debug)]
pub struct KernelBundleLink {
    /// Members join here.
    pub joins: mpsc::Sender<KernelJoin>,
    pub updates: mpsc::UnboundedReceiver<Update>,
}

/// Starts a kernel bundle's task: its unit is named `slave`. It ends once `joins` is dropped
/// and no member is left.
pub fn spawn(
    ipcp: IpcpConfig,
    netlink: Netlink,
    slave: String,
) -> (KernelBundleLink, JoinHandle<()>) {
    let (joins_tx, joins) = mpsc::channel(8);
    let (updates_tx, updates) = mpsc::unbounded_channel();
    let span = tracing::Span::current();
    let task = tokio::spawn(tracing::Instrument::instrument(
        run(ipcp, netlink, slave, joins, updates_tx),
        span,
    ));
    (
        KernelBundleLink {
            joins: joins_tx,
            updates,
        },
        task,
    )
}

/// One member, as the task keeps it.
struct Member {
    name: String,
    rate: u64,
    to_link: mpsc::Sender<Vec<u8>>,
    kick: Option<oneshot::Sender<String>>,
}

/// The bundle while it has members: its id, unit and IPCP.
struct Running {
    id: BundleId,
    unit: AsyncFd<Unit>,
    index: u32,
    session: BundleSession<u32>,
    /// An IPCP packet the unit's file would not take yet.
    blocked: Option<Vec<u8>>,
    /// IPCP failed for good: the members were told to go.
    failed: bool,
}

async fn run(
    ipcp: IpcpConfig,
    netlink: Netlink,
    slave: String,
    mut joins: mpsc::Receiver<KernelJoin>,
    updates: mpsc::UnboundedSender<Update>,
) {
    let mut members: BTreeMap<u32, Member> = BTreeMap::new();
    let mut running: Option<Running> = None;
    let mut next_id = 0u32;
    let (gone_tx, mut gone) = mpsc::unbounded_channel::<u32>();
    let mut joins_open = true;
    let mut buf = vec![0u8; usize::from(u16::MAX) + 4];
    loop {
        if let Some(r) = running.as_mut() {
            drain(r, &mut members, &updates);
        }
        if members.is_empty()
            && let Some(r) = running.take()
        {
            close(r).await;
        }
        if !joins_open && members.is_empty() {
            break;
        }
        let deadline = running
            .as_ref()
            .and_then(|r| r.session.poll_timeout())
            .map(tokio::time::Instant::from_std);
        let blocked = running.as_ref().is_some_and(|r| r.blocked.is_some());
        tokio::select! {
            join = joins.recv(), if joins_open => match join {
                Some(join) => {
                    let id = next_id;
                    next_id = next_id.wrapping_add(1);
                    admit(id, join, &ipcp, &netlink, &slave, &mut running, &mut members, &gone_tx).await;
                    let _ = updates.send(members_update(&members));
                }
                None => joins_open = false,
            },
            Some(id) = gone.recv() => {
                if let Some(m) = members.remove(&id) {
                    info!(member = %m.name, "left the bundle");
                    if let Some(r) = running.as_mut() {
                        r.session.remove_member(id, Instant::now());
                    }
                    let _ = updates.send(members_update(&members));
                }
            }
            ready = async {
                match &running {
                    Some(r) => r.unit.readable().await,
                    None => std::future::pending().await,
                }
            } => {
                let frames = match ready {
                    Ok(mut guard) => read_frames(&mut guard, &mut buf),
                    Err(e) => {
                        debug!(error = %e, "kernel bundle: the unit's file");
                        Vec::new()
                    }
                };
                if let Some(r) = running.as_mut() {
                    for frame in frames {
                        if let [hi, lo, info @ ..] = frame.as_slice() {
                            let protocol = u16::from_be_bytes([*hi, *lo]);
                            r.session.handle_frame(0, protocol, info, Instant::now());
                        }
                    }
                }
            }
            ready = async {
                match &running {
                    Some(r) => r.unit.writable().await,
                    None => std::future::pending().await,
                }
            }, if blocked => {
                if let Ok(mut guard) = ready {
                    guard.clear_ready();
                }
                if let Some(r) = running.as_mut() {
                    send_control(r);
                }
            }
            () = crate::sys::sleep_until_opt(deadline) => {
                if let Some(r) = running.as_mut() {
                    r.session.handle_timeout(Instant::now());
                }
            }
        }
    }
    if let Some(r) = running.take() {
        close(r).await;
    }
}

/// Every frame the unit's file has now (`protocol (2 bytes) + info` each).
fn read_frames(
    guard: &mut tokio::io::unix::AsyncFdReadyGuard<'_, Unit>,
    buf: &mut [u8],
) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    loop {
        match guard.try_io(|fd| fd.get_ref().read_frame(buf)) {
            // The unit has no channel left (its last member is leaving): nothing to read
            // until one joins; an fd at its end stays readable, so not ready till then.
            Ok(Ok(0)) => {
                guard.clear_ready();
                break;
            }
            Ok(Ok(n)) => frames.push(buf[..n].to_vec()),
            Ok(Err(e)) => {
                debug!(error = %e, "kernel bundle: read on the unit");
                break;
            }
            // Drained: the guard's readiness is cleared.
            Err(_would_block) => break,
        }
        // A flood waits for the next turn rather than grow this without bound.
        if frames.len() >= 64 {
            break;
        }
    }
    frames
}

/// A joining member: its channel into the running bundle's unit if its id matches, or the
/// first of a new one (a new unit).
#[allow(clippy::too_many_arguments)]
async fn admit(
    id: u32,
    join: KernelJoin,
    ipcp: &IpcpConfig,
    netlink: &Netlink,
    slave: &str,
    running: &mut Option<Running>,
    members: &mut BTreeMap<u32, Member>,
    gone_tx: &mpsc::UnboundedSender<u32>,
) {
    let KernelJoin {
        name,
        id: bundle_id,
        multilink,
        rate,
        channel,
        to_link,
        kick,
        gone,
    } = join;
    let refuse = |kick: oneshot::Sender<String>, why: String| {
        warn!(member = %name, "refused: {why}");
        let _ = kick.send(why);
    };
    match running {
        Some(r) if r.failed => {
            return refuse(kick, "the bundle's IPCP failed; it starts again".into());
        }
        Some(r) if r.id != bundle_id => {
            return refuse(
                kick,
                format!(
                    "the peer put this line in another bundle ({bundle_id}, not {})",
                    r.id
                ),
            );
        }
        Some(r) => {
            // One ioctl on a channel just attached: no wait worth the blocking pool.
            if let Err(e) = r.unit.get_ref().connect_handle(&channel) {
                return refuse(kick, format!("kernel PPP: {e}"));
            }
        }
        None => match start(&bundle_id, &multilink, &channel, ipcp, netlink, slave).await {
            Ok(r) => *running = Some(r),
            Err(e) => return refuse(kick, format!("kernel PPP: {e}")),
        },
    }
    info!(member = %name, rate, channel = channel.index(), "joined the bundle's unit");
    if let Some(r) = running.as_mut() {
        r.session.add_member(id, Instant::now());
    }
    let gone_tx = gone_tx.clone();
    tokio::spawn(async move {
        let _ = gone.await;
        let _ = gone_tx.send(id);
    });
    members.insert(
        id,
        Member {
            name,
            rate,
            to_link,
            kick: Some(kick),
        },
    );
}

/// The bundle's unit, made for its first member's channel: Multilink as LCP agreed, named
/// `slave`, IP dropped until IPCP is up.
async fn start(
    bundle_id: &BundleId,
    multilink: &Negotiated,
    channel: &ChannelHandle,
    ipcp: &IpcpConfig,
    netlink: &Netlink,
    slave: &str,
) -> Result<Running, String> {
    let n = *multilink;
    let first = channel.index();
    let setup = move |unit: &Unit| {
        unit.set_multilink(n.our_mrru, n.rx_short_seq, n.tx_short_seq)?;
        unit.set_npmode(IPV4, NpMode::Drop)
    };
    let (unit, index) = new_unit(netlink, slave, setup, |u| u.connect_handle(channel)).await?;
    let mut bundle = BundleConfig::from_negotiated(multilink);
    // The kernel splits; this session's own scheduler never runs.
    bundle.scheduler.busy_above = Some(0);
    info!(bundle = %bundle_id, ?multilink, first_channel = first, unit = unit.get_ref().number(), slave, "bundle starts on a kernel unit");
    Ok(Running {
        id: bundle_id.clone(),
        unit,
        index,
        session: BundleSession::new(BundleSessionConfig::new(bundle, ipcp.clone()), 0),
        blocked: None,
        failed: false,
    })
}

/// IPCP's packets out through the unit's file until it would block.
fn send_control(r: &mut Running) {
    loop {
        let Some(packet) = r.blocked.take().or_else(|| {
            r.session
                .poll_control()
                .map(|(protocol, pkt)| [&protocol.to_be_bytes()[..], &pkt].concat())
        }) else {
            return;
        };
        match r.unit.get_ref().write_frame(&packet) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                r.blocked = Some(packet);
                return;
            }
            // IPCP retransmits; a unit that takes nothing shows in its members' LCP.
            Err(e) => debug!(error = %e, "kernel bundle: IPCP packet not sent"),
        }
    }
}

/// What the session has for the unit, the members and the user.
fn drain(
    r: &mut Running,
    members: &mut BTreeMap<u32, Member>,
    updates: &mpsc::UnboundedSender<Update>,
) {
    if r.blocked.is_none() {
        send_control(r);
    }
    // Protocols the bundle does not run (CCP, IPv6CP): a member's LCP rejects them.
    while let Some((protocol, info)) = r.session.poll_protocol_reject() {
        crate::ppp::bundle::ask_reject(members.values().map(|m| &m.to_link), protocol, &info);
    }
    while let Some(event) = r.session.poll_event() {
        // IP through the unit while IPCP is open.
        let npmode = match &event {
            BundleEvent::Up { .. } => Some(NpMode::Pass),
            BundleEvent::NetworkDown { .. } => Some(NpMode::Drop),
            BundleEvent::Failed { reason } => {
                for m in members.values_mut() {
                    if let Some(kick) = m.kick.take() {
                        let _ = kick.send(reason.to_string());
                    }
                }
                r.failed = true;
                None
            }
        };
        if let Some(mode) = npmode {
            set_npmode(Some(&r.unit), mode);
        }
        let _ = updates.send(Update::of_event(&event, Some(r.index)));
    }
}

/// The unit removed (its interface goes); bounded, in the blocking pool (RTNL).
async fn close(r: Running) {
    let unit = r.unit.into_inner();
    let number = unit.number();
    let removed = blocking("removing the bundle's unit", move || {
        unit.close();
        Ok(())
    });
    match removed.await {
        Ok(()) => info!(unit = number, "bundle over: its unit removed"),
        Err(e) => warn!("kernel PPP: {e}"),
    }
}

fn members_update(members: &BTreeMap<u32, Member>) -> Update {
    Update::Members {
        names: members.values().map(|m| m.name.clone()).collect(),
        rate: members.values().map(|m| m.rate).sum(),
    }
}
