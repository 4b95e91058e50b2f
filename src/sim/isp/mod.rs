//! A simulated ISP's dial-in side: each call the simulated modem delivers is answered by our
//! PPP engine in answer role, which assigns addresses and DNS, checks credentials if asked,
//! and routes the caller's packets through a TUN device of its own into the network namespace
//! it runs in. The far end of the end-to-end tests and of the demo.

pub mod multilink;
#[cfg(test)]
mod tests;

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::SimCall;
use crate::net::pump::{NoCount, Pumps, start_pumps};
use crate::net::{Netlink, SharedTxQueue, TunSlave};
use crate::ppp::bundle::Join;
use crate::ppp::hdlc::{ACCM_ALL, Decoder, Encoder};
use crate::ppp::{AuthMethods, Config, Event, MultilinkConfig, Secrets, Session, driver};

pub use multilink::{IspLine, MultilinkIspConfig, serve_multilink, serve_multilink_routed};

/// How the ISP answers.
#[derive(Clone)]
pub struct IspConfig {
    /// The ISP's end of the line.
    pub local: Ipv4Addr,
    /// What the caller gets.
    pub peer: Ipv4Addr,
    pub dns: Vec<Ipv4Addr>,
    /// PAP/CHAP users; empty means no authentication.
    pub users: Vec<(String, String)>,
    /// Name of the ISP-side TUN device (in the ISP's namespace).
    pub device: String,
    /// What the upstream adds to the customer's packets (see `sim::upstream`).
    pub delay: super::upstream::Delay,
    /// The ISP hangs up the call in progress (LCP Terminate-Request, then the line drops)
    /// whenever this changes (see [`HangupSwitch`]).
    pub hangup: tokio::sync::watch::Receiver<u64>,
}

/// Makes an ISP hang up the call in progress, as a real ISP does when it ends a session.
#[derive(Clone, Debug)]
pub struct HangupSwitch(Arc<tokio::sync::watch::Sender<u64>>);

impl HangupSwitch {
    /// A switch and the receiver to put in [`IspConfig::hangup`].
    pub fn new() -> (HangupSwitch, tokio::sync::watch::Receiver<u64>) {
        let (tx, rx) = tokio::sync::watch::channel(0);
        (HangupSwitch(Arc::new(tx)), rx)
    }

