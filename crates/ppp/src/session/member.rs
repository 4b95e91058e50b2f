//! Multilink member mode: once LCP agreed on Multilink and authentication is done, the link
//! does not run IPCP itself; it joins a bundle (which the caller owns: a
//! [`crate::mp::BundleSession`] runs the bundle's IPCP over a [`crate::mp::Bundle`]) and
//! carries that bundle's frames: MP fragments, and whatever network protocol or NCP frames
//! the peer sends on the link outside MP.

use std::time::Instant;

use super::{Event, LOG_TARGET, SendError, Session};
use crate::mp::{BundleId, LinkState, Negotiated};

impl Session {
    /// Authentication is done with Multilink agreed: become a bundle member.
    pub(super) fn join_bundle(&mut self, mp: Negotiated) {
        let id = BundleId {
            peer_name: self.peer_name.clone().unwrap_or_default(),
            endpoint: mp.peer_endpoint,
        };
        debug!(bundle = %id, ?mp, "joining a Multilink bundle");
        self.member = Some(mp);
        // The bundle's IPCP has its own deadline; this link is as up as it gets.
        self.establish_deadline = None;
        self.events
            .push_back(Event::BundleMember { id, multilink: mp });
    }

    /// The link is no longer a bundle member (LCP went down or the session ends).
    pub(super) fn leave_bundle(&mut self, reason: &str) {
        if self.member.take().is_some() {
            self.ip_tx.clear();
            self.bundle_rx.clear();
            self.events.push_back(Event::NetworkDown {
                reason: reason.into(),
            });
        }
    }

    /// Frames below 0xc000 belong to the bundle: once a member, and already while we still
    /// authenticate with Multilink agreed (a peer done before us may send its IPCP over
    /// MP already; they wait for the bundle instead of being Protocol-Rejected).
    pub(super) fn carries_bundle_frames(&self) -> bool {
        self.member.is_some()
            || (self.phase == super::Phase::Authenticate && self.multilink().is_some())
    }

    /// A frame for the bundle arrived: held for `poll_bundle_frame`, within the bound.
    pub(super) fn receive_for_bundle(&mut self, protocol: u16, info: &[u8]) {
        if self.bundle_rx.len() < self.cfg.max_ip_rx_queue {
            self.bundle_rx.push_back((protocol, info.to_vec()));
        } else {
            self.stats.rx_ip_dropped += 1;
        }
    }

    /// Multilink as agreed, while the link is a bundle member.
    pub fn bundle_member(&self) -> Option<&Negotiated> {
        self.member.as_ref()
    }

    /// Next frame for the bundle: its protocol (0x003d for MP fragments) and information
    /// field. Only a bundle member has any.
    pub fn poll_bundle_frame(&mut self) -> Option<(u16, Vec<u8>)> {
        self.bundle_rx.pop_front()
    }

    /// Send a frame of the bundle on this link (an MP fragment from
    /// [`crate::mp::Bundle::send`] with protocol 0x003d, or a whole packet of a network
    /// protocol or NCP). Only while the link is a bundle member; it queues behind control
    /// frames as IP does.
    pub fn send_frame(&mut self, protocol: u16, info: &[u8]) -> Result<(), SendError> {
        if self.member.is_none() {
            return Err(SendError::NotUp);
        }
        let valid = protocol & 0x0001 == 1 && protocol & 0x0100 == 0;
        if !valid || protocol >= super::input::LINK_CONTROL {
            return Err(SendError::NotBundleProtocol(protocol));
        }
        let mru = self.lcp.fsm.negotiator().peer().mru;
        if info.len() > usize::from(mru) {
            return Err(SendError::TooBig {
                len: info.len(),
                mru,
            });
        }
        self.queue_data(protocol, info)
    }

    /// Protocol-Reject, on this link's LCP, a packet of a protocol the bundle does not run
    /// ([`crate::mp::BundleSession::poll_protocol_reject`]): only LCP can say so.
    pub fn send_protocol_reject(&mut self, protocol: u16, info: &[u8], now: Instant) {
        if self.member.is_some() {
            self.protocol_reject(protocol, info);
            self.pump(now);
        }
    }

    /// Bytes waiting in the data queue: what the scheduler counts as this link's backlog
    /// (add what the driver holds in its own buffers).
    pub fn queued_data_bytes(&self) -> usize {
        self.ip_tx.iter().map(Vec::len).sum()
    }

    /// This link as the bundle's scheduler sees it: named `id`, sending `rate` bytes/s (the
    /// caller's estimate), with its queue, the peer's MRU, and usable while a member.
    pub fn bundle_link_state<K>(&self, id: K, rate: u64) -> LinkState<K> {
        LinkState {
            id,
            rate,
            queued: self.queued_data_bytes(),
            mru: self.lcp.fsm.negotiator().peer().mru,
            up: self.member.is_some(),
        }
    }
}
