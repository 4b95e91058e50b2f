//! The balancer's kernel state, kept in step with the set of enslaved lines.
//!
//! Per line: a slot (1..=255) giving its firewall mark (`MARK_BASE | slot`), its routing table
//! (`table_base + slot`, holding `default dev SLAVE`) and its rule (`fwmark → table`). Shared:
//! the nftables table `inet eqlplus`, the "main first" rule, and a default route in the main
//! table (via a live line, or `unreachable` when none is up). On enslave the line's routes and
//! rule exist before the policy can pick it; on emancipate the policy drops it first, then its
//! connections, routes and rule go.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use super::flows::MarkTally;
use super::nft::{self, MARK_BASE, NftError, Selection};
use super::policy::{LineLoad, Policy, dns_pins, pick_table};
use crate::net::nft as run_nft;
use crate::net::nftset::{self, FAMILY_INET};
use crate::net::{Netlink, NetlinkError, RoutingConfig, conntrack, valid_ifname};

/// Balancer settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BalancerConfig {
    pub policy: Policy,
    pub routing: RoutingConfig,
}

/// A line to put into the balance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enslave {
    /// The line's name (`ttyS1`).
    pub line: String,
    /// Its slave interface (`eq-ttyS1`), already up with its addresses.
    pub device: String,
    pub local: Ipv4Addr,
    pub peer: Ipv4Addr,
    /// Configured weight; `None` derives it from `speed`.
    pub weight: Option<u32>,
    /// CONNECT speed in bit/s.
    pub speed: Option<u32>,
    /// The peer's DNS servers, reachable only through this line.
    pub dns: Vec<Ipv4Addr>,
    /// Failover tier (0 primary; higher tiers carry traffic only while no lower one has the
    /// Internet).
    pub tier: u32,
    /// Whether the line's Internet is tracked (then its unanswered connections are watched).
    pub tracked: bool,
}

