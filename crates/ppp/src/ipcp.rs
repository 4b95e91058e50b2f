//! IPCP, RFC 1332, with the RFC 1877 name-server options.
//!
//! One [`Negotiator`] serves both roles; what differs is configuration:
//! - client (dialer): ask for `0.0.0.0` (or a configured address) and for DNS
//!   servers `0.0.0.0`, then take whatever the peer Configure-Naks to us;
//! - server (answer): request our own address, Configure-Nak the peer to the
//!   address we assign it (also when it did not ask for one, as pppd does), and
//!   answer DNS/NBNS requests from the configured servers.
//!
//! VJ header compression (option 2) and the obsolete IP-Addresses option (1)
//! are Configure-Rejected, as is anything unknown.

use std::net::Ipv4Addr;

use super::fsm::{Negotiator, Verdict};
use super::packet::{ConfigOption, emit_option};

/// IPCP protocol number.
pub const PROTOCOL: u16 = 0x8021;
/// IPv4 datagrams.
pub const IPV4: u16 = 0x0021;

/// Option types.
mod opt {
    pub(super) const IP_ADDRESS: u8 = 3;
    pub(super) const PRIMARY_DNS: u8 = 129;
    pub(super) const PRIMARY_NBNS: u8 = 130;
    pub(super) const SECONDARY_DNS: u8 = 131;
    pub(super) const SECONDARY_NBNS: u8 = 132;
}

/// Which name-server slot an option type refers to.
#[derive(Debug, Clone, Copy)]
enum NameServer {
    Dns(usize),
    Nbns(usize),
}

impl NameServer {
    fn from_kind(kind: u8) -> Option<Self> {
        match kind {
            opt::PRIMARY_DNS => Some(NameServer::Dns(0)),
            opt::SECONDARY_DNS => Some(NameServer::Dns(1)),
            opt::PRIMARY_NBNS => Some(NameServer::Nbns(0)),
            opt::SECONDARY_NBNS => Some(NameServer::Nbns(1)),
            _ => None,
        }
    }
}

const DNS_KINDS: [u8; 2] = [opt::PRIMARY_DNS, opt::SECONDARY_DNS];
const NBNS_KINDS: [u8; 2] = [opt::PRIMARY_NBNS, opt::SECONDARY_NBNS];

/// IPCP settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpcpConfig {
    /// Our address; `0.0.0.0` asks the peer to assign one (and accepts its Nak).
    pub local: Ipv4Addr,
    /// The address we assign to the peer; a different request is Configure-Naked.
    /// `None`: accept whatever non-zero address the peer says it has.
    pub peer: Option<Ipv4Addr>,
    /// Ask the peer for DNS servers (RFC 1877 options 129, 131).
    pub request_dns: bool,
    /// Ask the peer for NBNS servers (options 130, 132).
    pub request_nbns: bool,
    /// DNS servers we hand out when the peer asks.
    pub dns: [Option<Ipv4Addr>; 2],
    /// NBNS servers we hand out when the peer asks.
    pub nbns: [Option<Ipv4Addr>; 2],
    /// Addresses of this host's other interfaces (the LAN, other lines): the
    /// peer may neither assign one of them to us nor claim one for itself. The
    /// driver collects them before the session starts; the core stays pure.
    pub local_addrs: Vec<Ipv4Addr>,
}

impl IpcpConfig {
    /// Client defaults: get everything from the peer.
    pub fn client() -> Self {
        IpcpConfig {
            local: Ipv4Addr::UNSPECIFIED,
            peer: None,
            request_dns: true,
            request_nbns: false,
            dns: [None; 2],
            nbns: [None; 2],
            local_addrs: Vec::new(),
        }
    }

    /// Server defaults: our address `local`, the peer gets `peer`, DNS as given.
    pub fn server(local: Ipv4Addr, peer: Ipv4Addr, dns: &[Ipv4Addr]) -> Self {
        IpcpConfig {
            local,
            peer: Some(peer),
            request_dns: false,
            request_nbns: false,
            dns: [dns.first().copied(), dns.get(1).copied()],
            nbns: [None; 2],
            local_addrs: Vec::new(),
        }
    }
}

impl Default for IpcpConfig {
    fn default() -> Self {
        IpcpConfig::client()
    }
}

