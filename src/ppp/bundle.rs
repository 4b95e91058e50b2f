//! The async side of a Multilink bundle (RFC 1990): one task runs a [`BundleSession`] over
//! the member links that join it. Each member is a line's PPP [`driver`](super::driver) whose
//! session reported [`Event::BundleMember`](super::Event::BundleMember): its channels then
//! carry the bundle's frames ([`bundle_frame`]), and the line hands them over with a
//! [`Join`]. The bundle's IP packets come and go on channels of their own, as a plain link's
//! do, so one slave device serves the bundle whichever members come and go.
//!
//! ```text
//!  line ttyS1: driver ⇄ Session ──frames──┐
//!  line ttyS2: driver ⇄ Session ──frames──┼──> bundle task: BundleSession (IPCP, MP) ⇄ IP channels
//!  line ttyS3: driver ⇄ Session ──frames──┘        (scheduler: by rate and queue, members with room)
//! ```
//!
//! The session starts with the first member (its negotiated formats and MRRUs) and ends with
//! the last; while one member stays, members leaving and joining do not touch IPCP. A member
//! that cannot join (another bundle's id, IPCP failed for good) is told why through its
//! `kick`, and its line closes the link.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::IpcpConfig;
use super::driver::{bundle_frame, split_bundle_frame};
use super::mp::{
    BundleConfig, BundleEvent, BundleId, BundleSession, BundleSessionConfig, LinkState, Negotiated,
    Outgoing, PROTOCOL,
};
use crate::net::pump::TrafficCounter;

/// A member link joining the bundle.
pub struct Join {
    /// The line's name (logs, status).
    pub name: String,
    /// The bundle its peer put it in.
    pub id: BundleId,
    /// What its LCP agreed for Multilink.
    pub multilink: Negotiated,
    /// Its sending rate, bytes per second (the CONNECT speed / 8).
    pub rate: u64,
    /// The peer's MRU on the link: no frame on it is longer.
    pub mru: u16,
    /// The member driver's channels: frames to send on the link, frames received from it.
    pub to_link: mpsc::Sender<Vec<u8>>,
    pub from_link: mpsc::Receiver<Vec<u8>>,
    /// Where the bundle says why it wants the link closed.
    pub kick: oneshot::Sender<String>,
    /// Counts the member's share of the bundle's traffic (its fragments' bytes).
    pub counter: Arc<dyn TrafficCounter>,
}

impl std::fmt::Debug for Join {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Join")
            .field("name", &self.name)
            .field("id", &self.id)
            .field("rate", &self.rate)
            .finish_non_exhaustive()
    }
}

/// What the bundle reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// IPCP is open over the bundle.
    Up {
        local: Ipv4Addr,
        peer: Ipv4Addr,
        dns: Vec<Ipv4Addr>,
        mtu: u16,
        /// The kernel unit's interface, where the kernel carries the bundle's packets
        /// ([`link::kernel_bundle`](crate::link::kernel_bundle)); `None` here, whose
        /// packets come and go on the link's channels.
        kernel_index: Option<u32>,
    },
    /// IPCP left Opened (the last member left, or it renegotiates).
    Down { reason: String },
    /// The member lines now, and their rates together in bytes/s.
    Members { names: Vec<String>, rate: u64 },
}

impl Update {
    /// What a bundle session's event says to the bundle's user, logged; `kernel_index`: the
    /// kernel unit's interface, where the kernel carries the packets. (On `Failed` the
    /// caller closes the member links.)
    pub fn of_event(event: &BundleEvent, kernel_index: Option<u32>) -> Update {
        match event {
            BundleEvent::Up {
                local,
                peer,
                dns,
                mtu,
            } => {
                info!(%local, %peer, ?dns, mtu, "bundle: IP up");
                Update::Up {
                    local: *local,
                    peer: *peer,
                    dns: dns.clone(),
                    mtu: *mtu,
                    kernel_index,
                }
            }
            BundleEvent::NetworkDown { reason } => {
                info!(%reason, "bundle: IP down");
                Update::Down {
                    reason: reason.clone(),
                }
            }
            BundleEvent::Failed { reason } => {
                warn!(%reason, "bundle: IPCP failed; closing its member links");
                Update::Down {
                    reason: reason.to_string(),
                }
            }
        }
    }
}

