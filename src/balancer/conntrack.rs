//! Dropping a dead line's connections from the conntrack table over ctnetlink, so that
//! applications see their sockets fail at once and reconnect over a live line, instead of
//! waiting for TCP timeouts on a route that no longer exists.

use std::io;

use netlink_packet_core::{
    DefaultNla, NLM_F_ACK, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_netfilter::conntrack::{ConntrackAttribute, ConntrackMessage};
use netlink_packet_netfilter::{NetfilterHeader, NetfilterMessage, NetfilterProtoFamily};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};

/// `CTA_MARK_MASK` (not modelled by netlink-packet-netfilter).
const CTA_MARK_MASK: u16 = 21;

/// Deletes every IPv4 conntrack entry whose mark is exactly `mark`. A delete request without
/// a tuple but with `CTA_MARK`/`CTA_MARK_MASK` is the kernel's filtered flush, so this is one
/// request whatever the number of entries.
pub fn delete_by_mark(mark: u32) -> io::Result<()> {
    let mut socket = Socket::new(NETLINK_NETFILTER)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;

    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_ACK;
    let mut message = NetlinkMessage::new(
        header,
        NetlinkPayload::from(NetfilterMessage::new(
            NetfilterHeader::new(NetfilterProtoFamily::IPv4, 0, 0),
            ConntrackMessage::Delete(vec![
                ConntrackAttribute::CtaMark(mark),
                ConntrackAttribute::Other(DefaultNla::new(
                    CTA_MARK_MASK,
                    u32::MAX.to_be_bytes().to_vec(),
                )),
            ]),
        )),
    );
    message.finalize();
    let mut buf = vec![0u8; message.buffer_len()];
    message.serialize(&mut buf);
    socket.send(&buf, 0)?;

    let mut reply = vec![0u8; 8192];
    let n = socket.recv(&mut &mut reply[..], 0)?;
    let parsed = NetlinkMessage::<NetfilterMessage>::deserialize(&reply[..n])
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    match parsed.payload {
        NetlinkPayload::Error(e) => match e.code {
            None => Ok(()),
            // Nothing matched is not a failure.
            Some(code) if -code.get() == libc::ENOENT => Ok(()),
            Some(code) => Err(io::Error::from_raw_os_error(-code.get())),
        },
        _ => Ok(()),
    }
}
