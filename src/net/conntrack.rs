//! The balancer's use of the conntrack table, over ctnetlink:
//! - dropping a dead line's connections, so that applications see their sockets fail at once
//!   and reconnect over a live line, instead of waiting for TCP timeouts on a route that no
//!   longer exists;
//! - counting each line's open TCP connections, the load signal of `least-loaded` for
//!   traffic whose queue the router cannot see (a download queues at the ISP's end);
//! - counting each line's connections that went unanswered a moment ago (SYN or UDP sent, no
//!   reply for a second or more): upstream tracking's passive evidence.

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
/// `TCP_CONNTRACK_SYN_SENT`.
const SYN_SENT: u8 = 1;

/// An entry's age in whole seconds, as a dump tells it (the kernel rounds the time left
/// down, so a brand-new entry reads as one second old), from which a new connection without a
/// reply counts as unanswered: over a second, TCP has resent its SYN. From
/// [`UNANSWERED_UNTIL`] on it is old news (one client retrying a dead server must not keep
/// its line suspect), and an unanswered SYN no longer counts as load.
const UNANSWERED_FROM: u32 = 2;
const UNANSWERED_UNTIL: u32 = 5;

/// What one line's entries say.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MarkTally {
    /// Open TCP connections (a SYN unanswered for long is not one).
    pub open_tcp: u32,
    /// Connections (TCP or UDP) unanswered for a second or few.
    pub unanswered: u32,
}

/// The kernel's initial timeouts of unanswered entries, by which an entry's age is known
/// (a dump gives the time left, not the age).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub tcp_syn_sent: u32,
    pub udp: u32,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            tcp_syn_sent: 120,
            udp: 30,
        }
    }
}

impl Timeouts {
    /// The current network namespace's settings (the kernel's defaults where unreadable).
    pub fn read() -> Timeouts {
        let read = |name: &str, default: u32| {
            std::fs::read_to_string(format!("/proc/sys/net/netfilter/{name}"))
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(default)
        };
        let d = Timeouts::default();
        Timeouts {
            tcp_syn_sent: read("nf_conntrack_tcp_timeout_syn_sent", d.tcp_syn_sent),
            udp: read("nf_conntrack_udp_timeout", d.udp),
        }
    }
}

/// Tallies the entries by mark, among the IPv4 entries whose `mark & mask == value & mask`
/// (the kernel filters the dump); `timeouts` tell their ages.
pub async fn tally_by_mark(
    value: u32,
    mask: u32,
    timeouts: Timeouts,
) -> io::Result<BTreeMap<u32, MarkTally>> {
    let socket = send_request(
        NLM_F_REQUEST | NLM_F_DUMP,
        ConntrackMessage::Get(mark_filter(value, mask)),
    )?;
    off_runtime(move || read_dump(&socket, timeouts)).await
}

fn read_dump(socket: &Socket, timeouts: Timeouts) -> io::Result<BTreeMap<u32, MarkTally>> {
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
        if tally(&buf[..n], timeouts, &mut counts)? {
            return Ok(counts);
        }
    }
}

/// Adds the entries of one datagram of a conntrack dump to `counts`; true when the dump is
/// complete. Malformed input is an error, never a panic (fuzz target `conntrack_dump`;
/// netlink-packet-core's attribute parser panics on some inputs, so this walks the few
/// attributes it needs itself).
pub fn tally(
    datagram: &[u8],
    timeouts: Timeouts,
    counts: &mut BTreeMap<u32, MarkTally>,
) -> io::Result<bool> {
    for message in Messages::new(datagram) {
        match message? {
            Message::Done | Message::Ack => return Ok(true),
            Message::Error(code) => return Err(io::Error::from_raw_os_error(code)),
            Message::Other { kind, payload } if kind == CONNTRACK_NEW => {
                // nfgenmsg (family, version, resource id), then the entry's attributes.
                if let Some(entry) = payload.get(4..).and_then(Entry::read) {
                    let t = counts.entry(entry.mark).or_default();
                    let unanswered = entry.unanswered_for(timeouts);
                    if unanswered
                        .is_some_and(|age| (UNANSWERED_FROM..UNANSWERED_UNTIL).contains(&age))
                    {
                        t.unanswered += 1;
                    }
                    let stale_syn = entry.tcp_state == Some(SYN_SENT)
                        && unanswered.is_some_and(|age| age >= UNANSWERED_UNTIL);
                    if entry
                        .tcp_state
                        .is_some_and(|s| OPEN_TCP_STATES.contains(&s))
                        && !stale_syn
                    {
                        t.open_tcp += 1;
                    }
                }
            }
            Message::Other { .. } => {}
        }
    }
    Ok(false)
}

/// `(NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW`: an entry of a dump.
const CONNTRACK_NEW: u16 = 1 << 8;
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_PROTO_NUM: u16 = 1;
const CTA_STATUS: u16 = 3;
const CTA_PROTOINFO: u16 = 4;
const CTA_TIMEOUT: u16 = 7;
const CTA_MARK: u16 = 8;
const CTA_PROTOINFO_TCP: u16 = 1;
const CTA_PROTOINFO_TCP_STATE: u16 = 1;
/// `IPS_SEEN_REPLY`: a packet came back.
const SEEN_REPLY: u32 = 1 << 1;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;

/// The few things read from one conntrack entry.
#[derive(Debug, Default)]
struct Entry {
    mark: u32,
    proto: Option<u8>,
    status: u32,
    timeout: Option<u32>,
    tcp_state: Option<u8>,
}