    /// Hangs up the call in progress, if any (a later call is not affected).
    pub fn hang_up(&self) {
        self.0.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// How one call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallEnd {
    pub was_up: bool,
    pub reason: String,
}

/// Answers calls from `calls` one after the other, forever (until the channel closes).
/// Must run on a thread in the ISP's network namespace, within a tokio runtime.
pub async fn serve_calls(mut calls: mpsc::UnboundedReceiver<SimCall>, config: IspConfig) {
    let netlink = match Netlink::new() {
        Ok(n) => n,
        Err(e) => {
            tracing::error!("sim ISP: netlink: {e}");
            return;
        }
    };
    let routing = Routing::Tun(netlink);
    while let Some(call) = calls.recv().await {
        let end = answer_call(call, &config, &routing, None).await;
        tracing::debug!(device = %config.device, ?end, "sim ISP: call ended");
    }
}

/// Answers one call: PPP in answer role; once up, a TUN device carries the caller's packets.
pub async fn answer(call: SimCall, config: &IspConfig, netlink: &Netlink) -> CallEnd {
    answer_call(call, config, &Routing::Tun(netlink.clone()), None).await
}

/// Where the ISP puts a customer's IP while the customer's link (a call, or a bundle of
/// calls) is up.
#[derive(Clone)]
pub enum Routing {
    /// Through a TUN device of its own in the ISP's namespace (the world, the demo).
    Tun(Netlink),
    /// Handed over as channels, one [`CustomerIp`] per time a link comes up (tests, and a far
    /// end that routes nothing).
    Channels(mpsc::UnboundedSender<CustomerIp>),
}

/// A customer link's IP as [`Routing::Channels`] hands it over.
#[derive(Debug)]
pub struct CustomerIp {
    /// The device [`Routing::Tun`] would have made.
    pub device: String,
    /// The customer's address.
    pub peer: Ipv4Addr,
    pub mtu: u16,
    /// IPv4 packets to the customer.
    pub to_customer: mpsc::Sender<Vec<u8>>,
    /// IPv4 packets from the customer (after the upstream's delay).
    pub from_customer: mpsc::Receiver<Vec<u8>>,
}

/// The ISP's side of one customer link's IP: routed while the link is up.
struct CustomerLink {
    routing: Routing,
    device: String,
    local: Ipv4Addr,
    peer: Ipv4Addr,
    delay: super::upstream::Delay,
    /// Packets to the customer's link.
    outgoing: mpsc::Sender<Vec<u8>>,
    /// Packets from it, while not routed (the pumps hold them while it is).
    incoming: Option<mpsc::Receiver<Vec<u8>>>,
    routed: Option<Routed>,
}

enum Routed {
    Tun(Arc<TunSlave>, Pumps),
    /// The forwarder into the channel handed over, and how to stop it.
    HandedOver(
        oneshot::Sender<()>,
        tokio::task::JoinHandle<mpsc::Receiver<Vec<u8>>>,
    ),
}

/// Packets a [`CustomerIp`]'s taker has not taken yet, at most.
const HANDOVER_CHANNEL: usize = 64;

/// Forwards the link's packets to the channel handed over until stopped: gives the link's
/// channel back (the link may come up again). What the taker does not take in time is dropped,
/// as a full queue drops.
async fn hand_over(
    mut from_link: mpsc::Receiver<Vec<u8>>,
    to: mpsc::Sender<Vec<u8>>,
    mut stop: oneshot::Receiver<()>,
) -> mpsc::Receiver<Vec<u8>> {
    loop {
        tokio::select! {
            _ = &mut stop => break,
            packet = from_link.recv() => match packet {
                Some(p) => {
                    let _ = to.try_send(p);
                }
                None => break,
            },
        }
    }
    from_link
}

impl CustomerLink {
    /// Starts routing; an error says why it cannot (the link stays up, unrouted).
    async fn up(&mut self, mtu: u16) -> Result<(), String> {
        if self.routed.is_some() {
            return Ok(());
        }
        let mtu = mtu.clamp(576, 1500);
        let Some(from_link) = self.incoming.take() else {
            return Err("the link's packets are gone".into());
        };
        let from_link = super::upstream::delayed(from_link, self.delay.clone());
        self.routed = Some(match &self.routing {
            Routing::Tun(netlink) => {
                let slave =
                    match TunSlave::create(netlink, &self.device, self.local, self.peer, mtu).await
                    {
                        Ok(s) => Arc::new(s),
                        Err(e) => return Err(e.to_string()),
                    };
                let queue = Arc::new(SharedTxQueue::new(crate::net::queue::DEFAULT_QUEUE_BYTES));
                let pumps = start_pumps(
                    slave.clone(),
                    queue,
                    self.outgoing.clone(),
                    from_link,
                    Arc::new(NoCount),
                );
                Routed::Tun(slave, pumps)
            }
            Routing::Channels(to) => {
                let (tx, from_customer) = mpsc::channel(HANDOVER_CHANNEL);
                let (stop, stopped) = oneshot::channel();
                let handed = CustomerIp {
                    device: self.device.clone(),
                    peer: self.peer,
                    mtu,
                    to_customer: self.outgoing.clone(),
                    from_customer,
                };
                if to.send(handed).is_err() {
                    self.incoming = Some(from_link);
                    return Err("nobody takes the customer's packets".into());
                }
                Routed::HandedOver(stop, tokio::spawn(hand_over(from_link, tx, stopped)))
            }
        });
        Ok(())
    }