/// Why an address the peer gives cannot be used as an end of the link, or `None`.
///
/// pppd's `bad_ip_adrs` (loopback 127/8, multicast 224/4, class E 240/4 with
/// the broadcast address) plus `0.0.0.0` and any address of another interface
/// of this host (`local_addrs`), which would put a LAN host or the router itself
/// behind the line. Link-local 169.254/16 stays allowed, as in pppd.
pub fn address_problem(addr: Ipv4Addr, local_addrs: &[Ipv4Addr]) -> Option<&'static str> {
    if addr.is_unspecified() {
        Some("unspecified")
    } else if addr.is_loopback() {
        Some("loopback")
    } else if addr.is_multicast() {
        Some("multicast")
    } else if addr.is_broadcast() {
        Some("broadcast")
    } else if addr.octets()[0] >= 240 {
        Some("reserved, class E")
    } else if local_addrs.contains(&addr) {
        Some("an address of another interface of this host")
    } else {
        None
    }
}

/// How many unusable addresses the peer may offer before IPCP gives up.
pub const MAX_BAD_OFFERS: u32 = 3;

/// An unusable address the peer insisted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadAddress {
    /// The address.
    pub addr: Ipv4Addr,
    /// What is wrong with it ([`address_problem`]).
    pub problem: &'static str,
    /// It was for us (in a Configure-Nak), not the peer's own (in its request).
    pub for_us: bool,
}

impl std::fmt::Display for BadAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.for_us {
            write!(
                f,
                "peer assigned us {} ({}); refusing",
                self.addr, self.problem
            )
        } else {
            write!(
                f,
                "peer claims address {} ({}) for itself; refusing",
                self.addr, self.problem
            )
        }
    }
}

/// IPCP option negotiation state.
#[derive(Debug, Clone)]
pub struct IpcpOptions {
    cfg: IpcpConfig,
    want_addr: Option<Ipv4Addr>,
    want_dns: [Option<Ipv4Addr>; 2],
    want_nbns: [Option<Ipv4Addr>; 2],
    peer_addr: Option<Ipv4Addr>,
    /// Unusable addresses offered so far, and the latest.
    bad_offers: u32,
    last_bad: Option<BadAddress>,
}

impl IpcpOptions {
    /// Negotiation state for `cfg`.
    pub fn new(cfg: IpcpConfig) -> Self {
        let mut o = IpcpOptions {
            cfg,
            want_addr: None,
            want_dns: [None; 2],
            want_nbns: [None; 2],
            peer_addr: None,
            bad_offers: 0,
            last_bad: None,
        };
        o.reset();
        o
    }

    /// The peer kept offering unusable addresses ([`MAX_BAD_OFFERS`] of them):
    /// the latest, for the session to end the link with.
    pub fn refused(&self) -> Option<&BadAddress> {
        self.last_bad
            .as_ref()
            .filter(|_| self.bad_offers >= MAX_BAD_OFFERS)
    }

    /// What is wrong with a final address pair, if anything: an address learned
    /// from the peer (ours when we asked for one, the peer's when we had none
    /// to assign) must be usable. Checked again when IPCP opens.
    pub fn check_final(&self) -> Option<BadAddress> {
        let local = self.local();
        if self.cfg.local.is_unspecified()
            && !local.is_unspecified()
            && let Some(problem) = address_problem(local, &self.cfg.local_addrs)
        {
            return Some(BadAddress {
                addr: local,
                problem,
                for_us: true,
            });
        }
        if self.cfg.peer.is_none()
            && let Some(peer) = self.peer_addr
            && let Some(problem) = address_problem(peer, &self.cfg.local_addrs)
        {
            return Some(BadAddress {
                addr: peer,
                problem,
                for_us: false,
            });
        }
        None
    }

    fn note_bad(&mut self, addr: Ipv4Addr, problem: &'static str, for_us: bool) {
        self.bad_offers = self.bad_offers.saturating_add(1);
        self.last_bad = Some(BadAddress {
            addr,
            problem,
            for_us,
        });
    }

    /// Our address as negotiated (unspecified if the peer never gave us one).
    pub fn local(&self) -> Ipv4Addr {
        self.want_addr.unwrap_or(self.cfg.local)
    }

