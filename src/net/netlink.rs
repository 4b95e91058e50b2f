//! Addresses, links, routes and policy rules over rtnetlink (no `ip` binary).
//!
//! Everything eqlplus adds carries its own route protocol number ([`ROUTE_PROTOCOL`]) and lives
//! in its own rule-priority and table ranges, so that it can find and remove exactly its own
//! state after a crash, and never touches anyone else's.

use std::net::Ipv4Addr;

use futures::TryStreamExt;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::route::{
    RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use rtnetlink::packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use rtnetlink::{Handle, IpVersion, LinkMessageBuilder, LinkUnspec, RouteMessageBuilder};

/// Route protocol number marking eqlplus's routes (`ip route … proto 234`).
pub const ROUTE_PROTOCOL: u8 = 234;

/// Why a netlink request failed, with what was being done.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct NetlinkError {
    pub what: String,
    #[source]
    pub source: rtnetlink::Error,
}

/// An interface's traffic counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkCounters {
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
}

/// What an interface's root queueing discipline holds and has dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QdiscFigures {
    pub backlog_bytes: u64,
    pub dropped_packets: u64,
}

/// Where eqlplus's routing state lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoutingConfig {
    /// Per-line tables are `table_base + slot` (slot 1..=255).
    pub table_base: u32,
    /// Rules take priorities `rule_base ..= rule_base + 255`; `rule_base` itself is the
    /// "main table first, except its default route" rule.
    pub rule_base: u32,
    /// Metric of the default route eqlplus adds to the main table.
    pub default_metric: u32,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            table_base: 7700,
            rule_base: 7700,
            default_metric: 4242,
        }
    }
}

/// A connection to the kernel's routing netlink, bound to the network namespace of the thread
/// that created it.
#[derive(Clone)]
pub struct Netlink {
    handle: Handle,
}

fn ctx(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetlinkError {
    let what = what.into();
    move |source| NetlinkError { what, source }
}

fn is_errno(e: &rtnetlink::Error, errno: i32) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.code.is_some_and(|c| -c.get() == errno))
}

impl Netlink {
    /// Opens the connection; must be called within a tokio runtime.
    pub fn new() -> std::io::Result<Netlink> {
        let (connection, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(connection);
        Ok(Netlink { handle })
    }

    /// The index of interface `name`, if it exists.
    pub async fn link_index(&self, name: &str) -> Result<Option<u32>, NetlinkError> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        match links.try_next().await {
            Ok(Some(link)) => Ok(Some(link.header.index)),
            Ok(None) => Ok(None),
            Err(e) if is_errno(&e, libc::ENODEV) => Ok(None),
            Err(e) => Err(ctx(format!("look up interface {name}"))(e)),
        }
    }

    /// Renames an interface (it must be down): a kernel PPP unit's `pppN` to the line's slave
    /// name.
    pub async fn rename(&self, index: u32, name: &str) -> Result<(), NetlinkError> {
        let msg = LinkMessageBuilder::<LinkUnspec>::new()
            .index(index)
            .name(name.to_string())
            .build();
        self.set_link(msg, format!("rename interface {index} to {name}"))
            .await
    }

    /// Applies a link change; `what` names it in the error.
    async fn set_link(
        &self,
        msg: rtnetlink::packet_route::link::LinkMessage,
        what: String,
    ) -> Result<(), NetlinkError> {
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(ctx(what))
    }

    /// An interface's traffic counters (the kernel's 64-bit ones), if it exists.
    pub async fn link_counters(&self, index: u32) -> Result<Option<LinkCounters>, NetlinkError> {
        use rtnetlink::packet_route::link::LinkAttribute;
        let mut links = self.handle.link().get().match_index(index).execute();
        let link = match links.try_next().await {
            Ok(Some(link)) => link,
            Ok(None) => return Ok(None),
            Err(e) if is_errno(&e, libc::ENODEV) => return Ok(None),
            Err(e) => return Err(ctx(format!("read the counters of interface {index}"))(e)),
        };
        Ok(link.attributes.iter().find_map(|a| match a {
            LinkAttribute::Stats64(s) => Some(LinkCounters {
                rx_bytes: s.rx_bytes,
                tx_bytes: s.tx_bytes,
                rx_packets: s.rx_packets,
                tx_packets: s.tx_packets,
            }),
            _ => None,
        }))
    }

