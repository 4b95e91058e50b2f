//! A Multilink bundle as the daemon runs it: the `ppp::bundle` task its member lines join,
//! and what a line's up state has (a slave device, the pumps, an entry in the balancer) once
//! for the whole bundle. Members come and go with their calls; the bundle's IP session, its
//! slave and its balancer entry stay while one member is up.
//!
//! Its status is a [`LineShared`] of its own, listed with the lines under the bundle's name
//! (state `up` or `down`, what the members are in `detail`).

use std::net::Ipv4Addr;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::kernel_bundle::{self, KernelJoin};
use super::kernel_ppp::Choice;
use super::machine::LineState;
use super::status::LineShared;
use crate::balancer::Enslave;
use crate::balancer::actor::BalancerHandle;
use crate::config::SlaveKind;
use crate::config::{BundleConfig, Weight};
use crate::net::pump::{Pumps, start_pumps};
use crate::net::{Netlink, SharedTxQueue, TunSlave};
use crate::ppp::bundle::{self as driver, BundleDriverConfig, BundleLink, Join, Update};
use crate::ppp::mp::{EndpointDiscriminator, MultilinkConfig};

/// What a member line needs of its bundle: how to propose Multilink, where to join.
#[derive(Debug, Clone)]
pub struct Membership {
    pub bundle: String,
    /// LCP's Multilink options (the same endpoint discriminator on every member: that is
    /// how the peer knows they belong together).
    pub multilink: MultilinkConfig,
    pub joins: Joins,
}

/// Where a member joins: the bundle's kind decides its members' slave.
#[derive(Debug, Clone)]
pub enum Joins {
    /// One kernel unit: the members' calls are on kernel PPP, their channels join.
    Kernel(mpsc::Sender<KernelJoin>),
    /// Our own reassembly and a TUN device: the members' calls are on TUN, their frames
    /// join; `why` the bundle is not on kernel PPP.
    Tun {
        joins: mpsc::Sender<Join>,
        why: String,
    },
}

/// The slave of a bundle with `slave_kind = kind`: `auto` is kernel PPP wherever
/// `/dev/ppp` opens (its members' ports then all go into `N_PPP`, ptys too).
pub fn choose(kind: SlaveKind) -> Choice {
    match kind {
        SlaveKind::Tun => Choice::Tun {
            why: "slave_kind = \"tun\"".into(),
        },
        // Where the kernel cannot, each member's call says so.
        SlaveKind::Ppp => Choice::Kernel,
        SlaveKind::Auto => match crate::net::kernel_ppp::available() {
            Ok(()) => Choice::Kernel,
            Err(e) => Choice::Tun {
                why: format!("auto: {e}"),
            },
        },
    }
}

/// What the bundle task is started with.
pub struct BundleContext {
    pub config: BundleConfig,
    pub netlink: Netlink,
    pub balancer: BalancerHandle,
    pub shared: Arc<LineShared>,
    /// Addresses of this host the peer may not give the bundle.
    pub local_addrs: Vec<Ipv4Addr>,
    /// This daemon's endpoint discriminator (a magic number, as pppd's `endpoint magic`).
    pub endpoint: EndpointDiscriminator,
}