/// Settings of a bundle task.
#[derive(Debug, Clone)]
pub struct BundleDriverConfig {
    /// The bundle's IPCP (as a plain link's: the dialer's or the answer role's).
    pub ipcp: IpcpConfig,
    /// Capacity of the IP channels (outgoing, incoming).
    pub ip_channel: usize,
}

impl BundleDriverConfig {
    /// Defaults around an IPCP configuration.
    pub fn new(ipcp: IpcpConfig) -> Self {
        BundleDriverConfig {
            ipcp,
            ip_channel: 64,
        }
    }
}

/// The user's ends of a bundle task.
#[derive(Debug)]
pub struct BundleLink {
    /// Members join here.
    pub joins: mpsc::Sender<Join>,
    /// IPv4 packets to send over the bundle (taken while it is up and a member has room).
    pub outgoing: mpsc::Sender<Vec<u8>>,
    /// IPv4 packets received over the bundle.
    pub incoming: mpsc::Receiver<Vec<u8>>,
    pub updates: mpsc::UnboundedReceiver<Update>,
}

/// Starts a bundle task. It ends once `joins` is dropped and no member is left.
pub fn spawn(config: BundleDriverConfig) -> (BundleLink, JoinHandle<()>) {
    let (joins_tx, joins) = mpsc::channel(8);
    let (out_tx, outgoing) = mpsc::channel(config.ip_channel.max(1));
    let (incoming, in_rx) = mpsc::channel(config.ip_channel.max(1));
    let (updates, updates_rx) = mpsc::unbounded_channel();
    let span = tracing::Span::current();
    let task = tokio::spawn(tracing::Instrument::instrument(
        run(
            config,
            Channels {
                joins,
                outgoing,
                incoming,
                updates,
            },
        ),
        span,
    ));
    (
        BundleLink {
            joins: joins_tx,
            outgoing: out_tx,
            incoming: in_rx,
            updates: updates_rx,
        },
        task,
    )
}

struct Channels {
    joins: mpsc::Receiver<Join>,
    outgoing: mpsc::Receiver<Vec<u8>>,
    incoming: mpsc::Sender<Vec<u8>>,
    updates: mpsc::UnboundedSender<Update>,
}

/// One member, as the task keeps it.
struct Member {
    name: String,
    rate: u64,
    mru: u16,
    to_link: mpsc::Sender<Vec<u8>>,
    kick: Option<oneshot::Sender<String>>,
    /// The last frame's length: with the frames waiting, an estimate of its queue.
    last_frame: usize,
    /// When the link will have sent what the bundle gave it, at its rate: most of a link's
    /// queue is past its channel (its driver's backlog, the tty, the modem), out of sight.
    busy_until: Option<Instant>,
    counter: Arc<dyn TrafficCounter>,
}

/// A frame's bytes on the line beyond its information field: flag, protocol, FCS, and a
/// few escapes.
const FRAMING: usize = 6;

impl Member {
    fn state(&self, id: u32, now: Instant) -> LinkState<u32> {
        let waiting = self.to_link.max_capacity() - self.to_link.capacity();
        let paced = self.busy_until.map_or(0.0, |t| {
            t.saturating_duration_since(now).as_secs_f64() * self.rate as f64
        });
        LinkState {
            id,
            rate: self.rate,
            queued: (waiting * self.last_frame).max(paced as usize),
            mru: self.mru,
            up: self.to_link.capacity() > 0,
        }
    }

    /// `bytes` more went to the link.
    fn paced(&mut self, bytes: usize, now: Instant) {
        let start = self.busy_until.map_or(now, |t| t.max(now));
        let takes = (bytes + FRAMING) as f64 / self.rate.max(1) as f64;
        self.busy_until = Some(start + std::time::Duration::from_secs_f64(takes.min(60.0)));
    }

