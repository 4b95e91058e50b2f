//! The balancer's use of the conntrack table, over ctnetlink:
//! - dropping a dead line's connections, so that applications see their sockets fail at once
//!   and reconnect over a live line, instead of waiting for TCP timeouts on a route that no
//!   longer exists;
//! - counting each line's open TCP connections, the load signal of `least-loaded` for
//!   traffic whose queue the router cannot see (a download queues at the ISP's end).

use std::collections::BTreeMap;
use std::io;
use std::time::Duration;

use super::walk::{Message, Messages, attributes};

use netlink_packet_core::{
    DefaultNla, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_netfilter::conntrack::{ConntrackAttribute, ConntrackMessage};
use netlink_packet_netfilter::{NetfilterHeader, NetfilterMessage, NetfilterProtoFamily};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};

/// `CTA_MARK_MASK` (not modelled by netlink-packet-netfilter).
const CTA_MARK_MASK: u16 = 21;

/// Deletes every IPv4 conntrack entry whose mark is exactly `mark`. A delete request without
/// a tuple but with `CTA_MARK`/`CTA_MARK_MASK` is the kernel's filtered flush, so this is one
/// request whatever the number of entries.
pub async fn delete_by_mark(mark: u32) -> io::Result<()> {
    let socket = send_request(
        NLM_F_REQUEST | NLM_F_ACK,
        ConntrackMessage::Delete(mark_filter(mark, u32::MAX)),
    )?;
    off_runtime(move || read_ack(&socket)).await
}

fn read_ack(socket: &Socket) -> io::Result<()> {
    let mut reply = vec![0u8; 8192];
    let n = socket.recv(&mut &mut reply[..], 0)?;
    for message in Messages::new(&reply[..n]) {
        match message? {
            // Nothing matched is not a failure.
            Message::Error(code) if code == libc::ENOENT => return Ok(()),
            Message::Error(code) => return Err(io::Error::from_raw_os_error(code)),
            Message::Ack | Message::Done => return Ok(()),
            Message::Other { .. } => {}
        }
    }
    Ok(())
}

/// Attributes selecting the entries whose `mark & mask == value & mask`.
fn mark_filter(value: u32, mask: u32) -> Vec<ConntrackAttribute> {
    vec![
        ConntrackAttribute::CtaMark(value),
        ConntrackAttribute::Other(DefaultNla::new(CTA_MARK_MASK, mask.to_be_bytes().to_vec())),
    ]
}

/// How long the kernel may take to answer one request.
const REPLY_DEADLINE: Duration = Duration::from_secs(5);

/// Reads the replies on a blocking thread: the socket is made on the caller's thread (so in
/// its network namespace), its blocking receives, bounded by [`REPLY_DEADLINE`], happen
/// off the async runtime.
async fn off_runtime<T: Send + 'static>(
    read: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(read)
        .await
        .map_err(|e| io::Error::other(format!("conntrack reader failed: {e}")))?
}

/// Opens a ctnetlink socket and sends one IPv4 conntrack request on it.
fn send_request(flags: u16, request: ConntrackMessage) -> io::Result<Socket> {
    let mut socket = Socket::new(NETLINK_NETFILTER)?;
    let fd = std::os::fd::AsFd::as_fd(&socket);
    nix::sys::socket::setsockopt(
        &fd,
        nix::sys::socket::sockopt::ReceiveTimeout,
        &nix::sys::time::TimeVal::new(REPLY_DEADLINE.as_secs() as i64, 0),
    )
    .map_err(io::Error::from)?;
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
pub async fn open_tcp_by_mark(value: u32, mask: u32) -> io::Result<BTreeMap<u32, u32>> {
    let socket = send_request(
        NLM_F_REQUEST | NLM_F_DUMP,
        ConntrackMessage::Get(mark_filter(value, mask)),
    )?;
    off_runtime(move || read_dump(&socket)).await
}

fn read_dump(socket: &Socket) -> io::Result<BTreeMap<u32, u32>> {
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
/// the dump is complete. Malformed input is an error, never a panic (fuzz target
/// `conntrack_dump`; netlink-packet-core's attribute parser panics on some inputs, so this
/// walks the few attributes it needs itself).
pub fn count_open_tcp(datagram: &[u8], counts: &mut BTreeMap<u32, u32>) -> io::Result<bool> {
    for message in Messages::new(datagram) {
        match message? {
            Message::Done | Message::Ack => return Ok(true),
            Message::Error(code) => return Err(io::Error::from_raw_os_error(code)),
            Message::Other { kind, payload } if kind == CONNTRACK_NEW => {
                // nfgenmsg (family, version, resource id), then the entry's attributes.
                if let Some(mark) = payload.get(4..).and_then(open_tcp_mark) {
                    *counts.entry(mark).or_default() += 1;
                }
            }
            Message::Other { .. } => {}
        }
    }
    Ok(false)
}

/// `(NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW`: an entry of a dump.
const CONNTRACK_NEW: u16 = 1 << 8;
const CTA_PROTOINFO: u16 = 4;
const CTA_MARK: u16 = 8;
const CTA_PROTOINFO_TCP: u16 = 1;
const CTA_PROTOINFO_TCP_STATE: u16 = 1;

/// The mark of an entry that is an open TCP connection.
fn open_tcp_mark(entry: &[u8]) -> Option<u32> {
    let mut mark = None;
    let mut open = false;
    for (kind, value) in attributes(entry).map_while(Result::ok) {
        match kind {
            CTA_MARK => {
                mark = value
                    .get(..4)
                    .map(|m| u32::from_be_bytes([m[0], m[1], m[2], m[3]]));
            }
            CTA_PROTOINFO => {
                open = attributes(value)
                    .map_while(Result::ok)
                    .filter(|(k, _)| *k == CTA_PROTOINFO_TCP)
                    .flat_map(|(_, tcp)| attributes(tcp).map_while(Result::ok))
                    .any(|(k, v)| {
                        k == CTA_PROTOINFO_TCP_STATE
                            && v.first().is_some_and(|s| OPEN_TCP_STATES.contains(s))
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
    use netlink_packet_netfilter::conntrack::{ProtoInfo, ProtoInfoTCP};

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
        // An attribute shorter than its header, which netlink-packet-core's parser panics on.
        let crash = [
            0x36, 0, 0, 0, 9, 0xa, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0x32, 0x13, 6, 0, 0x11, 0,
            0xa2, 0xff, 0xff, 0xf6, 0x11, 0, 0, 0, 0x19, 0, 0x3c, 0xa9, 6, 0, 0x2f, 0, 0x66, 0xff,
            0xff, 0xff, 0xa9, 6, 0x2a, 0, 0, 0, 0x2f, 0, 0x66, 0xff, 0, 0, 0, 0, 0, 0, 0, 0x32,
            0xff, 0,
        ];
        let _ = count_open_tcp(&crash, &mut BTreeMap::new());
        let mut bad = good.clone();
        bad[0] = 0xff; // a length beyond the datagram
        assert!(count_open_tcp(&bad, &mut BTreeMap::new()).is_err());
    }
}