    /// What waits in an interface's root queueing discipline (`tc -s qdisc`'s backlog and
    /// drops): where a kernel PPP slave's packets wait for the line. Zero where it has none
    /// (`noqueue`) or is gone.
    pub async fn queued(&self, index: u32) -> Result<QdiscFigures, NetlinkError> {
        use rtnetlink::packet_route::tc::{TcAttribute, TcHandle, TcStats2};
        let Ok(wanted) = i32::try_from(index) else {
            return Ok(QdiscFigures::default());
        };
        let mut qdiscs = self.handle.qdisc().get().index(wanted).execute();
        let mut figures = QdiscFigures::default();
        loop {
            let q = match qdiscs.try_next().await {
                Ok(Some(q)) => q,
                Ok(None) => break,
                Err(e) if is_errno(&e, libc::ENODEV) => break,
                Err(e) => return Err(ctx(format!("read the queue of interface {index}"))(e)),
            };
            // The dump may hold every interface's; a root's figures include its children's.
            if q.header.index != wanted || q.header.parent != TcHandle::ROOT {
                continue;
            }
            for a in &q.attributes {
                match a {
                    TcAttribute::Stats2(stats) => {
                        for s in stats {
                            if let TcStats2::Queue(queue) = s {
                                figures.backlog_bytes = u64::from(queue.backlog);
                                figures.dropped_packets = u64::from(queue.drops);
                            }
                        }
                    }
                    TcAttribute::Stats(s) if figures == QdiscFigures::default() => {
                        figures.backlog_bytes = u64::from(s.backlog);
                        figures.dropped_packets = u64::from(s.drops);
                    }
                    _ => {}
                }
            }
        }
        Ok(figures)
    }

    /// Sets the MTU and brings the interface up.
    pub async fn set_up(&self, index: u32, mtu: u32) -> Result<(), NetlinkError> {
        let msg = LinkMessageBuilder::<LinkUnspec>::new()
            .index(index)
            .mtu(mtu)
            .up()
            .build();
        self.set_link(msg, format!("bring interface {index} up with MTU {mtu}"))
            .await
    }

    /// Gives a point-to-point interface its local and peer addresses (`ip addr add L peer P`).
    pub async fn add_ptp_address(
        &self,
        index: u32,
        local: Ipv4Addr,
        peer: Ipv4Addr,
    ) -> Result<(), NetlinkError> {
        let mut req = self.handle.address().add(index, local.into(), 32).replace();
        // IFA_LOCAL is our address, IFA_ADDRESS the far end's on a point-to-point link.
        let msg = req.message_mut();
        msg.attributes
            .retain(|a| !matches!(a, AddressAttribute::Address(_)));
        msg.attributes.push(AddressAttribute::Address(peer.into()));
        req.execute().await.map_err(ctx(format!(
            "add address {local} peer {peer} to interface {index}"
        )))
    }

    /// `default via PEER dev INDEX onlink` in `table`, tagged as ours. The gateway makes the
    /// same route work on point-to-point slaves (TUN, PPP) and on broadcast ones (veth).
    pub async fn add_default_route(
        &self,
        table: u32,
        index: u32,
        peer: Ipv4Addr,
    ) -> Result<(), NetlinkError> {
        let msg = RouteMessageBuilder::<Ipv4Addr>::new()
            .table_id(table)
            .output_interface(index)
            .gateway(peer)
            .onlink()
            .protocol(RouteProtocol::Other(ROUTE_PROTOCOL))
            .build();
        self.handle
            .route()
            .add(msg)
            .replace()
            .execute()
            .await
            .map_err(ctx(format!(
                "add default route via interface {index} in table {table}"
            )))
    }