    /// Stops routing: the device goes (a link that comes up again gets a new one).
    async fn down(&mut self) {
        match self.routed.take() {
            Some(Routed::Tun(slave, pumps)) => {
                self.incoming = pumps.stop().await;
                drop(slave);
            }
            // Its taker sees the channel end.
            Some(Routed::HandedOver(stop, forward)) => {
                let _ = stop.send(());
                self.incoming = forward.await.ok();
            }
            None => {}
        }
    }
}

/// The answer role's PPP configuration for `config`; with `multilink`, it offers Multilink.
fn answer_ppp_config(config: &IspConfig, multilink: Option<MultilinkConfig>) -> Config {
    let mut ppp = Config::answer(config.local, config.peer, &config.dns);
    if !config.users.is_empty() {
        let mut secrets = Secrets::new();
        for (user, secret) in &config.users {
            secrets.insert(user.clone(), secret.as_str());
        }
        ppp.secrets = secrets;
        ppp.require_auth = AuthMethods {
            pap: true,
            chap: true,
        };
    }
    ppp.name = "isp".into();
    ppp.lcp.multilink = multilink;
    ppp
}

/// How long a member may wait for its bundle to take it.
const JOIN_DEADLINE: Duration = Duration::from_secs(5);

/// Answers one call. A plain PPP link is routed through `config.device` once IP is up; with
/// `bundles`, Multilink is offered, and a link that becomes a bundle member joins its bundle
/// there (which routes the bundle's IP) and is closed if the bundle refuses it.
async fn answer_call(
    call: SimCall,
    config: &IspConfig,
    routing: &Routing,
    bundles: Option<&multilink::Bundles>,
) -> CallEnd {
    let ppp = answer_ppp_config(config, bundles.map(multilink::Bundles::offer));
    let session = Session::new(ppp, Instant::now());
    let driver::Spawned { link, closer, task } = driver::spawn(
        session,
        call.stream,
        Vec::new(),
        driver::DriverConfig::default(),
    );
    let driver::Link {
        outgoing,
        incoming,
        mut events,
    } = link;
    let mut ip = CustomerLink {
        routing: routing.clone(),
        device: config.device.clone(),
        local: config.local,
        peer: config.peer,
        delay: config.delay.clone(),
        outgoing,
        incoming: Some(incoming),
        routed: None,
    };
    let mut was_up = false;
    let mut closer = closer;
    let mut hanging_up = false;
    // The peer's MRU, for a bundle that sends on this link.
    let mut peer_mru = 1500;
    // Where the bundle says it wants this member link closed.
    let mut kicked: Option<oneshot::Receiver<String>> = None;
    // Only a hang-up asked for during this call ends it.
    let mut hangup = config.hangup.clone();
    hangup.mark_unchanged();
    loop {
        let event = tokio::select! {
            event = events.recv() => match event {
                Some(event) => event,
                None => break,
            },
            changed = hangup.changed(), if !hanging_up => {
                // An error: the switch is gone, nobody can ask any more.
                hanging_up = true;
                if changed.is_ok() {
                    tracing::debug!(device = %config.device, "sim ISP: hanging up");
                    // Terminate-Request, then Down, which ends this loop.
                    closer.close();
                }
                continue;
            }
            why = recv_opt(&mut kicked) => {
                kicked = None;
                if let Ok(why) = why {
                    tracing::info!(device = %config.device, %why, "sim ISP: the bundle refused a member");
                    closer.close();
                }
                continue;
            }
        };
        match event {
            Event::LinkUp { mru } => peer_mru = mru,
            Event::Up { mru, .. } => match ip.up(mru).await {
                Ok(()) => was_up = true,
                Err(e) => {
                    tracing::error!("sim ISP: {e}");
                    break;
                }
            },
            Event::BundleMember { id, multilink } => {
                let (Some(bundles), Some(from_link)) = (bundles, ip.incoming.take()) else {
                    closer.close();
                    continue;
                };
                let (kick, kick_rx) = oneshot::channel();
                let join = Join {
                    name: config.device.clone(),
                    id: id.clone(),
                    multilink,
                    // CONNECT speed in bytes per second.
                    rate: u64::from(call.speed.unwrap_or(DEFAULT_SPEED)) / 8,
                    mru: peer_mru,
                    to_link: ip.outgoing.clone(),
                    from_link,
                    kick,
                    counter: Arc::new(NoCount),
                };
                match tokio::time::timeout(JOIN_DEADLINE, bundles.join(&id, join)).await {
                    Ok(Ok(())) => {
                        kicked = Some(kick_rx);
                        was_up = true;
                    }
                    Ok(Err(e)) => {
                        tracing::error!(bundle = %id, "sim ISP: {e}");
                        closer.close();
                    }
                    Err(_) => {
                        tracing::error!(bundle = %id, "sim ISP: the bundle did not take the member");
                        closer.close();
                    }
                }
            }
            Event::NetworkDown { .. } => ip.down().await,
            Event::Down { .. } => break,
            _ => {}
        }
    }
    ip.down().await;
    drop(closer);
    let reason = match task.await {
        Ok(f) => f.ended.reason.to_string(),
        Err(e) => e.to_string(),
    };
    CallEnd { was_up, reason }
}

/// The CONNECT speed assumed of a call that said none (a V.90 modem's).
const DEFAULT_SPEED: u32 = 57_600;

/// A oneshot's value, or never while there is none.
async fn recv_opt<T>(
    rx: &mut Option<oneshot::Receiver<T>>,
) -> Result<T, oneshot::error::RecvError> {
    match rx {
        Some(rx) => rx.await,
        None => std::future::pending().await,
    }
}

/// A hostile or broken far end, for tests and `simulate modem --isp`: each mode is one way
/// a real ISP (or a misconfigured one) has been seen to misbehave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Misbehave {
    /// Acknowledges the caller's LCP Configure-Requests but never sends one of its own.
    AckNoRequest,
    /// Sends LCP Configure-Requests as fast as the line takes them, answering nothing.
    LcpStorm,
    /// Comes up properly, then floods Echo-Requests and frames of an unknown protocol
    /// (Protocol-Rejects) while it no longer reads anything.
    EchoFlood,
    /// Comes up properly, then neither reads nor writes (the line stays open).
    NoRead,
    /// A normal PPP answer that assigns the caller this address (e.g. 127.0.0.2).
    Assign(Ipv4Addr),
}

