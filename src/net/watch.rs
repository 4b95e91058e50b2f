//! Notifications that someone else changed the kernel state the balancer owns: a deleted
//! nftables table, chain, set or rule of `inet eqlplus` (`nft flush ruleset`, a firewall
//! reload), a deleted policy rule, a deleted route of ours. The balancer checks and repairs
//! its state when told (and on a slow timer besides, in case a notification was lost).
//!
//! The messages are read by a small checked parser: nothing in them is trusted, a malformed one
//! is treated as "something changed".

use std::io;

use netlink_sys::{Socket, SocketAddr, protocols};
use tokio::io::unix::AsyncFd;

use super::walk::{Message, Messages, attributes};

/// `NFNL_SUBSYS_NFTABLES`: nftables messages are `(10 << 8) | NFT_MSG_*`.
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_DELCHAIN: u16 = 5;
const NFT_MSG_DELRULE: u16 = 8;
const NFT_MSG_DELSET: u16 = 11;
/// The nftables multicast group.
const NFNLGRP_NFTABLES: u32 = 7;
/// rtnetlink groups and messages.
const RTNLGRP_IPV4_ROUTE: u32 = 7;
const RTNLGRP_IPV4_RULE: u32 = 8;
const RTM_DELROUTE: u16 = 25;
const RTM_DELRULE: u16 = 33;

/// Watches for changes to the balancer's kernel state made by others.
pub struct KernelWatch {
    nft: AsyncFd<Socket>,
    route: AsyncFd<Socket>,
    table: String,
    route_protocol: u8,
}

impl KernelWatch {
    /// Subscribes to nftables and IPv4 rule/route notifications in this thread's network
    /// namespace. Deletions in `table` (family inet) count; route deletions count only for
    /// routes tagged `route_protocol`. Must be called within a tokio runtime.
    pub fn new(table: &str, route_protocol: u8) -> io::Result<KernelWatch> {
        let subscribe = |protocol: isize, groups: &[u32]| -> io::Result<AsyncFd<Socket>> {
            let mut socket = Socket::new(protocol)?;
            socket.bind(&SocketAddr::new(0, 0))?;
            for g in groups {
                socket.add_membership(*g)?;
            }
            // A burst of notifications (a whole ruleset flushed) may overrun the buffer; that
            // is reported as ENOBUFS, which counts as "something changed".
            let _ = socket.set_rx_buf_sz(1 << 20);
            socket.set_non_blocking(true)?;
            // SAFETY: the AsyncFd owns the socket, so its descriptor stays open and unchanged
            // for the AsyncFd's life.
            unsafe { AsyncFd::register(socket) }.map_err(io::Error::from)
        };
        Ok(KernelWatch {
            nft: subscribe(protocols::NETLINK_NETFILTER, &[NFNLGRP_NFTABLES])?,
            route: subscribe(
                protocols::NETLINK_ROUTE,
                &[RTNLGRP_IPV4_ROUTE, RTNLGRP_IPV4_RULE],
            )?,
            table: table.to_string(),
            route_protocol,
        })
    }

    /// Waits until a notification says that someone may have removed part of our state.
    pub async fn changed(&mut self) -> io::Result<()> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            tokio::select! {
                r = self.nft.readable() => {
                    let mut guard = r?;
                    match guard.try_io(|s| recv(s.get_ref(), &mut buf)) {
                        Ok(Ok(n)) => {
                            let filter = NftFilter { table: &self.table };
                            if nft_touches_us(&buf[..n], &filter) {
                                return Ok(());
                            }
                        }
                        Ok(Err(e)) if e.raw_os_error() == Some(libc::ENOBUFS) => return Ok(()),
                        Ok(Err(e)) => return Err(e),
                        Err(_would_block) => {}
                    }
                }
                r = self.route.readable() => {
                    let mut guard = r?;
                    match guard.try_io(|s| recv(s.get_ref(), &mut buf)) {
                        Ok(Ok(n)) => {
                            if route_touches_us(&buf[..n], self.route_protocol) {
                                return Ok(());
                            }
                        }
                        Ok(Err(e)) if e.raw_os_error() == Some(libc::ENOBUFS) => return Ok(()),
                        Ok(Err(e)) => return Err(e),
                        Err(_would_block) => {}
                    }
                }
            }
        }
    }
}