    /// The peer's address (unspecified if it never told us).
    pub fn peer(&self) -> Ipv4Addr {
        self.peer_addr
            .or(self.cfg.peer)
            .unwrap_or(Ipv4Addr::UNSPECIFIED)
    }

    /// DNS servers: the ones the peer gave us, or (server role) the ones we hand out. Each
    /// once: pppd with one `ms-dns` gives the same server as primary and secondary.
    pub fn dns(&self) -> Vec<Ipv4Addr> {
        let mut got: Vec<Ipv4Addr> = Vec::new();
        for a in self.want_dns.iter().flatten() {
            if !a.is_unspecified() && !got.contains(a) {
                got.push(*a);
            }
        }
        if got.is_empty() {
            self.cfg.dns.iter().flatten().copied().collect()
        } else {
            got
        }
    }

    fn slot(&mut self, ns: NameServer) -> (&mut Option<Ipv4Addr>, Option<Ipv4Addr>) {
        match ns {
            NameServer::Dns(i) => (&mut self.want_dns[i], self.cfg.dns[i]),
            NameServer::Nbns(i) => (&mut self.want_nbns[i], self.cfg.nbns[i]),
        }
    }
}

/// Ack `got` if it equals `ours`, else Nak with `ours` (or Reject when disagreeing is over).
fn nak_to(kind: u8, got: Ipv4Addr, ours: Ipv4Addr, rid: bool, nak: &mut Vec<u8>) -> Verdict {
    if got == ours {
        Verdict::Ack
    } else if rid {
        Verdict::Reject
    } else {
        emit_option(nak, kind, &ours.octets());
        Verdict::Nak
    }
}

impl Negotiator for IpcpOptions {
    const PROTOCOL: u16 = PROTOCOL;
    const NAME: &'static str = "IPCP";

    fn reset(&mut self) {
        let ask = |yes: bool| {
            if yes {
                Some(Ipv4Addr::UNSPECIFIED)
            } else {
                None
            }
        };
        self.want_addr = Some(self.cfg.local);
        self.want_dns = [ask(self.cfg.request_dns); 2];
        self.want_nbns = [ask(self.cfg.request_nbns); 2];
        // `peer_addr` belongs to the peer's request, reset by `begin_peer_request`.
    }

    fn write_request(&mut self, out: &mut Vec<u8>) {
        if let Some(a) = self.want_addr {
            emit_option(out, opt::IP_ADDRESS, &a.octets());
        }
        // RFC 1877 order as pppd sends it: 129, 130, 131, 132.
        for i in 0..2 {
            if let Some(a) = self.want_dns[i] {
                emit_option(out, DNS_KINDS[i], &a.octets());
            }
            if let Some(a) = self.want_nbns[i] {
                emit_option(out, NBNS_KINDS[i], &a.octets());
            }
        }
    }

    fn begin_peer_request(&mut self) {
        self.peer_addr = None;
    }

    fn check_option(&mut self, o: ConfigOption<'_>, rid: bool, nak: &mut Vec<u8>) -> Verdict {
        let Some(addr) = o.as_ipv4() else {
            // Wrong length for an address option, or VJ compression / IP-Addresses / unknown.
            return Verdict::Reject;
        };
        if o.kind == opt::IP_ADDRESS {
            let verdict = match self.cfg.peer {
                Some(assigned) => nak_to(o.kind, addr, assigned, rid, nak),
                // Nothing to assign: a peer without an address cannot be helped.
                None if addr.is_unspecified() => Verdict::Reject,
                None => match address_problem(addr, &self.cfg.local_addrs) {
                    // Nak with 0.0.0.0: "not that one" (pppd Naks with what it
                    // wants, which is nothing in particular here).
                    Some(problem) => {
                        self.note_bad(addr, problem, false);
                        if rid {
                            Verdict::Reject
                        } else {
                            emit_option(nak, o.kind, &Ipv4Addr::UNSPECIFIED.octets());
                            Verdict::Nak
                        }
                    }
                    None => Verdict::Ack,
                },
            };
            if verdict == Verdict::Ack {
                self.peer_addr = Some(addr);
            }
            return verdict;
        }
        match NameServer::from_kind(o.kind) {
            Some(ns) => match self.slot(ns).1 {
                Some(server) => nak_to(o.kind, addr, server, rid, nak),
                None => Verdict::Reject,
            },
            None => Verdict::Reject,
        }
    }

