//! A simulated ISP that answers Multilink PPP (RFC 1990): several lines' calls at once, each
//! offered Multilink; the calls whose LCP and authentication put them in the same bundle
//! (equal [`BundleId`]s) join ONE bundle task ([`crate::ppp::bundle`]) whose IP goes through
//! ONE TUN device. A caller that does not do Multilink gets a plain PPP link of its own, as
//! from [`super::serve_calls`], with its line's own address and device.
//!
//! ```text
//!  line 1 calls ──> answer_call ─┐ (BundleMember: Join)
//!  line 2 calls ──> answer_call ─┼──> Bundles: BundleId → bundle task ──> route_bundle: TUN isp-mp
//!  line 3 calls ──> answer_call ─┘   (plain callers: their own TUN isp-l<i>)
//! ```

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, watch};

use super::{CustomerLink, IspConfig, Routing, answer_call};
use crate::net::Netlink;
use crate::ppp::bundle::{self, BundleDriverConfig, BundleLink, Join, Update};
use crate::ppp::mp::BundleId;
use crate::ppp::{EndpointDiscriminator, MultilinkConfig};
use crate::sim::SimCall;
use crate::sim::upstream::Delay;

/// The ISP's side, shared by its lines.
#[derive(Clone)]
pub struct MultilinkIspConfig {
    /// The ISP's end of every link (and its Endpoint Discriminator, IP class).
    pub local: Ipv4Addr,
    pub dns: Vec<Ipv4Addr>,
    /// PAP/CHAP users; empty means no authentication.
    pub users: Vec<(String, String)>,
    /// What the upstream adds to the customers' packets (see `sim::upstream`).
    pub delay: Delay,
    /// What the customer gets over a bundle.
    pub bundle_peer: Ipv4Addr,
    /// The ISP-side TUN device carrying a bundle's IP.
    pub bundle_device: String,
    /// The MRRU the ISP offers: the largest packet it reassembles.
    pub mrru: u16,
}

/// One line into the ISP.
pub struct IspLine {
    /// Its modem's calls, answered one after the other.
    pub calls: mpsc::UnboundedReceiver<SimCall>,
    /// What a caller on this line that does not do Multilink gets, and its TUN device.
    pub plain_peer: Ipv4Addr,
    pub plain_device: String,
    /// Hangs up this line's call in progress (see [`super::HangupSwitch`]).
    pub hangup: watch::Receiver<u64>,
}

/// Answers every line's calls, all lines at once, forever (until every line's channel
/// closes). Must run on a thread in the ISP's network namespace, within a tokio runtime.
pub async fn serve_multilink(config: MultilinkIspConfig, lines: Vec<IspLine>) {
    match Netlink::new() {
        Ok(netlink) => serve_multilink_routed(config, lines, Routing::Tun(netlink)).await,
        Err(e) => tracing::error!("sim ISP: netlink: {e}"),
    }
}

/// [`serve_multilink`], routing the customers' IP as `routing` says.
pub async fn serve_multilink_routed(
    config: MultilinkIspConfig,
    lines: Vec<IspLine>,
    routing: Routing,
) {
    let bundles = Bundles::new(&config, routing.clone());
    let mut answering = tokio::task::JoinSet::new();
    for line in lines {
        let line_config = IspConfig {
            local: config.local,
            peer: line.plain_peer,
            dns: config.dns.clone(),
            users: config.users.clone(),
            device: line.plain_device,
            delay: config.delay.clone(),
            hangup: line.hangup,
        };
        let (bundles, routing, mut calls) = (bundles.clone(), routing.clone(), line.calls);
        answering.spawn(async move {
            while let Some(call) = calls.recv().await {
                let end = answer_call(call, &line_config, &routing, Some(&bundles)).await;
                tracing::debug!(line = %line_config.device, ?end, "sim ISP: call ended");
            }
        });
    }
    while answering.join_next().await.is_some() {}
}

/// The ISP's bundles, by id: each a bundle task and the task routing its IP, started by its
/// first member.
#[derive(Clone)]
pub(super) struct Bundles(Arc<BundlesInner>);