fn recv(socket: &Socket, buf: &mut [u8]) -> io::Result<usize> {
    let mut slice = buf;
    socket.recv(&mut slice, 0)
}

struct NftFilter<'a> {
    table: &'a str,
}

/// A NUL-terminated string attribute.
fn text(value: &[u8]) -> &[u8] {
    value.split(|b| *b == 0).next().unwrap_or(&[])
}

/// Whether a datagram read on the nftables (`netfilter`) or the rtnetlink socket says that
/// someone deleted part of the balancer's state (a part of `inet eqlplus`, a policy rule, a
/// route tagged `route_protocol`; the balancer's own updates only replace set elements). Malformed input counts as a
/// change; nothing panics.
pub fn touches_us(datagram: &[u8], netfilter: bool, route_protocol: u8) -> bool {
    if netfilter {
        nft_touches_us(datagram, &NftFilter { table: "eqlplus" })
    } else {
        route_touches_us(datagram, route_protocol)
    }
}

/// Whether an nftables notification deletes part of our table.
fn nft_touches_us(datagram: &[u8], filter: &NftFilter<'_>) -> bool {
    Messages::new(datagram).any(|m| {
        let Ok(Message::Other { kind, payload }) = m else {
            // Malformed: count it as a change. Acks, errors and done: not a deletion.
            return m.is_err();
        };
        if kind >> 8 != NFNL_SUBSYS_NFTABLES {
            return false;
        }
        let op = kind & 0xff;
        if !matches!(
            op,
            NFT_MSG_DELTABLE | NFT_MSG_DELCHAIN | NFT_MSG_DELRULE | NFT_MSG_DELSET
        ) {
            return false;
        }
        // nfgenmsg: family, version, resource id.
        let Some(&family) = payload.first() else {
            return true;
        };
        if family != libc::NFPROTO_INET as u8 {
            return false;
        }
        // After nfgenmsg (family, version, resource id).
        let Some(Ok(attrs)) = payload
            .get(4..)
            .map(|a| attributes(a).collect::<Result<Vec<_>, _>>())
        else {
            return true;
        };
        // Attribute 1 is the table's name in table, chain, rule and set messages alike.
        let table = attrs.iter().find(|(k, _)| *k == 1).map(|(_, v)| text(v));
        // The balancer itself never deletes a part of its table while it runs (its updates
        // replace set elements), so any deletion is someone else's.
        table == Some(filter.table.as_bytes())
    })
}