    fn kick(&mut self, why: &str) {
        if let Some(kick) = self.kick.take() {
            let _ = kick.send(why.to_string());
        }
    }
}

/// The bundle as it runs: its id and session exist from the first member to the last.
struct Running {
    id: BundleId,
    session: BundleSession<u32>,
    /// Its last member left, or IPCP failed: the next member starts a new one.
    session_ended: bool,
    /// A received packet waiting for room in the IP channel.
    rx_held: Option<Vec<u8>>,
}

async fn run(config: BundleDriverConfig, mut ch: Channels) {
    let mut members: BTreeMap<u32, Member> = BTreeMap::new();
    let mut running: Option<Running> = None;
    let mut next_id = 0u32;
    // Every member's received frames, tagged with its id; `None` once it is gone.
    let (frames_tx, mut frames) = mpsc::channel::<(u32, Option<Vec<u8>>)>(256);
    let mut joins_open = true;
    loop {
        if let Some(r) = running.as_mut() {
            drain(r, &mut members, &ch);
            if r.session_ended {
                running = None;
            }
        }
        if !joins_open && members.is_empty() {
            break;
        }
        let deadline = running
            .as_ref()
            .and_then(|r| r.session.poll_timeout())
            .map(tokio::time::Instant::from_std);
        let room = members.values().any(|m| m.to_link.capacity() > 0);
        let up = running.as_ref().is_some_and(|r| r.session.is_up());
        // Nobody reads IP while the bundle is down: a packet held then is dropped, so
        // that the members' frames (IPCP coming back) keep moving.
        if let Some(r) = running.as_mut().filter(|r| !r.session.is_up()) {
            r.rx_held = None;
        }
        let held = running.as_ref().is_some_and(|r| r.rx_held.is_some());
        tokio::select! {
            permit = ch.incoming.reserve(), if held => {
                let packet = running.as_mut().and_then(|r| r.rx_held.take());
                if let (Ok(permit), Some(p)) = (permit, packet) {
                    permit.send(p);
                }
            }
            join = ch.joins.recv(), if joins_open => match join {
                Some(join) => {
                    let id = next_id;
                    next_id = next_id.wrapping_add(1);
                    admit(id, join, &config, &mut running, &mut members, &frames_tx);
                    let _ = ch.updates.send(members_update(&members));
                }
                None => joins_open = false,
            },
            Some((id, frame)) = frames.recv(), if !held => match frame {
                Some(frame) => {
                    if let (Some(r), Some(m)) = (running.as_mut(), members.get(&id))
                        && let Some((protocol, info)) = split_bundle_frame(&frame)
                    {
                        m.counter.count_rx(info.len());
                        r.session.handle_frame(id, protocol, info, Instant::now());
                    }
                }
                None => {
                    if let Some(m) = members.remove(&id) {
                        info!(member = %m.name, "left the bundle");
                        if let Some(r) = running.as_mut() {
                            r.session.remove_member(id, Instant::now());
                        }
                        let _ = ch.updates.send(members_update(&members));
                    }
                }
            },
            packet = ch.outgoing.recv(), if up && room => {
                if let (Some(p), Some(r)) = (packet, running.as_mut()) {
                    let states: Vec<LinkState<u32>> =
                        members.iter().map(|(id, m)| m.state(*id, Instant::now())).collect();
                    match r.session.send_ip(&p, &states) {
                        Ok(frames) => send(frames, &mut members),
                        Err(e) => debug!(len = p.len(), error = %e, "bundle: outgoing packet dropped"),
                    }
                }
            }
            () = crate::sys::sleep_until_opt(deadline) => {
                if let Some(r) = running.as_mut() {
                    r.session.handle_timeout(Instant::now());
                }
            }
        }
    }
}

