//! The few things the balancer reads from a conntrack entry, out of ctnetlink messages (dump
//! entries and multicast events have the same form). Malformed input is an error, never a
//! panic (fuzz target `conntrack_dump`; netlink-packet-core's attribute parser panics on some
//! inputs, so this walks the few attributes it needs itself).

use std::io;

use crate::net::walk::{Message, Messages, attributes};

/// `(NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW`: a dump's entry, or an event of a new
/// or changed entry.
const CONNTRACK_NEW: u16 = 1 << 8;
/// `(NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE`: an event of an entry's end.
const CONNTRACK_DELETE: u16 = (1 << 8) | 2;
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_PROTO_NUM: u16 = 1;
const CTA_STATUS: u16 = 3;
const CTA_PROTOINFO: u16 = 4;
const CTA_TIMEOUT: u16 = 7;
const CTA_MARK: u16 = 8;
const CTA_ID: u16 = 12;
const CTA_PROTOINFO_TCP: u16 = 1;
const CTA_PROTOINFO_TCP_STATE: u16 = 1;
/// `IPS_SEEN_REPLY`: a packet came back.
const SEEN_REPLY: u32 = 1 << 1;
/// `IPS_ASSURED`: traffic both ways; for UDP (since Linux 5.17), still so after 2 s, so a
/// DNS question and its answer are not assured but a stream is.
const ASSURED: u32 = 1 << 2;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// Conntrack's TCP states that carry data yet (`enum tcp_conntrack`): SYN_SENT, SYN_RECV,
/// ESTABLISHED, SYN_SENT2. A connection in FIN_WAIT and later has had its last data.
const OPEN_TCP_STATES: [u8; 4] = [1, 2, 3, 9];
/// `TCP_CONNTRACK_SYN_SENT`.
pub const SYN_SENT: u8 = 1;

/// One conntrack entry, as much of it as a message carried (an update event carries the TCP
/// state only when it changed, the mark only when set).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
    /// The kernel's id of the entry (unique among live entries).
    pub id: Option<u32>,
    pub mark: Option<u32>,
    pub proto: Option<u8>,
    /// `IPS_*` bits.
    pub status: u32,
    /// Seconds left to live.
    pub timeout: Option<u32>,
    pub tcp_state: Option<u8>,
}

impl Entry {
    /// Reads an entry from a message's attributes (after the nfgenmsg header).
    pub fn read(attrs: &[u8]) -> Entry {
        let be32 = |v: &[u8]| {
            v.get(..4)
                .map(|m| u32::from_be_bytes([m[0], m[1], m[2], m[3]]))
        };
        let mut e = Entry::default();
        for (kind, value) in attributes(attrs).map_while(Result::ok) {
            match kind {
                CTA_ID => e.id = be32(value),
                CTA_MARK => e.mark = be32(value),
                CTA_STATUS => e.status = be32(value).unwrap_or(0),
                CTA_TIMEOUT => e.timeout = be32(value),
                CTA_TUPLE_ORIG => {
                    e.proto = nested(value, CTA_TUPLE_PROTO)
                        .and_then(|p| nested(p, CTA_PROTO_NUM))
                        .and_then(|n| n.first().copied());
                }
                CTA_PROTOINFO => {
                    e.tcp_state = nested(value, CTA_PROTOINFO_TCP)
                        .and_then(|tcp| nested(tcp, CTA_PROTOINFO_TCP_STATE))
                        .and_then(|s| s.first().copied());
                }
                _ => {}
            }
        }
        e
    }

    pub fn replied(&self) -> bool {
        self.status & SEEN_REPLY != 0
    }

    pub fn assured(&self) -> bool {
        self.status & ASSURED != 0
    }

    /// Whether a TCP state still carries data.
    pub fn open_tcp_state(state: u8) -> bool {
        OPEN_TCP_STATES.contains(&state)
    }
}

/// What one message said of an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A dump's entry, or an event of a new or changed entry.
    Upsert(Entry),
    /// The entry is gone.
    Destroy(Entry),
}

/// Adds the entries of one datagram (a dump's or events') to `out`; true when it ends a dump.
/// An error message is an error.
pub fn read(datagram: &[u8], out: &mut Vec<Change>) -> io::Result<bool> {
    for message in Messages::new(datagram) {
        match message? {
            Message::Done | Message::Ack => return Ok(true),
            Message::Error(code) => return Err(io::Error::from_raw_os_error(code)),
            // nfgenmsg (family, version, resource id), then the entry's attributes.
            Message::Other { kind, payload } if kind == CONNTRACK_NEW => {
                if let Some(attrs) = payload.get(4..) {
                    out.push(Change::Upsert(Entry::read(attrs)));
                }
            }
            Message::Other { kind, payload } if kind == CONNTRACK_DELETE => {
                if let Some(attrs) = payload.get(4..) {
                    out.push(Change::Destroy(Entry::read(attrs)));
                }
            }
            Message::Other { .. } => {}
        }
    }
    Ok(false)
}