struct BundlesInner {
    offer: MultilinkConfig,
    ipcp: crate::ppp::IpcpConfig,
    /// How a bundle's IP is routed: the device and addresses (`outgoing` and `incoming`
    /// are each bundle's own).
    routing: Routing,
    device: String,
    local: Ipv4Addr,
    peer: Ipv4Addr,
    delay: Delay,
    running: Mutex<HashMap<BundleId, RunningBundle>>,
}

struct RunningBundle {
    joins: mpsc::Sender<Join>,
    /// Its members now, as the bundle task last reported them.
    members: Arc<AtomicUsize>,
}

impl Bundles {
    fn new(config: &MultilinkIspConfig, routing: Routing) -> Bundles {
        Bundles(Arc::new(BundlesInner {
            offer: MultilinkConfig {
                mrru: config.mrru,
                short_seq: false,
                endpoint: Some(EndpointDiscriminator::ip(config.local)),
            },
            ipcp: crate::ppp::IpcpConfig::server(config.local, config.bundle_peer, &config.dns),
            routing,
            device: config.bundle_device.clone(),
            local: config.local,
            peer: config.bundle_peer,
            delay: config.delay.clone(),
            running: Mutex::new(HashMap::new()),
        }))
    }

    /// What each call is offered.
    pub(super) fn offer(&self) -> MultilinkConfig {
        self.0.offer
    }

    /// Hands a member to bundle `id`, which starts if it does not run.
    pub(super) async fn join(&self, id: &BundleId, join: Join) -> Result<(), String> {
        let joins = self.joins_of(id);
        joins
            .send(join)
            .await
            .map_err(|_| "the bundle task has ended".to_string())
    }

    fn joins_of(&self, id: &BundleId) -> mpsc::Sender<Join> {
        let inner = &self.0;
        let mut running = inner
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(b) = running.get(id)
            && !b.joins.is_closed()
        {
            return b.joins.clone();
        }
        // A new customer (or the same one dialling afresh, with a new discriminator): the
        // bundles nobody is in any more end, so the map holds the live ones only.
        running.retain(|_, b| b.members.load(Ordering::Relaxed) > 0);
        let (link, _task) = bundle::spawn(BundleDriverConfig::new(inner.ipcp.clone()));
        let members = Arc::new(AtomicUsize::new(0));
        let joins = link.joins.clone();
        tracing::info!(bundle = %id, "sim ISP: a new bundle");
        tokio::spawn(route_bundle(
            link,
            CustomerLink {
                routing: inner.routing.clone(),
                device: inner.device.clone(),
                local: inner.local,
                peer: inner.peer,
                delay: inner.delay.clone(),
                outgoing: mpsc::channel(1).0,
                incoming: None,
                routed: None,
            },
            members.clone(),
        ));
        running.insert(
            id.clone(),
            RunningBundle {
                joins: joins.clone(),
                members,
            },
        );
        joins
    }
}

/// Routes a bundle's IP while it is up; counts its members. Ends with the bundle task.
async fn route_bundle(link: BundleLink, mut ip: CustomerLink, members: Arc<AtomicUsize>) {
    let BundleLink {
        joins,
        outgoing,
        incoming,
        mut updates,
    } = link;
    // Only the ISP's map keeps the bundle open for joins.
    drop(joins);
    ip.outgoing = outgoing;
    ip.incoming = Some(incoming);
    while let Some(update) = updates.recv().await {
        match update {
            Update::Up { peer, mtu, .. } => {
                tracing::info!(%peer, mtu, device = %ip.device, "sim ISP: bundle up");
                if let Err(e) = ip.up(mtu).await {
                    tracing::error!(device = %ip.device, "sim ISP: bundle not routed: {e}");
                }
            }
            Update::Down { reason } => {
                tracing::info!(%reason, "sim ISP: bundle down");
                ip.down().await;
            }
            Update::Members { names, .. } => {
                tracing::debug!(?names, "sim ISP: bundle members");
                members.store(names.len(), Ordering::Relaxed);
            }
        }
    }
    ip.down().await;
}
