//! The Network phase: IPCP on top of an open, authenticated link, and the IPv4 packets that
//! flow once it is open (the outgoing queue and the received packets).

use std::net::Ipv4Addr;
use std::time::Instant;

use super::{
    ControlProtocol, DownReason, Event, LOG_TARGET, NegotiationFailure, Phase, SendError, Session,
};
use crate::fsm::{Fsm, LayerSignal};
use crate::ipcp::{self, IpcpOptions};

/// What IPCP agreed as it opened (our address, the peer's, DNS servers), or why that is
/// unusable (with the text for the Terminate-Request). Shared by a link's IPCP and a
/// Multilink bundle's.
pub(crate) fn ipcp_agreed(
    o: &IpcpOptions,
) -> Result<(Ipv4Addr, Ipv4Addr, Vec<Ipv4Addr>), (DownReason, &'static str)> {
    let (local, peer, dns) = (o.local(), o.peer(), o.dns());
    if local.is_unspecified() {
        return Err((DownReason::NoAddress, "No IP address"));
    }
    if let Some(bad) = o.check_final() {
        return Err((DownReason::BadAddress(bad), "Unusable IP address"));
    }
    Ok((local, peer, dns))
}

/// Why IPCP finished (This-Layer-Finished) while the link stays: the peer closed it, or
/// negotiation failed. pppd closes the link when its last network protocol is gone.
pub(crate) fn ipcp_finished(ipcp: &Fsm<IpcpOptions>) -> DownReason {
    let failed = |failure| DownReason::NegotiationFailed {
        protocol: ControlProtocol::Ipcp,
        failure,
    };
    match ipcp.peer_term_reason() {
        Some(r) => DownReason::PeerClosedIpcp {
            reason: crate::auth::printable(r.as_bytes()),
        },
        None if ipcp.gave_up_on_storm() => failed(NegotiationFailure::PeerRequestStorm {
            requests: ipcp.peer_request_limit() + 1,
        }),
        None => failed(NegotiationFailure::GaveUp),
    }
}

impl Session {
    /// Authentication is done (or not needed): IPCP starts, or with Multilink agreed the
    /// link joins its bundle, which runs IPCP for all its members.
    pub(super) fn enter_network(&mut self, now: Instant) {
        self.set_phase(Phase::Network);
        if let Some(mp) = self.multilink() {
            self.join_bundle(mp);
            return;
        }
        self.ipcp.open(now);
        self.ipcp.up(now);
    }

    /// IPCP's signals and packets since the last look; true if there were any.
    pub(super) fn pump_network(&mut self, now: Instant) -> bool {
        let mut progress = false;
        while let Some(sig) = self.ipcp.poll_signal() {
            progress = true;
            self.ipcp_signal(sig, now);
        }
        while let Some(pkt) = self.ipcp.poll_packet() {
            progress = true;
            self.queue_control(ipcp::PROTOCOL, &pkt);
        }
        progress
    }

    /// The peer insists on an address we refused: close the link (true if so).
    pub(super) fn check_peer_address(&mut self, now: Instant) -> bool {
        if self.phase != Phase::Network {
            return false;
        }
        let Some(bad) = self.ipcp.negotiator().refused() else {
            return false;
        };
        let bad = bad.clone();
        info!(reason = %bad, "PPP: unusable address from the peer");
        self.close_with(DownReason::BadAddress(bad), "Unusable IP address", now);
        true
    }

    fn ipcp_signal(&mut self, sig: LayerSignal, now: Instant) {
        if self.phase == Phase::Dead {
            return;
        }
        match sig {
            LayerSignal::Up => {
                let (local, peer, dns) = match ipcp_agreed(self.ipcp.negotiator()) {
                    Ok(agreed) => agreed,
                    Err((reason, wire)) => return self.close_with(reason, wire, now),
                };
                self.ip_up = true;
                self.establish_deadline = None;
                let mru = self.lcp.fsm.negotiator().peer().mru;
                debug!(%local, %peer, ?dns, mru, "IPCP up");
                self.events.push_back(Event::Up {
                    local,
                    peer,
                    dns,
                    mru,
                });
            }
            LayerSignal::Down => {
                self.arm_establish_deadline(now);
                self.ip_down(match self.phase {
                    Phase::Terminate => "link closing",
                    Phase::Establish => "LCP renegotiating",
                    _ => "IPCP renegotiating",
                })
            }
            LayerSignal::Finished => {
                self.ip_down("IPCP finished");
                // pppd closes the link when its last network protocol is gone.
                if self.phase == Phase::Network {
                    let why = ipcp_finished(&self.ipcp);
                    self.close_with(why, "No network protocols running", now);
                }
            }
            LayerSignal::Started => {}
        }
    }

    pub(super) fn ip_down(&mut self, reason: &str) {
        if std::mem::take(&mut self.ip_up) {
            self.ip_tx.clear();
            self.events.push_back(Event::NetworkDown {
                reason: reason.into(),
            });
        }
    }

    /// Frame an IPv4 packet for sending (only while IPCP is open).
    pub fn send_ip(&mut self, packet: &[u8]) -> Result<(), SendError> {
        if !self.ip_up {
            return Err(SendError::NotUp);
        }
        let mru = self.lcp.fsm.negotiator().peer().mru;
        if packet.len() > usize::from(mru) {
            return Err(SendError::TooBig {
                len: packet.len(),
                mru,
            });
        }
        self.queue_data(ipcp::IPV4, packet)?;
        self.stats.tx_ip_packets += 1;
        Ok(())
    }

    /// Frame a data packet into the bounded data queue (behind control frames).
    pub(super) fn queue_data(&mut self, protocol: u16, info: &[u8]) -> Result<(), SendError> {
        if self.ip_tx.len() >= self.cfg.max_ip_queue {
            return Err(SendError::QueueFull);
        }
        let frame = self.frame_out(protocol, info);
        self.ip_tx.push_back(frame);
        Ok(())
    }

    /// A received IPv4 packet: held for `poll_ip` while IP is up and the queue has room.
    pub(super) fn receive_ip(&mut self, packet: &[u8]) {
        if self.ip_up && self.ip_rx.len() < self.cfg.max_ip_rx_queue {
            self.ip_rx.push_back(packet.to_vec());
            self.stats.rx_ip_packets += 1;
        } else {
            self.stats.rx_ip_dropped += 1;
        }
    }

    /// Next received IPv4 packet.
    pub fn poll_ip(&mut self) -> Option<Vec<u8>> {
        self.ip_rx.pop_front()
    }
}