/// Why the balancer could not do something. Nothing already up is lost by a failed call.
#[derive(Debug, thiserror::Error)]
pub enum BalancerError {
    #[error(transparent)]
    Nft(#[from] NftError),
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error("cannot delete the conntrack entries of line {line}: {source}")]
    Conntrack {
        line: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the kernel refused the balancer's selection (nftables sets over netlink): {0}")]
    Selection(#[source] std::io::Error),
    #[error("cannot count the lines' connections in the conntrack table: {0}")]
    CountConnections(#[source] std::io::Error),
    #[error("no interface named {0}")]
    NoSuchDevice(String),
    #[error("invalid interface name '{0}': 1-15 characters of A-Z a-z 0-9 . _ -")]
    InvalidDevice(String),
    #[error("line {0} is already enslaved")]
    AlreadyEnslaved(String),
    #[error("all 255 slots are in use")]
    NoSlot,
    #[error("cannot reach the kernel's netlink: {0}")]
    Io(#[from] std::io::Error),
}

/// One enslaved line.
#[derive(Debug, Clone)]
struct Slot {
    slot: u8,
    index: u32,
    spec: Enslave,
    queued_bytes: u64,
    open_connections: u32,
    /// Upstream tracking's verdict: the Internet is reachable through the line (or not known).
    internet: bool,
}

impl Slot {
    fn mark(&self) -> u32 {
        MARK_BASE | u32::from(self.slot)
    }
}

/// The kernel side of the balancer.
pub struct Balancer {
    config: BalancerConfig,
    netlink: Netlink,
    lines: BTreeMap<String, Slot>,
    /// The pick table last applied (least-loaded re-applies only on change).
    applied: Vec<u32>,
    /// The selection last applied: what the table should hold.
    selection: Selection,
    /// The sticky map's timeout.
    hold: Duration,
    /// Each balanced line's open connections, while connections are followed (for `status`
    /// and the metrics, read without asking the balancer's task).
    open: OpenConnections,
}

/// Line name → open connections, shared with the readers of status.
pub type OpenConnections = std::sync::Arc<std::sync::Mutex<BTreeMap<String, u32>>>;

/// Connections of a line unanswered a moment ago that make its upstream suspect: one may be a
/// dead server; two at once are worth a probe round.
const UNANSWERED_EVIDENCE: u32 = 2;

/// How long the sticky policy keeps a client→destination pair on its line by default.
const DEFAULT_STICKY_HOLD: Duration = Duration::from_secs(600);

impl Balancer {
    /// Removes whatever an earlier run left behind, then sets up an empty balance. Must run
    /// inside a tokio runtime, on a thread in the network namespace to manage.
    pub async fn start(config: BalancerConfig) -> Result<Balancer, BalancerError> {
        let netlink = Netlink::new()?;
        remove_kernel_state(&netlink, &config.routing).await?;
        let hold = match config.policy {
            Policy::Sticky { hold } => hold,
            _ => DEFAULT_STICKY_HOLD,
        };
        let sticky = matches!(config.policy, Policy::Sticky { .. });
        run_nft::apply(&nft::render_create(hold, sticky), "balancer table").await?;
        netlink
            .add_main_first_rule(config.routing.rule_base)
            .await?;
        let mut balancer = Balancer {
            config,
            netlink,
            lines: BTreeMap::new(),
            applied: Vec::new(),
            open: OpenConnections::default(),
            selection: Selection::default(),
            hold,
        };
        balancer.reselect(true).await?;
        balancer.update_main_default().await?;
        tracing::info!(policy = ?config.policy, "balancer started");
        Ok(balancer)
    }

    /// Puts a line into the balance; returns the mark of its connections.
    pub async fn enslave(&mut self, spec: Enslave) -> Result<u32, BalancerError> {
        if !valid_ifname(&spec.device) {
            return Err(BalancerError::InvalidDevice(spec.device));
        }
        if self.lines.contains_key(&spec.line) {
            return Err(BalancerError::AlreadyEnslaved(spec.line));
        }
        let slot = (1..=255u8)
            .find(|s| !self.lines.values().any(|l| l.slot == *s))
            .ok_or(BalancerError::NoSlot)?;
        let index = self
            .netlink
            .link_index(&spec.device)
            .await?
            .ok_or_else(|| BalancerError::NoSuchDevice(spec.device.clone()))?;
        let routing = self.config.routing;
        let table = routing.table_base + u32::from(slot);
        let line = Slot {
            slot,
            index,
            spec,
            queued_bytes: 0,
            open_connections: 0,
            internet: true,
        };
        // Routes and rule first: the policy must never pick a line its packets cannot take.
        self.netlink
            .add_default_route(table, index, line.spec.peer)
            .await?;
        self.netlink
            .add_mark_rule(routing.rule_base + u32::from(slot), line.mark(), table)
            .await?;
        let name = line.spec.line.clone();
        let mark = line.mark();
        tracing::info!(line = %name, device = %line.spec.device, mark = format!("{mark:#x}"), table, "enslaved");
        self.lines.insert(name.clone(), line);
        if let Err(e) = self.reselect(true).await {
            // Leave the kernel as it was before this call.
            let _ = self.remove_line_state(&name).await;
            self.lines.remove(&name);
            return Err(e);
        }
        self.update_main_default().await?;
        Ok(mark)
    }

    /// Takes a line out of the balance at once: no new connection picks it, its existing
    /// connections are dropped from conntrack, its routes and rule go. Others are untouched.
    pub async fn emancipate(&mut self, line: &str) -> Result<(), BalancerError> {
        let Some(gone) = self.lines.remove(line) else {
            return Ok(());
        };
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(line);
        self.reselect(true).await?;
        self.update_main_default().await?;
        self.remove_line_state_of(&gone).await?;
        self.drop_connections(line, gone.mark()).await?;
        tracing::info!(line, "emancipated");
        Ok(())
    }

    /// Upstream tracking's verdict on a line. A line without the Internet stays enslaved (its
    /// routes and rule stay, so its probes still leave by it) but carries no new connection
    /// while another line has the Internet, and its connections are then dropped so that
    /// applications reconnect over another line.
    /// Returns whether anything changed.
    pub async fn set_internet(
        &mut self,
        line: &str,
        internet: bool,
    ) -> Result<bool, BalancerError> {
        let Some(l) = self.lines.get_mut(line) else {
            return Ok(false);
        };
        if l.internet == internet {
            return Ok(false);
        }
        l.internet = internet;
        let mark = l.mark();
        self.reselect(true).await?;
        self.update_main_default().await?;
        // Only a line that left the pick table loses its connections: when no line has the
        // Internet all carry on (tracking may be what is wrong), and reconnecting through the
        // same line would gain nothing.
        if !internet && !self.applied.contains(&mark) {
            self.drop_connections(line, mark).await?;
        }
        tracing::info!(line, internet, "balance changed by upstream tracking");
        Ok(true)
    }

    /// The line as it was enslaved (its device and DNS servers, among others).
    pub fn spec(&self, line: &str) -> Option<&Enslave> {
        self.lines.get(line).map(|l| &l.spec)
    }

    /// Drops `line`'s connections (mark `mark`) from conntrack, so applications see their
    /// sockets fail at once, and its sticky pairs.
    async fn drop_connections(&self, line: &str, mark: u32) -> Result<(), BalancerError> {
        conntrack::delete_by_mark(mark)
            .await
            .map_err(|source| BalancerError::Conntrack {
                line: line.to_string(),
                source,
            })?;
        if !matches!(self.config.policy, Policy::Sticky { .. }) {
            return Ok(());
        }
        let listing =
            run_nft::list_json("sticky map listing", &["map", "inet", "eqlplus", "sticky"]).await?;
        let learned = match listing {
            Some(json) => nft::parse_sticky_json(&json)?,
            None => Vec::new(),
        };
        let pairs: Vec<(Ipv4Addr, Ipv4Addr)> = learned
            .into_iter()
            .filter(|(_, _, m)| *m == mark)
            .map(|(s, d, _)| (s, d))
            .collect();
        run_nft::apply(&nft::render_forget(&pairs), "sticky cleanup").await?;
        Ok(())
    }

    /// Records a line's transmit queue depth (for `least-loaded`); call [`refresh`] to apply.
    pub fn set_queued_bytes(&mut self, line: &str, bytes: u64) {
        if let Some(l) = self.lines.get_mut(line) {
            l.queued_bytes = bytes;
        }
    }

    /// Sets a line's speed in bit/s (then [`refresh`](Self::refresh)).
    pub fn set_speed(&mut self, line: &str, speed: Option<u32>) {
        if let Some(l) = self.lines.get_mut(line) {
            l.spec.speed = speed;
        }
    }

    /// Re-applies the policy if its slot table changed (queue depths moved).
    pub async fn refresh(&mut self) -> Result<(), BalancerError> {
        self.reselect(false).await
    }

    /// Whether the policy follows the lines' load (then feed [`set_connections`] and
    /// [`set_queued_bytes`]).
    pub fn follows_load(&self) -> bool {
        self.config.policy == Policy::LeastLoaded
    }

    /// Whether a tracked line is enslaved (then feed [`set_connections`] for the passive
    /// evidence, whatever the policy).
    pub fn watches_answers(&self) -> bool {
        self.lines.values().any(|l| l.spec.tracked)
    }

    /// Takes in each line's connections (from [`super::flows::Flows`]): the load of
    /// `least-loaded` (call [`refresh`] to apply). Returns the tracked lines in the balance
    /// whose connections went unanswered a moment ago: upstream tracking's passive evidence.
    pub fn set_connections(&mut self, tally: &BTreeMap<u32, MarkTally>) -> Vec<String> {
        let mut suspect = Vec::new();
        for (name, l) in self.lines.iter_mut() {
            let t = tally.get(&l.mark()).copied().unwrap_or_default();
            l.open_connections = t.open();
            if l.spec.tracked && l.internet && t.unanswered >= UNANSWERED_EVIDENCE {
                suspect.push(name.clone());
            }
        }
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.clear();
        open.extend(
            self.lines
                .iter()
                .map(|(name, l)| (name.clone(), l.open_connections)),
        );
        suspect
    }

    /// Where `status` reads each line's open connections.
    pub fn open_connections(&self) -> OpenConnections {
        self.open.clone()
    }

    /// The mark of a line's connections.
    pub fn mark_of(&self, line: &str) -> Option<u32> {
        self.lines.get(line).map(Slot::mark)
    }

    fn sticky(&self) -> bool {
        matches!(self.config.policy, Policy::Sticky { .. })
    }

    /// Whether any line is enslaved.
    pub fn has_lines(&self) -> bool {
        !self.lines.is_empty()
    }

    /// Names of the enslaved lines.
    pub fn lines(&self) -> Vec<String> {
        self.lines.keys().cloned().collect()
    }

    /// Removes all kernel state and ends the balancer.
    pub async fn shutdown(self) -> Result<(), BalancerError> {
        let marks: Vec<u32> = self.lines.values().map(Slot::mark).collect();
        remove_kernel_state(&self.netlink, &self.config.routing).await?;
        for mark in marks {
            let _ = conntrack::delete_by_mark(mark).await;
        }
        tracing::info!("balancer stopped, kernel state removed");
        Ok(())
    }

    /// Applies the selection for the current lines (always, or only if the table changed).
    async fn reselect(&mut self, always: bool) -> Result<(), BalancerError> {
        let loads: Vec<LineLoad> = self
            .lines
            .values()
            .map(|l| LineLoad {
                mark: l.mark(),
                weight: l.spec.weight,
                speed: l.spec.speed,
                queued_bytes: l.queued_bytes,
                open_connections: l.open_connections,
                tier: l.spec.tier,
                internet: l.internet,
            })
            .collect();
        let pick = pick_table(self.config.policy, &loads);
        if !always && pick == self.applied {
            return Ok(());
        }
        let dns: Vec<(u32, Vec<Ipv4Addr>)> = self
            .lines
            .values()
            .map(|l| (l.mark(), l.spec.dns.clone()))
            .collect();
        let selection = Selection {
            slaves: self.lines.values().map(|l| l.spec.device.clone()).collect(),
            pick: pick.clone(),
            dns: dns_pins(&dns),
        };
        let sets = nft::contents(&selection);
        if let Err(e) = nftset::replace(FAMILY_INET, nft::TABLE_NAME, &sets).await {
            // Our table may be gone (a firewall reload): rebuild it, then try once more.
            tracing::warn!(
                "the kernel refused the balancer selection ({e}); checking the balancer's kernel state"
            );
            self.reconcile().await?;
            nftset::replace(FAMILY_INET, nft::TABLE_NAME, &sets)
                .await
                .map_err(BalancerError::Selection)?;
        }
        self.applied = pick;
        self.selection = selection;
        Ok(())
    }

    /// Compares the kernel state this balancer owns (the nftables table, its chains, sets and
    /// rules; our policy rules; our routes) with what it should be and repairs the difference:
    /// the table is rebuilt in one nft transaction, missing rules and routes are added again.
    /// Returns what was repaired (empty: nothing had drifted).
    pub async fn reconcile(&mut self) -> Result<Vec<String>, BalancerError> {
        let mut repaired = Vec::new();
        let expected = nft::expected_shape(&self.selection, self.sticky());
        let listing = run_nft::list_json("table listing", &["table", "inet", "eqlplus"]).await?;
        let drift = match listing {
            None => vec![format!("table {} missing", nft::TABLE)],
            Some(json) => nft::parse_shape(&json)?.differences(&expected),
        };
        if !drift.is_empty() {
            // The table and its selection in one transaction: a connection that starts during
            // the repair finds either the old table or the whole new one, never empty maps.
            let create = nft::render_create(self.hold, self.sticky());
            match nft::render_elements(&self.selection) {
                Some(elements) => {
                    run_nft::apply(&(create + &elements), "balancer table rebuild").await?;
                }
                None => {
                    run_nft::apply(&create, "balancer table rebuild").await?;
                    nftset::replace(
                        FAMILY_INET,
                        nft::TABLE_NAME,
                        &nft::contents(&self.selection),
                    )
                    .await
                    .map_err(BalancerError::Selection)?;
                }
            }
            repaired.extend(drift);
        }
        let routing = self.config.routing;
        let rules = self.netlink.our_rule_priorities().await?;
        if !rules.contains(&routing.rule_base) {
            self.netlink.add_main_first_rule(routing.rule_base).await?;
            repaired.push(format!(
                "rule {} (main table first) missing",
                routing.rule_base
            ));
        }
        let tables = self.netlink.our_route_tables().await?;
        for l in self.lines.values() {
            let priority = routing.rule_base + u32::from(l.slot);
            let table = routing.table_base + u32::from(l.slot);
            if !rules.contains(&priority) {
                self.netlink
                    .add_mark_rule(priority, l.mark(), table)
                    .await?;
                repaired.push(format!("rule {priority} of line {} missing", l.spec.line));
            }
            if !tables.contains(&table) {
                // The slave itself may be gone: its line's driver takes it out of the balance.
                match self
                    .netlink
                    .add_default_route(table, l.index, l.spec.peer)
                    .await
                {
                    Ok(()) => repaired.push(format!("route of line {} missing", l.spec.line)),
                    Err(e) => tracing::warn!(line = %l.spec.line, "cannot restore its route: {e}"),
                }
            }
        }
        let main = u32::from(rtnetlink::packet_route::route::RouteHeader::RT_TABLE_MAIN);
        if !tables.contains(&main) {
            self.update_main_default().await?;
            repaired.push("default route in the main table missing".into());
        }
        Ok(repaired)
    }

    /// The main table's default (the router's own traffic that no socket steers): via the
    /// first line in the balance, or unreachable when none is up.
    async fn update_main_default(&self) -> Result<(), BalancerError> {
        let in_balance = self.applied.first().copied();
        let first = self
            .lines
            .values()
            .find(|l| Some(l.mark()) == in_balance)
            .or_else(|| self.lines.values().next())
            .map(|l| (l.index, l.spec.peer));
        self.netlink
            .set_main_default(first, self.config.routing.default_metric)
            .await?;
        Ok(())
    }

    async fn remove_line_state(&self, line: &str) -> Result<(), BalancerError> {
        match self.lines.get(line) {
            Some(l) => self.remove_line_state_of(l).await,
            None => Ok(()),
        }
    }

    async fn remove_line_state_of(&self, l: &Slot) -> Result<(), BalancerError> {
        let routing = self.config.routing;
        let priority = routing.rule_base + u32::from(l.slot);
        self.netlink.delete_rules(priority..=priority).await?;
        self.netlink
            .delete_our_routes(routing.table_base + u32::from(l.slot))
            .await?;
        Ok(())
    }
}

/// Removes every trace of a balancer from this network namespace: the nftables table, the
/// rules in our priority range, our routes in our tables and in main.
pub async fn remove_kernel_state(
    netlink: &Netlink,
    routing: &RoutingConfig,
) -> Result<(), BalancerError> {
    run_nft::apply(&nft::render_delete(), "table removal").await?;
    netlink
        .delete_rules(routing.rule_base..=routing.rule_base.saturating_add(255))
        .await?;
    let tables = routing.table_base.saturating_add(1)..=routing.table_base.saturating_add(255);
    let main = u32::from(rtnetlink::packet_route::route::RouteHeader::RT_TABLE_MAIN);
    netlink
        .delete_our_routes_where(|t| t == main || tables.contains(&t))
        .await?;
    Ok(())
}