/// The value of the first attribute of `kind` among `attrs`.
fn nested(attrs: &[u8], kind: u16) -> Option<&[u8]> {
    attributes(attrs)
        .map_while(Result::ok)
        .find(|(k, _)| *k == kind)
        .map(|(_, v)| v)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use netlink_packet_core::{DefaultNla, NetlinkHeader, NetlinkMessage, NetlinkPayload};
    use netlink_packet_netfilter::conntrack::{
        ConntrackAttribute, ConntrackMessage, ProtoInfo, ProtoInfoTCP, ProtoTuple, Protocol,
        Status, Tuple,
    };
    use netlink_packet_netfilter::{NetfilterHeader, NetfilterMessage, NetfilterProtoFamily};

    /// One message about entry `id`: TCP with `tcp_state`, or UDP; `left` seconds to live;
    /// status bits; `destroy` for an entry's end.
    pub(crate) fn message(
        id: u32,
        mark: u32,
        tcp_state: Option<u8>,
        left: u32,
        status: Status,
        destroy: bool,
    ) -> Vec<u8> {
        let proto = if tcp_state.is_some() {
            Protocol::Tcp
        } else {
            Protocol::Udp
        };
        let mut attributes = vec![
            ConntrackAttribute::CtaTupleOrig(vec![Tuple::Proto(vec![ProtoTuple::Protocol(proto)])]),
            ConntrackAttribute::Other(DefaultNla::new(CTA_ID, id.to_be_bytes().to_vec())),
            ConntrackAttribute::CtaStatus(status),
            ConntrackAttribute::CtaTimeout(left),
            ConntrackAttribute::CtaMark(mark),
        ];
        if let Some(state) = tcp_state {
            attributes.push(ConntrackAttribute::CtaProtoInfo(vec![ProtoInfo::TCP(
                vec![ProtoInfoTCP::State(state)],
            )]));
        }
        let body = if destroy {
            ConntrackMessage::Delete(attributes)
        } else {
            ConntrackMessage::New(attributes)
        };
        let mut message = NetlinkMessage::new(
            NetlinkHeader::default(),
            NetlinkPayload::from(NetfilterMessage::new(
                NetfilterHeader::new(NetfilterProtoFamily::IPv4, 0, 0),
                body,
            )),
        );
        message.finalize();
        let mut buf = vec![0u8; message.buffer_len()];
        message.serialize(&mut buf);
        buf
    }

    #[test]
    fn reads_entries_and_their_ends() {
        let mut datagram = message(7, 0xe101, Some(3), 7000, Status::SeenReply, false);
        datagram.extend(message(8, 0xe102, None, 30, Status::empty(), true));
        let mut out = Vec::new();
        assert!(!read(&datagram, &mut out).unwrap());
        assert_eq!(
            out,
            vec![
                Change::Upsert(Entry {
                    id: Some(7),
                    mark: Some(0xe101),
                    proto: Some(PROTO_TCP),
                    status: SEEN_REPLY,
                    timeout: Some(7000),
                    tcp_state: Some(3),
                }),
                Change::Destroy(Entry {
                    id: Some(8),
                    mark: Some(0xe102),
                    proto: Some(PROTO_UDP),
                    status: 0,
                    timeout: Some(30),
                    tcp_state: None,
                }),
            ]
        );
        assert!(
            out.iter()
                .all(|c| matches!(c, Change::Upsert(e) if e.replied())
                    || matches!(c, Change::Destroy(e) if !e.replied()))
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let good = message(1, 0xe101, Some(3), 100, Status::SeenReply, false);
        let read = |d: &[u8]| read(d, &mut Vec::new());
        for cut in 0..good.len() {
            let _ = read(&good[..cut]);
        }
        // An error message with the most negative code (found by the fuzzer).
        let crash = [
            0x19, 0, 0, 0, 2, 0, 0xa1, 0xa1, 0xa1, 0xa1, 0, 0, 0xc4, 0, 0, 9, 0, 0, 0, 0x80, 0, 0,
            0x7e, 0x7e, 0x87,
        ];
        assert!(read(&crash).is_err());
        // An attribute shorter than its header, which netlink-packet-core's parser panics on.
        let crash = [
            0x36, 0, 0, 0, 9, 0xa, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0x32, 0x13, 6, 0, 0x11, 0,
            0xa2, 0xff, 0xff, 0xf6, 0x11, 0, 0, 0, 0x19, 0, 0x3c, 0xa9, 6, 0, 0x2f, 0, 0x66, 0xff,
            0xff, 0xff, 0xa9, 6, 0x2a, 0, 0, 0, 0x2f, 0, 0x66, 0xff, 0, 0, 0, 0, 0, 0, 0, 0x32,
            0xff, 0,
        ];
        let _ = read(&crash);
        let mut bad = good.clone();
        bad[0] = 0xff; // a length beyond the datagram
        assert!(read(&bad).is_err());
    }
}