/// A joining member: into the running bundle if its id matches, or the first of a new one.
fn admit(
    id: u32,
    join: Join,
    config: &BundleDriverConfig,
    running: &mut Option<Running>,
    members: &mut BTreeMap<u32, Member>,
    frames_tx: &mpsc::Sender<(u32, Option<Vec<u8>>)>,
) {
    let Join {
        name,
        id: bundle_id,
        multilink,
        rate,
        mru,
        to_link,
        mut from_link,
        kick,
        counter,
    } = join;
    match running {
        Some(r) if r.id != bundle_id => {
            warn!(member = %name, theirs = %bundle_id, ours = %r.id, "a line of another bundle: refused");
            let _ = kick.send(format!(
                "the peer put this line in another bundle ({bundle_id}, not {})",
                r.id
            ));
            return;
        }
        Some(_) => {}
        None => {
            let mut bundle = BundleConfig::from_negotiated(&multilink);
            // A link still sending (by its pace) gets whole packets: splitting over busy links
            // buys no speed and costs each share a fragment's header and framing.
            bundle.scheduler.busy_above = Some(0);
            let cfg = BundleSessionConfig::new(bundle, config.ipcp.clone());
            info!(bundle = %bundle_id, ?multilink, "bundle starts");
            *running = Some(Running {
                id: bundle_id,
                session: BundleSession::new(cfg, 0),
                session_ended: false,
                rx_held: None,
            });
        }
    }
    info!(member = %name, rate, "joined the bundle");
    if let Some(r) = running.as_mut() {
        r.session.add_member(id, Instant::now());
    }
    let forward = frames_tx.clone();
    tokio::spawn(async move {
        while let Some(frame) = from_link.recv().await {
            if forward.send((id, Some(frame))).await.is_err() {
                return;
            }
        }
        let _ = forward.send((id, None)).await;
    });
    members.insert(
        id,
        Member {
            name,
            rate,
            mru,
            to_link,
            kick: Some(kick),
            last_frame: usize::from(mru),
            busy_until: None,
            counter,
        },
    );
}

/// Asks the first member link with room (`links`: their channels towards the links) to
/// Protocol-Reject `protocol`'s packet `info`: a protocol the bundle does not run, which a
/// link's LCP rejects (pppd's bundles do likewise). None with room: dropped, the peer asks
/// again.
pub(crate) fn ask_reject<'a>(
    links: impl IntoIterator<Item = &'a mpsc::Sender<Vec<u8>>>,
    protocol: u16,
    info: &[u8],
) {
    if let Some(link) = links.into_iter().find(|l| l.capacity() > 0) {
        let reject = bundle_frame(protocol, info);
        let _ = link.try_send(bundle_frame(super::lcp::PROTOCOL, &reject));
    }
}

/// What the session has for the members, the IP side and the user.
fn drain(r: &mut Running, members: &mut BTreeMap<u32, Member>, ch: &Channels) {
    let states: Vec<LinkState<u32>> = members
        .iter()
        .map(|(id, m)| m.state(*id, Instant::now()))
        .collect();
    let control = r.session.poll_transmit(&states);
    send(control, members);
    // Protocols the bundle does not run (CCP, IPv6CP): any member's LCP rejects them.
    while let Some((protocol, info)) = r.session.poll_protocol_reject() {
        ask_reject(members.values().map(|m| &m.to_link), protocol, &info);
    }
    // Received packets wait for room in `incoming` (the slave's pump) rather than be
    // dropped by a burst; while some wait, the members' frames wait in their channels.
    while r.rx_held.is_none() {
        let Some(packet) = r.session.poll_ip() else {
            break;
        };
        match ch.incoming.try_send(packet) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(p)) => r.rx_held = Some(p),
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
    while let Some(event) = r.session.poll_event() {
        if let BundleEvent::Failed { reason } = &event {
            for m in members.values_mut() {
                m.kick(&reason.to_string());
            }
            r.session_ended = true;
        }
        let _ = ch.updates.send(Update::of_event(&event, None));
    }
    if members.is_empty() {
        r.session_ended = true;
    }
}

