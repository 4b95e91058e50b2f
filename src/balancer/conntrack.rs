//! The balancer's use of the conntrack table, over ctnetlink:
//! - dropping a dead line's connections, so that applications see their sockets fail at once
//!   and reconnect over a live line, instead of waiting for TCP timeouts on a route that no
//!   longer exists;
//! - counting each line's open TCP connections, the load signal of `least-loaded` for
//!   traffic whose queue the router cannot see (a download queues at the ISP's end).

use std::collections::BTreeMap;
use std::io;

use netlink_packet_core::{
    DefaultNla, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkBuffer, NetlinkHeader, NetlinkMessage,
    NetlinkPayload,
};
use netlink_packet_netfilter::conntrack::{
    ConntrackAttribute, ConntrackMessage, ProtoInfo, ProtoInfoTCP,
};
use netlink_packet_netfilter::{NetfilterHeader, NetfilterMessage, NetfilterProtoFamily};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};

/// `CTA_MARK_MASK` (not modelled by netlink-packet-netfilter).
const CTA_MARK_MASK: u16 = 21;

/// Deletes every IPv4 conntrack entry whose mark is exactly `mark`. A delete request without
/// a tuple but with `CTA_MARK`/`CTA_MARK_MASK` is the kernel's filtered flush, so this is one
/// request whatever the number of entries.
pub fn delete_by_mark(mark: u32) -> io::Result<()> {
    let socket = send_request(
        NLM_F_REQUEST | NLM_F_ACK,
        ConntrackMessage::Delete(mark_filter(mark, u32::MAX)),
    )?;

    let mut reply = vec![0u8; 8192];
    let n = socket.recv(&mut &mut reply[..], 0)?;
    let parsed = NetlinkMessage::<NetfilterMessage>::deserialize(&reply[..n])
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    match parsed.payload {
        NetlinkPayload::Error(e) => match e.code {
            None => Ok(()),
            // Nothing matched is not a failure.
            Some(code) if code.get().saturating_neg() == libc::ENOENT => Ok(()),
            Some(code) => Err(io::Error::from_raw_os_error(code.get().saturating_neg())),
        },
        _ => Ok(()),
    }
}

/// Attributes selecting the entries whose `mark & mask == value & mask`.
fn mark_filter(value: u32, mask: u32) -> Vec<ConntrackAttribute> {
    vec![
        ConntrackAttribute::CtaMark(value),
        ConntrackAttribute::Other(DefaultNla::new(CTA_MARK_MASK, mask.to_be_bytes().to_vec())),
    ]
}

/// Opens a ctnetlink socket and sends one IPv4 conntrack request on it.
fn send_request(flags: u16, request: ConntrackMessage) -> io::Result<Socket> {
    let mut socket = Socket::new(NETLINK_NETFILTER)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    let mut message = NetlinkMessage::new(
        header,
        NetlinkPayload::from(NetfilterMessage::new(
            NetfilterHeader::new(NetfilterProtoFamily::IPv4, 0, 0),
            request,
        )),
    );
    message.finalize();
    let mut buf = vec![0u8; message.buffer_len()];
    message.serialize(&mut buf);
    socket.send(&buf, 0)?;
    Ok(socket)
}

/// Conntrack's TCP states that carry data yet (`enum tcp_conntrack`): SYN_SENT, SYN_RECV,
/// ESTABLISHED, SYN_SENT2. A connection in FIN_WAIT and later has had its last data.
const OPEN_TCP_STATES: [u8; 4] = [1, 2, 3, 9];

/// Counts the open TCP connections by mark, among the IPv4 entries whose
/// `mark & mask == value & mask` (the kernel filters the dump).
pub fn open_tcp_by_mark(value: u32, mask: u32) -> io::Result<BTreeMap<u32, u32>> {
    let socket = send_request(
        NLM_F_REQUEST | NLM_F_DUMP,
        ConntrackMessage::Get(mark_filter(value, mask)),
    )?;
    let mut counts = BTreeMap::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = socket.recv(&mut &mut buf[..], 0)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "ctnetlink closed the conntrack dump",
            ));
        }
        if count_open_tcp(&buf[..n], &mut counts)? {
            return Ok(counts);
        }
    }
}