/// Whether an rtnetlink notification deletes a policy rule (any: ours carry a protocol
/// attribute older kernels drop) or one of our routes.
fn route_touches_us(datagram: &[u8], protocol: u8) -> bool {
    Messages::new(datagram).any(|m| match m {
        Err(_) => true,
        Ok(Message::Other {
            kind: RTM_DELRULE, ..
        }) => true,
        // rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type.
        Ok(Message::Other {
            kind: RTM_DELROUTE,
            payload,
        }) => payload.get(5).is_none_or(|p| *p == protocol),
        Ok(_) => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut a = Vec::new();
        a.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
        a.extend_from_slice(&kind.to_ne_bytes());
        a.extend_from_slice(value);
        while a.len() % 4 != 0 {
            a.push(0);
        }
        a
    }

    fn message(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&((16 + payload.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&[0u8; 10]);
        m.extend_from_slice(payload);
        m
    }

    fn nft(op: u16, family: u8, table: &str, chain: Option<&str>) -> Vec<u8> {
        let mut p = vec![family, 0, 0, 0];
        p.extend(attr(1, format!("{table}\0").as_bytes()));
        if let Some(c) = chain {
            p.extend(attr(2, format!("{c}\0").as_bytes()));
        }
        message((NFNL_SUBSYS_NFTABLES << 8) | op, &p)
    }

    const US: NftFilter<'static> = NftFilter { table: "eqlplus" };

    #[test]
    fn deletions_in_our_table_count() {
        let inet = libc::NFPROTO_INET as u8;
        assert!(nft_touches_us(
            &nft(NFT_MSG_DELTABLE, inet, "eqlplus", None),
            &US
        ));
        assert!(nft_touches_us(
            &nft(NFT_MSG_DELCHAIN, inet, "eqlplus", None),
            &US
        ));
        assert!(nft_touches_us(
            &nft(NFT_MSG_DELSET, inet, "eqlplus", None),
            &US
        ));
        assert!(nft_touches_us(
            &nft(NFT_MSG_DELRULE, inet, "eqlplus", Some("prerouting")),
            &US
        ));
    }

    #[test]
    fn other_tables_and_additions_do_not() {
        let inet = libc::NFPROTO_INET as u8;
        assert!(nft_touches_us(
            &nft(NFT_MSG_DELRULE, inet, "eqlplus", Some("mark_new")),
            &US
        ));
        // Element updates (NEWSETELEM 12, DELSETELEM 14): the balancer's own selections.
        assert!(!nft_touches_us(&nft(14, inet, "eqlplus", None), &US));
        assert!(!nft_touches_us(
            &nft(NFT_MSG_DELTABLE, inet, "filter", None),
            &US
        ));
        assert!(!nft_touches_us(
            &nft(NFT_MSG_DELTABLE, libc::NFPROTO_IPV4 as u8, "eqlplus", None),
            &US
        ));
        // NEWTABLE (0) and NEWRULE (6): additions never hurt.
        assert!(!nft_touches_us(&nft(0, inet, "eqlplus", None), &US));
        assert!(!nft_touches_us(
            &nft(6, inet, "eqlplus", Some("output")),
            &US
        ));
    }

    #[test]
    fn several_messages_in_one_datagram() {
        let inet = libc::NFPROTO_INET as u8;
        let mut d = nft(NFT_MSG_DELRULE, inet, "eqlplus", Some("mark_new"));
        d.extend(nft(NFT_MSG_DELTABLE, inet, "eqlplus", None));
        assert!(nft_touches_us(&d, &US));
    }

    #[test]
    fn malformed_input_counts_as_a_change_and_never_panics() {
        assert!(nft_touches_us(&[0xff; 20], &US));
        assert!(route_touches_us(&[0xff; 20], 234));
        for len in 0..64 {
            let d: Vec<u8> = (0..len).map(|i| (i * 37) as u8).collect();
            let _ = nft_touches_us(&d, &US);
            let _ = route_touches_us(&d, 234);
        }
        // An attribute longer than its message.
        let mut p = vec![libc::NFPROTO_INET as u8, 0, 0, 0];
        p.extend_from_slice(&200u16.to_ne_bytes());
        p.extend_from_slice(&1u16.to_ne_bytes());
        assert!(nft_touches_us(
            &message((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_DELTABLE, &p),
            &US
        ));
    }

    proptest::proptest! {
        /// Any bytes, and any bytes behind a well-formed header: no panic.
        #[test]
        fn any_datagram_is_read_without_panicking(
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
            kind in proptest::prelude::any::<u16>(),
        ) {
            let _ = touches_us(&data, true, 234);
            let _ = touches_us(&data, false, 234);
            let framed = message(kind, &data);
            let _ = touches_us(&framed, true, 234);
            let _ = touches_us(&framed, false, 234);
        }
    }

    #[test]
    fn route_deletions_count_only_for_ours() {
        let route = |proto: u8| message(RTM_DELROUTE, &[2, 0, 0, 0, 254, proto, 0, 1]);
        assert!(route_touches_us(&route(234), 234));
        assert!(!route_touches_us(&route(4), 234));
        assert!(route_touches_us(&message(RTM_DELRULE, &[2, 0, 0, 0]), 234));
        assert!(!route_touches_us(
            &message(24, &[2, 0, 0, 0, 254, 234]),
            234
        ));
    }
}