    /// The main table's default route while lines are up: via `index`, or `unreachable`
    /// (fail fast) when `index` is `None`.
    pub async fn set_main_default(
        &self,
        via: Option<(u32, Ipv4Addr)>,
        metric: u32,
    ) -> Result<(), NetlinkError> {
        self.delete_our_routes(RouteHeader::RT_TABLE_MAIN.into())
            .await?;
        let builder = RouteMessageBuilder::<Ipv4Addr>::new()
            .protocol(RouteProtocol::Other(ROUTE_PROTOCOL))
            .priority(metric);
        let msg = match via {
            Some((index, peer)) => builder
                .output_interface(index)
                .gateway(peer)
                .onlink()
                .build(),
            None => builder
                .kind(RouteType::Unreachable)
                .scope(RouteScope::Universe)
                .build(),
        };
        self.handle
            .route()
            .add(msg)
            .execute()
            .await
            .map_err(ctx("set the main table's default route"))
    }

    /// Deletes the routes eqlplus added to `table`.
    pub async fn delete_our_routes(&self, table: u32) -> Result<(), NetlinkError> {
        self.delete_our_routes_where(|t| t == table).await
    }

    /// Deletes the routes eqlplus added to every table for which `in_table` holds.
    pub async fn delete_our_routes_where(
        &self,
        in_table: impl Fn(u32) -> bool,
    ) -> Result<(), NetlinkError> {
        let ours: Vec<RouteMessage> = self
            .routes(IpVersion::V4)
            .await?
            .into_iter()
            .filter(|r| is_ours(r) && in_table(route_table(r)))
            .collect();
        for route in ours {
            let table = route_table(&route);
            match self.handle.route().del(route).execute().await {
                Ok(()) => {}
                Err(e) if is_errno(&e, libc::ESRCH) => {}
                Err(e) => return Err(ctx(format!("delete a route in table {table}"))(e)),
            }
        }
        Ok(())
    }

    async fn routes(&self, version: IpVersion) -> Result<Vec<RouteMessage>, NetlinkError> {
        let mut query = match version {
            IpVersion::V4 => RouteMessageBuilder::<Ipv4Addr>::new().build(),
            IpVersion::V6 => RouteMessageBuilder::<std::net::Ipv6Addr>::new().build(),
        };
        // Dump every table, not only main.
        query.header.table = RouteHeader::RT_TABLE_UNSPEC;
        self.handle
            .route()
            .get(query)
            .execute()
            .try_collect()
            .await
            .map_err(ctx("list routes"))
    }

    /// `ip rule add pref PRIORITY fwmark MARK lookup TABLE`.
    pub async fn add_mark_rule(
        &self,
        priority: u32,
        mark: u32,
        table: u32,
    ) -> Result<(), NetlinkError> {
        let mut req = self
            .handle
            .rule()
            .add()
            .v4()
            .priority(priority)
            .fw_mark(mark)
            .table_id(table)
            .action(RuleAction::ToTable);
        req.message_mut()
            .attributes
            .push(RuleAttribute::FwMask(u32::MAX));
        self.execute_rule(
            req,
            format!("add rule {priority}: fwmark {mark:#x} lookup {table}"),
        )
        .await
    }

    /// `ip rule add pref PRIORITY lookup main suppress_prefixlength 0`: marked connections to
    /// destinations the main table knows more specifically than its default (the LAN, the
    /// lines' peers) still go there.
    pub async fn add_main_first_rule(&self, priority: u32) -> Result<(), NetlinkError> {
        let mut req = self
            .handle
            .rule()
            .add()
            .v4()
            .priority(priority)
            .table_id(RouteHeader::RT_TABLE_MAIN.into())
            .action(RuleAction::ToTable);
        req.message_mut()
            .attributes
            .push(RuleAttribute::SuppressPrefixLen(0));
        self.execute_rule(
            req,
            format!("add rule {priority}: lookup main suppress_prefixlength 0"),
        )
        .await
    }

    /// Adds a rule, tagged as ours (`proto 234`); one that exists already is fine.
    async fn execute_rule(
        &self,
        mut req: rtnetlink::RuleAddRequest<Ipv4Addr>,
        what: String,
    ) -> Result<(), NetlinkError> {
        req.message_mut()
            .attributes
            .push(RuleAttribute::Protocol(RouteProtocol::Other(
                ROUTE_PROTOCOL,
            )));
        match req.execute().await {
            Ok(()) => Ok(()),
            Err(e) if is_errno(&e, libc::EEXIST) => Ok(()),
            Err(e) => Err(ctx(what)(e)),
        }
    }