/// Adds the open TCP connections of one datagram of a conntrack dump to `counts`; true when
/// the dump is complete. Malformed input is an error, never a panic.
pub fn count_open_tcp(datagram: &[u8], counts: &mut BTreeMap<u32, u32>) -> io::Result<bool> {
    let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
    let mut offset = 0;
    while offset < datagram.len() {
        let rest = &datagram[offset..];
        let length = NetlinkBuffer::new_checked(rest)
            .map_err(|e| invalid(format!("conntrack dump at byte {offset}: {e}")))?
            .length() as usize;
        // Messages are 4-byte aligned; a zero length would never advance.
        let step = (length.max(16) + 3) & !3;
        let message =
            NetlinkMessage::<NetfilterMessage>::deserialize(&rest[..length.min(rest.len())])
                .map_err(|e| invalid(format!("conntrack dump at byte {offset}: {e}")))?;
        match message.payload {
            NetlinkPayload::Done(_) => return Ok(true),
            NetlinkPayload::Error(e) => {
                return match e.code {
                    None => Ok(true),
                    Some(code) => Err(io::Error::from_raw_os_error(code.get().saturating_neg())),
                };
            }
            NetlinkPayload::InnerMessage(NetfilterMessage {
                inner:
                    netlink_packet_netfilter::NetfilterMessageInner::Conntrack(ConntrackMessage::New(
                        attributes,
                    )),
                ..
            }) => {
                if let Some(mark) = open_tcp_mark(&attributes) {
                    *counts.entry(mark).or_default() += 1;
                }
            }
            _ => {}
        }
        offset += step;
    }
    Ok(false)
}

/// The mark of an entry that is an open TCP connection.
fn open_tcp_mark(attributes: &[ConntrackAttribute]) -> Option<u32> {
    let mut mark = None;
    let mut open = false;
    for attribute in attributes {
        match attribute {
            ConntrackAttribute::CtaMark(m) => mark = Some(*m),
            ConntrackAttribute::CtaProtoInfo(infos) => {
                open = infos.iter().any(|info| match info {
                    ProtoInfo::TCP(tcp) => tcp.iter().any(
                        |t| matches!(t, ProtoInfoTCP::State(s) if OPEN_TCP_STATES.contains(s)),
                    ),
                    _ => false,
                });
            }
            _ => {}
        }
    }
    mark.filter(|_| open)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(mark: u32, tcp_state: Option<u8>) -> Vec<u8> {
        let mut attributes = vec![ConntrackAttribute::CtaMark(mark)];
        if let Some(state) = tcp_state {
            attributes.push(ConntrackAttribute::CtaProtoInfo(vec![ProtoInfo::TCP(
                vec![ProtoInfoTCP::State(state)],
            )]));
        }
        let mut message = NetlinkMessage::new(
            NetlinkHeader::default(),
            NetlinkPayload::from(NetfilterMessage::new(
                NetfilterHeader::new(NetfilterProtoFamily::IPv4, 0, 0),
                ConntrackMessage::New(attributes),
            )),
        );
        message.finalize();
        let mut buf = vec![0u8; message.buffer_len()];
        message.serialize(&mut buf);
        buf
    }

    #[test]
    fn counts_open_tcp_connections_by_mark() {
        let mut datagram = Vec::new();
        for (mark, state) in [
            (0xe101, Some(3)),
            (0xe101, Some(1)),
            (0xe101, Some(7)), // TIME_WAIT: done
            (0xe102, Some(3)),
            (0xe102, None), // UDP
        ] {
            datagram.extend(entry(mark, state));
        }
        let mut counts = BTreeMap::new();
        assert!(!count_open_tcp(&datagram, &mut counts).unwrap());
        assert_eq!(counts, BTreeMap::from([(0xe101, 2), (0xe102, 1)]));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let good = entry(0xe101, Some(3));
        for cut in 0..good.len() {
            let _ = count_open_tcp(&good[..cut], &mut BTreeMap::new());
        }
        // An error message with the most negative code (found by the fuzzer).
        let crash = [
            0x19, 0, 0, 0, 2, 0, 0xa1, 0xa1, 0xa1, 0xa1, 0, 0, 0xc4, 0, 0, 9, 0, 0, 0, 0x80, 0, 0,
            0x7e, 0x7e, 0x87,
        ];
        assert!(count_open_tcp(&crash, &mut BTreeMap::new()).is_err());
        let mut bad = good.clone();
        bad[0] = 0xff; // a length beyond the datagram
        assert!(count_open_tcp(&bad, &mut BTreeMap::new()).is_err());
    }
}
