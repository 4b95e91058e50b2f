//! Conntrack events: one long-lived ctnetlink socket subscribed to new, changed and destroyed
//! entries, so the balancer learns of connections as they happen instead of dumping the table
//! ten times a second (each a socket and a walk of every entry, idle or not).

use std::io;

use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};
use tokio::io::unix::AsyncFd;

use super::entry::{self, Change};

/// `NFNLGRP_CONNTRACK_NEW`, `_UPDATE`, `_DESTROY`.
const GROUPS: [u32; 3] = [1, 2, 3];

/// The receive buffer asked for: a burst of new connections (a page of 100 objects is some
/// 800 events of ~250 bytes) must fit; beyond it the kernel drops events and says so
/// (ENOBUFS), and the reader resynchronises from a dump.
const RECEIVE_BUFFER: usize = 4 << 20;

/// At most this many datagrams are read per call, so a flood of events cannot starve the
/// balancer's other work.
const DATAGRAMS_PER_READ: usize = 64;

/// What a read of the events brought.
#[derive(Debug, Default)]
pub struct Batch {
    pub changes: Vec<Change>,
    /// Events were lost (the receive buffer overran): the table must be read again.
    pub overrun: bool,
}

/// A subscription to the conntrack events of this thread's network namespace.
pub struct ConntrackEvents {
    socket: AsyncFd<Socket>,
    buf: Vec<u8>,
}

impl ConntrackEvents {
    /// Subscribes; must be called within a tokio runtime. Events flow only while
    /// `net.netfilter.nf_conntrack_events` is not 0 ([`ConntrackEvents::enabled`]).
    pub fn subscribe() -> io::Result<ConntrackEvents> {
        let mut socket = Socket::new(NETLINK_NETFILTER)?;
        socket.bind(&SocketAddr::new(0, 0))?;
        for g in GROUPS {
            socket.add_membership(g)?;
        }
        // As root the buffer may exceed net.core.rmem_max; elsewhere take what is allowed.
        let fd = std::os::fd::AsFd::as_fd(&socket);
        if nix::sys::socket::setsockopt(
            &fd,
            nix::sys::socket::sockopt::RcvBufForce,
            &RECEIVE_BUFFER,
        )
        .is_err()
        {
            let _ = socket.set_rx_buf_sz(RECEIVE_BUFFER);
        }
        socket.set_non_blocking(true)?;
        // SAFETY: the AsyncFd owns the socket, so its descriptor stays open and unchanged for
        // the AsyncFd's life.
        let socket = unsafe { AsyncFd::register(socket) }.map_err(io::Error::from)?;
        Ok(ConntrackEvents {
            socket,
            buf: vec![0u8; 64 * 1024],
        })
    }

    /// Whether the kernel sends conntrack events in this thread's network namespace (the
    /// sysctl is per namespace; unreadable counts as yes). Reads a file: call it off the
    /// async runtime.
    pub fn enabled() -> bool {
        std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_events")
            .map(|s| s.trim() != "0")
            .unwrap_or(true)
    }

    /// Waits for events and returns what is there (at least one datagram's worth, or an
    /// overrun). A malformed datagram counts as an overrun: what it said is unknown.
    pub async fn read(&mut self) -> io::Result<Batch> {
        let mut batch = Batch::default();
        let mut datagrams = 0;
        loop {
            let mut guard = self.socket.readable().await?;
            loop {
                let buf = &mut self.buf;
                match guard.try_io(|s| s.get_ref().recv(&mut &mut buf[..], 0)) {
                    Ok(Ok(n)) => {
                        datagrams += 1;
                        if entry::read(&self.buf[..n], &mut batch.changes).is_err() {
                            batch.overrun = true;
                        }
                        if datagrams >= DATAGRAMS_PER_READ {
                            return Ok(batch);
                        }
                    }
                    Ok(Err(e)) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                        batch.overrun = true;
                    }
                    Ok(Err(e)) => return Err(e),
                    // Drained: hand over what came.
                    Err(_would_block) if datagrams > 0 || batch.overrun => return Ok(batch),
                    Err(_would_block) => break,
                }
            }
        }
    }
}
