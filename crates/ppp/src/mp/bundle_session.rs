//! The network layer of a Multilink bundle: one IPCP and the IPv4 traffic for all member
//! links, over a [`Bundle`]. What [`Session`](crate::Session)'s Network phase is to a
//! plain link, this is to a bundle (pppd runs IPCP on the bundle's unit, not on a link).
//!
//! Member [`Session`](crate::Session)s report [`Event::BundleMember`](crate::Event) and
//! then carry the bundle's frames: feed what they receive
//! ([`Session::poll_bundle_frame`](crate::Session::poll_bundle_frame)) to
//! [`BundleSession::handle_frame`], and send what [`BundleSession::poll_transmit`] and
//! [`BundleSession::send_ip`] return with
//! [`Session::send_frame`](crate::Session::send_frame) on the member they name. IPCP
//! packets go through the bundle like IP (MP-encapsulated, as Linux sends them); frames a
//! peer sends outside MP on a member are accepted too.
//!
//! IPCP starts with the first member and goes down with the last. When it fails for good
//! ([`BundleEvent::Failed`]) the caller closes the member links, as pppd closes the link
//! when its last network protocol is gone.

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::time::Instant;

use super::bundle::{Bundle, BundleConfig, BundleStats, Outgoing};
use super::header::PROTOCOL;
use super::scheduler::LinkState;
use crate::fsm::{Fsm, FsmConfig, LayerSignal};
use crate::ipcp::{self, IpcpConfig, IpcpOptions};
use crate::session::{DownReason, SendError, ipcp_agreed, ipcp_finished};

/// Log target, next to the session's.
const LOG_TARGET: &str = "eqlplus_dialer::ppp::mp";

/// Protocol-Rejects waiting for a member at most (a flooding peer gets no more).
const MAX_REJECTS: usize = 8;

/// What a bundle's network layer reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BundleEvent {
    /// IPCP is open over the bundle: IP packets can flow.
    Up {
        /// Our address.
        local: Ipv4Addr,
        /// The peer's address.
        peer: Ipv4Addr,
        /// DNS servers.
        dns: Vec<Ipv4Addr>,
        /// Largest IP packet the peer takes: its MRRU.
        mtu: u16,
    },
    /// IPCP left Opened (renegotiation, or the last member went away).
    NetworkDown {
        /// Why.
        reason: String,
    },
    /// IPCP failed for good: close the member links with this reason.
    Failed {
        /// Why (as a session's Down reason).
        reason: DownReason,
    },
}

/// Settings of a bundle's network layer.
#[derive(Debug, Clone)]
pub struct BundleSessionConfig {
    /// The bundle (formats, MRRUs, limits).
    pub bundle: BundleConfig,
    /// IPCP, as for a plain link.
    pub ipcp: IpcpConfig,
    /// IPCP's restart timer and counters.
    pub fsm: FsmConfig,
    /// Received IP packets held until `poll_ip` at most.
    pub max_ip_rx_queue: usize,
    /// IPCP packets waiting for a member to send them at most.
    pub max_control_queue: usize,
}

impl BundleSessionConfig {
    /// Defaults around a bundle and an IPCP configuration.
    pub fn new(bundle: BundleConfig, ipcp: IpcpConfig) -> Self {
        BundleSessionConfig {
            bundle,
            ipcp,
            fsm: FsmConfig::default(),
            max_ip_rx_queue: 256,
            max_control_queue: 32,
        }
    }
}

/// Counters of the bundle's network layer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BundleSessionStats {
    /// The bundle's (fragments, reassembly).
    pub bundle: BundleStats,
    /// IPv4 packets delivered.
    pub rx_ip_packets: u64,
    /// IPv4 packets dropped (IPCP not open, queue full).
    pub rx_ip_dropped: u64,
    /// Packets of protocols the bundle does not run (dropped).
    pub rx_unknown_protocol: u64,
    /// Malformed IPCP packets.
    pub rx_malformed: u64,
    /// IPv4 packets sent.
    pub tx_ip_packets: u64,
    /// IPCP packets dropped: no member could take them, or the queue was full.
    pub tx_control_dropped: u64,
}