/// Starts the bundle's task; the membership goes to its lines. The task ends when every
/// membership (and so every `joins` sender) is gone and no member is left.
pub fn spawn(ctx: BundleContext) -> (Membership, JoinHandle<()>) {
    let span = tracing::info_span!("bundle", bundle = %ctx.config.name);
    let mut ipcp = crate::ppp::Config::dialer(None).ipcp;
    ipcp.local_addrs = ctx.local_addrs.clone();
    let choice = choose(ctx.config.slave_kind);
    let described = choice.describe();
    span.in_scope(|| tracing::info!(slave = %ctx.config.slave, "slave kind: {described}"));
    let (joins, data, updates, driver_task) = match choice {
        Choice::Kernel => {
            let (link, task) = span.in_scope(|| {
                kernel_bundle::spawn(ipcp, ctx.netlink.clone(), ctx.config.slave.clone())
            });
            (Joins::Kernel(link.joins), None, link.updates, task)
        }
        Choice::Tun { why } => {
            let (link, task) = span.in_scope(|| driver::spawn(BundleDriverConfig::new(ipcp)));
            let BundleLink {
                joins,
                outgoing,
                incoming,
                updates,
            } = link;
            (
                Joins::Tun { joins, why },
                Some((outgoing, incoming)),
                updates,
                task,
            )
        }
    };
    let membership = Membership {
        bundle: ctx.config.name.clone(),
        multilink: MultilinkConfig {
            mrru: ctx.config.mrru,
            short_seq: ctx.config.short_seq,
            endpoint: Some(ctx.endpoint),
        },
        joins,
    };
    ctx.shared.edit(|i| {
        i.state = LineState::Down;
        i.detail = Some("no member up".into());
        i.slave_kind = Some(described);
    });
    let task = tokio::spawn(tracing::Instrument::instrument(
        async move {
            run(ctx, data, updates).await;
            let _ = driver_task.await;
        },
        span,
    ));
    (membership, task)
}

/// Where an up bundle's packets go.
enum BundleData {
    /// Our TUN device and the pumps between it and the bundle task.
    Tun { slave: Arc<TunSlave>, pumps: Pumps },
    /// The kernel unit's interface, followed into the bundle's status and load.
    Kernel { follow: JoinHandle<()> },
}

/// What exists while the bundle is up.
struct UpBundle {
    data: BundleData,
    enslaved: bool,
}

/// The TUN bundle's IP channels (`None`: the kernel carries the packets).
type TunData = Option<(mpsc::Sender<Vec<u8>>, mpsc::Receiver<Vec<u8>>)>;

async fn run(ctx: BundleContext, data: TunData, mut updates: mpsc::UnboundedReceiver<Update>) {
    let (outgoing, mut incoming) = match data {
        Some((o, i)) => (Some(o), Some(i)),
        None => (None, None),
    };
    let mut up: Option<UpBundle> = None;
    let mut members: Vec<String> = Vec::new();
    // The members' rates together, bit/s: the bundle's speed for the balancer's weights.
    let mut speed: Option<u32> = None;
    while let Some(update) = updates.recv().await {
        match update {
            Update::Up {
                local,
                peer,
                dns,
                mtu,
                kernel_index,
            } => {
                if let Some(u) = up.take() {
                    bring_down(&ctx, u, &mut incoming).await;
                }
                let ip = BundleIp {
                    local,
                    peer,
                    dns,
                    mtu,
                    kernel_index,
                };
                match bring_up(&ctx, ip, speed, outgoing.as_ref(), &mut incoming).await {
                    Ok(u) => up = Some(u),
                    Err(e) => tracing::warn!("cannot bring the bundle's slave up: {e}"),
                }
            }
            Update::Down { reason } => {
                if let Some(u) = up.take() {
                    bring_down(&ctx, u, &mut incoming).await;
                }
                ctx.shared.edit(|i| {
                    i.state = LineState::Down;
                    i.since = std::time::SystemTime::now();
                    i.last_error = Some(reason);
                    i.local = None;
                    i.peer = None;
                    i.dns.clear();
                });
            }
            Update::Members { names, rate } => {
                members = names;
                speed =
                    (rate > 0).then(|| u32::try_from(rate.saturating_mul(8)).unwrap_or(u32::MAX));
                if up.as_ref().is_some_and(|u| u.enslaved) {
                    ctx.balancer.set_speed(&ctx.config.name, speed);
                }
                ctx.shared.edit(|i| i.connect_speed = speed);
            }
        }
        let detail = match members.as_slice() {
            [] => "no member up".to_string(),
            m => format!("members {}", m.join(", ")),
        };
        ctx.shared.edit(|i| {
            i.detail = Some(detail);
            i.members = Some(members.clone());
        });
    }
    if let Some(u) = up.take() {
        bring_down(&ctx, u, &mut incoming).await;
    }
}

