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
    while let Some(event) = events.recv().await {
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
        Ok(f) => f.ended.reason,
        Err(e) => e.to_string(),
    };
    CallEnd { was_up, reason }
}