/// One bundle's network layer: the [`Bundle`], its IPCP and its IPv4 queues.
#[derive(Debug)]
pub struct BundleSession<K> {
    cfg: BundleSessionConfig,
    bundle: Bundle<K>,
    ipcp: Fsm<IpcpOptions>,
    /// IPCP packets to send over the bundle.
    ctrl_tx: VecDeque<Vec<u8>>,
    /// Packets of protocols the bundle does not run, for a member's LCP to reject.
    rejects: VecDeque<(u16, Vec<u8>)>,
    ip_rx: VecDeque<Vec<u8>>,
    events: VecDeque<BundleEvent>,
    ip_up: bool,
    failed: bool,
    stats: BundleSessionStats,
}

impl<K: Copy + Eq> BundleSession<K> {
    /// A bundle without members yet; our fragments are numbered from `first_seq` on
    /// (0, as Linux does).
    pub fn new(cfg: BundleSessionConfig, first_seq: u32) -> Self {
        let mut ipcp = Fsm::new(IpcpOptions::new(cfg.ipcp.clone()), cfg.fsm);
        ipcp.set_peer_mru(usize::from(cfg.bundle.peer_mrru));
        BundleSession {
            bundle: Bundle::new(cfg.bundle, first_seq),
            ipcp,
            cfg,
            ctrl_tx: VecDeque::new(),
            rejects: VecDeque::new(),
            ip_rx: VecDeque::new(),
            events: VecDeque::new(),
            ip_up: false,
            failed: false,
            stats: BundleSessionStats::default(),
        }
    }

    /// A member link joined (after its [`Event::BundleMember`](crate::Event)); the first
    /// one starts IPCP.
    pub fn add_member(&mut self, member: K, now: Instant) {
        let first = self.bundle.members().next().is_none();
        self.bundle.add_member(member);
        if first && !self.failed {
            self.ipcp.open(now);
            self.ipcp.up(now);
            self.pump(now);
        }
    }

    /// A member link left; with the last one IPCP goes down.
    pub fn remove_member(&mut self, member: K, now: Instant) {
        self.bundle.remove_member(member, now);
        if self.bundle.members().next().is_none() {
            // Said before IPCP's own Down, which would call it a renegotiation.
            self.ip_down("its last member link left");
            self.ipcp.down(now);
            self.ctrl_tx.clear();
        }
        self.pump(now);
    }

    /// A frame a member received for the bundle (from `Session::poll_bundle_frame`).
    pub fn handle_frame(&mut self, member: K, protocol: u16, info: &[u8], now: Instant) {
        if protocol == PROTOCOL {
            // A short header is counted in the bundle's stats.
            let _ = self.bundle.handle_mp_frame(member, info, now);
            while let Some((p, packet)) = self.bundle.poll_packet() {
                self.dispatch(p, &packet, now);
            }
        } else {
            self.dispatch(protocol, info, now);
        }
        self.pump(now);
    }

    fn dispatch(&mut self, protocol: u16, info: &[u8], now: Instant) {
        match protocol {
            ipcp::PROTOCOL => {
                if let Err(e) = self.ipcp.input(info, now) {
                    self.stats.rx_malformed += 1;
                    debug!(error = %e, "malformed IPCP packet on the bundle");
                }
            }
            ipcp::IPV4 if self.ip_up && self.ip_rx.len() < self.cfg.max_ip_rx_queue => {
                self.ip_rx.push_back(info.to_vec());
                self.stats.rx_ip_packets += 1;
            }
            ipcp::IPV4 => self.stats.rx_ip_dropped += 1,
            // Protocol-Reject is LCP's: a member sends it (`poll_protocol_reject`).
            _ => {
                self.stats.rx_unknown_protocol += 1;
                if self.rejects.len() < MAX_REJECTS {
                    self.rejects.push_back((protocol, info.to_vec()));
                }
            }
        }
    }

    /// IPCP's signals and packets into events and the control queue.
    fn pump(&mut self, now: Instant) {
        while let Some(sig) = self.ipcp.poll_signal() {
            match sig {
                LayerSignal::Up => match ipcp_agreed(self.ipcp.negotiator()) {
                    Ok((local, peer, dns)) => {
                        self.ip_up = true;
                        let mtu = self.cfg.bundle.peer_mrru;
                        debug!(%local, %peer, ?dns, mtu, "IPCP up on the bundle");
                        self.events.push_back(BundleEvent::Up {
                            local,
                            peer,
                            dns,
                            mtu,
                        });
                    }
                    Err((reason, wire)) => self.fail(reason, wire, now),
                },
                LayerSignal::Down => self.ip_down("IPCP renegotiating"),
                LayerSignal::Finished => {
                    self.ip_down("IPCP finished");
                    if !self.failed && self.bundle.members().next().is_some() {
                        let reason = ipcp_finished(&self.ipcp);
                        self.failed = true;
                        self.events.push_back(BundleEvent::Failed { reason });
                    }
                }
                LayerSignal::Started => {}
            }
        }
        if !self.failed
            && let Some(bad) = self.ipcp.negotiator().refused().cloned()
        {
            self.fail(DownReason::BadAddress(bad), "Unusable IP address", now);
        }
        while let Some(pkt) = self.ipcp.poll_packet() {
            if self.ctrl_tx.len() >= self.cfg.max_control_queue {
                self.stats.tx_control_dropped += 1;
            } else {
                self.ctrl_tx.push_back(pkt);
            }
        }
    }