/// MP frames onto their members' links; a member without room loses the frame (the
/// scheduler only picks members with room, so this is rare: reassembly counts it lost).
fn send(frames: Vec<Outgoing<u32>>, members: &mut BTreeMap<u32, Member>) {
    for Outgoing { member, info } in frames {
        let Some(m) = members.get_mut(&member) else {
            continue;
        };
        m.last_frame = info.len() + 4;
        let len = info.len();
        match m.to_link.try_send(bundle_frame(PROTOCOL, &info)) {
            Ok(()) => {
                m.counter.count_tx(len);
                m.paced(len, Instant::now());
            }
            Err(_) => debug!(member = %m.name, "bundle: member queue full, fragment dropped"),
        }
    }
}

fn members_update(members: &BTreeMap<u32, Member>) -> Update {
    Update::Members {
        names: members.values().map(|m| m.name.clone()).collect(),
        rate: members.values().map(|m| m.rate).sum(),
    }
}

/// What the tests of both roles' bundles share.
#[cfg(test)]
pub(crate) mod test_support {
    use super::*;
    use crate::ppp::driver::{self, DriverConfig};
    use crate::ppp::{Config, Event, Session};

    /// A member line as tests run one: its session on `line`, handed to the bundle behind
    /// `joins` (as `name`, at `rate` bytes/s) at BundleMember. Dropping the closer ends the
    /// link; the task ends with it.
    pub(crate) fn member(
        name: &str,
        config: Config,
        line: tokio::io::DuplexStream,
        joins: mpsc::Sender<Join>,
        rate: u64,
    ) -> (driver::Closer, JoinHandle<()>) {
        let driver::Spawned { link, closer, task } = driver::spawn(
            Session::new(config, Instant::now()),
            line,
            Vec::new(),
            DriverConfig::default(),
        );
        let name = name.to_string();
        let handle = tokio::spawn(async move {
            let driver::Link {
                outgoing,
                incoming,
                mut events,
            } = link;
            let mut channels = Some((outgoing, incoming));
            while let Some(event) = events.recv().await {
                if let Event::BundleMember { id, multilink } = event
                    && let Some((to_link, from_link)) = channels.take()
                {
                    let (kick, _kicked) = oneshot::channel();
                    let join = Join {
                        name: name.clone(),
                        id,
                        multilink,
                        rate,
                        mru: 1500,
                        to_link,
                        from_link,
                        kick,
                        counter: Arc::new(crate::net::pump::NoCount),
                    };
                    if joins.send(join).await.is_err() {
                        return;
                    }
                }
            }
            let _ = task.await;
        });
        (closer, handle)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::duplex;

    use super::test_support::member;
    use super::*;
    use crate::ppp::Config;
    use crate::ppp::mp::{EndpointDiscriminator, MultilinkConfig};

    /// A protocol the bundle does not run goes to the first link with room, as a request
    /// for its LCP (protocol LCP, then the rejected protocol and packet); a full link is
    /// passed over, and with none free the request is dropped.
    #[test]
    fn a_reject_goes_to_the_first_link_with_room() {
        let (full, mut full_rx) = mpsc::channel(1);
        full.try_send(vec![0]).unwrap();
        let (free, mut free_rx) = mpsc::channel(1);
        ask_reject([&full, &free], 0x80fd, &[1, 2, 3]);
        assert_eq!(
            free_rx.try_recv().unwrap(),
            [0xc0, 0x21, 0x80, 0xfd, 1, 2, 3]
        );
        assert!(free_rx.try_recv().is_err());
        free.try_send(vec![9]).unwrap();
        ask_reject([&full, &free], 0x80fd, &[1]);
        assert_eq!(full_rx.try_recv().unwrap(), [0]);
        assert!(full_rx.try_recv().is_err());
        assert_eq!(free_rx.try_recv().unwrap(), [9]);
    }

    const ISP: Ipv4Addr = Ipv4Addr::new(10, 64, 1, 1);
    const CUSTOMER: Ipv4Addr = Ipv4Addr::new(10, 64, 1, 2);

    fn multilink(endpoint: EndpointDiscriminator) -> Option<MultilinkConfig> {
        Some(MultilinkConfig {
            mrru: 1500,
            short_seq: false,
            endpoint: Some(endpoint),
        })
    }

    /// An IPv4 packet of `len` bytes whose payload says `n`.
    fn packet(n: u8, len: usize) -> Vec<u8> {
        let mut p = vec![n; len];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        p
    }

    async fn wait_up(updates: &mut mpsc::UnboundedReceiver<Update>) -> Update {
        loop {
            let u = tokio::time::timeout(Duration::from_secs(10), updates.recv())
                .await
                .expect("the bundle came up")
                .expect("the bundle task runs");
            if matches!(u, Update::Up { .. }) {
                return u;
            }
        }
    }

    #[tokio::test]
    async fn two_members_carry_one_bundle_and_it_survives_one_leaving() {
        let mut dialer_cfg = Config::dialer(None);
        dialer_cfg.lcp.multilink = multilink(EndpointDiscriminator::magic(&[0x1234_5678]));
        let mut answer_cfg = Config::answer(ISP, CUSTOMER, &[]);
        answer_cfg.lcp.multilink = multilink(EndpointDiscriminator::ip(ISP));
        let (mut ours, _) = spawn(BundleDriverConfig::new(dialer_cfg.ipcp.clone()));
        let (mut theirs, _) = spawn(BundleDriverConfig::new(answer_cfg.ipcp.clone()));
        let mut links = Vec::new();
        for name in ["ttyS1", "ttyS2"] {
            let (a, b) = duplex(64 * 1024);
            links.push(member(
                name,
                dialer_cfg.clone(),
                a,
                ours.joins.clone(),
                100_000,
            ));
            links.push(member(
                name,
                answer_cfg.clone(),
                b,
                theirs.joins.clone(),
                100_000,
            ));
        }
        let up = wait_up(&mut ours.updates).await;
        assert!(
            matches!(up, Update::Up { local, peer, .. } if local == CUSTOMER && peer == ISP),
            "{up:?}"
        );
        wait_up(&mut theirs.updates).await;
        // Large packets are split over both members and come out whole, in order.
        for n in 0..50u8 {
            ours.outgoing.send(packet(n, 1400)).await.unwrap();
        }
        for n in 0..50u8 {
            let got = tokio::time::timeout(Duration::from_secs(5), theirs.incoming.recv())
                .await
                .expect("delivered")
                .unwrap();
            assert_eq!(got, packet(n, 1400));
        }
        // A burst larger than the IP channel, sent before anything is read: held back, not
        // dropped.
        let send_burst = async {
            for n in 0..150u8 {
                ours.outgoing.send(packet(n, 600)).await.unwrap();
            }
        };
        tokio::time::timeout(Duration::from_secs(10), send_burst)
            .await
            .expect("the burst is taken");
        tokio::time::sleep(Duration::from_millis(300)).await;
        for n in 0..150u8 {
            let got = tokio::time::timeout(Duration::from_secs(5), theirs.incoming.recv())
                .await
                .expect("the whole burst is delivered")
                .unwrap();
            assert_eq!(got, packet(n, 600));
        }
        // One member's link goes (its line hung up): the bundle carries on, without IPCP
        // again.
        let (closer, handle) = links.remove(0);
        drop(closer);
        handle.await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        for n in 50..80u8 {
            ours.outgoing.send(packet(n, 1000)).await.unwrap();
            let got = tokio::time::timeout(Duration::from_secs(5), theirs.incoming.recv())
                .await
                .expect("delivered over the member left")
                .unwrap();
            assert_eq!(got, packet(n, 1000));
        }
        while let Ok(u) = ours.updates.try_recv() {
            assert!(!matches!(u, Update::Down { .. }), "{u:?}");
        }
    }
}