impl Entry {
    fn read(attrs: &[u8]) -> Option<Entry> {
        let be32 = |v: &[u8]| {
            v.get(..4)
                .map(|m| u32::from_be_bytes([m[0], m[1], m[2], m[3]]))
        };
        let mut e = Entry::default();
        let mut mark = None;
        for (kind, value) in attributes(attrs).map_while(Result::ok) {
            match kind {
                CTA_MARK => mark = be32(value),
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
        e.mark = mark?;
        Some(e)
    }

    /// Seconds since the connection began, if nothing has answered it.
    fn unanswered_for(&self, timeouts: Timeouts) -> Option<u32> {
        if self.status & SEEN_REPLY != 0 {
            return None;
        }
        let initial = match (self.proto, self.tcp_state) {
            (Some(PROTO_TCP), Some(SYN_SENT)) => timeouts.tcp_syn_sent,
            (Some(PROTO_UDP), _) => timeouts.udp,
            _ => return None,
        };
        Some(initial.saturating_sub(self.timeout?))
    }
}

/// The value of the first attribute of `kind` among `attrs`.
fn nested(attrs: &[u8], kind: u16) -> Option<&[u8]> {
    attributes(attrs)
        .map_while(Result::ok)
        .find(|(k, _)| *k == kind)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_netfilter::conntrack::{
        ProtoInfo, ProtoInfoTCP, ProtoTuple, Protocol, Status, Tuple,
    };

    /// One dump entry: TCP with `tcp_state`, or UDP; `left` seconds to live; replied or not.
    fn entry(mark: u32, tcp_state: Option<u8>, left: u32, replied: bool) -> Vec<u8> {
        let proto = if tcp_state.is_some() {
            Protocol::Tcp
        } else {
            Protocol::Udp
        };
        let mut attributes = vec![
            ConntrackAttribute::CtaTupleOrig(vec![Tuple::Proto(vec![ProtoTuple::Protocol(proto)])]),
            ConntrackAttribute::CtaStatus(if replied {
                Status::SeenReply
            } else {
                Status::empty()
            }),
            ConntrackAttribute::CtaTimeout(left),
            ConntrackAttribute::CtaMark(mark),
        ];
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

    fn tally_of(entries: &[(u32, Option<u8>, u32, bool)]) -> BTreeMap<u32, MarkTally> {
        let mut datagram = Vec::new();
        for &(mark, state, left, replied) in entries {
            datagram.extend(entry(mark, state, left, replied));
        }
        let mut counts = BTreeMap::new();
        assert!(!tally(&datagram, Timeouts::default(), &mut counts).unwrap());
        counts
    }

    fn t(open_tcp: u32, unanswered: u32) -> MarkTally {
        MarkTally {
            open_tcp,
            unanswered,
        }
    }

    #[test]
    fn counts_open_tcp_connections_by_mark() {
        let counts = tally_of(&[
            (0xe101, Some(3), 7000, true),
            (0xe101, Some(1), 120, false), // SYN_SENT, just now
            (0xe101, Some(7), 100, true),  // TIME_WAIT: done
            (0xe102, Some(3), 7000, true),
            (0xe102, None, 170, true), // UDP, answered
        ]);
        assert_eq!(
            counts,
            BTreeMap::from([(0xe101, t(2, 0)), (0xe102, t(1, 0))])
        );
    }

    #[test]
    fn connections_unanswered_for_a_second_or_few_are_evidence() {
        let counts = tally_of(&[
            (0xe101, Some(1), 119, false), // SYN sent just now: not yet
            (0xe101, Some(1), 117, false), // unanswered for 2-3 s
            (0xe101, Some(1), 118, false), // 1-2 s
            (0xe101, Some(1), 100, false), // 20 s: old news, and no load either
            (0xe101, None, 28, false),     // UDP, 2 s
            (0xe101, None, 30, false),     // UDP, just sent
            (0xe102, Some(1), 118, true),  // a reply came (SYN_SENT2 path): not evidence
        ]);
        assert_eq!(counts[&0xe101], t(3, 3));
        assert_eq!(counts[&0xe102], t(1, 0));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let good = entry(0xe101, Some(3), 100, true);
        let count = |d: &[u8]| tally(d, Timeouts::default(), &mut BTreeMap::new());
        for cut in 0..good.len() {
            let _ = count(&good[..cut]);
        }
        // An error message with the most negative code (found by the fuzzer).
        let crash = [
            0x19, 0, 0, 0, 2, 0, 0xa1, 0xa1, 0xa1, 0xa1, 0, 0, 0xc4, 0, 0, 9, 0, 0, 0, 0x80, 0, 0,
            0x7e, 0x7e, 0x87,
        ];
        assert!(count(&crash).is_err());
        // An attribute shorter than its header, which netlink-packet-core's parser panics on.
        let crash = [
            0x36, 0, 0, 0, 9, 0xa, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0x32, 0x13, 6, 0, 0x11, 0,
            0xa2, 0xff, 0xff, 0xf6, 0x11, 0, 0, 0, 0x19, 0, 0x3c, 0xa9, 6, 0, 0x2f, 0, 0x66, 0xff,
            0xff, 0xff, 0xa9, 6, 0x2a, 0, 0, 0, 0x2f, 0, 0x66, 0xff, 0, 0, 0, 0, 0, 0, 0, 0x32,
            0xff, 0,
        ];
        let _ = count(&crash);
        let mut bad = good.clone();
        bad[0] = 0xff; // a length beyond the datagram
        assert!(count(&bad).is_err());
    }
}
