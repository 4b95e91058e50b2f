//! Frames to send: the bounded control queue and its framing rules, `poll_transmit`, and the
//! stall detector that ends a session whose line takes nothing.

use std::time::{Duration, Instant};

use super::{DownReason, Framing, LOG_TARGET, Phase, Session};
use crate::hdlc::{Encoder, Header};
use crate::lcp;
use crate::packet::{
    CODE_REJECT, CONFIGURE_REQUEST, DISCARD_REQUEST, ECHO_REPLY, PROTOCOL_REJECT, TERMINATE_ACK,
    TERMINATE_REQUEST,
};

impl Session {
    /// Next bytes to write to the line: control frames first, then IP.
    ///
    /// Call it only when the line can take the frame (the driver keeps a small
    /// bounded backlog): frames the line does not take stay queued here, bounded
    /// (see [`Config::max_control_queue`](super::Config::max_control_queue)), and when none is taken for
    /// [`Session::tx_stall_limit`] the session ends ("peer stopped reading").
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        let frame = match self.ctrl_tx.pop_front() {
            Some(f) => {
                self.ctrl_tx_bytes = self.ctrl_tx_bytes.saturating_sub(f.len());
                f
            }
            None => self.ip_tx.pop_front()?,
        };
        self.tx_progress = true;
        self.stats.tx_frames += 1;
        self.stats.tx_bytes += frame.len() as u64;
        Some(frame)
    }

    /// Bytes of control frames waiting for `poll_transmit` (bounded by
    /// [`Config::max_control_queue`](super::Config::max_control_queue)).
    pub fn queued_control_bytes(&self) -> usize {
        self.ctrl_tx_bytes
    }

    /// Frames queued and the driver not taking them: start the stall clock.
    pub(super) fn note_tx_waiting(&mut self, now: Instant) {
        let waiting = !self.ctrl_tx.is_empty() || !self.ip_tx.is_empty();
        if !waiting || self.phase == Phase::Dead {
            self.tx_waiting_since = None;
        } else if std::mem::take(&mut self.tx_progress) || self.tx_waiting_since.is_none() {
            self.tx_waiting_since = Some(now);
        }
    }

    /// How long queued frames may wait for the line before the peer counts as
    /// gone: `echo_interval × echo_failure` (3 s with the defaults), or
    /// `restart × max_configure` with the keepalive off.
    pub fn tx_stall_limit(&self) -> Duration {
        match self.cfg.lcp.echo_interval.filter(|i| !i.is_zero()) {
            Some(i) => i.saturating_mul(self.cfg.lcp.echo_failure.max(1)),
            None => self
                .cfg
                .fsm
                .restart
                .saturating_mul(self.cfg.fsm.max_configure.max(1)),
        }
    }

    /// The line took nothing for [`Session::tx_stall_limit`]: end the session.
    pub(super) fn check_tx_stall(&mut self, now: Instant) -> bool {
        if std::mem::take(&mut self.tx_progress)
            || (self.ctrl_tx.is_empty() && self.ip_tx.is_empty())
        {
            self.tx_waiting_since = None;
            self.note_tx_waiting(now);
            return false;
        }
        let limit = self.tx_stall_limit();
        if self.tx_waiting_since.is_none_or(|t| now < t + limit) {
            return false;
        }
        let dropped = self.stats.tx_control_dropped;
        // Nothing more can be written: the courtesy Terminate-Request goes
        // nowhere, so do not queue it behind the stuck frames.
        self.end_at_once(
            |closing| DownReason::PeerStoppedReading {
                after: limit,
                dropped,
                closing,
            },
            now,
        );
        true
    }

    /// Queue a control packet, framed by [`Session::frame_out`], within the control queue's
    /// bound.
    pub(super) fn queue_control(&mut self, protocol: u16, pkt: &[u8]) {
        let code = pkt.first().copied().unwrap_or(0);
        let lcp_code = |codes: &[u8]| protocol == lcp::PROTOCOL && codes.contains(&code);
        let cap = self.cfg.max_control_queue;
        let full = if lcp_code(&[ECHO_REPLY, PROTOCOL_REJECT, CODE_REJECT, DISCARD_REQUEST]) {
            // Best effort: answers to a peer that is not reading us.
            self.ctrl_tx_bytes >= cap
        } else {
            !lcp_code(&[TERMINATE_REQUEST, TERMINATE_ACK])
                && self.ctrl_tx_bytes >= cap.saturating_mul(2)
        };
        if full {
            if self.stats.tx_control_dropped == 0 {
                info!(
                    queued = self.ctrl_tx_bytes,
                    "PPP: the peer is not taking what we write; dropping control frames"
                );
            }
            self.stats.tx_control_dropped += 1;
            return;
        }
        let frame = self.frame_out(protocol, pkt);
        self.ctrl_tx_bytes += frame.len();
        self.ctrl_tx.push_back(frame);
    }

    /// One frame to send. Under [`Framing::Hdlc`]: LCP negotiation packets (codes 1..=7)
    /// always with the all-ones ACCM and an uncompressed header (RFC 1662 §7.1, RFC 1661
    /// §6.6), other LCP packets with the negotiated ACCM but never ACFC/PFC, the rest as
    /// agreed. Under [`Framing::Unframed`]: `protocol (2 bytes) + info` and nothing else, as
    /// a Linux PPP channel takes it; its `ppp_async` applies the same rules itself.
    pub(super) fn frame_out(&self, protocol: u16, info: &[u8]) -> Vec<u8> {
        if self.cfg.framing == Framing::Unframed {
            let mut frame = Vec::with_capacity(2 + info.len());
            frame.extend_from_slice(&protocol.to_be_bytes());
            frame.extend_from_slice(info);
            return frame;
        }
        let mut frame = Vec::with_capacity(info.len() + info.len() / 16 + 10);
        if protocol == lcp::PROTOCOL {
            let (h, n) = Header { protocol }.emit(false, false);
            let code = info.first().copied().unwrap_or(0);
            if (CONFIGURE_REQUEST..=CODE_REJECT).contains(&code) {
                Encoder::encode_default_accm(&h[..n], info, &mut frame);
            } else {
                self.encoder.encode(&h[..n], info, &mut frame);
            }
        } else {
            let (h, n) = Header { protocol }.emit(self.tx_acfc, self.tx_pfc);
            self.encoder.encode(&h[..n], info, &mut frame);
        }
        frame
    }
}