impl std::str::FromStr for Misbehave {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "ack-no-request" => Misbehave::AckNoRequest,
            "lcp-storm" => Misbehave::LcpStorm,
            "echo-flood" => Misbehave::EchoFlood,
            "no-read" => Misbehave::NoRead,
            "bad-address" => Misbehave::Assign(Ipv4Addr::new(127, 0, 0, 2)),
            other => match other.strip_prefix("assign:") {
                Some(a) => Misbehave::Assign(
                    a.parse()
                        .map_err(|_| format!("bad address in '{s}': expected assign:A.B.C.D"))?,
                ),
                None => {
                    return Err(format!(
                        "unknown mode '{s}': expected ack-no-request, lcp-storm, echo-flood, \
                         no-read, bad-address or assign:A.B.C.D"
                    ));
                }
            },
        })
    }
}

impl std::fmt::Display for Misbehave {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Misbehave::AckNoRequest => f.write_str("ack-no-request"),
            Misbehave::LcpStorm => f.write_str("lcp-storm"),
            Misbehave::EchoFlood => f.write_str("echo-flood"),
            Misbehave::NoRead => f.write_str("no-read"),
            Misbehave::Assign(a) => write!(f, "assign:{a}"),
        }
    }
}

/// Plays `mode` on one call's stream until the call ends (`NoRead` holds the line until
/// the task is dropped). `ppp` is the answer configuration for the modes that first
/// behave (addresses, DNS). Nothing is routed: no TUN device is made.
pub async fn misbehave(mut stream: tokio::io::DuplexStream, mode: Misbehave, ppp: Config) {
    use tokio::io::AsyncWriteExt;
    match mode {
        Misbehave::AckNoRequest => ack_no_request(&mut stream).await,
        Misbehave::LcpStorm => {
            let mut id = 0u8;
            let (mut rd, mut wr) = tokio::io::split(stream);
            // Read and discard, so the caller's answers never block it.
            let drain = tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while matches!(tokio::io::AsyncReadExt::read(&mut rd, &mut buf).await, Ok(n) if n > 0)
                {
                }
            });
            loop {
                id = id.wrapping_add(1);
                // MRU 1500: always acceptable, so each one is answered with an Ack.
                let frame = lcp_frame(CONFIGURE_REQUEST_CODE, id, &[1, 4, 0x05, 0xdc]);
                if wr.write_all(&frame).await.is_err() || drain.is_finished() {
                    break;
                }
            }
            drain.abort();
        }
        Misbehave::EchoFlood => {
            if !answer_until_up(&mut stream, ppp).await {
                return;
            }
            let mut id = 0u8;
            let mut unknown = Vec::new();
            Encoder::new(ACCM_ALL).encode(&[0x80, 0x57], &[1, 1, 0, 40], &mut unknown);
            loop {
                id = id.wrapping_add(1);
                let mut data = vec![0u8; 4];
                data.extend_from_slice(&[0x55; 64]);
                let echo = lcp_frame(ECHO_REQUEST_CODE, id, &data);
                if stream.write_all(&echo).await.is_err()
                    || stream.write_all(&unknown).await.is_err()
                {
                    break;
                }
            }
        }
        Misbehave::NoRead => {
            if answer_until_up(&mut stream, ppp).await {
                // Hold the line, frozen, until the caller hangs up (which we never see).
                std::future::pending::<()>().await;
            }
        }
        Misbehave::Assign(addr) => {
            let mut cfg = ppp;
            cfg.ipcp.peer = Some(addr);
            let mut session = Session::new(cfg, now());
            let (_link, channels) = driver::channels(4);
            driver::run(
                &mut session,
                &mut stream,
                &[],
                channels,
                std::future::pending(),
                &driver::DriverConfig::default(),
            )
            .await;
        }
    }
}