    fn missing_options(&mut self, _rid: bool, nak: &mut Vec<u8>) {
        // The peer did not ask for an address but we have one for it: tell it.
        if let (None, Some(assigned)) = (self.peer_addr, self.cfg.peer) {
            emit_option(nak, opt::IP_ADDRESS, &assigned.octets());
        }
    }

    fn apply_nak(&mut self, o: ConfigOption<'_>) {
        let Some(addr) = o.as_ipv4() else { return };
        if addr.is_unspecified() {
            return;
        }
        if o.kind == opt::IP_ADDRESS {
            // Only take an address from the peer when we did not insist on one,
            // and only one we can use: else ask again with 0.0.0.0.
            if self.cfg.local.is_unspecified() && self.want_addr.is_some() {
                match address_problem(addr, &self.cfg.local_addrs) {
                    Some(problem) => {
                        self.note_bad(addr, problem, true);
                        self.want_addr = Some(Ipv4Addr::UNSPECIFIED);
                    }
                    None => self.want_addr = Some(addr),
                }
            }
        } else if let Some(ns) = NameServer::from_kind(o.kind) {
            // A name server on loopback, multicast or this host's other interfaces
            // would be pinned to the line and routed through it: stop asking instead.
            let bad = address_problem(addr, &self.cfg.local_addrs).is_some();
            let (slot, _) = self.slot(ns);
            if slot.is_some() {
                *slot = if bad { None } else { Some(addr) };
            }
        }
    }

