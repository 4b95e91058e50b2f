//! A simulated ISP's dial-in side: each call the simulated modem delivers is answered by our
//! PPP engine in answer role, which assigns addresses and DNS, checks credentials if asked,
//! and routes the caller's packets through a TUN device of its own into the network namespace
//! it runs in. The far end of the end-to-end tests and of the demo.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use super::SimCall;
use crate::net::pump::{NoCount, start_pumps};
use crate::net::{Netlink, SharedTxQueue, TunSlave};
use crate::ppp::hdlc::{ACCM_ALL, Decoder, Encoder};
use crate::ppp::{AuthMethods, Config, Event, Secrets, Session, driver};

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
    while let Some(call) = calls.recv().await {
        let end = answer(call, &config, &netlink).await;
        tracing::debug!(device = %config.device, ?end, "sim ISP: call ended");
    }
}

/// Answers one call: PPP in answer role; once up, a TUN device carries the caller's packets.
pub async fn answer(call: SimCall, config: &IspConfig, netlink: &Netlink) -> CallEnd {
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
    let mut incoming = Some(incoming);
    let mut up = None;
    let mut was_up = false;
    let mut closer = closer;
    let mut hanging_up = false;
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
        };
        match event {
            Event::Up { mru, .. } if up.is_none() => {
                let slave = match TunSlave::create(
                    netlink,
                    &config.device,
                    config.local,
                    config.peer,
                    mru.clamp(576, 1500),
                )
                .await
                {
                    Ok(s) => Arc::new(s),
                    Err(e) => {
                        tracing::error!("sim ISP: {e}");
                        break;
                    }
                };
                let Some(from_line) = incoming.take() else {
                    break;
                };
                let from_line = super::upstream::delayed(from_line, config.delay.clone());
                let queue = Arc::new(SharedTxQueue::new(crate::net::queue::DEFAULT_QUEUE_BYTES));
                let pumps = start_pumps(
                    slave.clone(),
                    queue,
                    outgoing.clone(),
                    from_line,
                    Arc::new(NoCount),
                );
                up = Some((slave, pumps));
                was_up = true;
            }
            Event::NetworkDown { .. } => {
                if let Some((slave, pumps)) = up.take() {
                    incoming = pumps.stop().await;
                    drop(slave);
                }
            }
            Event::Down { .. } => break,
            _ => {}
        }
    }
    if let Some((slave, pumps)) = up.take() {
        pumps.stop().await;
        drop(slave);
    }
    drop(closer);
    let reason = match task.await {
        Ok(f) => f.ended.reason.to_string(),
        Err(e) => e.to_string(),
    };
    CallEnd { was_up, reason }
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