const CONFIGURE_REQUEST_CODE: u8 = 1;
const CONFIGURE_ACK_CODE: u8 = 2;
const ECHO_REQUEST_CODE: u8 = 9;

fn lcp_frame(code: u8, id: u8, data: &[u8]) -> Vec<u8> {
    let len = u16::try_from(4 + data.len()).unwrap_or(u16::MAX);
    let mut pkt = vec![code, id];
    pkt.extend_from_slice(&len.to_be_bytes());
    pkt.extend_from_slice(data);
    let mut frame = Vec::new();
    Encoder::new(ACCM_ALL).encode(&[0xc0, 0x21], &pkt, &mut frame);
    frame
}

/// Acks every LCP Configure-Request of the caller; sends nothing else, ever.
async fn ack_no_request(stream: &mut tokio::io::DuplexStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut decoder = Decoder::new(1500);
    let mut buf = [0u8; 4096];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(n) if n > 0 => n,
            _ => return,
        };
        let mut rest = &buf[..n];
        let mut acks = Vec::new();
        while !rest.is_empty() {
            let (used, frame) = decoder.push(rest);
            rest = &rest[used..];
            let Some(frame) = frame else { continue };
            // Uncompressed LCP header (ff 03 c0 21) or address/control omitted (c0 21).
            let info = match frame {
                [0xff, 0x03, 0xc0, 0x21, info @ ..] | [0xc0, 0x21, info @ ..] => info,
                _ => continue,
            };
            if let [CONFIGURE_REQUEST_CODE, id, _, _, data @ ..] = info {
                acks.push(lcp_frame(CONFIGURE_ACK_CODE, *id, data));
            }
        }
        for ack in acks {
            if stream.write_all(&ack).await.is_err() {
                return;
            }
        }
    }
}

/// Runs a well-behaved answer session until IP is up; false if it ended first.
async fn answer_until_up(stream: &mut tokio::io::DuplexStream, ppp: Config) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut session = Session::new(ppp, now());
    let mut buf = [0u8; 4096];
    loop {
        while let Some(frame) = session.poll_transmit() {
            if stream.write_all(&frame).await.is_err() {
                return false;
            }
        }
        while let Some(ev) = session.poll_event() {
            match ev {
                Event::Up { .. } => return true,
                Event::Down { .. } => return false,
                _ => {}
            }
        }
        let deadline = session.poll_timeout().map(tokio::time::Instant::from_std);
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(n) if n > 0 => session.handle_input(&buf[..n], now()),
                _ => return false,
            },
            () = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            } => session.handle_timeout(now()),
        }
    }
}

/// tokio's clock, as the PPP driver uses it.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}