    /// Every IPv4 rule.
    async fn rules(&self) -> Result<Vec<RuleMessage>, NetlinkError> {
        self.handle
            .rule()
            .get(IpVersion::V4)
            .execute()
            .try_collect()
            .await
            .map_err(ctx("list rules"))
    }

    /// Priorities of the IPv4 rules tagged as ours.
    pub async fn our_rule_priorities(&self) -> Result<Vec<u32>, NetlinkError> {
        let rules = self.rules().await?;
        Ok(rules
            .iter()
            .filter(|r| {
                r.attributes.iter().any(|a| {
                    matches!(a, RuleAttribute::Protocol(p) if *p == RouteProtocol::Other(ROUTE_PROTOCOL))
                })
            })
            .filter_map(|r| {
                r.attributes.iter().find_map(|a| match a {
                    RuleAttribute::Priority(p) => Some(*p),
                    _ => None,
                })
            })
            .collect())
    }

    /// The tables that hold at least one IPv4 route tagged as ours.
    pub async fn our_route_tables(&self) -> Result<Vec<u32>, NetlinkError> {
        let mut tables: Vec<u32> = self
            .routes(IpVersion::V4)
            .await?
            .iter()
            .filter(|r| is_ours(r))
            .map(route_table)
            .collect();
        tables.sort_unstable();
        tables.dedup();
        Ok(tables)
    }

    /// Deletes our IPv4 rules (tagged `proto 234`) with priorities in `range`; anyone else's
    /// rules there, the kernel's own included, stay.
    pub async fn delete_rules(
        &self,
        range: std::ops::RangeInclusive<u32>,
    ) -> Result<(), NetlinkError> {
        let rules = self.rules().await?;
        for rule in rules {
            if rule_is_ours_in(&rule, &range) {
                match self.handle.rule().del(rule).execute().await {
                    Ok(()) => {}
                    Err(e) if is_errno(&e, libc::ENOENT) => {}
                    Err(e) => return Err(ctx("delete a rule")(e)),
                }
            }
        }
        Ok(())
    }
}

/// Whether `rule` is one of ours (`proto 234`) with a priority in `range`.
fn rule_is_ours_in(rule: &RuleMessage, range: &std::ops::RangeInclusive<u32>) -> bool {
    let mut priority = None;
    let mut ours = false;
    for a in &rule.attributes {
        match a {
            RuleAttribute::Priority(p) => priority = Some(*p),
            RuleAttribute::Protocol(p) => ours = *p == RouteProtocol::Other(ROUTE_PROTOCOL),
            _ => {}
        }
    }
    ours && priority.is_some_and(|p| range.contains(&p))
}

fn route_table(r: &RouteMessage) -> u32 {
    r.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(r.header.table))
}

fn is_ours(r: &RouteMessage) -> bool {
    r.header.protocol == RouteProtocol::Other(ROUTE_PROTOCOL)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(priority: u32, protocol: Option<RouteProtocol>) -> RuleMessage {
        let mut r = RuleMessage::default();
        r.attributes.push(RuleAttribute::Priority(priority));
        if let Some(p) = protocol {
            r.attributes.push(RuleAttribute::Protocol(p));
        }
        r
    }

    #[test]
    fn only_our_rules_are_deleted() {
        // rule_base = 32700 once made the range cover the kernel's 32766 (main) and 32767
        // (default) rules: they are not ours and stay.
        let range = 32700..=32955;
        assert!(!rule_is_ours_in(
            &rule(32766, Some(RouteProtocol::Kernel)),
            &range
        ));
        assert!(!rule_is_ours_in(&rule(32767, None), &range));
        assert!(!rule_is_ours_in(
            &rule(32701, Some(RouteProtocol::Static)),
            &range
        ));
        let ours = Some(RouteProtocol::Other(ROUTE_PROTOCOL));
        assert!(rule_is_ours_in(&rule(32701, ours), &range));
        assert!(!rule_is_ours_in(&rule(32699, ours), &range));
    }
}