    fn apply_reject(&mut self, o: ConfigOption<'_>) {
        if o.kind == opt::IP_ADDRESS {
            self.want_addr = None;
        } else if let Some(ns) = NameServer::from_kind(o.kind) {
            *self.slot(ns).0 = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::Options;

    fn opts(data: &[u8]) -> Vec<ConfigOption<'_>> {
        Options::new(data).collect::<Result<_, _>>().unwrap()
    }

    #[test]
    fn client_first_request_golden() {
        let mut c = IpcpOptions::new(IpcpConfig::client());
        let mut out = Vec::new();
        c.write_request(&mut out);
        // What pppd with `usepeerdns` sends: 03 06 0.0.0.0, 81 06 0.0.0.0, 83 06 0.0.0.0.
        assert_eq!(
            out,
            [3, 6, 0, 0, 0, 0, 0x81, 6, 0, 0, 0, 0, 0x83, 6, 0, 0, 0, 0]
        );
        // The server Naks with our address and DNS; we take them.
        let nak = [3, 6, 10, 0, 0, 2, 0x81, 6, 8, 8, 8, 8, 0x83, 6, 1, 1, 1, 1];
        for o in opts(&nak) {
            c.apply_nak(o);
        }
        assert_eq!(c.local(), Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(
            c.dns(),
            [Ipv4Addr::new(8, 8, 8, 8), Ipv4Addr::new(1, 1, 1, 1)]
        );
    }

    #[test]
    fn the_same_dns_server_twice_is_listed_once() {
        // pppd with a single `ms-dns` answers it as primary and secondary.
        let mut c = IpcpOptions::new(IpcpConfig::client());
        let nak = [
            3, 6, 10, 0, 0, 2, 0x81, 6, 10, 64, 0, 53, 0x83, 6, 10, 64, 0, 53,
        ];
        for o in opts(&nak) {
            c.apply_nak(o);
        }
        assert_eq!(c.dns(), [Ipv4Addr::new(10, 64, 0, 53)]);
    }

    #[test]
    fn server_naks_wrong_address_and_rejects_vj() {
        let cfg = IpcpConfig::server(
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            &[Ipv4Addr::new(9, 9, 9, 9)],
        );
        let mut s = IpcpOptions::new(cfg);
        let mut nak = Vec::new();
        let req = [
            3, 6, 0, 0, 0, 0, 0x81, 6, 0, 0, 0, 0, 0x83, 6, 0, 0, 0, 0, 2, 6, 0, 0x2d, 0x0f, 1,
        ];
        let o = opts(&req);
        assert_eq!(s.check_option(o[0], false, &mut nak), Verdict::Nak);
        assert_eq!(s.check_option(o[1], false, &mut nak), Verdict::Nak);
        assert_eq!(s.check_option(o[2], false, &mut nak), Verdict::Reject); // no secondary DNS
        assert_eq!(s.check_option(o[3], false, &mut nak), Verdict::Reject); // VJ
        assert_eq!(nak, [3, 6, 10, 0, 0, 2, 0x81, 6, 9, 9, 9, 9]);
        // After Max-Failure, disagreement becomes a Reject.
        assert_eq!(s.check_option(o[0], true, &mut Vec::new()), Verdict::Reject);
        // Missing address option gets a hint.
        s.begin_peer_request();
        let mut hint = Vec::new();
        s.missing_options(false, &mut hint);
        assert_eq!(hint, [3, 6, 10, 0, 0, 2]);
    }

    #[test]
    fn address_problems_follow_pppd_plus_local_ones() {
        let lan = [Ipv4Addr::new(192, 168, 1, 1)];
        let p = |a: [u8; 4]| address_problem(Ipv4Addr::from(a), &lan);
        assert_eq!(p([0, 0, 0, 0]), Some("unspecified"));
        assert_eq!(p([127, 0, 0, 2]), Some("loopback"));
        assert_eq!(p([224, 0, 0, 5]), Some("multicast"));
        assert_eq!(p([239, 255, 255, 250]), Some("multicast"));
        assert_eq!(p([255, 255, 255, 255]), Some("broadcast"));
        assert_eq!(p([240, 0, 0, 1]), Some("reserved, class E"));
        assert_eq!(
            p([192, 168, 1, 1]),
            Some("an address of another interface of this host")
        );
        assert_eq!(p([192, 168, 1, 2]), None);
        assert_eq!(p([169, 254, 1, 1]), None);
        assert_eq!(p([10, 64, 1, 2]), None);
    }

    #[test]
    fn a_bad_address_in_a_nak_is_not_taken() {
        let mut c = IpcpOptions::new(IpcpConfig::client());
        for _ in 0..MAX_BAD_OFFERS {
            assert_eq!(c.refused(), None);
            for o in opts(&[3, 6, 127, 0, 0, 2]) {
                c.apply_nak(o);
            }
            assert_eq!(c.local(), Ipv4Addr::UNSPECIFIED);
        }
        assert_eq!(
            c.refused().map(ToString::to_string).as_deref(),
            Some("peer assigned us 127.0.0.2 (loopback); refusing")
        );
    }

    #[test]
    fn unusable_name_servers_are_not_taken() {
        let mut cfg = IpcpConfig::client();
        cfg.local_addrs = vec![Ipv4Addr::new(192, 168, 1, 10)];
        let mut c = IpcpOptions::new(cfg);
        let nak = [
            3, 6, 10, 0, 0, 2, 0x81, 6, 127, 0, 0, 53, 0x83, 6, 192, 168, 1, 10,
        ];
        for o in opts(&nak) {
            c.apply_nak(o);
        }
        assert_eq!(c.local(), Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(c.dns(), Vec::<Ipv4Addr>::new());
        // Not asked for again, so the negotiation converges.
        let mut out = Vec::new();
        c.write_request(&mut out);
        assert_eq!(out, [3, 6, 10, 0, 0, 2]);
    }

    #[test]
    fn a_bad_peer_address_is_naked_then_rejected() {
        let mut c = IpcpOptions::new(IpcpConfig::client());
        let req = [3, 6, 224, 0, 0, 1];
        let o = opts(&req);
        let mut nak = Vec::new();
        assert_eq!(c.check_option(o[0], false, &mut nak), Verdict::Nak);
        assert_eq!(nak, [3, 6, 0, 0, 0, 0]);
        assert_eq!(c.check_option(o[0], true, &mut Vec::new()), Verdict::Reject);
        assert_eq!(c.peer(), Ipv4Addr::UNSPECIFIED);
    }

    #[test]
    fn bad_lengths_are_rejected() {
        let mut s = IpcpOptions::new(IpcpConfig::client());
        let req = [3, 4, 1, 2, 0x81, 2];
        for o in opts(&req) {
            assert_eq!(s.check_option(o, false, &mut Vec::new()), Verdict::Reject);
        }
    }
}
