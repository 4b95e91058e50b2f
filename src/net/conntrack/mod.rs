//! The balancer's use of the conntrack table, over ctnetlink:
//! - dropping a dead line's connections, so that applications see their sockets fail at once
//!   and reconnect over a live line, instead of waiting for TCP timeouts on a route that no
//!   longer exists;
//! - following each line's connections (the load signal of `least-loaded` for traffic whose
//!   queue the router cannot see, and upstream tracking's passive evidence): by events
//!   ([`ConntrackEvents`], one long-lived socket) after one [`dump`], or by dumps alone where
//!   the kernel sends no events. The entries are read by [`entry`].

use std::io;

use super::request::off_runtime;
use super::walk::{Message, Messages};

pub mod entry;
mod events;

pub use entry::{Change, Entry};
pub use events::ConntrackEvents;

use netlink_packet_core::{
    DefaultNla, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_netfilter::conntrack::{ConntrackAttribute, ConntrackMessage};
use netlink_packet_netfilter::{NetfilterHeader, NetfilterMessage, NetfilterProtoFamily};
use netlink_sys::Socket;

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
    off_runtime("conntrack reader", move || read_ack(&socket)).await
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

/// Opens a ctnetlink socket and sends one IPv4 conntrack request on it.
fn send_request(flags: u16, request: ConntrackMessage) -> io::Result<Socket> {
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
    super::request::send(&buf)
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

/// The most entries a dump returns (the rest are left out): memory stays bounded whatever
/// the size of the conntrack table.
pub const MAX_ENTRIES: usize = 65_536;

/// The IPv4 entries whose `mark & mask == value & mask` (the kernel filters the dump).
pub async fn dump(value: u32, mask: u32) -> io::Result<Vec<Entry>> {
    let socket = send_request(
        NLM_F_REQUEST | NLM_F_DUMP,
        ConntrackMessage::Get(mark_filter(value, mask)),
    )?;
    off_runtime("conntrack reader", move || read_dump(&socket)).await
}

fn read_dump(socket: &Socket) -> io::Result<Vec<Entry>> {
    let mut entries = Vec::new();
    let mut changes = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = socket.recv(&mut &mut buf[..], 0)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "ctnetlink closed the conntrack dump",
            ));
        }
        let done = entry::read(&buf[..n], &mut changes)?;
        for change in changes.drain(..) {
            if let Change::Upsert(e) = change
                && entries.len() < MAX_ENTRIES
            {
                entries.push(e);
            }
        }
        if done {
            return Ok(entries);
        }
    }
}