    /// Close IPCP (its Terminate-Request still goes out) and report the failure.
    fn fail(&mut self, reason: DownReason, wire: &str, now: Instant) {
        self.failed = true;
        self.ipcp.close(wire, now);
        self.ip_down("IPCP closing");
        self.events.push_back(BundleEvent::Failed { reason });
        self.pump(now);
    }

    fn ip_down(&mut self, reason: &str) {
        if std::mem::take(&mut self.ip_up) {
            self.events.push_back(BundleEvent::NetworkDown {
                reason: reason.into(),
            });
        }
    }

    /// IPCP packets to send now, as MP frames over the members as they are (`members`).
    /// Packets no member can take are dropped (IPCP retransmits).
    pub fn poll_transmit(&mut self, members: &[LinkState<K>]) -> Vec<Outgoing<K>> {
        let mut out = Vec::new();
        while let Some(pkt) = self.ctrl_tx.pop_front() {
            match self.bundle.send(ipcp::PROTOCOL, &pkt, members) {
                Ok(frames) => out.extend(frames),
                Err(_) => self.stats.tx_control_dropped += 1,
            }
        }
        out
    }

    /// The next IPCP packet to send, whole (protocol, packet), where something else splits
    /// it over the members: Linux's `ppp_generic`, for a bundle on a kernel unit, takes it
    /// on the unit's file. Use this or [`BundleSession::poll_transmit`], not both.
    pub fn poll_control(&mut self) -> Option<(u16, Vec<u8>)> {
        self.ctrl_tx.pop_front().map(|pkt| (ipcp::PROTOCOL, pkt))
    }

    /// An IPv4 packet split over the members (while IPCP is open): the MP frames to send.
    pub fn send_ip(
        &mut self,
        packet: &[u8],
        members: &[LinkState<K>],
    ) -> Result<Vec<Outgoing<K>>, SendError> {
        if !self.ip_up {
            return Err(SendError::NotUp);
        }
        let mtu = self.cfg.bundle.peer_mrru;
        if packet.len() > usize::from(mtu) {
            return Err(SendError::TooBig {
                len: packet.len(),
                mru: mtu,
            });
        }
        let frames = self
            .bundle
            .send(ipcp::IPV4, packet, members)
            .map_err(|_| SendError::QueueFull)?;
        self.stats.tx_ip_packets += 1;
        Ok(frames)
    }

    /// A packet of a protocol the bundle does not run (CCP, IPv6CP, …): hand it to
    /// [`Session::send_protocol_reject`](crate::Session::send_protocol_reject) of any
    /// member, so the peer stops trying (pppd rejects on the bundle's link likewise).
    pub fn poll_protocol_reject(&mut self) -> Option<(u16, Vec<u8>)> {
        self.rejects.pop_front()
    }

    /// Next received IPv4 packet.
    pub fn poll_ip(&mut self) -> Option<Vec<u8>> {
        self.ip_rx.pop_front()
    }

    /// Next event.
    pub fn poll_event(&mut self) -> Option<BundleEvent> {
        self.events.pop_front()
    }

    /// True while IP packets can be sent over the bundle.
    pub fn is_up(&self) -> bool {
        self.ip_up
    }

    /// Earliest deadline of IPCP's restart timer and the reassembly.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.ipcp.poll_timeout(), self.bundle.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Run due timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.ipcp.handle_timeout(now);
        self.bundle.handle_timeout(now);
        while let Some((p, packet)) = self.bundle.poll_packet() {
            self.dispatch(p, &packet, now);
        }
        self.pump(now);
    }

    /// Counters.
    pub fn stats(&self) -> BundleSessionStats {
        BundleSessionStats {
            bundle: self.bundle.stats(),
            ..self.stats
        }
    }
}