/// What IPCP agreed over the bundle.
struct BundleIp {
    local: Ipv4Addr,
    peer: Ipv4Addr,
    dns: Vec<Ipv4Addr>,
    mtu: u16,
    kernel_index: Option<u32>,
}

/// IPCP is up over the bundle: its slave, the pumps, its balancer entry.
async fn bring_up(
    ctx: &BundleContext,
    ip: BundleIp,
    speed: Option<u32>,
    outgoing: Option<&mpsc::Sender<Vec<u8>>>,
    incoming: &mut Option<mpsc::Receiver<Vec<u8>>>,
) -> Result<UpBundle, String> {
    let BundleIp {
        local,
        peer,
        dns,
        mtu,
        kernel_index,
    } = ip;
    let c = &ctx.config;
    let mtu = mtu.clamp(576, 1500);
    let data = match (kernel_index, outgoing) {
        (Some(index), _) => {
            let follow = super::kernel_ppp::slave_up(
                &ctx.netlink,
                index,
                (local, peer),
                mtu,
                ctx.shared.clone(),
                ctx.balancer.clone(),
                c.name.clone(),
            )
            .await?;
            BundleData::Kernel { follow }
        }
        (None, Some(outgoing)) => {
            let slave = TunSlave::create(&ctx.netlink, &c.slave, local, peer, mtu)
                .await
                .map_err(|e| e.to_string())?;
            let slave = Arc::new(slave);
            let queue = Arc::new(SharedTxQueue::new(crate::net::queue::DEFAULT_QUEUE_BYTES));
            let from_bundle = incoming.take().ok_or("the bundle came up twice")?;
            let pumps = start_pumps(
                slave.clone(),
                queue.clone(),
                outgoing.clone(),
                from_bundle,
                ctx.shared.clone(),
            );
            ctx.shared.set_queue(Some(queue));
            BundleData::Tun { slave, pumps }
        }
        (None, None) => return Err("a kernel bundle came up without its unit".into()),
    };
    ctx.shared.edit(|i| {
        i.state = LineState::Up;
        i.since = std::time::SystemTime::now();
        i.local = Some(local);
        i.peer = Some(peer);
        i.dns = dns.clone();
        i.mru = Some(mtu);
        i.last_error = None;
    });
    let spec = Enslave {
        line: c.name.clone(),
        device: c.slave.clone(),
        local,
        peer,
        weight: match c.weight {
            Weight::Fixed(w) => Some(w),
            Weight::Auto => None,
        },
        speed,
        dns,
        tier: c.tier,
        tracked: false,
    };
    let enslaved = match ctx.balancer.enslave(spec, None).await {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!("cannot enslave {}: {e}", c.slave);
            false
        }
    };
    tracing::info!(%local, %peer, slave = %c.slave, "bundle up");
    Ok(UpBundle { data, enslaved })
}

async fn bring_down(
    ctx: &BundleContext,
    u: UpBundle,
    incoming: &mut Option<mpsc::Receiver<Vec<u8>>>,
) {
    if u.enslaved {
        ctx.balancer.emancipate(&ctx.config.name).await;
    }
    match u.data {
        BundleData::Tun { slave, pumps } => {
            let from_bundle = pumps.stop().await;
            if incoming.is_none() {
                *incoming = from_bundle;
            }
            ctx.shared.set_queue(None);
            drop(slave);
            tracing::info!("bundle down; slave {} removed", ctx.config.slave);
        }
        // The interface goes with the unit, with the last member.
        BundleData::Kernel { follow } => {
            follow.abort();
            ctx.shared.set_kernel_queue(None);
            tracing::info!("bundle down");
        }
    }
}
